//! Property tests: random and mutated Dockerfiles never make the parser panic, and parsing
//! stays linear (a bounded number of cases, each with a time bound).

use std::time::{Duration, Instant};

use proptest::prelude::*;

const SEEDS: &[&str] = &[
    "FROM alpine AS b\nRUN --mount=type=cache,target=/c echo $A \\\n  && ls\n",
    "# escape=`\nFROM x\nCOPY --from=b --chown=1:1 [\"a\", \"b\"] /c/\n",
    "FROM a\nRUN <<EOF\nbody\nEOF\nCOPY <<-X /f\n\tt\nX\n",
    "ARG A=1 B\nFROM $A\nENV K=v L=\"w x\" M\nLABEL a=b\nHEALTHCHECK --interval=5s CMD [\"x\"]\n",
    "FROM a\nONBUILD RUN x\nSHELL [\"sh\", \"-c\"]\nEXPOSE 80/tcp\nVOLUME [\"/v\"]\nWORKDIR ${W:-/w}\n",
];

const ALPHABET: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    " ",
    "\n",
    "\\",
    "`",
    "\"",
    "'",
    "$",
    "${",
    "}",
    ":-",
    "#",
    "<<",
    "EOF",
    "--",
    "=",
    "[",
    "]",
    ",",
    "\t",
    "\r\n",
    "\u{feff}",
    "é",
    "\0",
    "--mount=",
    "type=",
    "AS",
    "a",
    "/",
    "-",
];

fn check(src: &str) {
    let start = Instant::now();
    let parsed = rbuild_parser::parse(src);
    let _ = parsed.dockerfile.dump();
    for d in &parsed.diagnostics {
        assert!(
            d.span.end <= src.len(),
            "span {:?} beyond {} in {src:?}",
            d.span,
            src.len()
        );
        assert!(
            src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end),
            "span {:?} splits a character in {src:?}",
            d.span
        );
    }
    assert!(start.elapsed() < Duration::from_secs(2), "slow on {src:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary strings never panic the parser.
    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        check(&s);
    }

    /// Dockerfile-shaped token soup never panics the parser.
    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..80)) {
        check(&tokens.concat());
    }

    /// Valid Dockerfiles with random bytes inserted, deleted or replaced never panic.
    #[test]
    fn mutated_dockerfiles_never_panic(
        seed in proptest::sample::select(SEEDS),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8),
    ) {
        let mut chars: Vec<char> = seed.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        check(&chars.into_iter().collect::<String>());
    }
}

/// Long lines and many continuations parse in linear time (no quadratic blow-up).
#[test]
fn long_inputs_stay_linear() {
    let line = format!("FROM a\nRUN {}\n", "x ".repeat(500_000));
    let cont = format!("FROM a\nRUN {}true\n", "a \\\n".repeat(100_000));
    let nested = format!(
        "FROM a\nENV A={}x{}\n",
        "${B:-".repeat(5_000),
        "}".repeat(5_000)
    );
    for src in [line, cont, nested] {
        check(&src);
    }
}

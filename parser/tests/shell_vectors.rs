//! Table-driven expansion vectors from `testdata/shell` (`input | expected`), run against
//! `expand_word` / `expand_words` with a fixed environment.

use std::collections::HashMap;
use std::path::PathBuf;

use rbuild_parser::shell::{expand_word, expand_words};

fn env() -> HashMap<String, String> {
    [
        ("FOO", "foo"),
        ("BAR", "bar"),
        ("EMPTY", ""),
        ("SPACED", "a  b"),
        ("GREEDY", "aXbXc"),
        ("PATH", "/usr/local/bin:/usr/bin"),
        ("KOREAN", "한국어"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn vectors(name: &str) -> Vec<(usize, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/shell")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            // The first ` | ` separates input and expected (which may itself contain `|`).
            let (input, expected) = l
                .split_once(" | ")
                .or_else(|| l.strip_suffix(" |").map(|x| (x, "")))
                .unwrap_or_else(|| panic!("{name}:{}: no ` | `", i + 1));
            (i + 1, input.trim().to_string(), expected.to_string())
        })
        .collect()
}

fn run_words(file: &str, escape: char) {
    let env = env();
    let mut failures = Vec::new();
    let cases = vectors(file);
    for (line, input, expected) in &cases {
        let got = expand_word(input, &env, escape);
        let ok = match (expected.strip_prefix("error: "), &got) {
            (Some(msg), Err(e)) => e.message.contains(msg),
            (None, Ok(r)) => &r.value == expected,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{file}:{line}: `{input}` expected `{expected}`, got {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Single-word expansion with `\` as escape matches every vector.
#[test]
fn word_vectors() {
    run_words("words.txt", '\\');
}

/// Backtick as the escape character.
#[test]
fn backtick_vectors() {
    run_words("backtick.txt", '`');
}

/// Word splitting (EXPOSE/VOLUME style) matches every vector.
#[test]
fn split_vectors() {
    let env = env();
    let mut failures = Vec::new();
    for (line, input, expected) in vectors("split.txt") {
        let want: Vec<String> = serde_json::from_str(&expected).unwrap();
        match expand_words(&input, &env, '\\') {
            Ok(r) if r.words == want => {}
            other => failures.push(format!(
                "split.txt:{line}: `{input}` expected {want:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Used and unset names are reported for cache keys and the UndefinedVar lint.
#[test]
fn reports_which_variables_a_word_uses() {
    let env = env();
    let r = expand_word("${FOO}/${NOPE:-$BAR}/$EMPTY/${ALSO_NOPE+x}", &env, '\\').unwrap();
    assert_eq!(
        r.used.iter().map(String::as_str).collect::<Vec<_>>(),
        ["BAR", "EMPTY", "FOO"]
    );
    assert_eq!(
        r.unset.iter().map(String::as_str).collect::<Vec<_>>(),
        ["ALSO_NOPE", "NOPE"]
    );
    let closure = |name: &str| (name == "X").then(|| "1".to_string());
    assert_eq!(expand_word("$X$Y", &closure, '\\').unwrap().value, "1");
}

//! BuildKit conformance of the parser API: every case in `../shared/conformance/parser/cases`
//! (or `$RBUILD_SHARED`) has no syntax error and dumps byte for byte to its `result`. A
//! missing shared directory fails the test. (The negative cases, `errors/`, are checked
//! through the `rbuild` binary in `cli/tests/it/parser_conformance.rs`: exit codes and rendered
//! locations.)

use std::path::PathBuf;

use rbuild_parser::{parse, parse_bytes};

/// BuildKit's conformance dumps: `$RBUILD_SHARED`, else `../shared` beside the repository.
fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBUILD_SHARED") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        dir.is_dir(),
        "the shared test data is missing: expected {} (set RBUILD_SHARED)",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

/// Every conformance case has exactly BuildKit's AST dump (what `rbuild parse --dump`
/// prints; only a syntax error would make it refuse); all mismatches are reported.
#[test]
fn every_case_dumps_exactly_like_buildkit() {
    let dir = shared_dir().join("conformance/parser/cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance cases")
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        let bytes = std::fs::read(case.join("Dockerfile")).unwrap();
        let parsed = parse_bytes(&bytes).parsed;
        let dump = parsed.dockerfile.dump();
        if parsed.has_syntax_errors() || dump != expected {
            let errors: Vec<&str> = parsed
                .errors()
                .filter(|d| d.syntax)
                .map(|d| d.message.as_str())
                .collect();
            failures.push(format!(
                "== {}\n-- expected\n{expected}-- got\n{dump}-- syntax errors\n{}",
                case.file_name().unwrap().to_string_lossy(),
                errors.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Unknown instructions dump as BuildKit does: one empty argument after the flags, also as an
/// ONBUILD trigger.
#[test]
fn dump_of_unknown_instructions_has_the_empty_argument() {
    let parsed = parse("FROM alpine\nfoo --x=1 bar\nONBUILD bogus\n");
    assert!(!parsed.has_syntax_errors(), "{:?}", parsed.diagnostics);
    assert_eq!(
        parsed.dockerfile.dump(),
        "(from \"alpine\")\n(foo [\"--x=1\"] \"\")\n(onbuild (bogus \"\"))\n",
        "{:?}",
        parsed.diagnostics
    );
}

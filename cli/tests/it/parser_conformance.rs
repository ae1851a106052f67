//! BuildKit conformance through the binary: every input in `../shared/conformance/parser/errors`
//! is refused by `rbuild parse` and `rbuild check` with exit 1 and a located diagnostic. (That
//! every case in `cases/` dumps byte for byte to its `result` is a parser test:
//! `parser/tests/conformance.rs`.)

use crate::support::{rbuild, shared_dir, text};

/// Every negative case is refused: non-zero exit and a diagnostic naming `file:line:col`.
#[test]
fn every_error_case_is_refused_with_a_location() {
    let dir = shared_dir().join("conformance/parser/errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance errors")
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let file = case.join("Dockerfile");
        for cmd in ["parse", "check"] {
            let out = rbuild().arg(cmd).arg(&file).output().unwrap();
            let (_, stderr) = text(&out);
            let located = stderr.contains(&format!("{}:", file.display()))
                && stderr
                    .split(&format!("{}:", file.display()))
                    .nth(1)
                    .is_some_and(|rest| {
                        let mut it = rest.split(|c: char| !c.is_ascii_digit());
                        it.next().is_some_and(|l| !l.is_empty())
                    });
            if out.status.code() != Some(1) || !located {
                failures.push(format!(
                    "{} {cmd}: exit {:?}\n{stderr}",
                    case.display(),
                    out.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! BuildKit conformance: every case in `../shared/conformance/parser/cases` dumps byte for byte
//! to its `result`, and every input in `errors/` is refused with a located diagnostic.

mod common;

use common::{rbuild, shared_dir, text};

/// Every conformance case prints exactly BuildKit's AST dump; all mismatches are reported.
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
        let out = rbuild()
            .args(["parse", "--dump"])
            .arg(case.join("Dockerfile"))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        if !out.status.success() || stdout != expected {
            failures.push(format!(
                "== {} (exit {:?})\n-- expected\n{expected}-- got\n{stdout}-- stderr\n{stderr}",
                case.file_name().unwrap().to_string_lossy(),
                out.status.code()
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

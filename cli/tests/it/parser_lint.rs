//! `rbuild check` and the `# check=` directive: `skip` silences rules (exit 0),
//! `error=true` turns warnings into a failing exit. (The rules themselves, one fixture each in
//! `testdata/lint`, are parser tests: `parser/tests/lint.rs`.)

use crate::support::{rbuild, text};

fn check_json(dir: &std::path::Path, name: &str) -> (serde_json::Value, Option<i32>) {
    let out = rbuild()
        .current_dir(dir)
        .args(["check", "--format", "json", name])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}"));
    (v, out.status.code())
}

/// `# check=skip=...` drops the named rules; `# check=error=true` makes warnings fail.
#[test]
fn check_directive_skips_and_escalates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("skip"),
        "# check=skip=MaintainerDeprecated,JSONArgsRecommended\nFROM alpine\nMAINTAINER me\nCMD run\n",
    )
    .unwrap();
    let (v, code) = check_json(dir.path(), "skip");
    assert_eq!(v["warnings"], 0, "{v:#}");
    assert_eq!(code, Some(0));

    std::fs::write(
        dir.path().join("strict"),
        "# check=error=true\nFROM alpine\nMAINTAINER me\n",
    )
    .unwrap();
    let (v, code) = check_json(dir.path(), "strict");
    assert_eq!(v["warnings"], 1, "{v:#}");
    assert_eq!(code, Some(1));
}

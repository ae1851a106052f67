//! Lint rules (`testdata/lint/<Rule>*.Dockerfile`): each fixture triggers the rule in its name,
//! `# check=skip` silences rules, `# check=error=true` turns warnings into a failing exit.

mod common;

use common::{rbuild, testdata, text};

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

/// Every lint fixture raises the rule it is named after (and no errors), and the full list of
/// warnings matches the snapshot.
#[test]
fn each_rule_fixture_triggers_its_rule() {
    let dir = testdata().join("lint");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    let mut summary = String::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let rule = name.split(['.', '-']).next().unwrap().to_string();
        let (v, code) = check_json(&dir, &name);
        assert_eq!(v["errors"], 0, "{name}: {v:#}");
        let diags = v["diagnostics"].as_array().unwrap();
        let rules: Vec<&str> = diags.iter().filter_map(|d| d["rule"].as_str()).collect();
        if rule == "Clean" {
            assert!(rules.is_empty(), "{name}: {rules:?}");
            assert_eq!(code, Some(0));
        } else {
            assert!(
                rules.contains(&rule.as_str()),
                "{name}: expected {rule}, got {rules:?}"
            );
        }
        for d in diags {
            summary.push_str(&format!(
                "{name}:{}:{} {} {}\n",
                d["line"],
                d["column"],
                d["rule"].as_str().unwrap_or("-"),
                d["message"].as_str().unwrap()
            ));
        }
    }
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(testdata().join("lint/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.bind(|| insta::assert_snapshot!("lint-warnings", summary));
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

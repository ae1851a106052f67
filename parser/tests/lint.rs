//! Lint rules (`testdata/lint/<Rule>*.Dockerfile`): each fixture raises the rule in its name
//! and no error; the warnings of all fixtures match one snapshot. (`# check=error=true`
//! failing `rbuild check` is checked through the binary in `cli/tests/it/parser_lint.rs`.)

use std::path::PathBuf;

use rbuild_parser::{Rule, parse_bytes};

/// Every lint fixture raises the rule it is named after (and no errors), and the full list of
/// warnings matches the snapshot.
#[test]
fn each_rule_fixture_triggers_its_rule() {
    let testdata = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let dir = testdata.join("lint");
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
        let bytes = std::fs::read(file).unwrap();
        let parsed = parse_bytes(&bytes).parsed;
        assert_eq!(
            parsed.errors().count(),
            0,
            "{name}: {:#?}",
            parsed.diagnostics
        );
        let diags = &parsed.diagnostics;
        let rules: Vec<&str> = diags
            .iter()
            .filter_map(|d| d.rule)
            .map(Rule::as_str)
            .collect();
        if rule == "Clean" {
            assert!(rules.is_empty(), "{name}: {rules:?}");
            // Nothing at all, so `rbuild check` passes.
            assert!(diags.is_empty(), "{name}: {diags:#?}");
        } else {
            assert!(
                rules.contains(&rule.as_str()),
                "{name}: expected {rule}, got {rules:?}"
            );
        }
        for d in diags {
            summary.push_str(&format!(
                "{name}:{}:{} {} {}\n",
                d.line,
                d.column,
                d.rule.map_or("-", Rule::as_str),
                d.message
            ));
        }
    }
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(dir.join("snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.bind(|| insta::assert_snapshot!("lint-warnings", summary));
}

//! The project's own parser fixtures (`testdata/parser/{ok,err}`): accepted files snapshot
//! their typed listing and AST dump; refused files snapshot the rendered diagnostics (80
//! columns, no colour) and must exit 1 with a `file:line:col` location. Also the binary's
//! own handling: stdin, a missing file, `check` reporting every error. (The dump of unknown
//! instructions and the JSON of the typed tree are parser tests: `parser/tests/`.)

use std::path::{Path, PathBuf};

use crate::support::{rbuild, testdata, text};

fn fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(testdata().join("parser/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

/// Run `rbuild ARGS FILE` inside the fixture's directory so paths in output are relative.
fn run(dir: &Path, args: &[&str], file: &str) -> std::process::Output {
    rbuild()
        .current_dir(dir)
        .args(args)
        .arg(file)
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap()
}

/// Valid fixtures parse without errors; their listing and dump match the snapshots.
#[test]
fn ok_fixtures_parse_and_match_snapshots() {
    let dir = testdata().join("parser/ok");
    let _guard = settings().bind_to_scope();
    for file in fixtures(&dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let listing = run(&dir, &["parse"], &name);
        let (stdout, stderr) = text(&listing);
        assert!(listing.status.success(), "{name}: {stderr}");
        let dump = run(&dir, &["parse", "--dump"], &name);
        let (dump_out, _) = text(&dump);
        insta::assert_snapshot!(
            format!("ok-{}", stem(&file)),
            format!("{stdout}\n--- dump\n{dump_out}")
        );
    }
}

/// Invalid fixtures are refused with exit 1 and a located, rendered diagnostic.
#[test]
fn err_fixtures_are_refused_with_pointed_diagnostics() {
    let dir = testdata().join("parser/err");
    let _guard = settings().bind_to_scope();
    for file in fixtures(&dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = run(&dir, &["check"], &name);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("[{name}:")),
            "{name}: no file:line:col in\n{stderr}"
        );
        insta::assert_snapshot!(format!("err-{}", stem(&file)), stderr);
        let parse = run(&dir, &["parse"], &name);
        assert_eq!(parse.status.code(), Some(1), "{name}: parse accepted it");
    }
}

/// `check` reports every problem in the file, not just the first.
#[test]
fn check_reports_all_errors_at_once() {
    let dir = testdata().join("parser/err");
    let out = run(
        &dir,
        &["check", "--format", "json"],
        "many-errors.Dockerfile",
    );
    let (stdout, _) = text(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errors"], 4, "{stdout}");
    assert_eq!(out.status.code(), Some(1));
}

/// `-` reads the Dockerfile from stdin.
#[test]
fn parse_reads_stdin() {
    let out = rbuild()
        .args(["parse", "--dump", "-"])
        .write_stdin("FROM alpine\nRUN echo hi\n")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "(from \"alpine\")\n(run \"echo hi\")\n");
}

/// A missing file is a clear error, not a panic.
#[test]
fn missing_file_is_an_error() {
    let out = rbuild()
        .args(["check", "/nonexistent/Dockerfile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("cannot read"));
}

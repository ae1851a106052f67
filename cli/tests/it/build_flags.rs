//! The `docker build` flags CI scripts pass (issue 16, section 1): `--rm`/`--force-rm`,
//! `--label`, and the others as they come; docker/buildx behaviour is the reference.

use std::path::Path;

use serde_json::Value;

use crate::support::{TestEnv, text, write_file};

/// `rbuild build ARGS CONTEXT` in `env`, with plain progress.
fn build(env: &TestEnv, context: &Path, args: &[&str]) -> std::process::Output {
    env.rbuild()
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(context)
        .output()
        .unwrap()
}

/// The image config of `name` as `rbuild inspect` shows it (docker's shape).
fn inspect(env: &TestEnv, name: &str) -> Value {
    let out = env.rbuild().args(["inspect", name]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    v[0].clone()
}

#[test]
fn rm_and_force_rm_are_accepted_and_ignored_with_a_note() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\nLABEL a=b\n");
    for flag in ["--rm", "--force-rm"] {
        let out = build(&env, ctx.path(), &[flag, "-t", "x:1"]);
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let notes: Vec<&str> = stderr.lines().filter(|l| l.contains(flag)).collect();
        assert_eq!(
            notes,
            [format!(
                "note: {flag} is ignored: rbuild keeps no intermediate containers"
            )],
            "{stderr}"
        );
    }
    // Without either flag, no note.
    let out = build(&env, ctx.path(), &["-t", "x:1"]);
    assert!(!text(&out).1.contains("note:"), "{}", text(&out).1);
}

#[test]
fn labels_from_the_command_line_override_the_dockerfile() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM scratch AS base\nLABEL a=base\nFROM base\nLABEL a=df b=df\n",
    );
    let out = build(
        &env,
        ctx.path(),
        &[
            "--label", "a=cli", "--label", "c=x=y", "--label", "d=", "--label", "c=last", "-t",
            "l:1",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let labels = &inspect(&env, "l:1")["Config"]["Labels"];
    assert_eq!(
        labels,
        &serde_json::json!({"a": "cli", "b": "df", "c": "last", "d": ""})
    );
    // The same build without labels gives the Dockerfile's own.
    let out = build(&env, ctx.path(), &["-t", "l:2"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let labels = &inspect(&env, "l:2")["Config"]["Labels"];
    assert_eq!(labels, &serde_json::json!({"a": "df", "b": "df"}));
}

#[test]
fn a_label_without_equals_is_a_usage_error_at_the_flag() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\n");
    for bad in ["novalue", "=v"] {
        let out = build(&env, ctx.path(), &["--label", bad]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{bad}' for '--label <KEY=VALUE>'")),
            "{stderr}"
        );
    }
}

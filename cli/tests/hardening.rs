//! Hostile and accidental inputs the CLI must survive (issue 12 §3, §4, §6): bounded variable
//! expansion, capped Dockerfile and `.dockerignore` reads, outputs that never replace devices
//! or write into the store, prompts before destructive commands. Each runs the real binary.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestEnv, text, write_file};

/// A Dockerfile whose ARGs double in size on every line, 40 times.
fn doubling_dockerfile() -> String {
    let mut df = String::from("ARG a0=xxxxxxxx\n");
    for i in 1..=40 {
        df.push_str(&format!("ARG a{i}=${{a{}}}${{a{}}}\n", i - 1, i - 1));
    }
    df.push_str("FROM scratch\nARG a40\nENV big=$a40\n");
    df
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", dockerfile);
    ctx
}

/// Asserts a quick failure with exit code 1, no panic; returns stderr.
#[track_caller]
fn fails_fast(cmd: &mut assert_cmd::Command) -> String {
    let start = Instant::now();
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    stderr
}

// ---- §3 bounded inputs -------------------------------------------------------------------------

/// `build`, `plan`, `explain` and `check` all stop at the line whose expansion crosses the
/// per-word bound (4 MiB: `a20` is 8 MiB, line 21), with a pointed report; the bound is
/// overridable by the environment.
#[test]
fn exponential_args_fail_at_the_crossing_line() {
    let env = TestEnv::new();
    let ctx = context(&doubling_dockerfile());
    for cmd in [&["build", "."][..], &["plan", "."], &["explain", "."]] {
        let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(cmd));
        assert!(
            stderr.contains("rbuild::plan::expansion_too_large"),
            "{stderr}"
        );
        assert!(stderr.contains("[Dockerfile:21:9]"), "{cmd:?}: {stderr}");
        assert!(stderr.contains("RBUILD_EXPANSION_LIMIT"), "{stderr}");
    }
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["check", "Dockerfile"]),
    );
    assert!(
        stderr.contains("rbuild::parse::expansion_too_large"),
        "{stderr}"
    );
    assert!(stderr.contains("[Dockerfile:21:9]"), "{stderr}");
    assert!(stderr.contains("1 error"), "{stderr}");

    // A lower bound (1 KiB: a8 is 2 KiB, line 9) fails earlier.
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .env("RBUILD_EXPANSION_LIMIT", "1KiB")
            .args(["plan", "."]),
    );
    assert!(stderr.contains("[Dockerfile:9:8]"), "{stderr}");
    // And the total per build: 200 values of 1 KiB against a 100 KiB budget.
    let mut df = String::from("FROM scratch\nENV k=");
    df.push_str(&"k".repeat(1000));
    df.push('\n');
    for i in 0..200 {
        df.push_str(&format!("ENV c{i}=$k\n"));
    }
    let ctx = context(&df);
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .env("RBUILD_EXPANSION_TOTAL", "100KiB")
            .args(["plan", "."]),
    );
    assert!(stderr.contains("in total"), "{stderr}");
    assert!(stderr.contains("RBUILD_EXPANSION_TOTAL"), "{stderr}");
}

/// `-f /dev/zero` stops at the size cap; a file of NULs just under it gives a short report
/// (the snippet is cut, the message quotes a bounded part of the word).
#[test]
fn dockerfile_reads_are_capped_and_reports_stay_short() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\n");
    let stderr =
        fails_fast(
            env.rbuild()
                .current_dir(ctx.path())
                .args(["build", "-f", "/dev/zero", "."]),
        );
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");
    let stderr = fails_fast(env.rbuild().args(["check", "/dev/zero"]));
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");

    let nul = ctx.path().join("nul.df");
    std::fs::write(&nul, vec![0u8; 4_000_000]).unwrap();
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["build", "-f", "nul.df", "."]),
    );
    assert!(stderr.contains("NUL byte"), "{stderr}");
    assert!(
        stderr.len() < 20_000,
        "{} bytes of diagnostics",
        stderr.len()
    );
    let stderr = fails_fast(env.rbuild().arg("check").arg(&nul));
    assert!(
        stderr.len() < 20_000,
        "{} bytes of diagnostics",
        stderr.len()
    );

    // Thousands of errors: only the first ones are printed, the count names them all.
    let mut many = String::from("FROM scratch\n");
    for _ in 0..5000 {
        many.push_str("BAD x\n");
    }
    std::fs::write(ctx.path().join("many.df"), &many).unwrap();
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["check", "many.df"]),
    );
    assert!(
        stderr.contains("5000 errors"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
    assert!(
        stderr.contains("and 4950 more"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
    assert!(
        stderr.len() < 50_000,
        "{} bytes of diagnostics",
        stderr.len()
    );
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["build", "-f", "many.df", "."]),
    );
    assert!(
        stderr.contains("and 4950 more"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
}

/// A Dockerfile-specific ignore file that is a symlink to `/dev/zero` is refused (not a
/// regular file), and one larger than the cap is refused at the cap.
#[test]
fn dockerignore_reads_are_capped() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    let ignore = ctx.path().join("Dockerfile.dockerignore");
    std::os::unix::fs::symlink("/dev/zero", &ignore).unwrap();
    let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(["build", "."]));
    assert!(stderr.contains("not a regular file"), "{stderr}");
    std::fs::remove_file(&ignore).unwrap();
    std::fs::write(&ignore, "#".repeat(5 << 20)).unwrap();
    let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(["build", "."]));
    assert!(stderr.contains("the limit for an ignore file"), "{stderr}");
    assert_fsck(&env);
}

/// `rbuild fsck` finds the store sound.
#[track_caller]
fn assert_fsck(env: &TestEnv) {
    if !env.root().join("index.json").exists() {
        return;
    }
    let out = env.rbuild().args(["system", "fsck"]).output().unwrap();
    assert!(out.status.success(), "fsck: {:?}", text(&out));
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

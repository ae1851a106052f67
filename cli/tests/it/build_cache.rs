//! The build cache seen from the command line: what hits, what misses, and what `explain`
//! says about each kind of change (issue 5's list), plus stage scheduling facts.

use crate::support::{TestEnv, load_busybox, text, write_file as write};
use std::path::Path;

use serde_json::Value;

/// Build and return (stdout, stderr); panics with the output when it fails.
fn build(env: &TestEnv, ctx: &Path, extra: &[&str]) -> (String, String) {
    let out = env
        .rbuild()
        .args(["build", "--progress", "plain", "-t", "cachetest"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "build failed:\n{stderr}");
    (stdout, stderr)
}

/// `explain --format json` as a value.
fn explain(env: &TestEnv, ctx: &Path, extra: &[&str]) -> Value {
    let out = env
        .rbuild()
        .args(["explain", "--format", "json"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "explain failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The reasons of the first missed step whose text starts with `prefix`.
fn reasons_of(explained: &Value, prefix: &str) -> Vec<Value> {
    explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix} in {explained}"))["reasons"]
        .as_array()
        .unwrap()
        .clone()
}

/// The output lines of `sh -c SCRIPT` in a container of the built image.
fn run_sh(env: &TestEnv, script: &str) -> Vec<String> {
    let out = env
        .rbuild()
        .args(["run", "--rm", "cachetest", "sh", "-c", script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout.lines().map(str::to_string).collect()
}

/// A store with busybox loaded and a context holding `dockerfile`.
fn busybox_case(dockerfile: &str) -> (TestEnv, tempfile::TempDir) {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", dockerfile);
    (env, ctx)
}

fn image_id(env: &TestEnv) -> String {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    store.resolve_image("cachetest").unwrap().id().to_string()
}

fn scratch_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM scratch\nCOPY . /app/\nCOPY a.txt /copy-of-a\n",
    );
    write(ctx.path(), "a.txt", "alpha\n");
    write(ctx.path(), "src/main.rs", "fn main() {}\n");
    ctx
}

/// An unchanged rebuild executes nothing and yields the same image ID.
#[test]
fn unchanged_rebuild_is_fully_cached_with_the_same_id() {
    let env = TestEnv::new();
    let ctx = scratch_context();
    build(&env, ctx.path(), &[]);
    let first = image_id(&env);
    let (_, stderr) = build(&env, ctx.path(), &[]);
    assert_eq!(stderr.matches(" CACHED").count(), 2, "{stderr}");
    assert_eq!(image_id(&env), first);
    let explained = explain(&env, ctx.path(), &[]);
    assert_eq!(explained["missed"], 0);
}

/// Content, mode, added and removed files are each named, with what changed.
#[test]
fn file_changes_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let ctx = scratch_context();
    build(&env, ctx.path(), &[]);
    write(ctx.path(), "src/main.rs", "fn main() { println!(); }\n");
    std::fs::set_permissions(
        ctx.path().join("a.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(ctx.path(), "new.txt", "new\n");
    let explained = explain(&env, ctx.path(), &[]);
    let reasons = reasons_of(&explained, "COPY . /app/");
    let diff = &reasons[0]["diff"];
    assert_eq!(reasons[0]["reason"], "files_changed", "{reasons:?}");
    let changed: Vec<(String, Vec<String>)> =
        serde_json::from_value(diff["changed"].clone()).unwrap();
    assert!(
        changed.contains(&("src/main.rs".into(), vec!["content".into()])),
        "{changed:?}"
    );
    assert!(
        changed.contains(&("a.txt".into(), vec!["mode 0644→0755".into()])),
        "{changed:?}"
    );
    assert_eq!(diff["added"], serde_json::json!(["new.txt"]));
    // The next step builds on the changed one; until that is rebuilt, that is all we know.
    let second = reasons_of(&explained, "COPY a.txt");
    assert_eq!(second[0]["reason"], "parent_changed", "{second:?}");

    std::fs::remove_file(ctx.path().join("new.txt")).unwrap();
    build(&env, ctx.path(), &[]);
    std::fs::remove_file(ctx.path().join("src/main.rs")).unwrap();
    let explained = explain(&env, ctx.path(), &[]);
    let diff = &reasons_of(&explained, "COPY . /app/")[0]["diff"];
    assert_eq!(diff["removed"], serde_json::json!(["src/main.rs"]));
}

/// COPY without --chown makes files 0:0, so a different owner in the context does not miss:
/// keys follow the effective result.
#[test]
fn ownership_in_the_context_does_not_bust_plain_copy() {
    let env = TestEnv::new();
    let ctx = scratch_context();
    build(&env, ctx.path(), &[]);
    std::os::unix::fs::chown(ctx.path().join("a.txt"), Some(1234), Some(1234)).unwrap();
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 0);
}

/// A `.dockerignore` change that drops a copied file misses, naming the removed file.
#[test]
fn dockerignore_change_misses() {
    let env = TestEnv::new();
    let ctx = scratch_context();
    build(&env, ctx.path(), &[]);
    write(ctx.path(), ".dockerignore", "src/\n");
    let explained = explain(&env, ctx.path(), &[]);
    let diff = &reasons_of(&explained, "COPY . /app/")[0]["diff"];
    let removed: Vec<String> = serde_json::from_value(diff["removed"].clone()).unwrap();
    assert!(removed.contains(&"src/main.rs".to_string()), "{diff}");
}

/// An ARG change misses the RUN that sees it (with old → new) but not steps before its use;
/// cache-mount contents never bust a step.
#[test]
fn arg_changes_and_cache_mounts() {
    let (env, ctx) = busybox_case(
        "FROM busybox:1.35\n\
         RUN --mount=type=cache,target=/cache date +%s%N > /cache/stamp && echo first > /first\n\
         ARG VERSION=1.2\n\
         RUN echo $VERSION > /version\n",
    );
    build(&env, ctx.path(), &[]);
    // The cache mount's contents changed (new stamp) but the step stays cached.
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 0);
    let explained = explain(&env, ctx.path(), &["--build-arg", "VERSION=1.3"]);
    assert_eq!(explained["missed"], 1, "{explained}");
    let reasons = reasons_of(&explained, "RUN echo $VERSION");
    assert_eq!(
        reasons[0],
        serde_json::json!({"reason": "var_changed", "name": "VERSION", "old": "1.2", "new": "1.3"})
    );
    // A build arg nobody declared changes nothing.
    assert_eq!(
        explain(&env, ctx.path(), &["--build-arg", "UNUSED=x"])["missed"],
        0
    );
}

/// A context bind mount shows exactly what the step's key covers: files excluded by
/// `.dockerignore` are absent, and changing one does not miss; changing an included file does.
#[test]
fn context_bind_mounts_honour_dockerignore() {
    let (env, ctx) = busybox_case(
        "FROM busybox:1.35\n\
         RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /listing && cat app/conf\n",
    );
    write(ctx.path(), ".dockerignore", "*.env\napp/tmp\n");
    write(ctx.path(), "app/conf", "v1\n");
    write(ctx.path(), "app/tmp/scratch", "x\n");
    write(ctx.path(), "secret.env", "TOKEN=1\n");
    build(&env, ctx.path(), &[]);
    assert_eq!(
        run_sh(&env, "cat /listing"),
        [
            ".",
            "./.dockerignore",
            "./Dockerfile",
            "./app",
            "./app/conf"
        ]
    );
    write(ctx.path(), "secret.env", "TOKEN=2\n");
    write(ctx.path(), "app/tmp/scratch", "y\n");
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 0);
    write(ctx.path(), "app/conf", "v2\n");
    let explained = explain(&env, ctx.path(), &[]);
    assert_eq!(explained["missed"], 1, "{explained}");
}

/// `--mount=type=cache,from=STAGE,source=DIR` starts the cache as a copy of that directory
/// (symlinks resolved inside the stage); the cache then persists between steps, and the
/// stage's files are not changed by writes to it.
#[test]
fn cache_mounts_start_from_a_stage() {
    let (env, ctx) = busybox_case(
        "FROM busybox:1.35 AS seed\n\
         RUN mkdir -p /data/sub && echo seeded > /data/sub/f && ln -s data /link\n\
         FROM busybox:1.35\n\
         RUN --mount=type=cache,target=/c,from=seed,source=/link cat /c/sub/f > /out1 && echo more >> /c/sub/f\n\
         RUN --mount=type=cache,target=/c,from=seed,source=/link cat /c/sub/f > /out2\n\
         COPY --from=seed /data/sub/f /out3\n",
    );
    build(&env, ctx.path(), &[]);
    assert_eq!(
        run_sh(
            &env,
            "cat /out1 /out2 /out3; test -e /c && echo present || echo absent"
        ),
        ["seeded", "seeded", "more", "seeded", "absent"]
    );
    // A source that is not a directory of the stage is a pointed error.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35 AS seed\nRUN echo x > /f\nFROM busybox:1.35\n\
         RUN --mount=type=cache,target=/c,from=seed,source=/f true\n",
    );
    let out = env
        .rbuild()
        .args(["build", "--progress", "plain", "-t", "other"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cache source `/f` is not a directory") && stderr.contains("Dockerfile:4"),
        "{stderr}"
    );
}

/// A base image retagged to other content is reported with both digests; children follow
/// their parent.
#[test]
fn base_and_parent_changes() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "base/Dockerfile",
        "FROM busybox:1.35\nRUN echo v1 > /v\n",
    );
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "mybase:latest"])
        .arg(ctx.path().join("base"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    write(
        ctx.path(),
        "Dockerfile",
        "FROM mybase\nRUN echo one > /one\nRUN echo two > /two\n",
    );
    write(ctx.path(), ".dockerignore", "base\n");
    build(&env, ctx.path(), &[]);
    write(
        ctx.path(),
        "base/Dockerfile",
        "FROM busybox:1.35\nRUN echo v2 > /v\n",
    );
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "mybase:latest"])
        .arg(ctx.path().join("base"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let explained = explain(&env, ctx.path(), &[]);
    let first = reasons_of(&explained, "RUN echo one");
    assert_eq!(first[0]["reason"], "base_image_changed", "{first:?}");
    assert_eq!(first[0]["reference"], "docker.io/library/mybase:latest");
    let second = reasons_of(&explained, "RUN echo two");
    assert_eq!(second[0]["reason"], "parent_changed", "{second:?}");
}

/// `--fail-on-cache-miss` is a CI guard: non-zero when anything would run.
#[test]
fn fail_on_cache_miss_guards() {
    let env = TestEnv::new();
    let ctx = scratch_context();
    let out = env
        .rbuild()
        .args(["explain", "--fail-on-cache-miss"])
        .arg(ctx.path())
        .output()
        .unwrap();
    // Exit 5: a cold cache, which CI can tell from a broken build (1).
    assert_eq!(out.status.code(), Some(5));
    let out = env
        .rbuild()
        .args(["build", "--fail-on-cache-miss", "-q"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{:?}", text(&out));
    build(&env, ctx.path(), &[]);
    let out = env
        .rbuild()
        .args(["build", "--fail-on-cache-miss", "-q"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Two independent stages that each sleep 1 s finish in well under 2 s: they run in parallel
/// (measured from the first RUN starting to the last finishing, from the JSON progress events,
/// so sandbox start-up and a loaded machine do not blur it). `--target` builds only what the
/// target needs and says which stages it skipped.
#[test]
fn parallel_stages_and_target() {
    let (env, ctx) = busybox_case(
        "FROM busybox:1.35 AS a\nRUN sleep 1 && echo a > /a\n\
         FROM busybox:1.35 AS b\nRUN sleep 1 && echo b > /b\n\
         FROM busybox:1.35 AS unused\nRUN exit 1\n\
         FROM busybox:1.35 AS final\nENV X=1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
    );
    let out = env
        .rbuild()
        .args([
            "build",
            "--progress",
            "json",
            "-j",
            "4",
            "--target",
            "final",
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let times = |kind: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| {
                e["event"] == kind && e["step"].as_str().is_some_and(|s| s.contains("sleep 1"))
            })
            .map(|e| e["time"].as_f64().unwrap())
            .collect()
    };
    let (starts, ends) = (times("step_miss"), times("step_done"));
    assert_eq!((starts.len(), ends.len()), (2, 2), "{stderr}");
    let span = ends.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(span < 1.8, "stages did not overlap: {span:.2}s\n{stderr}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stage_skipped" && e["stage"] == "unused"),
        "{stderr}"
    );
    // The summary counts the four steps that make layers; ENV is metadata.
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(
        (
            &summary["steps"],
            &summary["built"],
            &summary["cached"],
            &summary["metadata"]
        ),
        (
            &Value::from(4),
            &Value::from(4),
            &Value::from(0),
            &Value::from(1)
        ),
        "{summary}"
    );
    assert!(
        summary["manifest_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

/// `prune` drops the build cache (all of it, or beyond `--keep-storage`), and the next build
/// runs again; a generous `--keep-storage` keeps it.
#[test]
fn prune_honours_keep_storage() {
    let env = TestEnv::new();
    let ctx = scratch_context();
    build(&env, ctx.path(), &[]);
    let prune = |extra: &[&str]| {
        let out = env
            .rbuild()
            .args(["prune", "-f"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
    };
    prune(&["--keep-storage", "1GB"]);
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 0);
    prune(&["--keep-storage", "0"]);
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 2);
    build(&env, ctx.path(), &[]);
    prune(&[]);
    assert_eq!(explain(&env, ctx.path(), &[])["missed"], 2);
}

/// The rendered explanation a user reads: one line per cached step, a report per miss that
/// points at the instruction and names the changed files. Snapshot (no colour, width 100).
#[test]
fn explain_report_snapshot() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM scratch\nCOPY config.txt /etc/app/\nCOPY src/ /app/\nCOPY run.sh /app/\n",
    );
    write(ctx.path(), "config.txt", "port=80\n");
    write(ctx.path(), "src/main.rs", "fn main() {}\n");
    write(ctx.path(), "src/lib.rs", "pub fn f() {}\n");
    write(ctx.path(), "run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        ctx.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    build(&env, ctx.path(), &[]);
    write(ctx.path(), "src/main.rs", "fn main() { run() }\n");
    write(ctx.path(), "src/new.rs", "\n");
    std::fs::set_permissions(
        ctx.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = env
        .rbuild()
        .arg("explain")
        .arg(ctx.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let shown = stdout.replace(
        &ctx.path().join("Dockerfile").display().to_string(),
        "[DOCKERFILE]",
    );
    insta::assert_snapshot!(shown);
}

/// The rendered reasons for the other kinds of change, in one report: a build arg used by a
/// RUN (old → new), files removed from a `COPY .` by a new `.dockerignore` rule and by
/// deletion, and a changed instruction (`--chmod`). Snapshot (no colour, width 100).
#[test]
fn explain_report_snapshot_of_args_ignores_and_instructions() {
    let (env, ctx) = busybox_case(
        "FROM busybox:1.35\nARG VERSION=1.2\nCOPY . /ctx/\nRUN echo $VERSION > /v\n\
         COPY --chmod=644 run.sh /run.sh\n",
    );
    write(ctx.path(), "run.sh", "#!/bin/sh\n");
    write(ctx.path(), "app.log", "noise\n");
    write(ctx.path(), "old.txt", "old\n");
    build(&env, ctx.path(), &[]);
    write(ctx.path(), ".dockerignore", "*.log\n");
    std::fs::remove_file(ctx.path().join("old.txt")).unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\nARG VERSION=1.2\nCOPY . /ctx/\nRUN echo $VERSION > /v\n\
         COPY --chmod=755 run.sh /run.sh\n",
    );
    let out = env
        .rbuild()
        .args(["explain", "--build-arg", "VERSION=1.3"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let shown = stdout.replace(
        &ctx.path().join("Dockerfile").display().to_string(),
        "[DOCKERFILE]",
    );
    insta::assert_snapshot!(shown);
}

/// `explain` names files by their context path (`src/b.txt`, not the destination-relative
/// `b.txt`), says "no earlier build" on an empty store (not "its parent changed" or "source
/// stage changed"), and for `COPY --from` names the files that changed in the source stage,
/// in a dry run and in the build that rebuilds it.
#[test]
fn explain_names_context_paths_and_source_stage_files() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35 AS builder\nCOPY src/ /src/\nRUN cat /src/* > /all\nFROM busybox:1.35\nCOPY --from=builder /all /all\nCOPY src/ /app/\n",
    );
    write(ctx.path(), "src/a.txt", "a\n");
    write(ctx.path(), "src/b.txt", "b\n");

    let explained = explain(&env, ctx.path(), &[]);
    for step in explained["steps"].as_array().unwrap() {
        assert_eq!(
            step["reasons"],
            serde_json::json!([{"reason": "never_built"}]),
            "{step}"
        );
    }

    build(&env, ctx.path(), &[]);
    write(ctx.path(), "src/b.txt", "bb\n");
    std::fs::remove_file(ctx.path().join("src/a.txt")).unwrap();
    let expected_files = serde_json::json!({
        "added": [],
        "removed": ["src/a.txt"],
        "changed": [["src/b.txt", ["content"]]],
        "unknown": false,
    });
    let explained = explain(&env, ctx.path(), &[]);
    let copy = reasons_of(&explained, "COPY src/ /src/");
    assert_eq!(copy[0]["diff"], expected_files, "{copy:?}");
    let from = reasons_of(&explained, "COPY --from=builder");
    assert_eq!(
        from,
        vec![serde_json::json!({
            "reason": "source_stage_changed",
            "stage": "builder",
            "files": expected_files,
        })]
    );
    let (_, stderr) = build(&env, ctx.path(), &[]);
    assert!(
        stderr.contains(
            "missed: stage `builder` changed: 2 files changed — src/b.txt (content), src/a.txt (removed)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("missed: its parent changed (`COPY --from=builder /all /all`, line 5); 2 files changed — src/b.txt (content), src/a.txt (removed)"),
        "{stderr}"
    );

    // A source stage changed by an instruction, not by files: its first missed step is named.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35 AS builder\nCOPY src/ /src/\nRUN cat /src/* /src/* > /all\nFROM busybox:1.35\nCOPY --from=builder /all /all\nCOPY src/ /app/\n",
    );
    let explained = explain(&env, ctx.path(), &[]);
    let from = reasons_of(&explained, "COPY --from=builder");
    assert_eq!(
        from[0]["step"],
        serde_json::json!(["RUN cat /src/* /src/* > /all", 3]),
        "{from:?}"
    );
}

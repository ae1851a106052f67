//! The `docker build` flags CI scripts pass (issue 16, section 1): `--rm`/`--force-rm`,
//! `--label`, and the others as they come; docker/buildx behaviour is the reference.

use std::path::Path;

use serde_json::Value;

use crate::support::{TestEnv, load_busybox, text, write_file};

/// `rbuild build ARGS CONTEXT` in `env`, with plain progress.
fn build(env: &TestEnv, context: &Path, args: &[&str]) -> std::process::Output {
    env.rbuild()
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(context)
        .output()
        .unwrap()
}

/// `FLAG BAD` is a usage error (exit 2): clap's "invalid value 'BAD' for 'NAMED…" and `why`.
fn assert_refused(env: &TestEnv, ctx: &Path, flag: &str, bad: &str, named: &str, why: &str) {
    let out = build(env, ctx, &[flag, bad]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
    assert!(
        stderr.contains(&format!("invalid value '{bad}' for '{named}")),
        "{stderr}"
    );
    assert!(stderr.contains(why), "{bad}: {stderr}");
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

/// The counts of the summary line (`N steps, C cached, B built`) of a plain build.
fn cached_and_built(out: &std::process::Output) -> (usize, usize) {
    let (stdout, stderr) = text(out);
    let all = format!("{stdout}{stderr}");
    let line = all
        .lines()
        .find(|l| l.starts_with("built ") && l.contains(" cached, "))
        .unwrap_or_else(|| panic!("no summary in {all}"));
    let num = |word: &str| -> usize {
        let before = &line[..line.find(word).unwrap()];
        before
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" cached"), num(" built ("))
}

#[test]
fn add_host_adds_lines_to_run_steps_hosts_not_to_the_image_and_keys_the_step() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\nRUN cat /etc/hosts > /seen\n",
    );
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("root");
    let output = format!("type=local,dest={}", dest.display());
    let out = build(
        &env,
        ctx.path(),
        &[
            "--add-host",
            "db:10.0.0.5",
            "--add-host",
            "v6=[::1]",
            "--add-host",
            "six:::2",
            "-o",
            &output,
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let seen = std::fs::read_to_string(dest.join("seen")).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let tail = &lines[lines.len() - 3..];
    assert_eq!(tail, ["10.0.0.5\tdb", "::1\tv6", "::2\tsix"], "{seen}");
    // The image's own /etc/hosts (if any) is not the step's.
    let image_hosts = std::fs::read_to_string(dest.join("etc/hosts")).unwrap_or_default();
    assert!(!image_hosts.contains("10.0.0.5"), "{image_hosts}");

    // The same hosts: cached; other hosts or none: the RUN step runs again (BuildKit keeps
    // extra hosts in the exec op).
    let again = |hosts: &[&str]| {
        let mut args = Vec::new();
        for h in hosts {
            args.extend(["--add-host", *h]);
        }
        let out = build(&env, ctx.path(), &args);
        assert!(out.status.success(), "{}", text(&out).1);
        cached_and_built(&out)
    };
    assert_eq!(again(&["db:10.0.0.5", "v6=[::1]", "six:::2"]), (1, 0));
    assert_eq!(again(&["db:10.0.0.6"]), (0, 1));
    assert_eq!(again(&["db:10.0.0.6"]), (1, 0));
    assert_eq!(again(&[]), (0, 1));
    assert_eq!(again(&[]), (1, 0));
}

#[test]
fn add_host_refuses_a_bad_address_at_the_flag() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\n");
    for (bad, why) in [
        ("db", "expected NAME:IP"),
        ("db:10.0.0", "invalid IP address `10.0.0`"),
        ("db=not-an-ip", "invalid IP address `not-an-ip`"),
        (":10.0.0.1", "invalid host name ``"),
        ("db:host-gateway", "`host-gateway` is not supported"),
    ] {
        assert_refused(
            &env,
            ctx.path(),
            "--add-host",
            bad,
            "--add-host <NAME:IP>'",
            why,
        );
    }
}

#[test]
fn shm_size_and_ulimits_apply_to_run_steps_and_key_them() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\nRUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm; \
         ulimit -Sn > /nofile; ulimit -Hn >> /nofile; ulimit -c > /core\n",
    );
    let run = |args: &[&str]| -> (String, String, String, (usize, usize)) {
        let out_dir = tempfile::tempdir().unwrap();
        let dest = out_dir.path().join("root");
        let output = format!("type=local,dest={}", dest.display());
        let mut all = args.to_vec();
        all.extend(["-o", &output]);
        let out = build(&env, ctx.path(), &all);
        assert!(out.status.success(), "{}", text(&out).1);
        let read = |f: &str| std::fs::read_to_string(dest.join(f)).unwrap();
        (
            read("shm"),
            read("nofile"),
            read("core"),
            cached_and_built(&out),
        )
    };
    let (shm, nofile, core, counts) = run(&[
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=1000:2000",
        "--ulimit",
        "core=-1",
    ]);
    assert_eq!(shm, "131072\n");
    assert_eq!(nofile, "1000\n2000\n");
    assert_eq!(core, "unlimited\n");
    assert_eq!(counts, (0, 1));
    // Docker's defaults without the flags: a 64 MiB /dev/shm; and another step (key).
    let (shm, _, _, counts) = run(&[]);
    assert_eq!(shm, "65536\n");
    assert_eq!(counts, (0, 1));
    // A single value is both limits; other limits are another step.
    let (_, nofile, _, counts) = run(&["--ulimit", "nofile=512"]);
    assert_eq!(nofile, "512\n512\n");
    assert_eq!(counts, (0, 1));
    let (_, _, _, counts) = run(&["--ulimit", "nofile=512"]);
    assert_eq!(counts, (1, 0));
}

#[test]
fn bad_shm_size_and_ulimit_values_are_usage_errors_at_the_flag() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\n");
    for (flag, bad, why) in [
        (
            "--ulimit",
            "nofle=1",
            "unknown ulimit `nofle`; known: core,",
        ),
        ("--ulimit", "nofile", "expected NAME=SOFT[:HARD]"),
        (
            "--ulimit",
            "nofile=10:5",
            "soft limit of `nofile=10:5` is above its hard",
        ),
        ("--ulimit", "nofile=x", "invalid limit `x`"),
        ("--shm-size", "12x", "e.g. `128m`"),
        ("--shm-size", "0", "must be above 0"),
    ] {
        assert_refused(&env, ctx.path(), flag, bad, flag, why);
    }
}

#[test]
fn no_cache_filter_runs_the_named_stages_steps_only() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35 AS Builder\nRUN echo a > /a\nFROM busybox:1.35 AS other\n\
         RUN echo o > /o\nFROM busybox:1.35 AS final\nCOPY --from=builder /a /a\n\
         COPY --from=other /o /o\nRUN echo b\n",
    );
    // A re-run stage gives the same layer only when its mtimes do: SOURCE_DATE_EPOCH clamps
    // them, so the stages that copy from it stay cached however long the builds take (without
    // it, a second boundary between runs changes `/a`'s mtime and so its consumers' keys).
    let build = |env: &TestEnv, ctx: &Path, args: &[&str]| {
        let mut all = vec!["--build-arg", "SOURCE_DATE_EPOCH=0"];
        all.extend_from_slice(args);
        build(env, ctx, &all)
    };
    let out = build(&env, ctx.path(), &[]);
    assert_eq!(cached_and_built(&out), (0, 5), "{}", text(&out).1);
    let out = build(&env, ctx.path(), &["--no-cache-filter", "builder"]);
    let (_, stderr) = text(&out);
    assert_eq!(cached_and_built(&out), (4, 1), "{stderr}");
    assert!(
        stderr.contains("missed: --no-cache-filter names the stage `builder`"),
        "{stderr}"
    );
    // A comma list and the flag repeated.
    let out = build(&env, ctx.path(), &["--no-cache-filter", "builder,other"]);
    assert_eq!(cached_and_built(&out), (3, 2), "{}", text(&out).1);
    let out = build(
        &env,
        ctx.path(),
        &["--no-cache-filter", "final", "--no-cache-filter", "other"],
    );
    assert_eq!(cached_and_built(&out), (1, 4), "{}", text(&out).1);
}

#[test]
fn no_cache_filter_with_an_unknown_stage_suggests_one() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM scratch AS builder\nFROM scratch AS final\n",
    );
    let out = build(&env, ctx.path(), &["--no-cache-filter", "biulder"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`--no-cache-filter biulder`: no stage is named `biulder`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `builder`?"), "{stderr}");
}

#[test]
fn progress_quiet_is_dash_q_and_rawjson_is_json() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\nLABEL a=b\n");
    let run = |args: &[&str]| {
        let out = env
            .rbuild()
            .arg("build")
            .args(args)
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out)
    };
    // Only the image ID on stdout, nothing on stderr, as `-q`.
    for quiet in [&["--progress", "quiet"][..], &["-q"]] {
        let (stdout, stderr) = run(quiet);
        assert!(
            stdout.starts_with("sha256:") && stdout.lines().count() == 1,
            "{stdout}"
        );
        assert!(stderr.is_empty(), "{stderr}");
    }

    let (stdout, stderr) = run(&["--progress=rawjson"]);
    assert!(stdout.is_empty(), "{stdout}");
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.len(), events.len(), "{stderr}");
    assert_eq!(kinds.last(), Some(&"summary"), "{stderr}");
    let (_, json) = run(&["--progress", "json"]);
    let json_kinds: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].to_string())
        .collect();
    let raw_kinds: Vec<String> = events.iter().map(|e| e["event"].to_string()).collect();
    assert_eq!(raw_kinds, json_kinds);
}

/// A JSON blob of the store by digest.
fn blob(env: &TestEnv, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(env.root().join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The descriptor index.json gives `name` (its full name in the layout).
fn tagged(env: &TestEnv, name: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(env.root().join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {index}"))
        .clone()
}

#[test]
fn annotations_go_on_the_manifest_and_for_several_platforms_on_the_index() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\nLABEL a=b\n");
    let out = build(
        &env,
        ctx.path(),
        &[
            "--annotation",
            "org.opencontainers.image.title=T",
            "--annotation",
            "manifest:m=1",
            "-t",
            "one:1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let d = tagged(&env, "docker.io/library/one:1");
    let manifest = blob(&env, d["digest"].as_str().unwrap());
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.title": "T", "m": "1"})
    );

    let out = build(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--annotation",
            "m=1",
            "--annotation",
            "index:i=2",
            "--annotation",
            "manifest-descriptor:d=3",
            "-t",
            "two:1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let d = tagged(&env, "docker.io/library/two:1");
    let index = blob(&env, d["digest"].as_str().unwrap());
    assert_eq!(
        index["annotations"],
        serde_json::json!({"i": "2"}),
        "{index}"
    );
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2, "{index}");
    for child in children {
        assert_eq!(
            child["annotations"],
            serde_json::json!({"d": "3"}),
            "{index}"
        );
        let manifest = blob(&env, child["digest"].as_str().unwrap());
        assert_eq!(manifest["annotations"], serde_json::json!({"m": "1"}));
    }

    // Without the flag, no annotations at all.
    let out = build(&env, ctx.path(), &["-t", "none:1"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let d = tagged(&env, "docker.io/library/none:1");
    assert!(
        blob(&env, d["digest"].as_str().unwrap())
            .get("annotations")
            .is_none()
    );
}

#[test]
fn bad_annotations_are_refused_before_building() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", "FROM scratch\n");
    for (bad, why) in [
        ("novalue", "expected KEY=VALUE"),
        (
            "index:k=v",
            "`index` annotations need a multi-platform build",
        ),
        (
            "manifest-descriptor:k=v",
            "`manifest-descriptor` annotations need a",
        ),
        ("manifest[linux/amd64]:k=v", "platform selectors"),
        ("index-descriptor:k=v", "unknown type `index-descriptor`"),
        ("manifest:=v", "the key is empty"),
    ] {
        let out = build(&env, ctx.path(), &["--annotation", bad]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid `--annotation {bad}`")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{bad}: {stderr}");
    }
}

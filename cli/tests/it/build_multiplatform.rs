//! Multi-platform builds (`--platform linux/amd64,linux/arm64`) from the two-platform busybox
//! fixture: one image per platform and an index that `-t` names, stages pinned to
//! `$BUILDPLATFORM` run for this machine (and once, when their keys do not depend on the
//! target), other stages for their platform (arm64 RUN under QEMU), TARGET* ARGs name the
//! target, `scratch` configs name their platform, `-o type=local|tar` split per platform, the
//! id and metadata files name the index, and a single `--platform` still gives one image.
//! Needs QEMU's aarch64 handler in binfmt_misc (`.ci/run` registers it).

use std::path::Path;

use rbuild_store::{Platform, Store, Target};

use crate::support::{TestEnv, load_busybox_multi, text};

const AMD: &str = "linux/amd64";
const ARM: &str = "linux/arm64";

/// A context directory holding `Dockerfile` and the given files.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, body) in files {
        std::fs::write(ctx.path().join(name), body).unwrap();
    }
    ctx
}

/// `rbuild build --progress json ARGS CONTEXT` that must succeed; (stdout, stderr).
fn build_ok(env: &TestEnv, ctx: &Path, args: &[&str]) -> (String, String) {
    let out = env
        .rbuild()
        .args(["build", "--progress", "json"])
        .args(args)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "build failed:\n{stderr}");
    (stdout, stderr)
}

/// The JSON progress events of a build's stderr.
fn events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// The events of kind `event` for the step whose text starts with `step`.
fn step_events<'a>(
    events: &'a [serde_json::Value],
    event: &str,
    step: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == event && e["step"].as_str().is_some_and(|s| s.starts_with(step)))
        .collect()
}

/// The flattened-tree entry of `path` (`/x`: type, mode, owner, size, content hash) in a
/// platform's image in the store.
fn entry_in(store: &Store, target: &Target, platform: &str, path: &str) -> String {
    let p: Platform = platform.parse().unwrap();
    let image = target.image_for(&p).unwrap();
    let tree = rbuild_store::layer::flatten_image(store, image).unwrap();
    let map = tree.to_conformance_map();
    map.get(path)
        .unwrap_or_else(|| panic!("{path} missing in the {platform} image"))
        .clone()
}

/// A file of a `-o type=local` output, trimmed.
fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(path).display()))
        .trim()
        .to_string()
}

fn host_uname() -> &'static str {
    match rbuild_store::platform::host_arch() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => panic!("no uname for host {other}"),
    }
}

const CROSS: &str = r#"FROM --platform=$BUILDPLATFORM busybox:1.35-multi AS shared
RUN cat /proc/sys/kernel/random/uuid > /uuid
FROM --platform=$BUILDPLATFORM busybox:1.35-multi AS cross
ARG TARGETARCH
RUN echo "built on $(uname -m) for $TARGETARCH" > /out
FROM busybox:1.35-multi
COPY --from=shared /uuid /uuid
COPY --from=cross /out /out
RUN uname -m > /arch
"#;

/// The cross-compile pattern for two platforms: the pinned stage that reads no TARGET* ARG
/// runs once (its uuid is the same in both images), the one that reads TARGETARCH runs per
/// target on this machine, the final stage runs for each platform (arm64 under QEMU), and
/// the index `-t` names lists both images.
#[test]
fn cross_compile_pattern_builds_both_platforms() {
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let ctx = context(CROSS, &[]);
    let dir = tempfile::tempdir().unwrap();
    let iid = dir.path().join("iid");
    let meta = dir.path().join("meta.json");
    let local = dir.path().join("rootfs");
    let (_, stderr) = build_ok(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi:1",
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
            "-o",
            &format!("type=local,dest={}", local.display()),
        ],
    );
    let evs = events(&stderr);
    // The shared step ran once; the other platform took its result.
    let uuid_step = "RUN cat /proc/sys/kernel/random/uuid";
    assert_eq!(
        step_events(&evs, "step_done", uuid_step).len(),
        1,
        "{stderr}"
    );
    assert_eq!(
        step_events(&evs, "step_cached", uuid_step).len(),
        1,
        "{stderr}"
    );
    // The TARGETARCH step ran for each target.
    assert_eq!(
        step_events(&evs, "step_done", "RUN echo").len(),
        2,
        "{stderr}"
    );
    let platforms: Vec<&str> = step_events(&evs, "step_done", "RUN uname")
        .iter()
        .map(|e| e["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms.len(), 2);
    assert!(
        platforms.contains(&AMD) && platforms.contains(&ARM),
        "{platforms:?}"
    );

    let store = Store::open(env.root()).unwrap();
    let target = store.resolve_target("multi:1").unwrap();
    let Target::Index(index) = &target else {
        panic!("multi:1 is not an index")
    };
    let listed: Vec<String> = index.images.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(listed, [AMD, ARM]);
    for (platform, image) in &index.images {
        assert_eq!(image.config.architecture, platform.architecture);
        assert_eq!(image.config.os, "linux");
    }
    // One uuid: the shared step's layer is in both images.
    assert_eq!(
        entry_in(&store, &target, AMD, "/uuid"),
        entry_in(&store, &target, ARM, "/uuid")
    );
    let (amd, arm) = (local.join("linux_amd64"), local.join("linux_arm64"));
    assert_eq!(read(&amd, "uuid"), read(&arm, "uuid"));
    assert_eq!(read(&amd, "uuid").len(), 36);
    let host = host_uname();
    assert_eq!(read(&amd, "out"), format!("built on {host} for amd64"));
    assert_eq!(read(&arm, "out"), format!("built on {host} for arm64"));
    assert_eq!(read(&amd, "arch"), "x86_64");
    assert_eq!(read(&arm, "arch"), "aarch64");

    // The id and metadata files name the index, as buildx writes them.
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        index.digest.to_string()
    );
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], index.digest.to_string());
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(meta.get("containerimage.config.digest").is_none(), "{meta}");

    // Again: everything cached, the same index.
    let (_, again) = build_ok(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/arm64,linux/amd64,linux/arm64",
            "-t",
            "multi:2",
        ],
    );
    assert!(
        step_events(&events(&again), "step_done", "").is_empty(),
        "{again}"
    );
    let second = store.resolve_target("multi:2").unwrap();
    let order: Vec<String> = second.images().iter().map(|(p, _)| p.to_string()).collect();
    // The platforms in the order asked for, duplicates dropped.
    assert_eq!(order, [ARM, AMD]);
    for p in [AMD, ARM] {
        let p: Platform = p.parse().unwrap();
        assert_eq!(
            second.image_for(&p).unwrap().manifest_digest,
            target.image_for(&p).unwrap().manifest_digest
        );
    }
}

/// Progress names the platform, BuildKit style, only in a multi-platform build.
#[test]
fn progress_labels_name_the_platform() {
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let ctx = context("FROM busybox:1.35-multi AS build\nRUN echo hi > /hi\n", &[]);
    let plain = |platforms: &str| {
        let out = env
            .rbuild()
            .args([
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "--platform",
                platforms,
            ])
            .arg(ctx.path())
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let multi = plain("linux/amd64,linux/arm64");
    assert!(
        multi.contains("[linux/arm64 build 1/1] RUN echo hi > /hi"),
        "{multi}"
    );
    assert!(
        multi.contains("[linux/amd64 build 1/1] RUN echo hi > /hi"),
        "{multi}"
    );
    let single = plain("linux/arm64");
    assert!(single.contains("[build 1/1] RUN echo hi > /hi"), "{single}");
    assert!(!single.contains("[linux/arm64"), "{single}");
}

/// A single `--platform` builds one image, as BuildKit gives a plain manifest: arm64 here,
/// its RUN under QEMU.
#[test]
fn single_foreign_platform_is_one_image() {
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let ctx = context("FROM busybox:1.35-multi\nRUN uname -m > /arch\n", &[]);
    let out = tempfile::tempdir().unwrap();
    build_ok(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/aarch64",
            "-t",
            "one:arm",
            "-o",
            out.path().join("fs").to_str().unwrap(),
        ],
    );
    let store = Store::open(env.root()).unwrap();
    let target = store.resolve_target("one:arm").unwrap();
    let Target::Image(image) = &target else {
        panic!("a single platform made an index")
    };
    assert_eq!(image.config.architecture, "arm64");
    // One platform: not split.
    assert_eq!(read(&out.path().join("fs"), "arch"), "aarch64");
}

/// `FROM scratch` gets each platform in its config; `-o type=local` writes one directory per
/// platform, `type=tar` one tar with a directory per platform, `platform-split=false` refuses
/// paths two platforms both have, and `type=docker` is refused (BuildKit's reason).
#[test]
fn scratch_and_split_outputs() {
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let dockerfile = "FROM busybox:1.35-multi AS arch\nRUN uname -m > /arch\n\
                      FROM scratch\nCOPY a.txt /a.txt\nCOPY --from=arch /arch /arch\n";
    let ctx = context(dockerfile, &[("a.txt", "A\n")]);
    let out = tempfile::tempdir().unwrap();
    let local = out.path().join("local");
    let tar = out.path().join("rootfs.tar");
    let oci = out.path().join("image.tar");
    build_ok(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "-t",
            "scratchy:1",
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=tar,dest={}", tar.display()),
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    let store = Store::open(env.root()).unwrap();
    let target = store.resolve_target("scratchy:1").unwrap();
    for (platform, image) in target.images() {
        let c = &image.config;
        assert_eq!(
            (c.os.as_str(), c.architecture.as_str()),
            ("linux", platform.architecture.as_str())
        );
    }
    for (dir, uname) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        assert_eq!(
            std::fs::read_to_string(local.join(dir).join("a.txt")).unwrap(),
            "A\n"
        );
        let arch = std::fs::read_to_string(local.join(dir).join("arch")).unwrap();
        assert_eq!(arch.trim(), uname);
    }
    let mut names: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["linux_amd64", "linux_arm64"]);
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let paths: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for want in ["linux_amd64/a.txt", "linux_arm64/a.txt", "linux_arm64/arch"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }

    // The OCI archive holds the index whole: skopeo reads it, and it is the store's index.
    let raw = crate::support::run_ok(
        crate::support::tool("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())),
    );
    assert_eq!(
        rbuild_store::Digest::of(raw.as_bytes()),
        *target.digest(),
        "{raw}"
    );
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{raw}");

    // Not split: both platforms have /a.txt.
    let merged = out.path().join("merged");
    let res = env
        .rbuild()
        .args([
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
        ])
        .arg(format!(
            "type=local,dest={},platform-split=false",
            merged.display()
        ))
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&res);
    assert!(!res.status.success());
    assert!(
        stderr.contains("cannot overwrite") && stderr.contains("when split option is disabled"),
        "{stderr}"
    );
    let res = env
        .rbuild()
        .args(["build", "--platform", "linux/amd64,linux/arm64", "-o"])
        .arg(format!(
            "type=docker,dest={}",
            out.path().join("d.tar").display()
        ))
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&res);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.replace(" | ", " ")
            .contains("docker exporter does not currently support exporting manifest lists"),
        "{stderr}"
    );
}

/// `explain` explains every platform of a multi-platform build, naming it; a platform never
/// built is named as the reason of its misses.
#[test]
fn explain_per_platform() {
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let ctx = context("FROM busybox:1.35-multi\nRUN echo one > /one\n", &[]);
    build_ok(&env, ctx.path(), &["--platform", "linux/amd64"]);
    let out = env
        .rbuild()
        .args(["explain", "--platform", "linux/amd64,linux/arm64"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {stdout}"))
            .to_string()
    };
    assert!(line("[linux/amd64] RUN echo one > /one (").ends_with("Dockerfile:2) CACHED"));
    assert!(line("[linux/arm64] RUN echo one > /one (").contains("Dockerfile:2) missed"));
    let flat = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.replace(" | ", " ")
            .contains("missed: the platform changed linux/amd64 → linux/arm64"),
        "{stdout}"
    );
    // The base image for arm64 differs too, but the platform is the reason.
    assert!(!flat.contains("now resolves to"), "{stdout}");
    assert!(flat.contains("2 steps: 1 cached, 1 would run"), "{stdout}");
}

/// A foreign platform is checked before anything runs: a stage with RUN steps for a platform
/// no emulator runs fails at its FROM with how to register QEMU; a stage without RUN builds
/// for any platform.
#[test]
fn foreign_platform_without_emulator() {
    assert!(
        !Path::new("/proc/sys/fs/binfmt_misc/qemu-s390x").exists(),
        "this test needs a host without an s390x emulator"
    );
    let env = TestEnv::new();
    let ctx = context(
        "FROM scratch\nCOPY a.txt /a.txt\nRUN true\n",
        &[("a.txt", "A\n")],
    );
    let out = env
        .rbuild()
        .args([
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/s390x",
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.replace(" | ", " ");
    assert!(
        flat.contains(
            "stage `stage-0` has RUN steps for linux/s390x, which this machine cannot run"
        ),
        "{stderr}"
    );
    assert!(flat.contains("qemu-s390x.conf"), "{stderr}");
    // Nothing ran, for either platform: no step appeared in the progress.
    assert!(!stderr.lines().any(|l| l.starts_with('#')), "{stderr}");

    let ctx = context("FROM scratch\nCOPY a.txt /a.txt\n", &[("a.txt", "A\n")]);
    build_ok(
        &env,
        ctx.path(),
        &["--platform", "linux/s390x", "-t", "s390:1"],
    );
    let store = Store::open(env.root()).unwrap();
    let Target::Image(image) = store.resolve_target("s390:1").unwrap() else {
        panic!("one platform, one image")
    };
    assert_eq!(image.config.architecture, "s390x");
}

/// `build --push` of a multi-platform build pushes the index whole (the registry serves an
/// index listing both platforms, each a manifest of its own); `--cache-to` exports every
/// platform's steps, so an empty store builds both platforms from that cache alone.
#[test]
fn push_and_registry_cache_of_a_multi_platform_build() {
    let reg = crate::support::real_registry::RealRegistry::start();
    let env = TestEnv::new();
    load_busybox_multi(&env);
    let ctx = context("FROM busybox:1.35-multi\nRUN uname -m > /arch\n", &[]);
    let name = format!("{}/multi/app:1", reg.host());
    build_ok(
        &env,
        ctx.path(),
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
        ],
    );
    let inspect = |reference: &str| -> serde_json::Value {
        let out = crate::support::tool("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let index = inspect(&name);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    let archs: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let repo = name.rsplit_once(':').unwrap().0;
    for entry in entries {
        let child = inspect(&format!("{repo}@{}", entry["digest"].as_str().unwrap()));
        assert_eq!(
            child["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    // The registry cache of a multi-platform build holds every platform's steps: a second,
    // empty store building both platforms from it runs nothing.
    let cache = format!("{}/multi/cache", reg.host());
    let both = "linux/amd64,linux/arm64";
    let (_, stderr) = build_plain(
        &env,
        ctx.path(),
        &[
            "--platform",
            both,
            "--cache-to",
            &format!("type=registry,ref={cache}"),
        ],
    );
    assert!(stderr.contains("cached, 0 built"), "{stderr}");
    let fresh = TestEnv::new();
    load_busybox_multi(&fresh);
    let (_, stderr) = build_plain(
        &fresh,
        ctx.path(),
        &[
            "--platform",
            both,
            "-t",
            "from-cache:1",
            "--cache-from",
            &format!("type=registry,ref={cache}"),
        ],
    );
    assert!(
        stderr.contains("2 steps, 2 cached, 0 built"),
        "both platforms' RUN come from the cache: {stderr}"
    );
    for (platform, want) in [(ARM, "aarch64"), (AMD, host_uname())] {
        let out = fresh
            .rbuild()
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                "from-cache:1",
                "cat",
                "/arch",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        assert_eq!(text(&out).0.trim(), want, "{platform}");
    }
}

/// `rbuild build --progress plain ARGS CONTEXT` that must succeed; (stdout, stderr).
fn build_plain(env: &TestEnv, ctx: &Path, args: &[&str]) -> (String, String) {
    let out = env
        .rbuild()
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out)
}

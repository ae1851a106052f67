//! Extending an image without pulling it, end to end against real `docker-registry`s: a
//! stage whose steps never read the base (`COPY --link`) is built from the base's manifest and
//! config alone and pushed with the base's blobs mounted (same registry) or copied registry to
//! registry (another one), with the same digest as a build on the pulled base; the layers come
//! on demand for `run`, `save` and `-o local`; a stage that reads the base still downloads it;
//! and a registry serving a wrong blob during the copy fails the push with nothing tagged.

use std::path::{Path, PathBuf};

use crate::support::real_registry::RealRegistry;
use crate::support::{TestEnv, text, write_file as write};

const EPOCH: &str = "1700000000";

/// A context with a `Dockerfile` and an `index.html`.
fn context(dockerfile: &str, index: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", dockerfile);
    write(dir.path(), "index.html", index);
    dir
}

/// `rbuild build --progress plain ARGS CTX` with a fixed SOURCE_DATE_EPOCH; (ok, stderr).
fn build(env: &TestEnv, ctx: &Path, args: &[&str]) -> (bool, String) {
    let out = env
        .rbuild()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn build_ok(env: &TestEnv, ctx: &Path, args: &[&str]) -> String {
    let (ok, log) = build(env, ctx, args);
    assert!(ok, "build failed:\n{log}");
    log
}

/// The layer blob digests of the base as the registry serves it (from a full pull into a
/// scratch store).
fn base_layers(reg: &RealRegistry, name: &str) -> Vec<String> {
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["pull", "-q", &format!("{}/{name}", reg.host())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let record = store
        .resolve_image(&format!("{}/{name}", reg.host()))
        .unwrap();
    record
        .layers
        .iter()
        .map(|l| l.descriptor.digest.to_string())
        .collect()
}

fn blob_path(env: &TestEnv, digest: &str) -> PathBuf {
    env.root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The manifest digest of a stored image.
fn manifest_digest(env: &TestEnv, name: &str) -> String {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    store
        .resolve_image(name)
        .unwrap()
        .manifest_digest
        .to_string()
}

/// The digest a registry serves for `reference` (skopeo), or `None` when it has none.
fn remote_digest(reference: &str) -> Option<String> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn store_fsck_ok(env: &TestEnv) {
    let out = env
        .rbuild()
        .args(["store", "fsck", "--full"])
        .output()
        .unwrap();
    assert!(out.status.success(), "fsck: {:?}", text(&out));
}

const LINKED: &str = "FROM {base}\nWORKDIR /\nCOPY --link index.html /srv/www/index.html\nCMD [\"cat\", \"/srv/www/index.html\"]\n";

fn dockerfile(base: &str) -> String {
    LINKED.replace("{base}", base)
}

/// The lazy build stores none of the base's layers, pushes (mounting them in the same
/// registry) an image whose digest is that of the same build on the pulled base, and `run`
/// then fetches the layers it needs.
#[test]
fn lazybase_push_mounts_the_base_and_matches_a_pulled_build() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base:1", None);
    let base = format!("{}/base:1", reg.host());
    let layers = base_layers(&reg, "base:1");
    let ctx = context(&dockerfile(&base), "<h1>hello</h1>\n");

    let lazy = TestEnv::new();
    let app = format!("{}/app:lazy", reg.host());
    let log = build_ok(&lazy, ctx.path(), &["-t", &app, "--push"]);
    for digest in &layers {
        assert!(
            !blob_path(&lazy, digest).exists(),
            "base layer {digest} was downloaded:\n{log}"
        );
    }
    assert!(log.contains("Mounted from another repository"), "{log}");
    store_fsck_ok(&lazy);
    // history and explain say the base's layers are remote.
    let out = lazy.rbuild().args(["history", &app]).output().unwrap();
    assert!(text(&out).0.contains("remote"), "{:?}", text(&out));
    let out = lazy
        .rbuild()
        .args(["explain"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("1 of 1 layers remote") && stdout.contains("no step reads the base"),
        "{stdout}"
    );

    let pulled = TestEnv::new();
    let out = pulled
        .rbuild()
        .args(["pull", "-q", &base])
        .output()
        .unwrap();
    assert!(out.status.success());
    let normal = format!("{}/app:normal", reg.host());
    build_ok(&pulled, ctx.path(), &["-t", &normal, "--push"]);
    assert_eq!(
        manifest_digest(&lazy, &app),
        manifest_digest(&pulled, &normal)
    );
    let (lazy_pushed, normal_pushed) = (remote_digest(&app), remote_digest(&normal));
    assert!(lazy_pushed.is_some());
    assert_eq!(lazy_pushed, normal_pushed);

    // `run` fetches the base's layers on demand.
    let out = lazy.rbuild().args(["run", "--rm", &app]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "<h1>hello</h1>\n");
    for digest in &layers {
        assert!(blob_path(&lazy, digest).is_file(), "{digest} not fetched");
    }
    store_fsck_ok(&lazy);
}

/// `save` and `-o type=local` need every layer: they fetch the remote ones; a stage with a
/// RUN reads the base, so its build downloads it.
#[test]
fn lazybase_save_and_local_output_fetch_and_run_steps_pull() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base:1", None);
    let base = format!("{}/base:1", reg.host());
    let layers = base_layers(&reg, "base:1");
    let ctx = context(&dockerfile(&base), "saved\n");

    let env = TestEnv::new();
    build_ok(&env, ctx.path(), &["-t", "app:1"]);
    assert!(!blob_path(&env, &layers[0]).exists());
    let archive = tempfile::tempdir().unwrap();
    let tar = archive.path().join("app.tar");
    let out = env
        .rbuild()
        .args(["save", "-o"])
        .arg(&tar)
        .arg("app:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(blob_path(&env, &layers[0]).is_file());
    let loaded = TestEnv::new();
    let out = loaded
        .rbuild()
        .arg("load")
        .arg("-i")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    let env = TestEnv::new();
    let dest = tempfile::tempdir().unwrap();
    let local = format!("type=local,dest={}", dest.path().join("out").display());
    build_ok(&env, ctx.path(), &["-o", &local]);
    let root = dest.path().join("out");
    assert!(
        root.join("bin/busybox").is_file(),
        "the base is in the export"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("srv/www/index.html")).unwrap(),
        "saved\n"
    );

    let env = TestEnv::new();
    let runs = context(&format!("FROM {base}\nRUN echo hi > /hi\n"), "x");
    build_ok(&env, runs.path(), &["-t", "runs:1"]);
    for digest in &layers {
        assert!(blob_path(&env, digest).is_file(), "{digest} not pulled");
    }
    store_fsck_ok(&env);
}

/// A base in another registry is copied registry to registry (never stored here); the
/// pushed image runs after a pull from the destination. A source that serves a wrong blob
/// fails the push with a digest error and the destination gets no tag.
#[test]
fn lazybase_copies_between_registries_and_refuses_a_bad_blob() {
    let source = RealRegistry::start();
    let dest = RealRegistry::start();
    source.seed_busybox("base:1", None);
    let base = format!("{}/base:1", source.host());
    let layers = base_layers(&source, "base:1");
    let ctx = context(&dockerfile(&base), "copied\n");

    let env = TestEnv::new();
    let app = format!("{}/app:1", dest.host());
    build_ok(&env, ctx.path(), &["-t", &app, "--push"]);
    for digest in &layers {
        assert!(
            !blob_path(&env, digest).exists(),
            "{digest} went through the disk"
        );
    }
    let other = TestEnv::new();
    let out = other.rbuild().args(["pull", "-q", &app]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let out = other.rbuild().args(["run", "--rm", &app]).output().unwrap();
    assert_eq!(text(&out).0, "copied\n", "{:?}", text(&out));

    // The source now serves different bytes (same size) for the base layer.
    let hex = layers[0].trim_start_matches("sha256:");
    let data = source
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let env = TestEnv::new();
    let bad = format!("{}/bad:1", dest.host());
    let (ok, log) = build(&env, ctx.path(), &["-t", &bad, "--push"]);
    assert!(!ok, "{log}");
    assert!(log.contains(&layers[0]) && log.contains("digest"), "{log}");
    // The source's fault, said as such: not a network failure, not retried.
    assert!(
        !log.contains("cannot reach") && !log.contains("attempts"),
        "{log}"
    );
    assert_eq!(remote_digest(&bad), None, "a tag was pushed:\n{log}");
    assert!(!blob_path(&env, &layers[0]).exists());
}

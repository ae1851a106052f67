//! Builds that use registries, end to end against a real `docker-registry`: automatic pulls
//! through a `docker.io` mirror, offline rebuilds, `--pull` after a tag moved, `--push`, and
//! the shared build cache (`--cache-to`/`--cache-from`) between two store roots, including a
//! tampered cache index and an unreachable cache registry.

use crate::support::{self, TestEnv, text, write_file as write};

use crate::support::real_registry::RealRegistry;

/// A context directory holding `dockerfile` and `files`.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", dockerfile);
    for (name, content) in files {
        write(dir.path(), name, content);
    }
    dir
}

/// (manifest digest, image ID, layer count) of a stored image.
fn image(env: &TestEnv, name: &str) -> (String, String, usize) {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let record = store.resolve_image(name).unwrap();
    (
        record.manifest_digest.to_string(),
        record.id().to_string(),
        record.layers.len(),
    )
}

fn mirror_config(env: &TestEnv, reg: &RealRegistry) {
    write(
        env.root(),
        "registries.toml",
        &format!(
            "[network]\nretries = 1\nconnect_timeout_secs = 3\nread_timeout_secs = 10\n\n\
             [registries.\"docker.io\"]\nmirrors = [\"http://{}\"]\n",
            reg.host()
        ),
    );
}

/// `FROM nginx:x` with an empty store pulls through the `docker.io` mirror and builds; with
/// the registry gone the image is used as stored (nothing is pulled), and `--pull` then fails
/// with the registry's error under the FROM line.
#[test]
fn from_pulls_through_the_docker_io_mirror_and_rebuilds_offline() {
    let reg = RealRegistry::start();
    reg.seed_busybox("library/nginx:x", None);
    let env = TestEnv::new();
    mirror_config(&env, &reg);
    let ctx = context("FROM nginx:x\nRUN echo hi > /hi\n", &[]);
    // `--pull=never` stays offline even with the mirror up: the base is not stored.
    let (ok, stderr) = env.build_plain(ctx.path(), &["--pull=never", "-t", "app"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("image `nginx:x` is not in the store")
            && stderr.contains("--pull=never")
            && !stderr.contains("Pulling"),
        "{stderr}"
    );
    let stderr = env.build_plain_ok(ctx.path(), &["-t", "app"]);
    assert!(
        stderr.contains("Pulling from library/nginx") && stderr.contains("Pull complete"),
        "{stderr}"
    );
    let (_, _, layers) = image(&env, "app");
    assert_eq!(layers, 2);

    drop(reg);
    let stderr = env.build_plain_ok(ctx.path(), &["-t", "app"]);
    assert!(!stderr.contains("Pulling"), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 1, "{stderr}");

    let (ok, stderr) = env.build_plain(ctx.path(), &["--pull", "-t", "app"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("cannot check `nginx:x`") && stderr.contains("FROM nginx:x"),
        "{stderr}"
    );
}

/// `--push` uploads the built image and `rbuild pull` in another root gets the same digest
/// and image ID; the tag has then moved, so a build with `--pull` pulls the new base (and a
/// build without it keeps the stored one). A missing tag fails under the FROM line with the
/// registry's error.
#[test]
fn push_and_pull_follow_a_moved_tag() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base:1", None);
    let base = format!("{}/base:1", reg.host());
    let app = context(&format!("FROM {base}\nCOPY f /f\n"), &[("f", "app\n")]);
    let a = TestEnv::new();
    let stderr = a.build_plain_ok(app.path(), &["-t", "app"]);
    assert!(stderr.contains("Pulling from base"), "{stderr}");
    assert_eq!(image(&a, "app").2, 2);

    // Another machine rebuilds the base and pushes it under the same tag.
    let b = TestEnv::new();
    let v2 = context(&format!("FROM {base}\nCOPY v2 /v2\n"), &[("v2", "two\n")]);
    let stderr = b.build_plain_ok(v2.path(), &["-t", &base, "--push"]);
    let pushed = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pushed {base}: digest: ")))
        .unwrap_or_else(|| panic!("no push line in {stderr}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let c = TestEnv::new();
    let out = c.rbuild().args(["pull", &base]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("Digest: {pushed}")), "{stdout}");
    assert_eq!(image(&c, &base).1, image(&b, &base).1);

    let stderr = a.build_plain_ok(app.path(), &["-t", "app"]);
    assert!(!stderr.contains("Pulling"), "{stderr}");
    assert_eq!(image(&a, "app").2, 2);
    let stderr = a.build_plain_ok(app.path(), &["-t", "app", "--pull"]);
    assert!(stderr.contains("Pulling from base"), "{stderr}");
    assert_eq!(image(&a, "app").2, 3);
    let stderr = a.build_plain_ok(app.path(), &["-t", "app", "--pull"]);
    assert!(!stderr.contains("Pulling"), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 1, "{stderr}");

    // A tag the registry lacks: the registry's own error, under the FROM line.
    let missing = context(
        &format!(
            "FROM {}/base:nope
",
            reg.host()
        ),
        &[],
    );
    let (ok, stderr) = a.build_plain(missing.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot pull") && stderr.contains("MANIFEST_UNKNOWN"),
        "{stderr}"
    );
    assert!(stderr.contains("1 | FROM"), "{stderr}");
}

const CACHED_DOCKERFILE: &str = "FROM {base} AS tool\nRUN echo tool > /tool && echo other > /other\n\
    FROM {base}\nCOPY --from=tool /tool /tool\nCOPY a.txt /a.txt\n";

/// A cache exported from one root (mode=max) makes a second, empty root hit every step: it
/// downloads only the two layers the image needs (not the tool stage's), once, its image
/// equals the first one, and `explain` on a third root names the changed file against the imported
/// entries. A cache index whose entry was tampered with is ignored with a warning.
#[test]
fn registry_cache_is_shared_between_store_roots() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1", None);
    let dockerfile = CACHED_DOCKERFILE.replace("{base}", &format!("{}/base/busybox:1", reg.host()));
    let cache_ref = format!("{}/app:cache", reg.host());
    let cache_to = format!("type=registry,ref={cache_ref},mode=max");

    let a = TestEnv::new();
    let ctx_a = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let stderr = a.build_plain_ok(
        ctx_a.path(),
        &[
            "-t",
            "app",
            "--cache-from",
            &cache_ref,
            "--cache-to",
            &cache_to,
        ],
    );
    assert!(
        stderr.contains(&format!(
            "warning: cannot import build cache from `{cache_ref}`"
        )),
        "a missing cache is a warning: {stderr}"
    );
    assert!(
        stderr.contains("3 entries, 3 layers; 4 blobs uploaded"),
        "{stderr}"
    );
    // Exporting again uploads nothing new.
    let stderr = a.build_plain_ok(ctx_a.path(), &["-t", "app", "--cache-to", &cache_to]);
    assert!(stderr.contains("0 blobs uploaded"), "{stderr}");

    let b = TestEnv::new();
    let ctx_b = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let stderr = b.build_plain_ok(ctx_b.path(), &["-t", "app", "--cache-from", &cache_ref]);
    assert_eq!(stderr.matches(" CACHED").count(), 3, "{stderr}");
    assert_eq!(stderr.matches("fetched cache layer").count(), 2, "{stderr}");
    assert_eq!(image(&b, "app"), image(&a, "app"));
    // The fetched layers are local now: a rebuild downloads nothing.
    let stderr = b.build_plain_ok(ctx_b.path(), &["-t", "app", "--cache-from", &cache_ref]);
    assert_eq!(stderr.matches(" CACHED").count(), 3, "{stderr}");
    assert!(!stderr.contains("fetched cache layer"), "{stderr}");

    let c = TestEnv::new();
    let ctx_c = context(&dockerfile, &[("a.txt", "changed\n")]);
    let out = c
        .rbuild()
        .args(["explain", "--format", "json", "--cache-from", &cache_ref])
        .arg(ctx_c.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["missed"], 1, "{explained}");
    let copy = explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with("COPY a.txt"))
        .unwrap();
    assert_eq!(copy["reasons"][0]["reason"], "files_changed", "{copy}");
    assert!(copy["reasons"][0].to_string().contains("a.txt"), "{copy}");

    // Rewrite the last step's instruction in the exported index, keeping its key.
    let tampered = format!("{}/app:tampered", reg.host());
    tamper_cache(&a, &cache_ref, &tampered);
    let d = TestEnv::new();
    let stderr = d.build_plain_ok(ctx_b.path(), &["-t", "app", "--cache-from", &tampered]);
    assert!(
        stderr.contains("ignored 1 entry of the build cache")
            && stderr.contains("does not match its preimage"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(" CACHED").count(), 2, "{stderr}");
}

/// Copy the cache artifact `from` to `to` with one entry's preimage changed but not its key.
fn tamper_cache(env: &TestEnv, from: &str, to: &str) {
    use rbuild_registry::cache::{export_cache, import_cache};
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let config = rbuild_registry::RegistriesConfig::load(Some(env.root())).unwrap();
    let client = rbuild_registry::Client::new(config);
    let from = rbuild_registry::RemoteRef::parse(from).unwrap();
    let imported = import_cache(&client, &from).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&imported.index).unwrap();
    let entry = index["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| {
            e["preimage"]["instruction"]
                .as_str()
                .unwrap()
                .contains("a.txt")
        })
        .unwrap();
    entry["preimage"]["instruction"] = "COPY evil /a.txt".into();
    let layers: Vec<rbuild_registry::LocalLayer> = imported
        .layers
        .iter()
        .map(|l| rbuild_registry::LocalLayer {
            diff_id: l.diff_id.clone(),
            digest: l.blob.digest.clone(),
            size: l.blob.size,
            media_type: l.blob.media_type.clone(),
        })
        .collect();
    let opts = rbuild_registry::PushOptions {
        compression: rbuild_registry::Compression::Gzip,
        compress_threads: 0,
        mount_from: Vec::new(),
        tmp_dir: env.root().join("tmp"),
    };
    export_cache(
        &client,
        &store,
        &rbuild_registry::RemoteRef::parse(to).unwrap(),
        &serde_json::to_vec(&index).unwrap(),
        &layers,
        &opts,
        &rbuild_registry::NoProgress,
    )
    .unwrap();
}

/// A `--cache-from` registry nobody listens on is a warning; the build goes on without it.
#[test]
fn unreachable_cache_registry_is_a_warning() {
    let port = support::real_registry::free_port();
    let env = TestEnv::new();
    write(env.root(), "registries.toml", "[network]\nretries = 1\n");
    let ctx = context("FROM scratch\nCOPY a.txt /a.txt\n", &[("a.txt", "a\n")]);
    let cache = format!("type=registry,ref=127.0.0.1:{port}/app:cache");
    let stderr = env.build_plain_ok(ctx.path(), &["--cache-from", &cache]);
    assert!(
        stderr.contains("warning: cannot import build cache") && stderr.contains("cannot reach"),
        "{stderr}"
    );
}

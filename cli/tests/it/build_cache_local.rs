//! The `type=local` build cache (an OCI image layout directory, BuildKit's local cache):
//! exported from one store root and imported into another, every file-changing step hits and
//! the images are equal; a second export prunes the blobs no longer referenced; a corrupt
//! directory is refused whole without touching the store; a missing one is a warning; two
//! exports to one directory at once leave one cache whole; an unknown cache type is an error
//! naming the types that exist.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{TestEnv, load_busybox, text, write_file as write};

const DOCKERFILE: &str = "FROM busybox:1.35 AS tool\nRUN echo tool > /tool && echo other > /other\n\
    FROM busybox:1.35\nCOPY --from=tool /tool /tool\nCOPY a.txt /a.txt\n";

fn context(a_txt: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", DOCKERFILE);
    write(dir.path(), "a.txt", a_txt);
    dir
}

/// (manifest digest, image ID) of a stored image: equal digests mean equal layers and files.
fn image(env: &TestEnv, name: &str) -> (String, String) {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let record = store.resolve_image(name).unwrap();
    (record.manifest_digest.to_string(), record.id().to_string())
}

fn names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The blobs the layout's cache manifest references (manifest, config, layers), by hex.
fn referenced(dir: &Path) -> BTreeSet<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("blobs/sha256").join(hex(&manifest_digest))).unwrap(),
    )
    .unwrap();
    let mut out = BTreeSet::from([
        hex(&manifest_digest),
        hex(manifest["config"]["digest"].as_str().unwrap()),
    ]);
    for layer in manifest["layers"].as_array().unwrap() {
        out.insert(hex(layer["digest"].as_str().unwrap()));
    }
    out
}

#[test]
fn local_cache_round_trips_between_store_roots_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let cache_to = format!("type=local,dest={cache_s},mode=max");
    let cache_from = format!("type=local,src={cache_s}");

    let a = TestEnv::new();
    load_busybox(&a);
    let ctx_a = context("alpha\n");
    // A missing directory is a warning, as an unreachable registry cache.
    let stderr = a.build_plain_ok(
        ctx_a.path(),
        &[
            "-t",
            "app",
            "--cache-from",
            &cache_from,
            "--cache-to",
            &cache_to,
        ],
    );
    assert!(
        stderr.contains(&format!(
            "warning: cannot import build cache from `{cache_s}`"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("(mode=max): 3 entries, 3 layers; 4 blobs written"),
        "{stderr}"
    );
    assert!(cache.join("oci-layout").is_file());
    let blobs = cache.join("blobs/sha256");
    let first = names(&blobs);
    assert_eq!(first, referenced(&cache), "only referenced blobs");
    assert_eq!(first.len(), 5);

    // A second, empty root hits every file-changing step and gets the same image.
    let b = TestEnv::new();
    load_busybox(&b);
    let ctx_b = context("alpha\n");
    let stderr = b.build_plain_ok(ctx_b.path(), &["-t", "app", "--cache-from", &cache_from]);
    assert_eq!(stderr.matches(" CACHED").count(), 3, "{stderr}");
    assert!(stderr.contains("3 entries (3 new)"), "{stderr}");
    assert_eq!(image(&b, "app"), image(&a, "app"));

    // A change exports a new cache: the old COPY a.txt layer is pruned, nothing else left over.
    let ctx_a2 = context("changed\n");
    let stderr = a.build_plain_ok(ctx_a2.path(), &["-t", "app", "--cache-to", &cache_to]);
    assert!(stderr.contains("3 entries, 3 layers;"), "{stderr}");
    let second = names(&blobs);
    assert_eq!(second, referenced(&cache), "unreferenced blobs pruned");
    assert_eq!(second.len(), 5);
    let gone: Vec<_> = first.difference(&second).collect();
    // The old a.txt layer, the old index and the old manifest.
    assert_eq!(gone.len(), 3, "{gone:?}");
    // Exporting the same cache again writes nothing new.
    let stderr = a.build_plain_ok(ctx_a2.path(), &["-t", "app", "--cache-to", &cache_to]);
    assert!(
        stderr.contains("0 blobs written, 4 already there"),
        "{stderr}"
    );
    assert_eq!(names(&blobs), second);
}

#[test]
fn corrupt_local_cache_is_refused_without_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let a = TestEnv::new();
    load_busybox(&a);
    let ctx = context("alpha\n");
    a.build_plain_ok(
        ctx.path(),
        &["--cache-to", &format!("type=local,dest={cache_s},mode=max")],
    );
    // Swap one byte of a layer blob: the digest no longer matches.
    let manifest_hex = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
        index["manifests"][0]["digest"].as_str().unwrap()[7..].to_string()
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cache.join("blobs/sha256").join(manifest_hex)).unwrap(),
    )
    .unwrap();
    let layer = cache
        .join("blobs/sha256")
        .join(&manifest["layers"][2]["digest"].as_str().unwrap()[7..]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let c = TestEnv::new();
    load_busybox(&c);
    let blobs_before = names(&c.root().join("blobs/sha256"));
    let from = format!("type=local,src={cache_s}");
    let out = c
        .rbuild()
        .args(["explain", "--cache-from", &from])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!(
            "warning: cannot import build cache from `{cache_s}`"
        )) && stderr.contains("does not match its digest"),
        "{stderr}"
    );
    assert_eq!(names(&c.root().join("blobs/sha256")), blobs_before);
    assert!(names(&c.root().join("refs/cache")).is_empty());
    // Building with it runs every step (nothing was imported).
    let stderr = c.build_plain_ok(ctx.path(), &["--cache-from", &from]);
    assert_eq!(stderr.matches(" CACHED").count(), 0, "{stderr}");
}

/// A local cache export into the store root itself (whose blobs it would prune) is refused,
/// and the store keeps every blob.
#[test]
fn local_cache_export_into_the_store_is_refused() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context("alpha\n");
    let blobs_before = names(&env.root().join("blobs/sha256"));
    let dest = format!("type=local,dest={}", env.root().display());
    let (ok, stderr) = env.build_plain(ctx.path(), &["--cache-to", &dest]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("refusing to write to"), "{stderr}");
    let blobs_after = names(&env.root().join("blobs/sha256"));
    assert!(
        blobs_before.is_subset(&blobs_after),
        "store blobs were deleted"
    );
    let store = rbuild_store::Store::open(env.root()).unwrap();
    store.resolve_image("busybox:1.35").unwrap();
}

#[test]
fn unknown_cache_type_names_the_types() {
    let env = TestEnv::new();
    let ctx = context("alpha\n");
    for (flag, value) in [
        ("--cache-from", "type=gha,scope=x"),
        ("--cache-to", "type=s3,bucket=x"),
        ("--cache-from", "./not a reference"),
        ("--cache-from", "/var/cache/ci"),
        ("--cache-from", "type=local"),
        ("--cache-from", "type=registry"),
        ("--cache-from", "type=inline"),
        ("--cache-to", "type=inline,mode=max"),
    ] {
        let (ok, stderr) = env.build_plain(ctx.path(), &[flag, value]);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains("`registry`")
                && stderr.contains("`local`")
                && stderr.contains("`inline`"),
            "{flag} {value}: {stderr}"
        );
    }
}

/// `len` bytes that do not compress (xorshift from `seed`), so compressing them takes a while.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Two builds exporting to one directory at the same moment (two CI jobs on one runner), in
/// two real processes, round after round: both succeed and the directory always holds one of
/// the two caches whole — every blob it names present and verified, no blob left over — which
/// a third root then imports and hits.
#[test]
fn concurrent_local_cache_exports_leave_one_cache_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_to = format!("type=local,dest={},mode=max", cache.display());
    let dockerfile = "FROM busybox:1.35\nCOPY big /big\nCOPY a.txt /a.txt\n";
    let envs = [TestEnv::new(), TestEnv::new()];
    let ctxs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (env, ctx) in envs.iter().zip(&ctxs) {
        load_busybox(env);
        write(ctx.path(), "Dockerfile", dockerfile);
    }
    for round in 0..3u64 {
        for (i, ctx) in ctxs.iter().enumerate() {
            // New content each round: each export compresses and writes a big new blob.
            std::fs::write(
                ctx.path().join("big"),
                noise(round * 2 + i as u64 + 1, 24 << 20),
            )
            .unwrap();
            write(ctx.path(), "a.txt", &format!("{round} {i}\n"));
        }
        let children: Vec<_> = envs
            .iter()
            .zip(&ctxs)
            .map(|(env, ctx)| {
                std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
                    .env_remove("RBUILD_ROOT")
                    .env("NO_COLOR", "1")
                    .arg("--root")
                    .arg(env.root())
                    .args(["build", "--progress", "plain", "-t", "app"])
                    .args(["--cache-to", &cache_to])
                    .arg(ctx.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let imported = rbuild_registry::cache_local::import_cache_local(&cache)
            .unwrap_or_else(|e| panic!("round {round}: the directory is inconsistent: {e}"));
        assert_eq!(
            names(&cache.join("blobs/sha256")),
            referenced(&cache),
            "round {round}: blobs left over"
        );
        let layers: BTreeSet<String> = imported
            .layers
            .iter()
            .map(|l| l.diff_id.to_string())
            .collect();
        let built = |env: &TestEnv| -> BTreeSet<String> {
            let store = rbuild_store::Store::open(env.root()).unwrap();
            let image = store.resolve_image("app").unwrap();
            image.layers[image.layers.len() - 2..]
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect()
        };
        assert!(
            layers == built(&envs[0]) || layers == built(&envs[1]),
            "round {round}: the cache is neither build's: {layers:?}"
        );
    }
    // The last cache imports into an empty root: every file-changing step hits.
    let c = TestEnv::new();
    load_busybox(&c);
    let from = format!("type=local,src={}", cache.display());
    let winner = ctxs
        .iter()
        .map(|ctx| c.build_plain_ok(ctx.path(), &["--cache-from", &from]))
        .find(|stderr| stderr.matches(" CACHED").count() == 2);
    assert!(winner.is_some(), "neither context hits the cache");
}

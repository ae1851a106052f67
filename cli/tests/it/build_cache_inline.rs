//! The inline build cache (`--cache-to type=inline`, read back with `--cache-from IMAGE`),
//! end to end against a real `docker-registry`: a pushed image carries its own cache and a
//! second, empty store root hits every step, fetching the layers from the registry; the
//! embedding is deterministic (`--verify-reproducible`, the same image ID from two roots); a
//! tampered inline cache (bad base64, bad JSON, layers the image lacks, an oversized document,
//! BuildKit's format) is refused with a warning and the build runs; a multi-platform image
//! carries one cache per platform; other stages' steps are not inline (`min` mode).

use crate::support::real_registry::RealRegistry;
use crate::support::{TestEnv, load_busybox, text, write_file as write};

const KEY: &str = "dev.rbuild.cache.v1";

/// A context directory holding `dockerfile` and `files`.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", dockerfile);
    for (name, content) in files {
        write(dir.path(), name, content);
    }
    dir
}

fn record(env: &TestEnv, name: &str) -> rbuild_store::ImageRecord {
    rbuild_store::Store::open(env.root())
        .unwrap()
        .resolve_image(name)
        .unwrap()
}

/// The inline cache document of a stored image, decoded.
fn inline_doc(env: &TestEnv, name: &str) -> serde_json::Value {
    let config = record(env, name).config;
    assert!(config.extra[KEY].is_string(), "{:?}", config.extra);
    let bytes = rbuild_registry::cache_inline::extract(&config).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn registry_config(env: &TestEnv) {
    write(
        env.root(),
        "registries.toml",
        "[network]\nretries = 1\nconnect_timeout_secs = 3\nread_timeout_secs = 20\n",
    );
}

fn fresh_env() -> TestEnv {
    let env = TestEnv::new();
    registry_config(&env);
    env
}

const DOCKERFILE: &str = "FROM {base}\nRUN echo built > /built\nCOPY a.txt /a.txt\n\
    WORKDIR /app\nRUN echo more > more && rm /built\nENV DONE=1\n";

/// Build+push with `--cache-to type=inline`; a second empty root with `--cache-from IMAGE`
/// hits every step, fetches exactly the image's built layers from the registry (nothing runs)
/// and, exporting inline too, gets the very same image ID; `explain` in a third root says
/// everything is cached, and after a change names the changed file against the inline cache.
#[test]
fn inline_cache_round_trips_between_empty_stores() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1", None);
    let dockerfile = DOCKERFILE.replace("{base}", &format!("{}/base/busybox:1", reg.host()));
    let image = format!("{}/app:1", reg.host());

    let a = fresh_env();
    let ctx = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let stderr = a.build_plain_ok(
        ctx.path(),
        &["-t", &image, "--push", "--cache-to", "type=inline"],
    );
    assert!(
        stderr.contains("inline build cache: 4 entries (mode=min) in the image config"),
        "{stderr}"
    );
    let pushed = record(&a, &image);
    let doc = inline_doc(&a, &image);
    assert_eq!(doc["format"], "rbuild.cache.index");
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{doc}");
    // Every entry's layer is one of the image's; no build time is recorded.
    let diff_ids: Vec<String> = pushed
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    for e in entries {
        let d = e["result"]["diff_id"].as_str().unwrap();
        assert!(diff_ids.iter().any(|x| x == d), "{d} not in {diff_ids:?}");
        assert_eq!(e["build_ms"], 0);
    }
    assert!(!pushed.config.extra.contains_key("moby.buildkit.cache.v0"));

    let b = fresh_env();
    let ctx_b = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let stderr = b.build_plain_ok(
        ctx_b.path(),
        &[
            "-t",
            "app",
            "--cache-from",
            &image,
            "--cache-to",
            "type=inline",
        ],
    );
    assert!(
        stderr.contains(&format!("imported inline build cache from `{image}`"))
            && stderr.contains("4 entries (4 new)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(" CACHED").count(), 4, "{stderr}");
    // The four built layers came from the registry (the base was pulled as usual).
    assert_eq!(stderr.matches("fetched cache layer").count(), 4, "{stderr}");
    assert!(
        !stderr.contains("more > more\n"),
        "a RUN step ran: {stderr}"
    );
    let rebuilt = record(&b, "app");
    assert_eq!(
        rebuilt.id(),
        pushed.id(),
        "the same config, inline cache included"
    );
    assert_eq!(rebuilt.manifest.layers.len(), pushed.manifest.layers.len());

    // `explain` in a third root: everything cached against the inline cache.
    let c = fresh_env();
    let out = c
        .rbuild()
        .args(["explain", "--format", "json", "--cache-from", &image])
        .arg(ctx_b.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["missed"], 0, "{explained}");
    // A changed file: the COPY misses and the explanation names the file.
    let ctx_c = context(&dockerfile, &[("a.txt", "changed\n")]);
    let out = c
        .rbuild()
        .args(["explain", "--format", "json", "--cache-from", &image])
        .arg(ctx_c.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let copy = explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with("COPY a.txt"))
        .unwrap();
    assert_eq!(copy["reasons"][0]["reason"], "files_changed", "{copy}");
    assert!(copy["reasons"][0].to_string().contains("a.txt"), "{copy}");
}

/// Under `SOURCE_DATE_EPOCH` the embedded cache depends on the image only: the build
/// verifies as reproducible, two empty roots make the same image ID, `--iidfile` names it,
/// and the document's entries carry the epoch as their creation time.
#[test]
fn inline_cache_keeps_builds_reproducible() {
    let dockerfile = DOCKERFILE.replace("{base}", "busybox:1.35");
    let ctx = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let env = TestEnv::new();
        load_busybox(&env);
        let out_dir = tempfile::tempdir().unwrap();
        let iid = out_dir.path().join("iid");
        let out = env
            .rbuild()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "--verify-reproducible"])
            .args(["--cache-to", "type=inline", "-t", "app", "--iidfile"])
            .arg(&iid)
            .arg(ctx.path())
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("reproducible: both builds gave"),
            "{stderr}"
        );
        let id = record(&env, "app").id().to_string();
        assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
        for e in inline_doc(&env, "app")["entries"].as_array().unwrap() {
            assert_eq!(e["created"], 1700000000, "{e}");
        }
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1]);
}

/// Rewrite the inline cache of the stored image `from` with `edit` (given the config's
/// `extra`), store it as `to` and push it.
fn tamper(
    env: &TestEnv,
    from: &str,
    to: &str,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, serde_json::Value>),
) {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let image = store.resolve_image(from).unwrap();
    let mut config = image.config.clone();
    edit(&mut config.extra);
    let tampered = store.commit_image(&config, &image.layers).unwrap();
    store
        .tag(&tampered, &rbuild_store::Reference::parse(to).unwrap())
        .unwrap();
    let out = env.rbuild().args(["push", to]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
}

/// `bytes` as the inline cache value (base64), as `--cache-to type=inline` writes it.
fn encode(bytes: &[u8]) -> serde_json::Value {
    let mut config = rbuild_store::ImageConfig::default();
    rbuild_registry::cache_inline::embed(&mut config, Some(bytes)).unwrap();
    config.extra.remove(KEY).unwrap()
}

/// Every tampered inline cache is refused with a warning, and the build runs (and succeeds):
/// bad base64, a document that is not JSON, an entry naming a layer the image lacks (only that
/// entry is ignored), an oversized document, BuildKit's key without ours, and an image with
/// no inline cache at all.
#[test]
fn hostile_inline_caches_are_refused_with_a_warning() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1", None);
    let dockerfile = DOCKERFILE.replace("{base}", &format!("{}/base/busybox:1", reg.host()));
    let image = format!("{}/app:good", reg.host());
    let a = fresh_env();
    let ctx = context(&dockerfile, &[("a.txt", "alpha\n")]);
    a.build_plain_ok(
        ctx.path(),
        &["-t", &image, "--push", "--cache-to", "type=inline"],
    );
    let good = inline_doc(&a, &image);
    let tag = |name: &str| format!("{}/app:{name}", reg.host());

    tamper(&a, &image, &tag("base64"), |extra| {
        extra.insert(KEY.into(), "%%% not base64".into());
    });
    tamper(&a, &image, &tag("json"), |extra| {
        extra.insert(KEY.into(), encode(b"{\"format\": [not json"));
    });
    let mut foreign = good.clone();
    // The COPY's entry now claims a layer the image does not have (its key still matches).
    let entry = foreign["entries"]
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
    entry["result"]["diff_id"] = format!("sha256:{}", "ab".repeat(32)).into();
    tamper(&a, &image, &tag("foreign"), |extra| {
        extra.insert(KEY.into(), encode(&serde_json::to_vec(&foreign).unwrap()));
    });
    tamper(&a, &image, &tag("huge"), |extra| {
        extra.insert(KEY.into(), "A".repeat(5 << 20).into());
    });
    tamper(&a, &image, &tag("buildkit"), |extra| {
        extra.remove(KEY);
        extra.insert("moby.buildkit.cache.v0".into(), encode(b"[]"));
    });
    tamper(&a, &image, &tag("none"), |extra| {
        extra.remove(KEY);
    });

    for (name, needle, cached) in [
        ("base64", "not base64", 0),
        ("json", "not an `rbuild.cache.index` document", 0),
        // The COPY runs again, makes the same layer, and the steps after it hit again.
        ("foreign", "ignored 1 entry of the inline build cache", 3),
        ("huge", "implausibly large", 0),
        ("buildkit", "BuildKit's inline cache", 0),
        ("none", "carries no inline build cache", 0),
    ] {
        let env = fresh_env();
        let stderr = env.build_plain_ok(ctx.path(), &["--cache-from", &tag(name)]);
        assert!(
            stderr.contains("warning:") && stderr.contains(needle),
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr.matches(" CACHED").count(),
            cached,
            "{name}: {stderr}"
        );
    }
}

/// A multi-platform build embeds one inline cache per platform image; `--cache-from` the
/// pushed index reads both, and an empty root hits every step of both platforms.
#[test]
fn multi_platform_inline_cache_round_trips() {
    let reg = RealRegistry::start();
    let image = format!("{}/multi:1", reg.host());
    let dockerfile = "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n";
    let files = [("a.txt", "alpha\n"), ("b.txt", "beta\n")];
    let platforms = "linux/amd64,linux/arm64";
    let a = fresh_env();
    let ctx = context(dockerfile, &files);
    let stderr = a.build_plain_ok(
        ctx.path(),
        &[
            "--platform",
            platforms,
            "-t",
            &image,
            "--push",
            "--cache-to",
            "type=inline",
        ],
    );
    assert_eq!(
        stderr
            .matches("inline build cache: 2 entries (mode=min)")
            .count(),
        2,
        "{stderr}"
    );
    let b = fresh_env();
    let stderr = b.build_plain_ok(
        ctx.path(),
        &["--platform", platforms, "--cache-from", &image],
    );
    assert_eq!(
        stderr.matches("imported inline build cache").count(),
        2,
        "{stderr}"
    );
    assert_eq!(stderr.matches(" CACHED").count(), 4, "{stderr}");
}

/// Only the final image's chain can be inline (BuildKit's `min`): the entries of a builder
/// stage, whose layers are not in the image, are left out, so an importing root runs that
/// stage again, while the `COPY --from` of its files — the same, under one
/// `SOURCE_DATE_EPOCH` — and the rest hit.
#[test]
fn inline_cache_leaves_out_other_stages() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1", None);
    let base = format!("{}/base/busybox:1", reg.host());
    let dockerfile = format!(
        "FROM {base} AS tool\nRUN echo tool > /tool\n\
         FROM {base}\nCOPY --from=tool /tool /tool\nCOPY a.txt /a.txt\n"
    );
    let image = format!("{}/app:stages", reg.host());
    let ctx = context(&dockerfile, &[("a.txt", "alpha\n")]);
    let a = fresh_env();
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let stderr = a.build_plain_ok(
        ctx.path(),
        &[
            &epoch[..],
            &["-t", &image, "--push", "--cache-to", "type=inline"],
        ]
        .concat(),
    );
    assert!(stderr.contains("inline build cache: 2 entries"), "{stderr}");
    let doc = inline_doc(&a, &image);
    for e in doc["entries"].as_array().unwrap() {
        assert!(
            e["preimage"]["instruction"]
                .as_str()
                .unwrap()
                .starts_with("COPY"),
            "{e}"
        );
    }
    // A later second: without the epoch the tool's file would have another mtime.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = fresh_env();
    let stderr = b.build_plain_ok(
        ctx.path(),
        &[&epoch[..], &["--cache-from", &image]].concat(),
    );
    assert!(
        stderr.contains("RUN echo tool > /tool\n") && stderr.contains("missed"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(" CACHED").count(), 2, "{stderr}");
}

//! Pull, push, auth, mounts, mirrors and the build-cache transport against a real
//! `docker-registry` (distribution 2.8) started on 127.0.0.1 by the test.

mod support;

use std::sync::Arc;

use rbuild_registry::manifest::{Document, media};
use rbuild_registry::{
    Client, Compression, Credential, LocalImage, LocalLayer, NoProgress, Platform, PushOptions,
    RegistriesConfig, RegistryError, RemoteRef, StaticCredentials, pull_image, push_image,
};
use support::real_registry::RealRegistry;
use support::sha256_digest;
use support::test_store::TestStore;

fn client_with(cfg: RegistriesConfig, creds: Vec<(String, Credential)>) -> Client {
    Client::with_credentials(cfg, Arc::new(StaticCredentials(creds)))
}

fn client() -> Client {
    client_with(RegistriesConfig::default(), vec![])
}

fn r(s: &str) -> RemoteRef {
    RemoteRef::parse(s).unwrap()
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

/// The pulled image as a LocalImage for pushing it again.
fn local_image(store: &TestStore, pulled: &rbuild_registry::PulledImage) -> LocalImage {
    let Document::Manifest(m) = &pulled.manifest.manifest else {
        panic!("image manifest expected")
    };
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&m.config.digest)).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    LocalImage {
        manifest: pulled.manifest.bytes.clone(),
        manifest_media_type: pulled.manifest.media_type.clone(),
        layers: m
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| LocalLayer {
                diff_id: rbuild_store::Digest::parse(d.as_str().unwrap()).unwrap(),
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect(),
    }
}

/// An arm64 image config without layers, and its descriptor.
fn arm_config() -> (Vec<u8>, serde_json::Value) {
    let bytes =
        br#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let desc = serde_json::json!({
        "mediaType": media::OCI_CONFIG, "digest": sha256_digest(&bytes), "size": bytes.len(),
    });
    (bytes, desc)
}

/// Counts "compressing" notes.
#[derive(Default)]
struct Notes(std::sync::Mutex<usize>);

impl Notes {
    fn compressions(&self) -> usize {
        *self.0.lock().unwrap()
    }
}

impl rbuild_registry::Progress for Notes {
    fn note(&self, text: &str) {
        if text.starts_with("compressing") {
            *self.0.lock().unwrap() += 1;
        }
    }
}

fn opts(store: &TestStore, mount_from: &[&str]) -> PushOptions {
    PushOptions {
        compression: Compression::Gzip,
        compress_threads: 0,
        mount_from: mount_from.iter().map(|s| s.to_string()).collect(),
        tmp_dir: store.tmp(),
    }
}

/// Push then pull round trip: pushing a pulled image mounts its blobs from the source
/// repository, a second push skips every blob, and pulling the pushed image by digest into
/// an empty store gives the same manifest digest.
#[test]
fn push_pull_round_trip_with_mount_skip_and_digest_pull() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1.35", None);
    let c = client();
    let a = TestStore::new();
    let pulled = pull_image(
        &c,
        &a,
        &r(&format!("{}/base/busybox:1.35", reg.host())),
        &amd64(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(pulled.downloaded, 2, "config + one layer");
    // Pulling again downloads nothing: everything is in the store.
    let again = pull_image(
        &c,
        &a,
        &r(&format!("{}/base/busybox:1.35", reg.host())),
        &amd64(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(again.downloaded, 0);

    let img = local_image(&a, &pulled);
    let target = r(&format!("{}/copy/busybox:v1", reg.host()));
    let pushed = push_image(
        &c,
        &a,
        &img,
        &target,
        &opts(&a, &["base/busybox"]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        pushed.digest, pulled.manifest.digest,
        "pushed byte for byte"
    );
    assert_eq!((pushed.uploaded, pushed.mounted), (0, 2), "{pushed:?}");
    let second = push_image(&c, &a, &img, &target, &opts(&a, &[]), &NoProgress).unwrap();
    assert_eq!((second.uploaded, second.skipped), (0, 2), "{second:?}");

    let b = TestStore::new();
    let by_digest = r(&format!("{}/copy/busybox@{}", reg.host(), pushed.digest));
    let back = pull_image(&c, &b, &by_digest, &amd64(), &NoProgress).unwrap();
    assert_eq!(back.manifest.digest, pulled.manifest.digest);
    assert_eq!(back.digest, pushed.digest);
}

/// A built image (uncompressed layer) is gzip-compressed at push time, pullable by skopeo
/// with identical content, and a second push does not recompress.
#[test]
fn built_image_is_compressed_on_push_and_readable_by_skopeo() {
    let reg = RealRegistry::start();
    let store = TestStore::new();
    // A one-file tar layer, stored uncompressed.
    let mut tar = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar);
        let data = b"hello from rbuild\n".repeat(1000);
        let mut h = tar::Header::new_ustar();
        h.set_path("hello.txt").unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
        b.finish().unwrap();
    }
    let layer = store.put_blob(&tar);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let config_digest = store.put_blob(config.as_bytes());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": media::OCI_LAYER, "digest": layer, "size": tar.len()}],
    }))
    .unwrap();
    let img = LocalImage {
        manifest,
        manifest_media_type: media::OCI_MANIFEST.into(),
        layers: vec![LocalLayer {
            diff_id: rbuild_store::Digest::parse(&layer).unwrap(),
            digest: rbuild_store::Digest::parse(&layer).unwrap(),
            size: tar.len() as u64,
            media_type: media::OCI_LAYER.into(),
        }],
    };
    let c = client();
    let target = r(&format!("{}/built/app:1", reg.host()));
    let notes = Notes::default();
    let pushed = push_image(&c, &store, &img, &target, &opts(&store, &[]), &notes).unwrap();
    assert_eq!(notes.compressions(), 1);
    let m: serde_json::Value = serde_json::from_slice(&pushed.manifest).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], media::OCI_LAYER_GZIP);
    let again = push_image(&c, &store, &img, &target, &opts(&store, &[]), &notes).unwrap();
    assert_eq!(notes.compressions(), 1, "second push recompressed");
    assert_eq!(again.digest, pushed.digest);

    // skopeo reads it back; the uncompressed layer digest equals our diff_id.
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/built/app:1", reg.host()))
        .arg(format!("oci:{}:x", out_dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gz_digest = m["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let gz = std::fs::read(out_dir.path().join("blobs/sha256").join(gz_digest)).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut plain)
        .unwrap();
    assert_eq!(sha256_digest(&plain), layer);
}

/// A hand-built two-platform index: the requested platform's manifest is pulled, a missing
/// platform is a clear error listing the available ones.
#[test]
fn multi_platform_index_selects_platform() {
    let reg = RealRegistry::start();
    reg.seed_busybox("multi/img:amd64", None);
    let c = client();
    let seed = TestStore::new();
    let amd = pull_image(
        &c,
        &seed,
        &r(&format!("{}/multi/img:amd64", reg.host())),
        &amd64(),
        &NoProgress,
    )
    .unwrap();
    // An arm64 "image" without layers.
    let (arm_config, arm_config_desc) = arm_config();
    let arm_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": arm_config_desc, "layers": [],
    }))
    .unwrap();
    let repo = rbuild_registry::Repo::new(&c, c.config().push_endpoint(&reg.host()), "multi/img");
    let open = || -> rbuild_registry::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(arm_config.clone())))
    };
    repo.push_blob(
        &rbuild_store::Digest::of(&arm_config),
        arm_config.len() as u64,
        &open,
        &[],
    )
    .unwrap();
    let arm_digest = repo
        .put_manifest("arm64", &arm_manifest, media::OCI_MANIFEST)
        .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [
            {"mediaType": media::OCI_MANIFEST, "digest": amd.manifest.digest, "size": amd.manifest.bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": media::OCI_MANIFEST, "digest": arm_digest, "size": arm_manifest.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let index_digest = repo
        .put_manifest("multi", &index, media::OCI_INDEX)
        .unwrap();

    let store = TestStore::new();
    let reference = r(&format!("{}/multi/img:multi", reg.host()));
    let arm = pull_image(
        &c,
        &store,
        &reference,
        &"linux/arm64".parse().unwrap(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(arm.manifest.digest, arm_digest);
    assert_eq!(
        arm.digest, index_digest,
        "the printed digest is the index digest"
    );
    let amd_again = pull_image(&c, &store, &reference, &amd64(), &NoProgress).unwrap();
    assert_eq!(amd_again.manifest.digest, amd.manifest.digest);
    let err = pull_image(
        &c,
        &store,
        &reference,
        &"linux/s390x".parse().unwrap(),
        &NoProgress,
    )
    .unwrap_err();
    let msg = format!("{:?}", miette::Report::new(err));
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/arm64/v8"),
        "{msg}"
    );
}

/// htpasswd Basic auth: anonymous pulls fail with the registry's message; with credentials
/// pull and push work.
#[test]
fn htpasswd_basic_auth() {
    let reg = RealRegistry::start_with(Some(("alice", "s3cret")));
    reg.seed_busybox("private/busybox:1", Some("alice:s3cret"));
    let store = TestStore::new();
    let reference = r(&format!("{}/private/busybox:1", reg.host()));
    let err = pull_image(&client(), &store, &reference, &amd64(), &NoProgress).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert_eq!(store.blob_count(), 0);
    let creds = vec![(
        reg.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    )];
    let c = client_with(RegistriesConfig::default(), creds);
    let pulled = pull_image(&c, &store, &reference, &amd64(), &NoProgress).unwrap();
    let img = local_image(&store, &pulled);
    let target = r(&format!("{}/private/copy:1", reg.host()));
    push_image(
        &c,
        &store,
        &img,
        &target,
        &opts(&store, &["private/busybox"]),
        &NoProgress,
    )
    .unwrap();
    let wrong = vec![(
        reg.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "nope-nope".into(),
        },
    )];
    let err = pull_image(
        &client_with(RegistriesConfig::default(), wrong),
        &TestStore::new(),
        &reference,
        &amd64(),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("authentication failed") && !err.contains("nope-nope"),
        "{err}"
    );
}

/// `docker.io` mapped to a local mirror: `nginx:x` is pulled from the mirror, offline.
#[test]
fn docker_io_mirror_serves_official_images() {
    let reg = RealRegistry::start();
    reg.seed_busybox("library/nginx:x", None);
    let cfg = RegistriesConfig::parse(&format!(
        "[network]\nretries = 1\nconnect_timeout_secs = 2\n\n[registries.\"docker.io\"]\nmirrors = [\"http://{}\"]\n",
        reg.host()
    ))
    .unwrap();
    let c = client_with(cfg, vec![]);
    let store = TestStore::new();
    let pulled = pull_image(&c, &store, &r("nginx:x"), &amd64(), &NoProgress).unwrap();
    assert_eq!(pulled.served_by, reg.host());
    let names = store.names();
    assert!(
        names.iter().any(|n| n.contains("library/nginx:x")),
        "{names:?}"
    );
}

/// The build-cache transport between two stores: export pushes the index and layers as an
/// artifact, a second export uploads only what is new, and import on an empty store reads
/// the index and fetches only the layer asked for.
#[test]
fn cache_export_import_between_two_stores() {
    let reg = RealRegistry::start();
    let a = TestStore::new();
    let layer = |text: &str| {
        let d = a.put_blob(text.repeat(5000).as_bytes());
        let d = rbuild_store::Digest::parse(&d).unwrap();
        LocalLayer {
            diff_id: d.clone(),
            digest: d,
            size: (text.len() * 5000) as u64,
            media_type: media::OCI_LAYER.into(),
        }
    };
    let l1 = layer("one ");
    let l2 = layer("two ");
    let c = client();
    let target = r(&format!("{}/app/cache:build", reg.host()));
    let index1 = br#"{"steps":{"k1":"one"}}"#;
    let first = rbuild_registry::cache::export_cache(
        &c,
        &a,
        &target,
        index1,
        std::slice::from_ref(&l1),
        &opts(&a, &[]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(first.uploaded, 2, "{first:?}");
    let index2 = br#"{"steps":{"k1":"one","k2":"two"}}"#;
    let second = rbuild_registry::cache::export_cache(
        &c,
        &a,
        &target,
        index2,
        &[l1.clone(), l2.clone()],
        &opts(&a, &[]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        (second.uploaded, second.skipped),
        (2, 1),
        "only the new layer and index: {second:?}"
    );

    let b = TestStore::new();
    let imported = rbuild_registry::cache::import_cache(&c, &target).unwrap();
    assert_eq!(imported.index, index2);
    assert_eq!(imported.layers.len(), 2);
    assert_eq!(b.blob_count(), 0, "import downloads no layer by itself");
    let wanted = imported
        .layers
        .iter()
        .find(|l| l.diff_id == l2.diff_id)
        .unwrap();
    assert!(rbuild_registry::pull::fetch_blob(&c, &b, &target, &wanted.blob, &NoProgress).unwrap());
    assert_eq!(b.blob_count(), 1);
    let gz = b.read_blob(&wanted.blob.digest);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut plain)
        .unwrap();
    assert_eq!(sha256_digest(&plain), l2.diff_id);
}

/// With `chunk_size_mb` set, blobs go up as ordered PATCH chunks and the result is the same
/// image as a monolithic push.
#[test]
fn chunked_upload_matches_monolithic() {
    let reg = RealRegistry::start();
    reg.seed_busybox("src/busybox:1", None);
    let a = TestStore::new();
    let pulled = pull_image(
        &client(),
        &a,
        &r(&format!("{}/src/busybox:1", reg.host())),
        &amd64(),
        &NoProgress,
    )
    .unwrap();
    let img = local_image(&a, &pulled);
    let cfg = RegistriesConfig::parse("[network]\nchunk_size_mb = 1\n").unwrap();
    let chunked = client_with(cfg, vec![]);
    let target = r(&format!("{}/chunked/busybox:1", reg.host()));
    let pushed = push_image(&chunked, &a, &img, &target, &opts(&a, &[]), &NoProgress).unwrap();
    assert_eq!(pushed.uploaded, 2);
    let b = TestStore::new();
    let back = pull_image(&client(), &b, &target, &amd64(), &NoProgress).unwrap();
    assert_eq!(back.manifest.digest, pulled.manifest.digest);
}

/// A multi-platform push: children are pushed by digest before the index, and the pushed
/// index serves each platform.
#[test]
fn index_push_children_first() {
    let reg = RealRegistry::start();
    reg.seed_busybox("src/busybox:1", None);
    let c = client();
    let a = TestStore::new();
    let pulled = pull_image(
        &c,
        &a,
        &r(&format!("{}/src/busybox:1", reg.host())),
        &amd64(),
        &NoProgress,
    )
    .unwrap();
    let amd = local_image(&a, &pulled);
    // A second "platform" without layers; its config is in the local store.
    let (arm_config, arm_config_desc) = arm_config();
    a.put_blob(&arm_config);
    let arm_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": arm_config_desc, "layers": [],
    }))
    .unwrap();
    let arm = LocalImage {
        manifest: arm_bytes.clone(),
        manifest_media_type: media::OCI_MANIFEST.into(),
        layers: vec![],
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [
            {"mediaType": media::OCI_MANIFEST, "digest": pulled.manifest.digest, "size": pulled.manifest.bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": media::OCI_MANIFEST, "digest": sha256_digest(&arm_bytes), "size": arm_bytes.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let target = r(&format!("{}/multi/pushed:1", reg.host()));
    let pushed = rbuild_registry::push_index(
        &c,
        &a,
        &rbuild_registry::LocalIndex {
            index: index.clone(),
            media_type: media::OCI_INDEX.into(),
            children: vec![
                rbuild_registry::LocalChild::Image(amd),
                rbuild_registry::LocalChild::Image(arm),
            ],
        },
        &target,
        &opts(&a, &["src/busybox"]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        pushed.digest,
        sha256_digest(&index),
        "unchanged children keep the index bytes"
    );
    let b = TestStore::new();
    let got = pull_image(
        &c,
        &b,
        &target,
        &"linux/arm64".parse().unwrap(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(got.manifest.digest, sha256_digest(&arm_bytes));
    assert_eq!(got.digest, pushed.digest);
}

/// An index with an attestation, pulled whole (`pull_all_platforms`) from a fake registry,
/// pushed to distribution: every manifest goes by digest and the index byte for byte (the
/// registry accepts it because its children, the attestation too, are there), a second push
/// uploads nothing, and pulling it back whole gives the same digest and every blob.
#[test]
fn whole_index_with_attestation_round_trips() {
    let tree = Arc::new(support::tree::Tree::new());
    let t2 = tree.clone();
    let source = support::fake_http::FakeHttp::start(move |req, _| t2.serve(req));
    let reg = RealRegistry::start();
    let c = client();
    let a = TestStore::new();
    let name = format!("{}/t/multi:1", source.host());
    rbuild_registry::pull_all_platforms(&c, &a, &r(&name), &NoProgress).unwrap();
    let stored = a.resolve_target(&name).unwrap();
    let local = rbuild_registry::store_impl::local_target(&a, &stored, &name).unwrap();
    let target = r(&format!("{}/multi/app:1", reg.host()));
    let pushed =
        rbuild_registry::push_target(&c, &a, &local, &target, &opts(&a, &[]), &NoProgress).unwrap();
    assert_eq!(pushed.digest.to_string(), sha256_digest(&tree.index));
    assert_eq!(pushed.manifest, tree.index);
    // Eight blob references, seven blobs: the layer both platforms share goes once.
    assert_eq!((pushed.uploaded, pushed.skipped), (7, 1));
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .expect("skopeo is installed");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(
        raw.stdout, tree.index,
        "the registry serves the index byte for byte"
    );
    let again =
        rbuild_registry::push_target(&c, &a, &local, &target, &opts(&a, &[]), &NoProgress).unwrap();
    assert_eq!((again.uploaded, again.skipped), (0, 8));

    let b = TestStore::new();
    let back = rbuild_registry::pull_all_platforms(&c, &b, &target, &NoProgress).unwrap();
    assert_eq!(back.digest, pushed.digest);
    assert_eq!(back.manifests.len(), 3);
    assert!(b.has(&tree.attestation_layer) && b.has(&tree.shared_layer));
    assert!(b.resolve_target(&target.to_string()).unwrap().is_index());
}

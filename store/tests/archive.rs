//! Library-level tests of load/save/import: the shared busybox image, round trips, determinism,
//! and hostile archives that must be refused with the store left unchanged.

use std::fs;
use std::path::PathBuf;

use rbuild_store::archive::{ImportOptions, SaveFormat, SaveItem};
use rbuild_store::fsck::FsckOptions;
use rbuild_store::layer::flatten_image;
use rbuild_store::testing::{TarBuilder, gzip};
use rbuild_store::{Digest, Error, Limits, Reference, Store, StoreOptions};

fn shared() -> PathBuf {
    let dir = match std::env::var_os("RBUILD_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    assert!(
        dir.is_dir(),
        "shared test data missing at {}",
        dir.display()
    );
    dir
}

fn busybox_tar() -> Vec<u8> {
    fs::read(shared().join("images/busybox-1.35.oci.tar")).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_with(d.path().join("root"), StoreOptions::default()).unwrap();
    (d, s)
}

/// Everything observable about a store's content: index.json and the set of blobs.
fn state(s: &Store) -> (Vec<u8>, Vec<String>) {
    let index = fs::read(s.root().join("index.json")).unwrap();
    let mut blobs: Vec<String> = fs::read_dir(s.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (index, blobs)
}

/// Builds an OCI archive from parts, with hooks to tamper with each.
struct Parts {
    layers: Vec<Vec<u8>>,
    layer_media: String,
    config: serde_json::Value,
    manifest_override: Option<Vec<u8>>,
    index_override: Option<Vec<u8>>,
    drop_blob: Option<usize>,
    corrupt_blob: Option<usize>,
}

impl Parts {
    fn new(layers: Vec<Vec<u8>>) -> Parts {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        Parts {
            layers,
            layer_media: "application/vnd.oci.image.layer.v1.tar".into(),
            config: serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "created": "2024-05-01T00:00:00Z",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": "test"}]
            }),
            manifest_override: None,
            index_override: None,
            drop_blob: None,
            corrupt_blob: None,
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut blobs: Vec<Vec<u8>> = self.layers.clone();
        let config = serde_json::to_vec(&self.config).unwrap();
        let layer_descs: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": self.layer_media, "digest": Digest::of(l).to_string(), "size": l.len()}))
            .collect();
        let manifest = self.manifest_override.clone().unwrap_or_else(|| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
                "layers": layer_descs,
            }))
            .unwrap()
        });
        let index = self.index_override.clone().unwrap_or_else(|| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
                    "annotations": {"io.containerd.image.name": "docker.io/library/hostile:1"}
                }]
            }))
            .unwrap()
        });
        blobs.push(config);
        blobs.push(manifest);
        let mut t = TarBuilder::new();
        t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        for (i, b) in blobs.iter().enumerate() {
            if self.drop_blob == Some(i) {
                continue;
            }
            let name = format!("blobs/sha256/{}", Digest::of(b).hex());
            if self.corrupt_blob == Some(i) {
                let mut bad = b.clone();
                bad.push(b'\n');
                t.file(name, &bad);
            } else {
                t.file(name, b);
            }
        }
        t.file("index.json", &index);
        t.finish()
    }
}

fn simple_layer() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("bin")
        .file_mode("bin/tool", b"#!/bin/sh\n", 0o755, 0, 0);
    t.finish()
}

#[test]
/// Loading busybox gives the documented name, and the flattener sees its files.
fn busybox_loads_and_flattens() {
    let (_d, s) = store();
    let report = s.load(&busybox_tar()[..]).unwrap();
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].names[0].familiar(), "busybox:1.35");
    let img = s.resolve_image("busybox:1.35").unwrap();
    let tree = flatten_image(&s, &img).unwrap().to_conformance_map();
    // The conformance corpus's expected busybox base files.
    let expected: serde_json::Value = serde_json::from_slice(
        &fs::read(shared().join("conformance/build/expected/copy-basic.json")).unwrap(),
    )
    .unwrap();
    let expected = expected["files"].as_object().unwrap();
    for key in [
        "/bin/busybox",
        "/bin/sh",
        "/etc/passwd",
        "/tmp",
        "/usr/bin",
        "/dev",
    ] {
        assert_eq!(
            tree.get(key).map(String::as_str),
            expected[key].as_str(),
            "{key}"
        );
    }
    assert!(
        s.fsck(FsckOptions {
            full: true,
            repair: false
        })
        .unwrap()
        .is_ok()
    );
}

#[test]
/// save → load into a fresh store reproduces the same manifest digest; saving twice gives
/// identical bytes; a docker-archive round trips too.
fn save_is_deterministic_and_round_trips() {
    let (_d, s) = store();
    s.load(&busybox_tar()[..]).unwrap();
    let img = s.resolve_image("busybox:1.35").unwrap();
    let names = s.names_of(&img.manifest_digest).unwrap();
    let item = SaveItem {
        image: img.clone(),
        names,
    };
    for format in [SaveFormat::Oci, SaveFormat::Docker] {
        let a = s
            .save(std::slice::from_ref(&item), format, Vec::new())
            .unwrap();
        let b = s
            .save(std::slice::from_ref(&item), format, Vec::new())
            .unwrap();
        assert_eq!(a, b, "{format:?} save must be deterministic");
        let (_d2, s2) = store();
        let r = s2.load(&a[..]).unwrap();
        assert_eq!(r.images[0].names[0].familiar(), "busybox:1.35");
        let again = s2.resolve_image("busybox:1.35").unwrap();
        assert_eq!(again.config_digest, img.config_digest);
        assert_eq!(
            again.manifest_digest, img.manifest_digest,
            "blobs kept exactly as stored"
        );
        // A docker-archive without index.json still loads (manifest rebuilt).
        if format == SaveFormat::Docker {
            let stripped = strip_member(&a, "index.json");
            let (_d3, s3) = store();
            s3.load(&stripped[..]).unwrap();
            assert_eq!(
                s3.resolve_image("busybox:1.35").unwrap().config_digest,
                img.config_digest
            );
        }
    }
}

/// Rewrite a tar without one member (test helper).
fn strip_member(tar_bytes: &[u8], name: &str) -> Vec<u8> {
    rewrite_member(tar_bytes, name, |_| None)
}

/// Rewrite a tar with member `name` replaced by what `change` returns (`None`: dropped).
fn rewrite_member(
    tar_bytes: &[u8],
    name: &str,
    change: impl Fn(Vec<u8>) -> Option<Vec<u8>>,
) -> Vec<u8> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut b = tar::Builder::new(Vec::new());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if h.path().unwrap().to_str() == Some(name) {
            match change(data) {
                Some(new) => data = new,
                None => continue,
            }
            h.set_size(data.len() as u64);
            h.set_cksum();
        }
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
/// A docker-archive whose manifest.json names the image with an invalid reference is refused
/// (as `docker load` does) and the store is unchanged, rather than loading it untagged.
fn docker_archive_with_a_bad_repo_tag_is_refused() {
    let (_d, s) = store();
    s.load(&busybox_tar()[..]).unwrap();
    let img = s.resolve_image("busybox:1.35").unwrap();
    let names = s.names_of(&img.manifest_digest).unwrap();
    let item = SaveItem { image: img, names };
    let saved = s
        .save(std::slice::from_ref(&item), SaveFormat::Docker, Vec::new())
        .unwrap();
    let stripped = strip_member(&saved, "index.json");
    let bad = rewrite_member(&stripped, "manifest.json", |bytes| {
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v[0]["RepoTags"] = serde_json::json!(["Bad Tag"]);
        Some(serde_json::to_vec(&v).unwrap())
    });
    let (_d2, s2) = store();
    let before = state(&s2);
    let err = s2
        .load(&bad[..])
        .expect_err("a bad RepoTags entry was accepted");
    assert!(
        err.to_string()
            .contains("`Bad Tag` is not a valid image name"),
        "{err}"
    );
    assert_eq!(state(&s2), before);
}

#[test]
/// gzip and zstd layers load, and the layer blobs are kept as received.
fn compressed_layers_load() {
    let layer = simple_layer();
    for (compressed, mt) in [
        (gzip(&layer), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (
            zstd::encode_all(&layer[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        let (_d, s) = store();
        let mut p = Parts::new(vec![compressed.clone()]);
        p.layer_media = mt.into();
        p.config["rootfs"]["diff_ids"] = serde_json::json!([Digest::of(&layer).to_string()]);
        s.load(&p.build()[..]).unwrap();
        let img = s.resolve_image("hostile:1").unwrap();
        assert_eq!(img.layers[0].descriptor.digest, Digest::of(&compressed));
        let tree = flatten_image(&s, &img).unwrap().to_conformance_map();
        assert!(tree["/bin/tool"].starts_with("file 0o755"));
    }
}

fn assert_refused(archive: &[u8], needle: &str) {
    let (_d, s) = store();
    s.load(&busybox_tar()[..]).unwrap();
    let before = state(&s);
    let err = s.load(archive).expect_err("hostile archive accepted");
    let text = format!("{err}");
    assert!(
        text.contains(needle),
        "error `{text}` does not mention `{needle}`"
    );
    assert_eq!(state(&s), before, "the store changed after a refused load");
    let report = s
        .fsck(FsckOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        fs::read_dir(s.root().join("ingest")).unwrap().count(),
        0,
        "ingest leftovers"
    );
}

#[test]
/// Every kind of hostile or broken archive is refused with a pointed error and no trace.
fn hostile_archives_are_refused_and_leave_the_store_unchanged() {
    let good = Parts::new(vec![simple_layer()]);
    let full = good.build();
    // Truncated archive (inside a member).
    assert_refused(&full[..full.len() / 2], "truncated");
    assert_refused(&full[..full.len() / 2 + 100], "truncated");
    // A blob that does not match its digest.
    let mut p = Parts::new(vec![simple_layer()]);
    p.corrupt_blob = Some(0);
    assert_refused(&p.build(), "digest mismatch");
    // A missing blob.
    let mut p = Parts::new(vec![simple_layer()]);
    p.drop_blob = Some(0);
    assert_refused(&p.build(), "lacks");
    // Manifest that is not JSON; wrong media type; ambiguous document.
    let mut p = Parts::new(vec![simple_layer()]);
    p.manifest_override = Some(b"{not json".to_vec());
    assert_refused(&p.build(), "invalid manifest");
    let mut p = Parts::new(vec![simple_layer()]);
    p.manifest_override = Some(br#"{"schemaVersion":2,"mediaType":"text/html","config":{"mediaType":"x","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec());
    assert_refused(&p.build(), "text/html");
    let mut p = Parts::new(vec![simple_layer()]);
    p.index_override = Some(br#"{"schemaVersion":2,"manifests":[],"manifests":[]}"#.to_vec());
    assert_refused(&p.build(), "duplicate key");
    let mut p = Parts::new(vec![simple_layer()]);
    p.layer_media = "application/x-unknown".into();
    assert_refused(&p.build(), "not a layer type");
    // diff_id that does not match the layer.
    let mut p = Parts::new(vec![simple_layer()]);
    p.config["rootfs"]["diff_ids"] = serde_json::json!([Digest::of(b"other").to_string()]);
    assert_refused(&p.build(), "diff_id");
    // Hostile layers.
    let hostile: Vec<(TarBuilder, &str)> = vec![
        (
            {
                let mut t = TarBuilder::new();
                t.file("../../escape", b"x");
                t
            },
            "`..`",
        ),
        (
            {
                let mut t = TarBuilder::new();
                t.symlink("etc", "/").file("etc/shadow", b"x");
                t
            },
            "through",
        ),
        (
            {
                let mut t = TarBuilder::new();
                t.hardlink("l", "../../etc/passwd");
                t
            },
            "`..`",
        ),
        (
            {
                let mut t = TarBuilder::new();
                t.file(".wh..", b"");
                t
            },
            "whiteout",
        ),
        (
            {
                let mut t = TarBuilder::new();
                t.file("a", b"1").file("a", b"2");
                t
            },
            "twice",
        ),
        (
            {
                let mut t = TarBuilder::new();
                t.huge_pax_header(2 << 20);
                t
            },
            "limit",
        ),
    ];
    for (t, needle) in hostile {
        let layer = t.finish();
        assert_refused(&Parts::new(vec![layer]).build(), needle);
    }
}

#[test]
/// A gzip bomb is stopped by the expanded-size limit, naming the layer.
fn gzip_bomb_is_bounded() {
    let mut t = TarBuilder::new();
    t.file("zeros", &vec![0u8; 4 << 20]);
    let layer = t.finish();
    let mut p = Parts::new(vec![gzip(&layer)]);
    p.layer_media = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    let d = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_layer_bytes: 1 << 20,
        ..Limits::default()
    };
    let s = Store::open_with(d.path(), StoreOptions { limits }).unwrap();
    let err = s.load(&p.build()[..]).unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&Digest::of(&gzip(&layer)).to_string())
            || err.to_string().contains("layer 1"),
        "{err}"
    );
    assert!(s.list_images().unwrap().is_empty());
}

#[test]
/// import turns a rootfs tarball into a one-layer image; the config edit applies.
fn import_makes_a_single_layer_image() {
    let (_d, s) = store();
    let rootfs = gzip(&simple_layer());
    let img = s
        .import(
            &rootfs[..],
            &ImportOptions {
                source: "rootfs.tar.gz".into(),
                ..Default::default()
            },
            |c| {
                c.config.get_or_insert_with(Default::default).cmd = Some(vec!["sh".into()]);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].diff_id, Digest::of(&simple_layer()));
    assert_eq!(
        img.config.config.as_ref().unwrap().cmd.as_deref(),
        Some(&["sh".to_string()][..])
    );
    assert_eq!(
        img.config.history[0].comment.as_deref(),
        Some("Imported from rootfs.tar.gz")
    );
    s.tag(&img, &Reference::parse("imported").unwrap()).unwrap();
    let mut bad = TarBuilder::new();
    bad.file("../x", b"");
    let before = state(&s);
    assert!(
        s.import(&bad.finish()[..], &ImportOptions::default(), |_| Ok(()))
            .is_err()
    );
    // Only the ingest temp file existed; nothing was published.
    assert_eq!(state(&s).1, before.1);
}

#[test]
/// An OCI layout holding a Docker schema 2 manifest (docker media types) loads unchanged.
fn docker_schema2_manifests_load() {
    let layer = simple_layer();
    let gz = gzip(&layer);
    let mut p = Parts::new(vec![gz.clone()]);
    p.layer_media = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    p.config["rootfs"]["diff_ids"] = serde_json::json!([Digest::of(&layer).to_string()]);
    let config = serde_json::to_vec(&p.config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": Digest::of(&gz).to_string(), "size": gz.len()}],
    }))
    .unwrap();
    p.manifest_override = Some(manifest.clone());
    p.index_override = Some(
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/d2:1"}
        }]}))
        .unwrap(),
    );
    let (_d, s) = store();
    s.load(&p.build()[..]).unwrap();
    let img = s.resolve_image("d2:1").unwrap();
    assert_eq!(
        img.manifest_digest,
        Digest::of(&manifest),
        "manifest kept byte for byte"
    );
    assert_eq!(
        img.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        flatten_image(&s, &img)
            .unwrap()
            .to_conformance_map()
            .contains_key("/bin/tool")
    );
}

#[test]
/// ADD archives may be bzip2 or xz: the decoder handles both by magic bytes.
fn bzip2_and_xz_archives_decode() {
    use std::io::{Read, Write};
    let data = simple_layer();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&data).unwrap();
    let bz = bz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&data).unwrap();
    let xz = xz.finish().unwrap();
    for (blob, c) in [
        (bz, rbuild_store::Compression::Bzip2),
        (xz, rbuild_store::Compression::Xz),
    ] {
        let (got, mut r) =
            rbuild_store::layer::decompress(&blob[..], None, &Limits::default(), "a").unwrap();
        assert_eq!(got, c);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }
}

#[test]
/// An archive whose only index entry has a media type that is not an image says so in the
/// error, instead of a bare "no images"; the store is unchanged.
fn an_archive_of_non_images_names_the_media_type() {
    let layer = simple_layer();
    let p = Parts::new(vec![layer]);
    let manifest_bytes = {
        // The manifest the default build makes, to point the index entry at it.
        let built = p.build();
        let mut a = tar::Archive::new(&built[..]);
        let mut index = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("index.json") {
                std::io::Read::read_to_end(&mut e, &mut index).unwrap();
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
        v["manifests"][0].clone()
    };
    let mut p = p;
    let mut entry = manifest_bytes;
    entry["mediaType"] = "application/vnd.example.not-an-image".into();
    p.index_override = Some(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry]
        }))
        .unwrap(),
    );
    let (_d, s) = store();
    let before = state(&s);
    let err = s.load(&p.build()[..]).expect_err("accepted");
    let text = err.to_string();
    assert!(
        text.contains("contains no images")
            && text.contains("`application/vnd.example.not-an-image` is not an image"),
        "{text}"
    );
    assert_eq!(state(&s), before);
}

/// An archive whose `index.json` leads to the image through `levels` nested image indexes
/// (the innermost lists the host manifest and a decoy for another platform; the outer ones
/// list the next index without a platform, as tools that wrap indexes write them).
fn nested_index_archive(levels: usize) -> Vec<u8> {
    let layer = simple_layer();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": rbuild_store::manifest::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let index_of = |entries: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap()
    };
    let mut blobs = vec![layer, config, manifest.clone()];
    let mut next = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
        "platform": {"os": "linux", "architecture": rbuild_store::manifest::host_arch()},
    });
    let mut first = true;
    for _ in 0..levels {
        let mut entries = vec![next];
        if first {
            entries.insert(
                0,
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(b"decoy").to_string(), "size": 5,
                    "platform": {"os": "linux", "architecture": "s390x"},
                }),
            );
            first = false;
        }
        let index = index_of(serde_json::Value::Array(entries));
        next = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": Digest::of(&index).to_string(), "size": index.len(),
        });
        blobs.push(index);
    }
    next["annotations"] =
        serde_json::json!({"io.containerd.image.name": "docker.io/library/nested:1"});
    let mut t = TarBuilder::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for b in &blobs {
        t.file(format!("blobs/sha256/{}", Digest::of(b).hex()), b);
    }
    t.file("index.json", &index_of(serde_json::json!([next])));
    t.finish()
}

#[test]
/// Two and three levels of nested indexes load (as skopeo reads them); deeper nesting is
/// refused with a clear error and leaves the store as it was.
fn nested_image_indexes_load_within_a_bound() {
    for levels in [1, 2, 3] {
        let (_d, s) = store();
        s.load(&nested_index_archive(levels)[..])
            .unwrap_or_else(|e| panic!("{levels} levels: {e}"));
        s.resolve_image("nested:1").unwrap();
        let report = s
            .fsck(FsckOptions {
                full: true,
                repair: false,
            })
            .unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
    assert_refused(&nested_index_archive(6), "nest deeper than 4 levels");
}

//! Helpers for the store integration tests: the shared busybox archive, archive builders
//! (with hooks for tampering), store-state snapshots and the fsck assertion.

use std::fs;
use std::path::Path;

use rbuild_store::Digest;
use rbuild_store::testing::TarBuilder;

use super::{TestEnv, text};

/// index.json bytes and the sorted blob names: what "the store is unchanged" compares.
pub fn store_state(root: &Path) -> (Vec<u8>, Vec<String>) {
    let index = fs::read(root.join("index.json")).unwrap_or_default();
    let mut blobs: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    blobs.sort();
    (index, blobs)
}

/// `rbuild store fsck --full` must pass.
pub fn assert_fsck_ok(env: &TestEnv) {
    let out = env
        .rbuild()
        .args(["store", "fsck", "--full"])
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "fsck failed:\n{o}\n{e}");
    assert!(!o.contains("error:"), "{o}");
}

/// An OCI archive assembled from parts, each of which a test may tamper with.
pub struct Parts {
    pub layers: Vec<Vec<u8>>,
    pub layer_media: String,
    pub config: serde_json::Value,
    pub manifest_override: Option<Vec<u8>>,
    pub drop_blob: Option<usize>,
    pub corrupt_blob: Option<usize>,
    pub name: String,
}

impl Parts {
    pub fn new(name: &str, layers: Vec<Vec<u8>>) -> Parts {
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        Parts {
            layers,
            layer_media: "application/vnd.oci.image.layer.v1.tar".into(),
            config: serde_json::json!({
                "architecture": "amd64", "os": "linux", "created": "2024-05-01T00:00:00Z",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>()
            }),
            manifest_override: None,
            drop_blob: None,
            corrupt_blob: None,
            name: name.to_string(),
        }
    }

    /// The archive members (name, bytes) and the index.json entry of this image.
    pub fn members(&self) -> (Vec<(String, Vec<u8>)>, serde_json::Value) {
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
        let entry = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": self.name}
        });
        let mut blobs = self.layers.clone();
        blobs.push(config);
        blobs.push(manifest);
        let mut out = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            if self.drop_blob == Some(i) {
                continue;
            }
            let name = format!("blobs/sha256/{}", Digest::of(b).hex());
            let mut data = b.clone();
            if self.corrupt_blob == Some(i) {
                let last = data.len() - 1;
                data[last] ^= 0xff;
            }
            out.push((name, data));
        }
        (out, entry)
    }

    pub fn build(&self) -> Vec<u8> {
        merge(std::slice::from_ref(self))
    }
}

/// One OCI archive holding several images (their index entries in order).
pub fn merge(parts: &[Parts]) -> Vec<u8> {
    let mut files = std::collections::BTreeMap::new();
    let mut entries = Vec::new();
    for p in parts {
        let (members, entry) = p.members();
        files.extend(members);
        entries.push(entry);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let mut t = TarBuilder::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (n, d) in &files {
        t.file(n, d);
    }
    t.file("index.json", &index);
    t.finish()
}

/// A layer of `n` files of `size` pseudo-random bytes (deterministic per `seed`).
pub fn bulky_layer(seed: u64, n: usize, size: usize) -> Vec<u8> {
    let mut t = TarBuilder::new();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in 0..n {
        let mut data = vec![0u8; size];
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        t.file(format!("data/{seed}/{i}"), &data);
    }
    t.finish()
}

/// A small, valid layer.
pub fn small_layer(tag: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc").file(format!("etc/{tag}"), tag.as_bytes());
    t.finish()
}

//! A multi-platform image tree for pull/push tests of indexes, served by the fake registry
//! or pushed to a real one.

use crate::support::fake_http::{Reply, Seen, reply};
use crate::support::sha256_digest;

/// A two-platform index over `t/multi`: amd64 and arm64 share a base layer and each has one
/// of its own; an attestation manifest (platform `unknown/unknown`, in-toto layer) refers to
/// the amd64 image, as BuildKit writes them. Served by digest; the tag `1` is the index.
pub struct Tree {
    /// path under `/v2/t/multi/` → (content type, bytes)
    pub objects: std::collections::BTreeMap<String, (String, Vec<u8>)>,
    pub index: Vec<u8>,
    pub shared_layer: String,
    pub arm_manifest: String,
    pub arm_layer: String,
    pub attestation_layer: String,
}

pub fn json(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

pub fn desc(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()})
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

impl Tree {
    pub fn new() -> Self {
        let mut objects = std::collections::BTreeMap::new();
        let mut blob = |bytes: Vec<u8>| {
            objects.insert(
                format!("blobs/{}", sha256_digest(&bytes)),
                ("application/octet-stream".to_string(), bytes.clone()),
            );
            bytes
        };
        let shared = blob((0..150_000u32).map(|i| (i % 239) as u8).collect());
        let amd_own = blob(b"amd64 layer".repeat(1000));
        let arm_own = blob(b"arm64 layer".repeat(1000));
        let config = |arch: &str, own: &[u8]| {
            json(serde_json::json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&shared), sha256_digest(own)]},
            }))
        };
        let amd_config = blob(config("amd64", &amd_own));
        let arm_config = blob(config("arm64", &arm_own));
        let statement = blob(br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#.to_vec());
        let empty = blob(b"{}".to_vec());
        let manifest = |config: &[u8], own: &[u8]| {
            json(serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": desc("application/vnd.oci.image.config.v1+json", config),
                "layers": [desc(GZIP_LAYER, &shared), desc(GZIP_LAYER, own)],
            }))
        };
        let amd = manifest(&amd_config, &amd_own);
        let arm = manifest(&arm_config, &arm_own);
        // As BuildKit writes them: an image config media type; only the index entry (platform
        // unknown/unknown, reference type) says it is not an image.
        let attestation = json(serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &empty),
            "layers": [desc("application/vnd.in-toto+json", &statement)],
        }));
        let mut entry = |bytes: &[u8], platform: serde_json::Value| {
            objects.insert(
                format!("manifests/{}", sha256_digest(bytes)),
                (OCI_MANIFEST.to_string(), bytes.to_vec()),
            );
            let mut d = desc(OCI_MANIFEST, bytes);
            d["platform"] = platform;
            d
        };
        let mut att_entry = entry(
            &attestation,
            serde_json::json!({"architecture": "unknown", "os": "unknown"}),
        );
        att_entry["annotations"] = serde_json::json!({
            "vnd.docker.reference.digest": sha256_digest(&amd),
            "vnd.docker.reference.type": "attestation-manifest",
        });
        let index = json(serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                entry(&amd, serde_json::json!({"architecture": "amd64", "os": "linux"})),
                entry(&arm, serde_json::json!({"architecture": "arm64", "os": "linux"})),
                att_entry,
            ],
        }));
        for reference in ["1".to_string(), sha256_digest(&index)] {
            objects.insert(
                format!("manifests/{reference}"),
                (OCI_INDEX.to_string(), index.clone()),
            );
        }
        Tree {
            objects,
            shared_layer: sha256_digest(&shared),
            arm_manifest: sha256_digest(&arm),
            arm_layer: sha256_digest(&arm_own),
            attestation_layer: sha256_digest(&statement),
            index,
        }
    }

    pub fn serve(&self, req: &Seen) -> Reply {
        if req.path == "/v2/" {
            return reply(200, &[], "{}");
        }
        let found = req
            .path
            .strip_prefix("/v2/t/multi/")
            .and_then(|p| self.objects.get(p));
        match found {
            Some((ct, bytes)) => reply(200, &[("Content-Type", ct.as_str())], bytes.clone()),
            None => reply(
                404,
                &[],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        }
    }

    pub fn blob_path(digest: &str) -> String {
        format!("/v2/t/multi/blobs/{digest}")
    }
}

//! Manifest and index documents: media types, the descriptor model, parsing of exactly the
//! verified bytes, and the checks the distribution spec asks of clients (`mediaType` agrees
//! with `Content-Type`, no document that is both an index and a manifest, bounded sizes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};

/// Media types rbuild reads and writes: the store's, under the names this crate uses, plus
/// the `Accept` header for manifest requests.
pub mod media {
    pub use rbuild_store::media::{
        DOCKER_CONFIG, DOCKER_FOREIGN_LAYER_GZIP as DOCKER_FOREIGN_LAYER, DOCKER_LAYER_GZIP,
        DOCKER_MANIFEST, DOCKER_MANIFEST_LIST as DOCKER_LIST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
        OCI_LAYER_GZIP, OCI_LAYER_TAR as OCI_LAYER, OCI_LAYER_ZSTD, OCI_MANIFEST,
    };
    /// The `Accept` header for manifest requests: every manifest and index type.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// Largest manifest accepted (the spec asks clients to handle at least 4 MB).
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;

/// A content descriptor (OCI `descriptor.md`), Docker-compatible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The platform of an index entry: the store's type (unknown fields kept).
pub use rbuild_store::manifest::Platform;

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

/// Manifest bytes exactly as served, their digest, media type and parsed form.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
    pub manifest: Manifest,
}

fn invalid(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Manifest {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// `type/subtype` without parameters, lowercased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_index_type(mt: &str) -> bool {
    mt == media::OCI_INDEX || mt == media::DOCKER_LIST
}

fn is_manifest_type(mt: &str) -> bool {
    mt == media::OCI_MANIFEST || mt == media::DOCKER_MANIFEST
}

/// Parse verified manifest bytes. `content_type` is the response header, if any.
pub fn parse_manifest(
    reference: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(Manifest, String)> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(reference, format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(reference, "the document is not a JSON object"))?;
    if obj.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(invalid(
            reference,
            "Docker schema 1 manifests are not supported (deprecated since 2017)",
        ));
    }
    let has_manifests = obj.contains_key("manifests");
    let has_image_parts = obj.contains_key("layers") || obj.contains_key("config");
    if has_manifests && has_image_parts {
        // CVE-2021-41190: a document readable both ways is refused.
        return Err(invalid(
            reference,
            "ambiguous document: it has both `manifests` and `layers`/`config`",
        ));
    }
    let body_type = obj
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let header_type = content_type
        .map(essence)
        .filter(|ct| is_index_type(ct) || is_manifest_type(ct));
    if let (Some(b), Some(h)) = (&body_type, &header_type)
        && b != h
    {
        return Err(invalid(
            reference,
            format!("`mediaType` `{b}` differs from the `Content-Type` `{h}` the registry sent"),
        ));
    }
    let media_type = body_type.or(header_type).unwrap_or_else(|| {
        if has_manifests {
            media::OCI_INDEX.into()
        } else {
            media::OCI_MANIFEST.into()
        }
    });
    let manifest = if is_index_type(&media_type) {
        if !has_manifests {
            return Err(invalid(
                reference,
                format!("an index (`{media_type}`) without `manifests`"),
            ));
        }
        Manifest::Index(
            serde_json::from_slice(bytes).map_err(|e| invalid(reference, e.to_string()))?,
        )
    } else if is_manifest_type(&media_type) {
        Manifest::Image(
            serde_json::from_slice(bytes).map_err(|e| invalid(reference, e.to_string()))?,
        )
    } else {
        return Err(invalid(
            reference,
            format!("unsupported manifest media type `{media_type}`"),
        ));
    };
    let descriptors: Vec<&Descriptor> = match &manifest {
        Manifest::Image(m) => std::iter::once(&m.config).chain(m.layers.iter()).collect(),
        Manifest::Index(i) => i.manifests.iter().collect(),
    };
    for d in descriptors {
        crate::digest::validate_digest(&d.digest).map_err(|_| {
            invalid(
                reference,
                format!("descriptor digest `{}` is not a sha256 digest", d.digest),
            )
        })?;
        if d.size > (1u64 << 53) {
            return Err(invalid(
                reference,
                format!("descriptor `{}` has an implausible size", d.digest),
            ));
        }
    }
    Ok((manifest, media_type))
}

/// True for layer media types rbuild can unpack.
pub fn is_supported_layer(mt: &str) -> bool {
    matches!(
        mt,
        media::OCI_LAYER | media::OCI_LAYER_GZIP | media::OCI_LAYER_ZSTD | media::DOCKER_LAYER_GZIP
    ) || mt == "application/vnd.docker.image.rootfs.diff.tar"
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn manifest_json(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":2}},"layers":[]{extra}}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG
        )
    }

    #[test]
    fn parses_oci_manifest() {
        let (m, mt) =
            parse_manifest("r", manifest_json("").as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(mt, media::OCI_MANIFEST);
        assert!(matches!(m, Manifest::Image(_)));
    }

    #[test]
    fn rejects_ambiguous_and_mismatched_and_malformed() {
        let amb = manifest_json(r#","manifests":[]"#);
        let e = parse_manifest("r", amb.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ambiguous"), "{e}");
        let e = parse_manifest("r", manifest_json("").as_bytes(), Some(media::OCI_INDEX))
            .unwrap_err()
            .to_string();
        assert!(e.contains("differs"), "{e}");
        let e = parse_manifest("r", b"{not json", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let neg = manifest_json("").replace("\"size\":2", "\"size\":-2");
        assert!(parse_manifest("r", neg.as_bytes(), None).is_err());
        let dup = manifest_json(r#","layers":[]"#);
        assert!(
            parse_manifest("r", dup.as_bytes(), None).is_err(),
            "duplicate keys are refused"
        );
        let s1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(
            parse_manifest("r", s1, None)
                .unwrap_err()
                .to_string()
                .contains("schema 1")
        );
    }
}

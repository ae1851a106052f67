//! OCI/Docker descriptors, image manifests and indexes: our own serde types (sorted maps,
//! unknown fields kept) and strict parsing of untrusted manifest bytes — size cap, duplicate
//! keys, schemaVersion, media-type agreement and manifest/index ambiguity (CVE-2021-41190).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json;
use crate::media;
pub use crate::platform::{Platform, host_arch};

/// The annotation OCI layouts use as the tag of an index.json entry.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker ≥ 25's) annotation holding the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Standard creation-time annotation.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            data: None,
            platform: None,
            artifact_type: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker schema 2: same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
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
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Manifest {
    /// A new OCI manifest.
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }

    /// The media type to record in a descriptor pointing at this manifest.
    pub fn descriptor_media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_MANIFEST)
    }
}

/// An image index (OCI) or manifest list (Docker); also the shape of `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }
}

/// What a parsed manifest-like document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Box<Manifest>),
    Index(Box<Index>),
}

/// Parse untrusted manifest or index bytes. `declared` is the media type the referrer claimed
/// (descriptor or Content-Type); the document's own `mediaType`, when present, must agree.
pub fn parse_document(
    bytes: &[u8],
    declared: Option<&str>,
    max: u64,
    what: &str,
) -> Result<Document> {
    let value: Value = json::parse_strict(bytes, max, what)?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::json(what, "not a JSON object"))?;
    match obj.get("schemaVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        Some(other) => {
            return Err(Error::json(
                what,
                format!("schemaVersion must be 2, found {other}"),
            ));
        }
        None => return Err(Error::json(what, "schemaVersion is missing")),
    }
    let own = match obj.get("mediaType") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::json(what, "mediaType is not a string")),
        None => None,
    };
    if let (Some(own), Some(declared)) = (own, declared)
        && own != declared
    {
        return Err(Error::json(
            what,
            format!("its mediaType `{own}` differs from the declared `{declared}`"),
        ));
    }
    let has_manifests = obj.contains_key("manifests");
    let has_image_parts = obj.contains_key("layers") || obj.contains_key("config");
    if has_manifests && has_image_parts {
        return Err(Error::json(
            what,
            "it has both `manifests` and `layers`/`config`, so it is ambiguous between an \
             index and a manifest",
        ));
    }
    let mt = own.or(declared);
    let is_index = match mt {
        Some(mt) if media::is_index(mt) => true,
        Some(mt) if media::is_manifest(mt) => false,
        Some(mt) => {
            return Err(Error::json(
                what,
                format!("media type `{mt}` is not an image manifest or index"),
            ));
        }
        None => has_manifests,
    };
    if is_index {
        if has_image_parts {
            return Err(Error::json(
                what,
                "an index cannot have `layers` or `config`",
            ));
        }
        let index: Index =
            serde_json::from_value(value).map_err(|e| Error::json(what, e.to_string()))?;
        Ok(Document::Index(Box::new(index)))
    } else {
        if has_manifests {
            return Err(Error::json(what, "a manifest cannot have `manifests`"));
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| Error::json(what, e.to_string()))?;
        Ok(Document::Manifest(Box::new(manifest)))
    }
}

/// Parse untrusted bytes that must be an image manifest.
pub fn parse_manifest(
    bytes: &[u8],
    declared: Option<&str>,
    max: u64,
    what: &str,
) -> Result<Manifest> {
    match parse_document(bytes, declared, max, what)? {
        Document::Manifest(m) => Ok(*m),
        Document::Index(_) => Err(Error::json(
            what,
            "expected an image manifest, found an index",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(mt: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[]}}"#,
            media::OCI_CONFIG,
            crate::digest::EMPTY_JSON_DIGEST
        )
    }

    #[test]
    fn accepts_oci_and_docker_manifests() {
        for mt in [media::OCI_MANIFEST, media::DOCKER_MANIFEST] {
            let m = parse_manifest(manifest_json(mt).as_bytes(), Some(mt), 1 << 20, "m").unwrap();
            assert_eq!(m.media_type.as_deref(), Some(mt));
        }
    }

    #[test]
    fn rejects_media_type_disagreement_and_ambiguity() {
        let doc = manifest_json(media::OCI_MANIFEST);
        assert!(parse_document(doc.as_bytes(), Some(media::OCI_INDEX), 1 << 20, "m").is_err());
        let ambiguous = doc.replace("\"layers\":[]", "\"layers\":[],\"manifests\":[]");
        let err = parse_document(ambiguous.as_bytes(), None, 1 << 20, "m").unwrap_err();
        assert!(err.to_string().contains("ambiguous"), "{err}");
        let wrong = manifest_json("text/html");
        assert!(parse_document(wrong.as_bytes(), None, 1 << 20, "m").is_err());
    }

    #[test]
    fn rejects_bad_schema_version_and_negative_size() {
        let doc = manifest_json(media::OCI_MANIFEST)
            .replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(parse_document(doc.as_bytes(), None, 1 << 20, "m").is_err());
        let doc = manifest_json(media::OCI_MANIFEST).replace("\"size\":2", "\"size\":-2");
        assert!(parse_document(doc.as_bytes(), None, 1 << 20, "m").is_err());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let doc = r#"{"schemaVersion":2,"manifests":[{"mediaType":"x/y","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"zzz":[1]}],"extraTop":true}"#;
        let Document::Index(i) = parse_document(doc.as_bytes(), None, 1 << 20, "i").unwrap() else {
            panic!("not an index")
        };
        let out = String::from_utf8(json::to_canonical_vec(&i).unwrap()).unwrap();
        assert!(
            out.contains("\"zzz\":[1]") && out.contains("\"extraTop\":true"),
            "{out}"
        );
    }
}

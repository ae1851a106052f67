//! Manifests as the distribution protocol serves them: the `Accept` header, the fetched bytes
//! kept beside their parsed form, and the checks the spec asks of clients (`mediaType` agrees
//! with `Content-Type`, bounded sizes). The document model (descriptor, manifest, index,
//! platform) and its strict parsing are the store's (`rbuild_store::manifest`).
//!
//! [`FetchedManifest`] keeps the exact bytes served, their `Digest`, the media type and the
//! parsed `rbuild_store::manifest::Document`. Docker schema 1 is refused; a manifest may be at
//! most [`MAX_MANIFEST_BYTES`] (8 MiB). The document checks (duplicate keys, both index and
//! manifest fields — CVE-2021-41190, descriptor digests) are
//! `rbuild_store::manifest::parse_document`'s.

use rbuild_store::Digest;

use crate::error::{RegistryError, Result};

/// Media types rbuild reads and writes: the store's, under the names this crate uses, plus
/// the `Accept` header for manifest requests.
pub mod media {
    pub use rbuild_store::media::{
        DOCKER_CONFIG, DOCKER_FOREIGN_LAYER_GZIP as DOCKER_FOREIGN_LAYER, DOCKER_LAYER_GZIP,
        DOCKER_MANIFEST, DOCKER_MANIFEST_LIST as DOCKER_LIST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
        OCI_LAYER_GZIP, OCI_LAYER_TAR as OCI_LAYER, OCI_LAYER_ZSTD, OCI_MANIFEST, is_index,
        is_manifest,
    };
    /// The `Accept` header for manifest requests: every manifest and index type.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// Largest manifest accepted (the spec asks clients to handle at least 4 MB).
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;

pub use rbuild_store::manifest::{Descriptor, Document, Index, Manifest, Platform};

/// Manifest bytes exactly as served (the digest is over these; the parsed form is never
/// re-serialised), their digest, media type and parsed form.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub manifest: Document,
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

/// Parse verified manifest bytes. `content_type` is the response header, if any. The
/// protocol's checks are here (schema 1, `Content-Type`); the document's own (duplicate keys,
/// `mediaType` agreement, manifest/index ambiguity, descriptor digests) are the store's.
pub fn parse_manifest(
    reference: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(Document, String)> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(reference, format!("not valid JSON: {e}")))?;
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(invalid(
            reference,
            "Docker schema 1 manifests are not supported (deprecated since 2017)",
        ));
    }
    let header_type = content_type
        .map(essence)
        .filter(|ct| media::is_index(ct) || media::is_manifest(ct));
    if let (Some(body), Some(header)) = (value.get("mediaType"), &header_type)
        && body.as_str() != Some(header.as_str())
    {
        return Err(invalid(
            reference,
            format!(
                "`mediaType` {body} differs from the `Content-Type` `{header}` the registry sent"
            ),
        ));
    }
    let document = rbuild_store::manifest::parse_document(
        bytes,
        header_type.as_deref(),
        MAX_MANIFEST_BYTES,
        "manifest",
    )
    .map_err(|e| match e {
        rbuild_store::Error::Json { message, .. } => invalid(reference, message),
        other => invalid(reference, other.to_string()),
    })?;
    let (own_type, descriptors): (_, Vec<&Descriptor>) = match &document {
        Document::Manifest(m) => (
            m.media_type.clone(),
            std::iter::once(&m.config).chain(m.layers.iter()).collect(),
        ),
        Document::Index(i) => (i.media_type.clone(), i.manifests.iter().collect()),
    };
    for d in descriptors {
        if d.size > (1u64 << 53) {
            return Err(invalid(
                reference,
                format!("descriptor `{}` has an implausible size", d.digest),
            ));
        }
    }
    let media_type = own_type.or(header_type).unwrap_or_else(|| {
        match document {
            Document::Index(_) => media::OCI_INDEX,
            Document::Manifest(_) => media::OCI_MANIFEST,
        }
        .to_string()
    });
    Ok((document, media_type))
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
        assert!(matches!(m, Document::Manifest(_)));
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

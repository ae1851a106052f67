//! `RemoteRef`: the registry, repository and tag/digest a pull or push talks about, parsed
//! with docker's normalisation (`nginx` → `docker.io/library/nginx:latest`).

use std::fmt;

use crate::error::{RegistryError, Result};

/// A reference to an image (or artifact) in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteRef {
    /// Canonical registry name (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/nginx`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl RemoteRef {
    /// Parse a docker-style reference.
    pub fn parse(text: &str) -> Result<Self> {
        let parsed: oci_spec::distribution::Reference =
            text.parse().map_err(|e: oci_spec::distribution::ParseError| RegistryError::InvalidInput {
                kind: "image reference",
                value: text.to_string(),
                reason: e.to_string().to_lowercase(),
                help: "references look like `nginx`, `nginx:1.27`, `ghcr.io/org/app:tag` or `name@sha256:<hex>`".into(),
            })?;
        if let Some(d) = parsed.digest() {
            crate::digest::validate_digest(d)?;
        }
        let registry = crate::config::canonical_registry(parsed.registry()).to_string();
        let tag = match (parsed.tag(), parsed.digest()) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(RemoteRef {
            registry,
            repository: parsed.repository().to_string(),
            tag,
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository with another tag or digest.
    pub fn with_reference(&self, tag_or_digest: &str) -> Self {
        let mut r = self.clone();
        if tag_or_digest.starts_with("sha256:") {
            r.tag = None;
            r.digest = Some(tag_or_digest.to_string());
        } else {
            r.tag = Some(tag_or_digest.to_string());
            r.digest = None;
        }
        r
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for RemoteRef {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalisation() {
        let r = RemoteRef::parse("nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        let r = RemoteRef::parse("127.0.0.1:5000/a/b:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.reference()),
            ("127.0.0.1:5000", "a/b", "1")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = RemoteRef::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert!(RemoteRef::parse("library/UPPER").is_err() && RemoteRef::parse("a b").is_err());
    }
}

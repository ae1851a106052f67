//! `RemoteRef`: the registry, repository and tag/digest a pull or push talks about. Parsing
//! is the store's one reference grammar ([`rbuild_store::Reference`], docker's normalisation:
//! `nginx` → `docker.io/library/nginx:latest`); the registry name is then made canonical
//! (`index.docker.io`, `registry-1.docker.io` → `docker.io`).

use std::fmt;

use rbuild_store::{Digest, Reference};

use crate::error::{RegistryError, Result};

/// A reference to an image (or artifact) in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteRef {
    /// Canonical registry name (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/nginx`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RemoteRef {
    /// Parse a docker-style reference.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Self::from_reference(&Reference::parse(text)?))
    }

    /// The registry's view of a parsed store reference.
    pub fn from_reference(reference: &Reference) -> Self {
        RemoteRef {
            registry: crate::config::canonical_registry(reference.domain()).to_string(),
            repository: reference.path().to_string(),
            tag: reference.tag().map(str::to_string),
            digest: reference.digest().cloned(),
        }
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_ref()
            .map(Digest::as_str)
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository with another tag or digest.
    pub fn with_reference(&self, tag_or_digest: &str) -> Result<Self> {
        let mut r = self.clone();
        if tag_or_digest.contains(':') {
            r.tag = None;
            r.digest = Some(Digest::parse(tag_or_digest)?);
        } else {
            r.tag = Some(tag_or_digest.to_string());
            r.digest = None;
        }
        Ok(r)
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
        // Docker Hub's aliases name one registry; a bad digest is refused by the store's
        // grammar with its own diagnostic.
        for alias in [
            "index.docker.io/library/nginx",
            "registry-1.docker.io/library/nginx",
        ] {
            assert_eq!(
                RemoteRef::parse(alias).unwrap().to_string(),
                "docker.io/library/nginx:latest"
            );
        }
        let e = RemoteRef::parse("x@sha256:abc").unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
    }
}

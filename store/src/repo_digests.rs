//! Registry digests of stored images: `repository@digest` under which a registry knows an
//! image (the digest it was pulled by, or the manifest digest a push created), for
//! `inspect`'s `RepoDigests` and `images --digests`. A built image that was never pushed has
//! none, as with docker. Kept in `repo-digests.json` beside `index.json`.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::reference::Reference;
use crate::store::Store;

const FILE: &str = "repo-digests.json";

impl Store {
    /// Remember that the registry knows the image stored as `manifest` as `repo_digest`
    /// (`registry/repository@sha256:…`); an older digest of the same repository is replaced.
    pub fn add_repo_digest(&self, manifest: &Digest, repo_digest: &Reference) -> Result<()> {
        let _lock = self.lock_index()?;
        let mut all = self.read_repo_digests()?;
        let repository = repo_digest.repository();
        let list = all.entry(manifest.to_string()).or_default();
        list.retain(|r| {
            Reference::parse(r).map_or(true, |parsed| parsed.repository() != repository)
        });
        list.push(repo_digest.to_string());
        list.sort();
        let bytes = serde_json::to_vec_pretty(&all).expect("repo digests serialise");
        crate::fsutil::atomic_write(&self.root().join(FILE), &bytes, 0o644)
    }

    /// The registry digests of the image stored as `manifest` (none when never pulled by
    /// digest or pushed).
    pub fn repo_digests(&self, manifest: &Digest) -> Result<Vec<Reference>> {
        Ok(self
            .read_repo_digests()?
            .remove(&manifest.to_string())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| Reference::parse(r).ok())
            .collect())
    }

    fn read_repo_digests(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let path = self.root().join(FILE);
        match std::fs::read(&path) {
            // A damaged file only loses this information; it is rewritten on the next push.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).ctx("cannot read", &path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_digests_are_kept_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let local = Digest::of(b"manifest");
        assert!(store.repo_digests(&local).unwrap().is_empty());
        let d1 = format!("reg.example/app@{}", Digest::of(b"one"));
        let d2 = format!("reg.example/app@{}", Digest::of(b"two"));
        let d3 = format!("reg.example/other@{}", Digest::of(b"two"));
        for d in [&d1, &d2, &d3] {
            store
                .add_repo_digest(&local, &Reference::parse(d).unwrap())
                .unwrap();
        }
        let got: Vec<String> = store
            .repo_digests(&local)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(got, [d2, d3]);
        assert!(store.repo_digests(&Digest::of(b"x")).unwrap().is_empty());
    }
}

//! Generic GC roots for other subsystems: `refs/<kind>/<name>` files (JSON
//! `{"digests":[…]}`), each listing digests to keep alive. The solver's build cache uses kind
//! `cache` (the entry's layer diff_id and the chain id of its snapshot), `rbuild run` uses kind
//! `container` (the image's manifest digest). A listed digest keeps the blob of that name (and
//! what it references, if it is a manifest or index) and the snapshot `snapshots/v2/<hex>` of
//! that chain id alive.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::json;
use crate::store::Store;

/// Kind used by the solver's build cache.
pub const KIND_CACHE: &str = "cache";
/// Kind used by containers of `rbuild run`.
pub const KIND_CONTAINER: &str = "container";

/// One ref.
#[derive(Debug, Clone, PartialEq)]
pub struct RefEntry {
    pub kind: String,
    pub name: String,
    pub digests: Vec<Digest>,
    /// When the ref was last written or touched (its file's mtime).
    pub updated: jiff::Timestamp,
}

#[derive(Serialize, Deserialize)]
struct RefFile {
    digests: Vec<Digest>,
}

fn check_word(what: &str, s: &str, extra: &[u8]) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("invalid ref {what} `{s}`"),
            "ref kinds are `[A-Za-z0-9._-]`, names also allow `:@+=`; neither starts with `.`",
        ))
    }
}

impl Store {
    fn ref_path(&self, kind: &str, name: &str) -> Result<std::path::PathBuf> {
        check_word("kind", kind, b"")?;
        check_word("name", name, b":@+=")?;
        Ok(self.layout.refs().join(kind).join(name))
    }

    /// Create or replace the ref `kind/name` (atomically, durably).
    pub fn set_ref(&self, kind: &str, name: &str, digests: &[Digest]) -> Result<()> {
        let path = self.ref_path(kind, name)?;
        let dir = path.parent().expect("ref has a kind dir");
        fs::create_dir_all(dir).ctx("create", dir)?;
        let bytes = json::to_canonical_vec(&RefFile {
            digests: digests.to_vec(),
        })?;
        let _g = self.lock_shared()?;
        fsutil::atomic_write(&path, &bytes, 0o600)
    }

    /// Mark a ref as used now (for age-based cache pruning).
    pub fn touch_ref(&self, kind: &str, name: &str) -> Result<()> {
        let path = self.ref_path(kind, name)?;
        let f = fs::File::options()
            .write(true)
            .open(&path)
            .ctx("open", &path)?;
        f.set_modified(std::time::SystemTime::now())
            .ctx("touch", &path)
    }

    /// Remove a ref; `false` if it did not exist.
    pub fn remove_ref(&self, kind: &str, name: &str) -> Result<bool> {
        let path = self.ref_path(kind, name)?;
        let _g = self.lock_shared()?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("remove", &path),
        }
    }

    /// Read one ref.
    pub fn get_ref(&self, kind: &str, name: &str) -> Result<Option<RefEntry>> {
        let path = self.ref_path(kind, name)?;
        read_ref(&path, kind, name)
    }

    /// Every ref of `kind`, sorted by name.
    pub fn list_refs(&self, kind: &str) -> Result<Vec<RefEntry>> {
        check_word("kind", kind, b"")?;
        let dir = self.layout.refs().join(kind);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx("list", &dir),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.ctx("list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // temp files of atomic writes
            }
            if let Some(r) = read_ref(&entry.path(), kind, &name)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every ref kind present.
    pub fn ref_kinds(&self) -> Result<Vec<String>> {
        let dir = self.layout.refs();
        let mut kinds = Vec::new();
        for entry in fs::read_dir(&dir).ctx("list", &dir)? {
            let entry = entry.ctx("list", &dir)?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                kinds.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        kinds.sort();
        Ok(kinds)
    }
}

fn read_ref(path: &std::path::Path, kind: &str, name: &str) -> Result<Option<RefEntry>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("read ref", path),
    };
    let file: RefFile = json::parse_strict(&bytes, 64 << 20, &format!("ref {kind}/{name}"))
        .map_err(|e| Error::corrupt(format!("`{}`: {e}", path.display())))?;
    let updated = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Ok(Some(RefEntry {
        kind: kind.to_string(),
        name: name.to_string(),
        digests: file.digests,
        updated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn refs_round_trip_and_names_are_validated() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let a = Digest::of(b"a");
        s.set_ref(KIND_CACHE, "sha256:abc", std::slice::from_ref(&a))
            .unwrap();
        let r = s.get_ref(KIND_CACHE, "sha256:abc").unwrap().unwrap();
        assert_eq!(r.digests, vec![a]);
        assert_eq!(s.list_refs(KIND_CACHE).unwrap().len(), 1);
        assert!(s.remove_ref(KIND_CACHE, "sha256:abc").unwrap());
        assert!(!s.remove_ref(KIND_CACHE, "sha256:abc").unwrap());
        for bad in ["../x", "a/b", "", ".hidden"] {
            assert!(s.set_ref(KIND_CACHE, bad, &[]).is_err(), "{bad}");
        }
    }
}

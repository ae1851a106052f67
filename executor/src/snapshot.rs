//! Layer snapshots: each layer kept unpacked once, in overlay lower-dir form (whiteouts as 0:0
//! character devices, opaque directories marked by xattr), at `$ROOT/snapshots/<diff_id hex>/`.
//! A snapshot appears atomically: it is filled in a temporary directory beside the final one and
//! renamed into place. Stored layers go through the store's staging, in-root unpacker and
//! commit ([`Snapshots::ensure_layer`], leased against GC); [`Snapshots::ensure`] fills one from
//! a closure (a crash leaves a `.tmp-*` directory that [`Snapshots::open`] removes later).

use std::path::{Path, PathBuf};

use rbuild_store::layer::{UnpackMode, UnpackOptions};
use rbuild_store::{Layer, Store};

use crate::error::{ExecError, IoContext, Result};

/// The snapshot directory of a store root.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Open (creating if needed) `$ROOT/snapshots`, removing temporaries left by a crash.
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots");
        std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
        let snapshots = Snapshots { dir };
        snapshots.remove_stale_temporaries()?;
        Ok(snapshots)
    }

    /// The directory holding all snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the snapshot of `diff_id` (`sha256:<hex>` or bare hex) lives, whether or not it
    /// exists yet.
    pub fn path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(hex_of(diff_id)?))
    }

    /// The snapshot of `diff_id` if it has been unpacked.
    pub fn get(&self, diff_id: &str) -> Result<Option<PathBuf>> {
        let p = self.path(diff_id)?;
        Ok(p.is_dir().then_some(p))
    }

    /// The snapshot of `diff_id`, unpacking it with `fill` on first use. `fill` gets an empty
    /// directory and must leave the layer's tree in it (overlay lower-dir form). Two processes
    /// racing on the same layer both fill; the first rename wins and the other copy is dropped.
    pub fn ensure<F>(&self, diff_id: &str, fill: F) -> Result<PathBuf>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let final_path = self.path(diff_id)?;
        if final_path.is_dir() {
            return Ok(final_path);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .ctx("cannot create a temporary snapshot in", &self.dir)?;
        let work = tmp.path().join("tree");
        std::fs::create_dir(&work).ctx("cannot create", &work)?;
        fill(&work)?;
        self.install(&work, &final_path)?;
        Ok(final_path)
    }

    /// The snapshot of a stored layer, unpacking it (in-root, overlay lower-dir form, diff_id
    /// verified) on first use. The snapshot is leased in `store` for as long as that handle
    /// lives, so a concurrent prune keeps it.
    pub fn ensure_layer(&self, store: &Store, layer: &Layer) -> Result<PathBuf> {
        let path = store.snapshot_path(&layer.diff_id);
        store.hold_snapshot(&layer.diff_id)?;
        if path.is_dir() {
            return Ok(path);
        }
        let staging = store.create_snapshot_staging(&layer.diff_id)?;
        let unpacked = store.unpack_layer(
            layer,
            &staging,
            &UnpackOptions::new(UnpackMode::OverlayLower),
        );
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.into());
        }
        Ok(store.commit_snapshot(&staging, &layer.diff_id)?)
    }

    /// Make an existing directory (for example a finished step's overlay upper directory,
    /// which is already in lower-dir form) the snapshot of `diff_id`, by renaming it. The
    /// directory must be on the same filesystem as the store. If the snapshot already exists,
    /// `dir` is removed instead.
    pub fn adopt(&self, diff_id: &str, dir: &Path) -> Result<PathBuf> {
        let final_path = self.path(diff_id)?;
        if final_path.is_dir() {
            std::fs::remove_dir_all(dir).ctx("cannot remove", dir)?;
            return Ok(final_path);
        }
        self.install(dir, &final_path)?;
        Ok(final_path)
    }

    /// Delete the snapshot of `diff_id` (for garbage collection; the caller makes sure no step
    /// uses it).
    pub fn remove(&self, diff_id: &str) -> Result<()> {
        let p = self.path(diff_id)?;
        if !p.exists() {
            return Ok(());
        }
        // Rename first so a half-deleted snapshot is never visible under its real name.
        let doomed = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .ctx("cannot create a temporary directory in", &self.dir)?;
        let target = doomed.path().join("gone");
        std::fs::rename(&p, &target).ctx("cannot remove snapshot", &p)?;
        drop(doomed);
        Ok(())
    }

    fn install(&self, from: &Path, to: &Path) -> Result<()> {
        match std::fs::rename(from, to) {
            Ok(()) => {
                let dir = std::fs::File::open(&self.dir).ctx("cannot open", &self.dir)?;
                dir.sync_all().ctx("cannot sync", &self.dir)?;
                Ok(())
            }
            Err(e)
                if to.is_dir()
                    && matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) =>
            {
                std::fs::remove_dir_all(from).ctx("cannot remove", from)?;
                Ok(())
            }
            Err(e) => Err(ExecError::io("cannot install snapshot", to, e)),
        }
    }

    fn remove_stale_temporaries(&self) -> Result<()> {
        // A temporary is stale when no live process holds it; the only holders are `ensure`
        // calls of this or another rbuild process, which finish within one step, so only
        // temporaries older than an hour are removed.
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in std::fs::read_dir(&self.dir).ctx("cannot read", &self.dir)? {
            let entry = entry.ctx("cannot read", &self.dir)?;
            if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if old {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

/// The hex part of a `sha256:<hex>` digest, validated.
fn hex_of(diff_id: &str) -> Result<&str> {
    let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(hex)
    } else {
        Err(ExecError::Layer {
            path: diff_id.to_string(),
            message: "not a sha256 diff_id".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn ensure_fills_once_and_installs_atomically() {
        let root = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        assert!(snaps.get(ID).unwrap().is_none());
        let p = snaps
            .ensure(ID, |dir| {
                std::fs::write(dir.join("f"), "x").unwrap();
                Ok(())
            })
            .unwrap();
        assert_eq!(std::fs::read(p.join("f")).unwrap(), b"x");
        let again = snaps
            .ensure(ID, |_| panic!("must not unpack twice"))
            .unwrap();
        assert_eq!(p, again);
        let names: Vec<_> = std::fs::read_dir(snaps.dir()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporaries left behind");
    }

    #[test]
    fn a_failed_fill_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        let err = snaps.ensure(ID, |_| Err(ExecError::sandbox("boom")));
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(snaps.dir()).unwrap().count(), 0);
    }

    #[test]
    fn adopt_moves_a_directory_into_place_and_remove_deletes_it() {
        let root = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        let upper = root.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        std::fs::write(upper.join("a"), "1").unwrap();
        let p = snaps.adopt(ID, &upper).unwrap();
        assert!(!upper.exists());
        assert!(p.join("a").is_file());
        snaps.remove(ID).unwrap();
        assert!(snaps.get(ID).unwrap().is_none());
        assert_eq!(std::fs::read_dir(snaps.dir()).unwrap().count(), 0);
    }

    #[test]
    fn diff_ids_are_validated() {
        let root = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        assert!(snaps.path("sha256:../../etc").is_err());
        assert!(snaps.path("md5:abc").is_err());
    }
}

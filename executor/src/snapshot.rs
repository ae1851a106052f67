//! Layer snapshots, keyed by layer chain. A snapshot is the overlay lower directory (whiteouts
//! as 0:0 character devices, opaque directories marked by xattr) of one layer *as applied on
//! the chain of layers below it*; stacked on the snapshots of its shorter chains it shows the
//! whole filesystem view of that chain. It lives at `$ROOT/snapshots/v2/<chain id hex>` (OCI
//! ChainID, `rbuild_store::chain`), never under one layer's diff_id: the same layer on another
//! parent is another view (a step's upper directory keeps copied-up files equal to *its*
//! parent, which a layer leaves out), so nothing keyed by a diff_id may be reused as a rootfs or
//! lower directory. Stored layers are applied in-root on top of their chain
//! ([`Snapshots::ensure_chain`], `layer::unpack_over`: paths below a lower layer's symlink
//! resolve through it, as containerd's applier does), so `rbuild run` and RUN see exactly what
//! the flattener (exports) computes. A snapshot appears atomically (filled in a staging
//! directory, synced, renamed into place) and is leased against GC while in use;
//! [`Snapshots::ensure`] fills one from a closure (a crash leaves a `.tmp-*` directory that
//! [`Snapshots::open`] removes later).
//!
//! [`Snapshots::ensure_chain`]`(&store, &layers)` returns one snapshot per prefix, leasing each
//! chain id and making the missing ones in order with `Store::unpack_layer_over` (diff_id
//! verified) in a store staging directory. A finished overlay step's upper directory becomes
//! the snapshot of parent chain + its layer (`StepRootfs::commit_snapshot(&store, &chain_id)`)
//! instead of unpacking the layer again; `capture_layer(&store, ..)` streams the layer into an
//! uncompressed store blob (the blob writer hashes: digest = diff_id). A context COPY
//! hard-links unchanged files from the previous build's snapshot of the same step only when
//! that snapshot sits on the same parent chain (keyed by chain, it is not found otherwise).

use std::io;
use std::path::{Path, PathBuf};

use rbuild_store::chain::chain_ids;
use rbuild_store::layer::{LowerLayers, RelPath};
use rbuild_store::{Digest, Layer, Store};

use crate::build::upper::UpperDest;
use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta;
use crate::lower::LowerView;

/// The snapshot directory of a store root.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Open (creating if needed) `$ROOT/snapshots/v2`, removing temporaries left by a crash.
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots").join("v2");
        std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
        let snapshots = Snapshots { dir };
        snapshots.remove_stale_temporaries()?;
        Ok(snapshots)
    }

    /// The directory holding all snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the snapshot of the layer chain `chain_id` (`sha256:<hex>` or bare hex) lives,
    /// whether or not it exists yet.
    pub fn path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(hex_of(chain_id)?))
    }

    /// The snapshot of `chain_id` if it exists.
    pub fn get(&self, chain_id: &str) -> Result<Option<PathBuf>> {
        let p = self.path(chain_id)?;
        Ok(p.is_dir().then_some(p))
    }

    /// The snapshot of `chain_id`, made with `fill` on first use. `fill` gets an empty
    /// directory and must leave the chain's top layer in it (overlay lower-dir form, valid on
    /// that chain). Two processes racing on the same chain both fill; the first rename wins and
    /// the other copy is dropped.
    pub fn ensure<F>(&self, chain_id: &str, fill: F) -> Result<PathBuf>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let final_path = self.path(chain_id)?;
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

    /// The snapshots of every prefix of the stored `layers` (bottom first): element `i` is the
    /// lower directory of layer `i` on the chain of layers `0..i`, so the whole list stacked is
    /// the image's root filesystem. Missing ones are made in order, each layer applied in-root
    /// on top of the ones below (diff_id verified). Every snapshot is leased in `store` for as
    /// long as that handle lives, so a concurrent prune keeps it.
    pub fn ensure_chain(&self, store: &Store, layers: &[Layer]) -> Result<Vec<PathBuf>> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let mut out: Vec<PathBuf> = Vec::with_capacity(layers.len());
        for (layer, chain) in layers.iter().zip(chain_ids(&diff_ids)) {
            let path = store.snapshot_path(&chain);
            store.hold_snapshot(&chain)?;
            if !path.is_dir() {
                let staging = store.create_snapshot_staging(&chain)?;
                if let Err(e) = apply_on_chain(store, layer, &out, &staging) {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e);
                }
                store.commit_snapshot(&staging, &chain)?;
            }
            out.push(path);
        }
        Ok(out)
    }

    /// Make an existing directory (for example a finished step's overlay upper directory,
    /// which is already in lower-dir form and valid on its parent chain) the snapshot of
    /// `chain_id` — the chain of that parent plus the step's layer — by renaming it. The
    /// directory must be on the same filesystem as the store. If the snapshot already exists,
    /// `dir` is removed instead.
    pub fn adopt(&self, chain_id: &str, dir: &Path) -> Result<PathBuf> {
        let final_path = self.path(chain_id)?;
        if final_path.is_dir() {
            std::fs::remove_dir_all(dir).ctx("cannot remove", dir)?;
            return Ok(final_path);
        }
        self.install(dir, &final_path)?;
        Ok(final_path)
    }

    /// Delete the snapshot of `chain_id` (for garbage collection; the caller makes sure no step
    /// uses it).
    pub fn remove(&self, chain_id: &str) -> Result<()> {
        let p = self.path(chain_id)?;
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
fn hex_of(chain_id: &str) -> Result<&str> {
    let hex = chain_id.strip_prefix("sha256:").unwrap_or(chain_id);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(hex)
    } else {
        Err(ExecError::Layer {
            path: chain_id.to_string(),
            message: "not a sha256 chain id".into(),
        })
    }
}

/// Apply stored `layer` into the empty `staging` directory as its overlay lower directory on
/// top of `lowers` (the chain below, bottom first).
fn apply_on_chain(store: &Store, layer: &Layer, lowers: &[PathBuf], staging: &Path) -> Result<()> {
    // The merged root takes its attributes from the topmost layer: copy up the chain's root
    // (a layer's own `./` entry overrides it).
    match LowerView::new(lowers)
        .lookup(Path::new(""))
        .ctx("cannot read", staging)?
    {
        Some(root) => {
            let xattrs = fsmeta::xattrs(&root.path).ctx("cannot read xattrs of", &root.path)?;
            fsmeta::apply_meta(staging, &root.meta, &xattrs)
                .ctx("cannot set attributes of", staging)?;
        }
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755))
                .ctx("cannot set attributes of", staging)?;
        }
    }
    let over = ChainBelow {
        dest: UpperDest::new(staging, lowers).ctx("cannot open", staging)?,
    };
    store.unpack_layer_over(layer, staging, &over)?;
    Ok(())
}

/// The chain below a layer being applied, with the layer's staging directory on top: in-root
/// resolution and copy-up for `layer::unpack_over`.
struct ChainBelow {
    dest: UpperDest,
}

fn rel_of(p: PathBuf) -> RelPath {
    use std::os::unix::ffi::OsStringExt;
    RelPath(p.into_os_string().into_vec())
}

fn path_of(p: &RelPath) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()))
}

impl LowerLayers for ChainBelow {
    fn prepare_dir(&self, dir: &RelPath, create: bool) -> io::Result<Option<RelPath>> {
        if create {
            self.dest.mkdir_all(dir, (0, 0), 0o755)?;
            let resolved = self
                .dest
                .resolved_dir(dir)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            Ok(Some(rel_of(resolved)))
        } else {
            Ok(self.dest.existing_dir(dir)?.map(rel_of))
        }
    }

    fn exists(&self, p: &RelPath) -> io::Result<bool> {
        self.dest.exists(path_of(p))
    }

    fn copy_up(&self, p: &RelPath) -> io::Result<()> {
        self.dest.copy_up_entry(path_of(p))
    }

    fn invalidate(&self) {
        self.dest.forget_resolutions();
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

    fn stored(store: &Store, build: impl FnOnce(&mut rbuild_store::testing::TarBuilder)) -> Layer {
        let mut t = rbuild_store::testing::TarBuilder::new();
        build(&mut t);
        let blob = store.put_blob(&t.finish()).unwrap();
        Layer {
            descriptor: rbuild_store::Descriptor::new(
                rbuild_store::media::OCI_LAYER_TAR,
                blob.digest.clone(),
                blob.size,
            ),
            diff_id: blob.digest,
        }
    }

    /// The same top layer on two parents gets two snapshots (keyed by chain id), each applied
    /// on its own chain.
    #[test]
    fn one_layer_on_two_parents_is_two_snapshots() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        let a = stored(&store, |t| {
            t.dir("d").file("d/x", b"a");
        });
        let b = stored(&store, |t| {
            t.symlink("d", "/elsewhere");
        });
        let top = stored(&store, |t| {
            t.file("d/y", b"y");
        });
        let on_a = snaps
            .ensure_chain(&store, &[a.clone(), top.clone()])
            .unwrap();
        let on_b = snaps
            .ensure_chain(&store, &[b.clone(), top.clone()])
            .unwrap();
        assert_ne!(on_a[1], on_b[1]);
        assert_eq!(std::fs::read(on_a[1].join("d/y")).unwrap(), b"y");
        // On `b`, `d` is a symlink: the entry lands where it points, inside the root.
        assert_eq!(std::fs::read(on_b[1].join("elsewhere/y")).unwrap(), b"y");
        assert!(!on_b[1].join("d").exists());
        let chain = rbuild_store::chain::chain_id(Some(&b.diff_id), &top.diff_id);
        assert_eq!(on_b[1], store.snapshot_path(&chain));
        assert_eq!(on_b[1], snaps.path(chain.as_str()).unwrap());
        // Nothing is ever named by the top layer's bare diff_id.
        assert!(!store.snapshot_path(&top.diff_id).exists());
        // A second call reuses what exists.
        assert_eq!(snaps.ensure_chain(&store, &[b, top]).unwrap(), on_b);
    }

    #[test]
    fn diff_ids_are_validated() {
        let root = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(root.path()).unwrap();
        assert!(snaps.path("sha256:../../etc").is_err());
        assert!(snaps.path("md5:abc").is_err());
    }
}

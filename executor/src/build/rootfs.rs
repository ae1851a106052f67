//! The root filesystem of a file step (COPY, ADD, WORKDIR): an overlay of the parent snapshots
//! with a fresh upper directory, mounted *detached* (new mount API) so it is reachable only
//! through a descriptor — no mount point on the host, nothing left mounted if rbuild dies. The
//! step writes through that descriptor; the upper directory then becomes the layer and, renamed,
//! the layer's snapshot.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::diff;
use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta;
use crate::layer::{self, LayerOptions};
use crate::lower::LowerView;
use crate::sandbox::fsops::{self, Overlay};
use rbuild_solver::worker::Layer;
use rbuild_store::{Digest, Store};

pub struct FileRootfs {
    _temp: tempfile::TempDir,
    _lock: File,
    upper: PathBuf,
    lower: LowerView,
    root: Option<OwnedFd>,
    /// Set when the classic mount(2) fallback mounted at a path that must be unmounted.
    mounted: Option<PathBuf>,
}

impl FileRootfs {
    /// A new upper directory inside `exec_dir` over `lowers` (bottom first); with `mount`, the
    /// overlay is also mounted (detached) so writes can go through it.
    pub fn new(exec_dir: &Path, lowers: &[PathBuf], mount: bool) -> Result<FileRootfs> {
        let temp = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(exec_dir)
            .ctx("cannot create a step directory in", exec_dir)?;
        let dir = temp.path().to_path_buf();
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).ctx("cannot create", &lock_path)?;
        lock.lock().ctx("cannot lock", &lock_path)?;
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&upper, &work] {
            std::fs::create_dir(d).ctx("cannot create", d)?;
        }
        let lower = LowerView::new(lowers);
        // The merged root takes its attributes from the upper directory: copy the image's.
        if let Some(root) = lower.lookup(Path::new("")).ctx("cannot read", &dir)? {
            let xattrs = fsmeta::xattrs(&root.path).ctx("cannot read xattrs of", &root.path)?;
            fsmeta::apply_meta(&upper, &root.meta, &xattrs)
                .ctx("cannot set attributes of", &upper)?;
        }
        let (root, mounted) = if lowers.is_empty() || !mount {
            // Nothing to merge (FROM scratch), or writes go straight to the upper directory.
            (fsops::open_dir(&upper).ctx("cannot open", &upper)?, None)
        } else {
            let target = dir.join("rootfs");
            std::fs::create_dir(&target).ctx("cannot create", &target)?;
            let top_first: Vec<PathBuf> = lower.layers_top_first().to_vec();
            match fsops::overlay(
                &top_first,
                Some((&upper, &work)),
                &target,
                &dir.join("links"),
                false,
            )
            .map_err(|e| ExecError::sandbox(format!("cannot mount the step's overlay: {e}")))?
            {
                Overlay::Detached(fd) => (fd, None),
                Overlay::Mounted => (
                    fsops::open_dir(&target).ctx("cannot open", &target)?,
                    Some(target),
                ),
            }
        };
        Ok(FileRootfs {
            _temp: temp,
            _lock: lock,
            upper,
            lower,
            root: Some(root),
            mounted,
        })
    }

    /// The upper directory (where a step writing without the mount puts its entries).
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// The merged tree (or the upper directory when not mounted): resolve every path in it
    /// with `RESOLVE_IN_ROOT`.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root
            .as_ref()
            .expect("the root is open until finish")
            .as_fd()
    }

    /// Turn what the step wrote into an uncompressed layer blob in the store (`None` when
    /// nothing changed) and keep the upper directory as the snapshot of the chain `parent`
    /// (the chain id of the lower layers, `None` for none) plus the new layer.
    pub fn finish(
        mut self,
        store: &Store,
        options: &LayerOptions,
        parent: Option<&Digest>,
    ) -> Result<Option<Layer>> {
        // Unmount before reading the upper directory: the overlay must be quiescent.
        self.root.take();
        if let Some(target) = self.mounted.take() {
            rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
                ExecError::sandbox(format!("cannot unmount `{}`: {e}", target.display()))
            })?;
        }
        let changes = diff::overlay::diff_upper(&self.upper, &self.lower)?;
        if changes.is_empty() {
            return Ok(None);
        }
        let mut writer = store.blob_writer()?;
        layer::write_tar(&changes, &mut writer, options)?;
        let blob = writer.commit()?;
        let chain = rbuild_store::chain::chain_id(parent, &blob.digest);
        store.commit_snapshot(&self.upper, &chain)?;
        Ok(Some(Layer {
            diff_id: blob.digest,
            size: blob.size,
        }))
    }
}

impl Drop for FileRootfs {
    fn drop(&mut self) {
        if let Some(target) = &self.mounted {
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

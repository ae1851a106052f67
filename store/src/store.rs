//! The `Store` handle: opening a root, its locks, and the process lease that protects what
//! this handle writes until it is dropped (or the process dies).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::Result;
use crate::layout::Layout;
use crate::lease::{Held, LeaseFile};
use crate::limits::Limits;
use crate::lock::{self, LockGuard};

/// Options for `Store::open_with`.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub limits: Limits,
}

/// An open store. Cheap to share between threads (`&Store` is `Sync`).
#[derive(Debug)]
pub struct Store {
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
    lease: Mutex<Option<LeaseFile>>,
}

impl Store {
    /// Open (creating if needed) the store at `root`, with limits from the environment.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(
            root,
            StoreOptions {
                limits: Limits::from_env()?,
            },
        )
    }

    /// Open (creating if needed) the store at `root` with explicit options.
    pub fn open_with(root: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        layout.init()?;
        Ok(Store {
            layout,
            limits: options.limits,
            lease: Mutex::new(None),
        })
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The path of a blob (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob(digest)
    }

    /// Shared store lock: held around every step that makes content reachable.
    pub(crate) fn lock_shared(&self) -> Result<LockGuard> {
        lock::shared(&self.layout.lock())
    }

    /// Exclusive store lock: GC only.
    pub(crate) fn lock_exclusive(&self) -> Result<LockGuard> {
        lock::exclusive(&self.layout.lock())
    }

    /// Lock for read-modify-write of index.json.
    pub(crate) fn lock_index(&self) -> Result<LockGuard> {
        lock::exclusive(&self.layout.index_lock())
    }

    /// Record `digest` in this handle's lease. Callers hold the shared lock, so a running GC
    /// cannot miss it.
    pub(crate) fn record_in_lease(&self, held: Held, digest: &Digest) -> Result<()> {
        let mut guard = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(LeaseFile::create(&self.layout.leases())?);
        }
        guard
            .as_mut()
            .expect("lease just created")
            .record(held, digest)
    }

    /// Protect a blob (and, for a manifest or index, what it references) from GC until this
    /// store handle is dropped. Use before relying on content you did not write, e.g. the base
    /// image's layers for the duration of a build.
    pub fn hold_blob(&self, digest: &Digest) -> Result<()> {
        let _g = self.lock_shared()?;
        self.record_in_lease(Held::Blob, digest)
    }

    /// Protect the snapshot of the layer chain `chain_id` from GC until this store handle is
    /// dropped. Call it before creating or mounting the snapshot.
    pub fn hold_snapshot(&self, chain_id: &Digest) -> Result<()> {
        let _g = self.lock_shared()?;
        self.record_in_lease(Held::Snapshot, chain_id)
    }
}

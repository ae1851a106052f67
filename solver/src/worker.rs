//! The contract between the solver and whatever executes steps (the executor crate, or a fake
//! in tests): the solver says which step to run on which layers; the worker returns the layer.
//!
//! Digests cross this contract as `rbuild_store::Digest`: `Layer.diff_id`, the parent and
//! source-stage chains, `has_layer`/`keep_layer`, as do a base image's manifest, config and
//! diff_ids (`op::ImageBase`), an ADD download's sha256 (`inputs::FetchedUrl`) and a cached
//! result's layer (`cache::CachedResult`). Text is parsed into a `Digest` once, where it enters
//! (a stored image record, a cache entry, a registry answer, an imported cache document); keys
//! hash the same `sha256:<hex>` text. `keep_layer` is how a cache entry's layer (and the snapshot
//! of its chain) becomes a GC root (`refs/cache/<key>` in the store).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rbuild_store::Digest;

use crate::op::{Plan, Step};

/// A produced layer, stored uncompressed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    pub size: u64,
}

/// What a worker gets to execute one file-changing step.
pub struct ExecRequest<'a> {
    pub plan: &'a Plan,
    pub step: &'a Step,
    /// Layers (bottom first) of the root filesystem the step runs on.
    pub parent_layers: &'a [Digest],
    /// Final layer chains of the stages the step reads from (`COPY --from`, `--mount from=`).
    pub stage_layers: &'a BTreeMap<usize, Vec<Digest>>,
    pub cancel: &'a CancelToken,
    /// The layer the last build of this same step produced, if any: a hint for reusing
    /// unchanged files (the worker must verify before reusing anything).
    pub previous_layer: Option<&'a Digest>,
    /// Live output of the step (RUN's stdout and stderr), as it arrives.
    pub log: &'a mut dyn FnMut(&[u8]),
}

/// Executes steps. Implementations must be usable from several stage threads at once.
pub trait Worker: Sync {
    /// Run one step; `Ok(None)` when it changed no files.
    fn execute(&self, req: ExecRequest<'_>) -> miette::Result<Option<Layer>>;

    /// Whether a layer recorded in the cache is still available (it may have been pruned).
    fn has_layer(&self, diff_id: &Digest) -> bool;

    /// Keep `diff_id` alive for the cache entry `key` (a GC root), before the entry is written.
    fn keep_layer(&self, key: &str, diff_id: &Digest) -> miette::Result<()> {
        let _ = (key, diff_id);
        Ok(())
    }

    /// The cache entry `key` was used (for age-based pruning of its GC root).
    fn touch_layer(&self, key: &str) {
        let _ = key;
    }
}

/// Shared cancellation flag: set on the first failure or on Ctrl-C. Workers poll it, or
/// register a hook that stops their running step at once (killing a sandbox).
#[derive(Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    hooks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelToken({})", self.is_cancelled())
    }
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Set the flag and run every hook (once).
    pub fn cancel(&self) {
        if self.0.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        let hooks = self.0.hooks.lock().unwrap_or_else(|e| e.into_inner());
        for hook in hooks.iter() {
            hook();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Run `hook` when the token is cancelled (immediately if it already is).
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) {
        // Checked under the lock `cancel` takes, so a hook is never missed nor run twice.
        let mut hooks = self.0.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_cancelled() {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }
}

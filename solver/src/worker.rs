//! The contract between the solver and whatever executes steps (the executor crate, or a fake
//! in tests): the solver says which step to run on which layers; the worker returns the layer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::op::{Plan, Step};

/// A produced layer, stored uncompressed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:...` of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
}

/// What a worker gets to execute one file-changing step.
pub struct ExecRequest<'a> {
    pub plan: &'a Plan,
    pub step: &'a Step,
    /// Layers (bottom first) of the root filesystem the step runs on.
    pub parent_layers: &'a [String],
    /// Final layer chains of the stages the step reads from (`COPY --from`, `--mount from=`).
    pub stage_layers: &'a BTreeMap<usize, Vec<String>>,
    pub cancel: &'a CancelToken,
    /// Live output of the step (RUN's stdout and stderr), as it arrives.
    pub log: &'a mut dyn FnMut(&[u8]),
}

/// Executes steps. Implementations must be usable from several stage threads at once.
pub trait Worker: Sync {
    /// Run one step; `Ok(None)` when it changed no files.
    fn execute(&self, req: ExecRequest<'_>) -> miette::Result<Option<Layer>>;

    /// Whether a layer recorded in the cache is still available (it may have been pruned).
    fn has_layer(&self, diff_id: &str) -> bool;
}

/// Shared cancellation flag: set on the first failure or on Ctrl-C; workers poll it and stop
/// their step cleanly.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

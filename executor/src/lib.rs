//! rbuild-executor runs the steps the solver plans: RUN in a Linux sandbox over overlay
//! snapshots, and the conversion of filesystem changes into deterministic OCI layers.
//!
//! # API for the solver
//!
//! ```text
//! let exec = Executor::new(root, ExecutorOptions::default())?;            // once per build
//! let base = exec.snapshots().ensure(diff_id, |dir| unpack_layer(dir))?;  // per parent layer
//! let mut on_line = |stream: Stream, line: &[u8]| { /* progress */ };
//! let mut step = RunStep::new(vec![base, ...], argv, Stdio3::Capture(&mut on_line));
//! step.env = ...; step.cwd = ...; step.user = ...; step.mounts = ...; step.log_path = ...;
//! let outcome = exec.run(step)?;            // Err: setup failure, start failure, cancelled
//! if !outcome.status.success() { /* report outcome.status, outcome.tail, the log path */ }
//! let layer = outcome.rootfs.write_layer(blob_writer, &LayerOptions::default())?;
//! // None = the step changed nothing; Some((LayerInfo { diff_id, size }, warnings))
//! outcome.rootfs.into_snapshot(exec.snapshots(), &diff_id)?;  // reuse the upper as snapshot
//! ```
//!
//! The binary must call [`sandbox::maybe_run_helper`] first thing in `main`: the sandbox is
//! this same executable re-executed with a hidden argument (never a fork of the threaded
//! caller). The executor knows nothing about Dockerfiles: argv and env arrive expanded.

pub mod container;
pub mod diff;
pub mod error;
pub mod export;
pub mod fsmeta;
pub mod layer;
pub mod lower;
pub mod materialize;
pub mod mounts;
pub mod sandbox;
pub mod snapshot;
pub mod step;
pub mod stubs;
pub mod user;

pub use diff::Changeset;
pub use error::{ExecError, Result};
pub use layer::{LayerInfo, LayerOptions, write_layer};
pub use mounts::{
    BindMount, BindSource, CacheMount, RunMount, SecretMount, SecretValue, Sharing, TmpfsMount,
};
pub use sandbox::{CancelToken, Network, Stdio3, Stream};
pub use snapshot::Snapshots;
pub use step::{Backend, Executor, ExecutorOptions, ExitStatus, RunOutcome, RunStep, StepRootfs};

pub mod build;
pub mod fetch;

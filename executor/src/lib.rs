//! rbuild-executor runs the steps the solver plans: RUN in a Linux sandbox over overlay
//! snapshots, and the conversion of filesystem changes into deterministic OCI layers.
//!
//! # API for the solver
//!
//! ```text
//! let store = Store::open(root)?;
//! let exec = Executor::new(store.root(), ExecutorOptions::default())?;    // once per build
//! let lowers = exec.snapshots().ensure_chain(&store, &parent_layers)?;    // snapshot per chain
//! let mut on_line = |stream: Stream, line: &[u8]| { /* progress */ };
//! let mut step = RunStep::new(lowers, argv, Stdio3::Capture(&mut on_line));
//! step.env = ...; step.cwd = ...; step.user = ...; step.mounts = ...; step.log_path = ...;
//! step.network = ...; step.cancel = Some(token.clone());                    // Ctrl-C, failures
//! step.security = Security::Insecure;    // only for an allowed `RUN --security=insecure`
//! let outcome = exec.run(step)?;            // Err: setup failure, start failure, cancelled
//! if !outcome.status.success() { /* report outcome.status, outcome.tail, the log path */ }
//! match outcome.rootfs.capture_layer(&store, &LayerOptions { source_date_epoch })? {
//!     None => { /* the step changed nothing */ }
//!     Some(CapturedLayer { diff_id, size, warnings }) => {
//!         // blob digest == diff_id (uncompressed); reuse the upper as the snapshot of the
//!         // chain parent + layer (snapshots are keyed by chain id, never by diff_id):
//!         let chain = chain::chain_id(chain_ids(&parent_diff_ids).last(), &diff_id);
//!         outcome.rootfs.commit_snapshot(&store, &chain)?;
//!     }
//! }
//! ```
//!
//! The binary must call [`sandbox::maybe_run_helper`] first thing in `main`: the sandbox is
//! this same executable re-executed with a hidden argument (never a fork of the threaded
//! caller). If the binary installs a SIGINT/SIGTERM handler, it must cancel running steps
//! through their [`CancelToken`]; otherwise the sandbox dies with the process (PDEATHSIG).
//! The executor knows nothing about Dockerfiles: argv and env arrive expanded. Without a
//! store, [`StepRootfs::write_layer`] writes to any `Write` and [`Snapshots::ensure`] fills a
//! snapshot from a closure.
//!
//! Before running any RUN step for a platform other than the host's, ask
//! [`emulation::check_run_platform`]`(&platform)`: `Ok(RunSupport::Native | Emulated(handler))`
//! or an [`EmulationError`] (`rbuild::platform::no_emulator`, `…::emulator_without_fix_binary`,
//! `…::unsupported`) whose help says how to install and register QEMU. Foreign steps then run
//! through the same [`Executor::run`]: the kernel hands their programs to the emulator.
//!
//! For `--output type=local|tar`: `export::Rootfs::load(&store, &image)?` then
//! `.write_tar(out, &RootfsOptions { mtime, cancelled })` or `.write_dir(dest, &opts)`.
//!
//! Store directories the executor owns: `snapshots/v2/` ([`snapshot`]), `exec/step-*` (step
//! scratch, [`step`]), `cache-mounts/` ([`mounts`]), `containers/` and `volumes/` ([`container`],
//! for `rbuild run` and the container commands). Module map: [`sandbox`] (the only `unsafe`, in `sandbox::sys`) runs
//! processes; [`step`] builds a step's rootfs ([`stubs`], [`materialize`], [`lower`]);
//! [`diff`] and [`layer`] turn its changes into a layer; [`build`] is the solver's `Worker`
//! (RUN, COPY/ADD, WORKDIR); [`export`] writes a final rootfs out; [`fetch`] downloads ADD URLs;
//! [`git`] checks out git sources (a git context, `ADD <git URL>`);
//! [`emulation`] says whether a platform's RUN steps can run here (natively or under a
//! binfmt_misc emulator).

pub mod agent_proxy;
pub mod build;
pub mod container;
pub mod diff;
pub mod emulation;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fsmeta;
pub mod git;
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
pub use emulation::{EmulationError, RunSupport, check_run_platform};
pub use error::{ExecError, Result};
pub use layer::{LayerInfo, LayerOptions, write_layer};
pub use mounts::{
    BindMount, BindSource, CacheMount, CacheSeed, HostMount, InlineFile, RunMount, SecretMount,
    SecretValue, Sharing, SshMount, TmpfsMount,
};
pub use sandbox::{CancelToken, Network, Security, Stdio3, Stream};
pub use snapshot::Snapshots;
pub use step::{
    Backend, CapturedLayer, Executor, ExecutorOptions, ExitStatus, RunOutcome, RunStep, StepRootfs,
};

//! The Linux sandbox RUN steps and `rbuild run` execute in: a re-exec'd single-threaded helper
//! builds new mount/PID/UTS/IPC (and optionally network) namespaces over the step's rootfs,
//! a minimal `/dev`, a fresh `/proc`, a read-only `/sys` and the step's mounts, then a PID-1
//! init runs the command and reaps. Its `sys` module is the only place in rbuild with `unsafe`.
//!
//! Confinement (unless the step is [`Security::Insecure`]): Docker's default capabilities, the
//! default seccomp profile (`seccomp.rs`, data in `seccomp-profile.json`), a device cgroup
//! that lets only the standard devices be opened (`devices.rs`: v1 controller or a v2 BPF
//! program), and `nodev` on every mount but the standard device nodes. Every sandbox (insecure
//! ones too) is also capped in tasks by a pids cgroup (`pids.rs`).
//!
//! Protocol: the parent runs `/proc/self/exe __rbuild-sandbox` with the JSON [`SandboxSpec`] on
//! fd 3 and a Unix socket on fd 4 that receives JSON-line [`Status`] records (with `-t`, the
//! terminal's master arrives attached to a `PtyReady` record). With `RootfsSpec::Enter` the
//! helper enters a running container (`rbuild exec`) instead of building a sandbox. The
//! binary's `main` must call [`helper_main`] first thing when its first argument is
//! [`HELPER_ARG`].
//!
//! Rootless (`userns`): a non-root caller's rbuild enters a user namespace of its own first,
//! and the sandbox is built inside it. What the kernel does differently there is handled where
//! it matters: overlays get `userxattr` (`fsops`), `/dev` binds the host's standard nodes
//! instead of creating them and `/sys` is the host's bound read-only (`helper`), no device
//! cgroup is needed — no device node can be created or opened in a user namespace's mounts,
//! which are all `nodev` — and memory and pids cgroups are used only where delegated
//! (`launch`). Seccomp and the capability set apply as they do for root.

mod cgroup;
mod devices;
pub mod fsops;
mod helper;
mod init;
mod launch;
mod pids;
mod seccomp;
mod spec;
mod sys;
pub mod userns;

pub use cgroup::memory_hierarchy;
pub use helper::main as helper_main;
pub use launch::{CancelToken, Ended, Launch, Launched, Stdio3, Stream, launch};
pub use pids::{DEFAULT_PIDS_LIMIT, MAX_PIDS_LIMIT, MIN_PIDS_LIMIT, PidsLimit};
pub use spec::{
    MountSource, MountSpec, Network, RootfsSpec, SandboxSpec, Security, Status, ULIMIT_NAMES,
    Ulimit,
};
pub use sys::is_root;

/// The hidden first argument that turns the rbuild binary into the sandbox helper.
pub const HELPER_ARG: &str = "__rbuild-sandbox";

/// Run the helper (or the rootless id mapper, [`userns::IDMAP_ARG`]) if this process was
/// started as one (call first thing in `main`).
pub fn maybe_run_helper() {
    match std::env::args_os().nth(1) {
        Some(a) if a == HELPER_ARG => helper_main(),
        Some(a) if a == userns::IDMAP_ARG => userns::idmap_main(),
        _ => {}
    }
}

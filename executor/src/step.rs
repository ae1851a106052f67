//! Running one step: [`Executor::run`] takes a [`RunStep`] (parent layers, expanded argv/env,
//! cwd, user, mounts, output sink), builds its rootfs, runs it in the sandbox, and returns the
//! exit status with a [`StepRootfs`] handle that turns the step's changes into a changeset or a
//! layer. Step directories live in `$ROOT/exec/step-*` (a `lock` file held while running) and
//! are removed when the handle is dropped; ones left by a killed process are removed by the next
//! [`Executor::new`].
//!
//! Root filesystems. Backend `overlay` (the default; global flag `--snapshotter
//! overlay|copy|auto`, or `RBUILD_SNAPSHOTTER`): the parent snapshots are overlay lower dirs
//! under a fresh upper/work pair, mounted with `redirect_dir=off,metacopy=off,index=off` so the
//! upper stays self-describing. Lower dirs are passed one by one with `fsconfig(lowerdir+)` (no
//! length limit, Linux ≥ 6.8); older kernels get the classic mount(2) with short symlinked names
//! (`RBUILD_OVERLAY_LEGACY=1` forces it; both are tested with 120 layers). Backend `copy` (chosen
//! automatically when the overlay mount fails, e.g. inside an overlay — said once, in the step's
//! warnings; `RBUILD_REFUSE_OVERLAY=1` makes the sandbox's mount fail to test this): the snapshots are
//! flattened into a plain directory (`materialize`) and bind-mounted. Mount points the image
//! lacks come from the stub layer (`stubs`).
//!
//! Rootless, the process runs as root of rbuild's user namespace (`sandbox::userns`); a
//! non-root process that has not entered it gets an error naming what is missing.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::diff::walk::{Baseline, StubSet};
use crate::diff::{self, Changeset};
use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta;
use crate::layer::{self, LayerInfo, LayerOptions};
use crate::lower::LowerView;
use crate::mounts::{self, RunMount};
use crate::sandbox::{
    self, CancelToken, Ended, Launch, MountSpec, Network, RootfsSpec, SandboxSpec, Security,
    Status, Stdio3,
};
use crate::snapshot::Snapshots;
use crate::stubs::{self, Need};

/// How step root filesystems are built and diffed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Overlay when the kernel allows it, else copy (decided on the first step).
    #[default]
    Auto,
    /// Overlayfs over the snapshots; the overlay differ reads the upper directory.
    Overlay,
    /// A flattened copy of the snapshots; the walking differ compares before and after.
    Copy,
}

impl Backend {
    /// `RBUILD_SNAPSHOTTER=overlay|copy|auto` (default auto).
    pub fn from_env() -> Backend {
        match std::env::var("RBUILD_SNAPSHOTTER").as_deref() {
            Ok("overlay") => Backend::Overlay,
            Ok("copy") | Ok("walk") => Backend::Copy,
            _ => Backend::Auto,
        }
    }
}

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// The binary to run as the sandbox helper (default `/proc/self/exe`: rbuild itself).
    pub helper: Option<PathBuf>,
    pub backend: Backend,
    /// Force the classic overlay mount (short symlinked lower names) instead of `lowerdir+`;
    /// `RBUILD_OVERLAY_LEGACY=1`. For testing the old-kernel path.
    pub legacy_overlay: bool,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            helper: None,
            backend: Backend::from_env(),
            legacy_overlay: std::env::var_os("RBUILD_OVERLAY_LEGACY").is_some_and(|v| v == "1"),
        }
    }
}

/// How the command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    /// Killed by a signal.
    Signaled {
        signal: i32,
        name: &'static str,
    },
    /// Failed after the kernel's OOM killer killed one of its processes (the sandbox's memory
    /// cgroup says so); `code` is the shell-style exit code (137 when the command itself was
    /// killed).
    OutOfMemory {
        code: i32,
    },
    /// Failed after a fork or clone was refused because the step had `limit` tasks
    /// (processes + threads) already (the sandbox's pids cgroup says so).
    PidsLimit {
        code: i32,
        limit: u64,
    },
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// A shell-style exit code: the code, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(c) => *c,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
            ExitStatus::OutOfMemory { code } | ExitStatus::PidsLimit { code, .. } => *code,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit code: {c}"),
            ExitStatus::Signaled { signal, name } => {
                write!(f, "killed by signal {name} ({signal})")
            }
            ExitStatus::OutOfMemory { code } => {
                write!(
                    f,
                    "out of memory: the OOM killer killed a process; exit code: {code}"
                )
            }
            ExitStatus::PidsLimit { code, limit } => {
                write!(
                    f,
                    "a fork failed: the pids limit of {limit} processes and threads was \
                     reached; exit code: {code}"
                )
            }
        }
    }
}

/// The name of a signal number (`SIGKILL`), or `SIG?` when unknown.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "SIG?",
    }
}

/// One step to run. Build it with [`RunStep::new`] and set what differs from the defaults.
pub struct RunStep<'a> {
    /// The parent chain's snapshot directories, base layer first.
    pub lowers: Vec<PathBuf>,
    /// The command, already expanded (shell form is `[SHELL..., "cmd"]`).
    pub argv: Vec<String>,
    /// `KEY=value` pairs, already expanded. `PATH` gets Docker's default when absent.
    pub env: Vec<String>,
    /// Working directory inside the container (created when missing, owned by the user).
    pub cwd: String,
    /// `USER` value: `name`, `uid`, `name:group`, `uid:gid` (empty = root).
    pub user: String,
    pub hostname: String,
    /// Extra `/etc/hosts` entries (`--add-host`), as (name, IP address), after the host's.
    pub extra_hosts: Vec<(String, String)>,
    /// Size of `/dev/shm` in bytes (`--shm-size`; default 64 MiB).
    pub shm_size: Option<u64>,
    /// `--ulimit`s, set before the command starts.
    pub ulimits: Vec<crate::sandbox::Ulimit>,
    pub network: Network,
    /// `Insecure` (`RUN --security=insecure`): every capability and device, no seccomp.
    pub security: Security,
    pub mounts: Vec<RunMount>,
    /// Where to write the full output (captured mode).
    pub log_path: Option<PathBuf>,
    pub stdio: Stdio3<'a>,
    pub cancel: Option<CancelToken>,
    pub timeout: Option<Duration>,
    /// Memory limit in bytes (memory + swap) for the step's processes.
    pub memory: Option<u64>,
    /// Cap on the step's tasks (processes + threads); the default unless set.
    pub pids: crate::sandbox::PidsLimit,
    /// Keep the upper directory in `DIR/upper` (for `rbuild run` containers); the step's other
    /// scratch files still go away with the handle.
    pub container_dir: Option<PathBuf>,
    /// Mount the root filesystem read-only (`run --read-only`).
    pub readonly_rootfs: bool,
}

impl<'a> RunStep<'a> {
    /// A step with defaults: env empty, cwd `/`, root, hostname `rbuild`, host network, no
    /// mounts, no log.
    pub fn new(lowers: Vec<PathBuf>, argv: Vec<String>, stdio: Stdio3<'a>) -> Self {
        RunStep {
            lowers,
            argv,
            env: Vec::new(),
            cwd: "/".into(),
            user: String::new(),
            hostname: "rbuild".into(),
            extra_hosts: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
            network: Network::Host,
            security: Security::Sandbox,
            mounts: Vec::new(),
            log_path: None,
            stdio,
            cancel: None,
            timeout: None,
            memory: None,
            pids: crate::sandbox::PidsLimit::Default,
            container_dir: None,
            readonly_rootfs: false,
        }
    }
}

/// Docker's default PATH, used when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The result of a step that ran (whatever its exit status).
pub struct RunOutcome {
    pub status: ExitStatus,
    /// The last lines of output (captured mode), for error reports.
    pub tail: Vec<String>,
    /// Mounts that were skipped and similar notes, and what this process says once: the
    /// fallback to the copy backend, a pids limit that cannot be applied.
    pub warnings: Vec<String>,
    pub rootfs: StepRootfs,
}

enum RootfsKind {
    Overlay {
        upper: PathBuf,
    },
    Copy {
        rootfs: PathBuf,
        baseline: Baseline,
        stubs: StubSet,
    },
}

/// A layer captured into the store.
#[derive(Clone, Debug)]
pub struct CapturedLayer {
    /// Digest of the uncompressed tar: the blob digest and the config's diff_id.
    pub diff_id: rbuild_store::Digest,
    pub size: u64,
    /// Entries the differ skipped (sockets, ...), one line each.
    pub warnings: Vec<String>,
}

/// The filesystem a finished step left behind. Dropping it removes the step's directory.
pub struct StepRootfs {
    kind: RootfsKind,
    lower: LowerView,
    _temp: tempfile::TempDir,
    _lock: File,
}

impl StepRootfs {
    /// What the step changed, in layer terms.
    pub fn changeset(&self) -> Result<Changeset> {
        match &self.kind {
            RootfsKind::Overlay { upper } => diff::overlay::diff_upper(upper, &self.lower),
            RootfsKind::Copy {
                rootfs,
                baseline,
                stubs,
            } => diff::walk::diff_trees(&self.lower, rootfs, Some(baseline), stubs),
        }
    }

    /// Write the step's layer to `out`; `None` (and nothing written) when nothing changed.
    pub fn write_layer<W: Write>(
        &self,
        out: W,
        options: &LayerOptions,
    ) -> Result<Option<(LayerInfo, Vec<String>)>> {
        let cs = self.changeset()?;
        if cs.is_empty() {
            return Ok(None);
        }
        let info = layer::write_layer(&cs, out, options)?;
        Ok(Some((info, cs.warnings)))
    }

    /// Write the step's layer into `store` as an uncompressed blob (its digest is the diff_id)
    /// and return it, or `None` when nothing changed. The blob is leased by `store`.
    pub fn capture_layer(
        &self,
        store: &rbuild_store::Store,
        options: &LayerOptions,
    ) -> Result<Option<CapturedLayer>> {
        let cs = self.changeset()?;
        if cs.is_empty() {
            return Ok(None);
        }
        let mut writer = store.blob_writer()?;
        layer::write_tar(&cs, &mut writer, options)?;
        let info = writer.commit()?;
        Ok(Some(CapturedLayer {
            diff_id: info.digest,
            size: info.size,
            warnings: cs.warnings,
        }))
    }

    /// Publish the overlay upper directory as the snapshot of the layer captured from it
    /// (leased in `store`), saving an unpack; see [`StepRootfs::into_snapshot`]. `chain_id` is
    /// the chain id of the step's parent layers plus the captured layer
    /// (`rbuild_store::chain::chain_id`), never the bare diff_id: the upper holds copy-ups that
    /// are only right on this parent. `None` for the copy backend.
    pub fn commit_snapshot(
        self,
        store: &rbuild_store::Store,
        chain_id: &rbuild_store::Digest,
    ) -> Result<Option<PathBuf>> {
        match &self.kind {
            RootfsKind::Overlay { upper } => Ok(Some(store.commit_snapshot(upper, chain_id)?)),
            RootfsKind::Copy { .. } => Ok(None),
        }
    }

    /// Which backend ran the step.
    pub fn backend(&self) -> Backend {
        match self.kind {
            RootfsKind::Overlay { .. } => Backend::Overlay,
            RootfsKind::Copy { .. } => Backend::Copy,
        }
    }

    /// The overlay upper directory (overlay backend only).
    pub fn upper_dir(&self) -> Option<&Path> {
        match &self.kind {
            RootfsKind::Overlay { upper } => Some(upper),
            RootfsKind::Copy { .. } => None,
        }
    }

    /// The step's complete root filesystem (copy backend only).
    pub fn copy_dir(&self) -> Option<&Path> {
        match &self.kind {
            RootfsKind::Copy { rootfs, .. } => Some(rootfs),
            RootfsKind::Overlay { .. } => None,
        }
    }

    /// Keep the upper directory as the snapshot of the layer written from it (overlay
    /// backend), saving an unpack. Its mtimes are not clamped to `SOURCE_DATE_EPOCH` and it may
    /// hold unchanged copy-ups, so it is valid only on this step's parent chain: `chain_id` is
    /// that chain plus the layer. Returns `None` for the copy backend, whose layer must be
    /// unpacked into a snapshot instead.
    pub fn into_snapshot(self, snapshots: &Snapshots, chain_id: &str) -> Result<Option<PathBuf>> {
        match &self.kind {
            RootfsKind::Overlay { upper } => Ok(Some(snapshots.adopt(chain_id, upper)?)),
            RootfsKind::Copy { .. } => Ok(None),
        }
    }
}

/// Runs steps for one store root.
pub struct Executor {
    root: PathBuf,
    exec_dir: PathBuf,
    helper: PathBuf,
    /// 0 = undecided (auto), 1 = overlay, 2 = copy.
    backend: AtomicU8,
    auto: bool,
    legacy_overlay: bool,
    snapshots: Snapshots,
    /// Notes of the sandbox already passed on in a step's warnings (each is said once).
    said: std::sync::Mutex<std::collections::HashSet<String>>,
}

const OVERLAY_STAGE: &str = "mount overlay rootfs";

impl Executor {
    /// An executor for the store at `root`; removes step directories left by killed runs.
    pub fn new(root: &Path, options: ExecutorOptions) -> Result<Executor> {
        let exec_dir = root.join("exec");
        std::fs::create_dir_all(&exec_dir).ctx("cannot create", &exec_dir)?;
        let (backend, auto) = match options.backend {
            Backend::Auto => (0, true),
            Backend::Overlay => (1, false),
            Backend::Copy => (2, false),
        };
        let exec = Executor {
            root: root.to_path_buf(),
            exec_dir,
            helper: options
                .helper
                .unwrap_or_else(|| PathBuf::from("/proc/self/exe")),
            backend: AtomicU8::new(backend),
            auto,
            legacy_overlay: options.legacy_overlay,
            snapshots: Snapshots::open(root)?,
            said: Default::default(),
        };
        exec.remove_stale_steps();
        Ok(exec)
    }

    /// The layer snapshots of this store.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fail early, with what is missing, when this process cannot create sandboxes.
    pub fn check_privileges(&self) -> Result<()> {
        if sandbox::is_root() {
            // The host's root, or root of rbuild's user namespace (rootless).
            Ok(())
        } else {
            Err(ExecError::NotRoot {
                missing: rootless_report(),
            })
        }
    }

    /// Run a step to completion. A non-zero exit is not an error: check `outcome.status`.
    /// Errors are setup failures, a command that could not start, and cancellation.
    pub fn run(&self, mut step: RunStep<'_>) -> Result<RunOutcome> {
        self.check_privileges()?;
        let backend = match self.backend.load(Ordering::SeqCst) {
            2 => Backend::Copy,
            _ => Backend::Overlay,
        };
        match self.run_with(&mut step, backend)? {
            Ok(outcome) => {
                if self.auto {
                    let _ = self
                        .backend
                        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                }
                Ok(outcome)
            }
            Err(overlay_error) if self.auto && backend == Backend::Overlay => {
                // Said once: every later step of this executor uses the copy backend.
                self.backend.store(2, Ordering::SeqCst);
                match self.run_with(&mut step, Backend::Copy)? {
                    Ok(mut outcome) => {
                        outcome.warnings.push(format!(
                            "overlay mounts are not available ({overlay_error}); using \
                             copied root filesystems (the copy snapshotter) from now on"
                        ));
                        Ok(outcome)
                    }
                    Err(e) => Err(ExecError::sandbox(e)),
                }
            }
            Err(overlay_error) => Err(ExecError::sandbox(format!(
                "{OVERLAY_STAGE}: {overlay_error}"
            ))),
        }
    }

    /// One attempt with `backend`; the inner error is an overlay mount failure (retryable).
    fn run_with(
        &self,
        step: &mut RunStep<'_>,
        backend: Backend,
    ) -> Result<Result<RunOutcome, String>> {
        // The owner's pid is in the name: a process killed before it locked `lock` leaves a
        // directory without one, removed once that pid is gone.
        let temp = tempfile::Builder::new()
            .prefix(&format!("step-{}-", std::process::id()))
            .tempdir_in(&self.exec_dir)
            .ctx("cannot create a step directory in", &self.exec_dir)?;
        let dir = temp.path().to_path_buf();
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).ctx("cannot create", &lock_path)?;
        lock.lock().ctx("cannot lock", &lock_path)?;

        let view = LowerView::new(&step.lowers);
        let prepared = mounts::prepare(&self.root, &dir, &step.mounts)?;
        let mut needs = vec![
            Need {
                target: "/proc".into(),
                dir: true,
                soft: false,
            },
            Need {
                target: "/dev".into(),
                dir: true,
                soft: false,
            },
            Need {
                target: "/sys".into(),
                dir: true,
                soft: false,
            },
            Need {
                target: "/etc/hosts".into(),
                dir: false,
                soft: true,
            },
            Need {
                target: "/etc/resolv.conf".into(),
                dir: false,
                soft: true,
            },
        ];
        for m in &prepared.mounts {
            needs.push(Need {
                target: m.target.clone(),
                dir: m.dir,
                soft: false,
            });
        }
        let (placed, plan) = stubs::plan(&view, &needs, backend == Backend::Overlay)?;
        let mut warnings = plan.warnings.clone();

        // Private copies of the host's name-resolution files: the step may write them, the
        // host never sees it, and the layer never contains them.
        let etc = dir.join("etc");
        std::fs::create_dir(&etc).ctx("cannot create", &etc)?;
        let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into()
        });
        if !hosts.ends_with('\n') && !hosts.is_empty() {
            hosts.push('\n');
        }
        hosts.push_str(&format!("127.0.0.1\t{}\n", step.hostname));
        for (name, ip) in &step.extra_hosts {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        std::fs::write(etc.join("hosts"), hosts).ctx("cannot write", &etc)?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(etc.join("resolv.conf"), resolv).ctx("cannot write", &etc)?;

        let mut mount_specs = Vec::new();
        for (i, name) in ["hosts", "resolv.conf"].iter().enumerate() {
            let p = &placed[3 + i];
            if let Some(target) = &p.target {
                mount_specs.push(MountSpec {
                    target: target.clone(),
                    source: sandbox::MountSource::Bind {
                        root: etc.clone(),
                        subpath: (*name).into(),
                    },
                    readonly: false,
                    dir: false,
                    nofollow: p.nofollow,
                });
            }
        }
        for (m, p) in prepared.mounts.iter().zip(&placed[5..]) {
            let target = p.target.clone().expect("hard needs are always placed");
            mount_specs.push(MountSpec {
                target,
                source: m.source.clone(),
                readonly: m.readonly,
                dir: m.dir,
                nofollow: p.nofollow,
            });
        }
        // Parents before children.
        mount_specs.sort_by_key(|m| m.target.split('/').filter(|c| !c.is_empty()).count());

        let (rootfs_spec, kind) = match backend {
            Backend::Copy => {
                let rootfs = dir.join("rootfs");
                std::fs::create_dir(&rootfs).ctx("cannot create", &rootfs)?;
                crate::materialize::materialize(&view, &rootfs)?;
                let stubs = plan.create_in_rootfs(&rootfs)?;
                let baseline = Baseline::capture(&rootfs)?;
                (
                    RootfsSpec::Dir {
                        path: rootfs.clone(),
                    },
                    RootfsKind::Copy {
                        rootfs,
                        baseline,
                        stubs,
                    },
                )
            }
            _ => {
                let stub_layer = dir.join("stubs");
                std::fs::create_dir(&stub_layer).ctx("cannot create", &stub_layer)?;
                plan.write_layer(&stub_layer)?;
                let base = step.container_dir.clone().unwrap_or_else(|| dir.clone());
                let upper = base.join("upper");
                let work = base.join("work");
                for d in [&upper, &work] {
                    std::fs::create_dir_all(d).ctx("cannot create", d)?;
                }
                // The merged root takes its attributes from the upper directory.
                if let Some(root) = view.lookup(Path::new("")).ctx("cannot read", &dir)? {
                    let xattrs =
                        fsmeta::xattrs(&root.path).ctx("cannot read xattrs of", &root.path)?;
                    fsmeta::apply_meta(&upper, &root.meta, &xattrs)
                        .ctx("cannot set attributes of", &upper)?;
                }
                let target = dir.join("rootfs");
                std::fs::create_dir(&target).ctx("cannot create", &target)?;
                let mut lowers = vec![stub_layer];
                lowers.extend(view.layers_top_first().iter().cloned());
                (
                    RootfsSpec::Overlay {
                        lowers,
                        upper: upper.clone(),
                        work,
                        target,
                        links: dir.join("links"),
                        legacy: self.legacy_overlay,
                    },
                    RootfsKind::Overlay { upper },
                )
            }
        };

        let mut env = step.env.clone();
        if !env.iter().any(|kv| kv.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env.extend(prepared.env.iter().cloned());
        let scratch = dir.join("scratch");
        std::fs::create_dir(&scratch).ctx("cannot create", &scratch)?;
        let spec = SandboxSpec {
            rootfs: rootfs_spec,
            argv: step.argv.clone(),
            env,
            cwd: step.cwd.clone(),
            user: step.user.clone(),
            hostname: step.hostname.clone(),
            network: step.network,
            security: step.security,
            drop_mknod: false,
            mounts: mount_specs,
            new_session: matches!(step.stdio, Stdio3::Capture(_) | Stdio3::Terminal(_)),
            tty: matches!(step.stdio, Stdio3::Terminal(_)),
            readonly_rootfs: step.readonly_rootfs,
            scratch,
            shm_size: step.shm_size,
            ulimits: step.ulimits.clone(),
        };
        let stdio = match &mut step.stdio {
            Stdio3::Capture(cb) => Stdio3::Capture(&mut **cb),
            Stdio3::Inherit => Stdio3::Inherit,
            Stdio3::InheritOutput => Stdio3::InheritOutput,
            Stdio3::Terminal(cb) => Stdio3::Terminal(&mut **cb),
        };
        let launched = sandbox::launch(Launch {
            helper: &self.helper,
            spec: &spec,
            stdio,
            log: step.log_path.as_deref(),
            cancel: step.cancel.as_ref(),
            timeout: step.timeout,
            memory: step.memory,
            pids: step.pids,
        });
        drop(prepared);
        let launched = launched?;
        let status = match launched.ended {
            Ended::Status(Status::Exited(c)) => ExitStatus::Exited(c),
            Ended::Status(Status::Signaled(s)) => ExitStatus::Signaled {
                signal: s,
                name: signal_name(s),
            },
            // Never the last record (launch skips it); a helper that sent nothing else died.
            Ended::Status(Status::PtyReady) => {
                return Err(ExecError::sandbox(
                    "the sandbox ended without saying how the command ended",
                ));
            }
            Ended::Status(Status::StartFailed { program, reason }) => {
                return Err(ExecError::Start { program, reason });
            }
            Ended::Status(Status::SetupFailed { stage, message }) => {
                if stage == OVERLAY_STAGE {
                    return Ok(Err(message));
                }
                return Err(ExecError::sandbox(format!("{stage}: {message}")));
            }
            Ended::Cancelled => {
                return Err(ExecError::Cancelled {
                    reason: "cancelled".into(),
                });
            }
            Ended::TimedOut => {
                return Err(ExecError::Cancelled {
                    reason: format!(
                        "timed out after {} s",
                        step.timeout.map(|t| t.as_secs()).unwrap_or(0)
                    ),
                });
            }
        };
        {
            let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
            warnings.extend(
                launched
                    .notes
                    .iter()
                    .filter(|n| said.insert((*n).clone()))
                    .cloned(),
            );
        }
        let status = if launched.oom_killed && !status.success() {
            ExitStatus::OutOfMemory {
                code: status.code(),
            }
        } else if let (Some(limit), false) = (launched.pids_limit_hit, status.success()) {
            ExitStatus::PidsLimit {
                code: status.code(),
                limit,
            }
        } else {
            status
        };
        Ok(Ok(RunOutcome {
            status,
            tail: launched.tail,
            warnings,
            rootfs: StepRootfs {
                kind,
                lower: view,
                _temp: temp,
                _lock: lock,
            },
        }))
    }

    /// Remove step directories whose owner process is gone: their lock is free, or (killed
    /// before it took the lock) they have none and the pid in their name no longer runs.
    fn remove_stale_steps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.exec_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let lock = entry.path().join("lock");
            let stale = match File::options().read(true).write(true).open(&lock) {
                Ok(f) => f.try_lock().is_ok(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    step_owner(&entry.file_name())
                        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                }
                Err(_) => false,
            };
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The pid in a step directory's name (`step-<pid>-<random>`).
fn step_owner(name: &std::ffi::OsStr) -> Option<u32> {
    let rest = name.to_str()?.strip_prefix("step-")?;
    rest.split_once('-')?.0.parse().ok()
}

/// Why a non-root process that is not in rbuild's user namespace cannot run a sandbox.
fn rootless_report() -> String {
    let uid = rustix::process::geteuid().as_raw();
    match sandbox::userns::plan() {
        Ok(_) => format!(
            "this process (uid {uid}) has not entered rbuild's user namespace \
             (`rbuild_executor::sandbox::userns::enter`, which the rbuild binary calls first)"
        ),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step directory left by a process killed before it locked it goes once its pid is
    /// gone; one of a live process, or locked, stays.
    #[test]
    fn stale_step_directories_without_a_lock_go_when_their_owner_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let exec = root.path().join("exec");
        std::fs::create_dir_all(&exec).unwrap();
        let dead = exec.join("step-999999999-abc");
        let live = exec.join(format!("step-{}-def", std::process::id()));
        let foreign = exec.join("notes");
        for d in [&dead, &live, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        let locked = exec.join("step-999999998-ghi");
        std::fs::create_dir(&locked).unwrap();
        let held = File::create(locked.join("lock")).unwrap();
        held.lock().unwrap();
        let freed = exec.join("step-999999997-jkl");
        std::fs::create_dir(&freed).unwrap();
        File::create(freed.join("lock")).unwrap();
        Executor::new(root.path(), ExecutorOptions::default()).unwrap();
        assert!(!dead.exists() && !freed.exists());
        assert!(live.exists() && foreign.exists() && locked.exists());
        assert_eq!(step_owner(std::ffi::OsStr::new("step-12-x")), Some(12));
        assert_eq!(step_owner(std::ffi::OsStr::new("step-x")), None);
    }
}

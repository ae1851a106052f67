//! The serialized contract between the executor (parent) and the sandbox helper: what to mount
//! and run (sent as JSON on fd 3) and how it ended (JSON lines back on fd 4, a Unix socket, so a
//! terminal's master can travel with a record).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Network mode of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Network {
    /// The host's network namespace (like `docker build`'s default).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
}

/// How confined the command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Security {
    /// Docker's default confinement: its default capability set, the default seccomp profile
    /// (`sandbox/seccomp.rs`, data in `seccomp-profile.json`), the standard devices only (a
    /// device cgroup and `nodev` mounts).
    #[default]
    Sandbox,
    /// `RUN --security=insecure` (needs the `security.insecure` entitlement): every
    /// capability, no seccomp filter, every device, a writable `/sys` and an unmasked `/proc`.
    Insecure,
}

/// How the root filesystem is provided.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RootfsSpec {
    /// An overlay of `lowers` (topmost first) with a fresh upper/work pair, mounted on `target`.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        /// Scratch directory for short symlinks to the lowers (old-kernel mount fallback).
        links: PathBuf,
        /// Use the classic mount(2) option string even where `lowerdir+` exists.
        legacy: bool,
    },
    /// A plain directory (the copy-based fallback), bind-mounted onto itself.
    Dir { path: PathBuf },
    /// No new sandbox: enter the running container whose PID-1 init has this host pid (its
    /// mount, PID, UTS, IPC, network and cgroup namespaces and its root; `rbuild exec`). The
    /// parent puts the helper in that container's cgroups; mounts, hostname and network of
    /// the spec are ignored.
    Enter { init_pid: i32 },
}

/// What gets mounted at a target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MountSource {
    /// A host path (file or directory), resolved inside `root` (`subpath` may contain symlinks;
    /// they are followed as if `root` were `/`).
    Bind { root: PathBuf, subpath: String },
    /// An overlay of `lowers` (topmost first, at least two); `subpath` inside it is mounted.
    /// With `upper_work` it is writable and the writes land in that throwaway upper.
    Layers {
        lowers: Vec<PathBuf>,
        subpath: String,
        upper_work: Option<(PathBuf, PathBuf)>,
    },
    /// A writable overlay over a host directory whose writes land in a throwaway upper.
    Discard {
        root: PathBuf,
        subpath: String,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A tmpfs of at most `size` bytes.
    Tmpfs { size: Option<u64>, mode: u32 },
    /// A secret held in memory (a private tmpfs file), never on disk.
    Secret {
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// One mount inside the rootfs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute path inside the container, already resolved (no symlinks left) where possible.
    pub target: String,
    pub source: MountSource,
    pub readonly: bool,
    /// Whether the target is a directory (else a file).
    pub dir: bool,
    /// Do not follow a symlink at the target's last component.
    pub nofollow: bool,
}

/// Everything the helper needs to build the sandbox and start the command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: RootfsSpec,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: String,
    pub network: Network,
    pub security: Security,
    /// No device cgroup could be set up: drop `CAP_MKNOD` too (the `nodev` mounts still stop
    /// device nodes from being opened).
    pub drop_mknod: bool,
    /// Mounts in order (parents before children).
    pub mounts: Vec<MountSpec>,
    /// Start the command in a new session (no controlling terminal).
    pub new_session: bool,
    /// Give the command a new pseudo-terminal of the sandbox's own devpts as its stdio and
    /// controlling terminal; the master goes to the parent (`Status::PtyReady`).
    #[serde(default)]
    pub tty: bool,
    /// Mount the root filesystem read-only (`run --read-only`); its other mounts keep theirs.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// A private scratch directory on the host for the helper's intermediate mounts.
    pub scratch: PathBuf,
    /// Size of `/dev/shm` in bytes (`--shm-size`); docker's 64 MiB when unset.
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Resource limits set with setrlimit before the command starts (`--ulimit`).
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit NAME=SOFT[:HARD]`, as docker's `units.ParseUlimit` reads it: the names of
/// `ulimit(1)` without `RLIMIT_`, a missing hard limit is the soft one, `-1` is unlimited
/// (`None` here).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The resource names `--ulimit` takes (docker's list).
pub const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl Ulimit {
    /// Parse `NAME=SOFT[:HARD]`; an unknown name or a soft limit above the hard one is an
    /// error (as docker).
    pub fn parse(text: &str) -> Result<Ulimit, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or("expected NAME=SOFT[:HARD], e.g. `--ulimit nofile=1024:4096`")?;
        if !ULIMIT_NAMES.contains(&name) {
            return Err(format!(
                "unknown ulimit `{name}`; known: {}",
                ULIMIT_NAMES.join(", ")
            ));
        }
        let limit = |v: &str| -> Result<Option<u64>, String> {
            match v.trim().parse::<i64>() {
                Ok(-1) => Ok(None),
                Ok(n) if n >= 0 => Ok(Some(n as u64)),
                _ => Err(format!(
                    "invalid limit `{v}` (a number, or -1 for unlimited)"
                )),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (limit(s)?, limit(h)?),
            None => {
                let v = limit(values)?;
                (v, v)
            }
        };
        let above = match (soft, hard) {
            (None, Some(_)) => true,
            (Some(s), Some(h)) => s > h,
            _ => false,
        };
        if above {
            return Err(format!(
                "the soft limit of `{text}` is above its hard limit"
            ));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }
}

/// One status record the sandbox sends back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Status {
    /// The sandbox could not be built; `stage` says which part failed.
    SetupFailed { stage: String, message: String },
    /// The command could not be started.
    StartFailed { program: String, reason: String },
    /// The pseudo-terminal exists: its master travels with this record (`SCM_RIGHTS`).
    PtyReady,
    /// The command ran and exited with this code.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
}

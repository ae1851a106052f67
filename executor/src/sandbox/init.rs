//! PID 1 of the step's PID namespace and the command process it forks. Init mounts a fresh
//! `/proc` (`sys`, `sysrq-trigger`, `irq`, `bus`, `fs` read-only; `kcore`, `keys`, `timer_list`,
//! `sched_debug`, ... masked), pivots into the rootfs, makes itself non-dumpable (the step, root
//! in the same user namespace, cannot ptrace it or open `/proc/1/exe`, which is rbuild's own
//! binary: CVE-2019-5736), forks the command, drops every capability it still holds, and reaps
//! every orphan. When the command exits, init reports `Exited(code)` or `Signaled(n)` on fd 4 and
//! exits — which makes the kernel kill whatever the step left running.
//!
//! The command process resolves the user from the image's passwd/group files (read as data,
//! see `user`), creates a missing working directory (0755, owned by the user, like BuildKit) and
//! checks with `getcwd` that it is inside the root, installs the seccomp filter, narrows
//! capabilities to Docker's default set (bounding, permitted, effective; inheritable and ambient
//! empty), drops privileges and execs. `--security=insecure` keeps every capability, installs no
//! filter, and leaves `/proc` unmasked.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountAttrFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use super::fsops;
use super::helper::{Failure, Reporter, Stage};
use super::seccomp::Filters;
use super::spec::{SandboxSpec, Security, Status};
use super::sys;
use crate::user;

/// Docker's default capability set (bit numbers): CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
/// CAP_MKNOD, dropped too when no device cgroup could be set up.
const CAP_MKNOD: u32 = 27;

/// `/proc` entries made read-only, and entries hidden.
const PROC_READONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
];
const PROC_MASKED_DIRS: [&str; 2] = ["acpi", "scsi"];

/// Run as PID 1. Never returns.
pub(super) fn run(
    reporter: &mut Reporter,
    spec: &SandboxSpec,
    root: OwnedFd,
    proc_target: OwnedFd,
    filters: Option<&Filters>,
    tty: Option<OwnedFd>,
) -> ! {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if let Err(f) = setup(&root, proc_target, spec.security) {
        reporter.fail(f);
        sys::exit_now(1);
    }
    drop(root);
    // The step runs as root in the same user namespace: make init unreachable to it (no
    // ptrace, no /proc/1/exe or /proc/1/fd), and once the command is forked, give up every
    // capability init still has.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let child = match sys::fork() {
        Ok(None) => command(reporter, spec, filters, tty),
        Ok(Some(pid)) => {
            // Init holds no terminal: the command's end is the terminal's end.
            drop(tty);
            if let Err(e) = drop_all_capabilities() {
                reporter.fail(Failure {
                    stage: "drop init capabilities",
                    message: e.to_string(),
                });
                sys::exit_now(1);
            }
            pid
        }
        Err(e) => {
            reporter.fail(Failure {
                stage: "fork command",
                message: e.to_string(),
            });
            sys::exit_now(1);
        }
    };
    let child = Pid::from_raw(child).expect("fork returned a positive pid");
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == child => {
                if let Some(code) = status.exit_status() {
                    reporter.send(&Status::Exited(code));
                } else if let Some(sig) = status.terminating_signal() {
                    reporter.send(&Status::Signaled(sig));
                }
                sys::exit_now(0);
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                reporter.fail(Failure {
                    stage: "wait for command",
                    message: e.to_string(),
                });
                sys::exit_now(1);
            }
        }
    }
}

fn setup(root: &OwnedFd, proc_target: OwnedFd, security: Security) -> Result<(), Failure> {
    let proc = fsops::new_mount(
        "proc",
        &[],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount /proc")?;
    fsops::attach(&proc, &proc_target).stage("mount /proc")?;
    if security == Security::Insecure {
        return enter_root(root);
    }
    let proc_dir = fsops::open_in_root(root, "proc", true).stage("open /proc")?;
    let open = |name: &str| {
        rustix::fs::openat(
            &proc_dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    for name in PROC_READONLY {
        if let Ok(fd) = open(name) {
            let ro = fsops::clone_tree(&fd, true).stage("protect /proc")?;
            fsops::attach(&ro, &fd).stage("protect /proc")?;
        }
    }
    let null = fsops::open_in_root(root, "dev/null", true).stage("open /dev/null")?;
    for name in PROC_MASKED_FILES {
        if let Ok(fd) = open(name) {
            let mask = fsops::clone_tree(&null, true).stage("mask /proc")?;
            fsops::attach(&mask, &fd).stage("mask /proc")?;
        }
    }
    for name in PROC_MASKED_DIRS {
        if let Ok(fd) = open(name) {
            let empty = fsops::new_mount(
                "tmpfs",
                &[("size", "0".into())],
                MountAttrFlags::MOUNT_ATTR_RDONLY,
            )
            .stage("mask /proc")?;
            fsops::attach(&empty, &fd).stage("mask /proc")?;
        }
    }
    enter_root(root)
}

fn enter_root(root: &OwnedFd) -> Result<(), Failure> {
    // pivot_root(".", ".") stacks the old root on the new one; detaching "." then drops it.
    rustix::process::fchdir(root).stage("enter rootfs")?;
    rustix::process::pivot_root(".", ".").stage("pivot_root")?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).stage("detach old root")?;
    rustix::process::chdir("/").stage("enter rootfs")?;
    Ok(())
}

/// The command process: identity, working directory, capabilities, exec. Never returns.
pub(super) fn command(
    reporter: &mut Reporter,
    spec: &SandboxSpec,
    filters: Option<&Filters>,
    tty: Option<OwnedFd>,
) -> ! {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let start_failed = |reporter: &mut Reporter, reason: String| -> ! {
        reporter.send(&Status::StartFailed {
            program: program.clone(),
            reason,
        });
        sys::exit_now(127)
    };
    if spec.new_session {
        let _ = rustix::process::setsid();
    }
    if let Some(tty) = tty {
        let attached = rustix::process::ioctl_tiocsctty(&tty)
            .and_then(|()| rustix::stdio::dup2_stdin(&tty))
            .and_then(|()| rustix::stdio::dup2_stdout(&tty))
            .and_then(|()| rustix::stdio::dup2_stderr(&tty));
        if let Err(e) = attached {
            start_failed(reporter, format!("cannot attach the terminal: {e}"));
        }
        drop(tty);
    }
    let passwd = read_small("/etc/passwd");
    let group = read_small("/etc/group");
    let id = match user::resolve(&spec.user, passwd.as_deref(), group.as_deref()) {
        Ok(id) => id,
        Err(e) => start_failed(reporter, e.to_string()),
    };
    if let Err(reason) = enter_cwd(&spec.cwd, id.uid, id.gid) {
        start_failed(reporter, reason);
    }
    // `--ulimit`, while the capabilities still allow raising a hard limit (as runc).
    if let Err(reason) = set_ulimits(&spec.ulimits) {
        start_failed(reporter, reason);
    }
    // The helper and init are shielded from the OOM killer (launch.rs); the step is not.
    let _ = std::fs::write("/proc/self/oom_score_adj", "0");
    if let Err(e) = confine(spec, filters, &id) {
        start_failed(
            reporter,
            format!("cannot switch to user `{}`: {e}", spec.user),
        );
    }
    rustix::process::umask(Mode::from_raw_mode(0o022));
    sys::reset_signals();
    sys::cloexec_from(3);
    if program.is_empty() {
        start_failed(reporter, "no command given".into());
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&spec.argv[1..]).env_clear();
    for kv in &spec.env {
        match kv.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(kv, ""),
        };
    }
    // As runc does: HOME from the user's passwd entry (`/` without one) unless set.
    if !spec.env.iter().any(|kv| kv.starts_with("HOME=")) {
        cmd.env("HOME", &id.home);
    }
    let err = cmd.exec();
    let reason = match err.kind() {
        std::io::ErrorKind::NotFound if !program.contains('/') => {
            "executable file not found in $PATH".to_string()
        }
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => err.to_string(),
    };
    start_failed(reporter, reason)
}

/// Apply `--ulimit`s with setrlimit (names checked when the flag was parsed).
fn set_ulimits(ulimits: &[super::Ulimit]) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    for u in ulimits {
        let resource = match u.name.as_str() {
            "core" => Resource::Core,
            "cpu" => Resource::Cpu,
            "data" => Resource::Data,
            "fsize" => Resource::Fsize,
            "locks" => Resource::Locks,
            "memlock" => Resource::Memlock,
            "msgqueue" => Resource::Msgqueue,
            "nice" => Resource::Nice,
            "nofile" => Resource::Nofile,
            "nproc" => Resource::Nproc,
            "rss" => Resource::Rss,
            "rtprio" => Resource::Rtprio,
            "rttime" => Resource::Rttime,
            "sigpending" => Resource::Sigpending,
            "stack" => Resource::Stack,
            other => return Err(format!("unknown ulimit `{other}`")),
        };
        setrlimit(
            resource,
            Rlimit {
                current: u.soft,
                maximum: u.hard,
            },
        )
        .map_err(|e| format!("cannot set ulimit {}: {e}", u.name))?;
    }
    Ok(())
}

/// Read a small regular file of the image (at most 4 MiB); `None` if missing or not regular.
fn read_small(path: &str) -> Option<String> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Create the working directory if missing (0755, owned by the user, as BuildKit does), enter
/// it, and check it is inside the root (CVE-2024-21626: a cwd outside the root reads as
/// "(unreachable)").
fn enter_cwd(cwd: &str, uid: u32, gid: u32) -> Result<(), String> {
    let cwd = if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    };
    let mut prefix = String::new();
    for comp in cwd.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(comp);
        match std::fs::metadata(&prefix) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&prefix)
                    .and_then(|()| {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o755))?;
                        std::os::unix::fs::chown(&prefix, Some(uid), Some(gid))
                    })
                    .map_err(|e| format!("cannot create working directory `{prefix}`: {e}"))?;
            }
            Err(e) => return Err(format!("working directory `{cwd}`: {e}")),
        }
    }
    rustix::process::chdir(cwd.as_str()).map_err(|e| format!("working directory `{cwd}`: {e}"))?;
    let here = rustix::process::getcwd(Vec::new())
        .map_err(|e| format!("working directory `{cwd}`: {e}"))?;
    if !here.to_bytes().starts_with(b"/") {
        return Err(format!(
            "working directory `{cwd}` is outside the container root"
        ));
    }
    Ok(())
}

fn drop_all_capabilities() -> std::io::Result<()> {
    sys::bound_capabilities(&[])?;
    let none = rustix::thread::CapabilitySet::empty();
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: none,
            permitted: none,
            inheritable: none,
        },
    )?;
    Ok(())
}

/// Seccomp, capabilities, then the user's identity. The filter goes first: installing it
/// without `no_new_privs` needs `CAP_SYS_ADMIN`, and it allows the calls that follow.
fn confine(
    spec: &SandboxSpec,
    filters: Option<&Filters>,
    id: &user::Identity,
) -> std::io::Result<()> {
    for filter in filters.into_iter().flatten() {
        sys::install_seccomp(filter)
            .map_err(|e| std::io::Error::new(e.kind(), format!("seccomp filter: {e}")))?;
    }
    if spec.security == Security::Insecure {
        // Every capability rbuild itself has: root's exec gets its whole bounding set.
        return drop_privileges(id);
    }
    let caps: Vec<u32> = DEFAULT_CAPS
        .iter()
        .copied()
        .filter(|c| !(spec.drop_mknod && *c == CAP_MKNOD))
        .collect();
    sys::bound_capabilities(&caps)?;
    drop_privileges(id)?;
    if id.uid == 0 {
        // Root keeps exactly the set: permitted and effective; nothing inheritable.
        let mut set = rustix::thread::CapabilitySet::empty();
        for cap in &caps {
            set |= rustix::thread::CapabilitySet::from_bits_retain(1u64 << cap);
        }
        rustix::thread::set_capabilities(
            None,
            rustix::thread::CapabilitySets {
                effective: set,
                permitted: set,
                inheritable: rustix::thread::CapabilitySet::empty(),
            },
        )?;
    }
    Ok(())
}

fn drop_privileges(id: &user::Identity) -> std::io::Result<()> {
    let groups: Vec<rustix::process::Gid> = id
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    // With one id mapped (`--userns=single`) setgroups is denied, and there are no others.
    if !rbuild_store::userns::single_id() {
        rustix::thread::set_thread_groups(&groups)?;
    }
    let gid = rustix::process::Gid::from_raw(id.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    let uid = rustix::process::Uid::from_raw(id.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

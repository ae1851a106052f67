//! The sandbox helper, run as `rbuild __rbuild-sandbox` (a fresh, single-threaded process):
//! it closes stray descriptors (everything above fd 4), sets `PDEATHSIG=SIGKILL`, reads the spec
//! from fd 3, unshares the mount, PID, UTS, IPC and cgroup namespaces (plus network for
//! `--network=none`), makes `/` rprivate, and mounts the rootfs, a tmpfs `/dev` (null, zero,
//! full, random, urandom, tty, devpts with ptmx, shm), a read-only sysfs, `/etc/hosts` and
//! `/etc/resolv.conf` (private copies of the host's, made by the parent) and the step's mounts.
//! Every mount target inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` and mounted
//! by descriptor (`fsmount`/`open_tree` + `move_mount`, see `fsops`). It then forks the PID-1
//! init of the new PID namespace and waits for it. Status records go to fd 4. All mounts live in
//! the helper's private mount namespace, so they vanish with its last process, however the step
//! ends.
//!
//! `RootfsSpec::Enter` (`rbuild exec`) skips all of that: the helper joins a running
//! container's namespaces and root (`enter`) and forks the command the same way init does.
//!
//! Devices: every mount of the sandbox is `nodev` except the standard device nodes, which are
//! bind-mounted one by one into `/dev` (a `nodev` tmpfs), and `/dev/pts`; a node the step
//! creates anywhere cannot be opened, whatever the device cgroup says. `--security=insecure`
//! leaves the mounts as they are, with a writable `/sys`, and adds the host devices BuildKit
//! gives such steps (fuse, kvm, tun, the loop devices, ...). Rootless (in rbuild's user
//! namespace, see `userns`) no node can be made: the host's nodes are bind-mounted instead, and
//! `/sys` is the host's bound read-only (a fresh sysfs needs a network namespace of our own).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::mount::{MountAttrFlags, MountPropagationFlags};
use rustix::process::Signal;
use rustix::thread::UnshareFlags;

use super::fsops::{self, Overlay};
use super::init;
use super::seccomp;
use super::spec::{MountSource, MountSpec, Network, RootfsSpec, SandboxSpec, Security, Status};
use super::sys;

/// A failure during setup, tagged with the stage it happened in.
pub(super) struct Failure {
    pub stage: &'static str,
    pub message: String,
}

pub(super) trait Stage<T> {
    fn stage(self, stage: &'static str) -> Result<T, Failure>;
}

impl<T, E: std::fmt::Display> Stage<T> for Result<T, E> {
    fn stage(self, stage: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            stage,
            message: e.to_string(),
        })
    }
}

/// Sends status records to the parent on fd 4.
pub(super) struct Reporter {
    file: File,
}

impl Reporter {
    pub(super) fn send(&mut self, status: &Status) {
        let mut line = serde_json::to_vec(status).unwrap_or_default();
        line.push(b'\n');
        // One write per record; records are small, so they arrive whole.
        let _ = self.file.write_all(&line);
    }

    /// Send `status` with `fd` attached (`SCM_RIGHTS`).
    pub(super) fn send_with_fd(
        &mut self,
        status: &Status,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut line = serde_json::to_vec(status).unwrap_or_default();
        line.push(b'\n');
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &self.file,
            &[std::io::IoSlice::new(&line)],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }

    pub(super) fn fail(&mut self, f: Failure) {
        self.send(&Status::SetupFailed {
            stage: f.stage.to_string(),
            message: f.message,
        });
    }
}

/// Entry point of the helper process. Never returns.
pub fn main() -> ! {
    sys::close_from(5);
    let Ok(status_fd) = sys::inherited_fd(4) else {
        sys::exit_now(120);
    };
    let _ = rustix::io::fcntl_setfd(&status_fd, rustix::io::FdFlags::CLOEXEC);
    let mut reporter = Reporter {
        file: File::from(status_fd),
    };
    match run(&mut reporter) {
        Ok(code) => sys::exit_now(code),
        Err(f) => {
            reporter.fail(f);
            sys::exit_now(121)
        }
    }
}

fn read_spec() -> Result<SandboxSpec, Failure> {
    let fd = sys::inherited_fd(3).stage("read spec")?;
    let mut buf = Vec::new();
    File::from(fd).read_to_end(&mut buf).stage("read spec")?;
    serde_json::from_slice(&buf).stage("parse spec")
}

fn run(reporter: &mut Reporter) -> Result<i32, Failure> {
    let spec = read_spec()?;
    // Die with the parent; if it is already gone, stop here.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).stage("prctl")?;
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        return Ok(1);
    }
    rustix::process::umask(Mode::empty());
    if let RootfsSpec::Enter { init_pid } = spec.rootfs {
        return enter(reporter, &spec, init_pid);
    }

    let mut flags = UnshareFlags::NEWNS
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWCGROUP;
    if spec.network == Network::None {
        flags |= UnshareFlags::NEWNET;
    }
    sys::unshare(flags).stage("unshare namespaces")?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .stage("make / private")?;

    let root = mount_rootfs(&spec)?;
    rustix::system::sethostname(spec.hostname.as_bytes()).stage("set hostname")?;
    if spec.network == Network::None {
        sys::loopback_up().stage("bring up loopback")?;
    }
    let insecure = spec.security == Security::Insecure;
    mount_dev(&root, &spec.scratch.join("devices"), spec.shm_size)?;
    if insecure {
        host_devices(&root)?;
    }
    mount_sys(&root, insecure)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        mount_one(&root, m, &spec.scratch.join(format!("m{i}"))).map_err(|f| Failure {
            stage: f.stage,
            message: format!("`{}`: {}", m.target, f.message),
        })?;
    }
    if !insecure {
        nodev_everywhere(&root)?;
    }
    if spec.readonly_rootfs {
        sys::mount_change_attrs(&root, sys::MOUNT_ATTR_RDONLY, 0, false)
            .stage("make the root filesystem read-only")?;
    }
    let tty = if spec.tty {
        Some(open_terminal(&root, reporter)?)
    } else {
        None
    };
    let proc_target = fsops::open_in_root(&root, "proc", true).stage("find /proc")?;
    let filters = match spec.security {
        Security::Sandbox => Some(seccomp::compile().stage("seccomp profile")?),
        Security::Insecure => None,
    };

    match sys::fork().stage("fork init")? {
        None => init::run(reporter, &spec, root, proc_target, filters.as_ref(), tty),
        Some(pid) => {
            drop(tty);
            drop(root);
            drop(proc_target);
            wait_init(reporter, pid)
        }
    }
}

/// A new terminal of the sandbox's own devpts: the master goes to the parent with a
/// `PtyReady` record; the slave (returned) becomes the command's stdio and controlling
/// terminal, so `tty` names `/dev/pts/0` inside the container.
fn open_terminal(root: &OwnedFd, reporter: &mut Reporter) -> Result<OwnedFd, Failure> {
    let pts = fsops::open_in_root(root, "dev/pts", true).stage("open /dev/pts")?;
    let master = rustix::fs::openat(
        &pts,
        "ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .stage("open a terminal")?;
    rustix::pty::unlockpt(&master).stage("open a terminal")?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .stage("open a terminal")?;
    reporter
        .send_with_fd(&Status::PtyReady, master.as_fd())
        .stage("pass the terminal")?;
    Ok(slave)
}

/// `rbuild exec`: join the namespaces and root of the running container whose init is
/// `init_pid`, then fork the command (a member of the container's PID namespace, confined
/// like the container's own command: seccomp, capabilities, its cgroups — joined by the
/// parent) and report how it ends.
fn enter(reporter: &mut Reporter, spec: &SandboxSpec, init_pid: i32) -> Result<i32, Failure> {
    use rustix::thread::{LinkNameSpaceType as Ns, move_into_link_name_space};
    let open = |what: &str| {
        rustix::fs::open(
            format!("/proc/{init_pid}/{what}").as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .stage("open the container's namespaces")
    };
    let root = open("root")?;
    let namespaces = [
        ("ns/ipc", Ns::InterProcessCommunication),
        ("ns/uts", Ns::HostNameAndNISDomainName),
        ("ns/net", Ns::Network),
        ("ns/cgroup", Ns::ControlGroup),
        ("ns/pid", Ns::ProcessID),
        ("ns/mnt", Ns::Mount),
    ];
    let fds = namespaces
        .iter()
        .map(|(name, _)| open(name))
        .collect::<Result<Vec<_>, _>>()?;
    for (fd, (name, kind)) in fds.iter().zip(namespaces) {
        // One the helper is in already (the host's network) needs no joining — and rootless,
        // could not be joined: it belongs to the host's user namespace.
        if same_namespace(fd, name) {
            continue;
        }
        move_into_link_name_space(fd.as_fd(), Some(kind)).stage("enter the container")?;
    }
    rustix::process::fchdir(&root).stage("enter the container's root")?;
    rustix::process::chroot(".").stage("enter the container's root")?;
    rustix::process::chdir("/").stage("enter the container's root")?;
    let root = fsops::open_dir(Path::new("/")).stage("open the container's root")?;
    let tty = if spec.tty {
        Some(open_terminal(&root, reporter)?)
    } else {
        None
    };
    drop(root);
    let filters = match spec.security {
        Security::Sandbox => Some(seccomp::compile().stage("seccomp profile")?),
        Security::Insecure => None,
    };
    match sys::fork().stage("fork command")? {
        None => init::command(reporter, spec, filters.as_ref(), tty),
        Some(pid) => {
            drop(tty);
            let pid = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
            loop {
                match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
                    Ok(Some((_, status))) => {
                        if let Some(code) = status.exit_status() {
                            reporter.send(&Status::Exited(code));
                        } else if let Some(sig) = status.terminating_signal() {
                            reporter.send(&Status::Signaled(sig));
                        }
                        return Ok(0);
                    }
                    Ok(None) | Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e).stage("wait for the command"),
                }
            }
        }
    }
}

/// Whether the namespace `fd` (of kind `name`, `ns/net`) is this process's own.
fn same_namespace(fd: &OwnedFd, name: &str) -> bool {
    let (Ok(theirs), Ok(ours)) = (
        rustix::fs::fstat(fd),
        rustix::fs::stat(format!("/proc/self/{name}").as_str()),
    ) else {
        return false;
    };
    (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
}

/// Wait for the init process; report if it died without saying how the command ended.
fn wait_init(reporter: &mut Reporter, pid: i32) -> Result<i32, Failure> {
    let pid = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(sig) = status.terminating_signal() {
                    reporter.fail(Failure {
                        stage: "init",
                        message: format!("the sandbox init was killed by signal {sig}"),
                    });
                }
                return Ok(0);
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).stage("wait for init"),
        }
    }
}

fn mount_rootfs(spec: &SandboxSpec) -> Result<OwnedFd, Failure> {
    match &spec.rootfs {
        RootfsSpec::Overlay {
            lowers,
            upper,
            work,
            target,
            links,
            legacy,
        } => {
            // A hidden switch that makes this mount fail as a kernel without overlay (or
            // without it in a user namespace) would: it keeps the automatic fallback to the
            // copy backend tested on hosts where overlay works.
            if std::env::var_os("RBUILD_REFUSE_OVERLAY").is_some_and(|v| v == "1") {
                return Err(Failure {
                    stage: "mount overlay rootfs",
                    message: "refused (RBUILD_REFUSE_OVERLAY=1)".into(),
                });
            }
            match fsops::overlay(lowers, Some((upper, work)), target, links, *legacy)
                .stage("mount overlay rootfs")?
            {
                Overlay::Detached(fd) => {
                    let t = fsops::open_dir(target).stage("open rootfs mount point")?;
                    fsops::attach(&fd, &t).stage("attach overlay rootfs")?;
                }
                Overlay::Mounted => {}
            }
            fsops::open_dir(target).stage("open rootfs")
        }
        RootfsSpec::Enter { .. } => Err(Failure {
            stage: "mount rootfs",
            message: "a container being entered has its root already".into(),
        }),
        RootfsSpec::Dir { path } => {
            let src = fsops::open_dir(path).stage("open rootfs")?;
            let tree = fsops::clone_tree(&src, false).stage("bind rootfs")?;
            fsops::attach(&tree, &src).stage("bind rootfs")?;
            fsops::open_dir(path).stage("open rootfs")
        }
    }
}

/// The standard device nodes: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A minimal `/dev`: a tmpfs with the standard character devices (each bind-mounted from a
/// private tmpfs, so `/dev` itself can be `nodev`), a private devpts, shm and mqueue.
fn mount_dev(root: &OwnedFd, scratch: &Path, shm_size: Option<u64>) -> Result<(), Failure> {
    let target = fsops::open_in_root(root, "dev", true).stage("find /dev")?;
    let tmpfs = fsops::new_mount(
        "tmpfs",
        &[("mode", "755".into()), ("size", "65536k".into())],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount /dev")?;
    fsops::attach(&tmpfs, &target).stage("mount /dev")?;
    let dev = fsops::open_in_root(root, "dev", true).stage("open /dev")?;
    // The nodes themselves live in a small tmpfs of the helper's (never visible in the step);
    // rootless, where no device node can be made, they are the host's.
    let nodes = if rbuild_store::userns::rootless() {
        None
    } else {
        std::fs::create_dir_all(scratch).stage("scratch")?;
        let nodes_fs = fsops::new_mount(
            "tmpfs",
            &[("mode", "755".into()), ("size", "64k".into())],
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )
        .stage("create /dev nodes")?;
        fsops::attach(&nodes_fs, fsops::open_dir(scratch).stage("scratch")?)
            .stage("create /dev nodes")?;
        Some(
            rustix::fs::open(scratch, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .stage("create /dev nodes")?,
        )
    };
    for (name, major, minor) in DEVICES {
        let node = match &nodes {
            Some(nodes) => {
                rustix::fs::mknodat(
                    nodes,
                    name,
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o666),
                    rustix::fs::makedev(major, minor),
                )
                .stage("create /dev nodes")?;
                rustix::fs::openat(
                    nodes,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .stage("create /dev nodes")?
            }
            None => host_node(
                name,
                FileType::CharacterDevice,
                rustix::fs::makedev(major, minor),
            )
            .stage("bind the host's /dev nodes")?,
        };
        bind_node(root, &dev, name, &node, 0o666).stage("bind /dev nodes")?;
    }
    for dir in ["pts", "shm", "mqueue"] {
        rustix::fs::mkdirat(&dev, dir, Mode::from_raw_mode(0o755)).stage("create /dev dirs")?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        rustix::fs::symlinkat(target, &dev, link).stage("create /dev links")?;
    }
    // The tty group (5), unless only one id is mapped (`--userns=single`).
    let mut pts_options = vec![("ptmxmode", "0666".into()), ("mode", "0620".into())];
    if !rbuild_store::userns::single_id() {
        pts_options.push(("gid", "5".into()));
    }
    let pts = fsops::new_mount(
        "devpts",
        &pts_options,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount /dev/pts")?;
    let pts_target = fsops::open_in_root(root, "dev/pts", true).stage("find /dev/pts")?;
    fsops::attach(&pts, &pts_target).stage("mount /dev/pts")?;
    let shm = fsops::new_mount(
        "tmpfs",
        &[
            ("mode", "1777".into()),
            (
                "size",
                shm_size.map_or_else(|| "65536k".into(), |b| b.to_string()),
            ),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount /dev/shm")?;
    let shm_target = fsops::open_in_root(root, "dev/shm", true).stage("find /dev/shm")?;
    fsops::attach(&shm, &shm_target).stage("mount /dev/shm")?;
    // POSIX message queues of the sandbox's own IPC namespace, as Docker mounts them.
    let mqueue = fsops::new_mount(
        "mqueue",
        &[],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount /dev/mqueue")?;
    let mqueue_target = fsops::open_in_root(root, "dev/mqueue", true).stage("find /dev/mqueue")?;
    fsops::attach(&mqueue, &mqueue_target).stage("mount /dev/mqueue")
}

/// Host devices an insecure step gets in its `/dev`, as BuildKit gives them: kmsg, fuse, cuse,
/// kvm, tun and the loop devices (those the host has).
fn host_devices(root: &OwnedFd) -> Result<(), Failure> {
    let mut names: Vec<String> = ["kmsg", "cuse", "fuse", "kvm", "net/tun", "loop-control"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix("loop")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                names.push(name);
            }
        }
    }
    let dev = fsops::open_in_root(root, "dev", true).stage("open /dev")?;
    for name in names {
        let Ok(st) = rustix::fs::stat(format!("/dev/{name}").as_str()) else {
            continue;
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if !matches!(kind, FileType::CharacterDevice | FileType::BlockDevice) {
            continue;
        }
        if let Some((dir, _)) = name.split_once('/') {
            match rustix::fs::mkdirat(&dev, dir, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e).stage("create host devices"),
            }
        }
        if rbuild_store::userns::rootless() {
            let node = host_node(&name, kind, st.st_rdev).stage("bind host devices")?;
            bind_node(root, &dev, &name, &node, st.st_mode & 0o7777).stage("bind host devices")?;
            continue;
        }
        rustix::fs::mknodat(
            &dev,
            name.as_str(),
            kind,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            st.st_rdev,
        )
        .stage("create host devices")?;
    }
    Ok(())
}

/// The host's `/dev/NAME`, opened `O_PATH`, checked to be the device `kind` `rdev`.
fn host_node(name: &str, kind: FileType, rdev: u64) -> std::io::Result<OwnedFd> {
    let node = rustix::fs::open(
        format!("/dev/{name}").as_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&node)?;
    if FileType::from_raw_mode(st.st_mode) != kind || st.st_rdev != rdev {
        return Err(std::io::Error::other(format!(
            "the host's `/dev/{name}` is not the expected device"
        )));
    }
    Ok(node)
}

/// Bind-mount the device node `node` at `/dev/NAME` of the rootfs (an empty file made first).
fn bind_node(
    root: &OwnedFd,
    dev: &OwnedFd,
    name: &str,
    node: &OwnedFd,
    mode: u32,
) -> std::io::Result<()> {
    let bind = fsops::clone_tree(node, false)?;
    rustix::fs::openat(
        dev,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
    )?;
    let at = fsops::open_in_root(root, &format!("dev/{name}"), true)?;
    fsops::attach(&bind, &at)
}

/// Make every mount of the sandbox `nodev`, then give device access back to the standard
/// nodes' bind mounts and `/dev/pts`.
fn nodev_everywhere(root: &OwnedFd) -> Result<(), Failure> {
    sys::mount_change_attrs(root, sys::MOUNT_ATTR_NODEV, 0, true).stage("make mounts nodev")?;
    let names = DEVICES.iter().map(|(name, _, _)| *name).chain(["pts"]);
    for name in names {
        let fd =
            fsops::open_in_root(root, &format!("dev/{name}"), true).stage("open /dev nodes")?;
        sys::mount_change_attrs(&fd, 0, sys::MOUNT_ATTR_NODEV, false).stage("allow /dev nodes")?;
    }
    Ok(())
}

/// A read-only `/sys` (a fresh sysfs; a read-only bind of the host's as a fallback); writable
/// for `--security=insecure`.
fn mount_sys(root: &OwnedFd, writable: bool) -> Result<(), Failure> {
    let target = fsops::open_in_root(root, "sys", true).stage("find /sys")?;
    let ro = if writable {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let attrs = ro
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let sysfs = match fsops::new_mount("sysfs", &[], attrs) {
        Ok(fd) => fd,
        Err(_) => {
            let host = fsops::open_host(Path::new("/sys")).stage("open host /sys")?;
            fsops::clone_tree(&host, !writable).stage("bind /sys")?
        }
    };
    fsops::attach(&sysfs, &target).stage("mount /sys")
}

/// Mount one of the step's mounts (or the hosts/resolv.conf files) at its target.
fn mount_one(root: &OwnedFd, m: &MountSpec, scratch: &Path) -> Result<(), Failure> {
    let target = fsops::ensure_in_root(root, &m.target, m.dir, m.nofollow).stage("mount target")?;
    let tree = match &m.source {
        MountSource::Bind {
            root: src_root,
            subpath,
        } => {
            let src_root = fsops::open_host(src_root).stage("open bind source")?;
            let src =
                fsops::open_in_root(&src_root, subpath, false).stage("resolve bind source")?;
            fsops::clone_tree(&src, m.readonly).stage("bind source")?
        }
        MountSource::Layers {
            lowers,
            subpath,
            upper_work,
        } => {
            std::fs::create_dir_all(scratch).stage("scratch")?;
            let links = scratch.with_extension("links");
            let uw = upper_work.as_ref().map(|(u, w)| (u.as_path(), w.as_path()));
            if let Overlay::Detached(fd) =
                fsops::overlay(lowers, uw, scratch, &links, false).stage("mount layers")?
            {
                let t = fsops::open_dir(scratch).stage("scratch")?;
                fsops::attach(&fd, &t).stage("mount layers")?;
            }
            let layers_root = fsops::open_dir(scratch).stage("scratch")?;
            let src =
                fsops::open_in_root(&layers_root, subpath, false).stage("resolve bind source")?;
            fsops::clone_tree(&src, m.readonly).stage("bind source")?
        }
        MountSource::Discard {
            root: src_root,
            subpath,
            upper,
            work,
        } => {
            let src_root = fsops::open_host(src_root).stage("open bind source")?;
            let src =
                fsops::open_in_root(&src_root, subpath, false).stage("resolve bind source")?;
            let lower = std::path::PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
            let target_path =
                std::path::PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
            let links = scratch.with_extension("links");
            // A single lower with an upper is a valid overlay.
            match fsops::overlay(&[lower], Some((upper, work)), &target_path, &links, false)
                .stage("mount writable bind")?
            {
                Overlay::Detached(fd) => fd,
                Overlay::Mounted => return Ok(()),
            }
        }
        MountSource::Tmpfs { size, mode } => {
            let mut opts = vec![("mode", format!("{mode:o}"))];
            if let Some(size) = size {
                opts.push(("size", size.to_string()));
            }
            let ro = if m.readonly {
                MountAttrFlags::MOUNT_ATTR_RDONLY
            } else {
                MountAttrFlags::empty()
            };
            fsops::new_mount(
                "tmpfs",
                &opts,
                ro | MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
            )
            .stage("mount tmpfs")?
        }
        MountSource::Secret {
            data,
            mode,
            uid,
            gid,
        } => secret_file(scratch, data, *mode, *uid, *gid)?,
    };
    fsops::attach(&tree, &target).stage("attach mount")
}

/// Put a secret in a private, memory-backed file and return a read-only clone of it.
fn secret_file(
    scratch: &Path,
    data: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<OwnedFd, Failure> {
    std::fs::create_dir_all(scratch).stage("scratch")?;
    let tmpfs = fsops::new_mount(
        "tmpfs",
        &[
            ("mode", "700".into()),
            ("size", (data.len() + 65536).to_string()),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .stage("mount secret tmpfs")?;
    let dir = fsops::open_dir(scratch).stage("scratch")?;
    fsops::attach(&tmpfs, &dir).stage("mount secret tmpfs")?;
    let dir = rustix::fs::open(scratch, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .stage("open secret tmpfs")?;
    let fd = rustix::fs::openat(
        &dir,
        "secret",
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .stage("write secret")?;
    let mut file = File::from(fd);
    file.write_all(data).stage("write secret")?;
    rustix::fs::fchown(
        file.as_fd(),
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .stage("chown secret")?;
    rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode)).stage("chmod secret")?;
    drop(file);
    let secret = rustix::fs::openat(
        &dir,
        "secret",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .stage("open secret")?;
    fsops::clone_tree(&secret, true).stage("bind secret")
}

//! The few raw system calls the sandbox needs that rustix does not wrap safely: fork, taking
//! ownership of inherited descriptors, `mount_setattr`, bringing loopback up, capability
//! bounding, signal dispositions, `_exit` and the pre-exec descriptor placement of the helper.
//! Every `unsafe` block says why it is sound. This is the only module of rbuild allowed to
//! use `unsafe` (the workspace denies it everywhere else).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Fork the calling process. Returns `None` in the child and the child's pid in the parent.
///
/// Only called from the sandbox helper, which is a freshly exec'd, single-threaded process.
pub fn fork() -> io::Result<Option<i32>> {
    // SAFETY: the helper process is single-threaded (it is a fresh exec of our binary that
    // never starts threads), so the child gets a consistent copy of every lock and allocator
    // state; no other thread can hold a lock at the moment of the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Take ownership of a descriptor this process inherited at a well-known number.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // Check it is open before claiming it.
    // SAFETY: F_GETFD only reads descriptor flags; an invalid fd yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and nothing else in this process owns it:
    // the parent placed it at this number for us and this is the only place that claims it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Make `cmd`'s child place `a` at fd 3 and `b` at fd 4 (without close-on-exec) before it
/// execs. `a` and `b` must stay open in the parent until `cmd` is spawned.
pub fn pass_fds_3_and_4(cmd: &mut std::process::Command, a: RawFd, b: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, dup2 and
    // close (async-signal-safe, no allocation) on descriptors the caller keeps open in the
    // parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || place_fds(a, b));
    }
}

/// In a forked child before exec: place `a` at fd 3 and `b` at fd 4 (without close-on-exec).
/// Only async-signal-safe calls are made.
fn place_fds(a: RawFd, b: RawFd) -> io::Result<()> {
    // SAFETY: fcntl/dup2/close are async-signal-safe and operate on descriptors the parent
    // created for this child; moving both above 10 first avoids clobbering one with the other.
    unsafe {
        let ta = libc::fcntl(a, libc::F_DUPFD, 10);
        let tb = libc::fcntl(b, libc::F_DUPFD, 10);
        if ta < 0 || tb < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(ta, 3) < 0 || libc::dup2(tb, 4) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::close(ta);
        libc::close(tb);
    }
    Ok(())
}

/// Close every descriptor from `first` up (descriptors inherited by accident, e.g. a
/// jobserver's, must not reach the step).
pub fn close_from(first: u32) {
    // SAFETY: close_range only closes descriptors; nothing in this freshly exec'd helper holds
    // an owned handle to fds at or above `first` (fd 3 and 4 are below it when called).
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32);
    }
}

/// Mark every descriptor from `first` up close-on-exec.
pub fn cloexec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: with CLOSE_RANGE_CLOEXEC the call only sets a flag on open descriptors.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC);
    }
}

/// `unshare(2)` the given namespaces.
pub fn unshare(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    // SAFETY: unshare_unsafe is unsafe only because CLONE_FILES/CLONE_FS/CLONE_VM style flags
    // can invalidate fds or memory assumptions of other threads; the helper is single-threaded
    // and we only pass namespace flags.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// `struct mount_attr` for `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;

/// Set attributes on the mount tree at `fd` (a detached or attached mount, `AT_EMPTY_PATH`).
pub fn mount_setattr(fd: &OwnedFd, set: u64, recursive: bool) -> io::Result<()> {
    mount_change_attrs(fd, set, 0, recursive)
}

/// Set the attributes `set` and clear `clear` on the mount (tree) at `fd`.
pub fn mount_change_attrs(fd: &OwnedFd, set: u64, clear: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a properly laid out
    // `struct mount_attr` that lives across the call, and its size is passed alongside.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bring the `lo` interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() has no memory-safety preconditions.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` was just returned by socket() and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is a plain C struct for which all-zero bytes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into `req`, a valid ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the flags member of the union was just filled in by SIOCGIFFLAGS.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drop every capability from the bounding set except those in `keep` (bit numbers).
pub fn bound_capabilities(keep: &[u32]) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Reset every signal to its default disposition and unblock all signals, so the command
/// starts like a process spawned by a shell (the Rust runtime ignores SIGPIPE, for one).
pub fn reset_signals() {
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL is always valid; invalid numbers just fail with EINVAL.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an all-empty sigset is valid and sigprocmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Terminate the process immediately without running destructors or atexit handlers (the
/// right way out of a forked child).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Load `program` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program and attach it to the cgroup v2
/// directory `dir` (with `BPF_F_ALLOW_MULTI`, so programs of parent groups still apply). The
/// attachment keeps the program alive until the group is removed.
pub fn attach_device_program(
    dir: &std::path::Path,
    program: &[super::devices::Insn],
) -> io::Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    /// The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    /// The fields of `union bpf_attr` for BPF_PROG_ATTACH.
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let license = c"MIT";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"rbuild_devcg");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `load` is a properly laid out prefix of `union bpf_attr` (the kernel accepts a
    // shorter size and zero-fills the rest); the instruction array, license string and log
    // buffer it points to outlive the call, and the log's size is passed alongside.
    let prog = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if prog < 0 {
        let err = io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let verifier = String::from_utf8_lossy(&log[..end]);
        return Err(io::Error::new(
            err.kind(),
            format!("loading the device filter: {err} {}", verifier.trim()),
        ));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as RawFd) };
    let group = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let attach = ProgAttach {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attach` is a properly laid out prefix of `union bpf_attr` naming two open
    // descriptors; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("attaching the device filter to {}: {err}", dir.display()),
        ));
    }
    Ok(())
}

/// Install a classic-BPF seccomp filter on the calling thread without setting `no_new_privs`
/// (the caller must hold `CAP_SYS_ADMIN`), as Docker does unless asked for no-new-privileges.
pub fn install_seccomp(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::other("the seccomp filter is too long"))?,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, a valid array of classic BPF instructions whose
    // layout matches `struct sock_filter`, and both outlive the call; the kernel copies them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

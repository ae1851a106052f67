//! The few raw system calls the sandbox needs that rustix does not wrap safely: fork, taking
//! ownership of inherited descriptors, `mount_setattr`, bringing loopback up, capability
//! bounding, signal dispositions and `_exit`. Every `unsafe` block says why it is sound.

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

/// In a forked child before exec: place `a` at fd 3 and `b` at fd 4 (without close-on-exec).
/// Only async-signal-safe calls are made.
pub fn place_fds(a: RawFd, b: RawFd) -> io::Result<()> {
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

/// Set attributes on the mount tree at `fd` (a detached or attached mount, `AT_EMPTY_PATH`).
pub fn mount_setattr(fd: &OwnedFd, set: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
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

//! Mount building blocks for the helper, all descriptor-based: in-root resolution with
//! `openat2(RESOLVE_IN_ROOT)`, new filesystems through `fsopen`/`fsmount`, bind clones through
//! `open_tree`, attachment with `move_mount` onto an already-resolved target descriptor — so a
//! path inside the container is resolved once and never re-walked as a string.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
};

use super::sys;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Open `path` (absolute or relative, inside the tree at `root`) as an `O_PATH` descriptor,
/// resolving symlinks as if `root` were `/`.
pub fn open_in_root(root: impl AsFd, path: &str, nofollow: bool) -> io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    // The kernel answers EAGAIN when a rename elsewhere raced the in-root walk (a step
    // sharing a cache may rename all the time): walk again, a bounded number of times.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root.as_fd(), rel, flags, Mode::empty(), RESOLVE) {
            Err(rustix::io::Errno::AGAIN) if tries < 64 => tries += 1,
            other => return Ok(other?),
        }
    }
}

/// Like [`open_in_root`], creating missing components: directories (0755) and, when `dir` is
/// false, an empty file (0644) for the last one.
pub fn ensure_in_root(
    root: &OwnedFd,
    path: &str,
    dir: bool,
    nofollow: bool,
) -> io::Result<OwnedFd> {
    match open_in_root(root, path, nofollow) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for i in 1..=comps.len() {
        let prefix = comps[..i].join("/");
        match open_in_root(root, &prefix, nofollow && i == comps.len()) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let parent = open_in_root(root, &comps[..i - 1].join("/"), false)?;
        let last = i == comps.len();
        if last && !dir {
            let _ = rustix::fs::openat(
                &parent,
                comps[i - 1],
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )?;
        } else {
            match rustix::fs::mkdirat(&parent, comps[i - 1], Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    open_in_root(root, path, nofollow)
}

/// A new, detached filesystem mount: `fsopen(fstype)`, string options, `fsmount(attrs)`.
pub fn new_mount(
    fstype: &str,
    options: &[(&str, String)],
    attrs: MountAttrFlags,
) -> io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (k, v) in options {
        fsconfig_set_string(&fs, *k, v.as_str()).map_err(|e| with_log(&fs, e, k))?;
    }
    fsconfig_create(&fs).map_err(|e| with_log(&fs, e, "create"))?;
    Ok(fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?)
}

/// Append the kernel's filesystem-context log (the detailed reason) to an error.
fn with_log(fs: &OwnedFd, e: rustix::io::Errno, what: &str) -> io::Error {
    let mut log = String::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        log.push_str(line.trim_end());
        log.push_str("; ");
    }
    let base = io::Error::from(e);
    if log.is_empty() {
        io::Error::new(base.kind(), format!("{what}: {base}"))
    } else {
        io::Error::new(
            base.kind(),
            format!("{what}: {base} ({})", log.trim_end_matches("; ")),
        )
    }
}

/// Attach a detached mount onto an `O_PATH` target descriptor.
pub fn attach(mnt: impl AsFd, target: impl AsFd) -> io::Result<()> {
    Ok(move_mount(
        mnt,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// A detached recursive copy of the mount tree at `source` (a descriptor), read-only if asked.
pub fn clone_tree(source: impl AsFd, readonly: bool) -> io::Result<OwnedFd> {
    let fd = open_tree(
        source,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    if readonly {
        sys::mount_setattr(&fd, sys::MOUNT_ATTR_RDONLY, true)?;
    }
    Ok(fd)
}

/// Open a host path as an `O_PATH` descriptor.
pub fn open_host(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The result of building an overlay mount.
pub enum Overlay {
    /// A detached mount (new mount API) to attach somewhere.
    Detached(OwnedFd),
    /// Already mounted at the requested path (classic mount(2) fallback).
    Mounted,
}

/// Mount options that keep an upper directory self-describing for the overlay differ. Rootless
/// (in a user namespace) `userxattr` is added: overlayfs then keeps its markers in
/// `user.overlay.*` (`rbuild_store::userns::opaque_xattr`), and refuses `redirect_dir=off`
/// (which follows redirects) for `nofollow` — neither creates one.
fn overlay_options() -> [(&'static str, &'static str); 3] {
    let redirect = if rbuild_store::userns::rootless() {
        "nofollow"
    } else {
        "off"
    };
    [
        ("redirect_dir", redirect),
        ("metacopy", "off"),
        ("index", "off"),
    ]
}

/// Build an overlay of `lowers` (topmost first) with an optional upper/work pair. Uses
/// `lowerdir+` (Linux ≥ 6.8, no length limit); when that is unavailable or `legacy` is set,
/// mounts at `target` with mount(2), naming the lowers through short symlinks in `links` so
/// 100+ layers fit in one page of options.
pub fn overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    links: &Path,
    legacy: bool,
) -> io::Result<Overlay> {
    if !legacy {
        match overlay_new_api(lowers, upper_work) {
            Ok(fd) => return Ok(Overlay::Detached(fd)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !lowerdir_plus_supported() => {}
            Err(e) => return Err(e),
        }
    }
    overlay_legacy(lowers, upper_work, target, links)?;
    Ok(Overlay::Mounted)
}

fn overlay_new_api(lowers: &[PathBuf], upper_work: Option<(&Path, &Path)>) -> io::Result<OwnedFd> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())
            .map_err(|e| with_log(&fs, e, "lowerdir+"))?;
    }
    if let Some((upper, work)) = upper_work {
        fsconfig_set_string(&fs, "upperdir", upper).map_err(|e| with_log(&fs, e, "upperdir"))?;
        fsconfig_set_string(&fs, "workdir", work).map_err(|e| with_log(&fs, e, "workdir"))?;
    }
    for (k, v) in overlay_options() {
        fsconfig_set_string(&fs, k, v).map_err(|e| with_log(&fs, e, k))?;
    }
    if rbuild_store::userns::rootless() {
        rustix::mount::fsconfig_set_flag(&fs, "userxattr")
            .map_err(|e| with_log(&fs, e, "userxattr"))?;
    }
    fsconfig_create(&fs).map_err(|e| with_log(&fs, e, "overlay"))?;
    Ok(fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?)
}

/// Probe whether the overlay driver accepts `lowerdir+` (it returns EINVAL for unknown keys).
fn lowerdir_plus_supported() -> bool {
    let Ok(fs) = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else {
        return false;
    };
    fsconfig_set_string(&fs, "lowerdir+", "/").is_ok()
}

fn overlay_legacy(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    links: &Path,
) -> io::Result<()> {
    std::fs::create_dir_all(links)?;
    let mut names = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        let name = format!("{i:x}");
        let link = links.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(l, &link)?;
        names.push(name);
    }
    let mut data = format!("lowerdir={}", names.join(":"));
    if let Some((upper, work)) = upper_work {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    for (k, v) in overlay_options() {
        data.push_str(&format!(",{k}={v}"));
    }
    if rbuild_store::userns::rootless() {
        data.push_str(",userxattr");
    }
    // Relative lower names are resolved against the current directory at mount time.
    let previous = std::env::current_dir()?;
    std::env::set_current_dir(links)?;
    let cdata = std::ffi::CString::new(data.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let result = rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        cdata.as_c_str(),
    );
    std::env::set_current_dir(previous)?;
    result.map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("overlay mount ({} bytes of options): {e}", data.len()),
        )
    })
}

/// Open the current directory-like `path` with the sandbox's standard flags (used for targets
/// on the host side, e.g. the rootfs mount point).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

//! File metadata as the differs and the layer writer see it: `lstat` facts, extended attributes
//! (minus overlayfs' own control attributes), and the overlay whiteout/opaque markers.

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// The `lstat` facts of one entry. `mode` holds the permission and special bits only (0o7777).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub ctime: i64,
    pub ctime_nsec: u32,
}

impl Meta {
    /// `lstat` a path.
    pub fn lstat(path: &Path) -> io::Result<Meta> {
        Ok(Meta::from_std(&std::fs::symlink_metadata(path)?))
    }

    /// Convert std's metadata (which must come from `symlink_metadata`).
    pub fn from_std(md: &Metadata) -> Meta {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::File
        };
        Meta {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if kind == Kind::File { md.size() } else { 0 },
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec() as u32,
            rdev: md.rdev(),
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec() as u32,
        }
    }

    /// An overlayfs whiteout: a character device with device number 0:0.
    pub fn is_whiteout(&self) -> bool {
        self.kind == Kind::CharDev && self.rdev == 0
    }

    /// The attributes a layer records and a differ compares (type, mode, owner, mtime, size,
    /// device number), ignoring identity (`dev`/`ino`/`nlink`) and ctime.
    pub fn same_attributes(&self, other: &Meta) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.size == other.size
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && (!matches!(self.kind, Kind::CharDev | Kind::BlockDev) || self.rdev == other.rdev)
    }

    /// Device major number (Linux encoding).
    pub fn dev_major(&self) -> u32 {
        (((self.rdev >> 32) & 0xffff_f000) | ((self.rdev >> 8) & 0x0000_0fff)) as u32
    }

    /// Device minor number (Linux encoding).
    pub fn dev_minor(&self) -> u32 {
        (((self.rdev >> 12) & 0xffff_ff00) | (self.rdev & 0x0000_00ff)) as u32
    }
}

/// One extended attribute: name and raw value.
pub type Xattr = (OsString, Vec<u8>);

/// Overlayfs control attributes (never emitted, never compared) and host-specific labels.
pub fn is_ignored_xattr(name: &OsStr) -> bool {
    let n = name.as_bytes();
    n.starts_with(b"trusted.overlay.")
        || n.starts_with(b"user.overlay.")
        || n == b"security.selinux"
}

/// The extended attributes of a path (not following a final symlink), sorted by name, without
/// overlayfs control attributes.
pub fn xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names {
        if is_ignored_xattr(&name) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a directory carries the overlayfs opaque marker (`trusted.overlay.opaque=y`, or the
/// `user.overlay.opaque` form used with `userxattr`).
pub fn is_opaque_dir(path: &Path) -> io::Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        match xattr::get(path, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Whether two regular files have byte-identical contents (stops at the first difference).
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Set owner, mode, extended attributes and timestamps of `path` to those of `meta`/`xattrs`
/// (used when cloning directories and files for stubs and the copy-based rootfs).
pub fn apply_meta(path: &Path, meta: &Meta, xattrs: &[Xattr]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
    if meta.kind != Kind::Symlink {
        // chown clears setuid/setgid bits, so the mode goes after it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))?;
    }
    for (name, value) in xattrs {
        xattr::set(path, name, value)?;
    }
    let mtime = filetime::FileTime::from_unix_time(meta.mtime, meta.mtime_nsec);
    filetime::set_symlink_file_times(path, mtime, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_decode_like_the_kernel() {
        let meta = Meta {
            kind: Kind::CharDev,
            mode: 0o666,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            rdev: libc::makedev(136, 3),
            dev: 0,
            ino: 0,
            nlink: 1,
            ctime: 0,
            ctime_nsec: 0,
        };
        assert_eq!((meta.dev_major(), meta.dev_minor()), (136, 3));
        assert!(!meta.is_whiteout());
    }

    #[test]
    fn overlay_control_xattrs_are_ignored() {
        assert!(is_ignored_xattr(OsStr::new("trusted.overlay.origin")));
        assert!(is_ignored_xattr(OsStr::new("user.overlay.opaque")));
        assert!(!is_ignored_xattr(OsStr::new("security.capability")));
        assert!(!is_ignored_xattr(OsStr::new("user.comment")));
    }
}

//! Helpers for the executor's integration tests: a busybox rootfs built from the host's
//! busybox-static, the rbuild binary as the sandbox helper, and small tree utilities.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// The rbuild binary, which doubles as the sandbox helper.
pub fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rbuild"))
}

/// Applets linked into test rootfses.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "mkdir", "rm", "rmdir", "chmod", "chown", "ln", "touch", "mv", "cp",
    "sleep", "true", "false", "hostname", "id", "pwd", "ip", "mount", "stat", "kill", "ps", "grep",
    "wc", "head", "tail", "env", "mknod", "printf", "test", "[", "readlink", "dd", "seq", "sed",
    "cut", "sort", "find", "xargs", "tr", "mkfifo", "nc", "umount", "df", "id", "whoami", "md5sum",
];

/// Build a busybox rootfs (a base layer) in `dir`: /bin/busybox plus applet symlinks, /etc
/// with passwd and group, /tmp (1777), empty /proc /sys /dev /root, all mtimes fixed at 1000.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "the executor tests need busybox-static (apt-get install busybox-static)"
    );
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            symlink("/bin/busybox", link).unwrap();
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    set_times(dir, 1000);
}

/// Set every mtime under `dir` (not following symlinks) to `secs`.
pub fn set_times(dir: &Path, secs: i64) {
    let mut paths: Vec<PathBuf> = walk(dir);
    paths.reverse();
    for p in paths {
        set_symlink_times(&p, secs);
    }
}

fn set_symlink_times(p: &Path, secs: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Every path under `dir` (including it), parents first.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

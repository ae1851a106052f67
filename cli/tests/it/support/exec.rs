//! Helpers for the executor's integration tests: a busybox rootfs built from the host's
//! busybox-static, the rbuild binary as the sandbox helper, and small tree utilities.

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

use rbuild_executor::sandbox::Stream;
use rbuild_executor::{Backend, Executor, ExecutorOptions, RunOutcome, RunStep, Stdio3};

/// A store root with a busybox base layer and an executor over it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub base: PathBuf,
    pub exec: Executor,
}

impl Fixture {
    pub fn new(backend: Backend) -> Fixture {
        Self::with_options(ExecutorOptions {
            helper: Some(helper()),
            backend,
            legacy_overlay: false,
        })
    }

    pub fn with_options(options: ExecutorOptions) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("rbuild-exec-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // The store first, as the CLI does: a store root holding other things is refused.
        rbuild_store::Store::open(&root).unwrap();
        let exec = Executor::new(&root, options).unwrap();
        let base = exec
            .snapshots()
            .ensure(&format!("sha256:{}", "b".repeat(64)), |dir| {
                busybox_rootfs(dir);
                Ok(())
            })
            .unwrap();
        Fixture {
            tmp,
            root,
            base,
            exec,
        }
    }

    /// The busybox base alone as a lower chain.
    pub fn lowers(&self) -> Vec<PathBuf> {
        vec![self.base.clone()]
    }

    /// A new layer directory (in the store's snapshot dir) filled by `fill`.
    pub fn layer(&self, n: u32, fill: impl FnOnce(&Path)) -> PathBuf {
        let id = format!("sha256:{:064x}", n);
        self.exec
            .snapshots()
            .ensure(&id, |dir| {
                fill(dir);
                Ok(())
            })
            .unwrap()
    }
}

/// The output of a step: its outcome (or error) and the captured lines.
pub struct Ran {
    pub result: rbuild_executor::Result<RunOutcome>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Ran {
    pub fn outcome(&self) -> &RunOutcome {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("the step failed to run: {e:?}\nstderr: {:?}", self.stderr),
        }
    }

    pub fn out(&self) -> String {
        self.stdout.join("\n")
    }
}

/// Run `sh -c script` over `lowers` with `tweak` applied to the step.
pub fn run_sh(
    exec: &Executor,
    lowers: &[PathBuf],
    script: &str,
    tweak: impl FnOnce(&mut RunStep<'_>),
) -> Ran {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut cb = |s: Stream, l: &[u8]| {
        let l = String::from_utf8_lossy(l).into_owned();
        match s {
            Stream::Stdout => stdout.push(l),
            Stream::Stderr => stderr.push(l),
        }
    };
    let mut step = RunStep::new(
        lowers.to_vec(),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
        Stdio3::Capture(&mut cb),
    );
    step.env = vec!["PATH=/bin:/usr/bin".into()];
    tweak(&mut step);
    let result = exec.run(step);
    Ran {
        result,
        stdout,
        stderr,
    }
}

/// A summary of a tree for exact comparisons: path → kind, mode, owner, size, content digest,
/// link target, xattrs, (optionally) mtime seconds, and the first path of its hard-link group.
pub fn tree(
    dir: &Path,
    with_mtime: bool,
    with_links: bool,
) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut inodes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for p in walk(dir) {
        let rel = p.strip_prefix(dir).unwrap();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rel = format!("/{}", rel.display());
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mut s = format!("{:o} {}:{}", md.mode(), md.uid(), md.gid());
        if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            s.push_str(&format!(
                " {} {}",
                data.len(),
                &hex::encode(Sha256::digest(&data))[..12]
            ));
            if with_links && md.nlink() > 1 {
                let first = inodes.entry(md.ino()).or_insert_with(|| rel.clone());
                s.push_str(&format!(" link:{first}"));
            }
        } else if ft.is_symlink() {
            s.push_str(&format!(
                " -> {}",
                std::fs::read_link(&p).unwrap().display()
            ));
        }
        if !ft.is_symlink() {
            let mut names: Vec<_> = xattr::list(&p).unwrap().collect();
            names.sort();
            for n in names {
                let n_s = n.to_string_lossy();
                if n_s.starts_with("trusted.overlay.") || n_s.starts_with("security.selinux") {
                    continue;
                }
                let v = xattr::get(&p, &n).unwrap().unwrap_or_default();
                s.push_str(&format!(" {n_s}={}", String::from_utf8_lossy(&v)));
            }
        }
        if with_mtime && !ft.is_dir() {
            s.push_str(&format!(" t{}", md.mtime()));
        }
        out.insert(rel, s);
    }
    out
}

/// Apply a layer tar onto `dir` the way an OCI image is applied (test-only, trusted input):
/// opaque markers first, then whiteouts and entries in order; directory times last.
pub fn apply_layer(layer: &[u8], dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut archive = tar::Archive::new(layer);
    let mut entries = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        // Re-collect the components to drop a directory's trailing slash.
        let path: PathBuf = e.path().unwrap().components().collect();
        let link = e.link_name().unwrap().map(|l| l.into_owned());
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        entries.push((path, link, xattrs, h, data));
    }
    let remove = |p: &Path| {
        if let Ok(md) = std::fs::symlink_metadata(p) {
            if md.is_dir() {
                std::fs::remove_dir_all(p).unwrap();
            } else {
                std::fs::remove_file(p).unwrap();
            }
        }
    };
    for (path, ..) in &entries {
        if path.file_name().is_some_and(|n| n == ".wh..wh..opq") {
            let d = dir.join(path.parent().unwrap());
            for c in std::fs::read_dir(&d).unwrap() {
                remove(&c.unwrap().path());
            }
        }
    }
    let mut dirs = Vec::new();
    for (path, link, xattrs, h, data) in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == ".wh..wh..opq" {
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            remove(&dir.join(path.parent().unwrap()).join(victim));
            continue;
        }
        let target = dir.join(path);
        let kind = h.entry_type();
        if kind.is_dir() {
            if !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                remove(&target);
                std::fs::create_dir(&target).unwrap();
            }
        } else {
            remove(&target);
            if kind.is_symlink() {
                std::os::unix::fs::symlink(link.as_ref().unwrap(), &target).unwrap();
            } else if kind.is_hard_link() {
                std::fs::hard_link(dir.join(link.as_ref().unwrap()), &target).unwrap();
                continue;
            } else if kind.is_file() {
                std::fs::write(&target, data).unwrap();
            } else {
                panic!("unexpected entry type {kind:?} for {}", path.display());
            }
        }
        let uid = h.uid().unwrap() as u32;
        let gid = h.gid().unwrap() as u32;
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).unwrap();
        if !kind.is_symlink() {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(h.mode().unwrap()))
                .unwrap();
        }
        for (k, v) in xattrs {
            xattr::set(&target, k, v).unwrap();
        }
        let mtime = h.mtime().unwrap() as i64;
        if kind.is_dir() {
            dirs.push((target, mtime));
        } else {
            set_symlink_times(&target, mtime);
        }
    }
    for (d, t) in dirs.iter().rev() {
        set_symlink_times(d, *t);
    }
}

/// Assert two tree summaries are equal, printing only the differing paths.
pub fn assert_same_tree(
    got: &std::collections::BTreeMap<String, String>,
    want: &std::collections::BTreeMap<String, String>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => diffs.push(format!("{k}: got `{g}`, want `{v}`")),
            None => diffs.push(format!("{k}: missing, want `{v}`")),
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            diffs.push(format!("{k}: unexpected `{g}`"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

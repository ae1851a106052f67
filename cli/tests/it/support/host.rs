//! `HostGuard`: the invariants every hostile-input test asserts (catalogue §4.0 I1–I3).
//!
//! A guard places canary files and directories where an escape would land — beside the store
//! root, inside it (the parent of its step, scratch and snapshot directories), in the parent of
//! the build context (the work directory the test hands to rbuild), at
//! `/tmp/rbuild-canary-<unique>`, and at any absolute path a case names — and records each one's
//! content (a directory's listing), mode, owner, mtime and inode. `check()` then asserts:
//! every canary is unchanged and nothing new appeared beside them; no mount under the store or
//! the work directory is left in `/proc/self/mountinfo`; no process started through the guard
//! (they carry a marker in their environment) is still alive; the store's `tmp/`, `ingest/`
//! and `exec/` (step directories) are empty; and `rbuild store fsck --full` passes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use super::{TestEnv, rbuild, text};

/// What is recorded of a canary path (symlinks are not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ino: u64,
    /// File bytes, a directory's sorted names, or a symlink's target.
    content: Vec<u8>,
}

fn observe(path: &Path) -> Option<Seen> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ft = meta.file_type();
    let (kind, content) = if ft.is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        ("symlink", target.into_os_string().into_encoded_bytes())
    } else if ft.is_dir() {
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_encoded_bytes())
            .collect();
        names.sort();
        ("dir", names.join(&b'/'))
    } else if ft.is_file() {
        ("file", std::fs::read(path).unwrap())
    } else {
        ("other", Vec::new())
    };
    Some(Seen {
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ino: meta.ino(),
        content,
    })
}

/// A unique suffix: the process id and a per-process counter.
fn unique() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Canaries around one test's store and work directory; see the module doc.
pub struct HostGuard {
    root: PathBuf,
    /// The work directory: the parent of [`HostGuard::context`], holding canaries of its own.
    work: tempfile::TempDir,
    /// `/tmp/rbuild-canary-<unique>`.
    tmp_canary: PathBuf,
    /// Every recorded path and what it looked like.
    seen: BTreeMap<PathBuf, Option<Seen>>,
    /// Paths created by the guard (removed on drop), in creation order.
    created: Vec<PathBuf>,
    marker: String,
}

impl HostGuard {
    /// Place the standard canaries around `env`'s store and a fresh work directory.
    pub fn new(env: &TestEnv) -> HostGuard {
        let root = env.root().to_path_buf();
        let work = tempfile::Builder::new()
            .prefix("rbuild-work-")
            .tempdir()
            .unwrap();
        let id = unique();
        let tmp_canary = PathBuf::from(format!("/tmp/rbuild-canary-{id}"));
        let root_canary = PathBuf::from(format!("{}-canary", root.display()));
        let mut g = HostGuard {
            root,
            work,
            tmp_canary: tmp_canary.clone(),
            seen: BTreeMap::new(),
            created: Vec::new(),
            marker: format!("rbuild-hostguard-{id}"),
        };
        std::fs::create_dir_all(g.work.path().join("context")).unwrap();
        for dir in [&tmp_canary, &root_canary] {
            g.place_dir(dir);
        }
        // Inside the store root, the parent of its work directories (`exec/`, `tmp/`,
        // `snapshots/`): where a `..` out of a step or snapshot directory would land.
        let in_root = g.root.join("hostguard-canary");
        g.place_dir(&in_root);
        let work_dir = g.work.path().to_path_buf();
        g.place_file(&work_dir.join("canary"), b"work canary\n", 0o600);
        g.place_dir(&work_dir.join("canary-dir"));
        g.record(&work_dir);
        g
    }

    /// A canary directory (mode 0750) holding a file `file` (0400) and a directory `sub`.
    fn place_dir(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        self.created.push(dir.to_path_buf());
        std::fs::write(dir.join("file"), b"canary file\n").unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        set_mode(&dir.join("file"), 0o400);
        set_mode(dir, 0o750);
        self.record(dir);
        self.record(&dir.join("file"));
        self.record(&dir.join("sub"));
    }

    fn place_file(&mut self, path: &Path, content: &[u8], mode: u32) {
        std::fs::write(path, content).unwrap();
        set_mode(path, mode);
        self.record(path);
    }

    /// Record `path` as it is now (also a path that does not exist: it must not appear).
    pub fn record(&mut self, path: &Path) {
        self.seen.insert(path.to_path_buf(), observe(path));
    }

    /// Create a canary file at an absolute path a case names (removed on drop) and record it,
    /// and its parent directory.
    pub fn add_file(&mut self, path: &Path, content: &[u8], mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if !self.created.iter().any(|c| path.starts_with(c)) {
            self.created.push(path.to_path_buf());
        }
        self.place_file(path, content, mode);
        self.record(path.parent().unwrap());
    }

    /// The build context directory (empty; inside the guarded work directory).
    pub fn context(&self) -> PathBuf {
        self.work.path().join("context")
    }

    /// The guarded work directory (the context's parent).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// `/tmp/rbuild-canary-<unique>`: a directory holding `file` and `sub/`.
    pub fn tmp_canary(&self) -> &Path {
        &self.tmp_canary
    }

    /// The canary file in the work directory (the context's parent): `../canary` from it.
    pub fn work_canary(&self) -> PathBuf {
        self.work.path().join("canary")
    }

    /// The value of `RBUILD_HOSTGUARD` that marks this guard's processes.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// `rbuild --root <store>` carrying the guard's process marker in its environment.
    pub fn rbuild(&self) -> Command {
        let mut cmd = rbuild();
        cmd.arg("--root")
            .arg(&self.root)
            .env("RBUILD_HOSTGUARD", &self.marker);
        cmd
    }

    /// Assert the invariants (see the module doc). Call after the case's last command.
    pub fn check(&self) {
        let mut changed = Vec::new();
        for (path, before) in &self.seen {
            let now = observe(path);
            if &now != before {
                changed.push(format!(
                    "{}:\n  before {before:?}\n  after  {now:?}",
                    path.display()
                ));
            }
        }
        assert!(
            changed.is_empty(),
            "HOST CHANGED — a path outside every root was touched:\n{}",
            changed.join("\n")
        );

        let leaked: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| {
                l.split(' ').nth(4).is_some_and(|m| {
                    Path::new(m).starts_with(&self.root) || Path::new(m).starts_with(self.work())
                })
            })
            .map(str::to_string)
            .collect();
        assert!(
            leaked.is_empty(),
            "mounts left behind:\n{}",
            leaked.join("\n")
        );

        let alive = processes_with(&format!("RBUILD_HOSTGUARD={}", self.marker));
        assert!(alive.is_empty(), "processes left behind: {alive:?}");

        for dir in ["tmp", "ingest", "exec"] {
            let left: Vec<_> = std::fs::read_dir(self.root.join(dir))
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in $ROOT/{dir}: {left:?}");
        }

        let out = rbuild()
            .arg("--root")
            .arg(&self.root)
            .args(["store", "fsck", "--full"])
            .output()
            .unwrap();
        let (o, e) = text(&out);
        assert!(out.status.success(), "fsck failed:\n{o}\n{e}");
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        for path in self.created.iter().rev() {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Processes (pid, command) whose environment holds the entry `var` (`NAME=value`), this
/// test process excluded.
pub fn processes_with(var: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == var.as_bytes()) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

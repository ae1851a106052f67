//! A memory cgroup per sandbox: applies `--memory` limits (`build -m`, `run -m`; memory + swap)
//! and tells an OOM kill apart from any other SIGKILL (its `oom_kill` counter), so a failure
//! reads "out of memory: the OOM killer killed a process" instead of a bare SIGKILL. cgroup v1
//! (a child of our own memory cgroup) and v2 (under `<cgroup2 mount>/rbuild`, when the hierarchy
//! delegates `memory`; we enable the controller) are handled. When neither can be created the
//! sandbox runs without one (no OOM detection), and a requested limit is an error.
//!
//! [`new_group`] makes every per-sandbox group of rbuild (memory, devices, pids): a fresh name
//! per sandbox, groups left by killed rbuild processes swept, a stale name never an error.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One sandbox's memory cgroup; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl MemoryCgroup {
    /// Create a cgroup for one sandbox, limited to `limit` bytes (memory + swap) when given.
    /// `Ok(None)`: no writable memory controller here (not root, or none mounted).
    pub fn create(limit: Option<u64>) -> io::Result<Option<MemoryCgroup>> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let Some((parent, version)) = locate(&cgroups, &mounts) else {
            return Ok(None);
        };
        if version == Version::V2 && enable_memory(&parent).is_err() {
            return Ok(None);
        }
        let Some(dir) = new_group(&parent, "rbuild")? else {
            return Ok(None);
        };
        let cgroup = MemoryCgroup { dir, version };
        if let Some(bytes) = limit {
            cgroup.limit(bytes)?;
        }
        Ok(Some(cgroup))
    }

    fn limit(&self, bytes: u64) -> io::Result<()> {
        match self.version {
            Version::V1 => {
                std::fs::write(self.dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                // Without swap accounting the file is absent and swap stays unlimited.
                let memsw = self.dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    std::fs::write(memsw, bytes.to_string())?;
                }
            }
            Version::V2 => {
                std::fs::write(self.dir.join("memory.max"), bytes.to_string())?;
                let swap = self.dir.join("memory.swap.max");
                if swap.exists() {
                    std::fs::write(swap, "0")?;
                }
            }
        }
        Ok(())
    }

    /// The group's directory when it is in the v2 hierarchy (where the device filter goes).
    pub fn v2_dir(&self) -> Option<&Path> {
        (self.version == Version::V2).then_some(self.dir.as_path())
    }

    /// Move process `pid` (and so its future children) into the cgroup.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        std::fs::read_to_string(self.dir.join(file))
            .map(|text| oom_kills(&text) > 0)
            .unwrap_or(false)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The last processes may still be exiting: retry briefly while the cgroup is busy.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return,
            }
        }
        tracing::warn!(dir = %self.dir.display(), "cannot remove the sandbox's cgroup");
    }
}

/// The `oom_kill N` counter of `memory.oom_control` (v1) or `memory.events` (v2).
fn oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Move process `pid` into the cgroups of process `target` (a running container's init, for
/// `rbuild exec`): its v1 `memory`, `pids` and `devices` groups and its v2 group, so the
/// container's limits and device filter hold for what runs in it. Returns whether a device
/// cgroup was joined.
pub fn join_cgroups_of(target: i32, pid: i32) -> io::Result<bool> {
    let cgroups = std::fs::read_to_string(format!("/proc/{target}/cgroup"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut devices = false;
    for controller in ["memory", "pids", "devices"] {
        if let Some(dir) = v1_group(&cgroups, &mounts, controller) {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
            devices |= controller == "devices";
        }
    }
    let v2_path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| *p != "/");
    if let (Some(point), Some(path)) = (v2_mount(&mounts), v2_path) {
        std::fs::write(
            point
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs"),
            pid.to_string(),
        )?;
        devices = true;
    }
    Ok(devices)
}

/// The cgroup hierarchy sandboxes get their memory group in, as `rbuild info` reports it: the
/// cgroup version (1 or 2) and the directory groups are made under. `None` when this host
/// offers no memory controller (sandboxes then run without one, and `--memory` is refused).
pub fn memory_hierarchy() -> Option<(u8, PathBuf)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    locate(&cgroups, &mounts).map(|(dir, version)| {
        let n = match version {
            Version::V1 => 1,
            Version::V2 => 2,
        };
        (n, dir)
    })
}

/// Where to create sandbox cgroups: the v1 memory hierarchy at our own cgroup, else the v2
/// hierarchy's `rbuild` group.
fn locate(proc_cgroup: &str, mountinfo: &str) -> Option<(PathBuf, Version)> {
    if let Some(group) = v1_group(proc_cgroup, mountinfo, "memory") {
        return Some((group, Version::V1));
    }
    let point = v2_mount(mountinfo)?;
    let controllers = std::fs::read_to_string(point.join("cgroup.controllers")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "memory")
        .then(|| (point.join("rbuild"), Version::V2))
}

/// This process's own group in the cgroup v1 hierarchy of `controller` (`memory`, `devices`,
/// `pids`), from `/proc/self/cgroup` and `/proc/self/mountinfo`: the group's path inside the
/// hierarchy, under the mount point of that hierarchy (a mount may show a subtree of it).
pub(super) fn v1_group(proc_cgroup: &str, mountinfo: &str, controller: &str) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })?;
    mounts(mountinfo).find_map(|m| {
        if m.fstype != "cgroup" || !m.superopts.split(',').any(|o| o == controller) {
            return None;
        }
        let rel = Path::new(&path).strip_prefix(m.root).ok()?;
        Some(Path::new(m.point).join(rel))
    })
}

/// The first cgroup v2 mount point, from `/proc/self/mountinfo`.
pub(super) fn v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mounts(mountinfo)
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.point))
}

/// The fields of a mountinfo line rbuild reads.
struct MountLine<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    superopts: &'a str,
}

/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS`
fn mounts(mountinfo: &str) -> impl Iterator<Item = MountLine<'_>> {
    mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = left.split(' ');
        let (root, point) = (fields.nth(3)?, fields.next()?);
        let mut rfields = right.split(' ');
        let fstype = rfields.next()?;
        let superopts = rfields.nth(1).unwrap_or("");
        Some(MountLine {
            root,
            point,
            fstype,
            superopts,
        })
    })
}

/// A fresh, empty cgroup directory `<prefix>-<pid>-<serial>` under `parent` for one sandbox.
/// The pid and serial make it unique among live rbuild processes; a directory already there
/// under that name was left by a killed rbuild whose pid was reused (its drop never ran): it is
/// removed when empty, or the next serial is taken. The first call for a parent and prefix
/// also removes the empty groups of rbuild processes that no longer run. `Ok(None)`: the
/// hierarchy is not writable here.
pub(super) fn new_group(parent: &Path, prefix: &str) -> io::Result<Option<PathBuf>> {
    sweep_dead(parent, prefix);
    let mut last = None;
    for _ in 0..16 {
        let dir = parent.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(Some(dir)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // This process has not handed out that serial yet: the group is stale.
                if std::fs::remove_dir(&dir).is_ok() && std::fs::create_dir(&dir).is_ok() {
                    return Ok(Some(dir));
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Remove, once per process for each parent and prefix, the empty `<prefix>-<pid>-<n>` groups
/// of processes that no longer run. Non-empty groups and those of live processes stay.
fn sweep_dead(parent: &Path, prefix: &str) {
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let key = parent.join(prefix);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if !swept.get_or_insert_with(HashSet::new).insert(key) {
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let lead = format!("{prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&lead))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, serial)| serial.parse::<u64>().is_ok())
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// v2: create `dir` (a group of ours, holding no processes) and enable `memory` for its
/// children; the hierarchy's root must delegate the controller to it.
fn enable_memory(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let control = dir.join("cgroup.subtree_control");
    if std::fs::read_to_string(&control)?
        .split_whitespace()
        .any(|c| c == "memory")
    {
        return Ok(());
    }
    std::fs::write(control, "+memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names left by killed processes never fail a sandbox: a stale name of ours is reused or
    /// skipped, dead processes' empty groups are swept, other groups stay.
    #[test]
    fn new_groups_survive_stale_names_and_sweep_the_dead() {
        let parent = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let next = SERIAL.load(Ordering::Relaxed);
        for serial in next..next + 40 {
            std::fs::create_dir(parent.path().join(format!("t-{me}-{serial}"))).unwrap();
        }
        let dead = parent.path().join("t-999999999-0");
        std::fs::create_dir(&dead).unwrap();
        let busy = parent.path().join("t-999999998-0");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("cgroup.procs"), "1").unwrap();
        let other = parent.path().join("t-x-0");
        std::fs::create_dir(&other).unwrap();
        let dir = new_group(parent.path(), "t").unwrap().unwrap();
        assert!(dir.is_dir());
        assert!(!dead.exists(), "a dead process's empty group is swept");
        assert!(busy.exists() && other.exists());
    }

    #[test]
    fn counters_are_read_from_both_formats() {
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn v1_cgroups_are_created_under_our_own_memory_group() {
        let cgroup = "4:memory:/jobs/42\n1:cpu:/\n0::/\n";
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                         31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate(cgroup, mountinfo),
            Some((PathBuf::from("/sys/fs/cgroup/memory/jobs/42"), Version::V1))
        );
        // Inside a container the hierarchy is mounted at our own group.
        let mountinfo = "30 25 0:26 /jobs/42 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            locate(cgroup, mountinfo),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), Version::V1))
        );
    }
}

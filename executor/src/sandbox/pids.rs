//! The pids cgroup of a sandbox: a cap on how many tasks (processes and threads) a step may
//! have at once, so a fork bomb stops at the cap instead of at the host's `pid_max`. cgroup v1:
//! a child of our own group in the `pids` hierarchy; cgroup v2: `pids.max` on the sandbox's
//! v2 group (its memory cgroup; a process is in one group per hierarchy), with `pids` enabled
//! for it in its parent. Whether a fork failed at the cap is read from `pids.events` (`max N`).

use std::io;
use std::path::{Path, PathBuf};

/// Tasks (processes + threads) a step may have unless told otherwise. Docker has no default
/// and podman's is 2048; this is high enough for parallel make, npm, JVM and rustc builds on
/// large machines, and a runaway step still leaves most of a default `pid_max` (32768) free.
pub const DEFAULT_PIDS_LIMIT: u64 = 8192;

/// Fewer tasks than this cannot even start a step (helper, init, the command, a shell's child).
pub const MIN_PIDS_LIMIT: u64 = 8;
/// The largest `pids.max` the kernel takes (`PID_MAX_LIMIT` on 64-bit).
pub const MAX_PIDS_LIMIT: u64 = 4 << 20;

/// How many tasks a sandbox may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PidsLimit {
    /// [`DEFAULT_PIDS_LIMIT`], when the host has a pids controller (else no limit, with a
    /// warning).
    #[default]
    Default,
    /// Chosen by the user: a sandbox that cannot get it is refused.
    Max(u64),
    /// No limit (`--pids-limit -1`).
    Unlimited,
}

impl PidsLimit {
    /// The cap to apply, if any.
    pub fn value(self) -> Option<u64> {
        match self {
            PidsLimit::Default => Some(DEFAULT_PIDS_LIMIT),
            PidsLimit::Max(n) => Some(n),
            PidsLimit::Unlimited => None,
        }
    }
}

/// One sandbox's pids cap; its own group (v1) is removed on drop.
#[derive(Debug)]
pub struct PidsCgroup {
    dir: PathBuf,
    /// Our own group (v1), which the process must be moved into; else the memory cgroup's.
    owned: bool,
    limit: u64,
}

impl PidsCgroup {
    /// Cap a sandbox at `limit` tasks. `v2_group` is the sandbox's v2 group when one exists
    /// (its memory cgroup). `Ok(None)`: no pids controller is available here.
    pub fn create(limit: u64, v2_group: Option<&Path>) -> io::Result<Option<PidsCgroup>> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        if let Some(parent) = locate_v1(&cgroups, &mounts) {
            let Some(dir) = super::cgroup::new_group(&parent, "rbuild-pids")? else {
                return Ok(None);
            };
            let cgroup = PidsCgroup {
                dir,
                owned: true,
                limit,
            };
            std::fs::write(cgroup.dir.join("pids.max"), limit.to_string())?;
            return Ok(Some(cgroup));
        }
        let Some(dir) = v2_group else {
            return Ok(None);
        };
        let Some(parent) = dir.parent() else {
            return Ok(None);
        };
        let offered = std::fs::read_to_string(parent.join("cgroup.controllers"))?;
        if !offered.split_whitespace().any(|c| c == "pids") {
            return Ok(None);
        }
        let control = parent.join("cgroup.subtree_control");
        if !std::fs::read_to_string(&control)?
            .split_whitespace()
            .any(|c| c == "pids")
        {
            std::fs::write(&control, "+pids")?;
        }
        std::fs::write(dir.join("pids.max"), limit.to_string())?;
        Ok(Some(PidsCgroup {
            dir: dir.to_path_buf(),
            owned: false,
            limit,
        }))
    }

    /// The cap in tasks.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the group is another's (the v2 memory cgroup), which moves the process.
    pub fn shared(&self) -> bool {
        !self.owned
    }

    /// Move process `pid` (and so its future children) into the group.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        if self.owned {
            std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
        } else {
            Ok(())
        }
    }

    /// Whether a fork or clone in the group failed because of the cap.
    pub fn hit_limit(&self) -> bool {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .map(|text| max_events(&text) > 0)
            .unwrap_or(false)
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // The last processes may still be exiting: retry briefly while the cgroup is busy.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return,
            }
        }
        tracing::warn!(dir = %self.dir.display(), "cannot remove the sandbox's pids cgroup");
    }
}

/// The `max N` counter of `pids.events` (v1 and v2 alike).
fn max_events(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Our group in the v1 `pids` hierarchy, if one is mounted.
fn locate_v1(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    super::cgroup::v1_group(proc_cgroup, mountinfo, "pids")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_max_counter_is_read() {
        assert_eq!(max_events("max 3\n"), 3);
        assert_eq!(max_events("max 0\n"), 0);
        assert_eq!(max_events(""), 0);
    }

    #[test]
    fn v1_groups_are_created_under_our_own_pids_group() {
        let cgroup = "8:pids:/jobs/7\n4:memory:/x\n0::/\n";
        let mountinfo = "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate_v1(cgroup, mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/pids/jobs/7"))
        );
        // Inside a container the hierarchy is mounted at our own group.
        let mountinfo = "39 31 0:36 /jobs/7 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(
            locate_v1(cgroup, mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        // A pure v2 host has no v1 group.
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(locate_v1("0::/\n", mountinfo), None);
    }

    #[test]
    fn defaults_and_unlimited() {
        assert_eq!(PidsLimit::Default.value(), Some(DEFAULT_PIDS_LIMIT));
        assert_eq!(PidsLimit::Max(64).value(), Some(64));
        assert_eq!(PidsLimit::Unlimited.value(), None);
    }

    /// A real group caps a shell's children and counts the failed fork.
    #[test]
    fn a_real_group_caps_forks_and_counts_the_failure() {
        if !crate::sandbox::is_root() {
            panic!("this test needs root (cgroups)");
        }
        let cgroup = PidsCgroup::create(4, None)
            .expect("create")
            .expect("no v1 pids hierarchy on this machine");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("read x; for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        cgroup.add(child.id() as i32).unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let _ = child.wait();
        assert!(cgroup.hit_limit(), "the failed forks were not counted");
        let dir = cgroup.dir.clone();
        // The sleeps that did start may still run: wait them out so the group can go.
        std::thread::sleep(std::time::Duration::from_millis(3200));
        drop(cgroup);
        assert!(!dir.exists(), "the group was not removed");
    }
}

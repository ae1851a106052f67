//! Rootless rbuild: an ordinary user's rbuild enters, before it does any work, a user namespace
//! in which it is root, plus a mount namespace of its own, and then runs every command as it
//! would as root — store writes, unpacking layers with their owners, overlay mounts, sandboxes.
//! Files on disk end up owned by the user's subordinate ids, and the layers written from them
//! carry the container's ids, as a root build's do.
//!
//! The map (Buildah's and rootless containerd's): container uid 0 is the caller, container uids
//! 1.. are the caller's ranges in `/etc/subuid` (gids likewise from `/etc/subgid`), written by
//! the setuid `newuidmap`/`newgidmap` of Debian's `uidmap`. Those must run outside the new
//! namespace, so [`enter`] first starts a mapper — this binary re-executed with [`IDMAP_ARG`],
//! still outside — then unshares the user namespace, and lets the mapper write the maps of its
//! parent. Everything is checked first: a missing tool or range is a [`RootlessError`] naming
//! the user, the file and the fix, before any work.
//!
//! `rbuild exec` [`join`]s the user namespace of the container it enters instead (a detached
//! container outlives the rbuild that started it, and its namespaces belong to that one's).
//!
//! `--userns=single` ([`Mode::Single`]) maps the caller alone, needing neither; layers are then
//! unpacked with every owner 0 and its default store is `rbuild-single` (never shared with
//! a mapped one), and any other owner (`COPY --chown`, `chown` in a RUN) fails.
//!
//! [`enter`] must be called while the process is single-threaded (the kernel refuses
//! `unshare(CLONE_NEWUSER)` otherwise): the cli calls it after parsing its arguments and before
//! running the command. Whether a process is rootless is read back from its uid map
//! ([`rbuild_store::userns::rootless`]), so the sandbox helper and every library agree without
//! being told.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use miette::Diagnostic;
use thiserror::Error;

use super::sys;

/// The hidden first argument that turns the rbuild binary into the id mapper.
pub const IDMAP_ARG: &str = "__rbuild-idmap";

/// Why rbuild cannot run rootless here.
#[derive(Debug, Error, Diagnostic)]
pub enum RootlessError {
    /// newuidmap or newgidmap is missing.
    #[error(
        "rbuild runs as `{user}` (uid {uid}), not root, and rootless builds need `{tool}`, which \
         is not installed"
    )]
    #[diagnostic(
        code(rbuild::rootless::uidmap),
        help(
            "install Debian's `uidmap` package as root (`apt-get install uidmap`): its setuid \
             newuidmap and newgidmap map your subordinate ids into rbuild's user namespace"
        )
    )]
    NoTool {
        user: String,
        uid: u32,
        tool: &'static str,
    },

    /// The caller has no subordinate range.
    #[error("`{file}` has no range for `{user}` (uid {uid}), which rootless builds need")]
    #[diagnostic(
        code(rbuild::rootless::subid),
        help(
            "as root, give `{user}` 65536 subordinate ids: `usermod --add-subuids \
             100000-165535 --add-subgids 100000-165535 {user}` (pick a range no other user \
             has); or run with `--userns=single` (only your own id: every file owned by root \
             inside, no other owner possible)"
        )
    )]
    NoRange {
        file: &'static str,
        user: String,
        uid: u32,
    },

    /// The kernel or the mapper refused.
    #[error("cannot enter rbuild's user namespace: {message}")]
    #[diagnostic(code(rbuild::rootless::userns), help("{help}"))]
    Enter { message: String, help: String },
}

/// One line of a uid or gid map: `count` ids from `inside` map to `outside`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// What entering needs: the maps and the tools that write them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub user: String,
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl Plan {
    /// How many container ids the uid map gives (0 and the subordinate ids).
    pub fn uids(&self) -> u64 {
        self.uid_map.iter().map(|r| u64::from(r.count)).sum()
    }
}

/// Which ids rbuild's user namespace maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// 0 is the caller, 1.. its subordinate ranges (newuidmap/newgidmap).
    #[default]
    Subordinate,
    /// Only the caller, as 0 (`--userns=single`): no tools or ranges needed; every file is
    /// owned by 0 inside, and setting any other owner fails.
    Single,
}

/// Enter rbuild's user namespace (and a mount namespace of its own) unless the process already
/// runs as root — of the host, or of a namespace. Call while single-threaded.
pub fn enter(mode: Mode) -> Result<(), RootlessError> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    match mode {
        Mode::Subordinate => enter_with(&plan()?),
        Mode::Single => enter_single(),
    }
}

/// `--userns=single`: map the caller alone, written by this process itself (allowed for its
/// own ids once `setgroups` is denied).
fn enter_single() -> Result<(), RootlessError> {
    let fail = |what: &str, e: std::io::Error| RootlessError::Enter {
        message: format!("{what}: {e}"),
        help: "unprivileged user namespaces must be allowed (`sysctl user.max_user_namespaces` \
               above 0), or run rbuild as root"
            .into(),
    };
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    sys::unshare(rustix::thread::UnshareFlags::NEWUSER)
        .map_err(|e| fail("the kernel refused a new user namespace", e))?;
    std::fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
        .and_then(|()| std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")))
        .map_err(|e| fail("cannot map your id", e))?;
    own_mount_namespace().map_err(|e| fail("cannot create a mount namespace", e))
}

/// Check everything entering needs, reading `/etc/passwd`, `/etc/subuid`, `/etc/subgid` and
/// `PATH`; nothing is changed.
pub fn plan() -> Result<Plan, RootlessError> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let user = user_name(uid);
    let tool = |name: &'static str| {
        find_tool(name).ok_or_else(|| RootlessError::NoTool {
            user: user.clone(),
            uid,
            tool: name,
        })
    };
    let newuidmap = tool("newuidmap")?;
    let newgidmap = tool("newgidmap")?;
    let ranges = |file: &'static str, own: u32| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let subordinate = subordinate_ranges(&text, &user, uid);
        if subordinate.is_empty() {
            return Err(RootlessError::NoRange {
                file,
                user: user.clone(),
                uid,
            });
        }
        Ok(id_map(own, &subordinate))
    };
    let uid_map = ranges("/etc/subuid", uid)?;
    let gid_map = ranges("/etc/subgid", gid)?;
    Ok(Plan {
        user,
        uid_map,
        gid_map,
        newuidmap,
        newgidmap,
    })
}

/// The caller's name from `/etc/passwd` (what newuidmap looks up), else `$USER`, else the uid.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| uid.to_string())
}

/// `name` in the directories of `PATH` (and the usual system directories).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `(start, count)` ranges of `/etc/subuid`-format `text` for `user` (by name or uid), in
/// file order.
pub fn subordinate_ranges(text: &str, user: &str, uid: u32) -> Vec<(u32, u32)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != user && who != uid {
                return None;
            }
            let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// Container id 0 is `own`; the subordinate ranges follow from 1, in order.
pub fn id_map(own: u32, subordinate: &[(u32, u32)]) -> Vec<IdRange> {
    let mut map = vec![IdRange {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next = 1u32;
    for &(start, count) in subordinate {
        let count = count.min(u32::MAX - next);
        if count == 0 {
            break;
        }
        map.push(IdRange {
            inside: next,
            outside: start,
            count,
        });
        next += count;
    }
    map
}

fn map_args(map: &[IdRange]) -> String {
    map.iter()
        .map(|r| format!("{} {} {}", r.inside, r.outside, r.count))
        .collect::<Vec<_>>()
        .join(" ")
}

fn enter_with(plan: &Plan) -> Result<(), RootlessError> {
    let fail = |message: String, help: &str| RootlessError::Enter {
        message,
        help: help.to_string(),
    };
    // The mapper starts outside the namespace and waits for a byte on stdin.
    let mut mapper = Command::new("/proc/self/exe")
        .arg(IDMAP_ARG)
        .arg(&plan.newuidmap)
        .arg(map_args(&plan.uid_map))
        .arg(&plan.newgidmap)
        .arg(map_args(&plan.gid_map))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(
                format!("cannot start the id mapper: {e}"),
                "see the message",
            )
        })?;
    let unshared = sys::unshare(rustix::thread::UnshareFlags::NEWUSER);
    let mut stdin = mapper.stdin.take().expect("piped");
    if let Err(e) = unshared {
        drop(stdin);
        let _ = mapper.wait();
        return Err(fail(
            format!("the kernel refused a new user namespace: {e}"),
            "unprivileged user namespaces must be allowed: `sysctl user.max_user_namespaces` \
             above 0 (and, on Ubuntu, `kernel.apparmor_restrict_unprivileged_userns=0`), or \
             run rbuild as root",
        ));
    }
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    let mut errors = String::new();
    if let Some(mut e) = mapper.stderr.take() {
        let _ = e.read_to_string(&mut errors);
    }
    let status = mapper.wait().map_err(|e| {
        fail(
            format!("cannot wait for the id mapper: {e}"),
            "see the message",
        )
    })?;
    if !status.success() || !rustix::process::getuid().is_root() {
        return Err(fail(
            format!(
                "newuidmap/newgidmap could not map {} ids for `{}`: {}",
                plan.uids(),
                plan.user,
                errors.trim()
            ),
            "check that the ranges in /etc/subuid and /etc/subgid belong to you and that \
             newuidmap and newgidmap are setuid root (`ls -l /usr/bin/newuidmap`)",
        ));
    }
    // The host's supplementary groups are not mapped; drop them.
    let _ = rustix::thread::set_thread_groups(&[]);
    own_mount_namespace().map_err(|e| {
        fail(
            format!("cannot create a mount namespace: {e}"),
            "see the message",
        )
    })
}

/// Join the user namespace of process `pid` (a detached container's init, for `rbuild exec`)
/// instead of entering a new one, unless this process runs as root already: the container's
/// other namespaces belong to it, and only a member may enter them. Allowed because the
/// namespace's owner is this user. Call while single-threaded.
pub fn join(pid: i32) -> Result<(), RootlessError> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let fail = |e: std::io::Error| RootlessError::Enter {
        message: format!("cannot join the user namespace of the container's process {pid}: {e}"),
        help: "the container must have been started by you, rootless (`rbuild run -d`)".into(),
    };
    let ns = rustix::fs::open(
        format!("/proc/{pid}/ns/user").as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::User),
    )
    .map_err(|e| fail(e.into()))?;
    if !rustix::process::getuid().is_root() {
        return Err(fail(std::io::Error::other(
            "your uid is not root in that namespace",
        )));
    }
    let _ = rustix::thread::set_thread_groups(&[]);
    Ok(())
}

/// A private mount namespace: rbuild mounts step overlays in its own process too.
fn own_mount_namespace() -> std::io::Result<()> {
    sys::unshare(rustix::thread::UnshareFlags::NEWNS)?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )?;
    Ok(())
}

/// The mapper (`rbuild __rbuild-idmap NEWUIDMAP UIDMAP NEWGIDMAP GIDMAP`): wait until the
/// parent has unshared its user namespace (a line on stdin), then map it. Never returns.
pub fn idmap_main() -> ! {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [newuidmap, uid_map, newgidmap, gid_map] = args.as_slice() else {
        eprintln!("usage: rbuild {IDMAP_ARG} NEWUIDMAP UIDMAP NEWGIDMAP GIDMAP");
        sys::exit_now(2);
    };
    let mut go = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut go), Ok(1)) {
        // The parent could not unshare (and said why) or died.
        sys::exit_now(1);
    }
    let Some(parent) = rustix::process::getppid() else {
        sys::exit_now(1);
    };
    let pid = parent.as_raw_nonzero().get().to_string();
    for (tool, map) in [(newuidmap, uid_map), (newgidmap, gid_map)] {
        match Command::new(tool)
            .arg(&pid)
            .args(map.split_whitespace())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("`{tool} {pid} {map}` failed ({s})");
                sys::exit_now(1);
            }
            Err(e) => {
                eprintln!("cannot run `{tool}`: {e}");
                sys::exit_now(1);
            }
        }
    }
    sys::exit_now(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid_in_file_order() {
        let text = "root:1:2\nci:100000:65536\n# x\n1001:300000:10\nci:200000:0\nbad\n";
        assert_eq!(
            subordinate_ranges(text, "ci", 1001),
            vec![(100000, 65536), (300000, 10)]
        );
        assert!(subordinate_ranges(text, "other", 1002).is_empty());
    }

    #[test]
    fn container_root_is_the_caller_and_ranges_follow() {
        let map = id_map(1000, &[(100000, 65536), (300000, 10)]);
        assert_eq!(
            map,
            vec![
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                },
                IdRange {
                    inside: 65537,
                    outside: 300000,
                    count: 10
                },
            ]
        );
        assert_eq!(map_args(&map[..2]), "0 1000 1 1 100000 65536");
    }
}

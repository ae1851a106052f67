//! Resolve a Docker `USER` value (`name`, `uid`, `name:group`, `uid:gid`, ...) against the
//! image's `/etc/passwd` and `/etc/group`, read as plain data (no NSS, nothing from the image is
//! executed), the way runc/BuildKit do: numeric ids work without the files; an explicit group
//! means no supplementary groups; otherwise the groups listing the user are added.

use crate::error::{ExecError, Result};

/// The identity a step's process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (including the primary one when it was not given explicitly and
    /// the user is a listed member).
    pub groups: Vec<u32>,
    /// The user's home directory from passwd (`/` when unknown).
    pub home: String,
}

/// One `/etc/passwd` line.
#[derive(Clone, Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line.
#[derive(Clone, Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolve `spec` (empty means root) given the contents of the image's passwd and group files
/// (`None` when the file is missing).
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<Identity> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let user = match numeric(user_part) {
        Some(uid) => users
            .iter()
            .find(|u| u.uid == uid)
            .cloned()
            .or(Some(PasswdEntry {
                name: String::new(),
                uid,
                gid: 0,
                home: "/".into(),
            })),
        None => users.iter().find(|u| u.name == user_part).cloned(),
    };
    let Some(user) = user else {
        return Err(ExecError::User {
            message: format!(
                "unable to find user `{user_part}`: no matching entries in the image's `/etc/passwd`"
            ),
        });
    };
    let home = if user.home.is_empty() {
        "/".to_string()
    } else {
        user.home.clone()
    };
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            let gid = match numeric(g) {
                Some(gid) => gid,
                None => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| ExecError::User {
                            message: format!(
                                "unable to find group `{g}`: no matching entries in the image's `/etc/group`"
                            ),
                        })?
                        .gid
                }
            };
            Ok(Identity {
                uid: user.uid,
                gid,
                groups: vec![gid],
                home,
            })
        }
        None => {
            let mut sgids = vec![user.gid];
            if !user.name.is_empty() {
                for g in &groups {
                    if g.members.iter().any(|m| m == &user.name) && !sgids.contains(&g.gid) {
                        sgids.push(g.gid);
                    }
                }
            }
            Ok(Identity {
                uid: user.uid,
                gid: user.gid,
                groups: sgids,
                home,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n";

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let id = resolve("app", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.groups, [1000, 10, 29]);
        assert_eq!(id.home, "/home/app");
    }

    #[test]
    fn an_explicit_group_drops_supplementary_groups() {
        let id = resolve("app:wheel", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((id.uid, id.gid, id.groups.clone()), (1000, 10, vec![10]));
        let id = resolve("app:42", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((id.gid, id.groups), (42, vec![42]));
    }

    #[test]
    fn numeric_ids_work_without_the_files() {
        let id = resolve("1234:5678", None, None).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (1234, 5678, vec![5678]));
        let id = resolve("1234", None, None).unwrap();
        assert_eq!((id.uid, id.gid), (1234, 0));
        let id = resolve("65534", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(id.gid, 65534, "a known uid takes its passwd gid");
        assert_eq!(resolve("", None, None).unwrap().uid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve("ghost", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(err.to_string().contains("unable to find user `ghost`"));
        let err = resolve("app:ghosts", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(err.to_string().contains("unable to find group `ghosts`"));
        assert!(resolve("app", None, None).is_err());
    }
}

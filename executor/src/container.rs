//! Containers for `rbuild run`: how an image's Entrypoint/Cmd/Env/WorkingDir/User combine with
//! the command line (Docker's rules), and the container records under `$ROOT/containers/<id>/`
//! (`container.json` plus the kept upper directory; a `lock` file held while it runs).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExecError, IoContext, Result};

/// What the image's config says about running it.
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// What the command line overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `-e K=V` (or `-e K`, taken from the caller's environment when set).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--entrypoint X` (an empty string clears the image's entrypoint).
    pub entrypoint: Option<String>,
    /// Arguments after the image name.
    pub cmd: Vec<String>,
}

/// The resolved process of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

/// Combine image defaults and overrides as `docker run` does: `--entrypoint` replaces the
/// image's entrypoint and drops its Cmd; arguments replace Cmd; `-e` replaces variables by
/// name; `-w`/`-u` replace WorkingDir/User.
pub fn resolve_process(
    image: &ImageDefaults,
    ov: &Overrides,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<Process> {
    let (entrypoint, default_cmd) = match &ov.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if ov.cmd.is_empty() {
        default_cmd
    } else {
        ov.cmd.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ExecError::Start {
            program: String::new(),
            reason: "no command specified: the image has no Entrypoint or Cmd; give a command after the image name".into(),
        });
    }
    let mut env = image.env.clone();
    for e in &ov.env {
        let (key, value) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match host_env(e) {
                Some(v) => (e.clone(), v),
                None => continue,
            },
        };
        env.retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    let cwd = ov
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let user = ov
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    Ok(Process {
        argv,
        env,
        cwd,
        user,
    })
}

/// The record of one container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its manifest digest.
    pub image: String,
    pub image_digest: rbuild_store::Digest,
    pub created: String,
    pub argv: Vec<String>,
    /// Started with `--rm`: remove when it exits (or, if rbuild died, on the next start).
    #[serde(default)]
    pub remove_on_exit: bool,
}

/// `$ROOT/containers`.
pub struct Containers {
    dir: PathBuf,
}

/// A container being run: its directory (pass it as `RunStep::container_dir`) and the lock
/// that marks it running.
pub struct Container {
    pub record: ContainerRecord,
    pub dir: PathBuf,
    _lock: File,
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
        Ok(Containers { dir })
    }

    /// Create a container record with a fresh id; the name defaults to `rbuild-<id12>` and must
    /// be unused.
    pub fn create(
        &self,
        name: Option<&str>,
        image: &str,
        image_digest: &rbuild_store::Digest,
        argv: &[String],
        remove_on_exit: bool,
    ) -> Result<Container> {
        let registry_lock = self.dir.join(".lock");
        let guard = File::create(&registry_lock).ctx("cannot create", &registry_lock)?;
        guard.lock().ctx("cannot lock", &registry_lock)?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                if !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                    || n.is_empty()
                {
                    return Err(ExecError::Start {
                        program: String::new(),
                        reason: format!(
                            "invalid container name `{n}`: use letters, digits, `_`, `.` and `-`"
                        ),
                    });
                }
                if self.list()?.iter().any(|c| c.name == n) {
                    return Err(ExecError::Start {
                        program: String::new(),
                        reason: format!(
                            "the container name `{n}` is already in use; remove that container or pick another name"
                        ),
                    });
                }
                n.to_string()
            }
            None => format!("rbuild-{}", &id[..12]),
        };
        let dir = self.dir.join(&id);
        std::fs::create_dir(&dir).ctx("cannot create", &dir)?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).ctx("cannot create", &lock_path)?;
        lock.lock().ctx("cannot lock", &lock_path)?;
        let record = ContainerRecord {
            id,
            name,
            image: image.to_string(),
            image_digest: image_digest.clone(),
            created: jiff::Timestamp::now().to_string(),
            argv: argv.to_vec(),
            remove_on_exit,
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| ExecError::sandbox(format!("cannot encode the container record: {e}")))?;
        let tmp = dir.join("container.json.tmp");
        std::fs::write(&tmp, json).ctx("cannot write", &tmp)?;
        std::fs::rename(&tmp, dir.join("container.json")).ctx("cannot write", &dir)?;
        drop(guard);
        Ok(Container {
            record,
            dir,
            _lock: lock,
        })
    }

    /// Every container record (running or not).
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).ctx("cannot read", &self.dir)? {
            let entry = entry.ctx("cannot read", &self.dir)?;
            let p = entry.path().join("container.json");
            if let Ok(bytes) = std::fs::read(&p)
                && let Ok(r) = serde_json::from_slice::<ContainerRecord>(&bytes)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Remove `--rm` containers whose rbuild process died before it could (their lock is
    /// free); `on_removed` gets each removed id (to drop the store's reference).
    pub fn remove_stale(&self, mut on_removed: impl FnMut(&str)) -> Result<()> {
        for record in self.list()? {
            if !record.remove_on_exit {
                continue;
            }
            let lock = self.dir.join(&record.id).join("lock");
            let Ok(f) = File::options().read(true).write(true).open(&lock) else {
                continue;
            };
            if f.try_lock().is_ok() {
                self.remove(&record.id)?;
                on_removed(&record.id);
            }
        }
        Ok(())
    }

    /// Delete a container's directory (its kept upper layer too).
    pub fn remove(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ExecError::sandbox(format!("not a container id: `{id}`")));
        }
        let dir = self.dir.join(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExecError::io("cannot remove", dir, e)),
        }
    }
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ctx("cannot read", Path::new("/dev/urandom"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into(), "args".into()]),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: Some("/app".into()),
            user: Some("app".into()),
        }
    }

    #[test]
    fn image_defaults_apply_when_nothing_is_overridden() {
        let p = resolve_process(&image(), &Overrides::default(), |_| None).unwrap();
        assert_eq!(p.argv, ["/entry", "default", "args"]);
        assert_eq!(p.env, ["PATH=/bin", "A=1"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/app", "app"));
    }

    #[test]
    fn arguments_replace_cmd_and_entrypoint_drops_it() {
        let ov = Overrides {
            cmd: vec!["x".into()],
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["/entry", "x"]
        );
        let ov = Overrides {
            entrypoint: Some("/other".into()),
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["/other"]
        );
        let ov = Overrides {
            entrypoint: Some(String::new()),
            cmd: vec!["echo".into(), "hi".into()],
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["echo", "hi"]
        );
    }

    #[test]
    fn env_workdir_and_user_overrides() {
        let ov = Overrides {
            env: vec![
                "A=2".into(),
                "B=3".into(),
                "FROM_HOST".into(),
                "UNSET".into(),
            ],
            workdir: Some("/w".into()),
            user: Some("1000:1000".into()),
            ..Overrides::default()
        };
        let p = resolve_process(&image(), &ov, |k| {
            (k == "FROM_HOST").then(|| "h".to_string())
        })
        .unwrap();
        assert_eq!(p.env, ["PATH=/bin", "A=2", "B=3", "FROM_HOST=h"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/w", "1000:1000"));
    }

    #[test]
    fn no_command_at_all_is_an_error() {
        let err = resolve_process(&ImageDefaults::default(), &Overrides::default(), |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("no command specified"), "{err}");
    }

    fn digest() -> rbuild_store::Digest {
        rbuild_store::Digest::of(b"x")
    }

    #[test]
    fn container_names_are_unique_and_records_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let a = cs
            .create(
                Some("web"),
                "busybox:1.35",
                &digest(),
                &["sh".into()],
                false,
            )
            .unwrap();
        assert!(a.dir.join("container.json").exists());
        let err = cs
            .create(Some("web"), "busybox", &digest(), &[], false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(
            cs.create(Some("../x"), "busybox", &digest(), &[], false)
                .is_err()
        );
        let b = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        assert!(b.record.name.starts_with("rbuild-"));
        assert_eq!(cs.list().unwrap().len(), 2);
        cs.remove(&a.record.id).unwrap();
        assert_eq!(cs.list().unwrap(), std::slice::from_ref(&b.record));
        assert!(cs.remove("../..").is_err());
    }

    #[test]
    fn abandoned_rm_containers_are_removed_and_running_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let running = cs.create(None, "busybox", &digest(), &[], true).unwrap();
        let kept = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        let dead = cs.create(None, "busybox", &digest(), &[], true).unwrap();
        let dead_id = dead.record.id.clone();
        drop(dead); // its lock is released, as when rbuild is killed
        drop(kept);
        let mut removed = Vec::new();
        cs.remove_stale(|id| removed.push(id.to_string())).unwrap();
        assert_eq!(removed, [dead_id]);
        assert_eq!(cs.list().unwrap().len(), 2);
        drop(running);
    }
}

//! Mounts of a container (`rbuild run -v`, `--mount`) and named volumes.
//!
//! - `-v /host/path:/ctr[:ro|rw]` binds a host path (created as a directory when missing, as
//!   docker does); `-v NAME:/ctr[:ro|rw]` mounts the named volume NAME.
//! - `--mount type=bind,source=/host,target=/ctr[,readonly]` (the source must exist),
//!   `type=volume,source=NAME,target=/ctr[,readonly]`, `type=tmpfs,target=/ctr[,tmpfs-size=N]`.
//!
//! Named volumes are directories `$ROOT/volumes/<name>/_data`, created empty on first use and
//! kept until removed by hand (unlike docker, a new volume is not seeded with the image's files
//! at its mount point). A bind or volume is the host's directory itself: writes go to the host
//! (unless read-only) and never into the container's layer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExecError, IoContext, Result};
use crate::mounts::{HostMount, RunMount, TmpfsMount};

/// One mount of a container, as the command line gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerMount {
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
        /// Create a missing source directory (`-v`), else refuse it (`--mount`).
        create: bool,
    },
    Volume {
        name: String,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
}

fn check_target(target: &str) -> Result<(), String> {
    if !target.starts_with('/') {
        return Err(format!(
            "the mount target `{target}` must be an absolute path in the container"
        ));
    }
    if target.split('/').any(|c| c == "..") {
        return Err(format!("the mount target `{target}` must not contain `..`"));
    }
    Ok(())
}

/// Whether `name` can name a volume: a letter or digit, then letters, digits, `_`, `.`, `-`.
fn valid_volume_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn volume_name(name: &str) -> Result<String, String> {
    if valid_volume_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "`{name}` is neither an absolute host path nor a volume name (letters, digits, `_`, `.`, `-`)"
        ))
    }
}

impl ContainerMount {
    /// `-v SOURCE:TARGET[:ro|rw]`.
    pub fn parse_volume(text: &str) -> Result<ContainerMount, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, readonly) = match parts.as_slice() {
            [s, t] => (*s, *t, false),
            [s, t, "ro"] => (*s, *t, true),
            [s, t, "rw"] => (*s, *t, false),
            [_, _, o] => {
                return Err(format!(
                    "unknown volume option `{o}` in `{text}`: use `ro` or `rw`"
                ));
            }
            _ => {
                return Err(format!(
                    "`{text}` is not `SOURCE:TARGET[:ro]` (a host path or a volume name, then a path in the container)"
                ));
            }
        };
        check_target(target)?;
        if source.starts_with('/') {
            Ok(ContainerMount::Bind {
                source: PathBuf::from(source),
                target: target.to_string(),
                readonly,
                create: true,
            })
        } else {
            Ok(ContainerMount::Volume {
                name: volume_name(source)?,
                target: target.to_string(),
                readonly,
            })
        }
    }

    /// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N]`.
    pub fn parse_mount(text: &str) -> Result<ContainerMount, String> {
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut readonly = false;
        let mut size = None;
        for field in text.split(',') {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (field, None),
            };
            match (key, value) {
                ("type", Some(v)) => kind = Some(v.to_string()),
                ("source" | "src", Some(v)) => source = Some(v.to_string()),
                ("target" | "dst" | "destination", Some(v)) => target = Some(v.to_string()),
                ("readonly" | "ro", None | Some("true" | "1")) => readonly = true,
                ("readonly" | "ro", Some("false" | "0")) => readonly = false,
                ("tmpfs-size", Some(v)) => {
                    size = Some(
                        rbuild_store::size::parse(v, rbuild_store::size::Base::Binary)
                            .map_err(|e| format!("tmpfs-size `{v}`: {e}"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown mount option `{field}`: rbuild takes type, source, target, readonly and tmpfs-size"
                    ));
                }
            }
        }
        let target = target.ok_or_else(|| format!("`{text}` has no target"))?;
        check_target(&target)?;
        match kind.as_deref() {
            Some("bind") => {
                let source = source.ok_or_else(|| format!("`{text}` has no source"))?;
                if !source.starts_with('/') {
                    return Err(format!(
                        "the bind source `{source}` must be an absolute host path"
                    ));
                }
                Ok(ContainerMount::Bind {
                    source: PathBuf::from(source),
                    target,
                    readonly,
                    create: false,
                })
            }
            Some("volume") => {
                let source = source.ok_or_else(|| {
                    format!("`{text}` has no source: name the volume (anonymous volumes are not supported)")
                })?;
                Ok(ContainerMount::Volume {
                    name: volume_name(&source)?,
                    target,
                    readonly,
                })
            }
            Some("tmpfs") => Ok(ContainerMount::Tmpfs { target, size }),
            Some(other) => Err(format!(
                "unknown mount type `{other}`: use bind, volume or tmpfs"
            )),
            None => Err(format!("`{text}` has no `type=`")),
        }
    }

    /// The mount for the sandbox; creates a named volume (or a `-v` host directory) on first
    /// use.
    pub fn to_run_mount(&self, root: &Path) -> Result<RunMount> {
        Ok(match self {
            ContainerMount::Bind {
                source,
                target,
                readonly,
                create,
            } => {
                if *create && !source.exists() {
                    std::fs::create_dir_all(source).ctx("cannot create", source)?;
                }
                if !source.exists() {
                    return Err(ExecError::ContainerMount {
                        target: target.clone(),
                        message: format!("the bind source `{}` does not exist", source.display()),
                    });
                }
                RunMount::Host(HostMount {
                    target: target.clone(),
                    source: source.clone(),
                    readonly: *readonly,
                })
            }
            ContainerMount::Volume {
                name,
                target,
                readonly,
            } => RunMount::Host(HostMount {
                target: target.clone(),
                source: volume_dir(root, name)?,
                readonly: *readonly,
            }),
            ContainerMount::Tmpfs { target, size } => RunMount::Tmpfs(TmpfsMount {
                target: target.clone(),
                size: *size,
            }),
        })
    }
}

/// The data directory of named volume `name` (`$ROOT/volumes/<name>/_data`), created when
/// missing.
pub fn volume_dir(root: &Path, name: &str) -> Result<PathBuf> {
    if !valid_volume_name(name) {
        return Err(ExecError::ContainerMount {
            target: name.to_string(),
            message: "not a volume name".into(),
        });
    }
    let dir = root.join("volumes").join(name).join("_data");
    std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_parse_like_docker() {
        assert_eq!(
            ContainerMount::parse_volume("/srv/data:/data:ro").unwrap(),
            ContainerMount::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                readonly: true,
                create: true
            }
        );
        assert_eq!(
            ContainerMount::parse_volume("cache:/var/cache").unwrap(),
            ContainerMount::Volume {
                name: "cache".into(),
                target: "/var/cache".into(),
                readonly: false
            }
        );
        assert!(ContainerMount::parse_volume("/a:rel").is_err());
        assert!(ContainerMount::parse_volume("/a:/b:z").is_err());
        assert!(ContainerMount::parse_volume("../x:/b").is_err());
        assert!(ContainerMount::parse_volume("/a").is_err());
        assert!(ContainerMount::parse_volume("/a:/b/../c").is_err());
    }

    #[test]
    fn mount_flags_parse_like_docker() {
        assert_eq!(
            ContainerMount::parse_mount("type=bind,src=/h,dst=/c,readonly").unwrap(),
            ContainerMount::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true,
                create: false
            }
        );
        assert_eq!(
            ContainerMount::parse_mount("type=volume,source=v1,target=/v").unwrap(),
            ContainerMount::Volume {
                name: "v1".into(),
                target: "/v".into(),
                readonly: false
            }
        );
        assert_eq!(
            ContainerMount::parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            ContainerMount::Tmpfs {
                target: "/t".into(),
                size: Some(1 << 20)
            }
        );
        for bad in [
            "type=bind,target=/c",
            "type=bind,source=rel,target=/c",
            "type=volume,target=/v",
            "type=nfs,target=/v",
            "source=/h,target=/c",
            "type=tmpfs",
            "type=bind,source=/h,target=/c,propagation=shared",
        ] {
            assert!(ContainerMount::parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_volumes_live_in_the_store_and_names_cannot_escape() {
        let root = tempfile::tempdir().unwrap();
        let dir = volume_dir(root.path(), "data").unwrap();
        assert_eq!(dir, root.path().join("volumes/data/_data"));
        assert!(dir.is_dir());
        for bad in ["..", ".hidden", "a/b", ""] {
            assert!(volume_dir(root.path(), bad).is_err(), "{bad}");
        }
    }
}

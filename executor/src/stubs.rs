//! Mount points. Every mount target is resolved inside the step's lower layers (chroot-style),
//! and when a target or its parents do not exist, the executor supplies them without writing
//! to the step's upper directory: with overlayfs, as an extra topmost *lower* layer holding
//! only the missing entries (and clones of their existing parent directories, so the merged
//! view's attributes do not change); with the copy-based rootfs, as entries created in the copy
//! and recorded so the walking differ ignores them while untouched. Either way nothing has to
//! be deleted after the step, so a step that swaps a parent for a symlink cannot redirect a
//! cleanup to the host (CVE-2024-23652).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::diff::walk::StubSet;
use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta::{self, Kind, Meta};
use crate::lower::LowerView;

/// A mount point the sandbox needs.
#[derive(Clone, Debug)]
pub struct Need {
    /// The target as written (absolute inside the container).
    pub target: String,
    /// A directory (else a file) mount.
    pub dir: bool,
    /// For `/etc/hosts`-style files: a symlink at the target is shadowed (overlay) rather than
    /// followed, and an unusable target skips the mount instead of failing.
    pub soft: bool,
}

/// Where a need ends up.
#[derive(Clone, Debug)]
pub struct Placed {
    /// Resolved absolute target (no symlinks in its existing part), or `None` when a soft need
    /// is skipped.
    pub target: Option<String>,
    /// The mount must not follow a symlink at the last component (shadowed targets).
    pub nofollow: bool,
}

#[derive(Clone, Debug)]
enum StubEntry {
    /// A directory that exists below: cloned with its attributes.
    Clone {
        rel: PathBuf,
        from: PathBuf,
        meta: Meta,
    },
    Dir {
        rel: PathBuf,
    },
    File {
        rel: PathBuf,
    },
}

/// The entries to create so every placed target exists.
#[derive(Clone, Debug, Default)]
pub struct StubPlan {
    entries: Vec<StubEntry>,
    /// For the copy rootfs: the existing directory each run of new entries hangs off, with its
    /// attributes, so its mtime can be restored after creating children in it.
    touched_parents: Vec<(PathBuf, Meta)>,
    pub warnings: Vec<String>,
}

/// Resolve each need in `view`. `overlay` selects shadowing of symlinked soft targets (only the
/// overlay stub layer can hide an entry without modifying it).
pub fn plan(view: &LowerView, needs: &[Need], overlay: bool) -> Result<(Vec<Placed>, StubPlan)> {
    let mut plan = StubPlan::default();
    let mut placed = Vec::new();
    for need in needs {
        let err = |message: String| ExecError::Mount {
            target: need.target.clone(),
            message,
        };
        let follow_last = !(need.soft && overlay);
        let resolved = match view.resolve(&need.target, follow_last) {
            Ok(r) => r,
            Err(e) if need.soft => {
                plan.warnings
                    .push(format!("not mounting `{}`: {e}", need.target));
                placed.push(Placed {
                    target: None,
                    nofollow: false,
                });
                continue;
            }
            Err(e) => return Err(err(format!("cannot resolve it in the image: {e}"))),
        };
        let full = resolved.full();
        if full.as_os_str().is_empty() {
            return Err(err("cannot mount over the root directory".into()));
        }
        let target = Some(format!("/{}", full.display()));
        if !resolved.missing.is_empty() {
            plan.add_missing(
                view,
                &resolved.existing,
                &resolved.missing,
                need.dir,
                overlay,
            )?;
            placed.push(Placed {
                target,
                nofollow: false,
            });
            continue;
        }
        let leaf = resolved.leaf.as_ref().map(|l| l.meta.kind);
        match leaf {
            Some(Kind::Dir) if need.dir => placed.push(Placed {
                target,
                nofollow: false,
            }),
            Some(Kind::Symlink) if need.soft && overlay => {
                // Shadow the symlink with a file in the stub layer.
                let parent = full.parent().unwrap_or(Path::new("")).to_path_buf();
                let name = full.file_name().unwrap_or_default().to_os_string();
                plan.add_missing(view, &parent, &[name], false, overlay)?;
                placed.push(Placed {
                    target,
                    nofollow: true,
                });
            }
            Some(k) if need.soft && (k == Kind::Dir) != need.dir => {
                plan.warnings.push(format!(
                    "not mounting `{}`: the image has a {} there",
                    need.target,
                    if k == Kind::Dir {
                        "directory"
                    } else {
                        "non-directory"
                    }
                ));
                placed.push(Placed {
                    target: None,
                    nofollow: false,
                });
            }
            Some(Kind::Dir) => return Err(err("the image has a directory there".into())),
            Some(_) if need.dir => {
                return Err(err("the image has a file there, not a directory".into()));
            }
            _ => placed.push(Placed {
                target,
                nofollow: false,
            }),
        }
    }
    Ok((placed, plan))
}

impl StubPlan {
    fn add_missing(
        &mut self,
        view: &LowerView,
        existing: &Path,
        missing: &[OsString],
        dir: bool,
        overlay: bool,
    ) -> Result<()> {
        if overlay {
            // Clone every existing ancestor so the stub layer's directories carry the same
            // attributes as the ones they merge with.
            let mut rel = PathBuf::new();
            for comp in existing.components() {
                rel.push(comp);
                if self.has(&rel) {
                    continue;
                }
                let entry = view
                    .lookup(&rel)
                    .ctx("cannot read lower layers at", &rel)?
                    .ok_or_else(|| ExecError::sandbox(format!("`/{}` vanished", rel.display())))?;
                self.entries.push(StubEntry::Clone {
                    rel: rel.clone(),
                    from: entry.path,
                    meta: entry.meta,
                });
            }
        } else if let Some(entry) = view
            .lookup(existing)
            .ctx("cannot read lower layers at", existing)?
        {
            self.touched_parents
                .push((existing.to_path_buf(), entry.meta));
        }
        let mut rel = existing.to_path_buf();
        for (i, comp) in missing.iter().enumerate() {
            rel.push(comp);
            if self.has(&rel) {
                continue;
            }
            let last = i + 1 == missing.len();
            self.entries.push(if last && !dir {
                StubEntry::File { rel: rel.clone() }
            } else {
                StubEntry::Dir { rel: rel.clone() }
            });
        }
        Ok(())
    }

    fn has(&self, rel: &Path) -> bool {
        self.entries.iter().any(|e| match e {
            StubEntry::Clone { rel: r, .. }
            | StubEntry::Dir { rel: r }
            | StubEntry::File { rel: r } => r == rel,
        })
    }

    /// Whether the plan creates anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the stub layer (overlay mode) into the empty directory `dir`.
    pub fn write_layer(&self, dir: &Path) -> Result<()> {
        self.create(dir)?;
        // Cloned directories get their attributes last (creating children moves mtimes).
        for e in self.entries.iter().rev() {
            if let StubEntry::Clone { rel, from, meta } = e {
                let p = dir.join(rel);
                let xattrs = fsmeta::xattrs(from).ctx("cannot read xattrs of", from)?;
                fsmeta::apply_meta(&p, meta, &xattrs).ctx("cannot set attributes of", &p)?;
            }
        }
        Ok(())
    }

    /// Create the stubs directly in a copied rootfs; returns them for the walking differ and
    /// restores the mtimes of the existing directories they were created in.
    pub fn create_in_rootfs(&self, rootfs: &Path) -> Result<StubSet> {
        self.create(rootfs)?;
        for (rel, meta) in &self.touched_parents {
            let p = rootfs.join(rel);
            let t = filetime::FileTime::from_unix_time(meta.mtime, meta.mtime_nsec);
            filetime::set_symlink_file_times(&p, t, t).ctx("cannot set times of", &p)?;
        }
        let mut set = StubSet::default();
        for e in &self.entries {
            if let StubEntry::Dir { rel } | StubEntry::File { rel } = e {
                let p = rootfs.join(rel);
                let meta = Meta::lstat(&p).ctx("cannot stat", &p)?;
                set.insert(rel.clone(), &meta);
            }
        }
        Ok(set)
    }

    fn create(&self, base: &Path) -> Result<()> {
        for e in &self.entries {
            match e {
                StubEntry::Clone { rel, .. } | StubEntry::Dir { rel } => {
                    let p = base.join(rel);
                    match std::fs::create_dir(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(ExecError::io("cannot create", p, e)),
                    }
                }
                StubEntry::File { rel } => {
                    let p = base.join(rel);
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&p)
                        .ctx("cannot create", &p)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image() -> (tempfile::TempDir, LowerView) {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::create_dir_all(base.join("proc")).unwrap();
        std::fs::create_dir_all(base.join("var")).unwrap();
        symlink("/run", base.join("var/run")).unwrap();
        symlink("../run/resolv.conf", base.join("etc/resolv.conf")).unwrap();
        std::fs::write(base.join("etc/hosts"), "").unwrap();
        let view = LowerView::new(&[base]);
        (t, view)
    }

    fn need(target: &str, dir: bool, soft: bool) -> Need {
        Need {
            target: target.into(),
            dir,
            soft,
        }
    }

    #[test]
    fn targets_resolve_through_image_symlinks_and_missing_parts_become_stubs() {
        let (_t, view) = image();
        let (placed, plan) = plan(
            &view,
            &[
                need("/proc", true, false),
                need("/var/run/secrets/x", false, false),
            ],
            true,
        )
        .unwrap();
        assert_eq!(placed[0].target.as_deref(), Some("/proc"));
        assert_eq!(placed[1].target.as_deref(), Some("/run/secrets/x"));
        let layer = tempfile::tempdir().unwrap();
        plan.write_layer(layer.path()).unwrap();
        assert!(layer.path().join("run/secrets").is_dir());
        assert!(layer.path().join("run/secrets/x").is_file());
        assert!(
            !layer.path().join("proc").exists(),
            "existing targets need no stub"
        );
    }

    #[test]
    fn symlinked_hosts_files_are_shadowed_in_overlay_mode_and_followed_in_copy_mode() {
        let (_t, view) = image();
        let needs = [
            need("/etc/resolv.conf", false, true),
            need("/etc/hosts", false, true),
        ];
        let (placed, plan) = plan(&view, &needs, true).unwrap();
        assert_eq!(placed[0].target.as_deref(), Some("/etc/resolv.conf"));
        assert!(placed[0].nofollow);
        assert_eq!(placed[1].target.as_deref(), Some("/etc/hosts"));
        let layer = tempfile::tempdir().unwrap();
        plan.write_layer(layer.path()).unwrap();
        assert!(layer.path().join("etc/resolv.conf").is_file());
        assert!(!layer.path().join("etc/hosts").exists());

        let (placed, _) = plan_copy(&view, &needs);
        assert_eq!(placed[0].target.as_deref(), Some("/run/resolv.conf"));
    }

    fn plan_copy(view: &LowerView, needs: &[Need]) -> (Vec<Placed>, StubPlan) {
        plan(view, needs, false).unwrap()
    }

    #[test]
    fn mounting_a_directory_over_a_file_is_an_error() {
        let (_t, view) = image();
        let err = plan(&view, &[need("/etc/hosts", true, false)], true).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = plan(&view, &[need("/", true, false)], true).unwrap_err();
        assert!(err.to_string().contains("root directory"), "{err}");
    }
}

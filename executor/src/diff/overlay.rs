//! The overlay differ: turn an overlayfs upper directory into a changeset without looking at
//! the merged mount. Whiteouts (0:0 character devices) become `.wh.NAME`, opaque directories
//! become `.wh..wh..opq`, and files overlayfs copied up without changing them are dropped by
//! comparing with the lower layers. The upper must come from a mount with `redirect_dir=off`
//! and `metacopy=off` so it is self-describing (the sandbox mounts it that way).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Changeset, Collector, check_name, entry_changed};
use crate::error::{IoContext, Result};
use crate::fsmeta::{self, Kind, Meta};
use crate::lower::LowerView;

/// Compute the changeset of an upper directory over `lower` (the step's parent layers; the
/// executor's mount-point stub layer is not part of it).
pub fn diff_upper(upper: &Path, lower: &LowerView) -> Result<Changeset> {
    let mut out = Collector::new(upper);
    // (relative dir, the lower layers whose directory there shows through the upper one)
    let root_layers = lower
        .visible_dir_layers(Path::new(""))
        .ctx("cannot read lower layers of", upper)?;
    let mut stack: Vec<(PathBuf, Vec<usize>)> = vec![(PathBuf::new(), root_layers)];
    while let Some((rel, layers)) = stack.pop() {
        let lower_map = if layers.is_empty() {
            Default::default()
        } else {
            lower
                .read_dir_in(&rel, &layers)
                .ctx("cannot read lower directory", &rel)?
        };
        let dir = upper.join(&rel);
        let mut names: Vec<OsString> = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx("cannot read directory", &dir)? {
            names.push(entry.ctx("cannot read directory", &dir)?.file_name());
        }
        names.sort();
        for name in names {
            let path = rel.join(&name);
            let full = upper.join(&path);
            let meta = Meta::lstat(&full).ctx("cannot stat", &full)?;
            let below = lower_map.get(&name);
            if meta.is_whiteout() {
                if below.is_some() {
                    out.whiteout(&path);
                }
                continue;
            }
            check_name(&path)?;
            if meta.kind == Kind::Socket {
                out.warn(format!(
                    "skipped socket `/{}`: sockets cannot be stored in a layer",
                    path.display()
                ));
                if below.is_some() {
                    out.whiteout(&path);
                }
                continue;
            }
            let xattrs = fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
            let below_is_dir = below.is_some_and(|b| b.meta.kind == Kind::Dir);
            if meta.kind == Kind::Dir {
                let opaque = fsmeta::is_opaque_dir(&full).ctx("cannot read xattrs of", &full)?;
                if below_is_dir && opaque {
                    out.opaque(&path);
                    out.entry(&path, meta, xattrs)?;
                    stack.push((path, Vec::new()));
                } else if let Some(b) = below.filter(|_| below_is_dir) {
                    let changed = entry_changed(&b.path, &b.meta, &full, &meta, &xattrs, true)?;
                    if changed {
                        out.entry(&path, meta, xattrs)?;
                    }
                    let child_layers = lower
                        .filter_dirs(&path, &layers)
                        .ctx("cannot read lower layers of", &full)?;
                    stack.push((path, child_layers));
                } else {
                    out.entry(&path, meta, xattrs)?;
                    stack.push((path, Vec::new()));
                }
                continue;
            }
            if let Some(b) = below
                && b.meta.kind == meta.kind
                && !entry_changed(&b.path, &b.meta, &full, &meta, &xattrs, false)?
            {
                // Copied up but not changed (e.g. the source of a new hard link).
                continue;
            }
            out.entry(&path, meta, xattrs)?;
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::normalized;
    use crate::lower::tests::{opaque, whiteout};

    fn copy_attrs(from: &Path, to: &Path) {
        let meta = Meta::lstat(from).unwrap();
        crate::fsmeta::apply_meta(to, &meta, &[]).unwrap();
    }

    #[test]
    fn upper_markers_become_layer_markers_and_unchanged_copy_ups_vanish() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        std::fs::create_dir_all(lower.join("opq")).unwrap();
        std::fs::write(lower.join("opq/old"), "o").unwrap();
        std::fs::write(lower.join("gone"), "g").unwrap();
        std::fs::write(lower.join("same"), "s").unwrap();
        std::fs::write(lower.join("edited"), "e").unwrap();
        std::fs::create_dir_all(upper.join("opq")).unwrap();
        opaque(&upper.join("opq"));
        std::fs::write(upper.join("opq/new"), "n").unwrap();
        whiteout(&upper.join("gone"));
        whiteout(&upper.join("never-existed"));
        std::fs::write(upper.join("same"), "s").unwrap();
        copy_attrs(&lower.join("same"), &upper.join("same"));
        std::fs::write(upper.join("edited"), "E").unwrap();
        copy_attrs(&lower.join("edited"), &upper.join("edited"));
        let _sock = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
        let cs = diff_upper(&upper, &LowerView::new(&[lower])).unwrap();
        let lines = normalized(&cs).unwrap();
        let paths: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            paths,
            [".wh.gone", "edited", "opq", "opq/.wh..wh..opq", "opq/new"],
            "{lines:?}"
        );
        assert!(cs.warnings[0].contains("`/sock`"));
    }

    #[test]
    fn reserved_names_in_the_upper_are_an_error() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        std::fs::create_dir_all(&lower).unwrap();
        std::fs::create_dir_all(upper.join("d")).unwrap();
        std::fs::write(upper.join("d/.wh..wh..opq"), "").unwrap();
        let err = diff_upper(&upper, &LowerView::new(&[lower])).unwrap_err();
        assert!(
            matches!(err, crate::ExecError::ReservedName { ref path } if path == "d/.wh..wh..opq")
        );
    }
}

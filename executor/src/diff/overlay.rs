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

//! The copy-based snapshotter: flatten a stack of lower layers into a plain directory (when
//! overlay mounts are not permitted, e.g. inside another overlay), preserving types, modes,
//! owners, extended attributes, mtimes and hard links within a layer. File data goes through
//! `std::fs::copy`, which uses `copy_file_range` (reflinks on filesystems that support them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta::{self, Kind};
use crate::lower::LowerView;

/// Copy the merged view of `view` into the existing, empty directory `dest`.
pub fn materialize(view: &LowerView, dest: &Path) -> Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Directories get their attributes after their contents, deepest first.
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    if let Some(root) = view
        .lookup(Path::new(""))
        .ctx("cannot read lower layers of", dest)?
    {
        dirs.push((root.path, dest.to_path_buf()));
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let listing = view
            .read_dir(&rel)
            .ctx("cannot read lower directory", &rel)?;
        for (name, entry) in listing {
            let child = rel.join(&name);
            let to = dest.join(&child);
            let meta = &entry.meta;
            if meta.kind != Kind::Dir && meta.nlink > 1 {
                if let Some(first) = links.get(&(meta.dev, meta.ino)) {
                    std::fs::hard_link(first, &to).ctx("cannot link", &to)?;
                    continue;
                }
                links.insert((meta.dev, meta.ino), to.clone());
            }
            match meta.kind {
                Kind::Dir => {
                    std::fs::create_dir(&to).ctx("cannot create", &to)?;
                    dirs.push((entry.path.clone(), to));
                    stack.push(child);
                    continue;
                }
                Kind::File => {
                    std::fs::copy(&entry.path, &to).ctx("cannot copy", &entry.path)?;
                }
                Kind::Symlink => {
                    let target = std::fs::read_link(&entry.path).ctx("cannot read", &entry.path)?;
                    std::os::unix::fs::symlink(target, &to).ctx("cannot create", &to)?;
                }
                Kind::CharDev | Kind::BlockDev | Kind::Fifo => {
                    let ft = match meta.kind {
                        Kind::CharDev => rustix::fs::FileType::CharacterDevice,
                        Kind::BlockDev => rustix::fs::FileType::BlockDevice,
                        _ => rustix::fs::FileType::Fifo,
                    };
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &to,
                        ft,
                        rustix::fs::Mode::from_raw_mode(meta.mode),
                        meta.rdev,
                    )
                    .map_err(|e| ExecError::io("cannot create", &to, e.into()))?;
                }
                Kind::Socket => continue,
            }
            let xattrs = fsmeta::xattrs(&entry.path).ctx("cannot read xattrs of", &entry.path)?;
            fsmeta::apply_meta(&to, meta, &xattrs).ctx("cannot set attributes of", &to)?;
        }
    }
    for (from, to) in dirs.iter().rev() {
        let meta = fsmeta::Meta::lstat(from).ctx("cannot stat", from)?;
        let xattrs = fsmeta::xattrs(from).ctx("cannot read xattrs of", from)?;
        fsmeta::apply_meta(to, &meta, &xattrs).ctx("cannot set attributes of", to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::tests::{opaque, whiteout};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn flattening_applies_whiteouts_and_keeps_links_and_attributes() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let top = t.path().join("top");
        std::fs::create_dir_all(base.join("d/old")).unwrap();
        std::fs::write(base.join("f"), "f").unwrap();
        std::fs::hard_link(base.join("f"), base.join("f2")).unwrap();
        std::fs::write(base.join("gone"), "g").unwrap();
        std::os::unix::fs::chown(base.join("f"), Some(7), Some(8)).unwrap();
        std::fs::create_dir_all(top.join("d")).unwrap();
        opaque(&top.join("d"));
        std::fs::write(top.join("d/new"), "n").unwrap();
        whiteout(&top.join("gone"));
        filetime::set_file_mtime(base.join("f"), filetime::FileTime::from_unix_time(1234, 5))
            .unwrap();
        let dest = t.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        materialize(&LowerView::new(&[base, top]), &dest).unwrap();
        assert!(!dest.join("gone").exists());
        assert!(!dest.join("d/old").exists());
        assert!(dest.join("d/new").exists());
        let f = std::fs::metadata(dest.join("f")).unwrap();
        let f2 = std::fs::metadata(dest.join("f2")).unwrap();
        assert_eq!(f.ino(), f2.ino());
        assert_eq!(
            (f.uid(), f.gid(), f.mtime(), f.mtime_nsec()),
            (7, 8, 1234, 5)
        );
        assert!(
            xattr::get(dest.join("d"), "trusted.overlay.opaque")
                .unwrap()
                .is_none()
        );
    }
}

//! `-o type=local,dest=DIR` (and `-o DIR`): the final root filesystem written into a
//! directory — into an existing one as BuildKit does (replacing what the image has), or a new
//! one that appears only complete.

use std::path::Path;

use miette::Report;
use rbuild_executor::export::Rootfs;

use super::{Export, file, shown};

/// Write the root filesystems to `path`: one (an empty name) into it, or each into its own
/// directory under it (a multi-platform build, `linux_amd64/`, ...); the summary of what was
/// written.
pub fn write(
    export: &Export<'_>,
    trees: &[(&str, &Rootfs)],
    path: &Path,
) -> miette::Result<String> {
    let opts = export.rootfs_options();
    let mut entries = 0;
    let mut write_all = |dir: &Path| -> miette::Result<()> {
        for (name, rootfs) in trees {
            let into = if name.is_empty() {
                dir.to_path_buf()
            } else {
                let sub = dir.join(name);
                create_dir(&sub)?;
                sub
            };
            entries += rootfs.write_dir(&into, &opts).map_err(Report::new)?;
        }
        Ok(())
    };
    if path.symlink_metadata().is_ok() {
        // Like BuildKit: into the existing directory, replacing what the image has.
        write_all(path)?;
    } else {
        file::write_dir_atomically(path, export.cancelled, |dir| write_all(dir))?;
    }
    let what = if trees.iter().any(|(name, _)| !name.is_empty()) {
        format!("{} root filesystems", trees.len())
    } else {
        "root filesystem".to_string()
    };
    Ok(format!(
        "{what} to {} ({entries} entries)",
        shown(&super::Dest::Path(path.to_path_buf()))
    ))
}

/// A platform's directory in the destination (kept if it exists: written into, as the
/// destination itself).
fn create_dir(dir: &Path) -> miette::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(file::io_error("create", dir, e)),
    }
}

//! `-o type=local,dest=DIR` (and `-o DIR`): the final root filesystem written into a
//! directory — into an existing one as BuildKit does (replacing what the image has), or a new
//! one that appears only complete.

use std::path::Path;

use miette::Report;
use rbuild_executor::export::Rootfs;

use super::{Export, file, shown};

/// Write the root filesystem to `path`; the summary of what was written.
pub fn write(export: &Export<'_>, rootfs: &Rootfs, path: &Path) -> miette::Result<String> {
    let opts = export.rootfs_options();
    let mut entries = 0;
    if path.symlink_metadata().is_ok() {
        // Like BuildKit: into the existing directory, replacing what the image has.
        entries = rootfs.write_dir(path, &opts).map_err(Report::new)?;
    } else {
        file::write_dir_atomically(path, export.cancelled, |dir| {
            entries = rootfs.write_dir(dir, &opts).map_err(Report::new)?;
            Ok(())
        })?;
    }
    Ok(format!(
        "root filesystem to {} ({entries} entries)",
        shown(&super::Dest::Path(path.to_path_buf()))
    ))
}

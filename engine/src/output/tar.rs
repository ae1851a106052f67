//! `-o type=tar,dest=FILE|-` (and `-o -`): the final root filesystem as one tar stream, to a
//! file (written atomically) or stdout.

use miette::Report;
use rbuild_executor::export::{Rootfs, write_tar_split};

use super::{Dest, Export, file, shown};

/// Write the root filesystems as one tar to `dest`: one (an empty name) at the top, or each
/// under its own directory (a multi-platform build, `linux_amd64/`, ...); the summary of what
/// was written.
pub fn write(
    export: &Export<'_>,
    trees: &[(&str, &Rootfs)],
    dest: &Dest,
) -> miette::Result<String> {
    let opts = export.rootfs_options();
    let stats = match dest {
        Dest::Stdout => {
            write_tar_split(trees, std::io::stdout().lock(), &opts).map_err(Report::new)?
        }
        Dest::Path(path) => {
            let mut stats = None;
            file::write_output_file(path, export.store.root(), true, export.cancelled, |file| {
                stats = Some(write_tar_split(trees, file, &opts).map_err(Report::new)?);
                Ok(())
            })?;
            stats.expect("written")
        }
    };
    Ok(format!(
        "root filesystem tar to {} ({} entries, {})",
        shown(dest),
        stats.entries,
        rbuild_store::size::human(stats.bytes)
    ))
}

//! The one writer of file outputs (`save -o`, `-o type=tar|oci|docker,dest=FILE`,
//! `--iidfile`, `--metadata-file`) and of directory outputs: never inside the store; character
//! devices and FIFOs written through, never replaced; a symlink the user named followed; files
//! appear only complete (temp file + rename) and a new directory only complete (staging
//! directory + rename or atomic exchange).

use std::path::{Path, PathBuf};

use miette::{Context, Report};

use super::{Dest, OutputSpec};

/// Whether the caller was interrupted (checked before anything is moved into place).
pub type Cancelled<'a> = &'a (dyn Fn() -> bool + Sync);

pub(crate) fn io_error(action: &str, path: &Path, e: impl std::fmt::Display) -> Report {
    miette::miette!(
        code = "rbuild::output::io",
        help = "check that the destination's directory exists and is writable and the disk is not full",
        "cannot {action} `{}`: {e}",
        path.display()
    )
}

fn interrupted() -> Report {
    Report::new(rbuild_store::Failure::interrupted(
        "interrupted while writing the outputs: nothing partial was left at their destinations",
    ))
}

/// The directory a destination lives in, created when missing.
fn parent_dir(path: &Path) -> miette::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_error("create directory", &parent, e))?;
    Ok(parent)
}

/// Where a file output really goes.
#[derive(Debug, PartialEq, Eq)]
enum FileTarget {
    /// A regular file or a new path (symlinks the user named already followed): written to a
    /// temp file beside it and renamed over it.
    Replace(PathBuf),
    /// A character device or FIFO (`/dev/stdout`, `/dev/null`, a named pipe): opened and
    /// written into, never replaced.
    WriteThrough(PathBuf),
}

/// Follow the symlinks of `path` as far as they resolve (a dangling link names the file to
/// create); decide how to write it.
fn file_target(path: &Path) -> miette::Result<FileTarget> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            let real = std::fs::canonicalize(path).map_err(|e| io_error("resolve", path, e))?;
            Ok(FileTarget::Replace(real))
        }
        Ok(meta) if meta.is_dir() => Err(io_error(
            "write a file at",
            path,
            "it is a directory; name a file inside it",
        )),
        Ok(meta) if meta.file_type().is_char_device() || meta.file_type().is_fifo() => {
            Ok(FileTarget::WriteThrough(path.to_path_buf()))
        }
        Ok(_) => Err(io_error(
            "write to",
            path,
            "it is a block device or socket, which an output never overwrites",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // New, or a dangling symlink: the file is created where the links lead.
            let mut p = path.to_path_buf();
            for _ in 0..40 {
                match std::fs::read_link(&p) {
                    Ok(t) => {
                        p = match p.parent() {
                            Some(dir) if t.is_relative() => dir.join(t),
                            _ => t,
                        }
                    }
                    Err(_) => return Ok(FileTarget::Replace(p)),
                }
            }
            Err(io_error(
                "resolve",
                path,
                "too many levels of symbolic links",
            ))
        }
        Err(e) => Err(io_error("inspect", path, e)),
    }
}

/// `path` made absolute with the symlinks of its existing ancestors resolved.
fn resolved(path: &Path) -> PathBuf {
    let abs = absolute(path);
    let mut head = abs.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(head) {
            let mut out = real;
            out.extend(tail.iter().rev());
            return out;
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuse a destination in the store (the root itself or anything the store owns under it,
/// [`rbuild_store::layout::owns`]: writing there could corrupt the store beyond what `rbuild
/// fsck` repairs), or, for a directory output, one that contains the store. Another name under
/// the root (`$ROOT/out.tar`, what BuildKit's conformance tooling writes) is the user's.
pub fn outside_store(path: &Path, store_root: &Path, directory: bool) -> miette::Result<()> {
    let dest = resolved(path);
    let root = resolved(store_root);
    let inside = rbuild_store::layout::owns(&root, &dest);
    if inside || (directory && root.starts_with(&dest)) {
        return Err(miette::miette!(
            code = "rbuild::output::in_store",
            help = "write outputs outside the store; the store is changed only by rbuild's own \
                    commands",
            "refusing to write to `{}`: it is {} the image store `{}`",
            path.display(),
            if inside {
                "inside"
            } else {
                "a directory holding"
            },
            root.display()
        ));
    }
    Ok(())
}

/// [`outside_store`] for every output destination of a build and its extra files
/// (`--iidfile`, `--metadata-file`), checked before the build starts.
pub fn check_outside_store<'a>(
    specs: &[OutputSpec],
    files: impl IntoIterator<Item = &'a Option<PathBuf>>,
    store_root: &Path,
) -> miette::Result<()> {
    for spec in specs {
        if let Some(Dest::Path(path)) = &spec.dest {
            outside_store(path, store_root, spec.directory)?;
        }
    }
    for path in files.into_iter().flatten() {
        outside_store(path, store_root, false)?;
    }
    Ok(())
}

/// The one way rbuild writes a file output (`save -o`, `-o type=tar|oci|docker,dest=FILE`,
/// `--iidfile`, `--metadata-file`): never inside the store; through a character device or
/// FIFO (`/dev/stdout`, a named pipe) without replacing it; a symlink the user named is
/// followed; a regular file or new path gets a temp file beside it, renamed into place only
/// when `fill` succeeded and the command was not interrupted (`cancelled`). `sync` fsyncs before the rename.
pub fn write_output_file(
    path: &Path,
    store_root: &Path,
    sync: bool,
    cancelled: Cancelled<'_>,
    fill: impl FnOnce(&mut std::fs::File) -> miette::Result<()>,
) -> miette::Result<()> {
    let target = file_target(path)?;
    let (FileTarget::Replace(real) | FileTarget::WriteThrough(real)) = &target;
    outside_store(real, store_root, false)?;
    let real = match target {
        FileTarget::WriteThrough(dev) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&dev)
                .map_err(|e| io_error("open", &dev, e))?;
            fill(&mut file).wrap_err(format!("cannot write to `{}`", dev.display()))?;
            return Ok(());
        }
        FileTarget::Replace(real) => real,
    };
    let parent = parent_dir(&real)?;
    let name = real.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".rbuild-tmp")
        .tempfile_in(&parent)
        .map_err(|e| io_error("create a temporary file in", &parent, e))?;
    fill(tmp.as_file_mut()).wrap_err(format!("cannot write `{}`", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io_error("chmod", tmp.path(), e))?;
    if sync {
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_error("fsync", tmp.path(), e))?;
    }
    if cancelled() {
        return Err(interrupted());
    }
    tmp.persist(&real)
        .map_err(|e| io_error("rename into place", &real, e.error))?;
    Ok(())
}

/// Fill a staging directory beside `path`, then move it into place: a rename when `path` does
/// not exist, an atomic exchange (`RENAME_EXCHANGE`) with an existing directory, whose old
/// contents are then removed.
pub(crate) fn write_dir_atomically(
    path: &Path,
    cancelled: Cancelled<'_>,
    fill: impl FnOnce(&Path) -> miette::Result<()>,
) -> miette::Result<()> {
    let parent = parent_dir(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".rbuild-tmp")
        .tempdir_in(&parent)
        .map_err(|e| io_error("create a staging directory in", &parent, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error("chmod", staging.path(), e))?;
    fill(staging.path())?;
    if cancelled() {
        return Err(interrupted());
    }
    if path.symlink_metadata().is_ok() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            staging.path(),
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_error("move the new directory into place at", path, e))?;
        // `staging` now names the old directory: dropping it removes it.
        drop(staging);
    } else {
        std::fs::rename(staging.path(), path)
            .map_err(|e| io_error("move the new directory into place at", path, e))?;
        let _ = staging.keep();
    }
    Ok(())
}

/// `p` made absolute (without resolving symlinks).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

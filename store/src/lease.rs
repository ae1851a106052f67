//! Leases: protection of in-flight content from garbage collection. Every `Store` owns one
//! lease file `leases/<pid>-<start>-<n>.lease` (created on first write) listing the blobs and
//! snapshots it wrote or relies on; GC treats the lines of live processes' leases as roots and
//! deletes the leases of dead ones. A lease names a PID and its start time, so a reused PID
//! cannot resurrect one: crashes never pin garbage forever.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::fsutil;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a lease line protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A blob (and anything it references, if it is a manifest or index).
    Blob,
    /// A snapshot directory `snapshots/v2/<chain id hex>`.
    Snapshot,
}

impl Held {
    fn word(self) -> &'static str {
        match self {
            Held::Blob => "blob",
            Held::Snapshot => "snapshot",
        }
    }
}

/// The open lease file of one `Store`.
#[derive(Debug)]
pub(crate) struct LeaseFile {
    file: File,
    path: PathBuf,
}

impl LeaseFile {
    pub(crate) fn create(dir: &Path) -> Result<LeaseFile> {
        let (pid, start) = fsutil::self_identity();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{pid}-{start}-{n}.lease"));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .ctx("create lease", &path)?;
        Ok(LeaseFile { file, path })
    }

    /// Append one line. No fsync: a lease only matters while its process lives.
    pub(crate) fn record(&mut self, held: Held, digest: &Digest) -> Result<()> {
        let line = format!("{} {}\n", held.word(), digest);
        self.file
            .write_all(line.as_bytes())
            .ctx("write lease", &self.path)
    }
}

impl Drop for LeaseFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Everything held by the leases of live processes.
#[derive(Debug, Default)]
pub struct LiveLeases {
    pub blobs: BTreeSet<Digest>,
    pub snapshots: BTreeSet<Digest>,
    /// Lease files whose process is gone (removed by GC).
    pub expired: Vec<PathBuf>,
    /// Number of live leases.
    pub live: usize,
}

/// Read every lease under `dir`, sorting live from expired.
pub fn read_leases(dir: &Path) -> Result<LiveLeases> {
    let mut out = LiveLeases::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx("list", dir),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, start)) = fsutil::owner_of(&name) else {
            continue;
        };
        if !fsutil::process_alive(pid, start) {
            out.expired.push(entry.path());
            continue;
        }
        out.live += 1;
        let text = match fs::read_to_string(entry.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("read lease", entry.path()),
        };
        // A torn last line (no newline) is ignored.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let Some((word, d)) = line.trim_end().split_once(' ') else {
                continue;
            };
            let Ok(d) = Digest::parse(d) else { continue };
            match word {
                "blob" => {
                    out.blobs.insert(d);
                }
                "snapshot" => {
                    out.snapshots.insert(d);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_lease_lines_are_read_and_dead_ones_expire() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"a");
        {
            let mut l = LeaseFile::create(dir.path()).unwrap();
            l.record(Held::Blob, &d).unwrap();
            l.record(Held::Snapshot, &d).unwrap();
            fs::write(
                dir.path().join("999999999-5-0.lease"),
                format!("blob {d}\n"),
            )
            .unwrap();
            let live = read_leases(dir.path()).unwrap();
            assert!(live.blobs.contains(&d) && live.snapshots.contains(&d));
            assert_eq!(live.live, 1);
            assert_eq!(live.expired.len(), 1, "pid 999999999 does not exist");
        }
        // Dropping the lease removes its file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! The output log of a detached container: `containers/<id>/log`, one record per line — `o`
//! (stdout) or `e` (stderr), then the line's bytes and a newline. It is bounded: when `log`
//! would pass `max` bytes it is renamed to `log.1` (replacing the previous one) and a new `log`
//! is started, so at most `2 × max` bytes are kept and the newest output always is; the bytes
//! of a `log.1` dropped that way are added up in `log.dropped`, which `logs` reports ("earlier
//! output was dropped"). Records are written whole in one `write`, so a reader (`logs -f`)
//! never sees half a record from a finished write.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sandbox::Stream;

/// Bytes kept per log file unless `--log-opt max-size` says otherwise (two files are kept).
pub const DEFAULT_MAX_LOG: u64 = 8 << 20;
/// The smallest `max-size` accepted (one record always fits in a file).
pub const MIN_MAX_LOG: u64 = 4096;

const LOG: &str = "log";
const OLD: &str = "log.1";
const DROPPED: &str = "log.dropped";

/// Appends records to a container's log, rotating at `max` bytes.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogWriter {
    /// Start (or truncate) the log in the container directory `dir`.
    pub fn create(dir: &Path, max: u64) -> std::io::Result<LogWriter> {
        let file = File::create(dir.join(LOG))?;
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            file,
            size: 0,
            max: max.max(MIN_MAX_LOG),
        })
    }

    /// Append one line (without its newline) from `stream`.
    pub fn line(&mut self, stream: Stream, line: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(line.len() + 2);
        record.push(match stream {
            Stream::Stdout => b'o',
            Stream::Stderr => b'e',
        });
        record.extend_from_slice(line);
        record.push(b'\n');
        if self.size > 0 && self.size + record.len() as u64 > self.max {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let old = self.dir.join(OLD);
        if let Ok(meta) = std::fs::metadata(&old) {
            let dropped = read_dropped(&self.dir) + meta.len();
            let tmp = self.dir.join("log.dropped.tmp");
            std::fs::write(&tmp, dropped.to_string())?;
            std::fs::rename(&tmp, self.dir.join(DROPPED))?;
        }
        std::fs::rename(self.dir.join(LOG), &old)?;
        self.file = File::create(self.dir.join(LOG))?;
        self.size = 0;
        Ok(())
    }
}

fn read_dropped(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(DROPPED))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// One line of output: its stream and its bytes, newline included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub stream: Stream,
    pub data: Vec<u8>,
}

fn decode(line: &[u8]) -> Option<LogRecord> {
    let (&tag, data) = line.split_first()?;
    let stream = match tag {
        b'o' => Stream::Stdout,
        b'e' => Stream::Stderr,
        _ => return None,
    };
    Some(LogRecord {
        stream,
        data: data.to_vec(),
    })
}

/// What a container's log holds now.
pub struct LogContents {
    pub records: Vec<LogRecord>,
    /// Bytes of earlier output dropped to keep the log bounded.
    pub dropped: u64,
    /// Whether there is a log at all (a container run attached has none).
    pub exists: bool,
}

/// Read the whole log of the container directory `dir` (`log.1` then `log`).
pub fn read_log(dir: &Path) -> std::io::Result<LogContents> {
    let mut records = Vec::new();
    let mut exists = false;
    for name in [OLD, LOG] {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => {
                exists = true;
                records.extend(
                    bytes
                        .split_inclusive(|&b| b == b'\n')
                        .filter(|l| l.ends_with(b"\n"))
                        .filter_map(decode),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(LogContents {
        records,
        dropped: read_dropped(dir),
        exists,
    })
}

/// Follows `log` from a position on (for `logs -f`), across rotations.
pub struct LogFollower {
    dir: PathBuf,
    file: Option<File>,
    inode: u64,
    partial: Vec<u8>,
}

impl LogFollower {
    /// Read the whole log like [`read_log`] and keep following `log` from where that read
    /// ended (`logs -f`): nothing written in between is lost. (A rotation between opening
    /// `log` and reading `log.1` can show a stretch twice; it cannot drop one.)
    pub fn open(dir: &Path) -> std::io::Result<(LogContents, LogFollower)> {
        let mut f = LogFollower {
            dir: dir.to_path_buf(),
            file: None,
            inode: 0,
            partial: Vec::new(),
        };
        let current = match File::open(dir.join(LOG)) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        let mut exists = current.is_some();
        match std::fs::read(dir.join(OLD)) {
            Ok(bytes) => {
                exists = true;
                records.extend(
                    bytes
                        .split_inclusive(|&b| b == b'\n')
                        .filter(|l| l.ends_with(b"\n"))
                        .filter_map(decode),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(file) = current {
            f.inode = file.metadata()?.ino();
            f.file = Some(file);
            f.drain(&mut records)?;
        }
        let contents = LogContents {
            records,
            dropped: read_dropped(dir),
            exists,
        };
        Ok((contents, f))
    }

    /// Records written since the last call.
    pub fn poll(&mut self) -> std::io::Result<Vec<LogRecord>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        // Rotated: the old file (read to its end above) became `log.1`; go on with the new one.
        if let Ok(meta) = std::fs::metadata(self.dir.join(LOG))
            && meta.ino() != self.inode
        {
            // Whatever reached the old file between the read above and the rename.
            self.drain(&mut out)?;
            if let Ok(file) = File::open(self.dir.join(LOG)) {
                self.inode = meta.ino();
                self.file = Some(file);
                self.partial.clear();
                self.drain(&mut out)?;
            }
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<LogRecord>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.partial.extend_from_slice(&bytes);
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            out.extend(
                self.partial
                    .split_inclusive(|&b| b == b'\n')
                    .filter_map(decode),
            );
            self.partial = rest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let tag = if r.stream == Stream::Stdout { "o" } else { "e" };
                format!("{tag}:{}", String::from_utf8_lossy(&r.data))
            })
            .collect()
    }

    #[test]
    fn records_keep_their_stream_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), DEFAULT_MAX_LOG).unwrap();
        w.line(Stream::Stdout, b"one").unwrap();
        w.line(Stream::Stderr, b"two").unwrap();
        w.line(Stream::Stdout, b"").unwrap();
        let log = read_log(dir.path()).unwrap();
        assert!(log.exists);
        assert_eq!(log.dropped, 0);
        assert_eq!(texts(&log.records), ["o:one\n", "e:two\n", "o:\n"]);
    }

    #[test]
    fn the_log_is_bounded_keeps_the_newest_lines_and_counts_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), MIN_MAX_LOG).unwrap();
        let line = [b'x'; 99];
        for _ in 0..1000 {
            w.line(Stream::Stdout, &line).unwrap();
        }
        w.line(Stream::Stderr, b"last").unwrap();
        let total: u64 = [LOG, OLD]
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .sum();
        assert!(total <= 2 * MIN_MAX_LOG, "{total}");
        let log = read_log(dir.path()).unwrap();
        assert!(log.dropped > 90_000, "{}", log.dropped);
        assert_eq!(log.dropped + total, 1000 * 101 + 6);
        assert_eq!(texts(&log.records).last().unwrap(), "e:last\n");
    }

    #[test]
    fn a_follower_sees_new_records_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), MIN_MAX_LOG).unwrap();
        w.line(Stream::Stdout, b"before").unwrap();
        let (contents, mut f) = LogFollower::open(dir.path()).unwrap();
        assert_eq!(texts(&contents.records), ["o:before\n"]);
        assert!(f.poll().unwrap().is_empty());
        let mut expected = Vec::new();
        for i in 0..200 {
            let l = format!("line {i:03} {}", "y".repeat(40));
            w.line(Stream::Stdout, l.as_bytes()).unwrap();
            expected.push(format!("o:{l}\n"));
            if i % 50 == 49 {
                // Polled often enough that no rotation is missed entirely.
                let got = f.poll().unwrap();
                assert_eq!(texts(&got), expected);
                expected.clear();
            }
        }
        // A partly written record is held back until it is complete.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap()
            .write_all(b"opart")
            .unwrap();
        assert!(f.poll().unwrap().is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap()
            .write_all(b"ial\n")
            .unwrap();
        assert_eq!(texts(&f.poll().unwrap()), ["o:partial\n"]);
    }
}

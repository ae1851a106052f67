//! A bounded tar stream reader. The `tar` crate decodes the 512-byte header fields; the
//! framing is ours because the crate reads PAX and GNU long-name records into memory without a
//! size bound (CVE-2022-2879 class), splits PAX records on newlines (binary xattr values such
//! as `security.capability` may contain them), and honours the size field of header-only
//! entries, where Go's `archive/tar` (what Docker and containerd use) reads no data.
//!
//! Bounds ([`crate::Limits`]): PAX and long-name records at most 1 MiB, a maximum number of
//! entries per layer and a maximum path length; GNU sparse files are refused.

use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::limits::Limits;

const BLOCK: usize = 512;

/// The type of a tar entry, after extension headers have been folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Char => "character device",
            Kind::Block => "block device",
            Kind::Fifo => "fifo",
        }
    }
}

/// One entry's metadata. Its data (for files) is read through `TarReader::data`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name as stored (PAX `path` / GNU long name / ustar prefix+name), not yet cleaned.
    pub path: Vec<u8>,
    /// Symlink target or hardlink target, as stored.
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Data bytes that follow the header (0 for everything but files).
    pub size: u64,
    /// Seconds since the epoch and nanoseconds.
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.*` records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Offset of the entry's header in the uncompressed stream, for error messages.
    pub offset: u64,
}

impl Entry {
    /// The path for messages.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Reads entries from an uncompressed tar stream with every allocation bounded.
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    entries: u64,
    done: bool,
    max_header: u64,
    max_entries: u64,
    max_path: usize,
    /// Refuse a stream that ends without the end-of-archive zero block.
    require_end: bool,
    /// Skips data by seeking instead of reading (set by `new_seekable`).
    seek: Option<fn(&mut R, u64) -> io::Result<()>>,
    /// Names the layer/archive in errors.
    name: String,
}

/// Extension records collected for the next real entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    any: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, limits: &Limits, name: impl Into<String>) -> TarReader<R> {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            entries: 0,
            done: false,
            max_header: limits.max_tar_header_bytes,
            max_entries: limits.max_layer_entries,
            max_path: limits.max_path_bytes,
            require_end: false,
            seek: None,
            name: name.into(),
        }
    }

    /// Offset in the stream of the next byte to be read: after `next_entry`, where the
    /// entry's data starts.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Require the end-of-archive marker, so a stream cut at a block boundary is reported as
    /// truncated (used for image archives; layers are covered by their digests).
    pub fn require_end_marker(mut self) -> Self {
        self.require_end = true;
        self
    }

    /// The underlying reader (positioned after whatever was consumed).
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn err(&self, offset: u64, message: impl std::fmt::Display) -> Error {
        Error::layer(&self.name, format!("at byte {offset}: {message}"))
    }

    fn io_err(&self, e: io::Error) -> Error {
        // Errors from the decompressor or a limit reader keep their own message.
        if let Some(inner) = e.get_ref()
            && let Some(store_err) = inner.downcast_ref::<crate::layer::decompress::LimitError>()
        {
            return store_err.to_error();
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return self.err(
                self.pos,
                "the archive is truncated (unexpected end of data)",
            );
        }
        Error::layer(&self.name, format!("read error at byte {}: {e}", self.pos))
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|e| self.io_err(e))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Fill `buf` completely, or report a clean EOF (no bytes at all) as `false`.
    fn read_block_or_eof(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.err(self.pos, "the archive is truncated inside a header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        self.pos += BLOCK as u64;
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        if let Some(seek) = self.seek
            && n > 0
        {
            seek(&mut self.inner, n).map_err(|e| self.io_err(e))?;
            self.pos += n;
            return Ok(());
        }
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            self.read_exact_counted(&mut buf[..want])?;
            n -= want as u64;
        }
        Ok(())
    }

    /// Skip what is left of the current entry's data and padding.
    fn finish_entry(&mut self) -> Result<()> {
        let n = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(n)
    }

    /// Read the next entry's header (skipping the rest of the previous entry's data).
    /// `Ok(None)` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        self.finish_entry()?;
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK];
        loop {
            let offset = self.pos;
            if !self.read_block_or_eof(&mut block)? {
                if pending.any {
                    return Err(self.err(offset, "extension header not followed by an entry"));
                }
                if self.require_end {
                    return Err(self.err(
                        offset,
                        "the archive is truncated (no end-of-archive marker)",
                    ));
                }
                // A stream ending without the two zero blocks: accepted, as Go's reader does.
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                let mut second = [0u8; BLOCK];
                if self.read_block_or_eof(&mut second)? && second.iter().any(|&b| b != 0) {
                    return Err(self.err(offset, "a zero block is followed by a non-zero block"));
                }
                if pending.any {
                    return Err(self.err(offset, "extension header not followed by an entry"));
                }
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&block).map_err(|m| self.err(offset, m))?;
            let header = tar::Header::from_byte_slice(&block);
            let typeflag = block[156];
            let size = header
                .entry_size()
                .map_err(|e| self.err(offset, format!("bad size field: {e}")))?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > self.max_header {
                        return Err(Error::Limit {
                            what: format!(
                                "layer {}: an extended header at byte {offset} ({size} bytes)",
                                self.name
                            ),
                            limit: format!("{} bytes", self.max_header),
                            help: "real archives never carry extended headers this large; \
                                   this one is malformed or hostile"
                                .to_string(),
                        });
                    }
                    let mut data = vec![0u8; size as usize];
                    self.read_exact_counted(&mut data)?;
                    self.skip(pad(size))?;
                    pending.any = true;
                    match typeflag {
                        b'x' => parse_pax(&data, &mut pending).map_err(|m| self.err(offset, m))?,
                        // Global headers describe the archive; like Go, we do not merge them.
                        b'g' => {}
                        b'L' => pending.path = Some(trim_nul(data)),
                        _ => pending.link = Some(trim_nul(data)),
                    }
                    continue;
                }
                _ => {}
            }
            self.entries += 1;
            if self.entries > self.max_entries {
                return Err(Error::Limit {
                    what: format!("layer {}: number of entries", self.name),
                    limit: format!("{}", self.max_entries),
                    help: "split the content over several layers".to_string(),
                });
            }
            let path = pending
                .path
                .take()
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let link = pending.link.take().unwrap_or_else(|| {
                header
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default()
            });
            if path.len() > self.max_path || link.len() > self.max_path {
                return Err(Error::Limit {
                    what: format!("layer {}: a path at byte {offset}", self.name),
                    limit: format!("{} bytes", self.max_path),
                    help: "Linux paths cannot be longer than 4096 bytes".to_string(),
                });
            }
            let kind = match typeflag {
                b'0' | 0 | b'7' => {
                    if path.ends_with(b"/") {
                        Kind::Dir // old v7 archives mark directories with a trailing slash
                    } else {
                        Kind::File
                    }
                }
                b'1' => Kind::Hardlink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'S' => {
                    return Err(self.err(
                        offset,
                        format!(
                            "`{}` is a GNU sparse file, which layers must not contain",
                            String::from_utf8_lossy(&path)
                        ),
                    ));
                }
                other => {
                    return Err(self.err(
                        offset,
                        format!(
                            "`{}` has unsupported tar entry type `{}`",
                            String::from_utf8_lossy(&path),
                            other.escape_ascii()
                        ),
                    ));
                }
            };
            let data_size = match kind {
                Kind::File => pending.size.unwrap_or(size),
                // Header-only types carry no data whatever the size field says (as in Go).
                _ => 0,
            };
            let field = |r: io::Result<u64>, what: &str| {
                r.map_err(|e| self.err(offset, format!("bad {what} field: {e}")))
            };
            let mode = field(header.mode().map(u64::from), "mode")? as u32 & 0o7777;
            let uid = match pending.uid {
                Some(u) => u,
                None => field(header.uid(), "uid")?,
            };
            let gid = match pending.gid {
                Some(g) => g,
                None => field(header.gid(), "gid")?,
            };
            let (mtime, mtime_nsec) = match pending.mtime {
                Some(t) => t,
                None => (field(header.mtime(), "mtime")? as i64, 0),
            };
            let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
                let maj = header
                    .device_major()
                    .map_err(|e| self.err(offset, format!("bad device major: {e}")))?
                    .unwrap_or(0);
                let min = header
                    .device_minor()
                    .map_err(|e| self.err(offset, format!("bad device minor: {e}")))?
                    .unwrap_or(0);
                (maj, min)
            } else {
                (0, 0)
            };
            self.remaining = data_size;
            // Header-only entries whose size field is non-zero: Go skips nothing, neither do we.
            self.padding = pad(data_size);
            return Ok(Some(Entry {
                path,
                link,
                kind,
                mode,
                uid,
                gid,
                size: data_size,
                mtime,
                mtime_nsec,
                dev_major,
                dev_minor,
                xattrs: std::mem::take(&mut pending.xattrs),
                offset,
            }));
        }
    }

    /// Read the current entry's data.
    pub fn data(&mut self) -> DataReader<'_, R> {
        DataReader { tar: self }
    }
}

impl<R: Read + io::Seek> TarReader<R> {
    /// A reader over a seekable source that skips entry data by seeking (listing a large
    /// uncompressed archive reads only its headers). A source that ends early is reported
    /// as truncated at the next header read.
    pub fn new_seekable(inner: R, limits: &Limits, name: impl Into<String>) -> TarReader<R> {
        let mut t = TarReader::new(inner, limits, name);
        t.seek = Some(|r: &mut R, n: u64| {
            let n = i64::try_from(n).map_err(|_| io::Error::other("entry too large"))?;
            r.seek(io::SeekFrom::Current(n)).map(|_| ())
        });
        t
    }
}

/// The data of the current entry.
pub struct DataReader<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.tar.remaining) as usize;
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive is truncated inside a file's data",
            ));
        }
        self.tar.remaining -= n as u64;
        self.tar.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> TarReader<R> {
    /// Convert an error from reading entry data into a store error naming the entry.
    pub fn data_error(&self, entry: &Entry, e: io::Error) -> Error {
        if let Some(inner) = e.get_ref()
            && let Some(le) = inner.downcast_ref::<crate::layer::decompress::LimitError>()
        {
            return le.to_error();
        }
        Error::layer(
            &self.name,
            format!("reading `{}`: {e}", entry.display_path()),
        )
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(p) = v.iter().position(|&b| b == 0) {
        v.truncate(p);
    }
    v
}

fn verify_checksum(block: &[u8; BLOCK]) -> std::result::Result<(), String> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    let stored =
        u32::from_str_radix(std::str::from_utf8(&text).unwrap_or(""), 8).map_err(|_| {
            "the header checksum field is not octal (corrupt or not a tar archive)".to_string()
        })?;
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if stored == unsigned || stored as i32 == signed {
        Ok(())
    } else {
        Err("header checksum mismatch (corrupt or not a tar archive)".to_string())
    }
}

/// Parse PAX records (`"%d %s=%s\n"`, the length counting the whole record) into `p`.
fn parse_pax(mut data: &[u8], p: &mut Pending) -> std::result::Result<(), String> {
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed PAX record (no length)")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("malformed PAX record length")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("malformed PAX record (length does not match)".to_string());
        }
        let record = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("malformed PAX record (no `=`)")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let num = |v: &[u8]| -> std::result::Result<u64, String> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("PAX `{}` is not a number", String::from_utf8_lossy(key)))
        };
        match key {
            b"path" => p.path = Some(value.to_vec()),
            b"linkpath" => p.link = Some(value.to_vec()),
            b"size" => p.size = Some(num(value)?),
            b"uid" => p.uid = Some(num(value)?),
            b"gid" => p.gid = Some(num(value)?),
            b"mtime" => p.mtime = Some(parse_pax_time(value)?),
            _ if key.starts_with(b"SCHILY.xattr.") => {
                p.xattrs.push((key[13..].to_vec(), value.to_vec()));
            }
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err(
                    "GNU sparse files (PAX GNU.sparse.*) are not supported in layers".to_string(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_pax_time(v: &[u8]) -> std::result::Result<(i64, u32), String> {
    let s = std::str::from_utf8(v).map_err(|_| "PAX mtime is not text")?;
    let bad = || format!("PAX mtime `{s}` is not a timestamp");
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().map_err(|_| bad())?;
    // A negative time with a fraction counts down: -1.5 is 1.5 s before the epoch.
    if secs < 0 && nsec > 0 {
        Ok((secs - 1, 1_000_000_000 - nsec))
    } else {
        Ok((secs, nsec))
    }
}

/// Whether `block` (a stream's first 512 bytes) starts a tar archive: `ustar` magic at offset
/// 257, or a valid old-style header checksum.
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == Some(sum) && block[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_allow_newlines_in_values() {
        let value = b"a\nb";
        let body = [b"SCHILY.xattr.user.x=".as_slice(), value, b"\n"].concat();
        // length = digits + space + body
        let len = body.len() + 3;
        let data = [format!("{len} ").as_bytes(), &body].concat();
        let mut p = Pending::default();
        parse_pax(&data, &mut p).unwrap();
        assert_eq!(p.xattrs, vec![(b"user.x".to_vec(), value.to_vec())]);
    }

    #[test]
    fn pax_time_parses_fractions() {
        assert_eq!(
            parse_pax_time(b"1700000000.5").unwrap(),
            (1_700_000_000, 500_000_000)
        );
        assert_eq!(parse_pax_time(b"12").unwrap(), (12, 0));
        assert!(parse_pax_time(b"x").is_err());
    }
}

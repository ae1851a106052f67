//! A deterministic tar writer for archives we produce: fixed owner (0:0), mtime 0, empty user
//! and group names, fixed modes, GNU headers (base-256 sizes for huge blobs). Entry order is
//! the caller's; `save` sorts.

use std::io::{self, Read, Write};

pub(crate) struct TarOut<W: Write> {
    out: W,
}

impl<W: Write> TarOut<W> {
    pub(crate) fn new(out: W) -> Self {
        TarOut { out }
    }

    fn header(&mut self, path: &str, kind: tar::EntryType, size: u64, mode: u32) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_path(path)?;
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.out.write_all(&[0u8; 512][..pad])
    }

    pub(crate) fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(path, tar::EntryType::Directory, 0, 0o755)
    }

    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, data.len() as u64, 0o644)?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Copy exactly `size` bytes from `r` (a blob file); fails if it is shorter.
    pub(crate) fn file_from(&mut self, path: &str, size: u64, r: &mut impl Read) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, size, 0o644)?;
        let copied = io::copy(&mut r.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{path}` is {copied} bytes, expected {size}"),
            ));
        }
        self.pad(size)
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

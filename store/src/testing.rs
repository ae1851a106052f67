//! Building tar archives byte by byte, including entries ordinary writers refuse to produce
//! (`..` names, absolute names, links out of the root, bad whiteouts, huge headers). Used by
//! the tests of this crate, of the CLI and of the executor to exercise hostile input. Also the
//! config projection of the build conformance format ([`conformance_config_fields`]), which the
//! planner's and the CLI's conformance tests compare with BuildKit's recordings.

/// One entry to write. Fields are raw: nothing is validated or cleaned.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub path: Vec<u8>,
    /// The ustar typeflag (`b'0'` file, `b'5'` dir, `b'2'` symlink, `b'1'` hardlink, ...).
    pub typeflag: u8,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Vec<u8>,
    pub mtime: u64,
    pub dev: (u32, u32),
    /// PAX records written in an `x` header before the entry (e.g. `SCHILY.xattr.*`).
    pub pax: Vec<(String, Vec<u8>)>,
}

impl RawEntry {
    pub fn new(path: impl AsRef<[u8]>, typeflag: u8) -> RawEntry {
        RawEntry {
            path: path.as_ref().to_vec(),
            typeflag,
            data: Vec::new(),
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            link: Vec::new(),
            mtime: 0,
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
}

/// Accumulates a tar archive in memory.
#[derive(Debug, Default, Clone)]
pub struct TarBuilder {
    buf: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    pub fn file(&mut self, path: impl AsRef<[u8]>, data: &[u8]) -> &mut Self {
        let mut e = RawEntry::new(path, b'0');
        e.data = data.to_vec();
        self.entry(e)
    }

    pub fn file_mode(
        &mut self,
        path: impl AsRef<[u8]>,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut e = RawEntry::new(path, b'0');
        e.data = data.to_vec();
        e.mode = mode;
        e.uid = uid;
        e.gid = gid;
        self.entry(e)
    }

    pub fn dir(&mut self, path: impl AsRef<[u8]>) -> &mut Self {
        self.entry(RawEntry::new(path, b'5'))
    }

    pub fn symlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut e = RawEntry::new(path, b'2');
        e.link = target.as_ref().to_vec();
        e.mode = 0o777;
        self.entry(e)
    }

    pub fn hardlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let mut e = RawEntry::new(path, b'1');
        e.link = target.as_ref().to_vec();
        self.entry(e)
    }

    pub fn char_device(&mut self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> &mut Self {
        let mut e = RawEntry::new(path, b'3');
        e.dev = (major, minor);
        e.mode = 0o666;
        self.entry(e)
    }

    pub fn fifo(&mut self, path: impl AsRef<[u8]>) -> &mut Self {
        self.entry(RawEntry::new(path, b'6'))
    }

    /// Append an entry; names or link targets over 100 bytes go into a PAX header.
    pub fn entry(&mut self, mut e: RawEntry) -> &mut Self {
        if e.path.len() > 100 {
            e.pax.push(("path".to_string(), e.path.clone()));
        }
        if e.link.len() > 100 {
            e.pax.push(("linkpath".to_string(), e.link.clone()));
        }
        if !e.pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &e.pax {
                body.extend(pax_record(k.as_bytes(), v));
            }
            self.raw_header(
                b"././@PaxHeader",
                b'x',
                body.len() as u64,
                0o644,
                0,
                0,
                b"",
                0,
                (0, 0),
            );
            self.data(&body);
        }
        let name: Vec<u8> = e.path.iter().copied().take(100).collect();
        let link: Vec<u8> = e.link.iter().copied().take(100).collect();
        self.raw_header(
            &name,
            e.typeflag,
            e.data.len() as u64,
            e.mode,
            e.uid,
            e.gid,
            &link,
            e.mtime,
            e.dev,
        );
        let data = e.data.clone();
        self.data(&data);
        self
    }

    /// A PAX extended header whose declared size is `size` bytes of `fill` (for oversized
    /// header tests), followed by a small file.
    pub fn huge_pax_header(&mut self, size: usize) -> &mut Self {
        self.raw_header(
            b"././@PaxHeader",
            b'x',
            size as u64,
            0o644,
            0,
            0,
            b"",
            0,
            (0, 0),
        );
        let mut body = pax_record(b"comment", &vec![b'a'; size.saturating_sub(20)]);
        body.resize(size, b'\n');
        self.data(&body);
        self.file("after", b"x")
    }

    /// Write one header block (ustar format) with the given raw fields.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_header(
        &mut self,
        name: &[u8],
        typeflag: u8,
        size: u64,
        mode: u32,
        uid: u64,
        gid: u64,
        link: &[u8],
        mtime: u64,
        dev: (u32, u32),
    ) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
            old.linkname = [0; 100];
            old.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        }
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(mtime);
        h.as_old_mut().linkflag = [typeflag];
        let _ = h.set_device_major(dev.0);
        let _ = h.set_device_minor(dev.1);
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self
    }

    /// Append data padded to a block boundary.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// Append arbitrary bytes (e.g. trailing garbage).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The archive with its two terminating zero blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut v = self.buf.clone();
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }

    /// The bytes so far, without terminator.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// One PAX record `"<len> key=value\n"`, the length counting itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut v = format!("{len} ").into_bytes();
    v.extend_from_slice(key);
    v.push(b'=');
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

/// gzip `data` (one member).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("in-memory write");
    e.finish().expect("in-memory write")
}

/// The container-config fields the build conformance format records
/// (`../shared/conformance/build/README.md`), with null and empty values left out.
pub fn conformance_config_fields(config: &crate::ContainerConfig) -> serde_json::Value {
    let full = serde_json::to_value(config).expect("a config serialises");
    let mut out = serde_json::Map::new();
    for key in [
        "User",
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ] {
        if let Some(v) = full.get(key) {
            let empty = v.is_null()
                || v.as_array().is_some_and(Vec::is_empty)
                || v.as_object().is_some_and(serde_json::Map::is_empty)
                || v.as_str().is_some_and(str::is_empty);
            if !empty {
                out.insert(key.to_string(), v.clone());
            }
        }
    }
    serde_json::Value::Object(out)
}

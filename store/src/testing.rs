//! Building tar archives byte by byte, including entries ordinary writers refuse to produce
//! (`..` names, absolute names, links out of the root, bad whiteouts, huge headers). Used by
//! the tests of this crate, of the CLI and of the executor to exercise hostile input. Also the
//! config projection of the build conformance format ([`conformance_config_fields`]), which the
//! planner's and the CLI's conformance tests compare with BuildKit's recordings. And
//! [`OciArchive`], OCI layout archives assembled blob by blob (multi-platform indexes,
//! attestations, nesting) for the archive tests.

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

/// An OCI layout archive assembled blob by blob, for multi-platform tests: platform images,
/// attestation manifests, image indexes (nested, or wrong on purpose) and the index.json
/// entries naming them. Descriptors are JSON values a test may edit before listing them.
#[derive(Debug, Default, Clone)]
pub struct OciArchive {
    blobs: std::collections::BTreeMap<String, Vec<u8>>,
    entries: Vec<serde_json::Value>,
}

impl OciArchive {
    pub fn new() -> OciArchive {
        OciArchive::default()
    }

    /// Add a blob; its descriptor (`mediaType`, `digest`, `size`).
    pub fn blob(&mut self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let d = crate::Digest::of(bytes);
        self.blobs
            .insert(format!("blobs/sha256/{}", d.hex()), bytes.to_vec());
        serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
    }

    /// A one-layer image for `os/arch` whose layer is `layer` (an uncompressed tar): the
    /// manifest's descriptor, with its platform.
    pub fn image(&mut self, os: &str, arch: &str, layer: &[u8]) -> serde_json::Value {
        let diff_id = crate::Digest::of(layer);
        self.image_with_layer(
            os,
            arch,
            "application/vnd.oci.image.layer.v1.tar",
            layer,
            &diff_id,
        )
    }

    /// [`image`](Self::image) with a layer blob of any media type (a gzipped tar, say) whose
    /// uncompressed content has the digest `diff_id`.
    pub fn image_with_layer(
        &mut self,
        os: &str,
        arch: &str,
        media_type: &str,
        layer: &[u8],
        diff_id: &crate::Digest,
    ) -> serde_json::Value {
        let l = self.blob(media_type, layer);
        let config = serde_json::json!({
            "architecture": arch, "os": os, "created": "2024-05-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created_by": format!("layer for {os}/{arch}")}]
        });
        let c = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).expect("json"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c, "layers": [l],
        });
        let mut m = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        m["platform"] = serde_json::json!({"os": os, "architecture": arch});
        m
    }

    /// A BuildKit-style attestation manifest for the image `subject` (platform
    /// `unknown/unknown`, an in-toto layer that is not a tar).
    pub fn attestation(&mut self, subject: &serde_json::Value) -> serde_json::Value {
        let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2"}"#;
        let l = self.blob("application/vnd.in-toto+json", statement);
        let config = serde_json::json!({
            "architecture": "unknown", "os": "unknown", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [l["digest"]]}
        });
        let c = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).expect("json"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c, "layers": [l],
        });
        let mut m = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        m["platform"] = serde_json::json!({"os": "unknown", "architecture": "unknown"});
        m["annotations"] = serde_json::json!({
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject["digest"],
        });
        m
    }

    /// An image index listing `entries`: its descriptor.
    pub fn index(&mut self, entries: &[serde_json::Value]) -> serde_json::Value {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        self.blob(
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).expect("json"),
        )
    }

    /// List `desc` in index.json, named `name` (a full reference) or untagged.
    pub fn entry(&mut self, desc: &serde_json::Value, name: Option<&str>) -> &mut OciArchive {
        let mut e = desc.clone();
        if let Some(n) = name {
            e["annotations"] = serde_json::json!({"io.containerd.image.name": n});
        }
        self.entries.push(e);
        self
    }

    /// Leave the blob of `desc` out of the archive.
    pub fn drop_blob(&mut self, desc: &serde_json::Value) -> &mut OciArchive {
        let d = desc["digest"].as_str().expect("a descriptor");
        let hex = d.strip_prefix("sha256:").unwrap_or(d);
        self.blobs.remove(&format!("blobs/sha256/{hex}"));
        self
    }

    /// Put `bytes` in the archive under the blob name of `digest` (which they need not hash
    /// to: hostile archives).
    pub fn raw_blob(&mut self, digest: &str, bytes: &[u8]) -> &mut OciArchive {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.blobs
            .insert(format!("blobs/sha256/{hex}"), bytes.to_vec());
        self
    }

    /// The archive: `oci-layout`, the blobs, `index.json`.
    pub fn build(&self) -> Vec<u8> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.entries,
        });
        let mut t = TarBuilder::new();
        t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        for (name, data) in &self.blobs {
            t.file(name, data);
        }
        t.file("index.json", &serde_json::to_vec(&index).expect("json"));
        t.finish()
    }
}

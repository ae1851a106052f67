//! Reading an OCI image-layout archive (a tar, as `rbuild save`, BuildKit's `type=oci` output
//! and the shared fixtures are) in tests: its `index.json`, documents and blobs by digest, and
//! layers decompressed the way the store reads them. Trusted test input, held in memory.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use rbuild_store::manifest::{Document, Index, parse_document};
use rbuild_store::{Descriptor, ImageConfig, Limits, Manifest, Platform};

/// Every regular file of an OCI layout tar, by its path (without a leading `./`).
pub struct OciArchive {
    files: HashMap<String, Vec<u8>>,
}

impl OciArchive {
    pub fn open(path: &Path) -> Result<OciArchive, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut archive = tar::Archive::new(file);
        let mut files = HashMap::new();
        let entries = archive
            .entries()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().map_err(|e| e.to_string())?;
            let mut name = name.to_string_lossy().into_owned();
            while let Some(rest) = name.strip_prefix("./") {
                name = rest.to_string();
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
            files.insert(name.trim_start_matches('/').to_string(), data);
        }
        Ok(OciArchive { files })
    }

    pub fn read(&self, name: &str) -> Result<&[u8], String> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("the archive has no {name}"))
    }

    pub fn blob(&self, desc: &Descriptor) -> Result<&[u8], String> {
        self.read(&format!("blobs/sha256/{}", desc.digest.hex()))
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Index, String> {
        serde_json::from_slice(self.read("index.json")?).map_err(|e| format!("index.json: {e}"))
    }

    /// The manifest or index `desc` names.
    pub fn document(&self, desc: &Descriptor) -> Result<Document, String> {
        parse_document(
            self.blob(desc)?,
            Some(&desc.media_type),
            8 << 20,
            desc.digest.as_str(),
        )
        .map_err(|e| e.to_string())
    }

    /// The image config `desc` names.
    pub fn config(&self, desc: &Descriptor) -> Result<ImageConfig, String> {
        serde_json::from_slice(self.blob(desc)?).map_err(|e| format!("{}: {e}", desc.digest))
    }

    /// The images of the layout's first entry (the first naming `reference` among its
    /// annotation values, when one does), walked as `../shared/tools/imgtree.py`'s
    /// `summarize_all` does: an image index gives each of its entries with the entry's
    /// platform, attestation manifests (`unknown/unknown`) left out; a single manifest gives
    /// itself, with the platform its descriptor in `index.json` states, if any.
    pub fn images(
        &self,
        reference: Option<&str>,
    ) -> Result<Vec<(Option<Platform>, Manifest)>, String> {
        let index = self.index()?;
        let named: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| {
                reference.is_some_and(|r| {
                    d.annotations
                        .as_ref()
                        .is_some_and(|a| a.values().any(|v| v == r))
                })
            })
            .collect();
        let first = named
            .first()
            .copied()
            .or(index.manifests.first())
            .ok_or("index.json lists no image")?;
        match self.document(first)? {
            Document::Manifest(m) => Ok(vec![(first.platform.clone(), *m)]),
            Document::Index(i) => {
                let mut out = Vec::new();
                for d in &i.manifests {
                    if d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
                    {
                        continue;
                    }
                    match self.document(d)? {
                        Document::Manifest(m) => out.push((d.platform.clone(), *m)),
                        Document::Index(_) => {
                            return Err(format!("{}: a nested index in an index", d.digest));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The manifest of `platform` in the layout's first entry (see [`OciArchive::images`]).
    pub fn image_for(&self, platform: &str) -> Result<Manifest, String> {
        let want: Platform = platform.parse().map_err(|e| format!("{e}"))?;
        self.images(None)?
            .into_iter()
            .find(|(p, _)| p.as_ref().is_some_and(|p| p.normalized() == want))
            .map(|(_, m)| m)
            .ok_or_else(|| format!("the archive has no image for {platform}"))
    }

    /// Docker's size of the image `m`: its config plus its layers uncompressed.
    pub fn content_size(&self, m: &Manifest) -> Result<u64, String> {
        let mut total = m.config.size;
        for l in &m.layers {
            total += std::io::copy(&mut self.layer(l)?, &mut std::io::sink())
                .map_err(|e| format!("layer {}: {e}", l.digest))?;
        }
        Ok(total)
    }

    /// A layer's uncompressed tar stream (compression sniffed by magic, as the store does).
    pub fn layer(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, String> {
        let (_, reader) = rbuild_store::layer::decompress(
            self.blob(desc)?,
            None,
            &Limits::default(),
            desc.digest.as_str(),
        )
        .map_err(|e| e.to_string())?;
        Ok(reader)
    }
}

//! `load`: read an image archive (OCI layout tar or docker-archive, optionally compressed)
//! from any stream in one pass. Every member goes into `ingest/` while being hashed (in
//! parallel for an uncompressed archive file; streamed for stdin or compressed input); then the
//! documents are parsed strictly (size caps, I-JSON duplicate keys refused, schemaVersion 2,
//! media-type agreement, manifest/index ambiguity refused, a member named `blobs/sha256/X` must
//! hash to X), every referenced blob is checked against its digest and size, every layer is
//! scanned (in parallel) and its diff_id checked against the config. Only when all images pass
//! are blobs published (layers, configs, manifests) and all images and names registered in one
//! index.json update: bad input leaves the store as it was.
//!
//! Read: OCI layouts and docker-archives with any member layout, symlinked members, and gzip,
//! zstd or uncompressed layers (a manifest is built for a docker-archive); Docker schema 2
//! media types are accepted.
//!
//! Multi-platform images: an index.json entry that is an image index is kept as it is, with
//! every platform image the archive holds (each validated and scanned as above), its nested
//! indexes and its attestation manifests (platform `unknown/unknown`: their blobs verified,
//! never scanned or unpacked); the names point at the index (docker with the containerd image
//! store does the same). Entries the archive lacks are left out (a platform never fetched);
//! a platform image the archive holds only in part is left out with a note. Indexes nest at
//! most [`MAX_INDEX_DEPTH`] levels and an index that lists itself is refused. A docker-archive
//! holds single-platform images only.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use rayon::prelude::*;
use serde::Deserialize;

use crate::blob::PendingBlob;
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::index;
use crate::json;
use crate::layer::decompress::decompress;
use crate::layer::path::{self, AbsolutePaths, RelPath};
use crate::layer::scan::scan;
use crate::layer::tar::{Kind, TarReader};
use crate::manifest::{self, Descriptor, Document, Index, Manifest, Platform};
use crate::media::{self, Compression};
use crate::reference::Reference;
use crate::store::Store;
use crate::target::Target;

/// One loaded image: a single-platform image or a multi-platform index.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub target: Target,
    pub names: Vec<Reference>,
    /// Names that pointed at another image before (that image's manifest digest).
    pub moved: Vec<(Reference, Digest)>,
}

/// What `load` did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub images: Vec<LoadedImage>,
    /// Things the user should know (entries skipped, names not usable).
    pub notes: Vec<String>,
}

/// Archive members staged in `ingest/`.
struct Members {
    files: BTreeMap<String, PendingBlob>,
    aliases: BTreeMap<String, String>,
}

impl Members {
    /// The staged file a member name refers to, following links; `(real name, blob)`.
    fn resolve(&self, name: &str) -> Option<(&str, &PendingBlob)> {
        if let Some((k, p)) = self.files.get_key_value(name) {
            return Some((k.as_str(), p));
        }
        let mut cur = self.aliases.get(name)?;
        for _ in 0..16 {
            if let Some((k, p)) = self.files.get_key_value(cur.as_str()) {
                return Some((k.as_str(), p));
            }
            cur = self.aliases.get(cur.as_str())?;
        }
        None
    }
}

/// One layer to validate: archive member, descriptor media type (if any), expected diff_id.
struct LayerJob {
    member: String,
    declared: Option<Compression>,
    diff_id: Digest,
    what: String,
}

/// One image of the archive, validated: its members in publishing order and its layers.
struct ImageParts {
    members: Vec<String>,
    layers: Vec<LayerJob>,
    platform: Platform,
}

/// What the archive holds under one image index.
#[derive(Default)]
struct IndexParts {
    /// Members in publishing order: every blob before the documents that reference it.
    members: Vec<String>,
    layers: Vec<LayerJob>,
    /// The platforms of its images, in walk order.
    platforms: Vec<Platform>,
}

/// Whether an index entry is an attestation manifest (BuildKit's provenance and SBOMs:
/// platform `unknown/unknown`, `vnd.docker.reference.type`) or another artifact whose config
/// is not an image config: kept, never unpacked.
fn is_artifact(entry: &Descriptor, manifest: &Manifest) -> bool {
    crate::target::is_attestation(entry) || !media::is_image_config(&manifest.config.media_type)
}

/// One image ready to commit.
struct Prepared {
    /// Members to publish, in order: layers, config, manifest (when from the archive).
    members: Vec<String>,
    /// Manifest bytes to create (docker-archive), or None (the manifest is a member).
    new_manifest: Option<Vec<u8>>,
    manifest_desc: Option<Descriptor>,
    names: Vec<Reference>,
    layers: Vec<LayerJob>,
    /// docker-archive: layer descriptors are built after scanning.
    docker_layers: Option<(ImageConfig, Vec<u8>, Digest, u64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What to do with one archive entry.
enum Plan {
    Skip,
    File(String),
    Alias(String, String),
}

/// Classify an archive entry: its cleaned name, and whether it is data or a link.
fn plan_entry(entry: &crate::layer::tar::Entry, m: &Members) -> Result<Plan> {
    let shown = entry.display_path();
    let p = path::clean(&entry.path, AbsolutePaths::Strip).map_err(|why| {
        Error::archive(
            format!("archive member `{shown}` {why}"),
            "the archive is malformed or hostile",
        )
    })?;
    let name = String::from_utf8(p.0.clone()).map_err(|_| {
        Error::archive(
            format!("archive member `{shown}` has a non-UTF-8 name"),
            "the archive is malformed",
        )
    })?;
    if m.files.contains_key(&name) || m.aliases.contains_key(&name) {
        return Err(twice(&name));
    }
    match entry.kind {
        Kind::Dir => Ok(Plan::Skip),
        Kind::File => Ok(Plan::File(name)),
        Kind::Symlink | Kind::Hardlink => {
            let base = if entry.kind == Kind::Symlink {
                p.split_last()
                    .map(|(parent, _)| parent)
                    .unwrap_or_else(RelPath::root)
            } else {
                RelPath::root()
            };
            let t = resolve_link(&base, &entry.link).ok_or_else(|| {
                Error::archive(
                    format!("archive link `{name}` points outside the archive"),
                    "the archive is malformed or hostile",
                )
            })?;
            Ok(Plan::Alias(
                name,
                String::from_utf8_lossy(&t.0).into_owned(),
            ))
        }
        other => Err(Error::archive(
            format!(
                "archive member `{name}` is a {}, which image archives do not contain",
                other.name()
            ),
            "the archive is malformed or hostile",
        )),
    }
}

/// How deep image indexes may nest in a loaded archive (the top-level entry is depth 0).
pub const MAX_INDEX_DEPTH: usize = 4;

fn archive_err(e: Error) -> Error {
    match e {
        Error::Layer { message, .. } => Error::archive(
            format!("the archive is not a valid tar file: {message}"),
            "the file is truncated or corrupt; save or download it again",
        ),
        other => other,
    }
}

fn truncated(name: &str) -> Error {
    Error::archive(
        format!("the archive is truncated inside member `{name}`"),
        "the file is incomplete; save or download it again",
    )
}

fn twice(name: &str) -> Error {
    Error::archive(
        format!("archive member `{name}` appears twice"),
        "the archive is malformed or hostile",
    )
}

fn blob_member(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

impl Store {
    /// Load every image of an archive. See the module docs for the guarantees.
    pub fn load(&self, input: impl Read + Send) -> Result<LoadReport> {
        let members = self.stage_members(input)?;
        self.load_members(members)
    }

    /// Load an archive file. An uncompressed archive is staged in parallel (members hashed
    /// concurrently), anything else is streamed as by `load`.
    pub fn load_file(&self, path: &std::path::Path) -> Result<LoadReport> {
        let mut file = File::open(path).ctx("open", path)?;
        let mut head = [0u8; 6];
        let n = file.read(&mut head).ctx("read", path)?;
        {
            use std::io::Seek;
            file.rewind().ctx("read", path)?;
        }
        let members = if Compression::from_magic(&head[..n]) == Compression::None {
            self.stage_members_file(&file)?
        } else {
            self.stage_members(BufReader::with_capacity(1 << 20, file))?
        };
        self.load_members(members)
    }

    fn load_members(&self, members: Members) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let mut prepared = if members.resolve("index.json").is_some() {
            self.prepare_oci(&members, &mut report)?
        } else if members.resolve("manifest.json").is_some() {
            self.prepare_docker(&members)?
        } else {
            return Err(Error::archive(
                "the archive has neither `index.json` (OCI layout) nor `manifest.json` (docker-archive)",
                "pass a file written by `rbuild save`, `docker save`, `podman save` or `skopeo copy`",
            ));
        };
        if prepared.is_empty() {
            // Say why each entry was passed over (e.g. a media type that is not an image).
            let why = if report.notes.is_empty() {
                String::new()
            } else {
                format!(": {}", report.notes.join("; "))
            };
            return Err(Error::archive(
                format!("the archive contains no images{why}"),
                "check the archive's index.json / manifest.json",
            ));
        }

        // One name, one image: an archive that names two images the same is ambiguous.
        let mut named: BTreeMap<Reference, String> = BTreeMap::new();
        for p in &mut prepared {
            let key = match &p.manifest_desc {
                Some(d) => d.digest.to_string(),
                None => p.members.last().cloned().unwrap_or_default(),
            };
            let mut unique = Vec::new();
            for n in p.names.drain(..) {
                match named.get(&n) {
                    Some(k) if *k != key => {
                        return Err(Error::archive(
                            format!(
                                "the archive gives the name `{}` to two different images",
                                n.familiar()
                            ),
                            "an archive must name each image at most once; fix or re-save it",
                        ));
                    }
                    Some(_) => {}
                    None => {
                        named.insert(n.clone(), key.clone());
                        unique.push(n);
                    }
                }
            }
            p.names = unique;
        }

        // Validate every layer of every image before publishing anything.
        let jobs: Vec<(usize, usize)> = prepared
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (0..p.layers.len()).map(move |j| (i, j)))
            .collect();
        let results: Vec<Result<(usize, usize, Compression)>> = jobs
            .par_iter()
            .map(|&(i, j)| {
                let job = &prepared[i].layers[j];
                let (_, blob) = members
                    .resolve(&job.member)
                    .ok_or_else(|| missing(&job.member, &job.what))?;
                let mut f = File::open(blob.path()).ctx("open", blob.path())?;
                let mut head = [0u8; 6];
                let n = f.read(&mut head).ctx("read", blob.path())?;
                if Compression::from_magic(&head[..n]) == Compression::None {
                    // Uncompressed: the blob digest (computed while staging) is the diff_id.
                    if blob.info.digest != job.diff_id {
                        return Err(Error::DigestMismatch {
                            what: format!("uncompressed content of {} (its diff_id)", job.what),
                            expected: job.diff_id.clone(),
                            actual: blob.info.digest.clone(),
                        });
                    }
                    crate::layer::scan::scan_headers(&f, &self.limits, &job.what)?;
                    return Ok((i, j, Compression::None));
                }
                let f = File::open(blob.path()).ctx("open", blob.path())?;
                let (c, r) = decompress(
                    BufReader::with_capacity(1 << 20, f),
                    job.declared,
                    &self.limits,
                    &job.what,
                )?;
                let s = scan(r, &self.limits, &job.what)?;
                if s.diff_id != job.diff_id {
                    return Err(Error::DigestMismatch {
                        what: format!("uncompressed content of {} (its diff_id)", job.what),
                        expected: job.diff_id.clone(),
                        actual: s.diff_id,
                    });
                }
                Ok((i, j, c))
            })
            .collect();
        let mut compressions: BTreeMap<(usize, usize), Compression> = BTreeMap::new();
        for r in results {
            let (i, j, c) = r?;
            compressions.insert((i, j), c);
        }

        // docker-archive: now that compressions are known, build the manifests.
        for (i, p) in prepared.iter_mut().enumerate() {
            let Some((_, config_bytes, config_digest, config_size)) = p.docker_layers.take() else {
                continue;
            };
            let _ = config_bytes;
            let mut layers = Vec::new();
            for (j, job) in p.layers.iter().enumerate() {
                let c = compressions[&(i, j)];
                let mt = c.oci_layer_media_type().ok_or_else(|| {
                    Error::archive(
                        format!(
                            "{} is {}-compressed, which image layers cannot be",
                            job.what,
                            c.name()
                        ),
                        "re-save the image with uncompressed or gzip layers",
                    )
                })?;
                let (_, blob) = members
                    .resolve(&job.member)
                    .ok_or_else(|| missing(&job.member, &job.what))?;
                layers.push(Descriptor::new(
                    mt,
                    blob.info.digest.clone(),
                    blob.info.size,
                ));
            }
            let m = Manifest::new_oci(
                Descriptor::new(media::OCI_CONFIG, config_digest, config_size),
                layers,
            );
            p.new_manifest = Some(json::to_canonical_vec(&m)?);
        }

        // Publish: blobs (layers, config, manifest), then index.json entries and names.
        let mut members = members;
        for p in &prepared {
            for name in &p.members {
                let real = members.resolve(name).map(|(r, _)| r.to_string());
                if let Some(real) = real
                    && let Some(blob) = members.files.remove(&real)
                {
                    blob.commit(self)?;
                }
            }
        }
        let mut batch = Vec::with_capacity(prepared.len());
        for p in prepared {
            let desc = match (&p.new_manifest, p.manifest_desc) {
                (Some(bytes), _) => {
                    let info = self.put_blob(bytes)?;
                    Descriptor::new(media::OCI_MANIFEST, info.digest, info.size)
                }
                (None, Some(d)) => d,
                (None, None) => unreachable_prepared()?,
            };
            batch.push((desc, p.names));
        }
        let registered = self.register_targets(&batch)?;
        for ((_, names), (target, moved)) in batch.into_iter().zip(registered) {
            report.images.push(LoadedImage {
                target,
                names,
                moved,
            });
        }
        Ok(report)
    }

    /// Read the archive once, staging every regular file in `ingest/` (hashed).
    fn stage_members(&self, input: impl Read + Send) -> Result<Members> {
        let (_, reader) = decompress(input, None, &self.limits, "archive").map_err(|e| {
            Error::archive(
                format!("cannot read the archive: {e}"),
                "pass an image archive",
            )
        })?;
        let mut tar = TarReader::new(reader, &self.limits, "archive").require_end_marker();
        let mut m = Members {
            files: BTreeMap::new(),
            aliases: BTreeMap::new(),
        };
        while let Some(entry) = tar.next_entry().map_err(archive_err)? {
            match plan_entry(&entry, &m)? {
                Plan::Skip => {}
                Plan::Alias(name, target) => {
                    m.aliases.insert(name, target);
                }
                Plan::File(name) => {
                    let mut w = self.blob_writer()?;
                    let mut data = tar.data();
                    io::copy(&mut data, &mut w).map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            truncated(&name)
                        } else {
                            archive_err(tar.data_error(&entry, e))
                        }
                    })?;
                    m.files.insert(name, w.finish()?);
                }
            }
        }
        Ok(m)
    }

    /// Like `stage_members` for an uncompressed archive file: list the members by their
    /// headers (seeking over data), then hash and stage them in parallel.
    fn stage_members_file(&self, file: &File) -> Result<Members> {
        let len = file.metadata().ctx("stat", "archive")?.len();
        let mut tar = TarReader::new_seekable(
            BufReader::with_capacity(1 << 16, file),
            &self.limits,
            "archive",
        )
        .require_end_marker();
        let mut m = Members {
            files: BTreeMap::new(),
            aliases: BTreeMap::new(),
        };
        let mut ranges: Vec<(String, u64, u64)> = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        while let Some(entry) = tar.next_entry().map_err(archive_err)? {
            match plan_entry(&entry, &m)? {
                Plan::Skip => {}
                Plan::Alias(name, target) => {
                    m.aliases.insert(name, target);
                }
                Plan::File(name) => {
                    let offset = tar.position();
                    if offset + entry.size > len {
                        return Err(truncated(&name));
                    }
                    if !names.insert(name.clone()) {
                        return Err(twice(&name));
                    }
                    ranges.push((name, offset, entry.size));
                }
            }
        }
        let staged: Vec<Result<(String, PendingBlob)>> = ranges
            .into_par_iter()
            .map(|(name, offset, size)| {
                use std::os::unix::fs::FileExt;
                let mut w = self.blob_writer()?;
                let mut buf = vec![0u8; (size.min(1 << 20) as usize).max(1)];
                let mut at = 0u64;
                while at < size {
                    let want = (size - at).min(buf.len() as u64) as usize;
                    let n = file
                        .read_at(&mut buf[..want], offset + at)
                        .ctx("read archive", "archive")?;
                    if n == 0 {
                        return Err(truncated(&name));
                    }
                    w.write_all(&buf[..n]).ctx("write", self.layout.ingest())?;
                    at += n as u64;
                }
                Ok((name, w.finish()?))
            })
            .collect();
        for r in staged {
            let (name, blob) = r?;
            m.files.insert(name, blob);
        }
        Ok(m)
    }

    fn read_member(&self, m: &Members, name: &str, what: &str) -> Result<(Vec<u8>, Digest)> {
        let (_, blob) = m.resolve(name).ok_or_else(|| missing(name, what))?;
        if blob.info.size > self.limits.max_json_bytes {
            return Err(Error::Limit {
                what: format!("{what} ({} bytes)", blob.info.size),
                limit: format!("{} bytes", self.limits.max_json_bytes),
                help: "documents this large are not produced by real tools".to_string(),
            });
        }
        let bytes = std::fs::read(blob.path()).ctx("read", blob.path())?;
        Ok((bytes, blob.info.digest.clone()))
    }

    /// The bytes of the manifest or index `d` (checked as by `oci_blob`), refused before
    /// reading when larger than documents may be.
    fn read_document(&self, m: &Members, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
        let blob = self.oci_blob(m, d, what)?;
        if blob.info.size > self.limits.max_json_bytes {
            return Err(Error::Limit {
                what: format!("{what} ({} bytes)", blob.info.size),
                limit: format!("{} bytes", self.limits.max_json_bytes),
                help: "documents this large are not produced by real tools".to_string(),
            });
        }
        std::fs::read(blob.path()).ctx("read", blob.path())
    }

    /// The archive member holding blob `d`, checked against its descriptor.
    fn oci_blob<'m>(&self, m: &'m Members, d: &Descriptor, what: &str) -> Result<&'m PendingBlob> {
        let name = blob_member(&d.digest);
        let (_, blob) = m.resolve(&name).ok_or_else(|| missing(&name, what))?;
        if blob.info.digest != d.digest {
            return Err(Error::DigestMismatch {
                what: format!("archive member `{name}` ({what})"),
                expected: d.digest.clone(),
                actual: blob.info.digest.clone(),
            });
        }
        if blob.info.size != d.size {
            return Err(Error::SizeMismatch {
                what: format!("archive member `{name}` ({what})"),
                expected: d.size,
                actual: blob.info.size,
            });
        }
        Ok(blob)
    }

    fn prepare_oci(&self, m: &Members, report: &mut LoadReport) -> Result<Vec<Prepared>> {
        let (bytes, _) = self.read_member(m, "index.json", "index.json")?;
        let index: Index = json::parse_strict(
            &bytes,
            self.limits.max_json_bytes,
            "index.json of the archive",
        )?;
        if index.schema_version != 2 {
            return Err(Error::json(
                "index.json of the archive",
                format!("schemaVersion must be 2, found {}", index.schema_version),
            ));
        }
        if let Some(mt) = &index.media_type
            && mt != media::OCI_INDEX
        {
            return Err(Error::json(
                "index.json of the archive",
                format!("mediaType `{mt}` is not an OCI image index"),
            ));
        }
        // Every blob member must hash to its name, referenced or not.
        for (name, blob) in &m.files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/")
                && blob.info.digest.hex() != hex
            {
                return Err(Error::DigestMismatch {
                    what: format!("archive member `{name}`"),
                    expected: Digest::from_hex(hex).map_err(|_| {
                        Error::archive(
                            format!("archive member `{name}` is not named by a digest"),
                            "the archive is malformed",
                        )
                    })?,
                    actual: blob.info.digest.clone(),
                });
            }
        }
        let mut out = Vec::new();
        for (n, entry) in index.manifests.iter().enumerate() {
            let what = format!("image {} of index.json", n + 1);
            if !(media::is_manifest(&entry.media_type) || media::is_index(&entry.media_type)) {
                report.notes.push(format!(
                    "skipped {what}: media type `{}` is not an image",
                    entry.media_type
                ));
                continue;
            }
            let desc = entry.clone();
            let mut names = Vec::new();
            match index::entry_name(entry) {
                Some(name) => match Reference::parse(name) {
                    Ok(r) if r.tag().is_some() => names.push(r),
                    Ok(r) => report.notes.push(format!(
                        "{what}: name `{}` has no tag; loaded without it",
                        r.familiar()
                    )),
                    Err(_) => report.notes.push(format!(
                        "{what}: `{name}` is not a valid image name; loaded untagged"
                    )),
                },
                None => {
                    if let Some(tag) = entry.annotation(manifest::ANNOTATION_REF_NAME) {
                        report.notes.push(format!(
                            "{what}: its ref name `{tag}` is a tag without a repository; loaded untagged (name it with `rbuild tag`)"
                        ));
                    }
                }
            }
            if media::is_index(&desc.media_type) {
                // A multi-platform image: the index and everything under it that the archive
                // holds.
                let mut parts = IndexParts::default();
                let mut seen = Vec::new();
                self.walk_index(m, &desc, &what, 0, &mut seen, &mut parts, report)?;
                if parts.platforms.is_empty() {
                    return Err(Error::archive(
                        format!("{what} is an image index of which the archive holds no image"),
                        "save the image with at least one platform's manifest, config and layers",
                    ));
                }
                let host = Platform::host();
                if !parts.platforms.iter().any(|p| host.matches(p)) {
                    let have: Vec<String> =
                        parts.platforms.iter().map(ToString::to_string).collect();
                    let shown = names
                        .first()
                        .map_or_else(|| desc.digest.to_string(), |n| n.familiar());
                    report.notes.push(format!(
                        "{shown} has no {host} image (it has {}); run it with `--platform`",
                        have.join(", ")
                    ));
                }
                out.push(Prepared {
                    members: parts.members,
                    new_manifest: None,
                    manifest_desc: Some(Descriptor::new(
                        desc.media_type.clone(),
                        desc.digest.clone(),
                        desc.size,
                    )),
                    names,
                    layers: parts.layers,
                    docker_layers: None,
                });
                continue;
            }
            let bytes = self.read_document(m, &desc, &what)?;
            let manifest = manifest::parse_manifest(
                &bytes,
                Some(&desc.media_type),
                self.limits.max_json_bytes,
                &format!("manifest of {what}"),
            )?;
            let parts = self.image_parts(m, &desc, &manifest, &what)?;
            out.push(Prepared {
                members: parts.members,
                new_manifest: None,
                manifest_desc: Some(Descriptor::new(
                    desc.media_type.clone(),
                    desc.digest.clone(),
                    desc.size,
                )),
                names,
                layers: parts.layers,
                docker_layers: None,
            });
        }
        Ok(out)
    }

    /// Validate one image manifest of the archive (config and layers present and matching,
    /// diff_ids for every layer): its members in publishing order (layers, config, manifest)
    /// and the layers to scan.
    fn image_parts(
        &self,
        m: &Members,
        desc: &Descriptor,
        manifest: &Manifest,
        what: &str,
    ) -> Result<ImageParts> {
        if !media::is_image_config(&manifest.config.media_type) {
            return Err(Error::json(
                format!("manifest of {what}"),
                format!(
                    "config media type `{}` is not an image config",
                    manifest.config.media_type
                ),
            ));
        }
        let cblob = self.oci_blob(m, &manifest.config, &format!("config of {what}"))?;
        let cbytes = std::fs::read(cblob.path()).ctx("read", cblob.path())?;
        let config = ImageConfig::parse(
            &cbytes,
            self.limits.max_json_bytes,
            &format!("config of {what}"),
        )?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::json(
                format!("config of {what}"),
                format!(
                    "it lists {} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        let mut members = Vec::new();
        let mut layers = Vec::new();
        for (j, (l, diff_id)) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .enumerate()
        {
            let lwhat = format!("layer {} ({}) of {what}", j + 1, l.digest);
            if !media::is_layer(&l.media_type) {
                return Err(Error::json(
                    &lwhat,
                    format!("media type `{}` is not a layer type", l.media_type),
                ));
            }
            if l.urls.is_some() && !m.files.contains_key(&blob_member(&l.digest)) {
                return Err(Error::archive(
                    format!("{lwhat} is a foreign layer that the archive does not contain"),
                    "rbuild does not fetch foreign layer URLs",
                ));
            }
            self.oci_blob(m, l, &lwhat)?;
            members.push(blob_member(&l.digest));
            layers.push(LayerJob {
                member: blob_member(&l.digest),
                declared: media::layer_compression(&l.media_type),
                diff_id: diff_id.clone(),
                what: lwhat,
            });
        }
        members.push(blob_member(&manifest.config.digest));
        members.push(blob_member(&desc.digest));
        let platform = desc.platform.clone().unwrap_or_else(|| {
            Platform::new(&config.os, &config.architecture, config.variant.as_deref())
        });
        Ok(ImageParts {
            members,
            layers,
            platform,
        })
    }

    /// Collect what the archive holds under the image index `desc` into `out`: every platform
    /// image (validated, its layers to be scanned), attestation manifests and other artifacts
    /// (verified blobs, never scanned), nested indexes, each blob before the documents that
    /// reference it. Entries the archive does not contain are left out (an index may list
    /// platforms that were never fetched). Nesting is bounded by [`MAX_INDEX_DEPTH`]; an index
    /// that lists itself (directly or through others) is refused.
    #[expect(
        clippy::too_many_arguments,
        reason = "one recursive walk and its state"
    )]
    fn walk_index(
        &self,
        m: &Members,
        desc: &Descriptor,
        what: &str,
        depth: usize,
        seen: &mut Vec<(Digest, bool)>,
        out: &mut IndexParts,
        report: &mut LoadReport,
    ) -> Result<()> {
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::archive(
                format!("{what}: image indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                "a multi-platform image needs one index (two or three when tools wrap it); \
                 this archive is malformed or hostile",
            ));
        }
        // `seen`: (digest, still on the current path). On the path: a cycle; visited before
        // (two indexes listing the same one): already collected.
        match seen.iter().find(|(d, _)| *d == desc.digest) {
            Some((_, true)) => {
                return Err(Error::archive(
                    format!("{what}: image index {} lists itself (a cycle)", desc.digest),
                    "this archive is malformed or hostile",
                ));
            }
            Some((_, false)) => return Ok(()),
            None => {}
        }
        seen.push((desc.digest.clone(), true));
        let walked = self.walk_index_in(m, desc, what, depth, seen, out, report);
        if let Some(entry) = seen.iter_mut().find(|(d, _)| *d == desc.digest) {
            entry.1 = false;
        }
        walked
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one recursive walk and its state"
    )]
    fn walk_index_in(
        &self,
        m: &Members,
        desc: &Descriptor,
        what: &str,
        depth: usize,
        seen: &mut Vec<(Digest, bool)>,
        out: &mut IndexParts,
        report: &mut LoadReport,
    ) -> Result<()> {
        let bytes = self.read_document(m, desc, what)?;
        let doc = manifest::parse_document(
            &bytes,
            Some(&desc.media_type),
            self.limits.max_json_bytes,
            what,
        )?;
        let Document::Index(i) = doc else {
            return Err(Error::json(what, "declared as an index but is a manifest"));
        };
        for (k, child) in i.manifests.iter().enumerate() {
            let cwhat = match &child.platform {
                Some(p) => format!("{what}, {p} (entry {} of index {})", k + 1, desc.digest),
                None => format!("{what}, entry {} of index {}", k + 1, desc.digest),
            };
            if m.resolve(&blob_member(&child.digest)).is_none() {
                // Not in the archive: a platform that was never fetched.
                continue;
            }
            if media::is_index(&child.media_type) {
                self.walk_index(m, child, what, depth + 1, seen, out, report)?;
            } else if media::is_manifest(&child.media_type) {
                self.index_child(m, child, &cwhat, out, report)?;
            } else {
                self.oci_blob(m, child, &cwhat)?;
                out.members.push(blob_member(&child.digest));
            }
        }
        out.members.push(blob_member(&desc.digest));
        Ok(())
    }

    /// One manifest listed in an index of the archive: a platform image, or an attestation
    /// (or other artifact) kept as verified blobs. One whose blobs the archive lacks is left
    /// out with a note.
    fn index_child(
        &self,
        m: &Members,
        child: &Descriptor,
        what: &str,
        out: &mut IndexParts,
        report: &mut LoadReport,
    ) -> Result<()> {
        let bytes = self.read_document(m, child, what)?;
        let manifest = manifest::parse_manifest(
            &bytes,
            Some(&child.media_type),
            self.limits.max_json_bytes,
            &format!("manifest of {what}"),
        )?;
        let referenced: Vec<&Descriptor> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .collect();
        if let Some(absent) = referenced
            .iter()
            .find(|d| m.resolve(&blob_member(&d.digest)).is_none())
        {
            report.notes.push(format!(
                "skipped {what}: the archive lacks its blob {}",
                absent.digest
            ));
            return Ok(());
        }
        if is_artifact(child, &manifest) {
            for d in referenced {
                self.oci_blob(m, d, what)?;
                out.members.push(blob_member(&d.digest));
            }
            out.members.push(blob_member(&child.digest));
            return Ok(());
        }
        let parts = self.image_parts(m, child, &manifest, what)?;
        out.members.extend(parts.members);
        out.layers.extend(parts.layers);
        out.platforms.push(parts.platform);
        Ok(())
    }

    fn prepare_docker(&self, m: &Members) -> Result<Vec<Prepared>> {
        let (bytes, _) = self.read_member(m, "manifest.json", "manifest.json")?;
        let entries: Vec<DockerEntry> = json::parse_strict(
            &bytes,
            self.limits.max_json_bytes,
            "manifest.json of the archive",
        )?;
        let mut out = Vec::new();
        for (n, e) in entries.iter().enumerate() {
            let what = format!("image {} of manifest.json", n + 1);
            let config_name = clean_member(&e.config, &what)?;
            let (cbytes, cdigest) =
                self.read_member(m, &config_name, &format!("config of {what}"))?;
            let config = ImageConfig::parse(
                &cbytes,
                self.limits.max_json_bytes,
                &format!("config of {what}"),
            )?;
            if config.rootfs.diff_ids.len() != e.layers.len() {
                return Err(Error::json(
                    format!("config of {what}"),
                    format!(
                        "it lists {} diff_ids for {} layers",
                        config.rootfs.diff_ids.len(),
                        e.layers.len()
                    ),
                ));
            }
            let mut names = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                // As `docker load`: a bad name fails the load rather than losing the tag.
                let r = Reference::parse(t).map_err(|err| {
                    Error::archive(
                        format!("{what}: RepoTags entry `{t}` is not a valid image name: {err}"),
                        "fix the name in the archive's manifest.json, or load it and tag it \
                         with `rbuild tag`",
                    )
                })?;
                names.push(r);
            }
            let mut members = Vec::new();
            let mut layers = Vec::new();
            for (j, (l, diff_id)) in e.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
                let member = clean_member(l, &what)?;
                let lwhat = format!("layer {} (`{member}`) of {what}", j + 1);
                m.resolve(&member).ok_or_else(|| missing(&member, &lwhat))?;
                members.push(member.clone());
                layers.push(LayerJob {
                    member,
                    declared: None,
                    diff_id: diff_id.clone(),
                    what: lwhat,
                });
            }
            members.push(config_name);
            let csize = cbytes.len() as u64;
            out.push(Prepared {
                members,
                new_manifest: None,
                manifest_desc: None,
                names,
                layers,
                docker_layers: Some((config, cbytes, cdigest, csize)),
            });
        }
        Ok(out)
    }
}

/// Resolve a link target (relative to `base`, or absolute from the archive root) lexically;
/// `None` if `..` would climb above the archive root.
fn resolve_link(base: &RelPath, target: &[u8]) -> Option<RelPath> {
    let mut parts: Vec<&[u8]> = if target.first() == Some(&b'/') {
        Vec::new()
    } else {
        base.components().collect()
    };
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(RelPath(parts.join(&b'/')))
}

fn clean_member(name: &str, what: &str) -> Result<String> {
    let p = path::clean(name.as_bytes(), AbsolutePaths::Strip).map_err(|why| {
        Error::archive(
            format!("{what}: path `{name}` {why}"),
            "the archive is malformed or hostile",
        )
    })?;
    Ok(String::from_utf8_lossy(&p.0).into_owned())
}

fn missing(name: &str, what: &str) -> Error {
    Error::archive(
        format!("the archive lacks `{name}` ({what})"),
        "the archive is incomplete; save it again",
    )
}

fn unreachable_prepared() -> Result<Descriptor> {
    Err(Error::usage(
        "internal: an image had no manifest",
        "report this as a bug",
    ))
}

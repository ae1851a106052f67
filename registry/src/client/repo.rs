//! Operations on one repository of one endpoint.
//!
//! - Manifests: GET with the full `Accept` list, the bytes hashed and checked against the
//!   requested digest and `Docker-Content-Digest` before they are parsed; HEAD; PUT of the exact
//!   bytes with `Content-Type` = their `mediaType`.
//! - Blobs: HEAD; a streaming GET verified for size and digest, resumed with `Range` after a
//!   reset or a truncated body; uploads that skip a blob the registry has (HEAD), mount it from
//!   another repository (201, or continue the 202 session), or send it as one POST+PUT or in
//!   chunks (PATCH: with `chunk_size_mb` set, or after a 413; `OCI-Chunk-Min-Length` honoured;
//!   416 recovery).

use std::io::{Read, Write};

use rbuild_store::Digest;
use rbuild_store::digest::Hasher;

use ureq::SendBody;
use ureq::http::{self, Method, StatusCode};

use super::transport::{
    Client, Req, authority, describe_ureq, read_limited, redact_url, status_error,
};
use crate::config::Endpoint;
use crate::error::{RegistryError, Result};
use crate::manifest::{FetchedManifest, MAX_MANIFEST_BYTES, media, parse_manifest};

/// A source of blob bytes that can be reopened for every attempt.
pub type BlobOpener<'a> = &'a (dyn Fn() -> Result<Box<dyn Read + Send>> + Sync);

/// What happened to one blob during a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it.
    Skipped,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// One repository on one endpoint.
pub struct Repo<'c> {
    pub(crate) client: &'c Client,
    pub(crate) ep: Endpoint,
    /// The repository path on this endpoint (mirror prefix included).
    pub(crate) name: String,
}

impl<'c> Repo<'c> {
    pub fn new(client: &'c Client, ep: Endpoint, repository: &str) -> Self {
        let name = ep.repository(repository);
        Repo { client, ep, name }
    }

    /// The endpoint host.
    pub fn host(&self) -> &str {
        &self.ep.host
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.name)
    }

    fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.name)
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{}", self.ep.base_url(), self.name, tail)
    }

    /// GET a manifest by tag or digest; its bytes are hashed and checked against the digest
    /// asked for and any `Docker-Content-Digest` header before they are parsed.
    pub fn get_manifest(&self, reference: &str, display: &str) -> Result<FetchedManifest> {
        let what = format!("pull manifest `{display}`");
        let req = Req {
            method: Method::GET,
            url: self.url(&format!("manifests/{reference}")),
            headers: vec![("accept", media::MANIFEST_ACCEPT.to_string())],
            body: None,
            what: &what,
        };
        let resp = self.client.execute(&self.ep, &self.pull_scope(), &req)?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(&self.ep, &what, resp));
        }
        let content_type = header(&resp, "content-type");
        let header_digest = header(&resp, "docker-content-digest");
        let bytes = read_limited(resp.into_body(), MAX_MANIFEST_BYTES + 1).map_err(|e| {
            RegistryError::Network {
                registry: self.ep.host.clone(),
                what: what.clone(),
                reason: describe_io(&e),
            }
        })?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(RegistryError::Manifest {
                reference: display.to_string(),
                reason: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            });
        }
        let digest = Digest::of(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                expected: reference.to_string(),
                actual: digest.to_string(),
            });
        }
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:"))
            && digest != h
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                expected: h,
                actual: digest.to_string(),
            });
        }
        let (manifest, media_type) = parse_manifest(display, &bytes, content_type.as_deref())?;
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
            manifest,
        })
    }

    /// HEAD a manifest: its digest when it exists (a valid `Docker-Content-Digest`, else the
    /// digest asked for), `None` on 404 or when the registry names no digest for a tag.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<Digest>> {
        let what = format!("check manifest `{}:{reference}`", self.name);
        let req = Req {
            method: Method::HEAD,
            url: self.url(&format!("manifests/{reference}")),
            headers: vec![("accept", media::MANIFEST_ACCEPT.to_string())],
            body: None,
            what: &what,
        };
        let resp = self.client.execute(&self.ep, &self.pull_scope(), &req)?;
        match resp.status().as_u16() {
            200 => Ok(header(&resp, "docker-content-digest")
                .and_then(|h| Digest::parse(&h).ok())
                .or_else(|| Digest::parse(reference).ok())),
            404 => Ok(None),
            _ => Err(status_error(&self.ep, &what, resp)),
        }
    }

    /// PUT manifest bytes exactly as given, with `Content-Type` = their media type.
    pub fn put_manifest(&self, reference: &str, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let what = format!("push manifest `{}:{reference}`", self.name);
        let owned = bytes.to_vec();
        let body = move || -> Result<SendBody<'static>> {
            Ok(SendBody::from_owned_reader(std::io::Cursor::new(
                owned.clone(),
            )))
        };
        let req = Req {
            method: Method::PUT,
            url: self.url(&format!("manifests/{reference}")),
            headers: vec![
                ("content-type", media_type.to_string()),
                ("content-length", bytes.len().to_string()),
            ],
            body: Some(&body),
            what: &what,
        };
        let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
        if !resp.status().is_success() {
            return Err(status_error(&self.ep, &what, resp));
        }
        if let Some(h) = header(&resp, "docker-content-digest").filter(|h| h.starts_with("sha256:"))
            && digest != h
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                expected: digest.to_string(),
                actual: h,
            });
        }
        Ok(digest)
    }

    /// HEAD a blob: `Some(size)` when present.
    pub fn blob_exists(&self, digest: &str, scope: Option<&str>) -> Result<Option<u64>> {
        let what = format!("check blob `{digest}`");
        let req = Req {
            method: Method::HEAD,
            url: self.url(&format!("blobs/{digest}")),
            headers: vec![],
            body: None,
            what: &what,
        };
        let scope = scope
            .map(str::to_string)
            .unwrap_or_else(|| self.pull_scope());
        let resp = self.client.execute(&self.ep, &scope, &req)?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default(),
            )),
            404 => Ok(None),
            _ => Err(status_error(&self.ep, &what, resp)),
        }
    }

    /// Download a blob into `out`, verifying size and digest while streaming. Connection
    /// resets and truncated bodies are resumed with `Range` (or by skipping what was already
    /// written when the registry ignores ranges), up to the configured number of attempts.
    /// `progress` is called with the byte count of each chunk written.
    pub fn fetch_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let what = format!("pull blob `{digest}`");
        let attempts = self.client.config.network.retries.max(1);
        let mut hasher = Hasher::new();
        let mut last_problem = String::new();
        let mut truncated = false;
        let mut buf = vec![0u8; 256 * 1024];
        for attempt in 1..=attempts {
            if attempt > 1 {
                std::thread::sleep(std::time::Duration::from_millis(
                    self.client.config.network.backoff_ms * (1 << (attempt - 2).min(6)),
                ));
            }
            let written = hasher.len();
            let mut headers = vec![];
            if written > 0 {
                headers.push(("range", format!("bytes={written}-")));
            }
            let req = Req {
                method: Method::GET,
                url: self.url(&format!("blobs/{digest}")),
                headers,
                body: None,
                what: &what,
            };
            let resp = match self.client.execute(&self.ep, &self.pull_scope(), &req) {
                Ok(r) => r,
                Err(e @ RegistryError::Network { .. }) if attempt < attempts => {
                    last_problem = e.to_string();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut skip = match resp.status().as_u16() {
                200 => written,
                206 => {
                    let start = header(&resp, "content-range")
                        .and_then(|v| {
                            v.strip_prefix("bytes ")
                                .and_then(|r| r.split('-').next().map(str::to_string))
                        })
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    if start != Some(written) {
                        last_problem =
                            "the registry answered a range request with the wrong range".into();
                        continue;
                    }
                    0
                }
                _ => return Err(status_error(&self.ep, &what, resp)),
            };
            if let Some(h) =
                header(&resp, "docker-content-digest").filter(|h| h.starts_with("sha256:"))
                && *digest != h
            {
                return Err(RegistryError::DigestMismatch {
                    registry: self.ep.host.clone(),
                    expected: digest.to_string(),
                    actual: h,
                });
            }
            let mut reader = resp.into_body().into_reader();
            let outcome: std::result::Result<(), String> = loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(describe_io(&e)),
                };
                let mut chunk = &buf[..n];
                if skip > 0 {
                    let s = skip.min(chunk.len() as u64) as usize;
                    chunk = &chunk[s..];
                    skip -= s as u64;
                }
                if chunk.is_empty() {
                    continue;
                }
                if hasher.len() + chunk.len() as u64 > size {
                    return Err(RegistryError::SizeMismatch {
                        registry: self.ep.host.clone(),
                        digest: digest.to_string(),
                        expected: size,
                        actual: hasher.len() + chunk.len() as u64,
                    });
                }
                out.write_all(chunk)
                    .map_err(|e| RegistryError::io(format!("storing blob `{digest}`"), e))?;
                hasher.update(chunk);
                progress(chunk.len() as u64);
            };
            match outcome {
                Ok(()) if hasher.len() == size => {
                    let actual = hasher.finish();
                    if actual != *digest {
                        return Err(RegistryError::DigestMismatch {
                            registry: self.ep.host.clone(),
                            expected: digest.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    return Ok(());
                }
                Ok(()) => {
                    truncated = true;
                    last_problem = format!("the body ended after {} of {size} bytes", hasher.len());
                }
                Err(reason) => {
                    // A dropped connection mid-body is a truncation; a stall is a timeout.
                    truncated = !reason.contains("timed out");
                    last_problem = reason;
                }
            }
            tracing::debug!(%digest, attempt, problem = %last_problem, "resuming blob download");
        }
        if truncated {
            return Err(RegistryError::SizeMismatch {
                registry: self.ep.host.clone(),
                digest: digest.to_string(),
                expected: size,
                actual: hasher.len(),
            });
        }
        Err(RegistryError::Network {
            registry: self.ep.host.clone(),
            what,
            reason: format!("{last_problem} (after {attempts} attempts)"),
        })
    }

    /// Open a blob for streaming (a registry-to-registry copy, never through the disk): one
    /// GET whose body is read through [`VerifyingReader`], which checks size and digest as it
    /// goes and fails the read that would complete a blob whose digest is wrong, so a
    /// consumer never sees the whole of a bad blob.
    pub fn open_blob(&self, digest: &Digest, size: u64) -> Result<Box<dyn Read + Send>> {
        let what = format!("copy blob `{digest}` from `{}`", self.name);
        let req = Req {
            method: Method::GET,
            url: self.url(&format!("blobs/{digest}")),
            headers: Vec::new(),
            body: None,
            what: &what,
        };
        let resp = self.client.execute(&self.ep, &self.pull_scope(), &req)?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(&self.ep, &what, resp));
        }
        if let Some(h) = header(&resp, "docker-content-digest").filter(|h| h.starts_with("sha256:"))
            && *digest != h
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                expected: digest.to_string(),
                actual: h,
            });
        }
        Ok(Box::new(VerifyingReader {
            inner: Box::new(resp.into_body().into_reader()),
            hasher: Hasher::new(),
            digest: digest.clone(),
            size,
            registry: self.ep.host.clone(),
        }))
    }

    /// Upload a blob unless the registry has it: HEAD, then a cross-repository mount from
    /// each of `mount_from` (201 = mounted, 202 = continue with the opened session), then a
    /// monolithic PUT (or chunked PATCHes when `chunk_size` is set or the registry refuses a
    /// single PUT with 413).
    pub fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        open: BlobOpener<'_>,
        mount_from: &[String],
    ) -> Result<BlobPush> {
        let push_scope = self.push_scope();
        if self.blob_exists(digest, Some(&push_scope))?.is_some() {
            return Ok(BlobPush::Skipped);
        }
        let what = format!("push blob `{digest}`");
        let session = match self.mount(digest, mount_from, &what)? {
            Mount::Mounted => return Ok(BlobPush::Mounted),
            Mount::Session(location, min) => Some((location, min)),
            Mount::Refused => None,
        };
        let (location, min_chunk) = match session {
            Some(s) => s,
            None => self.start_upload(&what)?,
        };
        let chunk = self
            .client
            .config
            .network
            .chunk_size_mb
            .map(|mb| mb.max(1) << 20);
        match chunk {
            None => match self.put_monolithic(&location, digest, size, open, &what)? {
                Some(()) => Ok(BlobPush::Uploaded),
                None => {
                    // 413: the registry wants chunks. Start over with a fresh session.
                    let (location, min_chunk) = self.start_upload(&what)?;
                    let size_hint = min_chunk.unwrap_or(0).max(8 << 20);
                    self.put_chunked(&location, digest, size, open, size_hint, &what)?;
                    Ok(BlobPush::Uploaded)
                }
            },
            Some(c) => {
                let c = c.max(min_chunk.unwrap_or(0));
                self.put_chunked(&location, digest, size, open, c, &what)?;
                Ok(BlobPush::Uploaded)
            }
        }
    }

    fn start_upload(&self, what: &str) -> Result<(String, Option<u64>)> {
        let empty = || -> Result<SendBody<'static>> { Ok(SendBody::none()) };
        let req = Req {
            method: Method::POST,
            url: self.url("blobs/uploads/"),
            headers: vec![("content-length", "0".into())],
            body: Some(&empty),
            what,
        };
        let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&self.ep, what, resp));
        }
        self.session_from(&resp, what)
    }

    /// The upload URL (resolved against the request) and `OCI-Chunk-Min-Length`.
    /// Cross-repository mount of `digest` from the first of `mount_from` that has it, without
    /// uploading anything: `Ok(true)` when the blob is now in this repository.
    pub fn mount_only(&self, digest: &Digest, mount_from: &[String]) -> Result<bool> {
        let what = format!("mount blob `{digest}`");
        match self.mount(digest, mount_from, &what)? {
            Mount::Mounted => Ok(true),
            Mount::Refused => Ok(false),
            Mount::Session(location, _) => {
                // The registry opened an upload instead: cancel it (best effort).
                let req = Req {
                    method: Method::DELETE,
                    url: location,
                    headers: Vec::new(),
                    body: None,
                    what: &what,
                };
                let _ = self.client.execute(&self.ep, &self.push_scope(), &req);
                Ok(false)
            }
        }
    }

    /// Try `POST ?mount=&from=` for each source repository (never this one).
    fn mount(&self, digest: &str, mount_from: &[String], what: &str) -> Result<Mount> {
        let push_scope = self.push_scope();
        for source in mount_from.iter().filter(|s| **s != self.name) {
            let scope = format!("{push_scope} repository:{source}:pull");
            let url = format!(
                "{}?mount={digest}&from={}",
                self.url("blobs/uploads/"),
                url::form_urlencoded::byte_serialize(source.as_bytes()).collect::<String>()
            );
            let empty = || -> Result<SendBody<'static>> { Ok(SendBody::none()) };
            let req = Req {
                method: Method::POST,
                url,
                headers: vec![("content-length", "0".into())],
                body: Some(&empty),
                what,
            };
            let resp = self.client.execute(&self.ep, &scope, &req)?;
            match resp.status().as_u16() {
                201 => return Ok(Mount::Mounted),
                202 => {
                    let (location, min) = self.session_from(&resp, what)?;
                    return Ok(Mount::Session(location, min));
                }
                _ => {
                    // A refused mount is not fatal: the caller uploads normally.
                    tracing::debug!(status = resp.status().as_u16(), "mount refused");
                }
            }
        }
        Ok(Mount::Refused)
    }

    fn session_from(
        &self,
        resp: &http::Response<ureq::Body>,
        what: &str,
    ) -> Result<(String, Option<u64>)> {
        let location = header(resp, "location").ok_or_else(|| RegistryError::Http {
            registry: self.ep.host.clone(),
            what: what.to_string(),
            status: resp.status().as_u16(),
            message: "upload session without a `Location` header".into(),
            help: "the registry does not follow the distribution spec".into(),
        })?;
        let base = url::Url::parse(&self.url("blobs/uploads/")).expect("endpoint URL parses");
        let resolved = base.join(&location).map_err(|_| RegistryError::Http {
            registry: self.ep.host.clone(),
            what: what.to_string(),
            status: resp.status().as_u16(),
            message: format!("invalid upload location `{}`", redact_url(&location)),
            help: "the registry does not follow the distribution spec".into(),
        })?;
        if resolved.scheme() == "http"
            && self.ep.scheme == "https"
            && !self.client.config.allows_http(&authority(&resolved))
        {
            return Err(RegistryError::Insecure {
                what: what.to_string(),
                reason: "an upload location over plain HTTP".into(),
            });
        }
        let min = header(resp, "oci-chunk-min-length").and_then(|v| v.parse().ok());
        Ok((resolved.to_string(), min))
    }

    fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// `Ok(None)` when the registry refused a monolithic upload with 413.
    fn put_monolithic(
        &self,
        location: &str,
        digest: &str,
        size: u64,
        open: BlobOpener<'_>,
        what: &str,
    ) -> Result<Option<()>> {
        let body = || -> Result<SendBody<'static>> { Ok(SendBody::from_owned_reader(open()?)) };
        let req = Req {
            method: Method::PUT,
            url: Self::with_digest(location, digest),
            headers: vec![
                ("content-type", "application/octet-stream".into()),
                ("content-length", size.to_string()),
            ],
            body: Some(&body),
            what,
        };
        let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
        match resp.status().as_u16() {
            201 | 204 => {
                self.check_created_digest(&resp, digest)?;
                Ok(Some(()))
            }
            413 => Ok(None),
            _ => Err(status_error(&self.ep, what, resp)),
        }
    }

    fn check_created_digest(&self, resp: &http::Response<ureq::Body>, digest: &str) -> Result<()> {
        if let Some(h) = header(resp, "docker-content-digest").filter(|h| h.starts_with("sha256:"))
            && h != digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                expected: digest.to_string(),
                actual: h,
            });
        }
        Ok(())
    }

    /// Chunked upload: ordered PATCHes with inclusive `Content-Range`, always continuing at
    /// the latest `Location`; a 416 asks the session where it stands and resumes there.
    fn put_chunked(
        &self,
        location: &str,
        digest: &str,
        size: u64,
        open: BlobOpener<'_>,
        chunk: u64,
        what: &str,
    ) -> Result<()> {
        let mut location = location.to_string();
        let mut reader = open()?;
        let mut offset = 0u64;
        let mut recoveries = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let mut data = vec![0u8; len as usize];
            reader
                .read_exact(&mut data)
                .map_err(|e| RegistryError::io(format!("reading blob `{digest}` for upload"), e))?;
            let shared = std::sync::Arc::new(data);
            let body = {
                let shared = shared.clone();
                move || -> Result<SendBody<'static>> {
                    Ok(SendBody::from_owned_reader(std::io::Cursor::new(
                        shared.as_ref().clone(),
                    )))
                }
            };
            let req = Req {
                method: Method::PATCH,
                url: location.clone(),
                headers: vec![
                    ("content-type", "application/octet-stream".into()),
                    ("content-length", len.to_string()),
                    ("content-range", format!("{}-{}", offset, offset + len - 1)),
                ],
                body: Some(&body),
                what,
            };
            let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
            match resp.status().as_u16() {
                202 | 201 | 204 => {
                    let (next, _) = self.session_from(&resp, what)?;
                    location = next;
                    offset += len;
                }
                416 if recoveries < 3 => {
                    recoveries += 1;
                    let done = self.upload_status(&location, what)?;
                    // Re-open and skip to where the registry stands.
                    reader = open()?;
                    std::io::copy(&mut (&mut reader).take(done), &mut std::io::sink()).map_err(
                        |e| RegistryError::io(format!("reading blob `{digest}` for upload"), e),
                    )?;
                    offset = done;
                }
                _ => return Err(status_error(&self.ep, what, resp)),
            }
        }
        let empty = || -> Result<SendBody<'static>> { Ok(SendBody::none()) };
        let req = Req {
            method: Method::PUT,
            url: Self::with_digest(&location, digest),
            headers: vec![("content-length", "0".into())],
            body: Some(&empty),
            what,
        };
        let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
        if !matches!(resp.status().as_u16(), 201 | 204) {
            return Err(status_error(&self.ep, what, resp));
        }
        self.check_created_digest(&resp, digest)
    }

    /// GET an upload session's status: how many bytes it holds (`Range: 0-<end>`).
    fn upload_status(&self, location: &str, what: &str) -> Result<u64> {
        let req = Req {
            method: Method::GET,
            url: location.to_string(),
            headers: vec![],
            body: None,
            what,
        };
        let resp = self.client.execute(&self.ep, &self.push_scope(), &req)?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(status_error(&self.ep, what, resp));
        }
        Ok(header(&resp, "range")
            .and_then(|r| r.rsplit('-').next().and_then(|e| e.parse::<u64>().ok()))
            .map_or(0, |end| end + 1))
    }
}

fn header(resp: &http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn describe_io(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "timed out waiting for data".into();
    }
    // ureq wraps its own errors in io::Error; unwrap them for a readable message.
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        Some(u) => describe_ureq(u),
        None => e.to_string(),
    }
}

/// A blob body checked while it streams: never more than `size` bytes, and the read that
/// brings the count to `size` returns its bytes only if the whole blob hashes to `digest`
/// (else an error, so an upload fed from it fails before it completes). A body that ends
/// early is an error too.
pub struct VerifyingReader {
    inner: Box<dyn Read + Send>,
    hasher: Hasher,
    digest: Digest,
    size: u64,
    registry: String,
}

impl VerifyingReader {
    /// The error a read fails with: it carries `err` itself, so the transport reports the
    /// blob's fault as such (never as a network failure to retry; `transport::body_failure`).
    fn fail(&self, err: RegistryError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.size - self.hasher.len();
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than is left, to notice a body longer than the blob.
        let want = buf
            .len()
            .min(usize::try_from(left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.fail(RegistryError::SizeMismatch {
                registry: self.registry.clone(),
                digest: self.digest.to_string(),
                expected: self.size,
                actual: self.hasher.len(),
            }));
        }
        if n as u64 > left {
            return Err(self.fail(RegistryError::SizeMismatch {
                registry: self.registry.clone(),
                digest: self.digest.to_string(),
                expected: self.size,
                actual: self.hasher.len() + n as u64,
            }));
        }
        self.hasher.update(&buf[..n]);
        if self.hasher.len() == self.size {
            // The last bytes: verify before handing them over. Afterwards the hasher is
            // fresh and `size` 0, so later reads return end of file.
            let actual = std::mem::replace(&mut self.hasher, Hasher::new()).finish();
            self.size = 0;
            if actual != self.digest {
                return Err(self.fail(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    expected: self.digest.to_string(),
                    actual: actual.to_string(),
                }));
            }
        }
        Ok(n)
    }
}

/// What a cross-repository mount attempt gave.
enum Mount {
    Mounted,
    /// The registry started an upload session instead (location, minimum chunk size).
    Session(String, Option<u64>),
    Refused,
}

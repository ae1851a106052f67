//! What pull and push need from the local image store, as traits: the registry crate moves
//! bytes, the store owns ingest, verification on commit, image records and tags. The
//! implementation for `rbuild-store` lives in `store_impl`.

use std::io::{Read, Write};

use rbuild_store::{Descriptor, Digest};

use crate::error::Result;
use crate::manifest::FetchedManifest;
use crate::remote::RemoteRef;

/// A blob being written into the store. `Write` appends; dropping without `commit` discards.
pub trait Ingest: Write + Send {
    /// Verify (size + digest) and publish the blob.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// The store side of a pull.
pub trait PullTarget: Sync {
    /// Is this blob already stored (and so need not be downloaded)?
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Start writing a blob of known digest and size.
    fn begin_blob(&self, digest: &Digest, size: u64) -> Result<Box<dyn Ingest + '_>>;
    /// Record a pulled image once all its blobs are committed: the platform manifest, the
    /// index it was selected from (if any), and the name to tag it with (`None` when the
    /// reference was a bare digest).
    fn record_image(
        &self,
        name: &str,
        tag: Option<&str>,
        manifest: &FetchedManifest,
        index: Option<&FetchedManifest>,
    ) -> Result<()>;
    /// Record that `layers` (blobs not downloaded) can be fetched from `repository`: a pull
    /// of the manifest and config alone ([`crate::pull::pull_image_lazy`]). Called before
    /// `record_image`, which then accepts the image without those blobs.
    fn record_remote_layers(&self, repository: &RemoteRef, layers: &[Descriptor]) -> Result<()> {
        let _ = (repository, layers);
        Err(crate::error::RegistryError::io(
            "recording remote layers",
            std::io::Error::other("this pull target keeps no remote layers"),
        ))
    }
    /// Record a multi-platform image pulled whole (`pull --all-platforms`) once every blob of
    /// every manifest is committed: store the manifests (nested indexes included) and the
    /// index, exactly as served, and name the index (`name:tag`, or the digest pin `name@digest`
    /// when the reference was a bare digest).
    fn record_index(
        &self,
        name: &str,
        tag: Option<&str>,
        index: &FetchedManifest,
        manifests: &[FetchedManifest],
    ) -> Result<()>;
}

/// One layer of a local image, as the store keeps it.
#[derive(Debug, Clone)]
pub struct LocalLayer {
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The stored blob: its digest, size and media type (uncompressed for built images).
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A local image ready to push.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// Manifest bytes as stored, and their media type.
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub layers: Vec<LocalLayer>,
}

/// A local multi-platform image: the index bytes as stored and, in entry order, what each
/// entry names (every entry must be present: a push sends them all).
#[derive(Debug, Clone)]
pub struct LocalIndex {
    pub index: Vec<u8>,
    pub media_type: String,
    pub children: Vec<LocalChild>,
}

/// What one index entry names: an image manifest (or an artifact manifest such as an
/// attestation, whose layers are pushed as they are), or a nested index.
#[derive(Debug, Clone)]
pub enum LocalChild {
    Image(LocalImage),
    Index(LocalIndex),
}

/// What a local name points at, ready to push: one image or a multi-platform image.
#[derive(Debug, Clone)]
pub enum LocalTarget {
    Image(LocalImage),
    Index(LocalIndex),
}

/// The store side of a push.
pub trait PushSource: Sync {
    /// Open a stored blob for reading.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
    /// A previous compression of this diff_id with this compression (`gzip`/`zstd`):
    /// `(digest, size)` of the compressed blob.
    fn compressed_digest(&self, diff_id: &Digest, compression: &str) -> Option<(Digest, u64)>;
    /// Where a blob that is not stored here lives (a remote layer of a base image resolved
    /// without its layers): the repository to mount or copy it from. `None` when it is
    /// stored (or unknown).
    fn remote_blob(&self, digest: &Digest) -> Option<RemoteRef> {
        let _ = digest;
        None
    }
    /// Remember a compression result so the next push does not recompress.
    fn remember_compressed(
        &self,
        diff_id: &Digest,
        compression: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;
}

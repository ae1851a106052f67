//! Progress events for pulls and pushes. The library reports; the CLI renders (bars on a
//! terminal, plain lines otherwise).

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pull: already in the store. Push: already in the registry.
    AlreadyPresent,
    Downloaded,
    Uploaded,
    Mounted,
}

/// Receives progress events; every method has an empty default.
pub trait Progress: Sync {
    /// A blob transfer starts (`size` bytes in total).
    fn blob_start(&self, _digest: &str, _size: u64) {}
    /// `bytes` more bytes of the blob moved.
    fn blob_bytes(&self, _digest: &str, _bytes: u64) {}
    /// The blob is done.
    fn blob_done(&self, _digest: &str, _outcome: BlobOutcome) {}
    /// A phase message ("compressing layer …", "resolved … to …").
    fn note(&self, _text: &str) {}
}

/// Ignores all events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

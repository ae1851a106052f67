//! Content digests as the distribution protocol uses them: parsing `sha256:<hex>` strings and
//! hashing bytes while they stream, with a hard size bound.

use sha2::{Digest as _, Sha256};

use crate::error::{RegistryError, Result};

/// Check that `s` is a `sha256:` digest with 64 lowercase hex characters (the only algorithm
/// registries serve in practice; anything else is refused rather than trusted unverified).
pub fn validate_digest(s: &str) -> Result<()> {
    let ok = s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidInput {
            kind: "digest",
            value: s.to_string(),
            reason: "expected `sha256:` followed by 64 lowercase hex digits".into(),
            help: "digests look like `sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08`".into(),
        })
    }
}

/// The sha256 digest string of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hashes bytes as they pass and counts them.
#[derive(Clone, Default)]
pub struct StreamHasher {
    hasher: Sha256,
    len: u64,
}

impl StreamHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

/// A writer adapter that hashes what goes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: StreamHasher,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: StreamHasher::new(),
        }
    }

    /// The inner writer, the digest and the byte count of everything written.
    pub fn finish(self) -> (W, String, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_validation() {
        let good = sha256_digest(b"abc");
        assert!(validate_digest(&good).is_ok());
        assert!(validate_digest("sha256:ABC").is_err());
        assert!(validate_digest("md5:00").is_err());
        assert!(validate_digest(&good.to_uppercase()).is_err());
    }

    #[test]
    fn stream_hasher_matches_one_shot() {
        let mut h = StreamHasher::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.len(), 3);
        assert_eq!(h.finish(), sha256_digest(b"abc"));
    }
}

//! Content digests: the validated `Digest` type (sha256 only, the one algorithm every OCI tool
//! verifies), a streaming hasher, and reader/writer adapters that hash what passes through.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<64 lowercase hex>` digest. Validation happens at every boundary
/// (parsing, deserializing), so a `Digest` can always be turned into a blob path safely.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// The digest of the empty JSON object `{}` (OCI's empty descriptor).
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

impl Digest {
    /// Parse and validate a digest string.
    pub fn parse(input: &str) -> Result<Digest> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let Some((alg, enc)) = input.split_once(':') else {
            return Err(invalid("missing `algorithm:` prefix"));
        };
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(invalid("the algorithm is not `[a-z0-9+._-]+`"));
        }
        if alg != "sha256" {
            return Err(invalid(&format!(
                "algorithm `{alg}` is not supported (only sha256 can be verified)"
            )));
        }
        if enc.len() != 64 {
            return Err(invalid(&format!(
                "a sha256 digest has 64 hex digits, this one has {}",
                enc.len()
            )));
        }
        if !is_lower_hex(enc) {
            return Err(invalid("a sha256 digest is lowercase hex `[a-f0-9]`"));
        }
        Ok(Digest(input.to_string()))
    }

    /// The digest whose hex part is `hex` (64 lowercase hex digits).
    pub fn from_hex(hex: &str) -> Result<Digest> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The sha256 of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Always `sha256`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// Docker's short image ID: the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

/// A digest reads as its `sha256:<hex>` text wherever a `&str` is expected.
impl std::ops::Deref for Digest {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<Digest> for String {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

impl PartialEq<Digest> for &str {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// Incremental sha256.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.inner.finalize())))
    }
}

/// A reader that hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Read the rest of the stream (hashing it), then return the digest and total length.
    pub fn finish_draining(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let len = self.hasher.len();
        Ok((self.hasher.finish(), len))
    }

    /// The digest of what was read so far, and its length.
    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that counts the bytes written through it (tar and export streams whose size is
/// reported but whose digest another writer computes).
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, count: 0 }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_writer_counts_what_the_inner_writer_took() {
        let mut w = CountingWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        w.write_all(b" world").unwrap();
        assert_eq!(w.count(), 11);
        assert_eq!(w.into_inner(), b"hello world");
    }

    #[test]
    fn empty_json_digest_matches_spec() {
        assert_eq!(Digest::of(b"{}").as_str(), EMPTY_JSON_DIGEST);
    }

    #[test]
    fn rejects_traversal_and_bad_grammar() {
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:",
            "sha256",
            "SHA256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "sha256:44136FA355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "sha512:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} accepted");
        }
    }

    /// The registry's former validator's cases: the store's `Digest` refuses the same.
    #[test]
    fn registry_digest_cases() {
        let good = Digest::of(b"abc");
        assert!(Digest::parse(good.as_str()).is_ok());
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse("md5:00").is_err());
        assert!(Digest::parse(&good.to_uppercase()).is_err());
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.len(), 3);
        assert_eq!(h.finish(), Digest::of(b"abc"));
    }

    #[test]
    fn short_id_is_twelve_hex() {
        let d = Digest::of(b"x");
        assert_eq!(d.short().len(), 12);
        assert!(d.hex().starts_with(d.short()));
    }

    #[test]
    fn reads_and_compares_as_text() {
        let d = Digest::of(b"{}");
        let text: &str = &d;
        assert_eq!(text, EMPTY_JSON_DIGEST);
        assert_eq!(d, EMPTY_JSON_DIGEST);
        assert_eq!(EMPTY_JSON_DIGEST, d);
        let owned = EMPTY_JSON_DIGEST.to_string();
        assert_eq!(d, owned);
        assert_eq!(owned, d);
        assert_eq!(String::from(d.clone()), owned);
        assert!(d != *"sha256:00");
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, digest, len) = w.finish();
        assert_eq!((inner.as_slice(), len), (&b"abc"[..], 3));
        assert_eq!(digest, Digest::of(b"abc"));
    }

    #[test]
    fn deserialize_validates() {
        let r: std::result::Result<Digest, _> = serde_json::from_str("\"sha256:1234\"");
        assert!(r.is_err());
    }
}

//! Opening layer blobs as uncompressed tar streams: compression chosen by magic bytes (the
//! media type is a hint; a disagreement is logged), gzip via `MultiGzDecoder` (every member),
//! zstd with a window limit (`window_log_max` 27), bzip2/xz for ADD archives, and a bound on
//! the expanded size (`max_layer_bytes`: 64 GiB, `RBUILD_MAX_LAYER_SIZE`).

use std::fmt;
use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::manifest::Descriptor;
use crate::media::{self, Compression};
use crate::store::Store;

/// The expanded-size bound was hit (carried inside an `io::Error` through decoders).
#[derive(Debug, Clone)]
pub struct LimitError {
    layer: String,
    limit: u64,
}

impl LimitError {
    pub(crate) fn to_error(&self) -> Error {
        Limits {
            max_layer_bytes: self.limit,
            ..Limits::default()
        }
        .layer_too_big(&self.layer)
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} expands past {} bytes", self.layer, self.limit)
    }
}

impl std::error::Error for LimitError {}

/// Fails with `LimitError` once more than `limit` bytes have been read.
pub struct LimitedReader<R> {
    inner: R,
    left: u64,
    limit: u64,
    layer: String,
}

impl<R: Read> LimitedReader<R> {
    pub fn new(inner: R, limit: u64, layer: impl Into<String>) -> Self {
        LimitedReader {
            inner,
            left: limit,
            limit,
            layer: layer.into(),
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left.saturating_add(1)) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::other(LimitError {
                layer: self.layer.clone(),
                limit: self.limit,
            }));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Read the first bytes of `r` to sniff its compression; returns a reader that replays them.
pub fn sniff<R: Read>(mut r: R) -> io::Result<(Compression, impl Read)> {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let c = Compression::from_magic(&head[..got]);
    Ok((c, io::Cursor::new(head[..got].to_vec()).chain(r)))
}

/// Wrap `r` (whose compression is `c`) in the matching decoder.
pub fn decoder<'a, R: Read + Send + 'a>(
    r: R,
    c: Compression,
    limits: &Limits,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, r),
        )),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(r)?;
            d.window_log_max(limits.zstd_window_log_max)?;
            Box::new(ZstdErrors(d))
        }
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
    })
}

/// Gives zstd's window error a message that says what to do.
struct ZstdErrors<R>(R);

impl<R: Read> Read for ZstdErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.to_string().contains("too much memory") || e.to_string().contains("Window") {
                io::Error::new(
                    e.kind(),
                    "zstd frame declares a window larger than the limit (2^27 bytes); \
                     the layer is malformed or hostile",
                )
            } else {
                e
            }
        })
    }
}

/// Decompress an untrusted stream by its magic bytes (with `declared` as the media type's
/// claim, for a warning when they disagree), bounded to `limits.max_layer_bytes`.
pub fn decompress<'a, R: Read + Send + 'a>(
    r: R,
    declared: Option<Compression>,
    limits: &Limits,
    name: &str,
) -> Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let (actual, replay) = sniff(r).map_err(|e| Error::layer(name, format!("cannot read: {e}")))?;
    if let Some(d) = declared
        && d != actual
    {
        tracing::warn!(
            "layer {name}: media type says {} but the content is {}; using the content",
            d.name(),
            actual.name()
        );
    }
    let dec = decoder(replay, actual, limits)
        .map_err(|e| Error::layer(name, format!("cannot start {} decoder: {e}", actual.name())))?;
    Ok((
        actual,
        Box::new(LimitedReader::new(dec, limits.max_layer_bytes, name)),
    ))
}

impl Store {
    /// Open a stored layer as its uncompressed tar stream (bounded by the store's limits).
    /// The blob's digest was verified at ingest; callers that need the diff_id verified hash
    /// the stream (see `layer::unpack::unpack_layer` and `layer::scan`).
    pub fn open_layer(&self, layer: &Descriptor) -> Result<Box<dyn Read + Send + 'static>> {
        let file = self.open_blob(&layer.digest)?;
        let declared = media::layer_compression(&layer.media_type);
        let (_, r) = decompress(
            io::BufReader::with_capacity(1 << 20, file),
            declared,
            &self.limits,
            layer.digest.as_str(),
        )?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn multi_member_gzip_is_read_fully() {
        let mut out = Vec::new();
        for part in [b"hello ".as_slice(), b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            out.extend(e.finish().unwrap());
        }
        let (c, mut r) = decompress(&out[..], None, &Limits::default(), "t").unwrap();
        assert_eq!(c, Compression::Gzip);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
    }

    #[test]
    fn expansion_is_bounded() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        let limits = Limits {
            max_layer_bytes: 1000,
            ..Limits::default()
        };
        let (_, mut r) = decompress(&bomb[..], None, &limits, "sha256:bomb").unwrap();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let le = err.get_ref().unwrap().downcast_ref::<LimitError>().unwrap();
        assert!(le.to_error().to_string().contains("sha256:bomb"));
    }

    #[test]
    fn zstd_window_above_limit_is_refused() {
        let data = vec![7u8; 1 << 16];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(28))
            .unwrap();
        enc.set_pledged_src_size(None).unwrap();
        enc.write_all(&data).unwrap();
        let frame = enc.finish().unwrap();
        let limits = Limits {
            zstd_window_log_max: 20,
            ..Limits::default()
        };
        let (_, mut r) = decompress(&frame[..], None, &limits, "z").unwrap();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("window"), "{err}");
    }
}

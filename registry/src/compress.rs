//! Push-time layer compression on all cores: gzip as parallel blocks (gzp, one pigz-style
//! member) or multithreaded zstd, into a temporary file whose digest and size are computed on
//! the way. Settings are pinned so the same layer always compresses to the same digest.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use rbuild_store::Digest;
use rbuild_store::digest::Hasher;

use crate::error::{RegistryError, Result};
use crate::manifest::media;

/// A layer compression for push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media::OCI_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(RegistryError::InvalidInput {
                kind: "compression",
                value: other.to_string(),
                reason: "unknown compression".into(),
                help: "use `gzip` or `zstd`".into(),
            }),
        }
    }
}

/// gzip level (the `gzip -6` default docker uses).
const GZIP_LEVEL: u32 = 6;
/// zstd level (zstd's default).
const ZSTD_LEVEL: i32 = 3;

/// A compressed layer staged in a temporary file.
pub struct Compressed {
    pub file: tempfile::NamedTempFile,
    pub digest: Digest,
    pub size: u64,
}

/// A `Write` that hashes into a shared hasher (gzp needs an owned `'static` writer).
struct SharedHashingFile {
    file: std::fs::File,
    hasher: Arc<Mutex<Hasher>>,
}

impl Write for SharedHashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.lock().expect("hasher lock").update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Compress `input` with `threads` workers (0 = all cores; 1 = the single-threaded
/// reference encoder, used by the benchmark) into a temporary file in `tmp_dir`.
pub fn compress(
    input: &mut dyn Read,
    compression: Compression,
    threads: usize,
    tmp_dir: &std::path::Path,
) -> Result<Compressed> {
    let io = |e: std::io::Error| RegistryError::io("compressing a layer", e);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(io)?;
    let hasher = Arc::new(Mutex::new(Hasher::new()));
    let out = SharedHashingFile {
        file: file.reopen().map_err(io)?,
        hasher: hasher.clone(),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    match (compression, threads) {
        (Compression::Gzip, 1) => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            std::io::copy(input, &mut enc).map_err(io)?;
            out = enc.finish().map_err(io)?;
        }
        (Compression::Gzip, n) => {
            use gzp::ZWriter;
            let mut enc = gzp::par::compress::ParCompressBuilder::<gzp::deflate::Gzip>::new()
                .num_threads(n)
                .map_err(|e| io(std::io::Error::other(e.to_string())))?
                .compression_level(gzp::Compression::new(GZIP_LEVEL))
                .from_writer(out);
            std::io::copy(input, &mut enc).map_err(io)?;
            enc.finish()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            // gzp owns the writer and flushes it on finish; rebuild a handle for the flush below.
            out = std::io::BufWriter::new(SharedHashingFile {
                file: file.reopen().map_err(io)?,
                hasher: Arc::new(Mutex::new(Hasher::new())),
            });
        }
        (Compression::Zstd, n) => {
            let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(io)?;
            // Any worker count ≥ 1 gives the same bytes; 0 would switch to the single-threaded
            // format, so always ask for at least one worker.
            enc.multithread(n.max(1) as u32).map_err(io)?;
            std::io::copy(input, &mut enc).map_err(io)?;
            out = enc.finish().map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    drop(out);
    let h = std::mem::take(&mut *hasher.lock().expect("hasher lock"));
    let size = h.len();
    Ok(Compressed {
        file,
        digest: h.finish(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn roundtrip(c: Compression, threads: usize) -> (Digest, u64) {
        let data = sample();
        let dir = tempfile::tempdir().unwrap();
        let out = compress(&mut data.as_slice(), c, threads, dir.path()).unwrap();
        let bytes = std::fs::read(out.file.path()).unwrap();
        assert_eq!(bytes.len() as u64, out.size);
        assert_eq!(Digest::of(&bytes), out.digest);
        let mut plain = Vec::new();
        match c {
            Compression::Gzip => {
                flate2::read::GzDecoder::new(bytes.as_slice())
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(bytes.as_slice())
                    .unwrap()
                    .read_to_end(&mut plain)
                    .unwrap();
            }
        }
        assert_eq!(plain, data);
        (out.digest, out.size)
    }

    #[test]
    fn gzip_parallel_and_single_round_trip() {
        roundtrip(Compression::Gzip, 1);
        roundtrip(Compression::Gzip, 2);
    }

    #[test]
    fn zstd_is_deterministic_across_worker_counts() {
        assert_eq!(
            roundtrip(Compression::Zstd, 1),
            roundtrip(Compression::Zstd, 2)
        );
    }

    #[test]
    fn parallel_gzip_is_deterministic() {
        assert_eq!(
            roundtrip(Compression::Gzip, 2),
            roundtrip(Compression::Gzip, 3)
        );
    }
}

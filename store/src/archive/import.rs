//! `import`: a rootfs tarball (any compression) becomes a one-layer image, like
//! `docker import`. The tarball is scanned with the same strict checks as loaded layers and
//! stored uncompressed (its digest is its diff_id).

use std::io::{self, Read, Write};

use crate::blob::BlobWriter;
use crate::config::{History, ImageConfig};
use crate::error::{Error, Result};
use crate::image::{ImageRecord, Layer};
use crate::layer::decompress::decompress;
use crate::layer::scan::scan;
use crate::manifest::Descriptor;
use crate::media;
use crate::store::Store;

/// Options of `import`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Where the tarball came from, for the history comment (`-` for stdin).
    pub source: String,
    /// A commit message (docker import -m); replaces the default history comment.
    pub message: Option<String>,
    /// Creation time (RFC 3339); now when `None`.
    pub created: Option<String>,
}

/// Copies everything read into a writer as well.
struct Tee<'a, 's, R> {
    inner: R,
    out: &'a mut BlobWriter<'s>,
}

impl<R: Read> Read for Tee<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Store {
    /// Import a rootfs tarball. `configure` edits the new image's config (e.g. `--change`).
    /// The image is listed untagged; the caller tags it.
    pub fn import(
        &self,
        input: impl Read + Send,
        opts: &ImportOptions,
        configure: impl FnOnce(&mut ImageConfig) -> Result<()>,
    ) -> Result<ImageRecord> {
        let name = format!("rootfs tarball `{}`", opts.source);
        let (_, reader) = decompress(input, None, &self.limits, &name)?;
        let mut writer = self.blob_writer()?;
        let s = scan(
            Tee {
                inner: reader,
                out: &mut writer,
            },
            &self.limits,
            &name,
        )?;
        if s.entries == 0 {
            return Err(Error::archive(
                format!("{name} contains no files"),
                "pass a tar archive of a root filesystem (e.g. `tar -C rootfs -c .`)",
            ));
        }
        let pending = writer.finish()?;
        if pending.info.digest != s.diff_id {
            return Err(Error::corrupt(
                "import: the stored layer differs from the scanned stream",
            ));
        }
        let info = pending.commit(self)?;
        let created = opts.created.clone().unwrap_or_else(|| {
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or(jiff::Timestamp::now())
                .to_string()
        });
        let mut config = ImageConfig::new_for_host();
        config.created = Some(created.clone());
        config.history = vec![History {
            created: Some(created),
            created_by: None,
            comment: Some(
                opts.message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", opts.source)),
            ),
            ..History::default()
        }];
        configure(&mut config)?;
        let layer = Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, info.digest.clone(), info.size),
            diff_id: info.digest,
        };
        self.commit_image(&config, &[layer])
    }
}

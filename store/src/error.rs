//! The store's error type: one enum whose variants carry a miette code (`rbuild::store::*` for
//! store and I/O faults, `rbuild::image::*`, `rbuild::reference::*`, `rbuild::layer::*`,
//! `rbuild::archive::*`, `rbuild::limit::*` for bad input) and a help line. `Error::class`
//! says which: the store's own faults are `ErrorClass::Store` (exit 4), bad input handed to it
//! is `ErrorClass::Input` (exit 1). References carry a span into what the user typed.

use std::io;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::digest::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The store's own faults (I/O, corruption, format, a refused root, a missing blob) are
    /// [`ErrorClass::Store`](crate::ErrorClass::Store); bad input handed to the store
    /// (digests, references, archives, layers, limits, unknown images) is
    /// [`ErrorClass::Input`](crate::ErrorClass::Input).
    pub fn class(&self) -> crate::ErrorClass {
        use crate::ErrorClass::{Input, Store};
        match self {
            Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::NewerFormat { .. }
            | Error::MissingBlob { .. }
            | Error::RemoteBlob { .. }
            | Error::Usage { .. } => Store,
            Error::InvalidDigest { .. }
            | Error::InvalidPlatform { .. }
            | Error::InvalidReference { .. }
            | Error::ImageNotFound { .. }
            | Error::Ambiguous { .. }
            | Error::Conflict { .. }
            | Error::Layer { .. }
            | Error::Archive { .. }
            | Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::Json { .. }
            | Error::Limit { .. } => Input,
        }
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    /// A filesystem operation on the store or a rootfs failed.
    #[error("cannot {action} `{path}`: {source}")]
    #[diagnostic(
        code(rbuild::store::io),
        help("check the permissions and free space of the store directory")
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Stored content does not match what the store recorded: the store needs repair.
    #[error("store is corrupt: {message}")]
    #[diagnostic(
        code(rbuild::store::corrupt),
        help("run `rbuild store fsck --repair`, then pull or load the affected image again")
    )]
    Corrupt { message: String },

    /// The store was written by a newer rbuild.
    #[error("store format v{found} at `{root}` is newer than this rbuild supports (v{supported})")]
    #[diagnostic(
        code(rbuild::store::version),
        help("use a newer rbuild, or point --root at another directory")
    )]
    NewerFormat {
        root: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A digest string does not follow the grammar, or uses an algorithm we cannot verify.
    #[error("invalid digest `{input}`: {reason}")]
    #[diagnostic(
        code(rbuild::digest::invalid),
        help("a digest looks like `sha256:` followed by 64 lowercase hex digits")
    )]
    InvalidDigest { input: String, reason: String },

    /// A platform string is not `os/arch[/variant]`.
    #[error("invalid platform `{input}`: {reason}")]
    #[diagnostic(
        code(rbuild::platform::invalid),
        help("platforms look like `linux/amd64`, `linux/arm64` or `linux/arm/v7`")
    )]
    InvalidPlatform { input: String, reason: String },

    /// An image reference does not follow Docker's grammar.
    #[error("invalid reference format: {reason}")]
    #[diagnostic(code(rbuild::reference::invalid), help("{help}"))]
    InvalidReference {
        #[source_code]
        input: String,
        #[label("{label}")]
        span: SourceSpan,
        reason: String,
        label: String,
        help: String,
    },

    /// No image answers to the name.
    #[error("no such image: `{name}`")]
    #[diagnostic(code(rbuild::image::not_found), help("{help}"))]
    ImageNotFound { name: String, help: String },

    /// A name matches more than one image (a short ID prefix shared by several).
    #[error("`{name}` is ambiguous: it matches {count} images")]
    #[diagnostic(
        code(rbuild::image::ambiguous),
        help("give more digits of the image ID, or a name:tag")
    )]
    Ambiguous { name: String, count: usize },

    /// An operation would break something still in use.
    #[error("conflict: {message}")]
    #[diagnostic(code(rbuild::image::conflict), help("{help}"))]
    Conflict { message: String, help: String },

    /// A layer tar is malformed or hostile.
    #[error("{layer}: {message}")]
    #[diagnostic(code(rbuild::layer::invalid), help("{help}"))]
    Layer {
        layer: String,
        message: String,
        help: String,
    },

    /// An archive (save/load/import input) is malformed.
    #[error("{message}")]
    #[diagnostic(code(rbuild::archive::invalid), help("{help}"))]
    Archive { message: String, help: String },

    /// A blob's content does not hash to the digest it is supposed to have.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    #[diagnostic(
        code(rbuild::archive::digest_mismatch),
        help("the content was corrupted or tampered with; fetch it again from a trusted source")
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// A blob's length differs from its descriptor's size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    #[diagnostic(
        code(rbuild::archive::size_mismatch),
        help("the content was truncated or padded; fetch it again from a trusted source")
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// JSON that is not valid, or not the document we expected.
    #[error("invalid {what}: {message}")]
    #[diagnostic(code(rbuild::archive::json), help("{help}"))]
    Json {
        what: String,
        message: String,
        help: String,
    },

    /// A bound on untrusted input was hit.
    #[error("{what} exceeds the limit of {limit}")]
    #[diagnostic(code(rbuild::limit::exceeded), help("{help}"))]
    Limit {
        what: String,
        limit: String,
        help: String,
    },

    /// A named blob is not in the store.
    #[error("blob {digest} is not in the store")]
    #[diagnostic(
        code(rbuild::store::missing_blob),
        help("pull or load the image that contains it again")
    )]
    MissingBlob { digest: Digest },

    /// A layer of a stored image that was never downloaded: it is in a registry (see
    /// `remote.rs`) and the reader did not fetch it first.
    #[error("layer {digest} is not stored here: it is in `{source_repo}`")]
    #[diagnostic(
        code(rbuild::store::remote_layer),
        help(
            "fetch it with `rbuild pull` of the image, or use a command that fetches remote layers (`run`, `save`, `build -o`)"
        )
    )]
    RemoteBlob { digest: Digest, source_repo: String },

    /// Bad arguments to a library call (a programming or usage error caught at runtime).
    #[error("{message}")]
    #[diagnostic(code(rbuild::store::usage), help("{help}"))]
    Usage { message: String, help: String },
}

impl Error {
    /// Wrap an I/O error with what we were doing and where.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::Corrupt {
            message: message.into(),
        }
    }

    pub fn archive(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Archive {
            message: message.into(),
            help: help.into(),
        }
    }

    /// A layer error; `layer` names it (`sha256:…`, or a description such as
    /// `layer 2 (sha256:…) of image x`, which is shown as it is).
    pub fn layer(layer: impl Into<String>, message: impl Into<String>) -> Error {
        let layer = layer.into();
        let layer = if layer.starts_with("layer ") {
            layer
        } else {
            format!("layer {layer}")
        };
        Error::Layer {
            layer,
            message: message.into(),
            help: "the layer is malformed or crafted to escape its root; rbuild refuses it"
                .to_string(),
        }
    }

    pub fn json(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Json {
            what: what.into(),
            message: message.into(),
            help: "the document must be valid JSON of the expected OCI/Docker type".to_string(),
        }
    }

    pub fn usage(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Is this a "not found" error (image or blob)?
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::ImageNotFound { .. } | Error::MissingBlob { .. } | Error::RemoteBlob { .. }
        )
    }
}

/// Attach a path and action to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e.into()))
    }
}

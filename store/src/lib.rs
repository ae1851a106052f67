//! rbuild-store is the local, content-addressed image store: an OCI image layout on disk plus
//! the references, layer unpacking and archive formats around it.

pub mod archive;
pub mod blob;
pub mod config;
pub mod digest;
pub mod error;
pub mod fsck;
pub mod fsutil;
pub mod gc;
pub mod image;
pub mod index;
pub mod json;
pub mod layer;
pub mod layout;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod manifest;
pub mod media;
pub mod reference;
pub mod refs;
pub mod store;
pub mod testing;

pub use blob::{BlobInfo, BlobWriter, PendingBlob};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use digest::Digest;
pub use error::{Error, Result};
pub use image::{ImageRecord, ImageSummary, Layer};
pub use layout::default_root;
pub use limits::Limits;
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use media::Compression;
pub use reference::Reference;
pub use store::{Store, StoreOptions};

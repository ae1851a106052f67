//! Image archives: `save` (OCI image-layout tar, or a docker-archive that is also an OCI
//! layout, deterministic), `load` (either format, streamed from a file or stdin, every blob
//! verified and every layer scanned before anything is referenced), and `import` (a rootfs
//! tarball as a one-layer image).

pub mod import;
pub mod load;
pub mod save;
mod writer;

pub use import::ImportOptions;
pub use load::{LoadReport, LoadedImage};
pub use save::{SaveFormat, SaveItem, SaveTarget};

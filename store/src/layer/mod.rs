//! Layers: opening blobs as tar streams (`decompress`), the bounded tar reader (`tar`), entry
//! names and whiteouts (`path`), in-root resolution (`inroot`), applying layers to disk
//! (`unpack`), validation without extraction (`scan`), and the in-memory flattener
//! (`flatten`, compared path by path in `flatdiff`). Layer *writing* (diffing a snapshot)
//! belongs to the executor.

pub mod decompress;
pub mod flatdiff;
pub mod flatten;
pub mod inroot;
pub mod path;
pub mod scan;
pub mod tar;
pub mod unpack;

pub use decompress::{LimitedReader, decompress};
pub use flatdiff::{PathChange, PathDiff, diff_trees};
pub use flatten::{FlatEntry, FlatKind, FlatTree, Spool, flatten_image, flatten_image_spooled};
pub use inroot::RootDir;
pub use path::{AbsolutePaths, RelPath};
pub use scan::{LayerScan, scan, scan_headers};
pub use unpack::{
    DuplicatePolicy, LowerLayers, UnpackMode, UnpackOptions, UnpackStats, unpack, unpack_over,
};

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::Layer;
use crate::store::Store;

impl Store {
    /// Unpack a stored layer into `dest` and verify its diff_id. `dest` must already exist
    /// (empty for `OverlayLower`); on error it is partially written.
    pub fn unpack_layer(
        &self,
        layer: &Layer,
        dest: &Path,
        opts: &UnpackOptions,
    ) -> Result<UnpackStats> {
        let r = self.open_layer(&layer.descriptor)?;
        let stats = unpack(
            r,
            dest,
            opts,
            &self.limits,
            layer.descriptor.digest.as_str(),
        )?;
        if stats.diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed content of layer {}", layer.descriptor.digest),
                expected: layer.diff_id.clone(),
                actual: stats.diff_id,
            });
        }
        Ok(stats)
    }

    /// Apply a stored layer (diff_id verified) to `dest` as an overlay lower directory on top
    /// of `below`, resolving its paths in-root through the lower layers ([`unpack_over`]).
    pub fn unpack_layer_over(
        &self,
        layer: &Layer,
        dest: &Path,
        below: &dyn LowerLayers,
    ) -> Result<UnpackStats> {
        let r = self.open_layer(&layer.descriptor)?;
        let stats = unpack_over(
            r,
            dest,
            below,
            &UnpackOptions::new(UnpackMode::OverlayLower),
            &self.limits,
            layer.descriptor.digest.as_str(),
        )?;
        if stats.diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed content of layer {}", layer.descriptor.digest),
                expected: layer.diff_id.clone(),
                actual: stats.diff_id,
            });
        }
        Ok(stats)
    }
}

//! rbuild-store is the local, content-addressed image store: an OCI image layout on disk plus
//! the references, layer unpacking and archive formats around it.
//!
//! # Layout (`$ROOT`, see [`default_root`])
//!
//! `$ROOT` is an OCI image layout (`skopeo inspect oci:$ROOT:docker.io/library/busybox:1.35`
//! and `umoci` read it): `oci-layout`, `index.json` (the image table: an entry per name, with
//! `org.opencontainers.image.ref.name` and `io.containerd.image.name` holding the full
//! normalised reference; entries without a name are untagged images), `blobs/sha256/<hex>`.
//! Beside it: `ingest/` (blobs being written), `tmp/`, `refs/<kind>/<name>` (GC roots of other
//! subsystems), `leases/` (per-process protection), `snapshots/v2/<chain id hex>` (executor),
//! `cache/` (solver), `containers/` (`rbuild run`), `quarantine/` (fsck), `LOCK`,
//! `index.lock`, `rbuild-store-version`.
//!
//! # API for the other crates
//!
//! - Open: [`Store::open`]`(root)` (limits from the environment) or [`Store::open_with`].
//! - Blobs: [`Store::blob_writer`] / [`Store::blob_writer_expecting`]`(&digest, Some(size),
//!   what)` → [`BlobWriter`] (`Write` + [`BlobWriter::copy_from`]; [`BlobWriter::commit`] →
//!   [`BlobInfo`], or [`BlobWriter::finish`] → [`PendingBlob`] to publish later);
//!   [`Store::put_blob`], [`Store::open_blob`], [`Store::read_blob`] (re-verified),
//!   [`Store::has_blob`], [`Store::blob_size`], [`Store::blob_path`]. Writes are crash-safe
//!   (ingest → fsync → verify → rename → fsync dir) and recorded in this handle's lease.
//! - Images: [`Store::commit_image`]`(&ImageConfig, &[Layer]) -> ImageRecord` (config +
//!   manifest written, listed untagged), [`Store::tag`], [`Store::untag`],
//!   [`Store::resolve_image`]`(&str)` (name, `name@sha256:…`, full/short ID; suggestions on
//!   unknown names), [`Store::image`], [`Store::list_images`], [`Store::names_of`],
//!   [`Store::register_images`] / [`Store::add_image`] (manifests already stored, e.g. pulled),
//!   [`Store::register_targets`] (the same for image indexes), [`Store::remove`] (rmi; a
//!   multi-platform image is one image), [`Store::remove_image`]. [`ImageSummary`] (a listing
//!   entry: [`ImageSummary::target`], `id()` = the index digest for a multi-platform image,
//!   `size()` = its configs and layer blobs as stored, each once). Docker's image size, layers
//!   uncompressed whatever their blobs: [`Store::content_sizes`] then
//!   [`ImageSummary::content_size`] / [`ImageRecord::content_size`] ([`content_size`]).
//! - Multi-platform images ([`target`]): [`Store::commit_index`]`(&[(Platform, ImageRecord)])
//!   -> IndexRecord`, [`Store::tag_target`], [`Store::resolve_target`]`(&str) -> Target` (an
//!   image or an index), [`Store::resolve_image_for`]`(&str, &Platform)`,
//!   [`Store::image_for_platform`], [`Store::target`]`(&Descriptor)`.
//! - Layers ([`layer`]): [`Store::open_layer`]`(&Descriptor) -> impl Read` (decompressed by
//!   magic, bounded); [`layer::unpack()`] / [`Store::unpack_layer`] with
//!   [`layer::UnpackMode`]`::{Merged, OverlayLower, Plain}` (in-root, whiteouts, devices,
//!   xattrs, setuid; diff_id verified); [`layer::scan()`] (validate without extracting, diff_id);
//!   [`layer::flatten_image`] / [`layer::FlatTree`] (conformance comparison format;
//!   [`layer::flatten_image_spooled`] keeps file contents in a [`layer::Spool`] for rootfs
//!   exports); [`layer::diff_trees`] (path-by-path differences of two trees);
//!   [`layer::RootDir`] (in-root resolution for other rootfs operations).
//! - Remote layers ([`remote`]): layers an image lists but the store never downloaded (a
//!   build's base resolved by manifest and config), with where to fetch them:
//!   [`Store::record_remote_layers`], [`Store::remote_blob`], [`Store::remote_layers`],
//!   [`Store::has_layer_or_remote`]; reading one is [`Error::RemoteBlob`].
//! - GC roots: [`Store::set_ref`]`(kind, name, &[Digest])`, [`Store::remove_ref`],
//!   [`Store::get_ref`], [`Store::list_refs`], [`Store::touch_ref`] (kinds
//!   [`refs::KIND_CACHE`], [`refs::KIND_CONTAINER`]); [`Store::hold_blob`],
//!   [`Store::hold_snapshot`] (lease until the handle is dropped or the process dies).
//! - Snapshots (keyed by layer chain id, [`chain::chain_ids`]): [`Store::snapshot_path`],
//!   [`Store::create_snapshot_staging`], [`Store::commit_snapshot`], [`Store::snapshot_dir`].
//! - Maintenance: [`Store::prune`], [`Store::collect_garbage`], [`Store::live_set`],
//!   [`Store::fsck`]. Archives: [`Store::load`], [`Store::load_file`] (an index is kept
//!   with every platform and attestation the archive holds; [`archive::LoadedImage::target`]),
//!   [`Store::save`], [`Store::save_dir`] (the same as a layout directory),
//!   [`Store::import`]. Saving a [`Target`] (what `-o type=oci|docker` and `rbuild save`
//!   write): [`Store::save_targets`]`(&[`[`archive::SaveTarget`]` { target, names }], format,
//!   writer) -> writer` and [`Store::save_targets_dir`]`(…, dir)`: an index is written whole
//!   in [`archive::SaveFormat::Oci`] (same index digest after a load); a docker-archive holds
//!   one platform, so narrow an index with [`Target::image_for`] first (an index in that
//!   format is refused). [`Store::target_blobs`] lists every stored blob of a target.
//! - Types: [`Digest`] (validated sha256), [`Reference`] (Docker grammar and normalisation),
//!   [`ImageConfig`] (every Docker field, unknown fields kept), [`Manifest`], [`Index`],
//!   [`Descriptor`], [`Platform`] (the one platform type of rbuild: `os/arch[/variant]`
//!   parsing with containerd's normalisation, [`Platform::host`], index-entry matching),
//!   [`Limits`], [`size`] (the one size parser and formatter), [`Error`] (its `class()`:
//!   store faults vs bad input), [`ErrorClass`] (the kinds of failure every crate's errors
//!   report, which the cli maps to exit codes) and [`Failure`] (a typed diagnostic for a
//!   failure without an error type of its own).
//!
//! # GC rules
//!
//! Live = reachable from index.json entries, from every `refs/<kind>/<name>` digest, and from
//! the leases of live processes (a lease names a PID and its start time; a dead PID's lease is
//! expired), walking manifests/indexes to configs and layers. A snapshot `snapshots/v2/<hex>` is
//! live when `sha256:<hex>` is the chain id of a prefix of a live config's diff_ids, listed in
//! a ref, or leased; `tmp-<pid>-<start>.*` staging dirs of dead processes are removed, and so are
//! the diff_id-keyed `snapshots/<hex>` directories of earlier versions (never valid views).
//! `cache/` is the solver's own (its index at [`layout::Layout::cache_index`], stat caches at
//! [`layout::Layout::context_stat_cache`]) and never touched; `refs/cache/<key>` refs keep the
//! blobs of its entries. Remote layer records of blobs no live image references are dropped.
//! GC runs under the exclusive `LOCK`; every
//! step that makes content reachable holds it shared.

pub mod archive;
pub mod blob;
pub mod chain;
pub mod class;
pub mod config;
pub mod content_size;
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
pub mod platform;
pub mod reference;
pub mod refs;
pub mod remote;
pub mod repo_digests;
pub mod size;
pub mod store;
pub mod target;
pub mod testing;
pub mod userns;

pub use blob::{BlobInfo, BlobWriter, PendingBlob};
pub use class::{ErrorClass, Failure};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use digest::Digest;
pub use error::{Error, Result};
pub use image::{ImageRecord, ImageSummary, Layer};
pub use layout::default_root;
pub use limits::Limits;
pub use manifest::{Descriptor, Document, Index, Manifest};
pub use media::Compression;
pub use platform::Platform;
pub use reference::Reference;
pub use store::{Store, StoreOptions};
pub use target::{IndexRecord, Target};

//! rbuild-registry speaks the OCI distribution protocol: pull, push, authentication, mirrors
//! and the registry-backed build cache.
//!
//! Entry points for other crates (all synchronous; a [`Client`] is shared by reference
//! between threads):
//!
//! - [`Client::new`]`(`[`RegistriesConfig::load`]`(Some(root))?)` — one per command.
//! - [`pull::pull_image`]`(&client, &store, &RemoteRef, &Platform, &progress) ->
//!   Result<PulledImage>` — `rbuild pull`, `FROM` auto-pull and `build --pull`;
//!   [`pull::pull_all_platforms`]`(&client, &store, &RemoteRef, &progress) ->
//!   Result<PulledIndex>` — `rbuild pull --all-platforms` (index, every manifest, every blob
//!   once; the name goes to the index).
//! - [`push::push_target`]`(&client, &store, &LocalTarget, &RemoteRef, &PushOptions,
//!   &progress) -> Result<PushedImage>` — `rbuild push` and `build --push`: an image
//!   ([`push::push_image`]) or a multi-platform image ([`push::push_index`]: entries by
//!   digest, then the index, byte for byte when nothing needed compressing). The input comes
//!   from the store's `Target` through [`store_impl::local_target`] (which refuses an index
//!   whose manifests are not all stored), mount candidates from
//!   [`store_impl::mount_candidates`], and the pushed digest goes back with
//!   [`store_impl::record_pushed_target`].
//! - [`pull::resolve_digest`]`(&client, &RemoteRef) -> Result<String>` — `build --pull`
//!   checks whether a tag moved (HEAD, mirrors first).
//! - [`cache::export_cache`]`(&client, &store, &RemoteRef, index_bytes, &[LocalLayer],
//!   &PushOptions, &progress) -> Result<ExportedCache>` and
//!   [`cache::import_cache`]`(&client, &RemoteRef) -> Result<ImportedCache>`, then
//!   [`pull::fetch_blob`]`(&client, &store, &RemoteRef, &Descriptor, &progress)` for each
//!   layer the build actually needs — `--cache-to/--cache-from type=registry`.
//!   [`cache::import_caches`] reads a reference that may also name an image carrying an inline
//!   cache ([`cache_inline`]: `embed`/`extract` of `dev.rbuild.cache.v1`, one per platform
//!   image of an index); [`cache_local`] is the same cache in an OCI layout directory.
//! - [`auth::credentials::store_login`] / [`auth::credentials::remove_login`] and
//!   [`Client::check_login`] — `rbuild login` / `logout`.
//!
//! The store side is the [`store_api`] traits ([`PullTarget`], [`PushSource`]). The OCI model
//! is the store's: [`Digest`], [`Descriptor`], manifests and indexes
//! (`rbuild_store::manifest`), [`Platform`] (parsing, host, index-entry matching) and
//! `rbuild_store::Reference` (the grammar behind [`RemoteRef`]).

pub mod auth;
pub mod cache;
pub mod cache_inline;
pub mod cache_local;
pub mod client;
pub mod compress;
pub mod config;
pub mod error;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod remote;
pub mod store_api;
pub mod store_impl;

pub use auth::credentials::{
    Credential, CredentialProvider, DockerConfigCredentials, StaticCredentials,
};
pub use client::repo::{BlobPush, Repo};
pub use client::transport::Client;
pub use compress::Compression;
pub use config::{Endpoint, RegistriesConfig};
pub use error::{RegistryError, Result};
pub use manifest::FetchedManifest;
pub use progress::{BlobOutcome, NoProgress, Progress};
pub use pull::{PulledImage, PulledIndex, pull_all_platforms, pull_image};
pub use push::{PushOptions, PushedImage, push_image, push_index, push_target};
pub use rbuild_store::{Descriptor, Digest, Platform};
pub use remote::RemoteRef;
pub use store_api::{
    Ingest, LocalChild, LocalImage, LocalIndex, LocalLayer, LocalTarget, PullTarget, PushSource,
};

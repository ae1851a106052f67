//! The registry side of `rbuild build`: the flags (`--pull`, `--push`, `--cache-from`,
//! `--cache-to`, `--compression`), a lazily connected client shared by the build, automatic
//! pulls of base images, the registry build cache (import, layer fetch, export) and pushes.

pub mod cache;
pub mod layers;
pub mod pull;
pub mod push;
pub mod spec;

use std::sync::OnceLock;

use clap::Args;
use rbuild_registry::{Client, RegistriesConfig, RegistryError};
use rbuild_store::Store;

pub use layers::RemoteLayers;

/// Registry flags of `rbuild build` (also accepted by `explain` and `plan`, which honour
/// `--pull` and `--cache-from` and ignore the rest).
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// When to pull base images: `--pull` (= `always`) checks the registry for newer
    /// versions of their tags and pulls those whose digest changed; `missing` (the default)
    /// pulls only images not in the store; `never` uses stored images only (offline builds).
    #[arg(
        long,
        value_enum,
        value_name = "always|missing|never",
        num_args = 0..=1,
        require_equals = true,
        default_value = "missing",
        default_missing_value = "always"
    )]
    pub pull: PullPolicy,

    /// After a successful build, push every `-t` name to its registry.
    #[arg(long)]
    pub push: bool,

    /// Compression for built layers pushed with `--push` (and the default for `--cache-to`).
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: String,

    /// Import build cache from a registry: `type=registry,ref=REGISTRY/REPO:TAG` (or just
    /// the reference); may be repeated. An unreachable or missing cache is a warning.
    #[arg(long = "cache-from", value_name = "type=registry,ref=REF")]
    pub cache_from: Vec<String>,

    /// Export the build cache to a registry after the build:
    /// `type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]`.
    #[arg(long = "cache-to", value_name = "type=registry,ref=REF[,mode=min|max]")]
    pub cache_to: Vec<String>,
}

/// `--pull[=POLICY]`, as Buildah and Podman spell it (docker's bare `--pull` is `always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Re-check every base image's tag against its registry.
    Always,
    /// Pull only what the store does not have.
    Missing,
    /// Never contact a registry for base images.
    Never,
}

/// How registry transfers show progress during a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfers {
    /// Bars on a terminal, docker-style lines otherwise.
    Shown,
    /// Nothing (`-q`, `--progress json`).
    Hidden,
}

/// A build's connection to registries: the client is created on first use, so a build that
/// needs no registry never reads `registries.toml` or touches the network.
pub struct Session {
    root: std::path::PathBuf,
    client: OnceLock<Result<Client, String>>,
    pub transfers: Transfers,
    /// Layers of imported caches that can be fetched on demand.
    pub layers: RemoteLayers,
}

impl Session {
    pub fn new(store: &Store, transfers: Transfers) -> Session {
        Session {
            root: store.root().to_path_buf(),
            client: OnceLock::new(),
            transfers,
            layers: RemoteLayers::default(),
        }
    }

    /// The client (configured from `registries.toml` in the store root or the user's config).
    pub fn client(&self) -> miette::Result<&Client> {
        let client = self.client.get_or_init(|| {
            RegistriesConfig::load(Some(&self.root))
                .map(Client::new)
                .map_err(|e| describe(&e))
        });
        client.as_ref().map_err(|message| {
            miette::Report::new(
                rbuild_store::Failure::new(
                    rbuild_store::ErrorClass::Registry,
                    "rbuild::registry::config",
                    message.clone(),
                )
                .with_help("fix `registries.toml` in the store root or `~/.config/rbuild/`"),
            )
        })
    }

    pub fn quiet(&self) -> bool {
        self.transfers == Transfers::Hidden
    }
}

/// After the image is committed and tagged: `--push` every name, then `--cache-to` every
/// cache (a failure of either fails the command; the image stays built and tagged).
pub fn publish(
    prepared: &crate::build::Prepared,
    solved: &rbuild_solver::scheduler::Solved,
    tags: &[rbuild_store::Reference],
    push: bool,
    cache_to: &[spec::CacheSpec],
    compression: rbuild_registry::Compression,
    note: &(dyn Fn(&str) + Sync),
) -> miette::Result<()> {
    if push {
        push::push_all(&prepared.registry, &prepared.store, tags, compression, note)?;
    }
    cache::export(
        &prepared.registry,
        &cache::ExportInput {
            store: &prepared.store,
            cache: &prepared.cache,
            plan: &prepared.planned.plan,
            solved,
            compression,
        },
        cache_to,
        note,
    )
}

/// A registry error as one line: its message and every cause (the registry's own words are
/// part of the message).
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The help line a registry error carries, if any.
pub fn help_of(err: &RegistryError) -> Option<String> {
    miette::Diagnostic::help(err).map(|h| h.to_string())
}

//! The registry side of a build: a lazily connected client shared by the build, automatic
//! pulls of base images (manifest and config; their layers when something reads them,
//! `remote_layers`), the registry build cache (import, layer fetch, export) and pushes.

pub mod cache;
pub mod inline;
pub mod layers;
pub mod pull;
pub mod push;
pub mod remote_layers;
pub mod spec;

use std::sync::OnceLock;

use rbuild_registry::{Client, RegistriesConfig, RegistryError};
use rbuild_store::Store;

pub use layers::RemoteLayers;

/// A build's connection to registries: the client is created on first use, so a build that
/// needs no registry never reads `registries.toml` or touches the network.
pub struct Registry {
    root: std::path::PathBuf,
    client: OnceLock<Result<Client, String>>,
    /// Layers of imported caches that can be fetched on demand.
    pub layers: RemoteLayers,
}

impl Registry {
    pub fn new(store: &Store) -> Registry {
        Registry {
            root: store.root().to_path_buf(),
            client: OnceLock::new(),
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
}

/// After the image is committed and tagged: push every name, then export to every cache (a
/// failure of either fails the build; the image stays built and tagged). `built` is what the
/// build committed: one image, or the index of a multi-platform build, which is pushed whole;
/// `builds` is each platform's plan and solve, whose steps all go into one registry cache (a
/// key shared by several platforms once: keys carry the platform a step ran for).
#[expect(
    clippy::too_many_arguments,
    reason = "the build's outputs, passed through from the session"
)]
pub fn publish(
    prepared: &crate::Session,
    builds: &[(&crate::PlatformBuild, &rbuild_solver::scheduler::Solved)],
    built: &rbuild_store::Target,
    tags: &[rbuild_store::Reference],
    push: bool,
    cache_to: &[spec::CacheSpec],
    compression: rbuild_registry::Compression,
    reporter: &dyn crate::Reporter,
) -> miette::Result<()> {
    if push {
        push::push_all(
            &prepared.registry,
            &prepared.store,
            built,
            tags,
            compression,
            reporter,
        )?;
    }
    let plans: Vec<(&rbuild_solver::op::Plan, &rbuild_solver::scheduler::Solved)> = builds
        .iter()
        .map(|(build, solved)| (&build.planned.plan, *solved))
        .collect();
    cache::export(
        &prepared.registry,
        &cache::ExportInput {
            store: &prepared.store,
            cache: &prepared.cache,
            builds: &plans,
            compression,
        },
        cache_to,
        reporter,
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

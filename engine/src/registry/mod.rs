//! The registry side of a build: a lazily connected client shared by the build, automatic
//! pulls of base images, the registry build cache (import, layer fetch, export) and pushes.

pub mod cache;
pub mod layers;
pub mod pull;
pub mod push;
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
/// `builds` is each platform's plan and solve. The registry cache of a multi-platform build is
/// not exported: `--cache-to` with an index is refused before anything is pushed (one cache
/// reference cannot hold several platforms' entries yet; the export itself takes the steps of
/// every platform, a key shared by several once).
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
    check_cache_to(built.is_index(), cache_to)?;
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

/// `--cache-to` is refused for a multi-platform build (one cache reference cannot hold
/// several platforms' entries yet). `publish` checks it before pushing; a multi-platform
/// build can call it before it starts.
pub fn check_cache_to(multi_platform: bool, cache_to: &[spec::CacheSpec]) -> miette::Result<()> {
    if multi_platform && !cache_to.is_empty() {
        return Err(miette::Report::new(
            rbuild_store::Failure::new(
                rbuild_store::ErrorClass::Input,
                "rbuild::usage::cache_to",
                "`--cache-to` is not supported for a multi-platform build",
            )
            .with_help("build one platform at a time to export its cache, or drop `--cache-to`"),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_is_refused_for_multi_platform_builds_only() {
        let specs =
            spec::parse_all("--cache-to", &["type=registry,ref=r/cache".to_string()]).unwrap();
        let err = check_cache_to(true, &specs).unwrap_err();
        assert!(err.to_string().contains("multi-platform"), "{err}");
        assert_eq!(
            err.code().map(|c| c.to_string()).as_deref(),
            Some("rbuild::usage::cache_to")
        );
        check_cache_to(false, &specs).unwrap();
        check_cache_to(true, &[]).unwrap();
    }
}

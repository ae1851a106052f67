//! What a build is asked to do, as plain data: [`PrepareOptions`] (enough to plan it: what
//! `explain` and `plan` take) inside [`BuildOptions`] (everything else a build does). A
//! front-end parses its flags into these; the flag syntaxes shared with BuildKit (`--output`,
//! `--cache-from`/`--cache-to`, `--allow`) have their parsers here
//! ([`crate::output::parse_all`], [`crate::registry::spec::parse_all`],
//! [`crate::entitlements::Allowed::parse`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_executor::Backend;
use rbuild_executor::build::SecretSource;
use rbuild_executor::sandbox::PidsLimit;
use rbuild_registry::Compression;
use rbuild_solver::op::{Network, Platform};
use rbuild_store::Reference;

use crate::entitlements::Allowed;
use crate::output::OutputSpec;
use crate::registry::spec::CacheSpec;

/// When base images are pulled (`--pull[=POLICY]`, as Buildah and Podman spell it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Re-check every base image's tag against its registry; pull those that moved.
    Always,
    /// Pull only what the store does not have.
    #[default]
    Missing,
    /// Never contact a registry for base images (offline builds).
    Never,
}

/// Where a build's Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DockerfileSource {
    /// `CONTEXT/Dockerfile`.
    #[default]
    InContext,
    /// A file (relative paths are relative to the current directory; for a context from
    /// stdin or git, to the context's root).
    Path(PathBuf),
    /// Standard input.
    Stdin,
}

/// Where the build context comes from (the positional argument of `rbuild build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A directory.
    Dir(PathBuf),
    /// `-`: standard input. A tar archive (plain, gzip, bzip2, xz or zstd) is the context and
    /// holds the Dockerfile; anything else is the Dockerfile, and the build has no context.
    Stdin,
    /// A git repository URL (BuildKit's rules: `rbuild_solver::gitref`), checked out for the
    /// build; its fragment may name the ref and a subdirectory (`#main:app`).
    Git(String),
}

impl ContextSource {
    /// Read the context argument as docker does: `-` is stdin, an existing directory is a
    /// directory (even when it also reads as a git URL), then a git URL, else a directory
    /// (which fails later, saying it is missing).
    pub fn from_arg(word: &str) -> miette::Result<ContextSource> {
        if word == "-" {
            return Ok(ContextSource::Stdin);
        }
        if std::path::Path::new(word).is_dir() {
            return Ok(ContextSource::Dir(word.into()));
        }
        match rbuild_solver::gitref::parse(word) {
            Ok(Some(_)) => Ok(ContextSource::Git(word.to_string())),
            Ok(None) => Ok(ContextSource::Dir(word.into())),
            Err(message) => Err(miette::miette!(
                code = "rbuild::usage::git_context",
                help = "write `https://host/repo.git#REF:SUBDIR`, `git@host:repo.git#REF` or \
                        `git://host/repo#REF`",
                "invalid git URL `{}`: {message}",
                rbuild_solver::inputs::redact(word)
            )),
        }
    }
}

/// Everything needed to plan a build against a store.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// The store root (`rbuild_store::default_root()` for the user's store).
    pub root: PathBuf,
    /// The build context: what COPY and ADD read from.
    pub context: ContextSource,
    pub dockerfile: DockerfileSource,
    /// `--build-arg` values for ARG.
    pub build_args: BTreeMap<String, String>,
    /// Build only up to this stage.
    pub target: Option<String>,
    /// The platforms to build for, normalised and without duplicates (see
    /// [`PrepareOptions::set_platforms`]). Empty: this machine's platform, not asked for
    /// (BuildKit's implicit target). One: a single image, as today. Several: one image per
    /// platform and an image index over them, which tags and `type=image` outputs name.
    pub platforms: Vec<Platform>,
    pub pull: PullPolicy,
    /// Registry caches imported before solving (skipped with `no_cache`).
    pub cache_from: Vec<CacheSpec>,
    /// Run every step: no cache hits, no cache import.
    pub no_cache: bool,
    /// `SOURCE_DATE_EPOCH`: part of every file-changing step's cache key, and the image's
    /// timestamps.
    pub source_date_epoch: Option<i64>,
    /// `--add-host` entries (name, IP address) for RUN steps' `/etc/hosts`; part of RUN
    /// steps' cache keys, as BuildKit keeps them in the exec op.
    pub extra_hosts: Vec<(String, String)>,
    /// `--shm-size`: bytes of RUN steps' `/dev/shm` (part of their keys, as in BuildKit).
    pub shm_size: Option<u64>,
    /// `--ulimit`s of RUN steps (part of their keys, as in BuildKit).
    pub ulimits: Vec<rbuild_executor::sandbox::Ulimit>,
    /// `--no-cache-filter`: names of stages whose steps ignore the cache.
    pub no_cache_filter: Vec<String>,
    /// `--build-context`s by normalised name ([`crate::named_context::parse`]).
    pub named_contexts: BTreeMap<String, crate::named_context::NamedContext>,
}

impl PrepareOptions {
    /// Build `context/Dockerfile` for this machine's platform into the store at `root`, with
    /// the defaults of `rbuild build`.
    pub fn new(root: impl Into<PathBuf>, context: impl Into<PathBuf>) -> PrepareOptions {
        PrepareOptions {
            root: root.into(),
            context: ContextSource::Dir(context.into()),
            dockerfile: DockerfileSource::InContext,
            build_args: BTreeMap::new(),
            target: None,
            platforms: Vec::new(),
            pull: PullPolicy::Missing,
            cache_from: Vec::new(),
            no_cache: false,
            source_date_epoch: None,
            extra_hosts: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
            no_cache_filter: Vec::new(),
            named_contexts: BTreeMap::new(),
        }
    }
}

impl PrepareOptions {
    /// Set the platforms to build for: normalised, duplicates (after normalisation) dropped,
    /// the first occurrence's position kept.
    pub fn set_platforms(&mut self, platforms: impl IntoIterator<Item = Platform>) {
        self.platforms.clear();
        for p in platforms {
            let p = p.normalized();
            if !self.platforms.contains(&p) {
                self.platforms.push(p);
            }
        }
    }

    /// Whether the build makes an image index (several platforms).
    pub fn is_multi_platform(&self) -> bool {
        self.platforms.len() > 1
    }
}

/// Everything a build does, from the Dockerfile to tags, outputs and pushes.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub prepare: PrepareOptions,
    /// Names tagged in the store once the build succeeded.
    pub tags: Vec<Reference>,
    /// `-o` outputs, written after the build (checked to lie outside the store before it).
    pub outputs: Vec<OutputSpec>,
    /// Write the image ID here.
    pub iidfile: Option<PathBuf>,
    /// Write the build result (digests, names) as JSON here.
    pub metadata_file: Option<PathBuf>,
    /// Secrets for `RUN --mount=type=secret`, by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh` agents by id, for `RUN --mount=type=ssh` ([`crate::ssh::parse`]).
    pub ssh: BTreeMap<String, crate::ssh::SshSource>,
    /// `--annotation`s: on each platform's manifest, and for a multi-platform build on the
    /// index and on the manifests' descriptors in it.
    pub annotations: Annotations,
    /// `--label`s: set on the final image, over the Dockerfile's `LABEL`s of the same key.
    pub labels: BTreeMap<String, String>,
    /// Network of RUN steps that do not choose one.
    pub network: Network,
    /// Entitlements RUN steps may ask for.
    pub allow: Allowed,
    /// Memory limit (memory + swap) of each RUN step, in bytes.
    pub memory: Option<u64>,
    pub pids_limit: PidsLimit,
    /// Stages built at the same time (default: the number of CPUs).
    pub jobs: Option<usize>,
    /// How step root filesystems are made.
    pub backend: Backend,
    /// Before building, report the cache explanations ([`crate::Notice::Explained`]).
    pub explain: bool,
    /// Fail with a cache-miss error instead of building when a step would run.
    pub fail_on_cache_miss: bool,
    /// Build twice (the second time without the cache) and fail unless both images agree.
    pub verify_reproducible: bool,
    /// Push every tag to its registry after the build.
    pub push: bool,
    /// Export the build cache to these registries after the build.
    pub cache_to: Vec<CacheSpec>,
    /// Compression of pushed layers (and the default of `cache_to`).
    pub compression: Compression,
}

impl BuildOptions {
    /// Build `context/Dockerfile` into the store at `root`, with the defaults of
    /// `rbuild build`.
    pub fn new(root: impl Into<PathBuf>, context: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions::from(PrepareOptions::new(root, context))
    }
}

impl From<PrepareOptions> for BuildOptions {
    fn from(prepare: PrepareOptions) -> BuildOptions {
        BuildOptions {
            prepare,
            tags: Vec::new(),
            outputs: Vec::new(),
            iidfile: None,
            metadata_file: None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: Annotations::default(),
            network: Network::Default,
            allow: Allowed::default(),
            memory: None,
            pids_limit: PidsLimit::default(),
            jobs: None,
            backend: Backend::default(),
            explain: false,
            fail_on_cache_miss: false,
            verify_reproducible: false,
            push: false,
            cache_to: Vec::new(),
            compression: Compression::Gzip,
        }
    }
}

/// `--annotation`s by where BuildKit puts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `KEY=VALUE` or `manifest:KEY=VALUE`: each image manifest.
    pub manifest: BTreeMap<String, String>,
    /// `index:KEY=VALUE`: the image index (multi-platform builds).
    pub index: BTreeMap<String, String>,
    /// `manifest-descriptor:KEY=VALUE`: each manifest's descriptor in the index.
    pub manifest_descriptor: BTreeMap<String, String>,
}

impl Annotations {
    /// Parse BuildKit's `--annotation [TYPE:]KEY=VALUE` (TYPE `manifest`, the default,
    /// `index` or `manifest-descriptor`). A platform selector (`manifest[linux/amd64]:`) and
    /// `index-descriptor` (no exporter here writes one) are refused, as are index types for a
    /// single-platform build (which makes no index).
    pub fn parse(values: &[String], multi_platform: bool) -> miette::Result<Annotations> {
        let mut out = Annotations::default();
        for raw in values {
            let usage = |problem: String| {
                miette::miette!(
                    code = "rbuild::usage::annotation",
                    help = "write `--annotation KEY=VALUE`, `manifest:KEY=VALUE`, or for a \
                            multi-platform build `index:KEY=VALUE` or \
                            `manifest-descriptor:KEY=VALUE`",
                    "invalid `--annotation {raw}`: {problem}"
                )
            };
            let Some((left, value)) = raw.split_once('=') else {
                return Err(usage("expected KEY=VALUE".into()));
            };
            let (kind, key) = match left.split_once(':') {
                Some((kind, key))
                    if [
                        "manifest",
                        "index",
                        "manifest-descriptor",
                        "index-descriptor",
                    ]
                    .contains(&kind)
                        || kind.contains('[') =>
                {
                    (kind, key)
                }
                _ => ("manifest", left),
            };
            if key.is_empty() {
                return Err(usage("the key is empty".into()));
            }
            let map = match kind {
                "manifest" => &mut out.manifest,
                "index" | "manifest-descriptor" if !multi_platform => {
                    return Err(usage(format!(
                        "`{kind}` annotations need a multi-platform build (one platform makes \
                         no index)"
                    )));
                }
                "index" => &mut out.index,
                "manifest-descriptor" => &mut out.manifest_descriptor,
                other if other.contains('[') => {
                    return Err(usage(format!(
                        "platform selectors (`{other}`) are not supported"
                    )));
                }
                other => {
                    return Err(usage(format!(
                        "unknown type `{other}` (manifest, index, manifest-descriptor)"
                    )));
                }
            };
            map.insert(key.to_string(), value.to_string());
        }
        Ok(out)
    }
}

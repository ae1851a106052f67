//! The build plan's intermediate form: stages of steps whose operations are fully expanded
//! (no `$VAR` left) and independent of Dockerfile syntax. The planner produces it; the graph,
//! cache keys, scheduler and executor consume it.

use std::ops::Range;

use rbuild_store::Digest;
use serde::{Deserialize, Serialize};

/// A byte range in the Dockerfile, for diagnostics.
pub type Span = Range<usize>;

/// A whole planned build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every stage of the Dockerfile, in source order (also the unused ones: the graph decides
    /// what runs).
    pub stages: Vec<Stage>,
    /// Index of the stage the build produces.
    pub target: usize,
    /// The platform the build targets (`TARGETPLATFORM`); a stage may run for another one
    /// ([`Stage::platform`]).
    pub platform: Platform,
}

impl Plan {
    pub fn step(&self, id: StepId) -> &Step {
        &self.stages[id.stage].steps[id.index]
    }
}

/// One `FROM` and the instructions under it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// The name after `AS`, lower-cased as BuildKit does.
    pub name: Option<String>,
    pub base: Base,
    pub steps: Vec<Step>,
    /// Where the stage's FROM line is.
    pub site: Site,
    /// The platform the stage is built for: `FROM --platform=...` (expanded with the global
    /// scope), the base stage's for `FROM stage`, else the build's target platform. Its base
    /// image is resolved for it, its RUN steps run for it, and it enters its steps' cache keys.
    pub platform: Platform,
    /// Its steps ignore the cache (`--no-cache-filter`): they run, and their results are
    /// stored as usual.
    pub no_cache: bool,
}

impl Stage {
    /// `name` or `stage-N` for messages.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("stage-{}", self.index),
        }
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image from the store (pulled if needed before planning).
    Image(ImageBase),
    /// The final state of an earlier (or later — forward references are allowed, cycles are
    /// not) stage.
    Stage(usize),
}

/// A resolved base image: the identity that enters cache keys plus its layer chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBase {
    /// The reference as the user wrote it after expansion, normalised (`docker.io/library/x:y`).
    pub reference: String,
    /// The digest of the manifest the reference resolved to.
    pub manifest_digest: Digest,
    /// The digest of the image config (the image ID).
    pub config_digest: Digest,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// A Dockerfile location: the instruction's byte span and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Site {
    pub span: Span,
    pub line: usize,
}

/// Identifies a step: stage index and position in the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId {
    pub stage: usize,
    pub index: usize,
}

/// One instruction of a stage after expansion.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: StepId,
    /// The instruction as shown to users: `RUN make`, `COPY . /app` (expanded).
    pub display: String,
    pub site: Site,
    pub op: Op,
    /// The history entry this step contributes to the image.
    pub created_by: String,
    /// What the planner knows of the step's cache key (the rest comes from its parent and
    /// the files it reads).
    pub key: KeyParts,
}

/// The planner's share of a step's cache-key preimage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyParts {
    /// Canonical, expanded instruction text.
    pub canonical: String,
    /// Variables the step uses and their values (`None`: referenced but unset).
    pub vars: std::collections::BTreeMap<String, Option<String>>,
    /// Other inputs by name (`workdir`, `user`, `network`, `mount:/x`, ...).
    pub inputs: std::collections::BTreeMap<String, String>,
}

/// What a step does to the filesystem.
#[derive(Debug, Clone)]
pub enum Op {
    /// Changes only the image config (ENV, LABEL, CMD, ...): never executed, never cached.
    Meta,
    Run(RunOp),
    Copy(CopyOp),
    /// WORKDIR: create the directory if missing.
    Mkdir(MkdirOp),
}

impl Op {
    pub fn changes_files(&self) -> bool {
        !matches!(self, Op::Meta)
    }

    /// `COPY --link`: the layer is built on an empty tree, so it does not depend on the layers
    /// below and stays cached when they change (BuildKit's "rebase without rebuild"). A
    /// `--chown` by name needs the image's /etc/passwd, so it keeps the parent.
    pub fn is_independent(&self) -> bool {
        match self {
            Op::Copy(c) => {
                c.link
                    && c.chown.as_deref().is_none_or(|spec| {
                        spec.split(':')
                            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
                    })
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOp {
    /// The final argv (shell form already wrapped in the stage's SHELL).
    pub argv: Vec<String>,
    /// The process environment: image Env, then ARGs in scope that ENV does not override.
    pub env: Vec<(String, String)>,
    /// Absolute working directory.
    pub workdir: String,
    /// `USER` as written (`name`, `uid`, `name:group`, `uid:gid`); empty means root.
    pub user: String,
    pub network: Network,
    pub security: Security,
    pub mounts: Vec<RunMount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

/// Where a bind/cache mount or a COPY takes files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    Context,
    Stage(usize),
    Image(ImageBase),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    Bind {
        target: String,
        from: FileSource,
        /// Path inside the source (default `/`).
        source: String,
        rw: bool,
    },
    Cache {
        id: String,
        target: String,
        sharing: Sharing,
        readonly: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        /// Optional seed directory for a new cache.
        from: Option<(FileSource, String)>,
        /// The directory of the cache that is mounted (`source=` without `from=`): cleaned
        /// like BuildKit's `path.Join("/", source)`, so `..` never leaves the cache; `/` for
        /// the whole cache.
        subpath: String,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// File target; `None` when only `env` is set.
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `--mount=type=ssh`: the agent forwarded with `--ssh ID=...` as a socket at `target`.
    /// Only the mount's settings enter the key, never the agent or its keys.
    Ssh {
        /// `default` unless the mount names another.
        id: String,
        /// BuildKit's default: `/run/buildkit/ssh_agent.N`, N counting the RUN's ssh mounts.
        target: String,
        /// Fail when the build was not given this id (otherwise the mount is skipped).
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        /// The `--mount=...` flag in the Dockerfile, for errors.
        span: Span,
    },
    /// A file the planner materialises for the step (heredoc scripts with a shebang).
    InlineFile {
        target: String,
        content: Vec<u8>,
        mode: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOp {
    pub add: bool,
    pub from: FileSource,
    /// Sources after expansion, each with the span of the word in the Dockerfile.
    pub sources: Vec<CopySource>,
    /// Absolute destination; a trailing `/` is kept because it changes the meaning.
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// ADD only: `--checksum`, `--keep-git-dir`, `--unpack`.
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
    /// The USER of the stage (files from ADD URLs and created dirs are not chowned to it, but
    /// BuildKit uses it to resolve nothing else; kept for completeness of the key).
    pub workdir: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path {
        path: String,
        span: Span,
    },
    /// A here-document (`COPY <<EOF /dest`): the file name and its (already expanded) body.
    Heredoc {
        name: String,
        content: Vec<u8>,
        span: Span,
    },
    Url {
        url: String,
        span: Span,
    },
    /// A git repository (`ADD https://host/repo.git#ref:subdir /dest`): its checkout's
    /// contents are copied into the destination.
    Git {
        url: String,
        git: crate::gitref::GitRef,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkdirOp {
    pub path: String,
    /// The USER in effect, which owns created directories (BuildKit behaviour).
    pub user: String,
}

/// The OS/architecture a build targets: the store's one platform type (parsing,
/// normalisation, `Platform::host()` and index matching live there).
pub use rbuild_store::Platform;

//! Preparing a build: read and parse the Dockerfile, plan it against the store's images
//! (pulling bases as needed), import registry caches, read the context and resolve and hash
//! every input (through the context's stat cache). The [`Session`] holds everything known
//! before anything executes; `build`, `explain` and `plan` start from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Report, WrapErr};
use rbuild_solver::cache::CacheIndex;
use rbuild_solver::context::{self, BuildContext, StatCache};
use rbuild_solver::graph::{self, StageOrder};
use rbuild_solver::inputs::{self, Inputs};
use rbuild_solver::op::Platform;
use rbuild_solver::plan::{self, PlanError, PlanOptions, Planned};
use rbuild_store::{ImageRecord, Store};

use crate::dockerfile::{self, DockerfileText};
use crate::images::StoreImages;
use crate::main_context;
use crate::options::{PrepareOptions, PullPolicy};
use crate::registry;
use crate::report::{Notice, Reporter};
use crate::reproducible;

/// A prepared build: everything known before anything executes.
pub struct Session {
    pub store: Store,
    pub dockerfile: DockerfileText,
    pub context_dir: PathBuf,
    /// Names the Dockerfile across builds (step sites of explanations and imported caches).
    site: String,
    /// Owns `context_dir` when it is temporary (a context from stdin or git).
    _context_temp: Option<Arc<tempfile::TempDir>>,
    /// One per target platform, in the order asked for: the Dockerfile planned for it, the
    /// stages it needs and their inputs. A single-platform build has one.
    pub platforms: Vec<PlatformBuild>,
    /// Whether the build makes an image index (several platforms asked for).
    pub multi_platform: bool,
    pub cache: CacheIndex,
    /// Base images of every platform by manifest digest (their layer descriptors are reused).
    pub bases: BTreeMap<rbuild_store::Digest, ImageRecord>,
    /// Registry access for the rest of the build (cache layers, push, cache export).
    pub registry: registry::Registry,
}

/// The build for one target platform.
pub struct PlatformBuild {
    /// The target platform (`TARGETPLATFORM`; stages may run for others).
    pub platform: Platform,
    pub planned: Planned,
    pub order: StageOrder,
    /// What the needed steps read from the build context (the context itself is shared).
    pub inputs: Inputs,
}

impl Session {
    /// The first (for a single-platform build, the only) platform's build.
    pub fn first(&self) -> &PlatformBuild {
        &self.platforms[0]
    }

    /// The platform to name in progress and explanations: `Some` only in a multi-platform
    /// build.
    pub fn label<'a>(&self, build: &'a PlatformBuild) -> Option<&'a Platform> {
        self.multi_platform.then_some(&build.platform)
    }
}

impl Session {
    /// Read, parse and plan the Dockerfile; read the context and resolve every input. Lint
    /// warnings, input warnings and pulls are reported to `reporter`.
    pub fn prepare(options: &PrepareOptions, reporter: &dyn Reporter) -> miette::Result<Session> {
        prepare(options, reporter)
    }
}

fn prepare(options: &PrepareOptions, reporter: &dyn Reporter) -> miette::Result<Session> {
    let store = Store::open(&options.root).map_err(Report::new)?;
    let main = main_context::open(options, &store, reporter)?;
    let context_dir = main.dir.clone();
    let dockerfile_path = main.dockerfile_path.clone();
    let (text, bytes) = (main.dockerfile.clone(), &main.bytes);
    let parsed = dockerfile::parse(&text, bytes, reporter)?;
    let site = match &main.site {
        Some(site) => site.clone(),
        None => site_prefix_of(text.path.as_deref(), &context_dir),
    };

    let mut session = registry::Registry::new(&store);
    let puller = registry::pull::Puller {
        store: &store,
        registry: &session,
        reporter,
    };
    let images = match options.pull {
        PullPolicy::Never => StoreImages::new(&store, None),
        policy => StoreImages::new(&store, Some(&puller)).refreshing(policy == PullPolicy::Always),
    }
    .with_contexts(&options.named_contexts);
    // One plan per target platform, from the one parse (the platform only changes the
    // automatic ARGs, the bases resolved and the keys).
    let targets: Vec<Option<Platform>> = if options.platforms.is_empty() {
        vec![None]
    } else {
        options.platforms.iter().cloned().map(Some).collect()
    };
    let mut plans = Vec::with_capacity(targets.len());
    {
        // Every expansion of the build counts against one budget (see `shell::Limits`).
        let _budget = rbuild_parser::shell::budget(dockerfile::expansion_limits()?);
        for target in targets {
            let opts = PlanOptions {
                build_args: options.build_args.clone(),
                target: options.target.clone(),
                platform: target,
            };
            let mut planned = plan::plan(&text.text, &parsed, &opts, &images)
                .map_err(|e| plan_report(&text, e))?;
            if let Some(epoch) = options.source_date_epoch {
                reproducible::key_epoch(&mut planned.plan, epoch);
            }
            key_run_settings(&mut planned.plan, options);
            no_cache_filter(&mut planned.plan, &options.no_cache_filter)?;
            let order = graph::stage_order(&planned.plan).map_err(|cycle| {
                miette::miette!(
                    code = "rbuild::plan::cycle",
                    "stages depend on each other in a cycle: {:?}",
                    cycle.stages
                )
            })?;
            plans.push((planned, order));
        }
    }
    // A build arg counts as used when any platform's plan used it.
    let unused: Vec<&String> = plans[0]
        .0
        .unused_build_args
        .iter()
        .filter(|a| plans.iter().all(|(p, _)| p.unused_build_args.contains(a)))
        .collect();
    if !unused.is_empty() {
        let unused: Vec<&str> = unused.iter().map(|a| a.as_str()).collect();
        reporter.notice(Notice::Message(&format!(
            "warning: build args not consumed by any ARG: {}",
            unused.join(", ")
        )));
    }

    let bases = images.records();
    drop(images);
    let cache = CacheIndex::open(cache_dir(&store)).map_err(Report::new)?;
    if !options.cache_from.is_empty() && !options.no_cache {
        let prefix = site.clone();
        let warn = |line: &str| reporter.notice(Notice::Message(line));
        registry::cache::import(
            &mut session,
            &store,
            &cache,
            &options.cache_from,
            &prefix,
            &warn,
        );
    }
    let needs_context = plans
        .iter()
        .any(|(planned, order)| inputs::needs_context(&planned.plan, order));
    if needs_context && !main.has_context {
        return Err(no_context(&text, &plans));
    }
    let context = if needs_context {
        let context = BuildContext::load(&context_dir, dockerfile_path.as_deref())
            .map_err(Report::new)
            .wrap_err("cannot read the build context")?;
        for w in context.warnings() {
            reporter.notice(Notice::Message(&format!(
                "warning: `{}`: {}",
                w.path.display(),
                w.message
            )));
        }
        Some(context)
    } else {
        None
    };
    // A temporary context's stat cache is its own (and goes with it): its paths never recur.
    let stat_path = match &main.temp {
        Some(temp) => temp.path().join("stat-cache"),
        None => stat_cache_path(&store, &context_dir),
    };
    let mut stat_cache = StatCache::open(stat_path).map_err(Report::new)?;
    let source = context::source(&text.name, text.text.clone());
    // `ADD <url>` downloads go through the registry transport (CA store, proxies, retries).
    let fetch = |url: &str, checksum: Option<&str>| {
        let client = session
            .client()
            .map_err(|e| (e.to_string(), Some("fix `registries.toml`".to_string())))?;
        rbuild_executor::fetch::fetch_url(&store, client, url, checksum)
    };
    // `ADD <git URL>`: checked out into the store's temporary area (see `rbuild_executor::git`).
    let fetch_git = |url: &str, git: &rbuild_solver::gitref::GitRef| {
        let options = rbuild_executor::git::CheckoutOptions {
            keep_git_dir: git.keep_git_dir == Some(true),
            mtime: git
                .mtime
                .unwrap_or(rbuild_solver::gitref::GitMtime::Checkout),
        };
        let checkout = rbuild_executor::git::checkout(&store.layout().tmp(), git, &options)
            .map_err(<(String, Option<String>)>::from)?;
        Ok(inputs::FetchedGit {
            url: url.to_string(),
            commit: checkout.commit,
            key: checkout.key,
            dir: checkout.root,
            owner: Arc::new(checkout.dir),
        })
    };
    let all_inputs = {
        let refs: Vec<(&rbuild_solver::op::Plan, &StageOrder)> = plans
            .iter()
            .map(|(planned, order)| (&planned.plan, order))
            .collect();
        inputs::prepare_all(
            &refs,
            context,
            &mut stat_cache,
            &cache,
            &source,
            &fetch,
            &fetch_git,
        )?
    };
    // A stat cache that cannot be saved only costs re-hashing next time.
    let _ = stat_cache.save();
    let platforms = plans
        .into_iter()
        .zip(all_inputs)
        .map(|((planned, order), inputs)| PlatformBuild {
            platform: planned.plan.platform.clone(),
            planned,
            order,
            inputs,
        })
        .collect();
    Ok(Session {
        store,
        dockerfile: text,
        context_dir,
        site,
        _context_temp: main.temp,
        platforms,
        multi_platform: options.is_multi_platform(),
        cache,
        bases,
        registry: session,
    })
}

/// Step sites (for explanations across builds) are keyed by the Dockerfile's absolute path.
pub(crate) fn site_prefix(prepared: &Session) -> String {
    prepared.site.clone()
}

/// `rbuild build - < Dockerfile` has no context: the first needed step that reads it fails,
/// pointed at, as docker refuses it.
fn no_context(text: &DockerfileText, plans: &[(Planned, StageOrder)]) -> Report {
    let step = plans.iter().find_map(|(planned, order)| {
        order.order.iter().find_map(|&s| {
            planned.plan.stages[s]
                .steps
                .iter()
                .find(|step| inputs::reads_context(step))
        })
    });
    let err = NoContext {
        src: text.source(),
        span: step.map(|s| (s.site.span.start, s.site.span.end - s.site.span.start).into()),
    };
    Report::new(err)
}

/// A step reads the build context, and the build has none.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("this build has no context: its Dockerfile came from stdin (`rbuild build -`)")]
#[diagnostic(
    code(rbuild::build::no_context),
    help(
        "pass a context directory and the Dockerfile with `-f - DIR` (or `-f - .`), or send \
         a tar archive of the context on stdin"
    )
)]
struct NoContext {
    #[source_code]
    src: rbuild_parser::diagnostics::CutSource<Arc<str>>,
    #[label("this step reads the build context")]
    span: Option<miette::SourceSpan>,
}

fn site_prefix_of(dockerfile: Option<&Path>, context_dir: &Path) -> String {
    match dockerfile {
        Some(path) => std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        None => format!("stdin:{}", context_dir.display()),
    }
}

fn plan_report(text: &DockerfileText, err: PlanError) -> Report {
    text.report(err)
}

/// The solver's cache index of `store` (the path is the store layout's).
pub fn cache_dir(store: &Store) -> PathBuf {
    store.layout().cache_index()
}

/// The stat cache of a context directory lives in the store, keyed by the context's path.
fn stat_cache_path(store: &Store, context: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
    let key = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
    store.layout().context_stat_cache(&key[..32])
}

/// Make the RUN settings of the command line part of every RUN step's cache key, as BuildKit
/// keeps them in the exec op (a step run with other hosts or limits is another step):
/// `--add-host` (`extra-hosts`), `--shm-size` (`shm-size`), `--ulimit` (`ulimits`). A setting
/// left at its default adds nothing, so keys stay those of a build without the flag.
fn key_run_settings(plan: &mut rbuild_solver::op::Plan, options: &PrepareOptions) {
    let mut inputs = Vec::new();
    if !options.extra_hosts.is_empty() {
        let value = options
            .extra_hosts
            .iter()
            .map(|(name, ip)| format!("{name}={ip}"))
            .collect::<Vec<_>>()
            .join(" ");
        inputs.push(("extra-hosts", value));
    }
    if let Some(size) = options.shm_size {
        inputs.push(("shm-size", size.to_string()));
    }
    if !options.ulimits.is_empty() {
        let limit = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |n| n.to_string());
        let value = options
            .ulimits
            .iter()
            .map(|u| format!("{}={}:{}", u.name, limit(u.soft), limit(u.hard)))
            .collect::<Vec<_>>()
            .join(" ");
        inputs.push(("ulimits", value));
    }
    if inputs.is_empty() {
        return;
    }
    for stage in &mut plan.stages {
        for step in &mut stage.steps {
            if matches!(step.op, rbuild_solver::op::Op::Run(_)) {
                for (name, value) in &inputs {
                    step.key.inputs.insert(name.to_string(), value.clone());
                }
            }
        }
    }
}

/// `--no-cache-filter STAGE`: the named stages' steps ignore the cache (BuildKit's
/// `no-cache` filter). A name no stage has is an error that suggests the closest one.
fn no_cache_filter(plan: &mut rbuild_solver::op::Plan, names: &[String]) -> miette::Result<()> {
    for name in names {
        let wanted = name.to_ascii_lowercase();
        match plan
            .stages
            .iter_mut()
            .find(|s| s.name.as_deref() == Some(wanted.as_str()))
        {
            Some(stage) => stage.no_cache = true,
            None => {
                let known: Vec<&str> = plan
                    .stages
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .collect();
                let help = match rbuild_parser::diagnostics::suggest(name, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => {
                        "the Dockerfile names no stages (`FROM image AS name`)".into()
                    }
                    None => format!("stages: {}", known.join(", ")),
                };
                return Err(miette::miette!(
                    code = "rbuild::usage::no_cache_filter",
                    help = help,
                    "`--no-cache-filter {name}`: no stage is named `{name}`"
                ));
            }
        }
    }
    Ok(())
}

//! The build pipeline wired end to end: read and parse the Dockerfile, plan it against the
//! store's images, resolve and hash what steps read from the context, then solve (or explain)
//! with the executor as worker, and store the resulting image. `build`, `explain` and `plan`
//! share [`prepare`].

pub mod dockerfile;
pub mod entitlements;
pub mod explain;
pub mod finish;
pub mod images;
pub mod output;
pub mod registry;
pub mod reproducible;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::{Report, WrapErr};
use rbuild_solver::cache::CacheIndex;
use rbuild_solver::context::{self, BuildContext, StatCache};
use rbuild_solver::graph::{self, StageOrder};
use rbuild_solver::inputs::{self, Inputs};
use rbuild_solver::op::Platform;
use rbuild_solver::plan::{self, PlanError, PlanOptions, Planned};
use rbuild_store::{ImageRecord, Store};

use crate::args::GlobalArgs;
use crate::commands::build::BuildArgs;
use dockerfile::DockerfileText;
use images::StoreImages;

/// Everything known before anything executes.
pub struct Prepared {
    pub store: Store,
    pub dockerfile: DockerfileText,
    pub context_dir: PathBuf,
    pub planned: Planned,
    pub order: StageOrder,
    pub inputs: Inputs,
    pub cache: CacheIndex,
    /// Base images by manifest digest (their layer descriptors are reused).
    pub bases: BTreeMap<rbuild_store::Digest, ImageRecord>,
    /// Registry access for the rest of the build (cache layers, `--push`, `--cache-to`).
    pub registry: registry::Session,
}

/// The store root a command uses.
pub fn store_root(global: &GlobalArgs) -> PathBuf {
    global
        .root
        .clone()
        .unwrap_or_else(rbuild_store::default_root)
}

pub fn open_store(global: &GlobalArgs) -> miette::Result<Store> {
    let root = store_root(global);
    Store::open(&root).map_err(Report::new)
}

/// `--build-arg K=V` / `--build-arg K` (value from the environment, skipped when unset).
pub fn build_args(args: &BuildArgs) -> miette::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for raw in &args.build_args {
        match raw.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(miette::miette!(
                    code = "rbuild::usage::build_arg",
                    help = "write `--build-arg NAME=value`",
                    "`--build-arg {raw}` has no name"
                ));
            }
            None => {
                if let Some(v) = std::env::var_os(raw) {
                    out.insert(raw.clone(), v.to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(out)
}

/// Parse `--platform os/arch[/variant]` with the store's one platform grammar, normalised as
/// containerd does (`linux/x86_64` is `linux/amd64`, `linux/arm64/v8` is `linux/arm64`), so the
/// cache key, TARGETARCH and the image matched are the same however the platform is spelled.
pub fn platform(text: Option<&str>) -> miette::Result<Platform> {
    let Some(text) = text else {
        return Ok(Platform::host());
    };
    text.parse::<Platform>().map_err(|e| {
        miette::miette!(
            code = "rbuild::usage::platform",
            help = "write `--platform linux/amd64` (os/arch[/variant])",
            "invalid platform `{text}`: {e}"
        )
    })
}

/// Read, parse and plan the Dockerfile; read the context and resolve every input. The
/// `SOURCE_DATE_EPOCH` of `args` (or the environment) enters the cache keys.
pub fn prepare(global: &GlobalArgs, args: &BuildArgs, quiet: bool) -> miette::Result<Prepared> {
    let epoch = crate::commands::build::source_date_epoch(args)?;
    prepare_with(global, args, quiet, epoch)
}

/// [`prepare`] with an explicit `SOURCE_DATE_EPOCH` (`--verify-reproducible` picks a default).
pub fn prepare_with(
    global: &GlobalArgs,
    args: &BuildArgs,
    quiet: bool,
    epoch: Option<i64>,
) -> miette::Result<Prepared> {
    let context_dir = args.context.clone();
    if !context_dir.is_dir() {
        return Err(miette::miette!(
            code = "rbuild::build::no_context",
            help = "pass the directory that holds the files COPY uses, usually `.`",
            "the build context `{}` is not a directory",
            context_dir.display()
        ));
    }
    let dockerfile_path = dockerfile::locate(args.file.as_deref(), &context_dir);
    let (text, bytes) = dockerfile::read(dockerfile_path.as_deref())?;
    let parsed = dockerfile::parse(&text, &bytes, quiet)?;

    let cache_from = registry::spec::parse_all("--cache-from", &args.registry.cache_from)?;
    let store = open_store(global)?;
    let transfers = if quiet || args.progress == crate::commands::build::Progress::Json {
        registry::Transfers::Hidden
    } else {
        registry::Transfers::Shown
    };
    let mut session = registry::Session::new(&store, transfers);
    let puller = registry::pull::Puller {
        store: &store,
        session: &session,
    };
    let images = match args.registry.pull {
        registry::PullPolicy::Never => StoreImages::new(&store, None),
        policy => StoreImages::new(&store, Some(&puller))
            .refreshing(policy == registry::PullPolicy::Always),
    };
    let opts = PlanOptions {
        build_args: build_args(args)?,
        target: args.target.clone(),
        platform: platform(args.platform.as_deref())?,
    };
    let mut planned = {
        // Every expansion of the build counts against one budget (see `shell::Limits`).
        let _budget = rbuild_parser::shell::budget(dockerfile::expansion_limits()?);
        plan::plan(&text.text, &parsed, &opts, &images).map_err(|e| plan_report(&text, e))?
    };
    if let Some(epoch) = epoch {
        reproducible::key_epoch(&mut planned.plan, epoch);
    }
    if !quiet && !planned.unused_build_args.is_empty() {
        eprintln!(
            "warning: build args not consumed by any ARG: {}",
            planned.unused_build_args.join(", ")
        );
    }
    let order = graph::stage_order(&planned.plan).map_err(|cycle| {
        miette::miette!(
            code = "rbuild::plan::cycle",
            "stages depend on each other in a cycle: {:?}",
            cycle.stages
        )
    })?;

    let bases = images.records();
    drop(images);
    let cache = CacheIndex::open(cache_dir(&store)).map_err(Report::new)?;
    if !cache_from.is_empty() && !args.no_cache {
        let prefix = site_prefix_of(text.path.as_deref(), &context_dir);
        let warn = |line: &str| {
            if !quiet {
                eprintln!("{line}");
            }
        };
        registry::cache::import(&mut session, &store, &cache, &cache_from, &prefix, &warn);
    }
    let context = if inputs::needs_context(&planned.plan, &order) {
        let context = BuildContext::load(&context_dir, dockerfile_path.as_deref())
            .map_err(Report::new)
            .wrap_err("cannot read the build context")?;
        if !quiet {
            for w in context.warnings() {
                eprintln!("warning: `{}`: {}", w.path.display(), w.message);
            }
        }
        Some(context)
    } else {
        None
    };
    let mut stat_cache =
        StatCache::open(stat_cache_path(&store, &context_dir)).map_err(Report::new)?;
    let source = context::source(&text.name, text.text.clone());
    // `ADD <url>` downloads go through the registry transport (CA store, proxies, retries).
    let fetch = |url: &str, checksum: Option<&str>| {
        let client = session
            .client()
            .map_err(|e| (e.to_string(), Some("fix `registries.toml`".to_string())))?;
        rbuild_executor::fetch::fetch_url(&store, client, url, checksum)
    };
    let inputs = inputs::prepare(
        &planned.plan,
        &order,
        context,
        &mut stat_cache,
        &cache,
        &source,
        &fetch,
    )?;
    // A stat cache that cannot be saved only costs re-hashing next time.
    let _ = stat_cache.save();
    Ok(Prepared {
        store,
        dockerfile: text,
        context_dir,
        planned,
        order,
        inputs,
        cache,
        bases,
        registry: session,
    })
}

/// Step sites (for explanations across builds) are keyed by the Dockerfile's absolute path.
pub fn site_prefix(prepared: &Prepared) -> String {
    site_prefix_of(prepared.dockerfile.path.as_deref(), &prepared.context_dir)
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

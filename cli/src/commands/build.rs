//! `rbuild build`: turn a Dockerfile and a context directory into an image in the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rbuild_executor::build::{BuildWorker, SecretSource, WorkerOptions};
use rbuild_solver::scheduler::{self, SolveOptions};
use rbuild_solver::worker::CancelToken;

use crate::args::GlobalArgs;
use crate::build::{self, finish};
use crate::progress::ProgressReporter;

/// Flags shared by `build` and the commands that plan a build without running it.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag for the image (`name:tag`); may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// The Dockerfile to build (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Set a build-time variable declared with ARG (`KEY=VALUE`, or `KEY` to take it from
    /// the environment); may be repeated.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Build only up to this stage (its name after `FROM ... AS`).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Do not use the build cache: run every step.
    #[arg(long)]
    pub no_cache: bool,

    /// How to show progress: a live view on a terminal, one line per event, or JSON events.
    #[arg(long, value_enum, default_value_t = Progress::Auto, value_name = "MODE")]
    pub progress: Progress,

    /// Target platform (`linux/amd64`); defaults to this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// How many stages may build at the same time (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Fail instead of building when any step would miss the cache (a CI guard).
    #[arg(long)]
    pub fail_on_cache_miss: bool,

    /// Before building, explain every cache miss in full (as `rbuild explain` does).
    #[arg(long)]
    pub explain: bool,

    /// A secret for `RUN --mount=type=secret` (`id=NAME,src=FILE` or `id=NAME,env=VAR`);
    /// never stored in the image or the cache.
    #[arg(long, value_name = "id=NAME,src=FILE|env=VAR")]
    pub secret: Vec<String>,

    /// Network for RUN steps that do not choose one: `default`/`host` or `none`.
    #[arg(long, value_name = "MODE", default_value = "default")]
    pub network: String,

    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write the build result (image digest, config digest, names) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// The build context: the directory whose files COPY and ADD can use.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    Tty,
    Plain,
    Json,
}

/// `--secret id=x,src=file` / `id=x,env=VAR` (a bare `id=x` reads the env var `x`).
fn secrets(args: &BuildArgs) -> miette::Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for raw in &args.secret {
        let mut id = None;
        let mut source = None;
        for field in raw.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => source = Some(SecretSource::File(v.into())),
                Some(("env", v)) => source = Some(SecretSource::Env(v.to_string())),
                _ => {
                    return Err(miette::miette!(
                        code = "rbuild::usage::secret",
                        help = "write `--secret id=NAME,src=FILE` or `--secret id=NAME,env=VAR`",
                        "cannot parse `--secret {raw}` at `{field}`"
                    ));
                }
            }
        }
        let Some(id) = id else {
            return Err(miette::miette!(
                code = "rbuild::usage::secret",
                help = "write `--secret id=NAME,src=FILE`",
                "`--secret {raw}` has no id"
            ));
        };
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        out.insert(id, source);
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` or the environment.
fn source_date_epoch(args: &BuildArgs) -> miette::Result<Option<i64>> {
    let from_arg = build::build_args(args)?.remove("SOURCE_DATE_EPOCH");
    let value = from_arg.or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            miette::miette!(
                code = "rbuild::usage::source_date_epoch",
                help = "SOURCE_DATE_EPOCH is a number of seconds since 1970, e.g. `$(git log -1 --format=%ct)`",
                "invalid SOURCE_DATE_EPOCH `{v}`"
            )
        }),
    }
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> miette::Result<u8> {
    let tags = finish::parse_tags(&args.tags)?;
    let secrets = secrets(&args)?;
    let epoch = source_date_epoch(&args)?;
    let network = match args.network.as_str() {
        "default" | "host" => rbuild_solver::op::Network::Default,
        "none" => rbuild_solver::op::Network::None,
        other => {
            return Err(miette::miette!(
                code = "rbuild::usage::network",
                help = "use `--network default` (the host's network) or `--network none`",
                "unknown network mode `{other}`"
            ));
        }
    };
    let prepared = build::prepare(global, &args, args.quiet)?;

    if args.fail_on_cache_miss || args.explain {
        let explanations = crate::commands::explain::dry_run(&prepared, args.no_cache)?;
        if args.explain {
            build::explain::print(&prepared.dockerfile, &explanations, false);
        }
        if args.fail_on_cache_miss && explanations.iter().any(|e| !e.cached) {
            if !args.explain {
                build::explain::print(&prepared.dockerfile, &explanations, false);
            }
            return Err(miette::miette!(
                code = "rbuild::build::cache_miss",
                help = "remove --fail-on-cache-miss to build anyway",
                "some steps would miss the cache"
            ));
        }
    }

    let cancel = CancelToken::new();
    crate::interrupt::cancel_on_interrupt(&cancel);
    let reporter = ProgressReporter::new(args.progress, args.quiet);
    let worker = BuildWorker::new(
        &prepared.store,
        &prepared.planned.plan,
        &prepared.inputs,
        &prepared.bases,
        WorkerOptions {
            source_date_epoch: epoch,
            network,
            secrets,
        },
        &cancel,
    )?;
    let cache = &prepared.cache;
    let files_diff =
        |_set: &str, old: &str, new: &str| rbuild_solver::inputs::files_diff(cache, old, new);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = SolveOptions {
        no_cache: args.no_cache,
        jobs,
        dry_run: false,
        site_prefix: build::site_prefix(&prepared),
        files: &prepared.inputs.files,
        files_diff: &files_diff,
        now: jiff::Timestamp::now().as_second(),
        cancel: cancel.clone(),
    };
    let solved = scheduler::solve(
        &prepared.planned.plan,
        &prepared.order,
        &prepared.cache,
        &worker,
        &reporter,
        &opts,
    );
    let solved = match solved {
        Ok(solved) => solved,
        Err(_) if cancel.is_cancelled() && crate::interrupt::interrupted() => {
            // The step that was running failed only because it was killed: not worth showing.
            return Err(miette::miette!(
                code = "rbuild::interrupted",
                help = "the store is as it was, apart from layers already cached; \
                        run the build again to continue from there",
                "build interrupted: nothing was tagged"
            ));
        }
        // Step failures are labelled at their instruction: show them on the Dockerfile.
        Err(err) => return Err(prepared.dockerfile.attach(err)),
    };
    let image = finish::commit(&prepared, &solved, epoch)?;
    finish::tag_all(&prepared, &image, &tags)?;
    if let Some(path) = &args.iidfile {
        finish::write_iidfile(path, &image)?;
    }
    if let Some(path) = &args.metadata_file {
        finish::write_metadata(path, &image, &tags)?;
    }
    if args.quiet {
        println!("{}", image.id());
        return Ok(0);
    }
    let counts = reporter.counts();
    reporter.line(&format!(
        "built {} in {:.1}s: {} steps, {} cached, {} built; size {}",
        image.id().short(),
        reporter.elapsed().as_secs_f64(),
        counts.total,
        counts.cached,
        counts.built,
        finish::human_size(image.size())
    ));
    for tag in &tags {
        reporter.line(&format!("tagged {}", tag.familiar()));
    }
    Ok(0)
}

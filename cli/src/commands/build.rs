//! `rbuild build`: turn a Dockerfile and a context directory into an image in the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rbuild_executor::build::{BuildWorker, SecretSource, WorkerOptions};
use rbuild_solver::scheduler::{self, SolveOptions, Solved};
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

    /// Fail instead of building when any step would miss the cache (a CI guard; exit code 5).
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

    /// Allow what RUN steps may ask for (repeatable, or a comma list): `network.host` for
    /// `RUN --network=host`, `security.insecure` for `RUN --security=insecure`.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,

    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write the build result (image digest, config digest, names) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Also write the result elsewhere (repeatable): `type=local,dest=DIR` (the root
    /// filesystem), `type=tar,dest=FILE|-`, `type=oci,dest=DIR|FILE.tar`,
    /// `type=docker,dest=FILE.tar` (for `docker load`), `type=image,name=NAME`; `-o DIR` is
    /// `type=local,dest=DIR` and `-o -` a tar on stdout.
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub output: Vec<String>,

    /// Build twice (the second time without the cache) with the same SOURCE_DATE_EPOCH
    /// (default 0) and fail, naming every differing file, unless both give the same image.
    #[arg(long)]
    pub verify_reproducible: bool,

    /// Memory limit (memory + swap) for each RUN step, e.g. `2g`; a step the kernel kills
    /// for exceeding it fails as out of memory.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = crate::args::parse_memory)]
    pub memory: Option<u64>,

    /// Most processes and threads each RUN step may have at once (default 8192; -1 for no
    /// limit); a step whose fork fails at the limit says so.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = crate::args::parse_pids_limit)]
    pub pids_limit: Option<rbuild_executor::sandbox::PidsLimit>,

    #[command(flatten)]
    pub registry: crate::build::registry::RegistryArgs,

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
        // Checked before the build starts: a RUN step that hits the cache never reads it, and
        // a typo in the path must not pass silently then.
        if let SecretSource::File(path) = &source {
            let problem = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => None,
                Ok(_) => Some("it is not a regular file".to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                return Err(miette::miette!(
                    code = "rbuild::usage::secret",
                    help = "fix the `src=` path of `--secret id={id},src=FILE` (relative to the \
                            current directory), or pass the value with `--secret id={id},env=VAR`",
                    "cannot read the file of `--secret {raw}`: {problem}"
                ));
            }
        }
        out.insert(id, source);
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` or the environment.
pub(crate) fn source_date_epoch(args: &BuildArgs) -> miette::Result<Option<i64>> {
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

/// What one solve needs besides the prepared build.
struct SolveInputs<'a> {
    epoch: Option<i64>,
    network: rbuild_solver::op::Network,
    secrets: &'a BTreeMap<String, SecretSource>,
    no_cache: bool,
    cancel: &'a CancelToken,
    backend: rbuild_executor::Backend,
}

/// Run the build against the executor (fetching layers of a registry cache as steps need
/// them) and commit the target's image (untagged).
fn solve_and_commit(
    prepared: &build::Prepared,
    args: &BuildArgs,
    inputs: &SolveInputs<'_>,
    reporter: &ProgressReporter,
) -> miette::Result<(rbuild_store::ImageRecord, Solved)> {
    let worker = BuildWorker::new(
        &prepared.store,
        &prepared.planned.plan,
        &prepared.inputs,
        &prepared.bases,
        WorkerOptions {
            source_date_epoch: inputs.epoch,
            network: inputs.network,
            secrets: inputs.secrets.clone(),
            memory: args.memory,
            pids: args.pids_limit.unwrap_or_default(),
            backend: inputs.backend,
        },
        inputs.cancel,
    )?;
    let note = |text: &str| reporter.line(text);
    let worker = build::registry::layers::CacheAwareWorker::new(
        &worker,
        &prepared.registry,
        &prepared.store,
        &note,
    );
    let cache = &prepared.cache;
    let files_diff = |_set: &str, old: &str, new: &str| prepared.inputs.files_diff(cache, old, new);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = SolveOptions {
        no_cache: inputs.no_cache,
        jobs,
        dry_run: false,
        site_prefix: build::site_prefix(prepared),
        files: &prepared.inputs.files,
        files_diff: &files_diff,
        now: jiff::Timestamp::now().as_second(),
        cancel: inputs.cancel.clone(),
    };
    let solved = scheduler::solve(
        &prepared.planned.plan,
        &prepared.order,
        &prepared.cache,
        &worker,
        reporter,
        &opts,
    );
    let solved = match solved {
        Ok(solved) => solved,
        Err(_) if inputs.cancel.is_cancelled() && crate::interrupt::interrupted() => {
            // The step that was running failed only because it was killed: not worth showing.
            return Err(miette::Report::new(
                rbuild_store::Failure::interrupted("build interrupted: nothing was tagged")
                    .with_help(
                        "the store is as it was, apart from layers already cached; run the \
                         build again to continue from there",
                    ),
            ));
        }
        // Step failures are labelled at their instruction: show them on the Dockerfile.
        Err(err) => return Err(prepared.dockerfile.attach(err)),
    };
    build::registry::layers::fetch_target_layers(
        &prepared.registry,
        &prepared.store,
        &prepared.planned.plan,
        &solved,
        &note,
    )?;
    let image = finish::commit(prepared, &solved, inputs.epoch)?;
    Ok((image, solved))
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> miette::Result<u8> {
    let tags = finish::parse_tags(&args.tags)?;
    let outputs = build::output::parse_all(&args.output, args.quiet)?;
    build::registry::push::check(args.registry.push, &tags)?;
    let cache_to = build::registry::spec::parse_all("--cache-to", &args.registry.cache_to)?;
    let compression: rbuild_registry::Compression = args.registry.compression.parse()?;
    let secrets = secrets(&args)?;
    let mut epoch = source_date_epoch(&args)?;
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
    if args.verify_reproducible {
        let note = match epoch {
            Some(e) => format!("SOURCE_DATE_EPOCH={e}"),
            None => format!(
                "SOURCE_DATE_EPOCH={} (not set: the default, used for both builds and the result)",
                build::reproducible::DEFAULT_EPOCH
            ),
        };
        epoch = Some(epoch.unwrap_or(build::reproducible::DEFAULT_EPOCH));
        if !args.quiet {
            eprintln!("verify-reproducible: building twice with {note}");
        }
    }
    let allowed = build::entitlements::Allowed::parse(&args.allow)?;
    let prepared = build::prepare_with(global, &args, args.quiet, epoch)?;
    build::entitlements::check(&prepared, allowed)?;
    // No output may land in the store: refused before anything is built.
    build::output::check_outside_store(
        &outputs,
        [&args.iidfile, &args.metadata_file],
        prepared.store.root(),
    )?;

    if args.fail_on_cache_miss || args.explain {
        let explanations = crate::commands::explain::dry_run(&prepared, args.no_cache)?;
        if args.explain {
            build::explain::print(&prepared.dockerfile, &explanations, false);
        }
        if args.fail_on_cache_miss && explanations.iter().any(|e| !e.cached) {
            if !args.explain {
                build::explain::print(&prepared.dockerfile, &explanations, false);
            }
            return Err(miette::Report::new(
                rbuild_store::Failure::new(
                    rbuild_store::ErrorClass::CacheMiss,
                    "rbuild::build::cache_miss",
                    "some steps would miss the cache",
                )
                .with_help("remove --fail-on-cache-miss to build anyway"),
            ));
        }
    }

    let cancel = CancelToken::new();
    crate::interrupt::cancel_on_interrupt(&cancel);
    let reporter = ProgressReporter::new(args.progress, args.quiet);
    let mut inputs = SolveInputs {
        epoch,
        network,
        secrets: &secrets,
        no_cache: args.no_cache,
        cancel: &cancel,
        backend: global.executor_options().backend,
    };
    let (image, solved) = solve_and_commit(&prepared, &args, &inputs, &reporter)?;
    if args.verify_reproducible {
        if !args.quiet {
            eprintln!(
                "verify-reproducible: first build gave {}; building again without the cache",
                image.manifest_digest
            );
        }
        inputs.no_cache = true;
        let second_reporter = ProgressReporter::new(args.progress, args.quiet);
        let (second, _) = solve_and_commit(&prepared, &args, &inputs, &second_reporter)?;
        let differences = build::reproducible::compare(&prepared.store, &image, &second)?;
        if !differences.is_empty() {
            for line in build::reproducible::report_lines(&image, &second, &differences) {
                eprintln!("{line}");
            }
            return Err(build::reproducible::not_reproducible(&differences));
        }
        if !args.quiet {
            eprintln!(
                "reproducible: both builds gave {} (SOURCE_DATE_EPOCH={})",
                image.manifest_digest,
                epoch.unwrap_or_default()
            );
        }
    }
    let mut written = Vec::new();
    let mut rootfs = None;
    for spec in &outputs {
        if let Some(w) =
            build::output::write(&prepared.store, &image, spec, &tags, epoch, &mut rootfs)?
        {
            written.push(w);
        }
    }
    drop(rootfs);
    let mut names = tags.clone();
    for spec in &outputs {
        if spec.kind == build::output::OutputType::Image {
            for n in &spec.names {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
    }
    finish::tag_all(&prepared, &image, &names)?;
    if let Some(path) = &args.iidfile {
        finish::write_iidfile(prepared.store.root(), path, &image)?;
    }
    if let Some(path) = &args.metadata_file {
        finish::write_metadata(prepared.store.root(), path, &image, &names)?;
    }
    let note = |text: &str| reporter.line(text);
    build::registry::publish(
        &prepared,
        &solved,
        &tags,
        args.registry.push,
        &cache_to,
        compression,
        &note,
    )?;
    if args.quiet {
        println!("{}", image.id());
        return Ok(0);
    }
    let counts = reporter.counts();
    let elapsed = reporter.elapsed().as_secs_f64();
    reporter.summary(
        &format!(
            "built {} in {elapsed:.1}s: {} steps, {} cached, {} built (+{} metadata); size {}",
            image.id().short(),
            counts.total,
            counts.cached,
            counts.built,
            counts.metadata,
            rbuild_store::size::human(image.size())
        ),
        serde_json::json!({
            "image_id": image.id().to_string(),
            "manifest_digest": image.manifest_digest.to_string(),
            "seconds": elapsed,
            "steps": counts.total,
            "cached": counts.cached,
            "built": counts.built,
            "metadata": counts.metadata,
            "size": image.size(),
            "tags": names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
        }),
    );
    for w in &written {
        reporter.line(&format!("wrote {}", w.what));
    }
    for tag in &names {
        reporter.line(&format!("tagged {}", tag.familiar()));
    }
    Ok(0)
}

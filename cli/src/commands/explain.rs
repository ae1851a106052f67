//! `rbuild explain`: which steps of a build would hit the cache, and for every miss, why —
//! without building anything.

use clap::{Args, ValueEnum};
use rbuild_solver::reporter::Silent;
use rbuild_solver::scheduler::{self, SolveOptions};
use rbuild_solver::worker::{CancelToken, ExecRequest, Layer, Worker};

use crate::args::GlobalArgs;
use crate::build::{self, explain};
use crate::commands::build::BuildArgs;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Pretty)]
    pub format: ExplainFormat,

    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Pretty,
    Json,
}

/// Answers cache lookups for a dry run; never asked to execute.
pub struct DryRun<'a> {
    pub store: &'a rbuild_store::Store,
}

impl Worker for DryRun<'_> {
    fn execute(&self, req: ExecRequest<'_>) -> miette::Result<Option<Layer>> {
        Err(miette::miette!(
            "internal error: a dry run tried to execute `{}`",
            req.step.display
        ))
    }

    fn has_layer(&self, diff_id: &rbuild_store::Digest) -> bool {
        self.store.has_blob(diff_id)
    }
}

pub fn run(global: &GlobalArgs, args: ExplainArgs) -> miette::Result<u8> {
    let quiet = args.format == ExplainFormat::Json;
    let prepared = build::prepare(global, &args.build, quiet)?;
    let explanations = dry_run(&prepared, args.build.no_cache)?;
    let missed = explain::print(
        &prepared.dockerfile,
        &explanations,
        args.format == ExplainFormat::Json,
    );
    Ok(if args.build.fail_on_cache_miss && missed > 0 {
        crate::exit::CACHE_MISS
    } else {
        0
    })
}

/// Solve without executing and collect the explanations.
pub fn dry_run(
    prepared: &build::Prepared,
    no_cache: bool,
) -> miette::Result<Vec<rbuild_solver::explain::StepExplanation>> {
    let cache = &prepared.cache;
    let files_diff = |_set: &str, old: &str, new: &str| prepared.inputs.files_diff(cache, old, new);
    let opts = SolveOptions {
        no_cache,
        jobs: 1,
        dry_run: true,
        site_prefix: build::site_prefix(prepared),
        files: &prepared.inputs.files,
        files_diff: &files_diff,
        now: jiff::Timestamp::now().as_second(),
        cancel: CancelToken::new(),
    };
    let dry = DryRun {
        store: &prepared.store,
    };
    let note = |_: &str| {};
    // Layers of an imported registry cache count as present: a dry run fetches nothing.
    let worker = build::registry::layers::CacheAwareWorker::new(
        &dry,
        &prepared.registry,
        &prepared.store,
        &note,
    );
    let solved = scheduler::solve(
        &prepared.planned.plan,
        &prepared.order,
        &prepared.cache,
        &worker,
        &Silent,
        &opts,
    )
    .map_err(|err| prepared.dockerfile.attach(err))?;
    Ok(explain::collect(
        &prepared.planned,
        &solved,
        &prepared.order.order,
    ))
}

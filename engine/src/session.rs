//! A whole build: prepare the [`Session`], check entitlements and outputs, optionally explain
//! or guard against cache misses, solve with the executor as worker (fetching registry-cache
//! layers as steps need them), commit the image, optionally build again to verify it is
//! reproducible, write the outputs, tag, write the id and metadata files, then push and export
//! the build cache.
//!
#![doc = include_str!("session.md")]

use std::time::{Duration, Instant};

use rbuild_executor::build::{BuildWorker, WorkerOptions};
use rbuild_solver::scheduler::{self, SolveOptions, Solved};
use rbuild_solver::worker::CancelToken;
use rbuild_store::{ErrorClass, Failure, ImageRecord, Reference};

use crate::options::BuildOptions;
use crate::output::{self, RootfsCache, Written};
use crate::report::{Notice, Reporter};
use crate::{Session, entitlements, finish, registry, reproducible};

/// What a successful build made.
pub struct BuildResult {
    /// The image, committed to the store.
    pub image: ImageRecord,
    /// Every name tagged: the tags, then the names of `type=image` outputs.
    pub names: Vec<Reference>,
    /// The file and directory outputs written, in order.
    pub written: Vec<Written>,
    /// Every step of the stages the target needed, in build order.
    pub steps: Vec<StepReport>,
    pub timings: Timings,
}

/// How one step went.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The stage's label (its name, or its index).
    pub stage: String,
    /// The instruction as shown in progress (`RUN make`).
    pub step: String,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Metadata only (ENV, LABEL, CMD, ...): nothing to build.
    Metadata,
    /// Its result came from the cache.
    Cached,
    /// It ran.
    Built,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Reading, planning, pulling bases and hashing inputs.
    pub prepare: Duration,
    /// From the start of solving to the end (outputs, tags and pushes included).
    pub build: Duration,
}

/// Build `options` (see the crate docs for the stages); progress goes to `reporter`.
/// Cancelling `cancel` stops running steps and fails the build as interrupted, with nothing
/// tagged.
pub fn build(
    options: &BuildOptions,
    reporter: &dyn Reporter,
    cancel: &CancelToken,
) -> miette::Result<BuildResult> {
    let started = Instant::now();
    registry::push::check(options.push, &options.tags)?;
    let mut prepare = options.prepare.clone();
    if options.verify_reproducible {
        let epoch = prepare.source_date_epoch;
        let note = match epoch {
            Some(e) => format!("SOURCE_DATE_EPOCH={e}"),
            None => format!(
                "SOURCE_DATE_EPOCH={} (not set: the default, used for both builds and the result)",
                reproducible::DEFAULT_EPOCH
            ),
        };
        prepare.source_date_epoch = Some(epoch.unwrap_or(reproducible::DEFAULT_EPOCH));
        reporter.message(&format!("verify-reproducible: building twice with {note}"));
    }
    let epoch = prepare.source_date_epoch;
    let session = Session::prepare(&prepare, reporter)?;
    entitlements::check(&session, options.allow)?;
    // No output may land in the store: refused before anything is built.
    output::check_outside_store(
        &options.outputs,
        [&options.iidfile, &options.metadata_file],
        session.store.root(),
    )?;

    if options.fail_on_cache_miss || options.explain {
        let explanations = session.explain(prepare.no_cache)?;
        let missed = explanations.iter().any(|e| !e.cached);
        if options.explain || (options.fail_on_cache_miss && missed) {
            reporter.notice(Notice::Explained {
                dockerfile: &session.dockerfile,
                explanations: &explanations,
            });
        }
        if options.fail_on_cache_miss && missed {
            return Err(miette::Report::new(
                Failure::new(
                    ErrorClass::CacheMiss,
                    "rbuild::build::cache_miss",
                    "some steps would miss the cache",
                )
                .with_help("remove --fail-on-cache-miss to build anyway"),
            ));
        }
    }

    let prepared_at = Instant::now();
    let mut pass = Pass {
        options,
        epoch,
        no_cache: prepare.no_cache,
        cancel,
    };
    reporter.notice(Notice::Pass(1));
    let (image, solved) = pass.solve_and_commit(&session, reporter)?;
    if options.verify_reproducible {
        reporter.message(&format!(
            "verify-reproducible: first build gave {}; building again without the cache",
            image.manifest_digest
        ));
        pass.no_cache = true;
        reporter.notice(Notice::Pass(2));
        let (second, _) = pass.solve_and_commit(&session, reporter)?;
        let differences = reproducible::compare(&session.store, &image, &second)?;
        if !differences.is_empty() {
            for line in reproducible::report_lines(&image, &second, &differences) {
                reporter.notice(Notice::Problem(&line));
            }
            return Err(reproducible::not_reproducible(&differences));
        }
        reporter.message(&format!(
            "reproducible: both builds gave {} (SOURCE_DATE_EPOCH={})",
            image.manifest_digest,
            epoch.unwrap_or_default()
        ));
    }
    reporter.notice(Notice::Finishing);
    let stop = || cancel.is_cancelled();
    let export = output::Export {
        store: &session.store,
        image: &image,
        tags: &options.tags,
        epoch,
        cancelled: &stop,
    };
    let mut written = Vec::new();
    let mut rootfs = RootfsCache::default();
    for spec in &options.outputs {
        if let Some(w) = output::write(&export, spec, &mut rootfs)? {
            written.push(w);
        }
    }
    drop(rootfs);
    let names = output::image::names(&options.tags, &options.outputs);
    finish::tag_all(&session, &image, &names)?;
    if let Some(path) = &options.iidfile {
        finish::write_iidfile(session.store.root(), path, &image, &stop)?;
    }
    if let Some(path) = &options.metadata_file {
        finish::write_metadata(session.store.root(), path, &image, &names, &stop)?;
    }
    registry::publish(
        &session,
        &solved,
        &rbuild_store::Target::Image(image.clone()),
        &options.tags,
        options.push,
        &options.cache_to,
        options.compression,
        reporter,
    )?;
    let steps = step_reports(&session, &solved);
    Ok(BuildResult {
        image,
        names,
        written,
        steps,
        timings: Timings {
            prepare: prepared_at - started,
            build: prepared_at.elapsed(),
        },
    })
}

/// What one solve needs besides the session.
struct Pass<'a> {
    options: &'a BuildOptions,
    epoch: Option<i64>,
    no_cache: bool,
    /// The caller's token: cancelled only from outside (the solver cancels its own copy on
    /// the first failure).
    cancel: &'a CancelToken,
}

impl Pass<'_> {
    /// Run the build against the executor (fetching layers of a registry cache as steps need
    /// them) and commit the target's image (untagged).
    fn solve_and_commit(
        &self,
        session: &Session,
        reporter: &dyn Reporter,
    ) -> miette::Result<(ImageRecord, Solved)> {
        let options = self.options;
        // The solver cancels its token on the first failure; the caller's stays as it was, so
        // a failure can be told from an interruption.
        let solve_cancel = CancelToken::new();
        {
            let solve_cancel = solve_cancel.clone();
            self.cancel.on_cancel(move || solve_cancel.cancel());
        }
        let worker = BuildWorker::new(
            &session.store,
            &session.planned.plan,
            &session.inputs,
            &session.bases,
            WorkerOptions {
                source_date_epoch: self.epoch,
                network: options.network,
                secrets: options.secrets.clone(),
                memory: options.memory,
                pids: options.pids_limit,
                backend: options.backend,
            },
            &solve_cancel,
        )?;
        let note = |text: &str| reporter.line(text);
        let worker = registry::layers::CacheAwareWorker::new(
            &worker,
            &session.registry,
            &session.store,
            &note,
        );
        let cache = &session.cache;
        let files_diff =
            |_set: &str, old: &str, new: &str| session.inputs.files_diff(cache, old, new);
        let jobs = options
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let opts = SolveOptions {
            no_cache: self.no_cache,
            jobs,
            dry_run: false,
            site_prefix: crate::prepare::site_prefix(session),
            files: &session.inputs.files,
            files_diff: &files_diff,
            now: jiff::Timestamp::now().as_second(),
            cancel: solve_cancel.clone(),
        };
        let solved = scheduler::solve(
            &session.planned.plan,
            &session.order,
            &session.cache,
            &worker,
            reporter,
            &opts,
        );
        let solved = match solved {
            Ok(solved) => solved,
            Err(_) if self.cancel.is_cancelled() => {
                // The step that was running failed only because it was killed: not worth
                // showing.
                return Err(miette::Report::new(
                    Failure::interrupted("build interrupted: nothing was tagged").with_help(
                        "the store is as it was, apart from layers already cached; run the \
                         build again to continue from there",
                    ),
                ));
            }
            // Step failures are labelled at their instruction: show them on the Dockerfile.
            Err(err) => return Err(session.dockerfile.attach(err)),
        };
        registry::layers::fetch_target_layers(
            &session.registry,
            &session.store,
            &session.planned.plan,
            &solved,
            &note,
        )?;
        let image = finish::commit(session, &solved, self.epoch)?;
        Ok((image, solved))
    }
}

/// The per-step report of a solve, in build order.
fn step_reports(session: &Session, solved: &Solved) -> Vec<StepReport> {
    let plan = &session.planned.plan;
    let mut out = Vec::new();
    for &s in &session.order.order {
        let Some(Some(outcome)) = solved.stages.get(s) else {
            continue;
        };
        let stage = &plan.stages[s];
        for (step, record) in stage.steps.iter().zip(&outcome.steps) {
            let outcome = if record.key.is_none() {
                StepOutcome::Metadata
            } else if record.cached {
                StepOutcome::Cached
            } else {
                StepOutcome::Built
            };
            out.push(StepReport {
                stage: stage.label(),
                step: step.display.clone(),
                outcome,
            });
        }
    }
    out
}

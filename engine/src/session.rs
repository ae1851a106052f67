//! A whole build: prepare the [`Session`], check entitlements and outputs, optionally explain
//! or guard against cache misses, solve with the executor as worker (fetching registry-cache
//! layers as steps need them), commit the image, optionally build again to verify it is
//! reproducible, write the outputs, tag, write the id and metadata files, then push and export
//! the build cache.
//!
#![doc = include_str!("session.md")]

use std::time::{Duration, Instant};

use rbuild_executor::build::{BuildWorker, WorkerOptions};
use rbuild_solver::op::Platform;
use rbuild_solver::reporter::Event;
use rbuild_solver::scheduler::{self, SolveOptions, Solved, StepFlights};
use rbuild_solver::worker::CancelToken;
use rbuild_store::{ErrorClass, Failure, ImageRecord, Reference, Target};

use crate::options::BuildOptions;
use crate::output::{self, RootfsCache, Written};
use crate::prepare::PlatformBuild;
use crate::report::{Notice, Reporter};
use crate::{Session, emulation, entitlements, finish, registry, reproducible};

/// What a successful build made.
pub struct BuildResult {
    /// What the build committed and named: one image, or for several platforms the image
    /// index over their images.
    pub target: Target,
    /// Each platform's image, in the order the platforms were asked for (one for a
    /// single-platform build).
    pub images: Vec<(Platform, ImageRecord)>,
    /// Every name tagged: the tags, then the names of `type=image` outputs.
    pub names: Vec<Reference>,
    /// The file and directory outputs written, in order.
    pub written: Vec<Written>,
    /// Every step of the stages the target needed, in build order (platform by platform).
    pub steps: Vec<StepReport>,
    pub timings: Timings,
}

/// How one step went.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The target platform it was built for, in a multi-platform build.
    pub platform: Option<Platform>,
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
    /// Its result came from the cache (or, in a multi-platform build, from the platform that
    /// ran the same step).
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
    if options.prepare.is_multi_platform() {
        output::check_multi_platform(&options.outputs)?;
    }
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
    crate::ssh::check(&session, &options.ssh)?;
    // Key files are served for as long as the build runs.
    let agents = crate::ssh::Agents::start(&options.ssh)?;
    emulation::check(&session)?;
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
        ssh: &agents.sockets,
        epoch,
        no_cache: prepare.no_cache,
        cancel,
    };
    reporter.notice(Notice::Pass(1));
    let (images, solved) = pass.solve_and_commit(&session, reporter)?;
    if options.verify_reproducible {
        let digests = |images: &[(Platform, ImageRecord)]| {
            images
                .iter()
                .map(|(_, i)| i.manifest_digest.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        reporter.message(&format!(
            "verify-reproducible: first build gave {}; building again without the cache",
            digests(&images)
        ));
        pass.no_cache = true;
        reporter.notice(Notice::Pass(2));
        let (second, _) = pass.solve_and_commit(&session, reporter)?;
        for ((_, first), (_, again)) in images.iter().zip(&second) {
            let differences = reproducible::compare(&session.store, first, again)?;
            if !differences.is_empty() {
                for line in reproducible::report_lines(first, again, &differences) {
                    reporter.notice(Notice::Problem(&line));
                }
                return Err(reproducible::not_reproducible(&differences));
            }
        }
        reporter.message(&format!(
            "reproducible: both builds gave {} (SOURCE_DATE_EPOCH={})",
            digests(&images),
            epoch.unwrap_or_default()
        ));
    }
    // One platform: its image, as a single-platform build always made. Several: an index.
    let target = if session.multi_platform {
        Target::Index(
            session
                .store
                .commit_index_annotated(
                    &images,
                    &options.annotations.index,
                    &options.annotations.manifest_descriptor,
                )
                .map_err(miette::Report::new)?,
        )
    } else {
        Target::Image(images[0].1.clone())
    };
    reporter.notice(Notice::Finishing);
    let stop = || cancel.is_cancelled();
    let export = output::Export {
        store: &session.store,
        target: &target,
        tags: &options.tags,
        epoch,
        cancelled: &stop,
    };
    if options
        .outputs
        .iter()
        .any(|o| o.kind != output::spec::OutputType::Image)
    {
        // Files and archives hold the layers: remote base layers are fetched first.
        let progress = reporter.transfer(crate::report::Transfer::Pull);
        registry::remote_layers::fetch_target(
            &session.registry,
            &session.store,
            &target,
            &*progress,
        )?;
    }
    let mut written = Vec::new();
    let mut rootfs = RootfsCache::default();
    for spec in &options.outputs {
        written.extend(output::write(&export, spec, &mut rootfs)?);
    }
    drop(rootfs);
    let names = output::image::names(&options.tags, &options.outputs);
    finish::tag_all(&session, &target, &names)?;
    if let Some(path) = &options.iidfile {
        finish::write_iidfile(session.store.root(), path, &target, &stop)?;
    }
    if let Some(path) = &options.metadata_file {
        finish::write_metadata(session.store.root(), path, &target, &names, &stop)?;
    }
    let solved_pairs: Vec<(&PlatformBuild, &Solved)> =
        session.platforms.iter().zip(&solved).collect();
    registry::publish(
        &session,
        &solved_pairs,
        &target,
        &options.tags,
        options.push,
        &options.cache_to,
        options.compression,
        reporter,
    )?;
    let steps = step_reports(&session, &solved);
    Ok(BuildResult {
        target,
        images,
        names,
        written,
        steps,
        timings: Timings {
            prepare: prepared_at - started,
            build: prepared_at.elapsed(),
        },
    })
}

/// The solver's events of one platform's solve, passed on with its platform in a
/// multi-platform build (progress names it as BuildKit does, `[linux/arm64 build 2/3]`).
pub(crate) struct PlatformEvents<'a> {
    pub reporter: &'a dyn Reporter,
    pub platform: Option<&'a Platform>,
}

impl rbuild_solver::reporter::Reporter for PlatformEvents<'_> {
    fn event(&self, event: Event<'_>) {
        match self.platform {
            Some(platform) => self.reporter.platform_event(platform, event),
            None => self.reporter.event(event),
        }
    }
}

/// Each platform's image, in platform order.
type PlatformImages = Vec<(Platform, ImageRecord)>;

/// What one solve needs besides the session.
struct Pass<'a> {
    options: &'a BuildOptions,
    /// The socket of each `--ssh` id (key files served by [`crate::ssh::Agents`]).
    ssh: &'a std::collections::BTreeMap<String, std::path::PathBuf>,
    epoch: Option<i64>,
    no_cache: bool,
    /// The caller's token: cancelled only from outside (the solver cancels its own copy on
    /// the first failure).
    cancel: &'a CancelToken,
}

/// A platform's build that failed.
struct Failed {
    report: miette::Report,
    /// It stopped because another platform's failure cancelled it.
    cancelled: bool,
}

impl From<miette::Report> for Failed {
    fn from(report: miette::Report) -> Failed {
        Failed {
            report,
            cancelled: false,
        }
    }
}

impl Pass<'_> {
    /// Run the build of every platform against the executor (concurrently, a step with the
    /// same key in several platforms run once; layers of a registry cache fetched as steps
    /// need them) and commit each platform's image (untagged), in platform order.
    fn solve_and_commit(
        &self,
        session: &Session,
        reporter: &dyn Reporter,
    ) -> miette::Result<(PlatformImages, Vec<Solved>)> {
        // The solvers cancel this token on the first failure (of any platform); the caller's
        // stays as it was, so a failure can be told from an interruption.
        let solve_cancel = CancelToken::new();
        {
            let solve_cancel = solve_cancel.clone();
            self.cancel.on_cancel(move || solve_cancel.cancel());
        }
        let flights = StepFlights::new();
        let now = jiff::Timestamp::now().as_second();
        let results: Vec<Result<(ImageRecord, Solved), Failed>> = std::thread::scope(|scope| {
            let handles: Vec<_> = session
                .platforms
                .iter()
                .map(|build| {
                    let (flights, solve_cancel) = (&flights, &solve_cancel);
                    scope.spawn(move || {
                        self.solve_platform(session, build, reporter, flights, solve_cancel, now)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a platform's solve does not panic"))
                .collect()
        });
        let mut images = Vec::with_capacity(results.len());
        let mut solved = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for (build, result) in session.platforms.iter().zip(results) {
            match result {
                Ok((image, s)) => {
                    images.push((build.platform.clone(), image));
                    solved.push(s);
                }
                Err(err) => failures.push(err),
            }
        }
        if failures.is_empty() {
            return Ok((images, solved));
        }
        if self.cancel.is_cancelled() {
            // The step that was running failed only because it was killed: not worth
            // showing.
            return Err(miette::Report::new(
                Failure::interrupted("build interrupted: nothing was tagged").with_help(
                    "the store is as it was, apart from layers already cached; run the \
                     build again to continue from there",
                ),
            ));
        }
        // The failure that cancelled the others: the first that is not itself a cancellation.
        let pos = failures.iter().position(|f| !f.cancelled).unwrap_or(0);
        Err(failures.swap_remove(pos).report)
    }

    /// One platform's solve and commit.
    fn solve_platform(
        &self,
        session: &Session,
        build: &PlatformBuild,
        reporter: &dyn Reporter,
        flights: &StepFlights,
        solve_cancel: &CancelToken,
        now: i64,
    ) -> Result<(ImageRecord, Solved), Failed> {
        let options = self.options;
        let worker = BuildWorker::new(
            &session.store,
            &build.planned.plan,
            &build.inputs,
            &session.bases,
            WorkerOptions {
                source_date_epoch: self.epoch,
                network: options.network,
                extra_hosts: options.prepare.extra_hosts.clone(),
                shm_size: options.prepare.shm_size,
                ulimits: options.prepare.ulimits.clone(),
                secrets: options.secrets.clone(),
                ssh: self.ssh.clone(),
                memory: options.memory,
                pids: options.pids_limit,
                backend: options.backend,
            },
            solve_cancel,
        )?;
        let note = |text: &str| reporter.line(text);
        let base_progress = reporter.transfer(crate::report::Transfer::Pull);
        let worker = registry::layers::CacheAwareWorker::new(
            &worker,
            &session.registry,
            &session.store,
            &note,
        )
        .with_bases(&session.bases, &*base_progress);
        let cache = &session.cache;
        let files_diff =
            |_set: &str, old: &str, new: &str| build.inputs.files_diff(cache, old, new);
        let jobs = options
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let opts = SolveOptions {
            no_cache: self.no_cache,
            jobs,
            dry_run: false,
            site_prefix: crate::prepare::site_prefix(session),
            files: &build.inputs.files,
            files_diff: &files_diff,
            now,
            cancel: solve_cancel.clone(),
            flights: Some(flights),
        };
        let events = PlatformEvents {
            reporter,
            platform: session.label(build),
        };
        let solved = scheduler::solve(
            &build.planned.plan,
            &build.order,
            &session.cache,
            &worker,
            &events,
            &opts,
        )
        .map_err(|err| Failed {
            cancelled: err
                .downcast_ref::<Failure>()
                .is_some_and(|f| f.class() == ErrorClass::Interrupted),
            // Step failures are labelled at their instruction: show them on the Dockerfile.
            report: session.dockerfile.attach(err),
        })?;
        registry::layers::fetch_target_layers(
            &session.registry,
            &session.store,
            &build.planned.plan,
            &solved,
            &note,
        )?;
        let inline_note = |text: &str| match session.label(build) {
            Some(platform) => reporter.line(&format!("[{platform}] {text}")),
            None => reporter.line(text),
        };
        let inline = options
            .cache_to
            .iter()
            .any(|s| matches!(s.location, registry::spec::CacheLocation::Inline));
        let image = finish::commit(
            session,
            build,
            &solved,
            self.epoch,
            &self.options.labels,
            &self.options.annotations.manifest,
            inline.then_some(&inline_note as &dyn Fn(&str)),
        )?;
        Ok((image, solved))
    }
}

/// The per-step report of every platform's solve, in build order.
fn step_reports(session: &Session, solved: &[Solved]) -> Vec<StepReport> {
    let mut out = Vec::new();
    for (build, solved) in session.platforms.iter().zip(solved) {
        let plan = &build.planned.plan;
        for &s in &build.order.order {
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
                    platform: session.label(build).cloned(),
                    stage: stage.label(),
                    step: step.display.clone(),
                    outcome,
                });
            }
        }
    }
    out
}

//! Cache explanations without building: a dry run of the solver (a worker that never
//! executes; layers of imported registry caches count as present) and, for every
//! file-changing step of the needed stages, whether it hits the cache and why not.
//! `rbuild explain` and `build --explain`/`--fail-on-cache-miss` render them.
//! [`Session::remote_bases`] says which base layers are only in a registry and which missed
//! steps would fetch them.

use rbuild_solver::explain::StepExplanation;
use rbuild_solver::graph::{self, StepGraph};
use rbuild_solver::plan::Planned;
use rbuild_solver::reporter::Silent;
use rbuild_solver::scheduler::{self, SolveOptions, Solved};
use rbuild_solver::worker::{CancelToken, ExecRequest, Layer, Worker};

use crate::{PlatformBuild, Session};

impl Session {
    /// Solve without executing and explain every file-changing step (`no_cache`: as a build
    /// with the cache off would see them).
    /// Every platform of a multi-platform build is explained, platform by platform, each
    /// explanation naming its platform.
    pub fn explain(&self, no_cache: bool) -> miette::Result<Vec<StepExplanation>> {
        let mut out = Vec::new();
        for build in &self.platforms {
            let mut explained = dry_run(self, build, no_cache)?;
            if let Some(platform) = self.label(build) {
                for e in &mut explained {
                    e.platform = Some(platform.to_string());
                }
            }
            out.extend(explained);
        }
        Ok(out)
    }

    /// The build graph: stages, steps, and what depends on what (skipped stages marked); of
    /// the first platform in a multi-platform build (the graph is the same for every platform
    /// but for the stages' platforms).
    pub fn plan(&self) -> StepGraph {
        let build = self.first();
        graph::step_graph(&build.planned.plan, &build.order)
    }
}

/// A base image of the build with layers that are only in a registry
/// (`rbuild_store::remote`), and the missed steps that would read them (and so fetch them).
#[derive(Debug, Clone)]
pub struct RemoteBase {
    /// The stage whose base it is, and the reference as written (normalised).
    pub stage: String,
    pub reference: String,
    /// Remote layers of all, their compressed bytes, and where they are.
    pub remote: usize,
    pub layers: usize,
    pub bytes: u64,
    pub source: String,
    /// Missed steps that run on the base (RUN, COPY without `--link`, WORKDIR): empty when
    /// the build would not download the base at all.
    pub readers: Vec<String>,
}

impl Session {
    /// The bases with remote layers, per stage the target needs, and which steps (among
    /// those `explanations` say would run) read them.
    pub fn remote_bases(&self, explanations: &[StepExplanation]) -> Vec<RemoteBase> {
        let mut out = Vec::new();
        for build in &self.platforms {
            let plan = &build.planned.plan;
            for &s in &build.order.order {
                let stage = &plan.stages[s];
                let rbuild_solver::op::Base::Image(base) = &stage.base else {
                    continue;
                };
                let Some(record) = self.bases.get(&base.manifest_digest) else {
                    continue;
                };
                let remote = self.store.remote_layers(record);
                let Some((_, first)) = remote.first() else {
                    continue;
                };
                let label = stage.label();
                // Once a step runs on the base, every later step runs on it too.
                let mut reading = false;
                let mut readers = Vec::new();
                for step in stage.steps.iter().filter(|s| s.op.changes_files()) {
                    let missed = explanations
                        .iter()
                        .any(|e| e.stage == label && e.line == step.site.line && !e.cached);
                    if missed && !step.op.is_independent() {
                        reading = true;
                    }
                    if reading && missed {
                        readers.push(step.display.clone());
                    }
                }
                out.push(RemoteBase {
                    stage: label,
                    reference: base.reference.clone(),
                    remote: remote.len(),
                    layers: record.layers.len(),
                    bytes: remote.iter().map(|(l, _)| l.descriptor.size).sum(),
                    source: first.source.clone(),
                    readers,
                });
            }
        }
        out
    }
}

/// Answers cache lookups for a dry run; never asked to execute.
struct DryRun<'a> {
    store: &'a rbuild_store::Store,
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

/// Solve without executing and collect the explanations.
fn dry_run(
    prepared: &Session,
    build: &PlatformBuild,
    no_cache: bool,
) -> miette::Result<Vec<StepExplanation>> {
    let cache = &prepared.cache;
    let files_diff = |_set: &str, old: &str, new: &str| build.inputs.files_diff(cache, old, new);
    let opts = SolveOptions {
        no_cache,
        jobs: 1,
        dry_run: true,
        site_prefix: crate::prepare::site_prefix(prepared),
        files: &build.inputs.files,
        files_diff: &files_diff,
        now: jiff::Timestamp::now().as_second(),
        cancel: CancelToken::new(),
        flights: None,
    };
    let dry = DryRun {
        store: &prepared.store,
    };
    let note = |_: &str| {};
    // Layers of an imported registry cache count as present: a dry run fetches nothing.
    let worker = crate::registry::layers::CacheAwareWorker::new(
        &dry,
        &prepared.registry,
        &prepared.store,
        &note,
    );
    let solved = scheduler::solve(
        &build.planned.plan,
        &build.order,
        &prepared.cache,
        &worker,
        &Silent,
        &opts,
    )
    .map_err(|err| prepared.dockerfile.attach(err))?;
    Ok(collect(&build.planned, &solved, &build.order.order))
}

/// Explanations of every file-changing step of the needed stages, in build order.
pub fn collect(planned: &Planned, solved: &Solved, order: &[usize]) -> Vec<StepExplanation> {
    let mut out = Vec::new();
    for &s in order {
        let stage = &planned.plan.stages[s];
        let Some(outcome) = &solved.stages[s] else {
            continue;
        };
        for (step, record) in stage.steps.iter().zip(&outcome.steps) {
            if !step.op.changes_files() {
                continue;
            }
            out.push(StepExplanation {
                platform: None,
                stage: stage.label(),
                step: step.display.clone(),
                line: step.site.line,
                span: step.site.span.clone(),
                key: record.key.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
                cached: record.cached,
                reasons: record.reasons.clone(),
            });
        }
    }
    out
}

//! Runs a plan: needed stages in dependency order, independent stages in parallel (bounded by
//! `jobs`, `-j`), steps of a stage in sequence. For every file-changing step it computes the
//! cache key, reuses a cached layer or asks the worker to build one, reports events to a
//! [`crate::reporter::Reporter`], and records why it missed. A dry run (`explain`)
//! does the same without executing anything. The first failure cancels the others: the shared
//! cancel token fires, and the worker's cancel hooks kill running sandboxes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::mpsc;

use rbuild_store::Digest;

use crate::cache::{CacheEntry, CacheIndex};
use crate::cache_key::{CacheKey, FilesInput, Note, ParentNote, Preimage, chain_id};
use crate::explain::{self, FileDiff, MissReason};
use crate::graph::StageOrder;
use crate::op::{FileSource, Op, Plan, RunMount, Stage, Step, StepId};
use crate::reporter::{Event, Reporter};
use crate::worker::{CancelToken, Layer, Worker};

/// Computes the per-file differences of a named file set between two record digests, for
/// explanations; `None` when the records are unknown.
pub type FilesDiff<'a> = dyn Fn(&str, &str, &str) -> Option<FileDiff> + Sync + 'a;

pub struct SolveOptions<'a> {
    pub no_cache: bool,
    /// How many stages may run at once (at least 1).
    pub jobs: usize,
    /// Compute keys and explanations only; execute nothing.
    pub dry_run: bool,
    /// Identifies the Dockerfile in step sites (explanations compare a step with earlier
    /// builds of the same site).
    pub site_prefix: String,
    /// The build-context files each step reads, by set name, resolved before solving.
    pub files: &'a BTreeMap<StepId, BTreeMap<String, FilesInput>>,
    pub files_diff: &'a FilesDiff<'a>,
    /// Unix seconds, for cache-entry timestamps.
    pub now: i64,
    pub cancel: CancelToken,
    /// The keys run in this build, shared by the solves of one build (the platforms of a
    /// multi-platform build) so a step with the same key runs once; `None`: this solve's own.
    pub flights: Option<&'a StepFlights>,
}

/// What happened to one step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub id: StepId,
    /// `None` for metadata steps and, in a dry run, for steps whose inputs are not known yet.
    pub key: Option<CacheKey>,
    pub cached: bool,
    pub layer: Option<Layer>,
    pub reasons: Vec<MissReason>,
    pub preimage: Option<Preimage>,
    /// When the step's result was built (unix seconds): now, or the cache entry's time; `None`
    /// for metadata steps and unknown (dry-run) results.
    pub built_at: Option<i64>,
}

impl StepRecord {
    /// A record of `step` with nothing known yet: no key, not cached, no layer, no reasons.
    fn new(step: &Step) -> StepRecord {
        StepRecord {
            id: step.id,
            key: None,
            cached: false,
            layer: None,
            reasons: Vec::new(),
            preimage: None,
            built_at: None,
        }
    }
}

/// The result of one stage.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    /// The stage's layer chain; `None` in a dry run once a step would be rebuilt.
    pub layers: Option<Vec<Digest>>,
    /// Describes the stage's last file-changing step (the parent of a stage built on it).
    pub tip: ParentNote,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug)]
pub struct Solved {
    /// One entry per plan stage; `None` for skipped stages.
    pub stages: Vec<Option<StageOutcome>>,
}

impl Solved {
    pub fn records(&self) -> impl Iterator<Item = &StepRecord> {
        self.stages
            .iter()
            .flatten()
            .flat_map(|stage| stage.steps.iter())
    }
}

struct Shared<'a> {
    plan: &'a Plan,
    cache: &'a CacheIndex,
    worker: &'a dyn Worker,
    reporter: &'a dyn Reporter,
    opts: &'a SolveOptions<'a>,
    flights: &'a StepFlights,
    /// This solve among those sharing `flights`.
    solve_id: usize,
}

/// Build (or, with `dry_run`, explain) every stage in `order`.
pub fn solve(
    plan: &Plan,
    order: &StageOrder,
    cache: &CacheIndex,
    worker: &dyn Worker,
    reporter: &dyn Reporter,
    opts: &SolveOptions<'_>,
) -> miette::Result<Solved> {
    let own_flights = StepFlights::new();
    let flights = opts.flights.unwrap_or(&own_flights);
    let shared = Shared {
        plan,
        cache,
        worker,
        reporter,
        opts,
        flights,
        solve_id: flights.solve_id(),
    };
    for &s in &order.skipped {
        reporter.event(Event::StageSkipped {
            stage: &plan.stages[s],
        });
    }
    let results: Mutex<Vec<Option<StageOutcome>>> = Mutex::new(vec![None; plan.stages.len()]);
    let jobs = opts.jobs.max(1);
    let mut pending: Vec<usize> = order.order.clone();
    let mut finished: BTreeSet<usize> = BTreeSet::new();
    let mut running = 0usize;
    let mut first_error: Option<miette::Report> = None;

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, miette::Result<StageOutcome>)>();
        loop {
            // Start every ready stage while there is room and nothing failed.
            while first_error.is_none() && running < jobs {
                let Some(pos) = pending
                    .iter()
                    .position(|s| order.deps[*s].iter().all(|d| finished.contains(d)))
                else {
                    break;
                };
                let stage = pending.remove(pos);
                let deps: BTreeMap<usize, StageOutcome> = {
                    let done = results.lock().expect("results lock");
                    order.deps[stage]
                        .iter()
                        .map(|&d| (d, done[d].clone().expect("dependency finished")))
                        .collect()
                };
                let tx = tx.clone();
                let shared = &shared;
                running += 1;
                scope.spawn(move || {
                    let outcome = run_stage(shared, stage, &deps);
                    let _ = tx.send((stage, outcome));
                });
            }
            if running == 0 {
                break;
            }
            let (stage, outcome) = rx.recv().expect("a stage thread reports");
            running -= 1;
            match outcome {
                Ok(outcome) => {
                    results.lock().expect("results lock")[stage] = Some(outcome);
                    finished.insert(stage);
                }
                Err(err) => {
                    opts.cancel.cancel();
                    if first_error.is_none() {
                        first_error = Some(err);
                    }
                }
            }
        }
    });
    if let Some(err) = first_error {
        return Err(err);
    }
    Ok(Solved {
        stages: results.into_inner().expect("results lock"),
    })
}

/// The stages a step reads files from.
fn step_stage_sources(step: &Step) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    match &step.op {
        Op::Copy(copy) => {
            if let FileSource::Stage(i) = copy.from {
                out.insert(i);
            }
        }
        Op::Run(run) => {
            for mount in &run.mounts {
                if let RunMount::Bind {
                    from: FileSource::Stage(i),
                    ..
                }
                | RunMount::Cache {
                    from: Some((FileSource::Stage(i), _)),
                    ..
                } = mount
                {
                    out.insert(*i);
                }
            }
        }
        Op::Meta | Op::Mkdir(_) => {}
    }
    out
}

fn preimage_for(
    plan: &Plan,
    stage: &Stage,
    step: &Step,
    parent_layers: &[Digest],
    stage_layers: &BTreeMap<usize, Vec<Digest>>,
    tip: &ParentNote,
    opts: &SolveOptions<'_>,
) -> Preimage {
    // The stage's platform, not the build's target: a stage pinned to `$BUILDPLATFORM` that
    // reads no TARGET* ARG has the same keys for every target.
    let mut preimage = Preimage::new(
        stage.platform.to_string(),
        chain_id(parent_layers),
        step.key.canonical.clone(),
    );
    preimage.vars = step.key.vars.clone();
    preimage.inputs = step.key.inputs.clone();
    for (s, chain) in stage_layers {
        // The source stage counts by content, so renaming it or rebuilding it to identical
        // layers still hits.
        preimage.inputs.insert(
            format!("stage:{}", plan.stages[*s].label()),
            chain_id(chain),
        );
    }
    if let Some(files) = opts.files.get(&step.id) {
        preimage.files = files.clone();
    }
    preimage.note = Note {
        display: step.display.clone(),
        line: step.site.line,
        stage: stage.label(),
        parent: tip.clone(),
    };
    preimage
}

/// Why source stage `s` changed, from its outcome: the files its missed steps name.
fn source_stage_reason(plan: &Plan, s: usize, deps: &BTreeMap<usize, StageOutcome>) -> MissReason {
    let stage = &plan.stages[s];
    let missed: Vec<(&str, usize, &[MissReason])> = deps
        .get(&s)
        .map(|outcome| {
            outcome
                .steps
                .iter()
                .filter(|r| !r.cached)
                .filter_map(|r| {
                    let step = stage.steps.get(r.id.index)?;
                    Some((step.display.as_str(), step.site.line, r.reasons.as_slice()))
                })
                .collect()
        })
        .unwrap_or_default();
    explain::source_stage_changed(&stage.label(), &missed)
}

/// Compare with the earlier builds of the same site and keep the closest explanation.
fn closest_reasons(
    shared: &Shared<'_>,
    site: &str,
    preimage: &Preimage,
) -> miette::Result<Vec<MissReason>> {
    let history = same_platform_first(shared.cache.site_history(site)?, &preimage.platform);
    let mut best: Option<Vec<MissReason>> = None;
    for entry in history {
        let mut diff = |set: &str, old: &str, new: &str| (shared.opts.files_diff)(set, old, new);
        let reasons = explain::compare(preimage, &entry.preimage, &mut diff);
        if reasons.is_empty() {
            continue;
        }
        if best.as_ref().is_none_or(|b| reasons.len() < b.len()) {
            best = Some(reasons);
        }
    }
    Ok(best.unwrap_or_else(|| vec![MissReason::NeverBuilt]))
}

/// The earlier builds of a site to compare with: those for `platform` when there are any
/// (the platforms of a multi-platform build share their sites), else all of them, so the
/// platform is named as a reason only when no build for it is known.
fn same_platform_first(history: Vec<CacheEntry>, platform: &str) -> Vec<CacheEntry> {
    if history.iter().any(|e| e.preimage.platform == platform) {
        history
            .into_iter()
            .filter(|e| e.preimage.platform == platform)
            .collect()
    } else {
        history
    }
}

mod flight;
mod stage;
pub use flight::StepFlights;
use stage::run_stage;

#[cfg(test)]
mod tests;

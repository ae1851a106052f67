//! Runs a plan: needed stages in dependency order, independent stages in parallel (bounded by
//! `jobs`, `-j`), steps of a stage in sequence. For every file-changing step it computes the
//! cache key, reuses a cached layer or asks the worker to build one, reports events to a
//! [`crate::reporter::Reporter`], and records why it missed. A dry run (`explain`)
//! does the same without executing anything. The first failure cancels the others: the shared
//! cancel token fires, and the worker's cancel hooks kill running sandboxes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Instant;

use rbuild_store::Digest;

use crate::cache::{CacheEntry, CacheIndex, CachedResult};
use crate::cache_key::{CacheKey, FilesInput, Note, ParentNote, Preimage, chain_id};
use crate::explain::{self, FileDiff, MissReason};
use crate::graph::StageOrder;
use crate::op::{Base, FileSource, Op, Plan, RunMount, Stage, Step, StepId};
use crate::reporter::{Event, Reporter};
use crate::worker::{CancelToken, ExecRequest, Layer, Worker};

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
    let shared = Shared {
        plan,
        cache,
        worker,
        reporter,
        opts,
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

fn run_stage(
    shared: &Shared<'_>,
    stage_ix: usize,
    deps: &BTreeMap<usize, StageOutcome>,
) -> miette::Result<StageOutcome> {
    let plan = shared.plan;
    let opts = shared.opts;
    let stage = &plan.stages[stage_ix];
    shared.reporter.event(Event::StageStart { stage });
    let (mut layers, mut tip) = match &stage.base {
        Base::Scratch => (Some(Vec::new()), ParentNote::Scratch),
        Base::Image(img) => (
            Some(img.diff_ids.clone()),
            ParentNote::Image {
                reference: img.reference.clone(),
                manifest_digest: img.manifest_digest.to_string(),
            },
        ),
        Base::Stage(i) => (deps[i].layers.clone(), deps[i].tip.clone()),
    };
    let mut records = Vec::with_capacity(stage.steps.len());
    for step in &stage.steps {
        if opts.cancel.is_cancelled() {
            return Err(miette::Report::new(rbuild_store::Failure::interrupted(
                format!("build cancelled before `{}`", step.display),
            )));
        }
        if !step.op.changes_files() {
            shared.reporter.event(Event::StepMeta { stage, step });
            records.push(StepRecord {
                id: step.id,
                key: None,
                cached: true,
                layer: None,
                reasons: Vec::new(),
                preimage: None,
                built_at: None,
            });
            continue;
        }
        let sources: BTreeMap<usize, Option<Vec<Digest>>> = step_stage_sources(step)
            .into_iter()
            .map(|s| (s, deps.get(&s).and_then(|o| o.layers.clone())))
            .collect();
        let known_sources: Option<BTreeMap<usize, Vec<Digest>>> = sources
            .iter()
            .map(|(s, l)| l.clone().map(|l| (*s, l)))
            .collect();
        // A `COPY --link` layer is built on nothing, whatever is below it.
        let parent_for_step = if step.op.is_independent() {
            Some(Vec::new())
        } else {
            layers.clone()
        };
        let parent_unknown = parent_for_step.is_none();
        let (Some(parent_layers), Some(stage_layers)) = (parent_for_step, known_sources) else {
            // Dry run after a step that would be rebuilt: its key is unknown until then. Say
            // so (the parent, or what changed in the source stages), and also name what changed
            // in the step's own inputs (its files, variables, instruction), compared with its
            // last build, ignoring the parent. Never built at all: say that instead.
            let site = format!(
                "{}#{}",
                opts.site_prefix,
                crate::cache_export::site_suffix(&stage.label(), step.id.index)
            );
            let history = shared.cache.site_history(&site)?;
            let mut reasons = Vec::new();
            if history.is_empty() {
                reasons.push(MissReason::NeverBuilt);
            } else {
                if parent_unknown && let ParentNote::Step { display, line } = &tip {
                    reasons.push(MissReason::ParentChanged {
                        parent: display.clone(),
                        line: Some(*line),
                    });
                }
                for (s, layers) in &sources {
                    if layers.is_none() {
                        reasons.push(source_stage_reason(plan, *s, deps));
                    }
                }
            }
            if let Some(previous) = history.into_iter().next() {
                let stage_layers: BTreeMap<usize, Vec<Digest>> = BTreeMap::new();
                let mut now = preimage_for(plan, stage, step, &[], &stage_layers, &tip, opts);
                now.parent = previous.preimage.parent.clone();
                now.note.parent = previous.preimage.note.parent.clone();
                // Source stages are unknown too: compare only the step's own inputs.
                now.inputs.retain(|k, _| !k.starts_with("stage:"));
                let mut before = previous.preimage.clone();
                before.inputs.retain(|k, _| !k.starts_with("stage:"));
                let mut diff = |set: &str, old: &str, new: &str| (opts.files_diff)(set, old, new);
                reasons.extend(explain::compare(&now, &before, &mut diff));
            }
            shared.reporter.event(Event::StepMiss {
                stage,
                step,
                key: None,
                reasons: &reasons,
            });
            records.push(StepRecord {
                id: step.id,
                key: None,
                cached: false,
                layer: None,
                reasons,
                preimage: None,
                built_at: None,
            });
            layers = None;
            tip = ParentNote::Step {
                display: step.display.clone(),
                line: step.site.line,
            };
            continue;
        };

        let preimage = preimage_for(plan, stage, step, &parent_layers, &stage_layers, &tip, opts);
        let key = preimage.key();
        let site = format!(
            "{}#{}",
            opts.site_prefix,
            crate::cache_export::site_suffix(&stage.label(), step.id.index)
        );
        let mut reasons = Vec::new();
        let hit = if opts.no_cache {
            reasons.push(MissReason::NoCache);
            None
        } else {
            match shared.cache.get(&key)? {
                Some(entry)
                    if entry
                        .result
                        .diff_id
                        .as_ref()
                        .is_none_or(|d| shared.worker.has_layer(d)) =>
                {
                    Some(entry)
                }
                Some(_) => {
                    reasons.push(MissReason::LayerMissing { key: key.0.clone() });
                    None
                }
                None => None,
            }
        };

        let layer = if let Some(entry) = hit {
            shared.reporter.event(Event::StepCached {
                stage,
                step,
                key: &key.0,
            });
            if !opts.dry_run {
                shared.worker.touch_layer(&key.0);
                shared.cache.touch(&key, opts.now)?;
                shared.cache.record_site(&site, &key)?;
            }
            let layer = entry.result.diff_id.map(|diff_id| Layer {
                diff_id,
                size: entry.result.size,
            });
            records.push(StepRecord {
                id: step.id,
                key: Some(key),
                cached: true,
                layer: layer.clone(),
                reasons: Vec::new(),
                preimage: Some(preimage),
                built_at: Some(entry.created),
            });
            layer
        } else {
            if !opts.no_cache {
                reasons.extend(closest_reasons(shared, &site, &preimage)?);
                // A source stage's content is keyed by its chain id: say what changed in it.
                for reason in &mut reasons {
                    if let MissReason::InputChanged { name, .. } = reason
                        && let Some(label) = name.strip_prefix("stage:")
                        && let Some(s) = step_stage_sources(step)
                            .into_iter()
                            .find(|&s| plan.stages[s].label() == label)
                    {
                        *reason = source_stage_reason(plan, s, deps);
                    }
                }
            }
            shared.reporter.event(Event::StepMiss {
                stage,
                step,
                key: Some(&key.0),
                reasons: &reasons,
            });
            if opts.dry_run {
                records.push(StepRecord {
                    id: step.id,
                    key: Some(key),
                    cached: false,
                    layer: None,
                    reasons,
                    preimage: Some(preimage),
                    built_at: None,
                });
                layers = None;
                tip = ParentNote::Step {
                    display: step.display.clone(),
                    line: step.site.line,
                };
                continue;
            }
            let started = Instant::now();
            let reporter = shared.reporter;
            let id = step.id;
            let mut log = |data: &[u8]| reporter.event(Event::StepLog { step: id, data });
            let previous = shared
                .cache
                .site_history(&site)?
                .into_iter()
                .next()
                .and_then(|e| e.result.diff_id);
            let result = shared.worker.execute(ExecRequest {
                plan,
                step,
                parent_layers: &parent_layers,
                stage_layers: &stage_layers,
                cancel: &opts.cancel,
                previous_layer: previous.as_ref(),
                log: &mut log,
            });
            let layer = match result {
                Ok(layer) => layer,
                Err(err) => {
                    shared.reporter.event(Event::StepFailed { stage, step });
                    return Err(err);
                }
            };
            let elapsed = started.elapsed();
            let entry = CacheEntry {
                key: key.clone(),
                preimage: preimage.clone(),
                result: CachedResult {
                    diff_id: layer.as_ref().map(|l| l.diff_id.clone()),
                    size: layer.as_ref().map_or(0, |l| l.size),
                },
                created: opts.now,
                last_used: opts.now,
                build_ms: elapsed.as_millis() as u64,
                depth: parent_layers.len(),
            };
            if let Some(diff_id) = &entry.result.diff_id {
                shared.worker.keep_layer(&key.0, diff_id)?;
            }
            shared.cache.put(&entry)?;
            shared.cache.record_site(&site, &key)?;
            shared.reporter.event(Event::StepDone {
                stage,
                step,
                layer: layer.as_ref(),
                elapsed,
            });
            records.push(StepRecord {
                id: step.id,
                key: Some(key),
                cached: false,
                layer: layer.clone(),
                reasons,
                preimage: Some(preimage),
                built_at: Some(opts.now),
            });
            layer
        };
        if let (Some(chain), Some(layer)) = (layers.as_mut(), layer) {
            chain.push(layer.diff_id);
        }
        tip = ParentNote::Step {
            display: step.display.clone(),
            line: step.site.line,
        };
    }
    Ok(StageOutcome {
        layers,
        tip,
        steps: records,
    })
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
    let mut preimage = Preimage::new(
        plan.platform.to_string(),
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
    let history = shared.cache.site_history(site)?;
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

#[cfg(test)]
mod tests;

//! One stage of a solve, step by step: each file-changing step's cache key (from its parent
//! chain, source stages and inputs), the hit-or-miss decision with the reasons for a miss,
//! and the execution of a miss through the worker, recorded in the cache. A dry run (explain)
//! stops computing keys after the first step that would be rebuilt: later keys are unknown,
//! and their reasons say why (the parent, a source stage, or their own inputs).

use std::collections::BTreeMap;
use std::time::Instant;

use rbuild_store::Digest;

use super::flight::{Claim, Claimant, Follower};
use super::{
    Shared, StageOutcome, StepRecord, closest_reasons, preimage_for, source_stage_reason,
    step_stage_sources,
};
use crate::cache::{CacheEntry, CachedResult};
use crate::cache_key::{CacheKey, ParentNote, Preimage};
use crate::explain::{self, MissReason};
use crate::op::{Base, Stage, Step};
use crate::reporter::Event;
use crate::worker::{ExecRequest, Layer};

/// Build (or explain) stage `stage_ix`, whose source stages' outcomes are in `deps`.
pub(super) fn run_stage(
    shared: &Shared<'_>,
    stage_ix: usize,
    deps: &BTreeMap<usize, StageOutcome>,
) -> miette::Result<StageOutcome> {
    let stage = &shared.plan.stages[stage_ix];
    shared.reporter.event(Event::StageStart { stage });
    let (layers, tip) = match &stage.base {
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
    let mut run = StageRun {
        shared,
        stage,
        deps,
        layers,
        tip,
        records: Vec::with_capacity(stage.steps.len()),
    };
    for step in &stage.steps {
        if shared.opts.cancel.is_cancelled() {
            return Err(miette::Report::new(rbuild_store::Failure::interrupted(
                format!("build cancelled before `{}`", step.display),
            )));
        }
        run.step(step)?;
    }
    Ok(StageOutcome {
        layers: run.layers,
        tip: run.tip,
        steps: run.records,
    })
}

/// A stage being solved: the layer chain so far (`None` once a dry run passed a step that
/// would be rebuilt), the note on the last file-changing step, and the steps' records.
struct StageRun<'s, 'a> {
    shared: &'s Shared<'a>,
    stage: &'s Stage,
    deps: &'s BTreeMap<usize, StageOutcome>,
    layers: Option<Vec<Digest>>,
    tip: ParentNote,
    records: Vec<StepRecord>,
}

impl StageRun<'_, '_> {
    fn step(&mut self, step: &Step) -> miette::Result<()> {
        if !step.op.changes_files() {
            self.shared.reporter.event(Event::StepMeta {
                stage: self.stage,
                step,
            });
            self.records.push(StepRecord {
                cached: true,
                ..StepRecord::new(step)
            });
            return Ok(());
        }
        let sources: BTreeMap<usize, Option<Vec<Digest>>> = step_stage_sources(step)
            .into_iter()
            .map(|s| (s, self.deps.get(&s).and_then(|o| o.layers.clone())))
            .collect();
        let known_sources: Option<BTreeMap<usize, Vec<Digest>>> = sources
            .iter()
            .map(|(s, l)| l.clone().map(|l| (*s, l)))
            .collect();
        // A `COPY --link` layer is built on nothing, whatever is below it.
        let parent_for_step = if step.op.is_independent() {
            Some(Vec::new())
        } else {
            self.layers.clone()
        };
        let parent_unknown = parent_for_step.is_none();
        let (Some(parent_layers), Some(stage_layers)) = (parent_for_step, known_sources) else {
            return self.unknown_key(step, &sources, parent_unknown);
        };

        let opts = self.shared.opts;
        let preimage = preimage_for(
            self.shared.plan,
            self.stage,
            step,
            &parent_layers,
            &stage_layers,
            &self.tip,
            opts,
        );
        let key = preimage.key();
        let site = self.site(step);
        let mut reasons = Vec::new();
        let no_cache = opts.no_cache || self.stage.no_cache;
        let hit = if opts.no_cache {
            reasons.push(MissReason::NoCache);
            None
        } else if self.stage.no_cache {
            reasons.push(MissReason::NoCacheFilter {
                stage: self.stage.label(),
            });
            None
        } else {
            match self.shared.cache.get(&key)? {
                Some(entry)
                    if entry
                        .result
                        .diff_id
                        .as_ref()
                        .is_none_or(|d| self.shared.worker.has_layer(d)) =>
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
        let layer = match hit {
            Some(entry) => self.reuse(step, key, preimage, &site, entry)?,
            None => {
                // Run once per build: another solve (platform) or stage may be running the
                // same key; then its result is this step's.
                let leader = if opts.dry_run {
                    None
                } else {
                    let by = Claimant {
                        solve: self.shared.solve_id,
                        stage: self.stage.index,
                    };
                    match self.shared.flights.claim(&key, by) {
                        Claim::Leader(leader) => Some(leader),
                        Claim::Follower(follower) => {
                            let layer = self.join(step, key, preimage, follower)?;
                            if let (Some(chain), Some(layer)) = (self.layers.as_mut(), layer) {
                                chain.push(layer.diff_id);
                            }
                            self.tip = step_note(step);
                            return Ok(());
                        }
                    }
                };
                if !no_cache {
                    self.explain_miss(step, &site, &preimage, &mut reasons)?;
                }
                self.shared.reporter.event(Event::StepMiss {
                    stage: self.stage,
                    step,
                    key: Some(&key.0),
                    reasons: &reasons,
                });
                if opts.dry_run {
                    self.records.push(StepRecord {
                        key: Some(key),
                        reasons,
                        preimage: Some(preimage),
                        ..StepRecord::new(step)
                    });
                    self.lose_chain(step);
                    return Ok(());
                }
                let parents = Parents {
                    layers: &parent_layers,
                    stages: &stage_layers,
                };
                let layer = self.execute(step, key, preimage, &site, parents, reasons)?;
                if let Some(leader) = leader {
                    leader.finish(layer.clone());
                }
                layer
            }
        };
        if let (Some(chain), Some(layer)) = (self.layers.as_mut(), layer) {
            chain.push(layer.diff_id);
        }
        self.tip = step_note(step);
        Ok(())
    }

    /// A step whose key cannot be known in this dry run (its parent or a source stage would
    /// be rebuilt first). Says so, and also names what changed in the step's own inputs (its
    /// files, variables, instruction) compared with its last build, ignoring the parent; a
    /// step never built says that instead.
    fn unknown_key(
        &mut self,
        step: &Step,
        sources: &BTreeMap<usize, Option<Vec<Digest>>>,
        parent_unknown: bool,
    ) -> miette::Result<()> {
        let (plan, opts) = (self.shared.plan, self.shared.opts);
        let history = super::same_platform_first(
            self.shared.cache.site_history(&self.site(step))?,
            &self.stage.platform.to_string(),
        );
        let mut reasons = Vec::new();
        if history.is_empty() {
            reasons.push(MissReason::NeverBuilt);
        } else {
            if parent_unknown && let ParentNote::Step { display, line } = &self.tip {
                reasons.push(MissReason::ParentChanged {
                    parent: display.clone(),
                    line: Some(*line),
                });
            }
            for (s, layers) in sources {
                if layers.is_none() {
                    reasons.push(source_stage_reason(plan, *s, self.deps));
                }
            }
        }
        if let Some(previous) = history.into_iter().next() {
            let no_stages: BTreeMap<usize, Vec<Digest>> = BTreeMap::new();
            let mut now = preimage_for(plan, self.stage, step, &[], &no_stages, &self.tip, opts);
            now.parent = previous.preimage.parent.clone();
            now.note.parent = previous.preimage.note.parent.clone();
            // Source stages are unknown too: compare only the step's own inputs.
            now.inputs.retain(|k, _| !k.starts_with("stage:"));
            let mut before = previous.preimage.clone();
            before.inputs.retain(|k, _| !k.starts_with("stage:"));
            let mut diff = |set: &str, old: &str, new: &str| (opts.files_diff)(set, old, new);
            reasons.extend(explain::compare(&now, &before, &mut diff));
        }
        self.shared.reporter.event(Event::StepMiss {
            stage: self.stage,
            step,
            key: None,
            reasons: &reasons,
        });
        self.records.push(StepRecord {
            reasons,
            ..StepRecord::new(step)
        });
        self.lose_chain(step);
        Ok(())
    }

    /// A cache hit: reuse the entry's layer and mark it used (not in a dry run).
    fn reuse(
        &mut self,
        step: &Step,
        key: CacheKey,
        preimage: Preimage,
        site: &str,
        entry: CacheEntry,
    ) -> miette::Result<Option<Layer>> {
        let (shared, opts) = (self.shared, self.shared.opts);
        shared.reporter.event(Event::StepCached {
            stage: self.stage,
            step,
            key: &key.0,
        });
        if !opts.dry_run {
            shared.worker.touch_layer(&key.0);
            shared.cache.touch(&key, opts.now)?;
            shared.cache.record_site(site, &key)?;
        }
        let layer = entry.result.diff_id.map(|diff_id| Layer {
            diff_id,
            size: entry.result.size,
        });
        self.records.push(StepRecord {
            key: Some(key),
            cached: true,
            layer: layer.clone(),
            preimage: Some(preimage),
            built_at: Some(entry.created),
            ..StepRecord::new(step)
        });
        Ok(layer)
    }

    /// Another solve or stage ran (or runs) the same key in this build: wait for it and use
    /// its layer, reported as a cache hit.
    fn join(
        &mut self,
        step: &Step,
        key: CacheKey,
        preimage: Preimage,
        follower: Follower,
    ) -> miette::Result<Option<Layer>> {
        let Some(layer) = follower.wait() else {
            return Err(miette::Report::new(rbuild_store::Failure::interrupted(
                format!(
                    "`{}` failed where another part of the build ran it",
                    step.display
                ),
            )));
        };
        self.shared.reporter.event(Event::StepCached {
            stage: self.stage,
            step,
            key: &key.0,
        });
        self.records.push(StepRecord {
            key: Some(key),
            cached: true,
            layer: layer.clone(),
            preimage: Some(preimage),
            built_at: Some(self.shared.opts.now),
            ..StepRecord::new(step)
        });
        Ok(layer)
    }

    /// Why a step missed: the closest earlier build of the same site, with a changed source
    /// stage (keyed by its chain id) described by what changed in it.
    fn explain_miss(
        &self,
        step: &Step,
        site: &str,
        preimage: &Preimage,
        reasons: &mut Vec<MissReason>,
    ) -> miette::Result<()> {
        let plan = self.shared.plan;
        reasons.extend(closest_reasons(self.shared, site, preimage)?);
        for reason in reasons.iter_mut() {
            if let MissReason::InputChanged { name, .. } = reason
                && let Some(label) = name.strip_prefix("stage:")
                && let Some(s) = step_stage_sources(step)
                    .into_iter()
                    .find(|&s| plan.stages[s].label() == label)
            {
                *reason = source_stage_reason(plan, s, self.deps);
            }
        }
        Ok(())
    }

    /// Run a missed step through the worker and record its result in the cache.
    fn execute(
        &mut self,
        step: &Step,
        key: CacheKey,
        preimage: Preimage,
        site: &str,
        parents: Parents<'_>,
        reasons: Vec<MissReason>,
    ) -> miette::Result<Option<Layer>> {
        let (shared, opts) = (self.shared, self.shared.opts);
        let started = Instant::now();
        let reporter = shared.reporter;
        let id = step.id;
        let mut log = |data: &[u8]| reporter.event(Event::StepLog { step: id, data });
        let previous = shared
            .cache
            .site_history(site)?
            .into_iter()
            .next()
            .and_then(|e| e.result.diff_id);
        let result = shared.worker.execute(ExecRequest {
            plan: shared.plan,
            step,
            parent_layers: parents.layers,
            stage_layers: parents.stages,
            cancel: &opts.cancel,
            previous_layer: previous.as_ref(),
            log: &mut log,
        });
        let layer = match result {
            Ok(layer) => layer,
            Err(err) => {
                shared.reporter.event(Event::StepFailed {
                    stage: self.stage,
                    step,
                });
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
            depth: parents.layers.len(),
        };
        if let Some(diff_id) = &entry.result.diff_id {
            shared.worker.keep_layer(&key.0, diff_id)?;
        }
        shared.cache.put(&entry)?;
        shared.cache.record_site(site, &key)?;
        shared.reporter.event(Event::StepDone {
            stage: self.stage,
            step,
            layer: layer.as_ref(),
            elapsed,
        });
        self.records.push(StepRecord {
            key: Some(key),
            layer: layer.clone(),
            reasons,
            preimage: Some(preimage),
            built_at: Some(opts.now),
            ..StepRecord::new(step)
        });
        Ok(layer)
    }

    /// The cache site of `step`: where its earlier builds are recorded.
    fn site(&self, step: &Step) -> String {
        format!(
            "{}#{}",
            self.shared.opts.site_prefix,
            crate::cache_export::site_suffix(&self.stage.label(), step.id.index)
        )
    }

    /// After a step that would be rebuilt (dry run): later keys are unknown.
    fn lose_chain(&mut self, step: &Step) {
        self.layers = None;
        self.tip = step_note(step);
    }
}

/// The layers a step is built on: its parent chain and the chains of its source stages.
struct Parents<'p> {
    layers: &'p [Digest],
    stages: &'p BTreeMap<usize, Vec<Digest>>,
}

fn step_note(step: &Step) -> ParentNote {
    ParentNote::Step {
        display: step.display.clone(),
        line: step.site.line,
    }
}

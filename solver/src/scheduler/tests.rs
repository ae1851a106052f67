//! Scheduler tests with a fake worker that counts executions (BuildKit's scheduler_test idea):
//! a second build must execute nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use super::*;
use crate::graph::stage_order;
use crate::op::*;
use crate::reporter::Silent;
use crate::worker::ExecRequest;

/// Produces a layer whose digest is a function of the parent chain and the instruction, like a
/// reproducible build would.
#[derive(Default)]
struct FakeWorker {
    executed: AtomicUsize,
    log: Mutex<Vec<String>>,
    barrier: Option<Barrier>,
    fail_on: Option<String>,
    pruned: Mutex<Vec<Digest>>,
}

impl Worker for FakeWorker {
    fn execute(&self, req: ExecRequest<'_>) -> miette::Result<Option<Layer>> {
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(req.step.display.clone());
        if req.step.display.contains("sync")
            && let Some(barrier) = &self.barrier
        {
            barrier.wait();
        }
        if self.fail_on.as_deref() == Some(req.step.display.as_str()) {
            return Err(miette::miette!("step failed"));
        }
        if req.step.display.contains("wait-cancel") {
            for _ in 0..500 {
                if req.cancel.is_cancelled() {
                    return Err(miette::miette!("cancelled"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (req.log)(b"output\n");
        if req.step.display.contains("noop") {
            return Ok(None);
        }
        let mut chain = req.parent_layers.to_vec();
        chain.push(Digest::of(req.step.key.canonical.as_bytes()));
        Ok(Some(Layer {
            diff_id: Digest::from_hex(&chain_id(&chain)).unwrap(),
            size: 10,
        }))
    }

    fn has_layer(&self, diff_id: &Digest) -> bool {
        !self.pruned.lock().unwrap().iter().any(|d| d == diff_id)
    }
}

fn run_step(stage: usize, index: usize, cmd: &str) -> Step {
    Step {
        id: StepId { stage, index },
        display: format!("RUN {cmd}"),
        site: Site {
            span: 0..0,
            line: index + 2,
        },
        op: Op::Run(RunOp {
            argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec![],
            workdir: "/".into(),
            user: String::new(),
            network: Network::Default,
            security: Security::Sandbox,
            mounts: vec![],
        }),
        created_by: format!("RUN {cmd}"),
        key: KeyParts {
            canonical: format!("RUN {cmd}"),
            ..KeyParts::default()
        },
    }
}

fn meta(stage: usize, index: usize, text: &str) -> Step {
    Step {
        id: StepId { stage, index },
        display: text.into(),
        site: Site::default(),
        op: Op::Meta,
        created_by: text.into(),
        key: KeyParts::default(),
    }
}

fn stage(index: usize, cmds: &[&str]) -> Stage {
    Stage {
        index,
        name: Some(format!("s{index}")),
        base: Base::Image(ImageBase {
            reference: "busybox:1.35".into(),
            manifest_digest: Digest::of(b"m"),
            config_digest: Digest::of(b"c"),
            diff_ids: vec![Digest::of(b"base")],
        }),
        steps: cmds
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.starts_with("ENV") {
                    meta(index, i, c)
                } else {
                    run_step(index, i, c)
                }
            })
            .collect(),
        site: Site::default(),
        platform: Platform::host(),
        no_cache: false,
    }
}

fn plan(stages: Vec<Stage>) -> Plan {
    let target = stages.len() - 1;
    Plan {
        stages,
        target,
        platform: Platform::host(),
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    cache: CacheIndex,
    files: BTreeMap<StepId, BTreeMap<String, FilesInput>>,
}

fn no_diff(_: &str, _: &str, _: &str) -> Option<FileDiff> {
    None
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheIndex::open(dir.path()).unwrap();
        Harness {
            _dir: dir,
            cache,
            files: BTreeMap::new(),
        }
    }

    fn solve(
        &self,
        plan: &Plan,
        worker: &FakeWorker,
        no_cache: bool,
        dry_run: bool,
    ) -> miette::Result<Solved> {
        let order = stage_order(plan).unwrap();
        let opts = SolveOptions {
            no_cache,
            jobs: 4,
            dry_run,
            site_prefix: "Dockerfile".into(),
            files: &self.files,
            files_diff: &no_diff,
            now: 1000,
            cancel: CancelToken::new(),
            flights: None,
        };
        solve(plan, &order, &self.cache, worker, &Silent, &opts)
    }
}

fn reasons_of(solved: &Solved, stage: usize, index: usize) -> Vec<String> {
    solved.stages[stage].as_ref().unwrap().steps[index]
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The second build of an unchanged plan executes nothing and yields the same layers.
#[test]
fn second_build_is_fully_cached() {
    let h = Harness::new();
    let p = plan(vec![stage(0, &["a", "ENV X=1", "b"])]);
    let first = FakeWorker::default();
    let one = h.solve(&p, &first, false, false).unwrap();
    assert_eq!(first.executed.load(Ordering::SeqCst), 2);
    let second = FakeWorker::default();
    let two = h.solve(&p, &second, false, false).unwrap();
    assert_eq!(second.executed.load(Ordering::SeqCst), 0);
    assert_eq!(
        one.stages[0].as_ref().unwrap().layers,
        two.stages[0].as_ref().unwrap().layers
    );
    assert!(two.records().all(|r| r.cached));
}

/// Changing an instruction misses it (saying so) and its children (naming the parent).
#[test]
fn changed_instruction_and_parent_reasons() {
    let h = Harness::new();
    h.solve(
        &plan(vec![stage(0, &["a", "b"])]),
        &FakeWorker::default(),
        false,
        false,
    )
    .unwrap();
    let worker = FakeWorker::default();
    let solved = h
        .solve(&plan(vec![stage(0, &["a2", "b"])]), &worker, false, false)
        .unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 2);
    assert_eq!(
        reasons_of(&solved, 0, 0),
        vec!["the instruction changed: `RUN a` → `RUN a2`"]
    );
    assert_eq!(
        reasons_of(&solved, 0, 1),
        vec!["its parent changed (`RUN a2`, line 2)"]
    );
}

/// Metadata steps add no layer, so adding an ENV between two RUNs keeps the second cached.
#[test]
fn metadata_steps_do_not_bust_the_cache() {
    let h = Harness::new();
    h.solve(
        &plan(vec![stage(0, &["a", "b"])]),
        &FakeWorker::default(),
        false,
        false,
    )
    .unwrap();
    let worker = FakeWorker::default();
    // Same positions for the RUNs would differ; the key does not depend on the position.
    h.solve(
        &plan(vec![stage(0, &["a", "ENV Y=2", "b"])]),
        &worker,
        false,
        false,
    )
    .unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 0);
}

/// After a miss whose rebuilt layer is identical, later steps hit again.
#[test]
fn lookups_continue_after_a_miss() {
    let h = Harness::new();
    let p = plan(vec![stage(0, &["a", "b", "c"])]);
    let first = h.solve(&p, &FakeWorker::default(), false, false).unwrap();
    // Evict the first step's entry: it must run again, but produces the same layer.
    let key = first.stages[0].as_ref().unwrap().steps[0]
        .key
        .clone()
        .unwrap();
    h.cache.remove(&key).unwrap();
    let worker = FakeWorker::default();
    let solved = h.solve(&p, &worker, false, false).unwrap();
    assert_eq!(*worker.log.lock().unwrap(), vec!["RUN a"]);
    let steps = &solved.stages[0].as_ref().unwrap().steps;
    assert!(!steps[0].cached && steps[1].cached && steps[2].cached);
}

/// A cache entry whose layer was pruned is rebuilt and says why.
#[test]
fn pruned_layer_misses() {
    let h = Harness::new();
    let p = plan(vec![stage(0, &["a"])]);
    let first = h.solve(&p, &FakeWorker::default(), false, false).unwrap();
    let worker = FakeWorker::default();
    let diff_id = first.stages[0].as_ref().unwrap().steps[0]
        .layer
        .clone()
        .unwrap()
        .diff_id;
    worker.pruned.lock().unwrap().push(diff_id);
    let solved = h.solve(&p, &worker, false, false).unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 1);
    assert!(reasons_of(&solved, 0, 0)[0].contains("lost its layer"));
}

/// `--no-cache` runs everything and says so.
#[test]
fn no_cache_runs_everything() {
    let h = Harness::new();
    let p = plan(vec![stage(0, &["a", "b"])]);
    h.solve(&p, &FakeWorker::default(), false, false).unwrap();
    let worker = FakeWorker::default();
    let solved = h.solve(&p, &worker, true, false).unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 2);
    assert_eq!(reasons_of(&solved, 0, 0), vec!["--no-cache was given"]);
}

/// A step that changes nothing (`noop` here, `RUN true` in a Dockerfile) gives the next one of
/// the same text its key; under `--no-cache` both still run, as BuildKit runs two vertices.
#[test]
fn no_cache_runs_a_repeated_key_of_one_stage() {
    let h = Harness::new();
    let p = plan(vec![stage(0, &["noop", "noop", "noop"])]);
    let worker = FakeWorker::default();
    h.solve(&p, &worker, true, false).unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 3);
}

/// A dry run executes nothing, explains the first miss, and marks what follows as unknown.
#[test]
fn dry_run_explains_without_executing() {
    let h = Harness::new();
    h.solve(
        &plan(vec![stage(0, &["a", "b", "c"])]),
        &FakeWorker::default(),
        false,
        false,
    )
    .unwrap();
    let worker = FakeWorker::default();
    let solved = h
        .solve(
            &plan(vec![stage(0, &["a", "b2", "c"])]),
            &worker,
            false,
            true,
        )
        .unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 0);
    let steps = &solved.stages[0].as_ref().unwrap().steps;
    assert!(steps[0].cached);
    assert_eq!(
        reasons_of(&solved, 0, 1),
        vec!["the instruction changed: `RUN b` → `RUN b2`"]
    );
    assert_eq!(steps[2].key, None);
    assert_eq!(
        reasons_of(&solved, 0, 2),
        vec!["its parent changed (`RUN b2`, line 3)"]
    );
}

/// Independent stages run at the same time: both stage workers meet at a barrier.
#[test]
fn independent_stages_overlap() {
    let h = Harness::new();
    let mut last = stage(2, &["final"]);
    last.base = Base::Stage(0);
    last.steps[0].op = Op::Copy(CopyOp {
        add: false,
        from: FileSource::Stage(1),
        sources: vec![],
        dest: "/".into(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        excludes: vec![],
        checksum: None,
        keep_git_dir: false,
        unpack: None,
        workdir: "/".into(),
    });
    let p = plan(vec![stage(0, &["sync one"]), stage(1, &["sync two"]), last]);
    let worker = FakeWorker {
        barrier: Some(Barrier::new(2)),
        ..FakeWorker::default()
    };
    // With sequential stages the first barrier.wait() would block forever; the test harness
    // would hang rather than pass, so a passing run proves overlap.
    let solved = h.solve(&p, &worker, false, false).unwrap();
    assert_eq!(worker.executed.load(Ordering::SeqCst), 3);
    let last_step = &solved.stages[2].as_ref().unwrap().steps[0];
    let preimage = last_step.preimage.as_ref().unwrap();
    assert!(preimage.inputs.contains_key("stage:s1"));
}

/// A failing stage cancels the others and records no cache entry for the failed step.
#[test]
fn failure_cancels_other_stages() {
    let h = Harness::new();
    let mut last = stage(2, &["final"]);
    last.base = Base::Stage(1);
    let p = plan(vec![stage(0, &["boom"]), stage(1, &["wait-cancel"]), {
        let mut s = last;
        s.steps[0].op = Op::Copy(CopyOp {
            add: false,
            from: FileSource::Stage(0),
            sources: vec![],
            dest: "/".into(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: vec![],
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            workdir: "/".into(),
        });
        s
    }]);
    let worker = FakeWorker {
        fail_on: Some("RUN boom".into()),
        ..FakeWorker::default()
    };
    let err = h.solve(&p, &worker, false, false).unwrap_err();
    assert_eq!(err.to_string(), "step failed");
    // Neither the failed step nor the cancelled one recorded a cache entry.
    assert!(h.cache.entries().unwrap().is_empty());
    assert!(
        !worker
            .log
            .lock()
            .unwrap()
            .contains(&"RUN final".to_string())
    );
}

/// `COPY --link` does not depend on the layers below: it stays cached when they change.
#[test]
fn link_copy_survives_parent_changes() {
    let link_step = |stage: usize, index: usize| Step {
        id: StepId { stage, index },
        display: "COPY --link a /a".into(),
        site: Site::default(),
        op: Op::Copy(CopyOp {
            add: false,
            from: FileSource::Context,
            sources: vec![],
            dest: "/a".into(),
            chown: None,
            chmod: None,
            link: true,
            parents: false,
            excludes: vec![],
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            workdir: "/".into(),
        }),
        created_by: String::new(),
        key: KeyParts {
            canonical: "COPY --link a /a".into(),
            ..KeyParts::default()
        },
    };
    let make = |first: &str| {
        let mut s = stage(0, &[first, "placeholder", "after"]);
        s.steps[1] = link_step(0, 1);
        plan(vec![s])
    };
    let h = Harness::new();
    h.solve(&make("one"), &FakeWorker::default(), false, false)
        .unwrap();
    let worker = FakeWorker::default();
    let solved = h.solve(&make("two"), &worker, false, false).unwrap();
    let steps = &solved.stages[0].as_ref().unwrap().steps;
    assert!(!steps[0].cached && steps[1].cached && !steps[2].cached);
    assert_eq!(*worker.log.lock().unwrap(), vec!["RUN two", "RUN after"]);
}

/// A two-stage plan for `target`: stage 0 runs for `pinned` (e.g. the build platform) and
/// stage 1, for the target, copies from it.
fn cross_plan(pinned: &Platform, target: &Platform) -> Plan {
    let mut build = stage(0, &["compile"]);
    build.platform = pinned.clone();
    let mut last = stage(1, &["final"]);
    last.platform = target.clone();
    last.steps[0].op = Op::Copy(CopyOp {
        add: false,
        from: FileSource::Stage(0),
        sources: vec![],
        dest: "/".into(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        excludes: vec![],
        checksum: None,
        keep_git_dir: false,
        unpack: None,
        workdir: "/".into(),
    });
    Plan {
        stages: vec![build, last],
        target: 1,
        platform: target.clone(),
    }
}

fn platform(text: &str) -> Platform {
    text.parse().unwrap()
}

/// Solve several plans at once, as a multi-platform build does, sharing one set of flights.
fn solve_together(h: &Harness, plans: &[Plan], worker: &FakeWorker, no_cache: bool) -> Vec<Solved> {
    let flights = StepFlights::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                let flights = &flights;
                s.spawn(move || {
                    let order = stage_order(p).unwrap();
                    let opts = SolveOptions {
                        no_cache,
                        jobs: 2,
                        dry_run: false,
                        site_prefix: "Dockerfile".into(),
                        files: &h.files,
                        files_diff: &no_diff,
                        now: 1000,
                        cancel: CancelToken::new(),
                        flights: Some(flights),
                    };
                    solve(p, &order, &h.cache, worker, &Silent, &opts).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The stage's platform enters its keys, not the build's target: a pinned stage has the same
/// keys for every target, the target stages differ.
#[test]
fn stage_platform_keys() {
    let h = Harness::new();
    let (amd, arm) = (platform("linux/amd64"), platform("linux/arm64"));
    let worker = FakeWorker::default();
    let a = h
        .solve(&cross_plan(&amd, &amd), &worker, false, true)
        .unwrap();
    let b = h
        .solve(&cross_plan(&amd, &arm), &worker, false, true)
        .unwrap();
    let key = |s: &Solved, stage: usize| s.stages[stage].as_ref().unwrap().steps[0].key.clone();
    assert_eq!(key(&a, 0), key(&b, 0));
    let c = h
        .solve(&cross_plan(&arm, &arm), &worker, false, true)
        .unwrap();
    assert_ne!(key(&a, 0), key(&c, 0));
    let pre = |s: &Solved| {
        s.stages[0].as_ref().unwrap().steps[0]
            .preimage
            .clone()
            .unwrap()
    };
    assert_eq!(pre(&c).platform, "linux/arm64");
}

/// Solved concurrently, a step with one key in several plans runs once; the others take its
/// layer as a hit — also under `--no-cache`, where nothing is looked up in the cache.
#[test]
fn shared_step_runs_once_across_platforms() {
    let (amd, arm, s390) = (
        platform("linux/amd64"),
        platform("linux/arm64"),
        platform("linux/s390x"),
    );
    for no_cache in [false, true] {
        let h = Harness::new();
        let plans = [
            cross_plan(&amd, &amd),
            cross_plan(&amd, &arm),
            cross_plan(&amd, &s390),
        ];
        let worker = FakeWorker::default();
        let solved = solve_together(&h, &plans, &worker, no_cache);
        let log = worker.log.lock().unwrap().clone();
        assert_eq!(
            log.iter().filter(|s| *s == "RUN compile").count(),
            1,
            "{log:?}"
        );
        // Each target stage ran: its keys differ by platform.
        assert_eq!(log.iter().filter(|s| *s == "RUN final").count(), 3);
        let pinned: Vec<&StepRecord> = solved
            .iter()
            .map(|s| &s.stages[0].as_ref().unwrap().steps[0])
            .collect();
        assert_eq!(pinned.iter().filter(|r| !r.cached).count(), 1);
        assert!(pinned.iter().all(|r| r.layer == pinned[0].layer));
    }
}

/// Platforms share step sites: a miss is explained against an earlier build for the same
/// platform when there is one, and names the platform only when there is none.
#[test]
fn explanations_prefer_the_same_platform() {
    let h = Harness::new();
    let (amd, arm) = (platform("linux/amd64"), platform("linux/arm64"));
    let one = |p: &Platform, cmd: &str| {
        let mut s = stage(0, &[cmd]);
        s.platform = p.clone();
        Plan {
            stages: vec![s],
            target: 0,
            platform: p.clone(),
        }
    };
    h.solve(&one(&amd, "a"), &FakeWorker::default(), false, false)
        .unwrap();
    let solved = h
        .solve(&one(&arm, "a"), &FakeWorker::default(), false, false)
        .unwrap();
    assert_eq!(
        reasons_of(&solved, 0, 0),
        vec!["the platform changed linux/amd64 → linux/arm64"]
    );
    // Both platforms built: a change is explained per platform, without the platform.
    let solved = h
        .solve(&one(&amd, "b"), &FakeWorker::default(), false, false)
        .unwrap();
    assert_eq!(
        reasons_of(&solved, 0, 0),
        vec!["the instruction changed: `RUN a` → `RUN b`"]
    );
}

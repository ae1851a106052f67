//! One execution per cache key in a build. Several solves of one build (the platforms of a
//! multi-platform build) — or two stages of one solve — may reach a step with the same key at
//! the same time, e.g. a stage pinned to `$BUILDPLATFORM` that every target platform uses. The
//! first to miss runs it (the leader); the others wait for its result and use it as a cache
//! hit, so the step runs once, as BuildKit runs one vertex for identical ops. Results stay for
//! the build, so a later arrival (or one under `--no-cache`) gets the same layer.
//!
//! Keys are content hashes, so a later step of the *same* stage can have its predecessor's key
//! (`RUN true` twice: the first changed nothing). BuildKit runs those as two vertices; so does
//! rbuild: a claim by the stage (of the same solve) that ran the key runs it again rather than
//! following itself — under `--no-cache` it really runs; otherwise the cache index hit it
//! already.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::cache_key::CacheKey;
use crate::worker::Layer;

/// The keys run (or running) in this build. Share one between the solves of a build.
#[derive(Default)]
pub struct StepFlights {
    flights: Mutex<HashMap<CacheKey, Arc<Flight>>>,
    solves: AtomicUsize,
}

/// Who claims a key: a stage of one solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimant {
    /// [`StepFlights::solve_id`] of the solve.
    pub solve: usize,
    pub stage: usize,
}

pub(crate) struct Flight {
    owner: Claimant,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default, Clone)]
enum State {
    #[default]
    Running,
    Done(Option<Layer>),
    Failed,
}

/// What [`StepFlights::claim`] gave.
pub(crate) enum Claim {
    /// Nobody ran the key yet: run it, then [`Leader::finish`].
    Leader(Leader),
    /// Someone runs (or ran) it: [`Follower::wait`] for the result.
    Follower(Follower),
}

impl StepFlights {
    pub fn new() -> StepFlights {
        StepFlights::default()
    }

    /// A new identity for one solve sharing these flights.
    pub(crate) fn solve_id(&self) -> usize {
        self.solves.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn claim(&self, key: &CacheKey, by: Claimant) -> Claim {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = flights.get(key) {
            let failed = matches!(
                *flight.state.lock().unwrap_or_else(|e| e.into_inner()),
                State::Failed
            );
            // A failed run is not a result: whoever comes next runs it again (the build is
            // being cancelled anyway, unless the failure was someone else's interruption).
            // The stage that ran it reaches it again only at a later step: that one runs too.
            if !failed && flight.owner != by {
                return Claim::Follower(Follower(flight.clone()));
            }
        }
        let flight = Arc::new(Flight {
            owner: by,
            state: Mutex::default(),
            done: Condvar::new(),
        });
        flights.insert(key.clone(), flight.clone());
        Claim::Leader(Leader(Some(flight)))
    }
}

/// The one running a key. Dropped without [`Leader::finish`], it fails its followers.
pub(crate) struct Leader(Option<Arc<Flight>>);

impl Leader {
    pub(crate) fn finish(mut self, layer: Option<Layer>) {
        if let Some(flight) = self.0.take() {
            flight.settle(State::Done(layer));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(flight) = self.0.take() {
            flight.settle(State::Failed);
        }
    }
}

impl Flight {
    fn settle(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.done.notify_all();
    }
}

/// Waits for a leader's result.
pub(crate) struct Follower(Arc<Flight>);

impl Follower {
    /// The leader's layer, or `None` when its run failed.
    pub(crate) fn wait(self) -> Option<Option<Layer>> {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                State::Running => {
                    state = self.0.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                State::Done(layer) => return Some(layer.clone()),
                State::Failed => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_store::Digest;

    /// Stage `stage` of solve `solve`.
    fn by(solve: usize, stage: usize) -> Claimant {
        Claimant { solve, stage }
    }

    fn layer() -> Layer {
        Layer {
            diff_id: Digest::of(b"layer"),
            size: 5,
        }
    }

    /// Concurrent claimants of one key: one leads, the others get its layer.
    #[test]
    fn one_leader_many_followers() {
        let flights = StepFlights::new();
        let key = CacheKey("k".into());
        let Claim::Leader(leader) = flights.claim(&key, by(0, 0)) else {
            panic!("the first claim leads")
        };
        let results: Vec<Option<Option<Layer>>> = std::thread::scope(|s| {
            let waiting: Vec<_> = [by(1, 0), by(2, 0), by(0, 1)]
                .into_iter()
                .map(|who| match flights.claim(&key, who) {
                    Claim::Follower(f) => s.spawn(move || f.wait()),
                    Claim::Leader(_) => panic!("a second leader"),
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(20));
            leader.finish(Some(layer()));
            waiting.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|r| r == &Some(Some(layer()))));
        // Later arrivals get the result at once.
        let Claim::Follower(late) = flights.claim(&key, by(3, 4)) else {
            panic!("the key ran")
        };
        assert_eq!(late.wait(), Some(Some(layer())));
        // Another key has its own flight.
        assert!(matches!(
            flights.claim(&CacheKey("other".into()), by(1, 0)),
            Claim::Leader(_)
        ));
    }

    /// A leader that fails (dropped unfinished) fails its followers; the next claim leads.
    #[test]
    fn failed_leader_releases_followers() {
        let flights = StepFlights::new();
        let key = CacheKey("k".into());
        let Claim::Leader(leader) = flights.claim(&key, by(0, 0)) else {
            panic!()
        };
        let Claim::Follower(follower) = flights.claim(&key, by(1, 0)) else {
            panic!()
        };
        drop(leader);
        assert_eq!(follower.wait(), None);
        assert!(matches!(flights.claim(&key, by(1, 0)), Claim::Leader(_)));
    }

    /// The stage that ran a key reaches it again only at a later step (`RUN true` twice): it
    /// runs that step too, and from then on others follow the newer run.
    #[test]
    fn the_same_stage_runs_a_repeated_key_again() {
        let flights = StepFlights::new();
        let key = CacheKey("k".into());
        let Claim::Leader(first) = flights.claim(&key, by(0, 2)) else {
            panic!()
        };
        first.finish(Some(layer()));
        let Claim::Leader(second) = flights.claim(&key, by(0, 2)) else {
            panic!("a later step of the same stage runs")
        };
        let Claim::Follower(other) = flights.claim(&key, by(1, 2)) else {
            panic!("another solve follows")
        };
        second.finish(None);
        assert_eq!(other.wait(), Some(None));
        assert_ne!(flights.solve_id(), flights.solve_id());
    }
}

//! Build progress events. The solver emits them; the CLI renders them (tty, plain or JSON).

use std::time::Duration;

use crate::explain::MissReason;
use crate::op::{Stage, Step, StepId};
use crate::worker::Layer;

/// One thing that happened during a build.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage the target does not need.
    StageSkipped {
        stage: &'a Stage,
    },
    /// A stage starts (its base is ready).
    StageStart {
        stage: &'a Stage,
    },
    /// A metadata-only step (ENV, LABEL, ...): nothing to execute.
    StepMeta {
        stage: &'a Stage,
        step: &'a Step,
    },
    StepCached {
        stage: &'a Stage,
        step: &'a Step,
        key: &'a str,
    },
    /// The step missed the cache and starts executing (or, in a dry run, would).
    StepMiss {
        stage: &'a Stage,
        step: &'a Step,
        key: Option<&'a str>,
        reasons: &'a [MissReason],
    },
    StepLog {
        step: StepId,
        data: &'a [u8],
    },
    StepDone {
        stage: &'a Stage,
        step: &'a Step,
        layer: Option<&'a Layer>,
        elapsed: Duration,
    },
    StepFailed {
        stage: &'a Stage,
        step: &'a Step,
    },
}

/// Receives events from every stage thread.
pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
}

/// A reporter that ignores everything.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event<'_>) {}
}

//! How a build talks to whoever runs it: the solver's step events, plus the [`Notice`]s of the
//! stages around solving (lint warnings, input warnings, layer fetches, pushes, the
//! reproducibility check) and registry transfer progress. The engine prints nothing; a
//! front-end implements [`Reporter`] and decides what to show (the `rbuild` cli renders a live
//! view, plain lines or JSON).

use rbuild_solver::explain::StepExplanation;
use rbuild_solver::op::Platform;
use rbuild_solver::reporter::Event;

use crate::dockerfile::DockerfileText;

/// Something a build has to say besides step events.
#[derive(Debug)]
pub enum Notice<'a> {
    /// A diagnostic about the Dockerfile, rendered against it (it carries its source): a lint
    /// warning (`error: false`), or one of several parse errors (`error: true`) shown before
    /// the first, which the build fails with.
    Diagnostic {
        report: &'a miette::Report,
        error: bool,
    },
    /// A line about the build's inputs or its course, outside the step view: warnings (build
    /// args nothing consumed, context files, registry caches that could not be imported) and
    /// the reproducibility check's progress. A quiet front-end hides these.
    Message(&'a str),
    /// A line explaining the failure that follows (the differences `verify_reproducible`
    /// found): shown even by a quiet front-end.
    Problem(&'a str),
    /// A line in the step view while building: layers fetched from a registry cache, names
    /// pushed, caches exported.
    Line(&'a str),
    /// The cache explanations of a dry run before building (`explain`, or
    /// `fail_on_cache_miss` finding a miss).
    Explained {
        dockerfile: &'a DockerfileText,
        explanations: &'a [StepExplanation],
    },
    /// A pass of the solver starts: 1, and 2 for the second build of `verify_reproducible`
    /// (a front-end may start a fresh step view for it).
    Pass(u8),
    /// The solving is over: outputs, tags and pushes follow.
    Finishing,
}

/// Which way a registry transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// A base image pulled while planning.
    Pull,
    /// `push` or a build cache export.
    Push,
}

/// Receives everything a build reports. Every method has a silent default, so
/// `impl Reporter for MyView {}` plus the solver's [`Reporter`](rbuild_solver::reporter::Reporter)
/// (step events) is enough.
pub trait Reporter: rbuild_solver::reporter::Reporter {
    fn notice(&self, _notice: Notice<'_>) {}

    /// A step event of one platform's build in a multi-platform build (single-platform builds
    /// report [`event`](rbuild_solver::reporter::Reporter::event) alone): the platforms' steps
    /// share their ids, so a front-end tells them apart by `platform`, the build's target
    /// platform (a stage may run for another, `Stage::platform`). By default the event
    /// as it is.
    fn platform_event(&self, platform: &Platform, event: Event<'_>) {
        let _ = platform;
        self.event(event);
    }

    /// The progress sink of one registry transfer (blob bars, "Pulling from" lines).
    fn transfer(&self, _direction: Transfer) -> Box<dyn rbuild_registry::Progress + '_> {
        Box::new(rbuild_registry::NoProgress)
    }
}

/// Reports nothing.
pub struct Silent;

impl rbuild_solver::reporter::Reporter for Silent {
    fn event(&self, _: rbuild_solver::reporter::Event<'_>) {}
}

impl Reporter for Silent {}

impl dyn Reporter + '_ {
    pub(crate) fn message(&self, text: &str) {
        self.notice(Notice::Message(text));
    }

    pub(crate) fn line(&self, text: &str) {
        self.notice(Notice::Line(text));
    }
}

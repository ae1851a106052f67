//! Foreign platforms: before anything runs, every platform that a needed stage with RUN steps
//! runs for and that is not this machine's must be runnable here, natively or under a
//! registered emulator (`rbuild_executor::emulation`). A stage without RUN builds for any
//! platform (COPY and metadata need no emulator), so a cross-compiling Dockerfile whose target
//! stages only copy needs none. The first platform that cannot run fails the build with the
//! executor's error (how to register QEMU), pointing at the FROM of a stage that needs it.

use miette::{Diagnostic, SourceSpan};
use rbuild_executor::emulation::{self, EmulationError};
use rbuild_solver::op::{Op, Platform};

use crate::Session;

/// A stage with RUN steps for a platform this machine cannot run.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("stage `{stage}` has RUN steps for {platform}, which this machine cannot run")]
#[diagnostic(code(rbuild::build::platform))]
pub struct CannotRun {
    #[source]
    #[diagnostic_source]
    pub source: EmulationError,
    #[label("this stage runs RUN steps for {platform}")]
    pub span: SourceSpan,
    pub platform: Platform,
    pub stage: String,
}

/// Check every platform RUN steps of the needed stages run for, once each.
pub fn check(session: &Session) -> miette::Result<()> {
    let host = Platform::host();
    let mut checked: Vec<Platform> = Vec::new();
    for build in &session.platforms {
        let plan = &build.planned.plan;
        for &s in &build.order.order {
            let stage = &plan.stages[s];
            let runs = stage.steps.iter().any(|step| matches!(step.op, Op::Run(_)));
            if !runs || host.matches(&stage.platform) || checked.contains(&stage.platform) {
                continue;
            }
            if let Err(source) = emulation::check_run_platform(&stage.platform) {
                let span = &stage.site.span;
                return Err(session.dockerfile.report(CannotRun {
                    source,
                    span: (span.start, span.end.saturating_sub(span.start)).into(),
                    platform: stage.platform.clone(),
                    stage: stage.label(),
                }));
            }
            checked.push(stage.platform.clone());
        }
    }
    Ok(())
}

//! Entitlements, as BuildKit's: `RUN --network=host` needs `--allow network.host` and
//! `RUN --security=insecure` needs `--allow security.insecure` from whoever runs the build.
//! [`check`] looks at every RUN of the stages the build needs, cached or not, before anything
//! runs, and fails at the first flag that is not allowed, pointing at it in the Dockerfile.

use miette::{Diagnostic, SourceSpan};
use rbuild_solver::op::{Network, Op, Security, Step};

use crate::Session;

/// What the caller allowed with `--allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub network_host: bool,
    pub security_insecure: bool,
}

impl Allowed {
    /// Parse `--allow` values (repeatable, each a comma-separated list, as buildx).
    pub fn parse(values: &[String]) -> miette::Result<Allowed> {
        let mut allowed = Allowed::default();
        for item in values.iter().flat_map(|v| v.split(',')) {
            match item.trim() {
                "network.host" => allowed.network_host = true,
                "security.insecure" => allowed.security_insecure = true,
                "" => {}
                other => {
                    return Err(miette::miette!(
                        code = "rbuild::usage::allow",
                        help = "the entitlements are `network.host` and `security.insecure`",
                        "unknown entitlement `{other}` in `--allow`"
                    ));
                }
            }
        }
        Ok(allowed)
    }
}

/// A RUN flag the caller did not allow.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("entitlement {entitlement} is not allowed")]
#[diagnostic(code(rbuild::build::entitlement))]
pub struct NotAllowed {
    pub entitlement: &'static str,
    #[label("{what}")]
    pub span: SourceSpan,
    pub what: &'static str,
    #[help]
    pub help: String,
}

/// Fail at the first RUN of a needed stage that asks for an entitlement not in `allowed`.
pub fn check(prepared: &Session, allowed: Allowed) -> miette::Result<()> {
    let stages = prepared.platforms.iter().flat_map(|build| {
        let plan = &build.planned.plan;
        build.order.order.iter().map(move |&s| &plan.stages[s])
    });
    for stage in stages {
        for step in &stage.steps {
            let Op::Run(run) = &step.op else { continue };
            let wanted = [
                (
                    run.network == Network::Host && !allowed.network_host,
                    "network.host",
                    "--network",
                    "this RUN asks for the host's network",
                ),
                (
                    run.security == Security::Insecure && !allowed.security_insecure,
                    "security.insecure",
                    "--security",
                    "this RUN asks to run without the sandbox's confinement",
                ),
            ];
            for (denied, entitlement, flag, what) in wanted {
                if denied {
                    let err = NotAllowed {
                        entitlement,
                        span: flag_span(&prepared.dockerfile.text, step, flag),
                        what,
                        help: format!(
                            "if this Dockerfile may do that, pass `--allow {entitlement}` to \
                             `rbuild build`"
                        ),
                    };
                    return Err(prepared.dockerfile.report(err));
                }
            }
        }
    }
    Ok(())
}

/// The `--flag=value` word inside the step's instruction, or the whole instruction.
fn flag_span(text: &str, step: &Step, flag: &str) -> SourceSpan {
    let (start, end) = (step.site.span.start, step.site.span.end.min(text.len()));
    let whole = (start, end - start).into();
    let Some(instruction) = text.get(start..end) else {
        return whole;
    };
    let Some(at) = instruction.find(&format!("{flag}=")) else {
        return whole;
    };
    let len = instruction[at..]
        .find(char::is_whitespace)
        .unwrap_or(instruction.len() - at);
    (start + at, len).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_repeated_flags_and_comma_lists() {
        let both = Allowed::parse(&["network.host,security.insecure".into()]).unwrap();
        assert!(both.network_host && both.security_insecure);
        let one = Allowed::parse(&["security.insecure".into()]).unwrap();
        assert_eq!(
            one,
            Allowed {
                network_host: false,
                security_insecure: true
            }
        );
        let err = Allowed::parse(&["network.host".into(), "device".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown entitlement `device`"));
    }
}

//! `RedundantTargetPlatform`: `FROM --platform=$TARGETPLATFORM` (or `${TARGETPLATFORM}`)
//! only restates the default.

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        let Some(p) = &st.from.platform else {
            continue;
        };
        let raw = p.raw.trim();
        if raw == "$TARGETPLATFORM" || raw == "${TARGETPLATFORM}" {
            out.push(lint(
                Rule::RedundantTargetPlatform,
                p.span,
                format!(
                    "Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"
                ),
            ));
        }
    }
}

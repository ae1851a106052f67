//! `FromPlatformFlagConstDisallowed`: `FROM --platform` with a constant (no `$`), unless the
//! stage's name contains the platform's last part (`AS build-arm64` for `linux/arm64`).

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        let Some(p) = &st.from.platform else {
            continue;
        };
        let raw = p.raw.trim();
        if raw.contains('$') {
            continue;
        }
        let lower_name = st.name_lowercase();
        let stage = lower_name.as_deref().unwrap_or_default();
        let arch = raw.rsplit('/').next().unwrap_or(raw);
        if stage.is_empty() || !stage.contains(arch) {
            out.push(lint(
                Rule::FromPlatformFlagConstDisallowed,
                p.span,
                format!("FROM --platform flag should not use constant value \"{raw}\""),
            ));
        }
    }
}

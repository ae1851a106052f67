//! `InvalidDefaultArgInFrom`: a `FROM` image that, expanded with the global `ARG` defaults,
//! is empty or ends in `:`/`@` or starts with `:`.

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};
use crate::shell;

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    // The last definition of a name wins.
    let env = |n: &str| {
        cx.global_args
            .iter()
            .rev()
            .find(|a| a.name.value == n)
            .and_then(|a| a.default.as_ref().map(|d| d.value.clone()))
    };
    for st in &cx.stages.stages {
        let image = &st.from.image;
        if !image.value.contains('$') {
            continue;
        }
        if let Ok(v) = shell::expand_value(&image.value, &env, cx.escape)
            && (v.is_empty() || v.ends_with(':') || v.ends_with('@') || v.starts_with(':'))
        {
            out.push(lint(
                Rule::InvalidDefaultArgInFrom,
                image.span,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    image.value
                ),
            ));
        }
    }
}

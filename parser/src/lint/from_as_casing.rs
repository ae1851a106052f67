//! `FromAsCasing`: `AS` is upper case when `FROM` is, and lower case when `from` is.

use super::{Context, Rule, is_lower, is_upper};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        let Some(kw) = &st.from.as_keyword else {
            continue;
        };
        let from_kw = &st.from.meta.keyword.value;
        if (is_upper(from_kw) && !is_upper(&kw.value))
            || (is_lower(from_kw) && !is_lower(&kw.value))
        {
            out.push(lint(
                Rule::FromAsCasing,
                kw.span,
                format!(
                    "'{}' and '{}' keywords' casing do not match",
                    kw.value, from_kw
                ),
            ));
        }
    }
}

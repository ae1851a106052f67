//! `UndefinedArgInFrom`: variables in a `FROM` image (with a `did you mean` among the global
//! ARGs) or `--platform` that are neither global `ARG`s nor predefined (platform and proxy
//! args).

use foldhash::HashSet;

use super::vars::{PLATFORM_ARGS, PROXY_ARGS, undefined_in};
use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint, suggest};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    let global_names: HashSet<&str> = cx
        .global_args
        .iter()
        .map(|a| a.name.value.as_str())
        .collect();
    let defined =
        |n: &str| global_names.contains(n) || PLATFORM_ARGS.contains(&n) || PROXY_ARGS.contains(&n);
    for st in &cx.stages.stages {
        let f = st.from;
        for name in undefined_in(&f.image.value, cx.escape, &defined) {
            let known: Vec<&str> = cx
                .global_args
                .iter()
                .map(|a| a.name.value.as_str())
                .collect();
            let hint = suggest(&name, &known).map(String::from).unwrap_or_default();
            out.push(lint(
                Rule::UndefinedArgInFrom,
                f.image.span,
                if hint.is_empty() {
                    format!("FROM argument '{name}' is not declared")
                } else {
                    format!("FROM argument '{name}' is not declared (did you mean {hint}?)")
                },
            ));
        }
        if let Some(p) = &f.platform {
            for name in undefined_in(p.raw.trim(), cx.escape, &defined) {
                out.push(lint(
                    Rule::UndefinedArgInFrom,
                    p.span,
                    format!("FROM argument '{name}' is not declared"),
                ));
            }
        }
    }
}

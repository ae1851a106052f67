//! `SecretsUsedInArgOrEnv`: `ARG` (global or in a stage) and `ENV` names that look like
//! secrets (a `_`/`-`/`.`-separated part such as `password` or `token`, unless a part is
//! `public`).

use super::{Context, Rule};
use crate::ast::{Arg, Instruction};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for a in &cx.stages.global_args {
        in_arg(a, out);
    }
    for ins in cx.stage_instructions() {
        match ins {
            Instruction::Arg(a) => in_arg(a, out),
            Instruction::Env(e) => {
                for kv in e.vars.iter().filter(|kv| is_secret_name(&kv.key.value)) {
                    out.push(lint(
                        Rule::SecretsUsedInArgOrEnv,
                        kv.key.span,
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data (ENV \"{}\")",
                            kv.key.value
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
}

fn in_arg(a: &Arg, out: &mut Vec<ParseDiagnostic>) {
    for d in a.args.iter().filter(|d| is_secret_name(&d.name.value)) {
        out.push(lint(
            Rule::SecretsUsedInArgOrEnv,
            d.name.span,
            format!(
                "Do not use ARG or ENV instructions for sensitive data (ARG \"{}\")",
                d.name.value
            ),
        ));
    }
}

fn is_secret_name(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let mut parts = name.split(['_', '-', '.']);
    if parts.clone().any(|p| p.eq_ignore_ascii_case("public")) {
        return false;
    }
    parts.any(|p| SECRET.iter().any(|s| p.eq_ignore_ascii_case(s)))
}

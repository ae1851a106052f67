//! `JSONArgsRecommended`: a non-empty shell-form `CMD` or `ENTRYPOINT`, unless an earlier
//! `SHELL` in the same stage chose the shell on purpose.

use super::{Context, Rule};
use crate::ast::{CommandForm, Instruction};
use crate::diagnostics::{ParseDiagnostic, lint, lint_help};
use crate::span::Span;

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        let mut has_shell = false;
        for ins in st.instructions {
            match ins {
                Instruction::Shell(_) => has_shell = true,
                Instruction::Cmd(c) if !has_shell => json_args("CMD", &c.command, c.meta.span, out),
                Instruction::Entrypoint(e) if !has_shell => {
                    json_args("ENTRYPOINT", &e.command, e.meta.span, out)
                }
                _ => {}
            }
        }
    }
}

fn json_args(name: &str, form: &CommandForm, span: Span, out: &mut Vec<ParseDiagnostic>) {
    if let CommandForm::Shell(w) = form
        && !w.value.is_empty()
    {
        out.push(lint_help(
            lint(
                Rule::JsonArgsRecommended,
                span,
                format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
            ),
            format!("write `{name} [\"executable\", \"arg\"]`"),
        ));
    }
}

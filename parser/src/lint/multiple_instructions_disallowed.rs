//! `MultipleInstructionsDisallowed`: every `CMD`, `ENTRYPOINT` and `HEALTHCHECK` of a stage
//! but the last of its kind (only the last one takes effect).

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};
use crate::span::Span;

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    let mut last_of: Vec<(&str, Span)> = Vec::new();
    for st in &cx.stages.stages {
        last_of.clear();
        for ins in st.instructions {
            match ins {
                Instruction::Cmd(c) => last_of.push(("CMD", c.meta.span)),
                Instruction::Entrypoint(e) => last_of.push(("ENTRYPOINT", e.meta.span)),
                Instruction::Healthcheck(h) => last_of.push(("HEALTHCHECK", h.meta.span)),
                _ => {}
            }
        }
        for kind in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let spans: Vec<Span> = last_of
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| *s)
                .collect();
            if spans.len() > 1 {
                for s in &spans[..spans.len() - 1] {
                    out.push(lint(
                        Rule::MultipleInstructionsDisallowed,
                        *s,
                        format!(
                            "Multiple {kind} instructions should not be used in the same stage because only the last one will be used"
                        ),
                    ));
                }
            }
        }
    }
}

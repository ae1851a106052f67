//! `ExposeProtoCasing`: the protocol of an `EXPOSE` port (`80/TCP`) is lowercase. Ports with
//! variables are not checked.

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for ins in cx.stage_instructions() {
        let Instruction::Expose(e) = ins else {
            continue;
        };
        for p in &e.ports {
            if p.value.contains('$') {
                continue;
            }
            if let Some((_, proto)) = p.value.split_once('/')
                && proto != proto.to_ascii_lowercase()
            {
                out.push(lint(
                    Rule::ExposeProtoCasing,
                    p.span,
                    format!(
                        "Defined protocol '{}' in EXPOSE instruction should be lowercase",
                        p.value
                    ),
                ));
            }
        }
    }
}

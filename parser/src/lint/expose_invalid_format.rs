//! `ExposeInvalidFormat`: an `EXPOSE` port with an IP address or host-port mapping (a `:`).
//! Ports with variables are not checked.

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for ins in cx.stage_instructions() {
        let Instruction::Expose(e) = ins else {
            continue;
        };
        for p in &e.ports {
            if !p.value.contains('$') && p.value.contains(':') {
                out.push(lint(
                    Rule::ExposeInvalidFormat,
                    p.span,
                    format!(
                        "EXPOSE instruction should not define an IP address or host-port mapping, found '{}'",
                        p.value
                    ),
                ));
            }
        }
    }
}

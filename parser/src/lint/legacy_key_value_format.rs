//! `LegacyKeyValueFormat`: `ENV` and `LABEL` written `key value` rather than `key=value`
//! (one warning per instruction).

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for ins in cx.stage_instructions() {
        let (legacy, span, name) = match ins {
            Instruction::Env(e) => (e.vars.iter().any(|kv| kv.legacy), e.meta.span, "ENV"),
            Instruction::Label(l) => (l.labels.iter().any(|kv| kv.legacy), l.meta.span, "LABEL"),
            _ => continue,
        };
        if legacy {
            out.push(lint(
                Rule::LegacyKeyValueFormat,
                span,
                format!(
                    "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
                ),
            ));
        }
    }
}

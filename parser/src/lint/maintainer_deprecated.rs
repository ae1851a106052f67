//! `MaintainerDeprecated`: every `MAINTAINER` (a label says the same).

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for ins in cx.stage_instructions() {
        if let Instruction::Maintainer(m) = ins {
            out.push(lint(
                Rule::MaintainerDeprecated,
                m.meta.span,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ));
        }
    }
}

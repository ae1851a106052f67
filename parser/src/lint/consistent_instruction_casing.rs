//! `ConsistentInstructionCasing`: every keyword with the casing of the majority (uppercase
//! wins a tie).

use super::{Context, Rule, is_lower, is_upper};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    let keywords = || cx.df.instructions.iter().map(|i| &i.meta().keyword);
    let (mut upper, mut lower) = (0, 0);
    for k in keywords() {
        upper += usize::from(is_upper(&k.value));
        lower += usize::from(is_lower(&k.value));
    }
    let majority_upper = upper >= lower;
    for k in keywords() {
        let ok = if majority_upper {
            is_upper(&k.value)
        } else {
            is_lower(&k.value)
        };
        if !ok {
            out.push(lint(
                Rule::ConsistentInstructionCasing,
                k.span,
                format!(
                    "Command '{}' should match the case of the command majority ({})",
                    k.value,
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            ));
        }
    }
}

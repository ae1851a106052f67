//! `DuplicateStageName`: a stage named (ignoring ASCII case) like an earlier one.

// Short names, hashed often: foldhash (randomly seeded, like std's) is several times cheaper
// than SipHash here; no output depends on iteration order.
use foldhash::HashSet;

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    let mut seen = HashSet::default();
    for st in &cx.stages.stages {
        if let (Some(name), Some(lower)) = (&st.from.stage_name, st.name_lowercase()) {
            if seen.contains(&lower) {
                out.push(lint(
                    Rule::DuplicateStageName,
                    name.span,
                    format!("Duplicate stage name \"{lower}\", stage names should be unique"),
                ));
            }
            seen.insert(lower);
        }
    }
}

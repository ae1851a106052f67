//! `UndefinedVar`: variables an instruction the builder expands uses (ADD COPY ENV EXPOSE
//! LABEL STOPSIGNAL USER VOLUME WORKDIR, ARG defaults) that are neither defined earlier in the
//! stage (`ARG`, `ENV`), inherited from the stage it is built `FROM`, nor assumed
//! ([`BASE_ENV`], [`PROXY_ARGS`]). A `did you mean` names the closest defined variable.

use std::borrow::Cow;

// Sets of short names, hashed often: foldhash (randomly seeded, like std's) is several times
// cheaper than SipHash here; no output depends on iteration order.
use foldhash::{HashMap, HashSet};

use super::vars::{BASE_ENV, PROXY_ARGS, undefined_in};
use super::{Context, Rule};
use crate::ast::{Instruction, ascii_lowercase};
use crate::diagnostics::{ParseDiagnostic, lint, suggest};
use crate::span::Word;

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    let escape = cx.escape;
    // The variables each named stage ends with (the first stage of a name wins).
    let mut stage_env: HashMap<Cow<'_, str>, HashSet<&str>> = HashMap::default();
    for st in &cx.stages.stages {
        // Variables known in this stage: inherited from a parent stage, or assumed base env.
        let base = ascii_lowercase(&st.from.image.value);
        let mut defined: HashSet<&str> = stage_env.get(base.as_ref()).cloned().unwrap_or_default();
        for ins in st.instructions {
            match ins {
                Instruction::Arg(a) => {
                    for d in &a.args {
                        if let Some(def) = &d.default {
                            check_words([def], &defined, escape, out);
                        }
                        defined.insert(d.name.value.as_str());
                    }
                }
                Instruction::Env(e) => {
                    check_words(e.vars.iter().map(|kv| &kv.value), &defined, escape, out);
                    for kv in &e.vars {
                        defined.insert(kv.key.value.as_str());
                    }
                }
                Instruction::Label(l) => {
                    let words = l.labels.iter().flat_map(|kv| [&kv.key, &kv.value]);
                    check_words(words, &defined, escape, out);
                }
                Instruction::Workdir(w) => check_words([&w.path], &defined, escape, out),
                Instruction::Expose(e) => check_words(&e.ports, &defined, escape, out),
                Instruction::Copy(c) => {
                    let words = c.sources.iter().chain([&c.dest]);
                    check_words(words, &defined, escape, out);
                }
                Instruction::Add(a) => {
                    let words = a.sources.iter().chain([&a.dest]);
                    check_words(words, &defined, escape, out);
                }
                Instruction::User(u) => check_words([&u.user], &defined, escape, out),
                Instruction::Volume(v) => check_words(&v.paths, &defined, escape, out),
                Instruction::Stopsignal(s) => check_words([&s.signal], &defined, escape, out),
                _ => {}
            }
        }
        if let Some(name) = st.name_lowercase() {
            stage_env.entry(name).or_insert(defined);
        }
    }
}

/// The variables `words` use that are neither in `defined` nor assumed.
fn check_words<'w>(
    words: impl IntoIterator<Item = &'w Word>,
    defined: &HashSet<&str>,
    escape: char,
    out: &mut Vec<ParseDiagnostic>,
) {
    let is_def = |n: &str| defined.contains(n) || BASE_ENV.contains(&n) || PROXY_ARGS.contains(&n);
    for w in words {
        for name in undefined_in(&w.value, escape, &is_def) {
            if name.chars().next().is_some_and(|c| c.is_ascii_digit())
                || name.len() == 1 && !name.chars().all(char::is_alphanumeric)
            {
                continue;
            }
            // Sorted, so the suggestion does not depend on hash order.
            let mut known: Vec<&str> = defined.iter().copied().collect();
            known.sort_unstable();
            let hint = suggest(&name, &known);
            let msg = match hint {
                Some(h) => format!("Usage of undefined variable '${name}' (did you mean ${h}?)"),
                None => format!("Usage of undefined variable '${name}'"),
            };
            out.push(lint(Rule::UndefinedVar, w.span, msg));
        }
    }
}

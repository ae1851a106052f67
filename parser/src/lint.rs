//! Build checks in the spirit of BuildKit's linter (same rule names and messages): casing,
//! stage names, JSON args, deprecated MAINTAINER, undefined variables, legacy `ENV k v`, and
//! more. Runs on the parsed tree without the base image, so variables a base image may set are
//! only assumed for a few universal names (see [`BASE_ENV`]).

use std::collections::{BTreeSet, HashSet};

use crate::ast::*;
use crate::diagnostics::{self, ParseDiagnostic, lint, lint_help, suggest};
use crate::parser::Extras;
use crate::shell;
use crate::span::{Span, Word};

/// Environment variables assumed to come from any base image.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "HOSTNAME", "TERM", "PWD", "SHELL", "USER", "LANG", "LC_ALL",
];

/// Build args every stage may use without declaring them.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Platform args defined in the global scope automatically.
const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Every rule this linter knows.
pub const RULES: &[&str] = &[
    "StageNameCasing",
    "FromAsCasing",
    "NoEmptyContinuation",
    "ConsistentInstructionCasing",
    "DuplicateStageName",
    "ReservedStageName",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "UndefinedArgInFrom",
    "WorkdirRelativePath",
    "UndefinedVar",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "RedundantTargetPlatform",
    "SecretsUsedInArgOrEnv",
    "InvalidDefaultArgInFrom",
    "FromPlatformFlagConstDisallowed",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
    "ContinuationAtEof",
    "UnknownStageReference",
];

fn is_upper(s: &str) -> bool {
    !s.bytes().any(|b| b.is_ascii_lowercase())
        && (s.is_ascii() || s.chars().all(|c| !c.is_lowercase()))
}
fn is_lower(s: &str) -> bool {
    !s.bytes().any(|b| b.is_ascii_uppercase())
        && (s.is_ascii() || s.chars().all(|c| !c.is_uppercase()))
}

/// Names referenced by `word` that `defined` does not contain.
fn undefined_in(word: &str, escape: char, defined: &dyn Fn(&str) -> bool) -> Vec<String> {
    if !word.contains('$') {
        return Vec::new();
    }
    let env = |name: &str| defined(name).then(String::new);
    match shell::expand_word(word, &env, escape) {
        Ok(r) => r.unset.into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

fn is_secret_name(name: &str) -> bool {
    let parts: Vec<String> = name
        .split(['_', '-', '.'])
        .map(|p| p.to_ascii_lowercase())
        .collect();
    if parts.iter().any(|p| p == "public") {
        return false;
    }
    parts.iter().any(|p| {
        matches!(
            p.as_str(),
            "apikey"
                | "auth"
                | "credential"
                | "credentials"
                | "key"
                | "password"
                | "pword"
                | "passwd"
                | "secret"
                | "token"
        )
    })
}

/// Run every rule; drop the ones `# check=skip=` switches off.
pub(crate) fn run(df: &Dockerfile, extras: &Extras) -> Vec<ParseDiagnostic> {
    let mut out = Vec::new();
    let escape = df.directives.escape;

    for span in &extras.empty_continuations {
        out.push(lint(
            "NoEmptyContinuation",
            *span,
            "Empty continuation line".into(),
        ));
    }
    if let Some(span) = extras.eof_continuation {
        out.push(lint_help(
            lint(
                "ContinuationAtEof",
                span,
                "the last instruction ends with a line continuation at the end of the file".into(),
            ),
            "remove the trailing escape character",
        ));
    }

    // ConsistentInstructionCasing: compare with the majority.
    let keywords: Vec<&Word> = df.instructions.iter().map(|i| &i.meta().keyword).collect();
    let upper = keywords.iter().filter(|k| is_upper(&k.value)).count();
    let lower = keywords.iter().filter(|k| is_lower(&k.value)).count();
    let majority_upper = upper >= lower;
    for k in &keywords {
        let ok = if majority_upper {
            is_upper(&k.value)
        } else {
            is_lower(&k.value)
        };
        if !ok {
            out.push(lint(
                "ConsistentInstructionCasing",
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

    let stages = df.stages();
    let global_args: Vec<&ArgDef> = stages
        .global_args
        .iter()
        .flat_map(|a| a.args.iter())
        .collect();
    let global_names: HashSet<&str> = global_args.iter().map(|a| a.name.value.as_str()).collect();
    let global_defined =
        |n: &str| global_names.contains(n) || PLATFORM_ARGS.contains(&n) || PROXY_ARGS.contains(&n);

    for a in &stages.global_args {
        secrets_in_arg(a, &mut out);
    }

    let mut seen_names: HashSet<String> = HashSet::new();
    let mut stage_env: Vec<(String, HashSet<&str>)> = Vec::new();
    for st in &stages.stages {
        let f = st.from;
        // FROM checks.
        if let Some(name) = &f.stage_name {
            let lower = name.value.to_ascii_lowercase();
            if name.value != lower {
                out.push(lint(
                    "StageNameCasing",
                    name.span,
                    format!("Stage name '{}' should be lowercase", name.value),
                ));
            }
            if seen_names.contains(&lower) {
                out.push(lint(
                    "DuplicateStageName",
                    name.span,
                    format!("Duplicate stage name \"{lower}\", stage names should be unique"),
                ));
            }
            if lower == "scratch" || lower == "context" {
                out.push(lint(
                    "ReservedStageName",
                    name.span,
                    format!(
                        "Stage name should not use the same name as reserved stage \"{lower}\""
                    ),
                ));
            }
            seen_names.insert(lower);
        }
        if let Some(kw) = &f.as_keyword {
            let from_kw = &f.meta.keyword.value;
            if (is_upper(from_kw) && !is_upper(&kw.value))
                || (is_lower(from_kw) && !is_lower(&kw.value))
            {
                out.push(lint(
                    "FromAsCasing",
                    kw.span,
                    format!(
                        "'{}' and '{}' keywords' casing do not match",
                        kw.value, from_kw
                    ),
                ));
            }
        }
        for name in undefined_in(&f.image.value, escape, &global_defined) {
            let known: Vec<&str> = global_args.iter().map(|a| a.name.value.as_str()).collect();
            let hint = suggest(&name, &known).map(String::from).unwrap_or_default();
            out.push(lint(
                "UndefinedArgInFrom",
                f.image.span,
                if hint.is_empty() {
                    format!("FROM argument '{name}' is not declared")
                } else {
                    format!("FROM argument '{name}' is not declared (did you mean {hint}?)")
                },
            ));
        }
        if f.image.value.contains('$') {
            let env = |n: &str| {
                global_args
                    .iter()
                    .rev()
                    .find(|a| a.name.value == n)
                    .and_then(|a| a.default.as_ref().map(|d| d.value.clone()))
            };
            if let Ok(r) = shell::expand_word(&f.image.value, &env, escape) {
                let v = r.value;
                if v.is_empty() || v.ends_with(':') || v.ends_with('@') || v.starts_with(':') {
                    out.push(lint(
                        "InvalidDefaultArgInFrom",
                        f.image.span,
                        format!(
                            "Default value for ARG {} results in empty or invalid base image name",
                            f.image.value
                        ),
                    ));
                }
            }
        }
        if let Some(p) = &f.platform {
            let raw = p.raw.trim();
            if raw == "$TARGETPLATFORM" || raw == "${TARGETPLATFORM}" {
                out.push(lint(
                    "RedundantTargetPlatform",
                    p.span,
                    format!(
                        "Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"
                    ),
                ));
            } else if !raw.contains('$') {
                let stage = st.name().unwrap_or_default();
                let arch = raw.rsplit('/').next().unwrap_or(raw);
                if stage.is_empty() || !stage.contains(arch) {
                    out.push(lint(
                        "FromPlatformFlagConstDisallowed",
                        p.span,
                        format!("FROM --platform flag should not use constant value \"{raw}\""),
                    ));
                }
            }
            for name in undefined_in(raw, escape, &global_defined) {
                out.push(lint(
                    "UndefinedArgInFrom",
                    p.span,
                    format!("FROM argument '{name}' is not declared"),
                ));
            }
        }

        // Variables known in this stage: inherited from a parent stage, or assumed base env.
        let base = f.image.value.to_ascii_lowercase();
        let mut defined: HashSet<&str> = stage_env
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, e)| e.clone())
            .unwrap_or_default();

        let mut absolute_workdir = false;
        let mut has_shell = false;
        let mut last_of: Vec<(&'static str, Span)> = Vec::new();
        let check_words = |words: &[&Word],
                           defined: &HashSet<&str>,
                           out: &mut Vec<ParseDiagnostic>| {
            let is_def =
                |n: &str| defined.contains(n) || BASE_ENV.contains(&n) || PROXY_ARGS.contains(&n);
            for w in words {
                for name in undefined_in(&w.value, escape, &is_def) {
                    if name.chars().next().is_some_and(|c| c.is_ascii_digit())
                        || name.len() == 1 && !name.chars().all(char::is_alphanumeric)
                    {
                        continue;
                    }
                    let known: Vec<&str> = defined.iter().copied().collect();
                    let hint = suggest(&name, &known);
                    let msg = match hint {
                        Some(h) => {
                            format!("Usage of undefined variable '${name}' (did you mean ${h}?)")
                        }
                        None => format!("Usage of undefined variable '${name}'"),
                    };
                    out.push(lint("UndefinedVar", w.span, msg));
                }
            }
        };

        for ins in st.instructions {
            match ins {
                Instruction::Arg(a) => {
                    secrets_in_arg(a, &mut out);
                    for d in &a.args {
                        if let Some(def) = &d.default {
                            check_words(&[def], &defined, &mut out);
                        }
                        defined.insert(d.name.value.as_str());
                    }
                }
                Instruction::Env(e) => {
                    if e.vars.iter().any(|kv| kv.legacy) {
                        out.push(lint(
                            "LegacyKeyValueFormat",
                            e.meta.span,
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format".into(),
                        ));
                    }
                    let words: Vec<&Word> = e.vars.iter().map(|kv| &kv.value).collect();
                    check_words(&words, &defined, &mut out);
                    for kv in &e.vars {
                        if is_secret_name(&kv.key.value) {
                            out.push(lint(
                                "SecretsUsedInArgOrEnv",
                                kv.key.span,
                                format!(
                                    "Do not use ARG or ENV instructions for sensitive data (ENV \"{}\")",
                                    kv.key.value
                                ),
                            ));
                        }
                        defined.insert(kv.key.value.as_str());
                    }
                }
                Instruction::Label(l) => {
                    if l.labels.iter().any(|kv| kv.legacy) {
                        out.push(lint(
                            "LegacyKeyValueFormat",
                            l.meta.span,
                            "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format".into(),
                        ));
                    }
                    let words: Vec<&Word> = l
                        .labels
                        .iter()
                        .flat_map(|kv| [&kv.key, &kv.value])
                        .collect();
                    check_words(&words, &defined, &mut out);
                }
                Instruction::Maintainer(m) => out.push(lint(
                    "MaintainerDeprecated",
                    m.meta.span,
                    "Maintainer instruction is deprecated in favor of using label".into(),
                )),
                Instruction::Cmd(c) => {
                    json_args("CMD", &c.command, c.meta.span, has_shell, &mut out);
                    last_of.push(("CMD", c.meta.span));
                }
                Instruction::Entrypoint(e) => {
                    json_args("ENTRYPOINT", &e.command, e.meta.span, has_shell, &mut out);
                    last_of.push(("ENTRYPOINT", e.meta.span));
                }
                Instruction::Healthcheck(h) => last_of.push(("HEALTHCHECK", h.meta.span)),
                Instruction::Shell(_) => has_shell = true,
                Instruction::Workdir(w) => {
                    check_words(&[&w.path], &defined, &mut out);
                    let p = &w.path.value;
                    if p.starts_with('/') || p.starts_with('$') {
                        absolute_workdir = true;
                    } else if !absolute_workdir {
                        out.push(lint(
                            "WorkdirRelativePath",
                            w.path.span,
                            format!(
                                "Relative workdir \"{p}\" can have unexpected results if the base image changes"
                            ),
                        ));
                    }
                }
                Instruction::Expose(e) => {
                    check_words(&e.ports.iter().collect::<Vec<_>>(), &defined, &mut out);
                    for p in &e.ports {
                        if p.value.contains('$') {
                            continue;
                        }
                        if p.value.contains(':') {
                            out.push(lint(
                                "ExposeInvalidFormat",
                                p.span,
                                format!(
                                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{}'",
                                    p.value
                                ),
                            ));
                        }
                        if let Some((_, proto)) = p.value.split_once('/')
                            && proto != proto.to_ascii_lowercase()
                        {
                            out.push(lint(
                                "ExposeProtoCasing",
                                p.span,
                                format!("Defined protocol '{}' in EXPOSE instruction should be lowercase", p.value),
                            ));
                        }
                    }
                }
                Instruction::Copy(c) => {
                    let mut words: Vec<&Word> = c.sources.iter().collect();
                    words.push(&c.dest);
                    check_words(&words, &defined, &mut out);
                }
                Instruction::Add(a) => {
                    let mut words: Vec<&Word> = a.sources.iter().collect();
                    words.push(&a.dest);
                    check_words(&words, &defined, &mut out);
                }
                Instruction::User(u) => check_words(&[&u.user], &defined, &mut out),
                Instruction::Volume(v) => {
                    check_words(&v.paths.iter().collect::<Vec<_>>(), &defined, &mut out)
                }
                Instruction::Stopsignal(s) => check_words(&[&s.signal], &defined, &mut out),
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
                        "MultipleInstructionsDisallowed",
                        *s,
                        format!(
                            "Multiple {kind} instructions should not be used in the same stage because only the last one will be used"
                        ),
                    ));
                }
            }
        }
        if let Some(name) = st.name() {
            stage_env.push((name, defined));
        }
    }

    let check = &df.directives.check;
    out.retain(|d| d.rule.is_none_or(|r| !check.skips(r)));
    // Report unknown rule names in `check=skip=` once.
    let known: BTreeSet<&str> = RULES.iter().copied().collect();
    for s in &check.skip {
        if !s.eq_ignore_ascii_case("all") && !known.iter().any(|k| k.eq_ignore_ascii_case(s)) {
            let help = suggest(s, RULES).map(|h| format!("did you mean {h}?"));
            let mut d = diagnostics::invalid_check_directive(
                check.span.unwrap_or_default(),
                &format!("unknown rule `{s}` in `skip`"),
            );
            d.severity = diagnostics::Severity::Warning;
            d.help = help.or(d.help);
            out.push(d);
        }
    }
    out
}

fn json_args(
    name: &str,
    form: &CommandForm,
    span: Span,
    has_shell: bool,
    out: &mut Vec<ParseDiagnostic>,
) {
    if let CommandForm::Shell(w) = form
        && !has_shell
        && !w.value.is_empty()
    {
        out.push(lint_help(
            lint(
                "JSONArgsRecommended",
                span,
                format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
            ),
            format!("write `{name} [\"executable\", \"arg\"]`"),
        ));
    }
}

fn secrets_in_arg(a: &Arg, out: &mut Vec<ParseDiagnostic>) {
    for d in &a.args {
        if is_secret_name(&d.name.value) {
            out.push(lint(
                "SecretsUsedInArgOrEnv",
                d.name.span,
                format!(
                    "Do not use ARG or ENV instructions for sensitive data (ARG \"{}\")",
                    d.name.value
                ),
            ));
        }
    }
}

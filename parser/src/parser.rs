//! The driver: read directives, walk physical lines into logical lines (continuations,
//! comments, blank lines), read heredoc bodies, build nodes and typed instructions, check
//! stage references, collect every diagnostic. Never fails, never panics; linear in the input.
//!
//! Besides what each instruction checks, it refuses instructions before the first `FROM`, and
//! stage references (`COPY --from`, `RUN --mount from=`, `FROM`) that point forward, at the
//! stage itself, or at a missing index.

use crate::ast::*;
use crate::diagnostics::{self, ParseDiagnostic};
use crate::heredoc;
use crate::instructions;
use crate::lines::{Cursor, Logical, trim_continuation};
use crate::node;
use crate::span::Span;

/// Facts the linter needs that the tree does not keep.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Empty lines inside continued instructions.
    pub empty_continuations: Vec<Span>,
    /// The last instruction ended with a continuation at end of file.
    pub eof_continuation: Option<Span>,
}

/// The result of the syntactic pass.
pub(crate) struct Output {
    pub dockerfile: Dockerfile,
    pub diagnostics: Vec<ParseDiagnostic>,
    pub extras: Extras,
}

/// ASCII `\s` as Go's RE2 defines it.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// `# key = value` (the directive regex), returning key, value and the value's offset.
fn directive(line: &str) -> Option<(&str, &str, usize)> {
    let rest = line.strip_prefix('#')?;
    let after = rest.trim_start_matches(is_re_space);
    let key_len = after
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(after.len());
    if key_len == 0 {
        return None;
    }
    let key = &after[..key_len];
    let rest = after[key_len..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest.trim_start_matches(is_re_space);
    let value_off = line.len() - value.len();
    let value = value.trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((key, value, value_off))
}

struct DirectiveState {
    done: bool,
    seen: Vec<String>,
}

fn parse_check(value: &str, span: Span, diags: &mut Vec<ParseDiagnostic>) -> CheckSettings {
    let mut settings = CheckSettings {
        span: Some(span),
        ..CheckSettings::default()
    };
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("skip") => {
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    settings.add_skip(name);
                }
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("error") => {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => settings.error = true,
                    "false" | "0" => settings.error = false,
                    other => diags.push(diagnostics::invalid_check_directive(
                        span,
                        &format!("`error` must be true or false, not `{other}`"),
                    )),
                }
            }
            _ => diags.push(diagnostics::invalid_check_directive(
                span,
                &format!("unknown option `{part}`"),
            )),
        }
    }
    settings
}

pub(crate) fn run(src: &str) -> Output {
    let bom = if src.starts_with('\u{feff}') { 3 } else { 0 };
    let mut cur = Cursor::new(src, bom);
    let mut diags = Vec::new();
    let mut extras = Extras::default();
    let mut directives = Directives {
        escape: '\\',
        ..Directives::default()
    };
    let mut dstate = DirectiveState {
        done: false,
        seen: Vec::new(),
    };
    let mut instructions = Vec::with_capacity(src.len() / 48);
    let mut rejected = Vec::new();
    let mut saw_comment = false;
    let mut saw_instruction_line = false;

    while let Some(pl) = cur.next_line() {
        let raw = &src[pl.start..pl.end];
        let lt = raw.trim_start();
        let lt_off = pl.start + (raw.len() - lt.len());

        if !dstate.done {
            match directive(lt) {
                Some((key, value, voff)) => {
                    let key = key.to_ascii_lowercase();
                    let vspan = Span::new(lt_off + voff, lt_off + voff + value.len());
                    match key.as_str() {
                        "escape" | "syntax" | "check" => {
                            if dstate.seen.contains(&key) {
                                diags.push(syn(diagnostics::duplicate_directive(
                                    Span::new(lt_off, pl.end),
                                    &key,
                                )));
                            } else {
                                dstate.seen.push(key.clone());
                                match key.as_str() {
                                    "escape" => match value {
                                        "\\" => directives.escape = '\\',
                                        "`" => directives.escape = '`',
                                        _ => diags
                                            .push(syn(diagnostics::invalid_escape(vspan, value))),
                                    },
                                    "syntax" => {
                                        directives.syntax = Some(crate::Word::new(value, vspan))
                                    }
                                    _ => directives.check = parse_check(value, vspan, &mut diags),
                                }
                            }
                            continue;
                        }
                        _ => dstate.done = true,
                    }
                }
                None => dstate.done = true,
            }
        } else if let Some((key, _, _)) = directive(lt)
            && key.eq_ignore_ascii_case("escape")
            && !saw_instruction_line
        {
            // An escape directive after a comment or blank line is silently a comment in
            // BuildKit, which changes how every later line is read: refuse it.
            diags.push(diagnostics::misplaced_escape(Span::new(lt_off, pl.end)));
        }

        if lt.starts_with('#') {
            saw_comment = true;
            continue;
        }
        let escape = directives.escape;
        let (piece, mut cont) = trim_continuation(lt, escape);
        if !cont && piece.is_empty() {
            continue;
        }
        saw_instruction_line = true;
        let mut logical = Logical::new(piece, lt_off);
        let start_line = pl.number;
        let mut end_line = pl.number;
        let mut end = pl.end;
        while cont {
            let Some(next) = cur.next_line() else {
                extras.eof_continuation = Some(Span::new(lt_off, end));
                break;
            };
            let raw = &src[next.start..next.end];
            end_line = next.number;
            if raw.trim_start().starts_with('#') {
                continue;
            }
            if raw.trim().is_empty() {
                extras
                    .empty_continuations
                    .push(Span::new(next.start, next.end.max(next.start)));
                continue;
            }
            end = next.end;
            let (p, c) = trim_continuation(raw, escape);
            logical.push(p, next.start);
            cont = c;
        }

        let built = node::build(&logical, 0, logical.text.len(), escape, 0);
        let mut nd = match built {
            Ok(n) => n,
            Err(d) => {
                diags.push(syn(d));
                continue;
            }
        };

        // Heredoc bodies follow the instruction line.
        if node::can_contain_heredoc(&nd) {
            for m in heredoc::markers(&logical.text) {
                let body_start = cur_pos(&cur, src);
                // The body is the lines up to the terminator, newlines included: one slice.
                let mut body_next = body_start;
                let mut terminated = false;
                let mut body_end = body_start;
                while let Some(hl) = cur.next_line() {
                    end_line = hl.number;
                    body_end = hl.end;
                    let line = &src[hl.start..hl.end];
                    let candidate = if m.strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    if candidate == m.name {
                        terminated = true;
                        break;
                    }
                    body_next = hl.next;
                }
                end = end.max(body_end);
                if !terminated {
                    diags.push(syn(diagnostics::unterminated_heredoc(
                        Span::new(lt_off, pl.end),
                        &m.name,
                    )));
                    break;
                }
                nd.heredocs.push(Heredoc {
                    name: m.name,
                    body: src[body_start..body_next].to_string(),
                    expand: m.expand,
                    strip_tabs: m.strip_tabs,
                    fd: m.fd,
                    span: Span::new(body_start, body_end),
                });
            }
        }

        let span = Span::new(lt_off, end);
        match instructions::build(nd, (start_line, end_line), span, escape) {
            Ok(ins) => instructions.push(ins),
            Err(d) => {
                diags.push(d);
                // Keep the raw node for the AST dump (rebuilt: only on this error path).
                if let Ok(n) = node::build(&logical, 0, logical.text.len(), escape, 0) {
                    rejected.push(*n);
                }
            }
        }
    }

    if !saw_instruction_line && diags.iter().all(|d| !d.is_error()) {
        let end = src.len();
        diags.push(syn(diagnostics::empty_file(
            Span::at(end.min(bom)),
            saw_comment,
        )));
    }

    let dockerfile = Dockerfile {
        directives,
        instructions,
        rejected,
    };
    check_stages(&dockerfile, &mut diags);
    Output {
        dockerfile,
        diagnostics: diags,
        extras,
    }
}

/// Mark a diagnostic as a syntax error (BuildKit's parser refuses it too).
fn syn(mut d: ParseDiagnostic) -> ParseDiagnostic {
    d.syntax = true;
    d
}

/// The cursor's current byte offset (where the next line starts).
fn cur_pos(cur: &Cursor<'_>, src: &str) -> usize {
    cur.position().min(src.len())
}

/// The names of the stages before `current`, in stage order (so suggestions do not depend on
/// hash order).
fn earlier_stages<'a>(
    names: &'a foldhash::HashMap<std::borrow::Cow<'_, str>, usize>,
    current: usize,
) -> Vec<&'a str> {
    let mut earlier: Vec<(&str, usize)> = names
        .iter()
        .filter(|(_, i)| **i < current)
        .map(|(n, i)| (n.as_ref(), *i))
        .collect();
    earlier.sort_unstable_by_key(|(_, i)| *i);
    earlier.into_iter().map(|(n, _)| n).collect()
}

/// Instructions before the first FROM, and references to stages by name or index.
fn check_stages(df: &Dockerfile, diags: &mut Vec<ParseDiagnostic>) {
    let mut names: foldhash::HashMap<std::borrow::Cow<'_, str>, usize> =
        foldhash::HashMap::default();
    for s in df.stages().stages {
        if let Some(n) = s.name_lowercase() {
            names.entry(n).or_insert(s.index);
        }
    }
    let mut stage: Option<usize> = None;
    let mut count = 0usize;
    let check_ref = |value: &str, span: Span, current: usize, diags: &mut Vec<ParseDiagnostic>| {
        if value.contains('$') {
            return;
        }
        if let Ok(i) = value.parse::<usize>() {
            if i >= current {
                diags.push(diagnostics::stage_index_undefined(span, i, current));
            }
            return;
        }
        match names.get(ascii_lowercase(value).as_ref()).map(|i| (i, ())) {
            Some((i, _)) if *i == current => {
                diags.push(diagnostics::stage_self_reference(span, value))
            }
            Some((i, _)) if *i > current => {
                diags.push(diagnostics::stage_forward_reference(span, value))
            }
            Some(_) => {}
            None => {
                let earlier = earlier_stages(&names, current);
                if !value.contains([':', '/', '@'])
                    && let Some(d) = diagnostics::unknown_stage_hint(span, value, &earlier)
                {
                    diags.push(d);
                }
            }
        }
    };
    for ins in &df.instructions {
        match ins {
            Instruction::From(f) => {
                let current = count;
                count += 1;
                stage = Some(current);
                let image = &f.image.value;
                if let Some(i) = names.get(ascii_lowercase(image).as_ref()) {
                    if *i == current {
                        diags.push(diagnostics::stage_self_reference(f.image.span, image));
                    } else if *i > current {
                        diags.push(diagnostics::stage_forward_reference(f.image.span, image));
                    }
                } else if !image.contains([':', '/', '@', '$'])
                    && !image.eq_ignore_ascii_case("scratch")
                {
                    // A bare name close to an earlier stage's: probably a misspelt stage.
                    let earlier = earlier_stages(&names, current);
                    if let Some(d) = diagnostics::unknown_stage_hint(f.image.span, image, &earlier)
                    {
                        diags.push(d);
                    }
                }
            }
            Instruction::Arg(_) if stage.is_none() => {}
            _ if stage.is_none() => diags.push(diagnostics::before_from(&ins.meta().keyword)),
            Instruction::Copy(c) => {
                if let (Some(from), Some(cur)) = (&c.from, stage) {
                    check_ref(&from.raw, from.span, cur, diags);
                }
            }
            Instruction::Run(r) => {
                if let Some(cur) = stage {
                    for m in &r.mounts {
                        if let Some(from) = &m.from {
                            check_ref(from, m.span, cur, diags);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

//! The raw syntax node, BuildKit's first stage: split a logical line into keyword, flags and
//! arguments with the per-instruction argument rules (JSON or shell form, whitespace lists,
//! `name=value` words, ONBUILD sub-commands), and print it in BuildKit's AST dump format.

use serde::Serialize;

use crate::ast::Heredoc;
use crate::diagnostics::{self, ParseDiagnostic};
use crate::json::{self, JsonArray};
use crate::lines::Logical;
use crate::span::{Span, Word};

/// A raw instruction node (before typing), enough to print BuildKit's dump.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Node {
    /// The keyword as written.
    pub keyword: Word,
    /// Flags before the arguments, quotes removed (`--from=a`).
    pub flags: Vec<Word>,
    /// The arguments, as BuildKit's node chain holds them. ENV and LABEL hold triples of
    /// key, value and separator (`=` or empty for the legacy form).
    pub args: Vec<Word>,
    /// ONBUILD's trigger.
    pub child: Option<Box<Node>>,
    /// Arguments came from a JSON array.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The trigger text of an ONBUILD (empty for top-level instructions).
    pub original: String,
    /// The lowercased instruction name when it is a known instruction, else empty.
    #[serde(skip)]
    pub kind: &'static str,
    /// Span of the text after the flags (the arguments), for "missing argument" labels.
    pub args_span: Span,
    pub span: Span,
}

impl Default for Word {
    fn default() -> Self {
        Word::new("", Span::default())
    }
}

impl Node {
    /// The lowercased keyword (`run`, `copy`, ...).
    pub fn command(&self) -> std::borrow::Cow<'static, str> {
        if self.kind.is_empty() {
            self.keyword.value.to_lowercase().into()
        } else {
            self.kind.into()
        }
    }

    /// The node in BuildKit's dump format, without the outer parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.command().into_owned();
        if !self.flags.is_empty() {
            s.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&go_quote(&f.value));
            }
            s.push(']');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(&a.value));
        }
        if let Some(child) = &self.child {
            s.push_str(" (");
            s.push_str(&child.dump());
            s.push(')');
        }
        s.trim().to_string()
    }
}

/// Go's `strconv.Quote`: printable characters as they are, `\a \b \f \n \r \t \v \\ \"`,
/// other control characters as `\xNN`, other non-printable characters as `\uNNNN` or
/// `\UNNNNNNNN`. "Printable" approximates Go's `unicode.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space).
pub fn go_quote(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Format characters, private use, noncharacters and unassigned specials.
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xD800..=0xF8FF | 0xFDD0..=0xFDEF
        | 0xFEFF | 0xFFF0..=0xFFFB | 0xFFFE | 0xFFFF | 0xE0000..=0xE007F
        | 0xF0000..=0x10FFFF)
        && (u & 0xFFFE) != 0xFFFE
}

/// Go's `unicode.IsSpace` for the whitespace BuildKit trims.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `[\t\v\f\r ]` separator class.
fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// The range of `text[a..b]` with Go-style `TrimSpace` applied.
fn trim_range(text: &str, a: usize, b: usize) -> (usize, usize) {
    let s = &text[a..b];
    let start = a + (s.len() - s.trim_start_matches(is_space).len());
    let end = a + s.trim_end_matches(is_space).len();
    (start, end.max(start))
}

/// Every instruction name, lowercased.
const KNOWN: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Instructions whose arguments are a JSON array or a whitespace-separated list.
const MAYBE_JSON_TO_LIST: &[&str] = &["add", "copy", "volume"];
/// Instructions whose argument is a JSON array or one shell-form string.
const MAYBE_JSON: &[&str] = &["cmd", "entrypoint", "run", "shell"];
/// Instructions taking the rest of the line as one string.
const WHOLE_STRING: &[&str] = &["maintainer", "stopsignal", "user", "workdir"];
/// Instructions that may carry heredocs.
const HEREDOC_COMMANDS: &[&str] = &["add", "copy", "run"];

/// Build the node for `line.text[a..b]`. `depth` is 0 for top-level instructions and 1 for
/// an ONBUILD trigger (whose own nesting is refused later, so no deeper recursion happens).
// One arm per argument rule reads more plainly than guards with side effects.
#[allow(clippy::collapsible_match)]
pub(crate) fn build(
    line: &Logical<'_>,
    a: usize,
    b: usize,
    escape: char,
    depth: usize,
) -> Result<Node, ParseDiagnostic> {
    let text = &line.text;
    let (start, end) = trim_range(text, a, b);
    let body = &text[start..end];
    let kw_len = body.find(is_sep).unwrap_or(body.len());
    let keyword = Word::new(&body[..kw_len], line.span(start, start + kw_len));
    let kind = KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(&keyword.value))
        .copied()
        .unwrap_or("");
    let cmd: std::borrow::Cow<'_, str> = if kind.is_empty() {
        keyword.value.to_lowercase().into()
    } else {
        kind.into()
    };
    let mut node = Node {
        keyword,
        kind,
        original: if depth > 0 {
            text[a..b].to_string()
        } else {
            String::new()
        },
        span: line.span(start, end),
        ..Node::default()
    };
    let after_kw = start + kw_len;
    let rest_start = after_kw
        + (text[after_kw..end].len() - text[after_kw..end].trim_start_matches(is_sep).len());
    let (flags, args_from) = extract_flags(text, rest_start, end);
    node.flags = flags
        .into_iter()
        .map(|(v, fa, fb)| Word::new(v, line.span(fa, fb)))
        .collect();
    let (a0, a1) = trim_range(text, args_from.min(end), end);
    node.args_span = line.span(a0, a1);
    let rest = &text[a0..a1];
    let word = |s: usize, e: usize| Word::new(&text[s..e], line.span(s, e));

    match cmd.as_ref() {
        c if MAYBE_JSON_TO_LIST.contains(&c) => {
            if !json_args(&mut node, line, a0, a1)? {
                node.args = split_ws(text, a0, a1)
                    .into_iter()
                    .map(|(s, e)| word(s, e))
                    .collect();
            }
        }
        c if MAYBE_JSON.contains(&c) => {
            if !rest.is_empty() && !json_args(&mut node, line, a0, a1)? {
                node.args = vec![word(a0, a1)];
            }
        }
        "arg" => {
            node.args = parse_words(text, a0, a1, escape)
                .into_iter()
                .map(|(v, s, e)| Word::new(v, line.span(s, e)))
                .collect();
        }
        "env" | "label" => parse_name_val(&mut node, line, a0, a1, escape, &cmd)?,
        "expose" | "from" => {
            node.args = split_ws(text, a0, a1)
                .into_iter()
                .map(|(s, e)| word(s, e))
                .collect();
        }
        "healthcheck" => {
            let sep = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if sep > 0 {
                node.args.push(word(a0, a0 + sep));
                let next = a0
                    + sep
                    + (rest[sep..].len()
                        - rest[sep..]
                            .trim_start_matches(|c: char| c.is_ascii_whitespace())
                            .len());
                if next < a1 && !json_args(&mut node, line, next, a1)? {
                    node.args.push(word(next, a1));
                }
            }
        }
        c if WHOLE_STRING.contains(&c) => {
            if !rest.is_empty() {
                node.args = vec![word(a0, a1)];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                if depth > 0 {
                    return Err(diagnostics::onbuild_chain(node.span));
                }
                node.child = Some(Box::new(build(line, a0, a1, escape, depth + 1)?));
            }
        }
        _ => {}
    }
    Ok(node)
}

/// Try the JSON form for `text[a..b]`; on success fill `node.args` and return true.
fn json_args(
    node: &mut Node,
    line: &Logical<'_>,
    a: usize,
    b: usize,
) -> Result<bool, ParseDiagnostic> {
    let text = &line.text[a..b];
    let trimmed = text.trim_start_matches(is_space);
    let off = a + (text.len() - trimmed.len());
    match json::parse_array(trimmed) {
        JsonArray::NotJson => Ok(false),
        JsonArray::NotStrings(s, e) => Err(diagnostics::not_string_array(
            line.span(off + s, off + e),
            &node.keyword.value.to_uppercase(),
        )),
        JsonArray::Strings(v) => {
            node.json = true;
            node.args.extend(
                v.into_iter()
                    .map(|(s, x, y)| Word::new(s, line.span(off + x, off + y))),
            );
            Ok(true)
        }
    }
}

/// Split on runs of `[\t\v\f\r ]` (the text is already trimmed).
fn split_ws(text: &str, a: usize, b: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if a >= b {
        return out;
    }
    let mut start = a;
    let mut in_sep = false;
    for (i, c) in text[a..b].char_indices() {
        let i = a + i;
        if is_sep(c) {
            if !in_sep {
                out.push((start, i));
                in_sep = true;
            }
        } else if in_sep {
            start = i;
            in_sep = false;
        }
    }
    if in_sep {
        out.push((b, b));
    } else {
        out.push((start, b));
    }
    out
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes removed, `\` escapes the next
/// character) up to the first word not starting with `--`, or a bare `--`. Returns the flags
/// with their text ranges and where the arguments start.
fn extract_flags(text: &str, a: usize, b: usize) -> (Vec<(String, usize, usize)>, usize) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = a;
    let mut blank_ok = false;
    let s = &text[a..b];
    let mut it = s.char_indices().peekable();
    loop {
        let Some((i, ch)) = it.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push((word, word_start, b));
            }
            return (flags, b);
        };
        let pos = a + i;
        match phase {
            Phase::Spaces => {
                if is_space(ch) {
                    continue;
                }
                let next_dash = s[i + ch.len_utf8()..].starts_with('-');
                if ch != '-' || !next_dash {
                    return (flags, pos);
                }
                phase = Phase::Word;
                word_start = pos;
                word.push(ch);
            }
            Phase::Word => {
                if is_space(ch) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (flags, pos);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push((std::mem::take(&mut word), word_start, pos));
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    continue;
                }
                if ch == '\\' {
                    match it.next() {
                        Some((_, c)) => word.push(c),
                        None => continue,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                    continue;
                }
                if ch == '\\' {
                    match it.next() {
                        Some((_, c)) => word.push(c),
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
}

/// BuildKit's `parseWords`: split on whitespace, keeping quotes and escapes in the words.
/// Returns each word with its text range.
fn parse_words(text: &str, a: usize, b: usize, escape: char) -> Vec<(String, usize, usize)> {
    let mut words = Vec::new();
    let s = &text[a..b];
    let mut word = String::new();
    let mut start = a;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut it = s.char_indices().peekable();
    while let Some((i, ch)) = it.next() {
        let pos = a + i;
        let at_end = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| it.peek().is_none();
        if !in_word {
            if is_space(ch) {
                continue;
            }
            in_word = true;
            start = pos;
        }
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            if ch == escape && q != '\'' {
                if at_end(&mut it) {
                    quote = None;
                    continue;
                }
                word.push(ch);
                let (_, c) = it.next().unwrap_or((0, ch));
                word.push(c);
                continue;
            }
            word.push(ch);
            continue;
        }
        if is_space(ch) {
            if blank_ok || !word.is_empty() {
                words.push((std::mem::take(&mut word), start, pos));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            if at_end(&mut it) {
                continue;
            }
            word.push(ch);
            let (_, c) = it.next().unwrap_or((0, ch));
            word.push(c);
            continue;
        }
        word.push(ch);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push((word, start, b));
    }
    words
}

/// ENV and LABEL: `k=v ...` or the legacy `k v` form, as key/value/separator triples.
fn parse_name_val(
    node: &mut Node,
    line: &Logical<'_>,
    a: usize,
    b: usize,
    escape: char,
    cmd: &str,
) -> Result<(), ParseDiagnostic> {
    let text = &line.text;
    let words = parse_words(text, a, b, escape);
    if words.is_empty() {
        return Ok(());
    }
    let upper = cmd.to_uppercase();
    if !words[0].0.contains('=') {
        let rest = &text[a..b];
        let Some(sep) = rest.find(is_sep) else {
            return Err(diagnostics::key_value_two_args(line.span(a, b), &upper));
        };
        let value_start =
            a + sep + (rest[sep..].len() - rest[sep..].trim_start_matches(is_sep).len());
        node.args
            .push(Word::new(&rest[..sep], line.span(a, a + sep)));
        node.args
            .push(Word::new(&text[value_start..b], line.span(value_start, b)));
        node.args
            .push(Word::new("", Span::at(line.source(a + sep))));
        return Ok(());
    }
    for (w, s, e) in words {
        let Some(eq) = w.find('=') else {
            return Err(diagnostics::key_value_missing_equals(line.span(s, e), &w));
        };
        let key_end = (s + eq).min(e);
        node.args.push(Word::new(&w[..eq], line.span(s, key_end)));
        node.args
            .push(Word::new(&w[eq + 1..], line.span((key_end + 1).min(e), e)));
        node.args
            .push(Word::new("=", line.span(key_end, (key_end + 1).min(e))));
    }
    Ok(())
}

/// Whether this node's heredoc markers count (RUN/COPY/ADD, directly or under ONBUILD, not in
/// JSON form).
pub(crate) fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.child, node.kind) {
        (Some(child), "onbuild") => child.as_ref(),
        _ => node,
    };
    HEREDOC_COMMANDS.contains(&target.kind) && !target.json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\n\u{0}\u{7f}"), r#""\t\n\x00\x7f""#);
        assert_eq!(go_quote("♥☃é"), "\"♥☃é\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
    }

    #[test]
    fn flags_stop_at_first_non_flag_word() {
        let t = "--from=a --chown='1 2' src --x";
        let (flags, at) = extract_flags(t, 0, t.len());
        let vals: Vec<_> = flags.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(vals, ["--from=a", "--chown=1 2"]);
        assert_eq!(&t[at..], "src --x");
        let t = "--doit -- [ ]";
        let (flags, at) = extract_flags(t, 0, t.len());
        assert_eq!(flags.len(), 1);
        assert_eq!(&t[at..], " [ ]");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let t = r#"a="b c" d=e\ f 'g'"#;
        let w: Vec<_> = parse_words(t, 0, t.len(), '\\')
            .into_iter()
            .map(|w| w.0)
            .collect();
        assert_eq!(w, [r#"a="b c""#, r"d=e\ f", "'g'"]);
    }
}

//! The raw syntax node, BuildKit's first stage: split a logical line into keyword, flags (quotes
//! removed) and arguments with the per-instruction argument rules (JSON exec form with shell
//! fallback via `json`, whitespace lists, `name=value` words, legacy `ENV k v`, ONBUILD
//! sub-commands), and print it in BuildKit's AST dump format (S-expressions; [`go_quote`] is
//! Go's `strconv.Quote`), so `rbuild parse --dump` matches BuildKit byte for byte.

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
        // BuildKit parses an unknown instruction's arguments as one empty node, printed `""`.
        if self.kind.is_empty() {
            s.push_str(" \"\"");
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

/// The length of the leading run of [`is_space`] characters (ASCII bytes without decoding).
fn leading_space(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            if !b.is_ascii_whitespace() && b != 0x0b {
                return i;
            }
            i += 1;
        } else {
            match s[i..].chars().next() {
                Some(c) if is_space(c) => i += c.len_utf8(),
                _ => return i,
            }
        }
    }
    i
}

/// The length of `s` without its trailing run of [`is_space`] characters.
fn trim_space_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut end = s.len();
    while let Some(&b) = end.checked_sub(1).and_then(|i| bytes.get(i)) {
        if b.is_ascii() {
            if !b.is_ascii_whitespace() && b != 0x0b {
                break;
            }
            end -= 1;
        } else {
            match s[..end].chars().next_back() {
                Some(c) if is_space(c) => end -= c.len_utf8(),
                _ => break,
            }
        }
    }
    end
}

/// The length of the leading run of [`is_sep`] characters (all ASCII).
fn leading_sep(s: &str) -> usize {
    s.bytes().take_while(|b| is_sep(char::from(*b))).count()
}

/// The range of `text[a..b]` with Go-style `TrimSpace` applied.
fn trim_range(text: &str, a: usize, b: usize) -> (usize, usize) {
    let s = &text[a..b];
    let start = a + leading_space(s);
    let end = a + trim_space_end(s);
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

/// The lowercased instruction name if `keyword` is one (in any case), else "".
fn known_kind(keyword: &str) -> &'static str {
    let mut buf = [0u8; 11];
    let Some(lower) = buf.get_mut(..keyword.len()) else {
        return "";
    };
    lower.copy_from_slice(keyword.as_bytes());
    lower.make_ascii_lowercase();
    // Non-ASCII keywords fall through: every name is ASCII.
    KNOWN
        .iter()
        .find(|k| k.as_bytes() == lower)
        .copied()
        .unwrap_or("")
}

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
) -> Result<Box<Node>, ParseDiagnostic> {
    let text = &line.text;
    let (start, end) = trim_range(text, a, b);
    let body = &text[start..end];
    let kw_len = body
        .bytes()
        .position(|b| is_sep(char::from(b)))
        .unwrap_or(body.len());
    let keyword = Word::new(&body[..kw_len], line.span(start, start + kw_len));
    let kind = known_kind(&keyword.value);
    let cmd: std::borrow::Cow<'_, str> = if kind.is_empty() {
        keyword.value.to_lowercase().into()
    } else {
        kind.into()
    };
    // Boxed from the start: the node moves into the instruction without being copied.
    let mut node = Box::new(Node {
        keyword,
        kind,
        original: if depth > 0 {
            text[a..b].to_string()
        } else {
            String::new()
        },
        span: line.span(start, end),
        ..Node::default()
    });
    let after_kw = start + kw_len;
    let rest_start = after_kw + leading_sep(&text[after_kw..end]);
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
        // A JSON array or a whitespace-separated list.
        "add" | "copy" | "volume" => {
            if !json_args(&mut node, line, a0, a1)? {
                node.args = split_ws(text, a0, a1, word);
            }
        }
        // A JSON array or one shell-form string.
        "cmd" | "entrypoint" | "run" | "shell" => {
            if !rest.is_empty() && !json_args(&mut node, line, a0, a1)? {
                node.args = vec![word(a0, a1)];
            }
        }
        "arg" => {
            node.args = parse_words(text, a0, a1, escape, |s, t, e| {
                Word::new(&text[s..t], line.span(s, e))
            });
        }
        "env" | "label" => parse_name_val(&mut node, line, a0, a1, escape, &cmd)?,
        "expose" | "from" => {
            node.args = split_ws(text, a0, a1, word);
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
        // The rest of the line as one string.
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![word(a0, a1)];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                if depth > 0 {
                    return Err(diagnostics::onbuild_chain(node.span));
                }
                node.child = Some(build(line, a0, a1, escape, depth + 1)?);
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
    let trimmed = &text[leading_space(text)..];
    let off = a + (text.len() - trimmed.len());
    match json::parse_array(trimmed) {
        JsonArray::NotJson => Ok(false),
        JsonArray::NotStrings(s, e) => Err(diagnostics::not_string_array(
            line.span(off + s, off + e),
            &node.keyword.value.to_uppercase(),
        )),
        JsonArray::Strings(v) => {
            node.json = true;
            let words = v
                .into_iter()
                .map(|(s, x, y)| Word::new(s, line.span(off + x, off + y)));
            if node.args.is_empty() {
                // Collected in place: the decoded strings become the words' values.
                node.args = words.collect();
            } else {
                node.args.extend(words);
            }
            Ok(true)
        }
    }
}

/// Split on runs of `[\t\v\f\r ]` (the text is already trimmed), mapping each word's range
/// with `f`.
fn split_ws<T>(text: &str, a: usize, b: usize, mut f: impl FnMut(usize, usize) -> T) -> Vec<T> {
    let mut out = Vec::new();
    if a >= b {
        return out;
    }
    let mut start = a;
    let mut in_sep = false;
    // The separators are ASCII, so bytes give the same boundaries as characters.
    for (i, &c) in text.as_bytes()[a..b].iter().enumerate() {
        let i = a + i;
        if is_sep(char::from(c)) {
            if !in_sep {
                out.push(f(start, i));
                in_sep = true;
            }
        } else if in_sep {
            start = i;
            in_sep = false;
        }
    }
    if in_sep {
        out.push(f(b, b));
    } else {
        out.push(f(start, b));
    }
    out
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes removed, `\` escapes the next
/// character) up to the first word not starting with `--`, or a bare `--`. Returns the flags
/// with their text ranges and where the arguments start.
fn extract_flags(text: &str, a: usize, b: usize) -> (Vec<(String, usize, usize)>, usize) {
    let mut flags = Vec::new();
    let mut pos = a;
    // Fast path: flags without quotes or escapes are their own text.
    loop {
        let rest = &text[pos..b];
        let word = &rest[leading_space(rest)..];
        let start = b - word.len();
        if !word.starts_with("--") {
            return (flags, start);
        }
        let len = plain_flag_len(word);
        if word[len..].starts_with(|c: char| !is_space(c)) {
            // A quote or escape: the general reader takes over from this word.
            let (more, args_from) = extract_flags_general(text, start, b);
            flags.extend(more);
            return (flags, args_from);
        }
        let end = start + len;
        if &word[..len] == "--" {
            return (flags, end);
        }
        flags.push((word[..len].to_string(), start, end));
        if end == b {
            return (flags, b);
        }
        pos = end;
    }
}

/// The length of the leading text of `s` up to a space, a quote or a backslash.
fn plain_flag_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii() {
            if b.is_ascii_whitespace() || matches!(b, 0x0b | b'\'' | b'"' | b'\\') {
                return i;
            }
            i += 1;
        } else {
            match s[i..].chars().next() {
                Some(c) if !is_space(c) => i += c.len_utf8(),
                _ => return i,
            }
        }
    }
    i
}

/// [`extract_flags`] for words with quotes and escapes, character by character.
fn extract_flags_general(text: &str, a: usize, b: usize) -> (Vec<(String, usize, usize)>, usize) {
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
/// A word's text is the source text of its range, except that an escape character ending
/// the input is dropped: each word is `(start, end of text, end of range)`.
fn parse_words<T>(
    text: &str,
    a: usize,
    b: usize,
    escape: char,
    mut f: impl FnMut(usize, usize, usize) -> T,
) -> Vec<T> {
    // The escape is `\` or `` ` `` (all the directive accepts), so every character that
    // matters here is one ASCII byte except Unicode spaces; runs of other bytes are skipped
    // at once and only non-ASCII characters are decoded.
    let esc = u8::try_from(escape).ok().filter(u8::is_ascii);
    let s = &text[a..b];
    let bytes = s.as_bytes();
    let n = bytes.len();
    // The length of the character at `i`.
    let char_len = |i: usize| s[i..].chars().next().map_or(1, char::len_utf8);
    let mut words = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    let mut blank_ok = false;
    // The escape that ends the input (not kept in the word), if any.
    let mut dropped = 0;
    let mut i = 0;
    while i < n {
        let c = bytes[i];
        // The character's length, and whether it is a space (ASCII or Unicode).
        let (len, is_sp) = if c.is_ascii() {
            (1, c == b' ' || (b'\t'..=b'\r').contains(&c))
        } else {
            match s[i..].chars().next() {
                Some(ch) => (ch.len_utf8(), is_space(ch)),
                None => break,
            }
        };
        let space = if is_sp { len } else { 0 };
        if !in_word {
            if space > 0 {
                i += space;
                continue;
            }
            in_word = true;
            start = i;
        }
        if space > 0 {
            if blank_ok || i > start {
                words.push(f(a + start, a + i, a + i));
            }
            in_word = false;
            blank_ok = false;
            i += space;
            continue;
        }
        if c == b'\'' || c == b'"' {
            blank_ok = true;
            // Inside quotes only the closing quote and (in double quotes) the escape count.
            i += 1;
            while let Some(&d) = bytes.get(i) {
                if d == c {
                    i += 1;
                    break;
                }
                if Some(d) == esc && c != b'\'' {
                    if i + 1 == n {
                        dropped = 1;
                        i += 1;
                        break;
                    }
                    i += 1 + char_len(i + 1);
                    continue;
                }
                i += 1;
            }
            continue;
        }
        if Some(c) == esc {
            if i + 1 == n {
                dropped = 1;
                i += 1;
                continue;
            }
            i += 1 + char_len(i + 1);
            continue;
        }
        // An ordinary character: skip to the next byte that may matter.
        i += len;
        while let Some(&d) = bytes.get(i) {
            if !d.is_ascii()
                || d == b' '
                || (b'\t'..=b'\r').contains(&d)
                || d == b'\''
                || d == b'"'
                || Some(d) == esc
            {
                break;
            }
            i += 1;
        }
    }
    let text_end = b - dropped;
    if in_word && (blank_ok || text_end > a + start) {
        words.push(f(a + start, text_end, b));
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
    let words = parse_words(text, a, b, escape, |s, t, e| (s, t, e));
    if words.is_empty() {
        return Ok(());
    }
    if !text[words[0].0..words[0].1].contains('=') {
        let rest = &text[a..b];
        let Some(sep) = rest.find(is_sep) else {
            return Err(diagnostics::key_value_two_args(
                line.span(a, b),
                &cmd.to_uppercase(),
            ));
        };
        let value_start =
            a + sep + (rest[sep..].len() - rest[sep..].trim_start_matches(is_sep).len());
        node.args.reserve_exact(3);
        node.args
            .push(Word::new(&rest[..sep], line.span(a, a + sep)));
        node.args
            .push(Word::new(&text[value_start..b], line.span(value_start, b)));
        node.args
            .push(Word::new("", Span::at(line.source(a + sep))));
        return Ok(());
    }
    node.args.reserve_exact(words.len() * 3);
    for (s, t, e) in words {
        let w = &text[s..t];
        let Some(eq) = w.find('=') else {
            return Err(diagnostics::key_value_missing_equals(line.span(s, e), w));
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

    /// An unknown instruction dumps BuildKit's empty argument node, with or without flags and
    /// arguments, also as an ONBUILD trigger; known instructions without arguments do not.
    #[test]
    fn unknown_instructions_dump_an_empty_argument() {
        let src = "FROM a\nfoo --x=1 bar baz\nONBUILD bogus\nONBUILD Bogus --y arg\nBAR\nCMD\n";
        assert_eq!(
            crate::parse(src).dockerfile.dump(),
            "(from \"a\")\n(foo [\"--x=1\"] \"\")\n(onbuild (bogus \"\"))\n\
             (onbuild (bogus [\"--y\"] \"\"))\n(bar \"\")\n(cmd)\n"
        );
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
        let w: Vec<_> = parse_words(t, 0, t.len(), '\\', |s, e, _| &t[s..e]);
        assert_eq!(w, [r#"a="b c""#, r"d=e\ f", "'g'"]);
    }

    /// BuildKit's `parseWords` transcribed character by character: the reference the
    /// byte-wise [`parse_words`] is checked against.
    fn reference_words(s: &str, escape: char) -> Vec<(String, usize, usize)> {
        let mut words = Vec::new();
        let mut word = String::new();
        let (mut start, mut in_word, mut blank_ok) = (0, false, false);
        let mut quote: Option<char> = None;
        let mut it = s.char_indices().peekable();
        while let Some((pos, ch)) = it.next() {
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
                    if it.peek().is_none() {
                        quote = None;
                        continue;
                    }
                    word.push(ch);
                    word.extend(it.next().map(|(_, c)| c));
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
                if it.peek().is_none() {
                    continue;
                }
                word.push(ch);
                word.extend(it.next().map(|(_, c)| c));
                continue;
            }
            word.push(ch);
        }
        if in_word && (blank_ok || !word.is_empty()) {
            words.push((word, start, s.len()));
        }
        words
    }

    fn tricky_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            " ", "\t", "\u{b}", "\u{a0}", "\u{2003}", "a", "é", "--", "-", "=", "'", "\"", "\\",
            "`", "$", "x=y", "--f=v",
        ]);
        prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The byte-wise word splitter agrees with the character-by-character reference.
        #[test]
        fn word_split_matches_the_reference(t in tricky_text()) {
            for escape in ['\\', '`'] {
                let got = parse_words(&t, 0, t.len(), escape, |s, e, end| {
                    (t[s..e].to_string(), s, end)
                });
                proptest::prop_assert_eq!(got, reference_words(&t, escape));
            }
        }

        /// The flag reader's fast path gives what the general reader gives.
        #[test]
        fn flag_fast_path_matches_the_general_reader(t in tricky_text()) {
            proptest::prop_assert_eq!(extract_flags(&t, 0, t.len()), extract_flags_general(&t, 0, t.len()));
        }
    }
}

//! Shell-word expansion as BuildKit's Dockerfile lexer does it: `$V`, `${V}`, the modifiers
//! `:- - :+ + :? ? # ## % %% / //`, single and double quotes, the escape character, and word
//! splitting. It is a library for the solver: the parser never expands, it only checks syntax.
//!
//! Written by hand (not with nom) because the semantics are those of a small state machine with
//! recursion through `${...}`; the recursion depth is bounded by [`MAX_NESTING`].

mod limits;
mod pattern;
mod sizes;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use sizes::check_sizes;

pub use limits::{
    BudgetGuard, DEFAULT_PER_BUILD, DEFAULT_PER_WORD, ENV_PER_BUILD, ENV_PER_WORD, Limits, budget,
    human as human_size,
};

/// How deep `${a:-${b:-...}}` may nest before expansion fails (instead of exhausting the stack).
pub const MAX_NESTING: usize = 200;

/// Where variable values come from. `None` means the variable is unset (which differs from set
/// to the empty string for the modifiers without `:`).
pub trait Env {
    fn lookup(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Env for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for Vec<(&str, &str)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

/// The outcome of an expansion: the value, the split words (for [`expand_words`]), and which
/// variable names the word referenced, split into those that were set and those that were not.
/// Every reference counts, including ones inside a default that was not used
/// (`${A:-$B}` reports `B` even when `A` is set), exactly as BuildKit reports matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub words: Vec<String>,
    pub used: BTreeSet<String>,
    pub unset: BTreeSet<String>,
}

impl Expanded {
    /// Every referenced variable name, set or not.
    pub fn referenced(&self) -> impl Iterator<Item = &str> {
        self.used
            .iter()
            .chain(self.unset.iter())
            .map(String::as_str)
    }
}

/// A syntax, `${V?message}` or size error, with the byte offset in the word where it was
/// detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    pub message: String,
    pub offset: usize,
    pub kind: ExpandErrorKind,
}

/// What went wrong in an [`ExpandError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandErrorKind {
    /// Bad syntax or a `${V?message}` that fired.
    Syntax,
    /// The word grew past the per-word bound, or the build's expansions past their total
    /// (see [`Limits`]).
    TooLarge,
}

impl ExpandError {
    pub fn is_too_large(&self) -> bool {
        self.kind == ExpandErrorKind::TooLarge
    }
}

/// Charge a finished top-level expansion to the budget (see [`budget`]).
fn charged(value: &str, word: &str) -> Result<(), ExpandError> {
    limits::charge(value.len()).map_err(|message| ExpandError {
        message,
        offset: word.len(),
        kind: ExpandErrorKind::TooLarge,
    })
}

/// Expand `word` as one word (BuildKit's `ProcessWord`): quotes are removed, spaces kept.
/// `words` is left empty.
pub fn expand_word(word: &str, env: &dyn Env, escape: char) -> Result<Expanded, ExpandError> {
    Lexer::new(escape).run(word, env, false)
}

/// [`expand_word`]'s value alone: the referenced names are not collected.
pub(crate) fn expand_value(word: &str, env: &dyn Env, escape: char) -> Result<String, ExpandError> {
    let lx = Lexer::new(escape);
    let mut st = State::new(&lx, word, Source::Env(env), false);
    st.record = false;
    let (value, _) = st.process_until(None, lx.raw_escapes, 0)?;
    charged(&value, word)?;
    Ok(value)
}

/// Expand and split into words (BuildKit's `ProcessWords`, used for EXPOSE, VOLUME, ...):
/// unquoted whitespace, including whitespace produced by a variable's value, separates words.
pub fn expand_words(word: &str, env: &dyn Env, escape: char) -> Result<Expanded, ExpandError> {
    Lexer::new(escape).expand(word, env)
}

/// Check `word` for expansion syntax errors (unterminated quotes, bad `${}`), treating every
/// variable as set and non-empty.
pub fn check_syntax(word: &str, escape: char) -> Result<(), ExpandError> {
    // Only `$`, quotes and the escape character can make a word invalid.
    let special = |b: u8| matches!(b, b'$' | b'\'' | b'"') || u32::from(b) == u32::from(escape);
    if escape.is_ascii() && !word.bytes().any(special) {
        return Ok(());
    }
    if plainly_valid(word, escape) {
        return Ok(());
    }
    let lx = Lexer::new(escape);
    let mut st = State::new(&lx, word, Source::Placeholder, false);
    // The value is not needed: only errors matter, so the top-level text is not kept.
    st.discard_top = true;
    st.process_until(None, lx.raw_escapes, 0).map(|_| ())
}

/// A quick scan for the common forms that cannot fail: plain text, escapes, quoted strings,
/// `$NAME`, `${NAME}` and `${NAME:-text}` (also `-`, `+`, `?`, `:+`, `:?`) whose text has no
/// quotes, escapes or variables. `false` means "not sure": the lexer decides.
fn plainly_valid(word: &str, escape: char) -> bool {
    // Every character with a meaning here is ASCII: scan bytes (the escape must be ASCII too).
    let Some(esc) = u8::try_from(escape).ok().filter(u8::is_ascii) else {
        return false;
    };
    if matches!(esc, b'$' | b'\'' | b'"' | b'{' | b'}' | b':') {
        return false;
    }
    let bytes = word.as_bytes();
    let mut pos = 0;
    while let Some(&c) = bytes.get(pos) {
        pos += 1;
        if c == b'$' {
            if !plain_reference(word, &mut pos, escape) {
                return false;
            }
            continue;
        }
        match c {
            b'\'' => match memchr::memchr(b'\'', &bytes[pos..]) {
                Some(i) => pos += i + 1,
                None => return false,
            },
            b'"' => loop {
                let Some(&c) = bytes.get(pos) else {
                    return false;
                };
                pos += 1;
                if c == b'"' {
                    break;
                } else if c == b'$' {
                    if !plain_reference(word, &mut pos, escape) {
                        return false;
                    }
                } else if c == esc {
                    if pos >= bytes.len() {
                        return false;
                    }
                    // The escaped character's first byte; the rest of it is plain.
                    pos += 1;
                }
            },
            c if c == esc => pos += 1,
            _ => {}
        }
    }
    true
}

/// After a `$` at `pos`: consume a reference [`plainly_valid`] accepts, or return false.
fn plain_reference(word: &str, pos: &mut usize, escape: char) -> bool {
    let rest = &word[*pos..];
    let Some(inner) = rest.strip_prefix('{') else {
        *pos += name_len(rest);
        return true;
    };
    let name = name_len(inner);
    if name == 0 {
        return false;
    }
    let after = &inner[name..];
    let text = match after.as_bytes() {
        [b'}', ..] => {
            *pos += 1 + name + 1;
            return true;
        }
        [b':', b'-' | b'+' | b'?', ..] => &after[2..],
        [b'-' | b'+' | b'?', ..] => &after[1..],
        _ => return false,
    };
    match text.find(['}', '$', '\'', '"', escape]) {
        Some(i) if text[i..].starts_with('}') => {
            *pos = word.len() - text.len() + i + 1;
            true
        }
        _ => false,
    }
}

/// The length of the variable name at the start of `s`, as the lexer reads it after `$` or
/// `${`: a run of digits, one special character (`@ * # ? - $ !`), or letters, digits and `_`.
pub(crate) fn name_len(s: &str) -> usize {
    match s.chars().next() {
        None => 0,
        Some(c) if c.is_ascii_digit() => s.bytes().take_while(u8::is_ascii_digit).count(),
        Some('@' | '*' | '#' | '?' | '-' | '$' | '!') => 1,
        Some(_) => s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len()),
    }
}

/// Every name the lexer could look up in `word`: the name after each `$` or `${`, wherever it
/// stands (quotes and escapes are ignored, so this is a superset of the real references;
/// `${` always contributes its name, even an empty one).
pub(crate) fn candidate_names(word: &str) -> impl Iterator<Item = &str> {
    word.match_indices('$').filter_map(move |(i, _)| {
        let rest = &word[i + 1..];
        match rest.strip_prefix('{') {
            Some(inner) => Some(&inner[..name_len(inner)]),
            None => Some(&rest[..name_len(rest)]).filter(|n| !n.is_empty()),
        }
    })
}

/// The lexer with BuildKit's switches. The defaults are what instructions use.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result (used to detect quoted heredoc delimiters).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$X` stays `$X`).
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_process_quotes: false,
        }
    }

    /// Expand `word`, returning both the single value and the split words.
    pub fn expand(&self, word: &str, env: &dyn Env) -> Result<Expanded, ExpandError> {
        self.run(word, env, true)
    }

    fn run(&self, word: &str, env: &dyn Env, split: bool) -> Result<Expanded, ExpandError> {
        let mut st = State::new(self, word, Source::Env(env), split);
        let (value, words) = st.process_until(None, self.raw_escapes, 0)?;
        charged(&value, word)?;
        Ok(Expanded {
            value,
            words,
            used: st.used,
            unset: st.unset,
        })
    }
}

/// Where a [`State`] takes variable values from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The caller's environment; every reference is recorded as used or unset.
    Env(&'a dyn Env),
    /// Every variable is set to `x` and nothing is recorded (the syntax check).
    Placeholder,
}

struct State<'a> {
    lx: &'a Lexer,
    /// Collect split words (top level only).
    split: bool,
    /// Drop the top-level text as it is produced (only errors are wanted).
    discard_top: bool,
    /// Collect the referenced names into `used` and `unset`.
    record: bool,
    src: &'a str,
    pos: usize,
    /// The per-word size bound (see [`Limits`]).
    limit: usize,
    source: Source<'a>,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
}

/// Accumulates words the way BuildKit splits them: whitespace from unquoted text or from
/// variable values separates words; quoted and escaped text never does.
#[derive(Default)]
struct Words {
    /// Off for single-word expansion and nested `${...}` words, whose split is never used.
    enabled: bool,
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if !self.enabled {
            return;
        }
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        if !self.enabled {
            return;
        }
        self.buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        self.buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// A `${name<modifier>word}` modifier as written, for messages: `-`, `:-`, `#`, ...
struct Modifier {
    colon: bool,
    ch: char,
}

impl std::fmt::Display for Modifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.colon {
            f.write_str(":")?;
        }
        write!(f, "{}", self.ch)
    }
}

impl<'a> State<'a> {
    fn new(lx: &'a Lexer, src: &'a str, source: Source<'a>, split: bool) -> Self {
        State {
            lx,
            split,
            discard_top: false,
            record: true,
            src,
            pos: 0,
            limit: limits::per_word(),
            source,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        let b = *self.src.as_bytes().get(self.pos)?;
        if b.is_ascii() {
            Some(char::from(b))
        } else {
            self.src[self.pos..].chars().next()
        }
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Consume the text up to the first character `special` accepts (or the end).
    fn take_plain(&mut self, special: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.src[self.pos..];
        let len = rest.find(special).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn err(&self, message: impl Into<String>) -> ExpandError {
        ExpandError {
            message: message.into(),
            offset: self.pos,
            kind: ExpandErrorKind::Syntax,
        }
    }

    /// Fail when text being built has grown past the per-word bound.
    fn bounded(&self, len: usize) -> Result<(), ExpandError> {
        if len <= self.limit {
            return Ok(());
        }
        Err(ExpandError {
            kind: ExpandErrorKind::TooLarge,
            ..self.err(limits::too_large(self.limit))
        })
    }

    fn lookup(&mut self, name: &str) -> Option<Cow<'static, str>> {
        let env = match self.source {
            Source::Placeholder => return Some(Cow::Borrowed("x")),
            Source::Env(env) => env,
        };
        let value = env.lookup(name);
        if !self.record {
            return value.map(Cow::Owned);
        }
        let set = if value.is_some() {
            &mut self.used
        } else {
            &mut self.unset
        };
        if !set.contains(name) {
            set.insert(name.to_string());
        }
        value.map(Cow::Owned)
    }

    /// Process until `stop` (consumed) or the end of input.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        depth: usize,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let discard = self.discard_top && stop.is_none();
        let mut result = String::new();
        let mut words = Words {
            enabled: self.split && stop.is_none(),
            ..Words::default()
        };
        let quotes = !self.lx.skip_process_quotes;
        let escape = self.lx.escape;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let start = result.len();
            match ch {
                '$' => {
                    self.dollar(depth, &mut result)?;
                    words.add_string(&result[start..]);
                }
                '\'' if quotes => {
                    self.single_quote(&mut result)?;
                    words.add_raw_string(&result[start..]);
                }
                '"' if quotes => {
                    self.double_quote(raw_escapes, depth, &mut result)?;
                    words.add_raw_string(&result[start..]);
                }
                _ if ch == escape => {
                    self.next();
                    if raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
                _ => {
                    // A run of ordinary characters, up to the next one with a meaning.
                    let plain = self.take_plain(|c| {
                        c == '$'
                            || (quotes && (c == '\'' || c == '"'))
                            || c == escape
                            || Some(c) == stop
                    });
                    words.add_string(plain);
                    if !discard {
                        result.push_str(plain);
                    }
                }
            }
            if discard {
                result.clear();
            }
            self.bounded(result.len())?;
        }
        if let Some(stop) = stop {
            return Err(self.err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self, out: &mut String) -> Result<(), ExpandError> {
        self.next(); // '\''
        if self.lx.raw_quotes {
            out.push('\'');
        }
        let text = self.take_plain(|c| c == '\'');
        out.push_str(text);
        if self.next().is_none() {
            return Err(
                self.err("unexpected end of statement while looking for matching single-quote")
            );
        }
        if self.lx.raw_quotes {
            out.push('\'');
        }
        Ok(())
    }

    fn double_quote(
        &mut self,
        raw_escapes: bool,
        depth: usize,
        out: &mut String,
    ) -> Result<(), ExpandError> {
        self.next(); // '"'
        if self.lx.raw_quotes {
            out.push('"');
        }
        let escape = self.lx.escape;
        loop {
            match self.peek() {
                None => {
                    return Err(self.err(
                        "unexpected end of statement while looking for matching double-quote",
                    ));
                }
                Some('"') => {
                    self.next();
                    if self.lx.raw_quotes {
                        out.push('"');
                    }
                    return Ok(());
                }
                Some('$') => {
                    self.dollar(depth, out)?;
                    self.bounded(out.len())?;
                }
                Some(ch) if ch == escape => {
                    self.next();
                    if raw_escapes {
                        out.push(ch);
                    }
                    match self.peek() {
                        None => continue,
                        Some(c) if c == '"' || c == '$' || c == escape => {
                            self.next();
                            out.push(c);
                        }
                        Some(_) => out.push(ch),
                    }
                }
                Some(_) => {
                    let plain = self.take_plain(|c| c == '"' || c == '$' || c == escape);
                    out.push_str(plain);
                }
            }
        }
    }

    fn name(&mut self) -> &'a str {
        let rest = &self.src[self.pos..];
        let len = name_len(rest);
        self.pos += len;
        &rest[..len]
    }

    fn dollar(&mut self, depth: usize, out: &mut String) -> Result<(), ExpandError> {
        if depth >= MAX_NESTING {
            return Err(self.err(format!(
                "variable substitutions nest deeper than {MAX_NESTING} levels"
            )));
        }
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                out.push('$');
                return Ok(());
            }
            match self.lookup(name) {
                Some(v) => out.push_str(&v),
                None if self.lx.skip_unset => {
                    out.push('$');
                    out.push_str(name);
                }
                None => {}
            }
            return Ok(());
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(self.err("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(self.err("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err(self.err("syntax error: missing '}'"));
        };
        let mut modifier = Modifier { colon: false, ch };
        match ch {
            '}' => {
                match self.lookup(name) {
                    Some(v) => out.push_str(&v),
                    None if self.lx.skip_unset => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                    None => {}
                }
                return Ok(());
            }
            '/' => return self.replace(name, depth, out),
            ':' => {
                let Some(next) = self.next() else {
                    return Err(self.err("syntax error: missing '}'"));
                };
                modifier = Modifier {
                    colon: true,
                    ch: next,
                };
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => {
                return Err(self.err(format!("unsupported modifier ({modifier}) in substitution")));
            }
        }
        let Modifier {
            colon: null_is_unset,
            ch,
        } = modifier;
        let raw = ch == '#' || ch == '%';
        if null_is_unset && raw {
            return Err(self.err(format!("unsupported modifier ({modifier}) in substitution")));
        }
        let (mut word, _) = self.process_until(Some('}'), raw, depth + 1).map_err(|e| {
            if self.peek().is_none() {
                self.err("syntax error: missing '}'")
            } else {
                e
            }
        })?;
        let value = self.lookup(name);
        if self.lx.skip_unset && value.is_none() {
            use std::fmt::Write;
            let _ = write!(out, "${{{name}{modifier}{word}}}");
            return Ok(());
        }
        let empty = value
            .as_deref()
            .is_none_or(|s| null_is_unset && s.is_empty());
        match ch {
            '-' => {
                if empty {
                    out.push_str(&word);
                } else if let Some(v) = value {
                    out.push_str(&v);
                }
                Ok(())
            }
            '+' => {
                if !empty {
                    out.push_str(&word);
                }
                Ok(())
            }
            '?' => match value {
                None => Err(self.err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                ))),
                Some(v) if null_is_unset && v.is_empty() => Err(self.err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                ))),
                Some(v) => {
                    out.push_str(&v);
                    Ok(())
                }
            },
            '%' | '#' => {
                let greedy = word.starts_with(ch);
                if greedy {
                    word.remove(0);
                }
                let value = value.unwrap_or_default();
                let trimmed = if ch == '%' {
                    pattern::trim_suffix(&word, &value, greedy)
                } else {
                    pattern::trim_prefix(&word, &value, greedy)
                };
                out.push_str(&trimmed.map_err(|m| self.err(m))?);
                Ok(())
            }
            _ => Err(self.err(format!("unsupported modifier ({modifier}) in substitution"))),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str, depth: usize, out: &mut String) -> Result<(), ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pat, _) = self
            .process_until(Some('/'), true, depth + 1)
            .map_err(|e| {
                if self.peek().is_none() {
                    self.err("syntax error: missing '/' in ${}")
                } else {
                    e
                }
            })?;
        let (replacement, _) = self
            .process_until(Some('}'), true, depth + 1)
            .map_err(|e| {
                if self.peek().is_none() {
                    self.err("syntax error: missing '}'")
                } else {
                    e
                }
            })?;
        let value = self.lookup(name);
        let replaced = match value {
            None if self.lx.skip_unset => Ok(format!("${{{name}/{pat}/{replacement}}}")),
            None => pattern::replace("", &pat, &replacement, all, self.limit),
            Some(value) => pattern::replace(&value, &pat, &replacement, all, self.limit),
        }
        .map_err(|e| match e {
            pattern::ReplaceError::Pattern(m) => self.err(m),
            pattern::ReplaceError::TooLarge => ExpandError {
                kind: ExpandErrorKind::TooLarge,
                ..self.err(limits::too_large(self.limit))
            },
        })?;
        out.push_str(&replaced);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![("A", "a b"), ("E", ""), ("P", "/usr/local/bin")]
    }

    fn ex(w: &str) -> String {
        let e = env();
        expand_word(w, &e, '\\').unwrap().value
    }

    #[test]
    fn modifiers_follow_buildkit() {
        assert_eq!(ex("${E:-d}"), "d");
        assert_eq!(ex("${E-d}"), "");
        assert_eq!(ex("${U-d}"), "d");
        assert_eq!(ex("${A:+x}"), "x");
        assert_eq!(ex("${E+x}"), "x");
        assert_eq!(ex("${E:+x}"), "");
        assert_eq!(ex("${P#*/}"), "usr/local/bin");
        assert_eq!(ex("${P##*/}"), "bin");
        assert_eq!(ex("${P%/*}"), "/usr/local");
        assert_eq!(ex("${P%%/l*}"), "/usr");
        assert_eq!(ex("${P/local/x}"), "/usr/x/bin");
        assert_eq!(ex("${P//l/L}"), "/usr/LocaL/bin");
    }

    #[test]
    fn reports_used_and_unset_names() {
        let e = env();
        let r = expand_word("$A ${B:-$C}", &e, '\\').unwrap();
        assert_eq!(r.used.iter().collect::<Vec<_>>(), ["A"]);
        assert_eq!(r.unset.iter().collect::<Vec<_>>(), ["B", "C"]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut w = String::new();
        for _ in 0..10_000 {
            w.push_str("${a:-");
        }
        w.push('x');
        for _ in 0..10_000 {
            w.push('}');
        }
        let err = check_syntax(&w, '\\').unwrap_err();
        assert!(err.message.contains("nest"), "{err}");
    }

    /// A word that grows past the per-word bound fails as too large, wherever the growth
    /// comes from: repeated references, or a replacement that multiplies the value.
    #[test]
    fn expansion_is_bounded_per_word() {
        let _scope = budget(Limits {
            per_word: 1000,
            per_build: usize::MAX,
        });
        let big = "x".repeat(400);
        let env = vec![("B", big.as_str()), ("R", "yyyy")];
        assert_eq!(expand_word("$B$B", &env, '\\').unwrap().value.len(), 800);
        let err = expand_word("$B$B$B", &env, '\\').unwrap_err();
        assert!(err.is_too_large(), "{err:?}");
        assert!(err.message.contains(ENV_PER_WORD), "{err}");
        let err = expand_word("\"$B${B}$B\"", &env, '\\').unwrap_err();
        assert!(err.is_too_large(), "{err:?}");
        let err = expand_words("${B//x/$R}", &env, '\\').unwrap_err();
        assert!(err.is_too_large(), "{err:?}");
        assert_eq!(
            expand_word("${B//x/y}", &env, '\\').unwrap().value.len(),
            400
        );
        // A syntax error stays a syntax error.
        assert!(!expand_word("${B", &env, '\\').unwrap_err().is_too_large());
    }

    /// Inside a budget scope, all expansions together are bounded too.
    #[test]
    fn expansion_is_bounded_per_build() {
        let big = "x".repeat(400);
        let env = vec![("B", big.as_str())];
        let _scope = budget(Limits {
            per_word: 1000,
            per_build: 1000,
        });
        expand_word("$B", &env, '\\').unwrap();
        expand_value("$B", &env, '\\').unwrap();
        let err = expand_word("$B", &env, '\\').unwrap_err();
        assert!(
            err.is_too_large() && err.message.contains(ENV_PER_BUILD),
            "{err}"
        );
    }

    #[test]
    fn question_mark_fails_on_unset() {
        let e = env();
        let err = expand_word("${U?need U}", &e, '\\').unwrap_err();
        assert_eq!(err.message, "U: need U");
        let err = expand_word("${E:?}", &e, '\\').unwrap_err();
        assert_eq!(err.message, "E: is not allowed to be empty");
    }

    /// Words built from the characters the lexer cares about, plus plain and non-ASCII ones.
    fn tricky_word() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "\"", "'", "\\", "`", "a", "B_1",
            " ", "é", "${", "$A", "${A:-x}", "${B}", "}}",
        ]);
        prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The syntax check's fast path never accepts what the lexer refuses (nor refuses
        /// what it accepts): both give the same answer.
        #[test]
        fn fast_syntax_check_agrees_with_the_lexer(w in tricky_word()) {
            for escape in ['\\', '`'] {
                let lx = Lexer::new(escape);
                let mut st = State::new(&lx, &w, Source::Placeholder, false);
                let full = st.process_until(None, false, 0).map(|_| ());
                proptest::prop_assert_eq!(check_syntax(&w, escape), full);
            }
        }

        /// Every name an expansion looks up is among the candidate names, so the linter may
        /// skip the expansion when all candidates are defined.
        #[test]
        fn candidate_names_cover_every_reference(w in tricky_word()) {
            let candidates: Vec<&str> = candidate_names(&w).collect();
            let none = |_: &str| None;
            for escape in ['\\', '`'] {
                if let Ok(r) = expand_word(&w, &none, escape) {
                    for name in r.referenced() {
                        proptest::prop_assert!(candidates.contains(&name), "{name} in {w:?}");
                    }
                }
            }
        }
    }
}

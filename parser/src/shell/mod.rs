//! Shell-word expansion as BuildKit's Dockerfile lexer does it: `$V`, `${V}`, the modifiers
//! `:- - :+ + :? ? # ## % %% / //`, single and double quotes, the escape character, and word
//! splitting. It is a library for the solver: the parser never expands, it only checks syntax.
//!
//! Written by hand (not with nom) because the semantics are those of a small state machine with
//! recursion through `${...}`; the recursion depth is bounded by [`MAX_NESTING`].

mod pattern;

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// A syntax or `${V?message}` error, with the byte offset in the word where it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    pub message: String,
    pub offset: usize,
}

/// Expand `word` as one word (BuildKit's `ProcessWord`): quotes are removed, spaces kept.
/// `words` is left empty.
pub fn expand_word(word: &str, env: &dyn Env, escape: char) -> Result<Expanded, ExpandError> {
    Lexer::new(escape).run(word, env, false)
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
    if !word.contains(['$', '\'', '"', escape]) {
        return Ok(());
    }
    let env = |_: &str| Some("x".to_string());
    Lexer::new(escape).run(word, &env, false).map(|_| ())
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
        let mut st = State {
            lx: self,
            split,
            src: word,
            pos: 0,
            env,
            used: BTreeSet::new(),
            unset: BTreeSet::new(),
        };
        let (value, words) = st.process_until(None, self.raw_escapes, 0)?;
        Ok(Expanded {
            value,
            words,
            used: st.used,
            unset: st.unset,
        })
    }
}

struct State<'a> {
    lx: &'a Lexer,
    /// Collect split words (top level only).
    split: bool,
    src: &'a str,
    pos: usize,
    env: &'a dyn Env,
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

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn err(&self, message: impl Into<String>) -> ExpandError {
        ExpandError {
            message: message.into(),
            offset: self.pos,
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.used.insert(name.to_string());
                Some(v)
            }
            None => {
                self.unset.insert(name.to_string());
                None
            }
        }
    }

    /// Process until `stop` (consumed) or the end of input.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        depth: usize,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words {
            enabled: self.split && stop.is_none(),
            ..Words::default()
        };
        let quotes = !self.lx.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar(depth)?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' if quotes => {
                    let tmp = self.single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if quotes => {
                    let tmp = self.double_quote(raw_escapes, depth)?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lx.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(self.err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(self.err(
                        "unexpected end of statement while looking for matching single-quote",
                    ));
                }
                Some('\'') => {
                    if self.lx.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quote(&mut self, raw_escapes: bool, depth: usize) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            out.extend(open);
        }
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
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar(depth)?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lx.escape {
                        if raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lx.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn dollar(&mut self, depth: usize) -> Result<String, ExpandError> {
        if depth >= MAX_NESTING {
            return Err(self.err(format!(
                "variable substitutions nest deeper than {MAX_NESTING} levels"
            )));
        }
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(self.err("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(self.err("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else {
            return Err(self.err("syntax error: missing '}'"));
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v,
                    None if self.lx.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.replace(&name, depth),
            ':' => {
                null_is_unset = true;
                let Some(next) = self.next() else {
                    return Err(self.err("syntax error: missing '}'"));
                };
                ch = next;
                chs.push(ch);
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(self.err(format!("unsupported modifier ({chs}) in substitution"))),
        }
        let raw = ch == '#' || ch == '%';
        if null_is_unset && raw {
            return Err(self.err(format!("unsupported modifier ({chs}) in substitution")));
        }
        let (mut word, _) = self.process_until(Some('}'), raw, depth + 1).map_err(|e| {
            if self.peek().is_none() {
                self.err("syntax error: missing '}'")
            } else {
                e
            }
        })?;
        let value = self.lookup(&name);
        if self.lx.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = |v: &Option<String>| v.as_deref().is_none_or(|s| null_is_unset && s.is_empty());
        match ch {
            '-' => Ok(if empty(&value) {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty(&value) { String::new() } else { word }),
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
                Some(v) => Ok(v),
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
                trimmed.map_err(|m| self.err(m))
            }
            _ => Err(self.err(format!("unsupported modifier ({chs}) in substitution"))),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str, depth: usize) -> Result<String, ExpandError> {
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
        let Some(value) = value else {
            if self.lx.skip_unset {
                return Ok(format!("${{{name}/{pat}/{replacement}}}"));
            }
            return pattern::replace("", &pat, &replacement, all).map_err(|m| self.err(m));
        };
        pattern::replace(&value, &pat, &replacement, all).map_err(|m| self.err(m))
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

    #[test]
    fn question_mark_fails_on_unset() {
        let e = env();
        let err = expand_word("${U?need U}", &e, '\\').unwrap_err();
        assert_eq!(err.message, "U: need U");
        let err = expand_word("${E:?}", &e, '\\').unwrap_err();
        assert_eq!(err.message, "E: is not allowed to be empty");
    }
}

//! Variable scopes and word expansion for the planner: an ordered name→value list (ENV and ARG
//! values as BuildKit keeps them in the build state), and helpers that expand a Dockerfile
//! word while recording which variables it used (they enter the step's cache key).

use std::collections::BTreeMap;

use rbuild_parser::Word;
use rbuild_parser::shell::{self, Lexer};

use super::error::PlanError;

/// An ordered variable scope. A declared variable without a value is unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    entries: Vec<(String, Option<String>)>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn is_declared(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// Add or replace, keeping the original position (BuildKit's AddOrReplace).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = Some(value),
            None => self.entries.push((name, Some(value))),
        }
    }

    /// Declare without a value (an `ARG NAME` that got none): known, but unset.
    pub fn declare(&mut self, name: impl Into<String>) {
        let name = name.into();
        if !self.is_declared(&name) {
            self.entries.push((name, None));
        }
    }

    /// The variables that have a value, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter_map(|(n, v)| v.as_deref().map(|v| (n.as_str(), v)))
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name: &str| self.get(name).map(str::to_string)
    }
}

fn record(vars: &Vars, expanded: &shell::Expanded, used: &mut BTreeMap<String, Option<String>>) {
    for name in expanded.used.iter().chain(expanded.unset.iter()) {
        used.insert(name.clone(), vars.get(name).map(str::to_string));
    }
}

fn expansion_error(word: &Word, err: shell::ExpandError) -> PlanError {
    if err.is_too_large() {
        return PlanError::ExpansionTooLarge {
            message: err.message,
            span: word.span.into(),
        };
    }
    PlanError::Expansion {
        word: word.value.clone(),
        message: err.message,
        span: word.span.into(),
    }
}

/// Expand one word (quotes removed), recording the variables it references.
pub fn word(
    vars: &Vars,
    word: &Word,
    escape: char,
    used: &mut BTreeMap<String, Option<String>>,
) -> Result<String, PlanError> {
    let lookup = vars.lookup();
    let expanded =
        shell::expand_word(&word.value, &lookup, escape).map_err(|e| expansion_error(word, e))?;
    record(vars, &expanded, used);
    Ok(expanded.value)
}

/// Expand and split into words (EXPOSE, VOLUME, ...).
pub fn words(
    vars: &Vars,
    word: &Word,
    escape: char,
    used: &mut BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, PlanError> {
    let lookup = vars.lookup();
    let expanded =
        shell::expand_words(&word.value, &lookup, escape).map_err(|e| expansion_error(word, e))?;
    record(vars, &expanded, used);
    Ok(expanded.words)
}

/// Expand text where quotes are ordinary characters (heredoc bodies of COPY/ADD, as BuildKit
/// does with its raw expansion).
pub fn raw(
    vars: &Vars,
    text: &Word,
    used: &mut BTreeMap<String, Option<String>>,
) -> Result<String, PlanError> {
    let lookup = vars.lookup();
    let mut lexer = Lexer::new('\\');
    lexer.skip_process_quotes = true;
    let expanded = lexer
        .expand(&text.value, &lookup)
        .map_err(|e| expansion_error(text, e))?;
    record(vars, &expanded, used);
    Ok(expanded.value)
}

/// Names of the variables a word references (for error messages).
pub fn referenced(vars: &Vars, word: &Word, escape: char) -> Vec<String> {
    let lookup = vars.lookup();
    match shell::expand_word(&word.value, &lookup, escape) {
        Ok(expanded) => expanded.used.into_iter().chain(expanded.unset).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_parser::Span;

    fn w(text: &str) -> Word {
        Word::new(text, Span::new(0, text.len()))
    }

    /// Expansion records used and unset variables with their values.
    #[test]
    fn records_used_variables() {
        let mut vars = Vars::default();
        vars.set("A", "1");
        vars.declare("B");
        let mut used = BTreeMap::new();
        let out = word(&vars, &w("${A}-${B:-x}-$C"), '\\', &mut used).unwrap();
        assert_eq!(out, "1-x-");
        assert_eq!(used.get("A"), Some(&Some("1".to_string())));
        assert_eq!(used.get("B"), Some(&None));
        assert_eq!(used.get("C"), Some(&None));
    }

    /// Replacing a variable keeps its position; declared-only variables are unset.
    #[test]
    fn set_and_declare() {
        let mut vars = Vars::default();
        vars.set("A", "1");
        vars.set("B", "2");
        vars.set("A", "3");
        vars.declare("C");
        assert_eq!(
            vars.pairs().collect::<Vec<_>>(),
            vec![("A", "3"), ("B", "2")]
        );
        assert!(vars.is_declared("C") && vars.get("C").is_none());
    }

    /// Raw expansion keeps quotes.
    #[test]
    fn raw_keeps_quotes() {
        let mut vars = Vars::default();
        vars.set("NAME", "world");
        let out = raw(&vars, &w("echo \"hello $NAME\"\n"), &mut BTreeMap::new()).unwrap();
        assert_eq!(out, "echo \"hello world\"\n");
    }

    /// A `${V:?msg}` failure becomes a pointed expansion error.
    #[test]
    fn required_variable_error() {
        let vars = Vars::default();
        let err = word(&vars, &w("${V:?is required}"), '\\', &mut BTreeMap::new()).unwrap_err();
        assert!(matches!(err, PlanError::Expansion { .. }), "{err:?}");
    }
}

//! Instruction flags (`--name=value`) as BuildKit's `BFlags` reads them: the allowed set per
//! instruction, bool/string/repeatable kinds, duplicates, missing values, and "did you mean"
//! help for unknown names. Each flag keeps the span of its `--name=value` text.

use crate::ast::Flag;
use crate::diagnostics::{self, ParseDiagnostic};
use crate::span::{Span, Word};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    Strings,
}

/// The accepted flags in source order: name, value (borrowed from the flag word; bools are
/// normalised to `true`/`false`) and the span of `--name=value`. Instructions take at most a
/// handful of flags, so a list beats a map.
#[derive(Debug, Default)]
pub(crate) struct Flags<'a> {
    values: Vec<(&'static str, &'a str, Span)>,
}

/// Parse `words` against the flags `spec` allows for `instr`.
pub(crate) fn parse<'a>(
    words: &'a [Word],
    instr: &str,
    spec: &[(&'static str, Kind)],
) -> Result<Flags<'a>, ParseDiagnostic> {
    let mut out = Flags {
        values: Vec::with_capacity(words.len()),
    };
    for w in words {
        let Some(arg) = w.value.strip_prefix("--") else {
            return Err(diagnostics::flag_not_dashed(w.span, &w.value));
        };
        let (name, value) = match arg.find('=') {
            Some(i) => (&arg[..i], Some(&arg[i + 1..])),
            None => (arg, None),
        };
        let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            return Err(diagnostics::unknown_flag(w.span, instr, name, &known));
        };
        if kind != Kind::Strings && out.values.iter().any(|(k, _, _)| *k == key) {
            return Err(diagnostics::flag_duplicate(w.span, name));
        }
        let value: &'a str = match kind {
            Kind::Bool => match value {
                Some("") => return Err(diagnostics::flag_missing_value(w.span, name)),
                None => "true",
                Some(v) if v.eq_ignore_ascii_case("true") => "true",
                Some(v) if v.eq_ignore_ascii_case("false") => "false",
                Some(v) => return Err(diagnostics::flag_bool(w.span, name, v)),
            },
            Kind::Str | Kind::Strings => match value {
                Some(v) => v,
                None => return Err(diagnostics::flag_missing_value(w.span, name)),
            },
        };
        out.values.push((key, value, w.span));
    }
    Ok(out)
}

impl Flags<'_> {
    /// The first value given for `name`.
    fn first(&self, name: &str) -> Option<(&str, Span)> {
        self.values
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, v, span)| (*v, *span))
    }

    pub fn string(&self, name: &str) -> Option<Flag<String>> {
        let (v, span) = self.first(name)?;
        Some(Flag {
            raw: v.to_string(),
            value: Some(v.to_string()),
            span,
        })
    }

    pub fn strings(&self, name: &str) -> Vec<Flag<String>> {
        self.values
            .iter()
            .filter(|(k, _, _)| *k == name)
            .map(|(_, v, span)| Flag {
                raw: v.to_string(),
                value: Some(v.to_string()),
                span: *span,
            })
            .collect()
    }

    pub fn bool(&self, name: &str) -> Option<Flag<bool>> {
        let (v, span) = self.first(name)?;
        Some(Flag {
            raw: v.to_string(),
            value: Some(v == "true"),
            span,
        })
    }

    /// A string flag converted with `f` when it holds no variable; `f`'s error becomes a
    /// diagnostic at the flag.
    pub fn typed<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str, Span) -> Result<T, ParseDiagnostic>,
    ) -> Result<Option<Flag<T>>, ParseDiagnostic> {
        let Some((raw, span)) = self.first(name) else {
            return Ok(None);
        };
        let value = if raw.contains('$') {
            None
        } else {
            Some(f(raw, span)?)
        };
        Ok(Some(Flag {
            raw: raw.to_string(),
            value,
            span,
        }))
    }
}

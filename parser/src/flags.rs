//! Instruction flags (`--name=value`) as BuildKit's `BFlags` reads them: the allowed set per
//! instruction, bool/string/repeatable kinds, duplicates, missing values, and "did you mean"
//! help for unknown names. Each flag keeps the span of its `--name=value` text.

use std::collections::HashMap;

use crate::ast::Flag;
use crate::diagnostics::{self, ParseDiagnostic};
use crate::span::{Span, Word};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    Strings,
}

#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, Vec<(String, Span)>>,
}

/// Parse `words` against the flags `spec` allows for `instr`.
pub(crate) fn parse(
    words: &[Word],
    instr: &str,
    spec: &[(&'static str, Kind)],
) -> Result<Flags, ParseDiagnostic> {
    let mut out = Flags::default();
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
        let seen = out.values.entry(key).or_default();
        if !seen.is_empty() && kind != Kind::Strings {
            return Err(diagnostics::flag_duplicate(w.span, name));
        }
        let value = match kind {
            Kind::Bool => match value {
                Some("") => return Err(diagnostics::flag_missing_value(w.span, name)),
                None => "true".to_string(),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => return Err(diagnostics::flag_bool(w.span, name, v)),
                },
            },
            Kind::Str | Kind::Strings => match value {
                Some(v) => v.to_string(),
                None => return Err(diagnostics::flag_missing_value(w.span, name)),
            },
        };
        seen.push((value, w.span));
    }
    Ok(out)
}

impl Flags {
    pub fn string(&self, name: &str) -> Option<Flag<String>> {
        let (v, span) = self.values.get(name)?.first()?;
        Some(Flag {
            raw: v.clone(),
            value: Some(v.clone()),
            span: *span,
        })
    }

    pub fn strings(&self, name: &str) -> Vec<Flag<String>> {
        self.values
            .get(name)
            .map(|v| {
                v.iter()
                    .map(|(v, span)| Flag {
                        raw: v.clone(),
                        value: Some(v.clone()),
                        span: *span,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn bool(&self, name: &str) -> Option<Flag<bool>> {
        let (v, span) = self.values.get(name)?.first()?;
        Some(Flag {
            raw: v.clone(),
            value: Some(v == "true"),
            span: *span,
        })
    }

    /// A string flag converted with `f` when it holds no variable; `f`'s error becomes a
    /// diagnostic at the flag.
    pub fn typed<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str, Span) -> Result<T, ParseDiagnostic>,
    ) -> Result<Option<Flag<T>>, ParseDiagnostic> {
        let Some(flag) = self.string(name) else {
            return Ok(None);
        };
        let value = if flag.raw.contains('$') {
            None
        } else {
            Some(f(&flag.raw, flag.span)?)
        };
        Ok(Some(Flag {
            raw: flag.raw,
            value,
            span: flag.span,
        }))
    }
}

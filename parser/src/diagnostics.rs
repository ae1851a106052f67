//! Every message the parser emits, and `lint()`, the constructor of the linter's warnings
//! (whose messages live with their rules in `lint/`). Errors carry codes
//! `rbuild::parse::<name>`, warnings `rbuild::lint::<RuleName>` (BuildKit's rule names); each
//! has a label at the exact span and, where we can tell, a help line.
//!
//! Errors BuildKit's own parser would refuse are marked `syntax`; only they block
//! `rbuild parse --dump`. Deliberate differences from BuildKit: a misplaced `# escape=` is an
//! error (BuildKit silently ignores it); stage references that point forward are errors; bind,
//! cache and tmpfs mounts need `target`; a continuation at end of file is a warning.

use std::fmt::Display;

use serde::Serialize;

use crate::lint::Rule;
use crate::span::{Span, Word};

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a Dockerfile, renderable by miette.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ParseDiagnostic {
    /// `rbuild::parse::<name>` or `rbuild::lint::<RuleName>`.
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
    /// The lint rule of a warning (what `# check=skip=` names); serialized as its name.
    pub rule: Option<Rule>,
    /// 1-based position of `span.start`, filled in by [`crate::parse`].
    pub line: usize,
    pub column: usize,
    pub url: Option<String>,
    /// A syntax error BuildKit's parser itself would refuse (as opposed to an instruction-level
    /// error or a lint): the AST dump is impossible only when one of these exists.
    pub syntax: bool,
}

impl ParseDiagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl miette::Diagnostic for ParseDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        Some(Box::new(&self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn Display + 'a>)
    }
    fn url<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        self.url
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn Display + 'a>)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some(self.label.clone()), self.span),
        )))
    }
}

fn error(name: &str, span: Span, message: String, label: &str) -> ParseDiagnostic {
    ParseDiagnostic {
        code: format!("rbuild::parse::{name}"),
        severity: Severity::Error,
        message,
        span,
        label: label.to_string(),
        help: None,
        rule: None,
        line: 0,
        column: 0,
        url: None,
        syntax: false,
    }
}

trait WithHelp {
    fn help(self, help: impl Into<String>) -> Self;
    fn maybe_help(self, help: Option<String>) -> Self;
}

impl WithHelp for ParseDiagnostic {
    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}

/// The closest candidate by Jaro-Winkler similarity, if it is close enough to suggest.
pub fn suggest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

// ---- input-level errors -------------------------------------------------------------------

pub(crate) fn empty_file(span: Span, only_comments: bool) -> ParseDiagnostic {
    let d = error(
        "empty_file",
        span,
        "file with no instructions".into(),
        "no instruction here",
    );
    if only_comments {
        d.help("the file holds only comments; a Dockerfile needs at least a `FROM` instruction")
    } else {
        d.help("a Dockerfile needs at least a `FROM` instruction")
    }
}

pub(crate) fn invalid_utf8(offset: usize) -> ParseDiagnostic {
    error(
        "invalid_utf8",
        Span::new(offset, offset + 1),
        format!("the Dockerfile is not valid UTF-8 (byte offset {offset})"),
        "invalid byte",
    )
    .help("save the file as UTF-8")
}

pub(crate) fn nul_byte(offset: usize) -> ParseDiagnostic {
    error(
        "nul_byte",
        Span::new(offset, offset + 1),
        format!("the Dockerfile contains a NUL byte (byte offset {offset})"),
        "NUL byte",
    )
    .help("is this a binary file? remove the NUL byte")
}

// ---- directives ---------------------------------------------------------------------------

pub(crate) fn duplicate_directive(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "duplicate_directive",
        span,
        format!("only one `{name}` parser directive can be used"),
        "repeated directive",
    )
    .help("remove one of them")
}

pub(crate) fn invalid_escape(span: Span, value: &str) -> ParseDiagnostic {
    error(
        "invalid_escape",
        span,
        format!("invalid escape token `{value}` does not match ` or \\"),
        "escape token",
    )
    .help("use `# escape=\\` (the default) or `# escape=``")
}

pub(crate) fn misplaced_escape(span: Span) -> ParseDiagnostic {
    error(
        "misplaced_directive",
        span,
        "the `escape` parser directive must come before any comment, blank line or instruction"
            .into(),
        "ignored here",
    )
    .help("move it to the first line of the file")
}

pub(crate) fn invalid_check_directive(span: Span, detail: &str) -> ParseDiagnostic {
    error(
        "invalid_check_directive",
        span,
        format!("invalid `check` directive: {detail}"),
        "check directive",
    )
    .help("use e.g. `# check=skip=JSONArgsRecommended,StageNameCasing;error=true`")
}

// ---- instructions -------------------------------------------------------------------------

pub(crate) fn unknown_instruction(word: &Word, known: &[&str]) -> ParseDiagnostic {
    let upper = word.value.to_uppercase();
    let upper = shorten(&upper, SHOWN);
    // Only a short word can be a typo worth a suggestion (and the similarity is quadratic).
    let known = if word.value.len() <= 64 { known } else { &[] };
    error(
        "unknown_instruction",
        word.span,
        format!("unknown instruction: `{upper}`"),
        "not a Dockerfile instruction",
    )
    .maybe_help(suggest(&word.value, known).map(|s| format!("did you mean {s}?")))
}

pub(crate) fn before_from(word: &Word) -> ParseDiagnostic {
    error(
        "instruction_before_from",
        word.span,
        format!(
            "`{}` cannot come before the first `FROM`",
            word.value.to_uppercase()
        ),
        "no build stage yet",
    )
    .help("only `ARG` and parser directives may precede the first `FROM`; add a `FROM` line above")
}

pub(crate) fn at_least_one_argument(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "missing_argument",
        span,
        format!("`{instr}` requires at least one argument"),
        "argument missing",
    )
}

pub(crate) fn exactly_one_argument(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "wrong_argument_count",
        span,
        format!("`{instr}` requires exactly one argument"),
        "here",
    )
    .help("quote the argument if it contains spaces")
}

pub(crate) fn no_destination(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "missing_argument",
        span,
        format!(
            "`{instr}` requires at least two arguments, but only one was provided; the destination could not be determined"
        ),
        "only a source",
    )
    .help(format!("write `{instr} <src>... <dest>`"))
}

pub(crate) fn from_arguments(span: Span) -> ParseDiagnostic {
    error(
        "wrong_argument_count",
        span,
        "`FROM` requires either one or three arguments".into(),
        "here",
    )
    .help("write `FROM <image>` or `FROM <image> AS <name>`")
}

pub(crate) fn invalid_stage_name(word: &Word) -> ParseDiagnostic {
    error(
        "invalid_stage_name",
        word.span,
        format!(
            "invalid name for build stage: `{}`, name can't start with a number or contain symbols",
            word.value
        ),
        "stage name",
    )
    .help("stage names start with a letter and contain only letters, digits, `-`, `_` and `.`")
}

pub(crate) fn not_string_array(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "json_not_strings",
        span,
        "when using JSON array syntax, arrays must be comprised of strings only".into(),
        "JSON array",
    )
    .help(format!("quote every element of the `{instr}` array"))
}

pub(crate) fn shell_not_json(span: Span) -> ParseDiagnostic {
    error(
        "shell_requires_json",
        span,
        "`SHELL` requires the arguments to be in JSON form".into(),
        "not a JSON array",
    )
    .help("write e.g. `SHELL [\"/bin/bash\", \"-c\"]`")
}

pub(crate) fn key_value_two_args(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "invalid_key_value",
        span,
        format!("`{instr}` must have two arguments"),
        "name without a value",
    )
    .help(format!("write `{instr} name=value`"))
}

pub(crate) fn key_value_missing_equals(span: Span, word: &str) -> ParseDiagnostic {
    error(
        "invalid_key_value",
        span,
        format!(
            "syntax error - can't find = in `{}`; must be of the form: name=value",
            shorten(word, SHOWN)
        ),
        "no `=`",
    )
    .help("quote values that contain spaces: name=\"a b\"")
}

pub(crate) fn blank_name(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "blank_name",
        span,
        format!("`{instr}` names can not be blank"),
        "empty name",
    )
}

pub(crate) fn onbuild_chain(span: Span) -> ParseDiagnostic {
    error(
        "onbuild_not_allowed",
        span,
        "chaining `ONBUILD` via `ONBUILD ONBUILD` isn't allowed".into(),
        "nested ONBUILD",
    )
}

pub(crate) fn onbuild_trigger(word: &Word) -> ParseDiagnostic {
    error(
        "onbuild_not_allowed",
        word.span,
        format!(
            "`{}` isn't allowed as an `ONBUILD` trigger",
            word.value.to_uppercase()
        ),
        "not allowed here",
    )
}

pub(crate) fn volume_empty(span: Span) -> ParseDiagnostic {
    error(
        "empty_volume",
        span,
        "`VOLUME` specified can not be an empty string".into(),
        "empty path",
    )
}

pub(crate) fn healthcheck_none_args(span: Span) -> ParseDiagnostic {
    error(
        "healthcheck_none_arguments",
        span,
        "`HEALTHCHECK NONE` takes no arguments".into(),
        "unexpected",
    )
}

pub(crate) fn healthcheck_missing_cmd(span: Span) -> ParseDiagnostic {
    error(
        "missing_argument",
        span,
        "missing command after `HEALTHCHECK CMD`".into(),
        "command missing",
    )
}

pub(crate) fn healthcheck_type(word: &Word) -> ParseDiagnostic {
    error(
        "healthcheck_type",
        word.span,
        format!("unknown type `{}` in `HEALTHCHECK` (try CMD)", word.value),
        "expected CMD or NONE",
    )
    .maybe_help(suggest(&word.value, &["CMD", "NONE"]).map(|s| format!("did you mean {s}?")))
}

pub(crate) fn unterminated_heredoc(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "unterminated_heredoc",
        span,
        format!("unterminated heredoc `{name}`"),
        "heredoc starts here",
    )
    .help(format!(
        "end the heredoc with a line containing only `{name}`"
    ))
}

pub(crate) fn heredoc_destination(span: Span, instr: &str) -> ParseDiagnostic {
    error(
        "heredoc_destination",
        span,
        format!("`{instr}` cannot accept a heredoc as a destination"),
        "heredoc",
    )
}

pub(crate) fn expansion_syntax(span: Span, word: &str, detail: &str) -> ParseDiagnostic {
    error(
        "expansion_syntax",
        span,
        format!("failed to process `{}`: {detail}", shorten(word, SHOWN)),
        "here",
    )
    .help("check quotes and `${...}` substitutions; escape a literal `$` as `\\$`")
}

pub(crate) fn expansion_too_large(span: Span, detail: &str) -> ParseDiagnostic {
    error(
        "expansion_too_large",
        span,
        format!("variable expansion too large: {detail}"),
        "expands past the limit",
    )
    .help(
        "a variable that refers to itself several times grows exponentially from line to line; \
         the limits are RBUILD_EXPANSION_LIMIT (one word) and RBUILD_EXPANSION_TOTAL (the whole \
         build)",
    )
}

// ---- flags --------------------------------------------------------------------------------

pub(crate) fn unknown_flag(span: Span, instr: &str, name: &str, known: &[&str]) -> ParseDiagnostic {
    let help = suggest(name, known)
        .map(|s| format!("did you mean --{s}?"))
        .or_else(|| {
            if known.is_empty() {
                Some(format!("`{instr}` takes no flags"))
            } else {
                Some(format!(
                    "`{instr}` accepts {}",
                    known
                        .iter()
                        .map(|k| format!("--{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        });
    error(
        "unknown_flag",
        span,
        format!("unknown flag `--{name}` for `{instr}`"),
        "unknown flag",
    )
    .maybe_help(help)
}

pub(crate) fn flag_not_dashed(span: Span, arg: &str) -> ParseDiagnostic {
    error(
        "invalid_flag",
        span,
        format!("flag should start with `--`: `{}`", shorten(arg, SHOWN)),
        "not a flag",
    )
}

pub(crate) fn flag_missing_value(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "flag_missing_value",
        span,
        format!("missing a value on flag `--{name}`"),
        "no value",
    )
    .help(format!("write `--{name}=<value>`"))
}

pub(crate) fn flag_duplicate(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "duplicate_flag",
        span,
        format!("duplicate flag specified: `--{name}`"),
        "given again here",
    )
}

pub(crate) fn flag_bool(span: Span, name: &str, value: &str) -> ParseDiagnostic {
    error(
        "invalid_flag_value",
        span,
        format!("expecting boolean value for flag `--{name}`, not: `{value}`"),
        "not true or false",
    )
    .help(format!(
        "write `--{name}`, `--{name}=true` or `--{name}=false`"
    ))
}

pub(crate) fn flag_value(span: Span, name: &str, value: &str, detail: &str) -> ParseDiagnostic {
    error(
        "invalid_flag_value",
        span,
        format!(
            "invalid value `{}` for `--{name}`: {detail}",
            shorten(value, SHOWN)
        ),
        "invalid value",
    )
}

pub(crate) fn flag_choice(
    span: Span,
    name: &str,
    value: &str,
    allowed: &[&str],
) -> ParseDiagnostic {
    error(
        "invalid_flag_value",
        span,
        format!("invalid value `{value}` for `--{name}`"),
        "invalid value",
    )
    .help(match suggest(value, allowed) {
        Some(s) => format!("did you mean {s}?"),
        None => format!("expected one of: {}", allowed.join(", ")),
    })
}

pub(crate) fn invalid_duration(span: Span, name: &str, detail: &str) -> ParseDiagnostic {
    error(
        "invalid_duration",
        span,
        format!("invalid duration for `--{name}`: {detail}"),
        "duration",
    )
    .help("durations look like `30s`, `1m30s` or `500ms`")
}

pub(crate) fn duration_too_small(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "invalid_duration",
        span,
        format!("interval `{name}` cannot be less than 1ms"),
        "too small",
    )
    .help("use 0 for the default, or at least `1ms`")
}

pub(crate) fn invalid_retries(span: Span, value: &str) -> ParseDiagnostic {
    let negative = value.trim().starts_with('-') && value.trim()[1..].parse::<u64>().is_ok();
    error(
        "invalid_retries",
        span,
        if negative {
            format!("`--retries` cannot be negative ({value})")
        } else {
            format!("invalid value `{value}` for `--retries`: expected a whole number")
        },
        "retries",
    )
}

pub(crate) fn invalid_mount(span: Span, detail: &str, help: Option<String>) -> ParseDiagnostic {
    error(
        "invalid_mount",
        span,
        format!("invalid `--mount`: {detail}"),
        "here",
    )
    .maybe_help(help)
}

// ---- stages -------------------------------------------------------------------------------

pub(crate) fn stage_forward_reference(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "undefined_stage",
        span,
        format!("stage `{name}` is used before it is defined"),
        "defined later in the file",
    )
    .help("a stage can only use stages defined above it; move this stage below it")
}

pub(crate) fn stage_self_reference(span: Span, name: &str) -> ParseDiagnostic {
    error(
        "circular_stage",
        span,
        format!("circular dependency detected on stage: `{name}`"),
        "refers to its own stage",
    )
}

pub(crate) fn stage_index_undefined(span: Span, index: usize, current: usize) -> ParseDiagnostic {
    error(
        "undefined_stage",
        span,
        format!("stage index {index} is not defined before this stage (stage {current})"),
        "no such stage yet",
    )
    .help("stages are numbered from 0 in file order; use a stage defined above, or its name")
}

/// A `--from` name that is no stage but close to one: probably a typo (it would be pulled as
/// an image), so a warning rather than an error.
pub(crate) fn unknown_stage_hint(
    span: Span,
    name: &str,
    stages: &[&str],
) -> Option<ParseDiagnostic> {
    let close = suggest(name, stages)?;
    let d = lint(
        Rule::UnknownStageReference,
        span,
        format!("`{name}` is not a stage defined above; it will be used as an image name"),
    );
    Some(d.help(format!("did you mean {close}?")))
}

// ---- lint warnings ------------------------------------------------------------------------

/// A BuildKit build-check warning of `rule`, linked to the rule's docs page.
pub(crate) fn lint(rule: Rule, span: Span, message: String) -> ParseDiagnostic {
    let name = rule.as_str();
    let mut code = String::with_capacity("rbuild::lint::".len() + name.len());
    code.push_str("rbuild::lint::");
    code.push_str(name);
    ParseDiagnostic {
        code,
        severity: Severity::Warning,
        message,
        span,
        label: "here".into(),
        help: None,
        rule: Some(rule),
        line: 0,
        column: 0,
        url: rule.url().map(String::from),
        syntax: false,
    }
}

pub(crate) fn lint_help(d: ParseDiagnostic, help: impl Into<String>) -> ParseDiagnostic {
    d.help(help)
}

// ---- rendering ----------------------------------------------------------------------------

/// A source for miette reports that never shows a huge snippet: when the lines around a span
/// (with their context) exceed [`CutSource::MAX_SNIPPET`] bytes, only a window of the span's
/// own line is shown — [`CutSource::WINDOW`] bytes either side of the span's start — with its
/// true line and column. A 4 MiB line of NULs thus renders as a few hundred bytes.
#[derive(Debug, Clone)]
pub struct CutSource<T> {
    name: String,
    text: T,
}

impl<T: AsRef<str>> CutSource<T> {
    /// Snippets larger than this are cut to a window.
    pub const MAX_SNIPPET: usize = 4096;
    /// Bytes of the line shown before and after the span's start when cutting.
    pub const WINDOW: usize = 100;

    pub fn new(name: impl Into<String>, text: T) -> Self {
        CutSource {
            name: name.into(),
            text,
        }
    }

    pub fn text(&self) -> &str {
        self.text.as_ref()
    }
}

impl<T: AsRef<str> + Send + Sync> miette::SourceCode for CutSource<T> {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text = self.text.as_ref();
        let full = text.read_span(span, context_lines_before, context_lines_after)?;
        if full.data().len() <= Self::MAX_SNIPPET {
            return Ok(Box::new(miette::MietteSpanContents::new_named(
                self.name.clone(),
                full.data(),
                *full.span(),
                full.line(),
                full.column(),
                full.line_count(),
            )));
        }
        let start = span.offset().min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let mut lo = start.saturating_sub(Self::WINDOW).max(line_start);
        while !text.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = (start + span.len().min(Self::WINDOW) + Self::WINDOW).min(line_end);
        while !text.is_char_boundary(hi) {
            hi += 1;
        }
        let line = memchr::memchr_iter(b'\n', &text.as_bytes()[..line_start]).count();
        let column = text[line_start..lo].chars().count();
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            &text.as_bytes()[lo..hi],
            miette::SourceSpan::from(lo..hi),
            line,
            column,
            1,
        )))
    }
}

/// How many characters of a word written in the Dockerfile a message quotes.
pub const SHOWN: usize = 200;

/// `s` for a message: at most `max` characters, with `…` when cut.
pub fn shorten(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((i, _)) => format!("{}…", &s[..i]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::SourceCode;

    /// A short source reads as miette's own; a huge line is cut to a window around the span,
    /// with the span's true line and column.
    #[test]
    fn huge_lines_are_cut_around_the_span() {
        let short = CutSource::new("Dockerfile", "FROM a\nRUN b\n".to_string());
        let c = short.read_span(&(7..10).into(), 2, 2).unwrap();
        assert_eq!(c.data(), b"FROM a\nRUN b\n");

        let mut text = String::from("FROM scratch\n");
        text.push_str(&"é".repeat(50_000));
        text.push_str("BAD");
        text.push_str(&"x".repeat(50_000));
        text.push('\n');
        let at = text.find("BAD").unwrap();
        let cut = CutSource::new("Dockerfile", text.clone());
        let c = cut.read_span(&(at..at + 3).into(), 2, 2).unwrap();
        assert!(
            c.data().len() <= 2 * CutSource::<String>::WINDOW + 8,
            "{}",
            c.data().len()
        );
        let shown = std::str::from_utf8(c.data()).unwrap();
        assert!(shown.contains("BAD"), "{shown}");
        assert_eq!(c.line(), 1);
        assert_eq!(c.span().offset(), at - shown.find("BAD").unwrap());
        drop(c);
        // The whole report stays short.
        let d = ParseDiagnostic {
            span: Span::new(at, at + 3),
            ..error("x", Span::new(at, at + 3), "bad".into(), "here")
        };
        let report = miette::Report::new(d).with_source_code(cut);
        assert!(format!("{report:?}").len() < 2000);
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}

//! Every message the parser and the linter emit. Errors carry codes `rbuild::parse::<name>`,
//! warnings `rbuild::lint::<RuleName>` (BuildKit's rule names); each has a label at the exact
//! span and, where we can tell, a help line. Only this module builds diagnostic text.

use std::fmt::Display;

use serde::Serialize;

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
    /// The lint rule name for warnings (what `# check=skip=` names).
    pub rule: Option<&'static str>,
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
        format!("syntax error - can't find = in `{word}`; must be of the form: name=value"),
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
        format!("failed to process `{word}`: {detail}"),
        "here",
    )
    .help("check quotes and `${...}` substitutions; escape a literal `$` as `\\$`")
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
        format!("flag should start with `--`: `{arg}`"),
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
        format!("invalid value `{value}` for `--{name}`: {detail}"),
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
    let mut d = lint(
        "UnknownStageReference",
        span,
        format!("`{name}` is not a stage defined above; it will be used as an image name"),
    );
    d.url = None;
    Some(d.help(format!("did you mean {close}?")))
}

// ---- lint warnings ------------------------------------------------------------------------

/// A BuildKit build-check warning.
pub(crate) fn lint(rule: &'static str, span: Span, message: String) -> ParseDiagnostic {
    let kebab = rule
        .chars()
        .enumerate()
        .fold(String::new(), |mut acc, (i, c)| {
            if c.is_ascii_uppercase() && i > 0 {
                acc.push('-');
            }
            acc.push(c.to_ascii_lowercase());
            acc
        })
        .replace("j-s-o-n", "json");
    ParseDiagnostic {
        code: format!("rbuild::lint::{rule}"),
        severity: Severity::Warning,
        message,
        span,
        label: "here".into(),
        help: None,
        rule: Some(rule),
        line: 0,
        column: 0,
        url: Some(format!(
            "https://docs.docker.com/go/dockerfile/rule/{kebab}/"
        )),
        syntax: false,
    }
}

pub(crate) fn lint_help(d: ParseDiagnostic, help: impl Into<String>) -> ParseDiagnostic {
    d.help(help)
}

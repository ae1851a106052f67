//! rbuild-parser turns Dockerfile text into typed instructions with source spans, and owns the
//! shell-word expansion (`$V`, `${V:-x}`, ...) the solver calls. It does no I/O.
//!
//! # Public API
//!
//! - [`parse`]`(&str) -> `[`Parsed`] and [`parse_bytes`]`(&[u8]) -> `[`ParsedBytes`] (UTF-8
//!   BOM, invalid UTF-8, NUL bytes): never fail, never panic. [`Parsed::diagnostics`] holds
//!   every error (`rbuild::parse::<name>`) and lint warning (`rbuild::lint::<RuleName>`),
//!   each with a span, label and help line; [`Parsed::has_errors`] says whether to stop.
//!   A warning's [`ParseDiagnostic::rule`] is a [`Rule`] (BuildKit's rule names;
//!   [`Rule::ALL`], [`Rule::from_name`]); `# check=skip=` is read into
//!   [`CheckSettings::skipped`], a [`RuleSet`].
//! - [`Dockerfile`]: [`Directives`] (escape, syntax, check settings) and
//!   `instructions: Vec<`[`Instruction`]`>`, one typed struct per instruction, each with a
//!   [`Meta`] (keyword as written, [`Span`], lines). [`Dockerfile::stages`] groups them into
//!   global ARGs and [`Stage`]s (FROM + its instructions, name, index).
//!   [`Dockerfile::dump`] / [`Instruction::dump`] print BuildKit's AST dump.
//! - Arguments are unexpanded [`Word`]s (text as written, with spans). Flags are
//!   [`Flag<T>`]: the raw text plus the typed value when static (no `$`). RUN mounts are typed
//!   [`Mount`]s; re-parse after expansion with [`parse_mount_with`].
//! - [`shell::expand_word`]`(word, &dyn shell::Env, escape)` (one word) and
//!   [`shell::expand_words`] (split like EXPOSE/VOLUME) expand with BuildKit's lexer rules; the
//!   [`shell::Expanded`] result lists the variable names that were `used` (set) and `unset` —
//!   every reference, including those inside an unused `${A:-$B}` default. `Env` is implemented
//!   for closures `Fn(&str) -> Option<String>` and string maps.
//!   Expansion is bounded ([`shell::Limits`]: 4 MiB per word; 64 MiB per build inside a
//!   [`shell::budget`] scope, which the CLI opens around planning); [`shell::check_sizes`] is
//!   the same check for `rbuild check`. [`diagnostics::CutSource`] renders reports without
//!   printing a huge line whole.
//!   [`Instruction::expands_variables`] says which instructions the builder expands (ADD COPY
//!   ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, ARG defaults, ONBUILD of those).
//! - [`Parsed::has_syntax_errors`]: errors BuildKit's own parser would refuse; only these make
//!   the AST dump impossible (instruction-level errors still dump, as in BuildKit).
//!
//! Module map: `lines` (physical/logical lines) → `node` (BuildKit's raw node, dump) →
//! `instructions` (typing, flags, mounts) → `parser` (driver, stage checks) → `lint` (the rule
//! names, one file per rule, the driver running them).

// Diagnostics are the (rare) error path of every internal step; boxing them would add an
// allocation to each without making the happy path faster.
#![allow(clippy::result_large_err)]

mod ast;
pub mod diagnostics;
mod duration;
mod flags;
mod heredoc;
mod instructions;
mod json;
mod lines;
mod lint;
mod mount;
mod node;
mod parser;
pub mod shell;
mod span;

pub use ast::*;
pub use diagnostics::{ParseDiagnostic, Severity};
pub use lint::{PROXY_ARGS, Rule, RuleSet, UnknownRule};
pub use mount::{Mount, MountError, MountSharing, MountType, parse_mount, parse_mount_with};
pub use node::{Node, go_quote};
pub use span::{LineIndex, Span, Word};

/// A parsed Dockerfile and everything found wrong with it.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub dockerfile: Dockerfile,
    /// Errors and lint warnings, in source order.
    pub diagnostics: Vec<ParseDiagnostic>,
}

impl Parsed {
    /// Whether any diagnostic is an error (the build must not start).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }

    /// Whether any error is a syntax error (no AST dump is possible).
    pub fn has_syntax_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.syntax)
    }

    pub fn errors(&self) -> impl Iterator<Item = &ParseDiagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &ParseDiagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

/// Parse Dockerfile text. A leading UTF-8 BOM is skipped; spans stay offsets into `src`.
pub fn parse(src: &str) -> Parsed {
    let out = parser::run(src);
    let mut diagnostics = out.diagnostics;
    if !diagnostics.iter().any(|d| d.is_error()) || !out.dockerfile.instructions.is_empty() {
        diagnostics.extend(lint::run(&out.dockerfile, &out.extras));
    }
    if diagnostics.is_empty() {
        return Parsed {
            dockerfile: out.dockerfile,
            diagnostics,
        };
    }
    for d in &mut diagnostics {
        // Labels must sit on character boundaries inside the text.
        let mut start = d.span.start.min(src.len());
        while !src.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = d.span.end.clamp(start, src.len());
        while !src.is_char_boundary(end) {
            end += 1;
        }
        d.span = Span::new(start, end);
    }
    diagnostics.sort_by_key(|d| (d.span.start, !d.is_error()));
    // In source order, one pass over the text finds every line and column.
    let (mut pos, mut line, mut line_start) = (0, 1, 0);
    for d in &mut diagnostics {
        let offset = d.span.start;
        for i in memchr::memchr_iter(b'\n', &src.as_bytes()[pos..offset]) {
            line += 1;
            line_start = pos + i + 1;
        }
        pos = offset;
        d.line = line;
        d.column = src[line_start..offset].chars().count() + 1;
    }
    Parsed {
        dockerfile: out.dockerfile,
        diagnostics,
    }
}

/// [`parse_bytes`]' result: the text the spans refer to (invalid UTF-8 replaced) and the parse.
#[derive(Debug, Clone)]
pub struct ParsedBytes<'a> {
    pub text: std::borrow::Cow<'a, str>,
    pub parsed: Parsed,
}

/// Parse raw bytes: invalid UTF-8 and NUL bytes are errors (with their byte offset); the rest
/// of the file is still parsed so every problem is reported.
pub fn parse_bytes(bytes: &[u8]) -> ParsedBytes<'_> {
    let text = String::from_utf8_lossy(bytes);
    let mut parsed = parse(&text);
    let mut extra = Vec::new();
    if let Err(e) = std::str::from_utf8(bytes) {
        // Offsets before the first invalid byte are the same in the lossy text.
        extra.push(diagnostics::invalid_utf8(e.valid_up_to()));
    }
    if let Some(pos) = text.find('\0') {
        extra.push(diagnostics::nul_byte(pos));
    }
    if !extra.is_empty() {
        let index = LineIndex::new(&text);
        for mut d in extra {
            let (line, column) = index.line_col(&text, d.span.start);
            d.line = line;
            d.column = column;
            let width = text[d.span.start.min(text.len())..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
            d.span = Span::new(d.span.start, d.span.start + width);
            d.syntax = true;
            parsed.diagnostics.insert(0, d);
        }
    }
    ParsedBytes { text, parsed }
}

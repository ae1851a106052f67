//! `rbuild check`: every error and lint warning of a Dockerfile, at once, as miette reports or
//! JSON. Honours `# check=skip=...;error=true`; exits 1 on errors (and on warnings when the
//! file asks for `error=true`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::args::GlobalArgs;
use crate::commands::parse::{read_source, render};
use crate::exit;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format: miette reports on stderr, or one JSON document on stdout.
    #[arg(long, value_enum, default_value_t = CheckFormat::Pretty, value_name = "FORMAT")]
    pub format: CheckFormat,

    /// The Dockerfile to check; `-` reads stdin.
    #[arg(value_name = "FILE", default_value = "Dockerfile")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Pretty,
    Json,
}

/// How many diagnostics the pretty format prints; the count line still counts them all.
pub const MAX_SHOWN: usize = 50;

pub fn run(_global: &GlobalArgs, args: CheckArgs) -> miette::Result<u8> {
    let src = read_source(&args.file)?;
    let mut pb = rbuild_parser::parse_bytes(&src.bytes);
    // Variables that grow past the expansion limits fail the build: report them here too.
    let limits = rbuild_engine::dockerfile::expansion_limits()?;
    if let Some(mut d) = rbuild_parser::shell::check_sizes(&pb.parsed.dockerfile, limits) {
        let index = rbuild_parser::LineIndex::new(&pb.text);
        (d.line, d.column) = index.line_col(&pb.text, d.span.start);
        let at = pb
            .parsed
            .diagnostics
            .partition_point(|x| x.span.start <= d.span.start);
        pb.parsed.diagnostics.insert(at, d);
    }
    let parsed = &pb.parsed;
    let errors = parsed.errors().count();
    let warnings = parsed.warnings().count();
    let warnings_fail = parsed.dockerfile.directives.check.error && warnings > 0;
    let failed = errors > 0 || warnings_fail;
    match args.format {
        CheckFormat::Json => {
            let value = serde_json::json!({
                "file": src.name,
                "errors": errors,
                "warnings": warnings,
                "failed": failed,
                "diagnostics": parsed.diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        CheckFormat::Pretty => {
            let shown = parsed.diagnostics.len().min(MAX_SHOWN);
            for d in &parsed.diagnostics[..shown] {
                eprintln!("{}", render(d, &src.name, &pb.text));
            }
            if shown < parsed.diagnostics.len() {
                eprintln!(
                    "... and {} more (`--format json` lists them all)",
                    parsed.diagnostics.len() - shown
                );
            }
            let verdict = if errors + warnings == 0 {
                format!("{}: no problems found", src.name)
            } else {
                format!(
                    "{}: {errors} error{}, {warnings} warning{}{}",
                    src.name,
                    if errors == 1 { "" } else { "s" },
                    if warnings == 1 { "" } else { "s" },
                    if warnings_fail {
                        " (warnings are errors: `# check=error=true`)"
                    } else {
                        ""
                    }
                )
            };
            eprintln!("{verdict}");
        }
    }
    Ok(if failed { exit::USER } else { 0 })
}

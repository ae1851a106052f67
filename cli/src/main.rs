//! The `rbuild` binary: parse the command line, run one command, turn the outcome into an
//! exit code. Everything else lives in the library crates; this crate only wires them together
//! and is the only place that prints.

mod args;
mod command_word;
mod commands;
mod exit;
mod interrupt;
mod progress;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper is this binary re-executed; it must run before anything else.
    rbuild_executor::sandbox::maybe_run_helper();
    // So is the supervisor of a detached container (`run -d`).
    rbuild_executor::container::supervise::maybe_run_supervisor();
    exit::quiet_on_broken_pipe();
    let argv = match args::with_implicit_build(std::env::args_os().collect()) {
        Ok(implicit) => {
            if let Some(warning) = implicit.warning {
                eprintln!("warning: {warning}");
            }
            implicit.argv
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(exit::USAGE);
        }
    };
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout and usage errors to stderr itself.
            let code = if err.use_stderr() { exit::USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    exit::install_report_hook(&cli.global);
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(report) if exit::is_closed_stdout(&report) => ExitCode::from(exit::BROKEN_PIPE),
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(exit::code_for(&report))
        }
    }
}

//! One module per subcommand; `run` dispatches to them. A command returns its exit code on
//! success (some, like `check`, fail softly) or a miette report.

pub mod build;
pub mod check;
pub mod explain;
pub mod parse;
pub mod plan;

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> miette::Result<u8> {
    let global = &cli.global;
    match cli.command {
        Command::Build(args) => build::run(global, args),
        Command::Parse(args) => parse::run(global, args),
        Command::Check(args) => check::run(global, args),
        Command::Explain(args) => explain::run(global, args),
        Command::Plan(args) => plan::run(global, args),
    }
}

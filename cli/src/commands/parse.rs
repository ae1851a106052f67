//! `rbuild parse`: show how rbuild reads a Dockerfile.

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Print BuildKit's raw AST dump format instead of the typed instruction list.
    #[arg(long)]
    pub dump: bool,

    /// The Dockerfile to read; `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(_global: &GlobalArgs, _args: ParseArgs) -> miette::Result<u8> {
    Err(miette::miette!("parse: not wired up yet"))
}

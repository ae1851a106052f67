//! `rbuild check`: every error and lint warning of a Dockerfile, at once.

use std::path::PathBuf;

use clap::Args;

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Dockerfile to check; `-` reads stdin.
    #[arg(value_name = "FILE", default_value = "Dockerfile")]
    pub file: PathBuf,
}

pub fn run(_global: &GlobalArgs, _args: CheckArgs) -> miette::Result<u8> {
    Err(miette::miette!("check: not wired up yet"))
}

//! `rbuild build`: turn a Dockerfile and a context directory into an image in the store.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::args::GlobalArgs;

/// Flags shared by `build` and the commands that plan a build without running it.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag for the image (`name:tag`); may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// The Dockerfile to build (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Set a build-time variable declared with ARG (`KEY=VALUE`, or `KEY` to take it from
    /// the environment); may be repeated.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Build only up to this stage (its name after `FROM ... AS`).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Do not use the build cache: run every step.
    #[arg(long)]
    pub no_cache: bool,

    /// How to show progress: a live view on a terminal, one line per event, or JSON events.
    #[arg(long, value_enum, default_value_t = Progress::Auto, value_name = "MODE")]
    pub progress: Progress,

    /// Target platform (`linux/amd64`); defaults to this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// How many stages may build at the same time (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Fail instead of building when any step would miss the cache (a CI guard).
    #[arg(long)]
    pub fail_on_cache_miss: bool,

    /// The build context: the directory whose files COPY and ADD can use.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    Tty,
    Plain,
    Json,
}

pub fn run(_global: &GlobalArgs, _args: BuildArgs) -> miette::Result<u8> {
    Err(miette::miette!(
        code = "rbuild::build::unavailable",
        help = "use `rbuild check` to validate a Dockerfile meanwhile",
        "building is not wired up in this version yet"
    ))
}

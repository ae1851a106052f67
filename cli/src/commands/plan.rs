//! `rbuild plan`: the build graph of a Dockerfile (stages, steps, and what depends on what),
//! as Graphviz dot or JSON, with the stages the target does not need marked as skipped.

use clap::{Args, ValueEnum};
use rbuild_engine::Session;

use crate::args::GlobalArgs;
use crate::commands::build::{self, BuildArgs};
use crate::render::BuildView;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Dot)]
    pub format: PlanFormat,

    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Dot,
    Json,
}

pub fn run(global: &GlobalArgs, args: PlanArgs) -> miette::Result<u8> {
    let options = build::prepare_options(global, &args.build)?;
    let session = Session::prepare(&options, &BuildView::new(args.build.progress, true))?;
    let graph = session.plan();
    match args.format {
        PlanFormat::Dot => print!("{}", graph.to_dot()),
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&graph).expect("graphs serialise")
        ),
    }
    Ok(0)
}

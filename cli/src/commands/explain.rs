//! `rbuild explain`: which steps of a build would hit the cache, and for every miss, why —
//! without building anything.

use clap::{Args, ValueEnum};
use rbuild_engine::Session;

use crate::args::GlobalArgs;
use crate::commands::build::{self, BuildArgs};
use crate::render::{BuildView, print_explanations};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Pretty)]
    pub format: ExplainFormat,

    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Pretty,
    Json,
}

pub fn run(global: &GlobalArgs, args: ExplainArgs) -> miette::Result<u8> {
    let quiet = args.format == ExplainFormat::Json;
    let options = build::prepare_options(global, &args.build)?;
    let view = BuildView::new(args.build.progress, quiet);
    let session = Session::prepare(&options, &view)?;
    let explanations = session.explain(args.build.no_cache)?;
    let missed = print_explanations(
        &session.dockerfile,
        &explanations,
        args.format == ExplainFormat::Json,
    );
    if args.format == ExplainFormat::Pretty {
        for base in session.remote_bases(&explanations) {
            println!(
                "[{}] base {}: {} of {} layers remote ({}) in {}",
                base.stage,
                base.reference,
                base.remote,
                base.layers,
                rbuild_store::size::human(base.bytes),
                base.source
            );
            if base.readers.is_empty() {
                println!("  no step reads the base: it is not downloaded");
            } else {
                println!("  fetched before `{}` (it reads the base)", base.readers[0]);
            }
        }
    }
    Ok(if args.build.fail_on_cache_miss && missed > 0 {
        crate::exit::CACHE_MISS
    } else {
        0
    })
}

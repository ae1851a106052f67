//! `rbuild load [-i FILE]`: load images from an OCI layout or docker-archive tar (optionally
//! compressed), from FILE or stdin, and print the names loaded. A multi-platform image is
//! loaded whole (every platform the archive holds); its names and ID are the index's.

use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;

use clap::Args;

use super::storeutil::open_store;
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from FILE instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &GlobalArgs, args: LoadArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let report = match &args.input {
        Some(path) => store.load_file(path)?,
        None => {
            if std::io::stdin().is_terminal() {
                return Err(miette::miette!(
                    code = "rbuild::load::terminal",
                    help = "use `-i FILE` or pipe an archive into rbuild",
                    "refusing to read an archive from a terminal"
                ));
            }
            store.load(BufReader::with_capacity(1 << 20, std::io::stdin()))?
        }
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    if !args.quiet {
        for img in &report.images {
            for (name, old) in &img.moved {
                if let Ok(old) = store.resolve_target(old.as_str()) {
                    println!(
                        "The image {} already exists, renaming the old one with ID {} to empty string",
                        name.familiar(),
                        old.id()
                    );
                }
            }
            if img.names.is_empty() {
                println!("Loaded image ID: {}", img.target.id());
            }
            for n in &img.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(0)
}

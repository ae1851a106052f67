//! `rbuild import FILE|- [REPOSITORY[:TAG]]`: a one-layer image from a root filesystem
//! tarball (any compression), like `docker import`; `--change` applies Dockerfile metadata
//! instructions, `-m` sets the history comment. Prints the new image ID.

use std::fs::File;
use std::io::{BufReader, IsTerminal};

use clap::Args;
use rbuild_store::Reference;
use rbuild_store::archive::ImportOptions;

use super::import_change;
use super::storeutil::open_store;
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tarball, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,

    /// Name for the image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,

    /// A Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR,
    /// VOLUME, STOPSIGNAL); may be repeated.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,

    /// Commit message for the history entry.
    #[arg(short, long)]
    pub message: Option<String>,
}

pub fn run(global: &GlobalArgs, args: ImportArgs) -> miette::Result<u8> {
    // Validate everything the user typed before touching the store.
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let mut probe = rbuild_store::ContainerConfig::default();
    for c in &args.changes {
        import_change::apply(c, &mut probe)?;
    }
    let store = open_store(global)?;
    let opts = ImportOptions {
        source: if args.file == "-" {
            "-".into()
        } else {
            args.file.clone()
        },
        message: args.message.clone(),
        created: None,
    };
    let configure = |c: &mut rbuild_store::ImageConfig| {
        let cc = c.config.get_or_insert_with(Default::default);
        for ch in &args.changes {
            import_change::apply(ch, cc).map_err(|e| {
                rbuild_store::Error::usage(e.to_string(), "see the --change syntax")
            })?;
        }
        Ok(())
    };
    let image = if args.file == "-" {
        if std::io::stdin().is_terminal() {
            return Err(miette::miette!(
                code = "rbuild::import::terminal",
                help = "pipe a tarball into rbuild, or pass a file name",
                "refusing to read a tarball from a terminal"
            ));
        }
        store.import(
            BufReader::with_capacity(1 << 20, std::io::stdin()),
            &opts,
            configure,
        )?
    } else {
        let f =
            File::open(&args.file).map_err(|e| rbuild_store::Error::io("open", &args.file, e))?;
        store.import(BufReader::with_capacity(1 << 20, f), &opts, configure)?
    };
    if let Some(name) = &name {
        store.tag(&image, name)?;
    }
    println!("{}", image.id());
    Ok(0)
}

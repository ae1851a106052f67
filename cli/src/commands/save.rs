//! `rbuild save [-o FILE] IMAGE...`: an OCI image-layout tar (default) or, with
//! `--format docker`, a docker-archive that `docker load` accepts. The file is written to a
//! temporary name and renamed when complete; stdout is used when no `-o` is given.
//!
//! A multi-platform image is saved whole as an OCI archive (the index and every platform the
//! store holds; loading it gives the same index digest); `--platform P` saves that platform's
//! image only. A docker-archive holds one platform: for a multi-platform image it takes
//! `--platform` or the host's, and a note says which.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rbuild_store::archive::{SaveFormat, SaveTarget};
use rbuild_store::{Platform, Reference, Target};

use super::storeutil::{open_store, parse_platform};
use crate::args::GlobalArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// OCI image layout.
    Oci,
    /// docker-archive (manifest.json + repositories), also a valid OCI layout.
    Docker,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Archive format.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,

    /// Save only this platform's image of a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Images: name[:tag], name@digest, or (short) ID (saved without names).
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: SaveArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let format = match args.format {
        Format::Oci => SaveFormat::Oci,
        Format::Docker => SaveFormat::Docker,
    };
    let mut items = Vec::new();
    for name in &args.images {
        let mut target = store.resolve_target(name)?;
        let names = store.names_of(target.digest())?;
        let docker_of_index = target.is_index() && format == SaveFormat::Docker;
        let want = platform
            .clone()
            .or_else(|| docker_of_index.then(Platform::host));
        if let Some(p) = want {
            let image = target.image_for(&p)?.clone();
            if docker_of_index {
                eprintln!(
                    "note: {name} is a multi-platform image; writing its {p} image only (a \
                     docker-archive holds one platform)"
                );
            }
            target = Target::Image(image);
        }
        // By name: record that name; by ID: no names (as docker does).
        let chosen: Vec<Reference> = match Reference::parse(name) {
            Ok(r) if names.contains(&r) => vec![r],
            _ => Vec::new(),
        };
        items.push(SaveTarget {
            target,
            names: chosen,
        });
    }
    // An archive holds every layer: those of a base that was never downloaded come now.
    let progress = super::pull::TransferProgress::new(false, false);
    for item in &items {
        rbuild_engine::registry::remote_layers::ensure_local(&store, &item.target, &progress)?;
    }
    match &args.output {
        Some(path) => {
            // Like `docker save` and `cp`, no fsync: the rename only makes a complete file
            // appear under the name at once.
            let interrupted = crate::interrupt::interrupted;
            rbuild_engine::output::write_output_file(
                path,
                store.root(),
                false,
                &interrupted,
                |file| {
                    let out = store
                        .save_targets(
                            &items,
                            format,
                            std::io::BufWriter::with_capacity(1 << 20, file),
                        )
                        .map_err(miette::Report::new)?;
                    out.into_inner()
                        .map(drop)
                        .map_err(|e| rbuild_store::Error::io("write", path, e.into_error()).into())
                },
            )?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(miette::miette!(
                    code = "rbuild::save::terminal",
                    help = "use `-o FILE` or redirect stdout",
                    "refusing to write an archive to a terminal"
                ));
            }
            let stdout = std::io::stdout().lock();
            store.save_targets(
                &items,
                format,
                std::io::BufWriter::with_capacity(1 << 20, stdout),
            )?;
        }
    }
    Ok(0)
}

//! `rbuild push`: upload a stored image to a registry. Layers stored uncompressed (built
//! images) are compressed on all cores (gzip or zstd), blobs the registry has are skipped,
//! blobs in sibling repositories are mounted, and the manifest goes last.
//!
//! `rbuild push IMAGE [DESTINATION] [--compression gzip|zstd] [-q]` pushes a local image under
//! its own name or, like `podman push`, under DESTINATION. `RBUILD_COMPRESS_THREADS=1` selects
//! the single-threaded gzip encoder: a benchmark baseline only (its bytes differ from the
//! parallel encoder's).

use clap::Args;
use rbuild_registry::store_impl::{local_image, mount_candidates};
use rbuild_registry::{Client, Compression, PushOptions, RegistriesConfig, RemoteRef, push_image};

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image to push (`name[:tag]`); its name says where it goes.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Push under another name instead (`registry/repo[:tag]`), like `podman push IMAGE DEST`.
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,

    /// Compression for layers stored uncompressed.
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: String,

    /// Print only the pushed digest.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &GlobalArgs, args: PushArgs) -> miette::Result<u8> {
    let compression: Compression = args.compression.parse()?;
    let target = RemoteRef::parse(args.destination.as_deref().unwrap_or(&args.image))?;
    let store = super::storeutil::open_store(global)?;
    let image = local_image(&store, &args.image)?;
    let config = RegistriesConfig::load(Some(store.root()))?;
    let client = Client::new(config);
    let tmp_dir = store.layout().tmp();
    fs_err::create_dir_all(&tmp_dir)
        .map_err(|e| miette::Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    // Benchmark knob: RBUILD_COMPRESS_THREADS=1 selects the single-threaded gzip encoder.
    let compress_threads = std::env::var("RBUILD_COMPRESS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let opts = PushOptions {
        compression,
        compress_threads,
        mount_from: mount_candidates(&store, &args.image, &target),
        tmp_dir,
    };
    let progress = super::pull::TransferProgress::new(true, args.quiet);
    progress.line(&format!(
        "The push refers to repository [{}]",
        target.name()
    ));
    let pushed = push_image(&client, &store, &image, &target, &opts, &progress)?;
    rbuild_registry::store_impl::record_pushed(&store, &args.image, &target, &pushed.digest);
    if args.quiet {
        println!("{}", pushed.digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            target.reference(),
            pushed.digest,
            pushed.size
        );
    }
    Ok(0)
}

//! `rbuild push`: upload a stored image to a registry. Layers stored uncompressed (built
//! images) are compressed on all cores (gzip or zstd), blobs the registry has are skipped,
//! blobs in sibling repositories are mounted, and the manifest goes last.
//!
//! `rbuild push IMAGE [DESTINATION] [--compression gzip|zstd] [-q]` pushes a local image under
//! its own name or, like `podman push`, under DESTINATION. `RBUILD_COMPRESS_THREADS=1` selects
//! the single-threaded gzip encoder: a benchmark baseline only (its bytes differ from the
//! parallel encoder's).
//!
//! A multi-platform image (a name pointing at an index) is pushed whole: every platform's and
//! attestation's blobs and manifest by digest, then the index under the tag, byte for byte
//! when its layers are stored compressed (as pulled), so the digest is preserved. An index
//! listing a manifest the store lacks is refused before anything is sent. `--platform P`
//! pushes only that platform's manifest under the tag, as `docker push --platform` does.

use clap::Args;
use rbuild_registry::store_impl::{
    local_image_of, local_target, mount_candidates, record_pushed, record_pushed_target,
};
use rbuild_registry::{
    Client, Compression, LocalTarget, Platform, PushOptions, RegistriesConfig, RemoteRef,
    push_target,
};

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

    /// Push only this platform's manifest of a multi-platform image (`os/arch[/variant]`),
    /// under the tag and without the index.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Print only the pushed digest.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &GlobalArgs, args: PushArgs) -> miette::Result<u8> {
    let compression: Compression = args.compression.parse()?;
    let target = RemoteRef::parse(args.destination.as_deref().unwrap_or(&args.image))?;
    let platform = match &args.platform {
        Some(p) => Some(
            p.parse::<Platform>()
                .map_err(rbuild_registry::RegistryError::from)?,
        ),
        None => None,
    };
    let store = super::storeutil::open_store(global)?;
    let stored = store.resolve_target(&args.image)?;
    // What goes: the whole target, or one platform's image of it (`one_image`: its manifest
    // digest). Checked (an incomplete index refused) before any connection.
    let (local, one_image) = match &platform {
        Some(p) => {
            let record = stored.image_for(p)?;
            (
                LocalTarget::Image(local_image_of(&store, record)?),
                Some(record.manifest_digest.clone()),
            )
        }
        None => (local_target(&store, &stored, &args.image)?, None),
    };
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
        mount_from: mount_candidates(&store, stored.digest(), &target),
        tmp_dir,
    };
    let progress = super::pull::TransferProgress::new(true, args.quiet);
    progress.line(&format!(
        "The push refers to repository [{}]",
        target.name()
    ));
    let pushed = push_target(&client, &store, &local, &target, &opts, &progress)?;
    match &one_image {
        Some(manifest) => record_pushed(&store, manifest, &target, &pushed.digest),
        None => record_pushed_target(&store, &stored, &target, &pushed.digest),
    }
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

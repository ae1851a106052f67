//! `rbuild pull`: fetch an image (the host's platform, or `--platform`) from a registry into
//! the store, downloading only layers the store lacks, with per-layer progress. Also home of
//! the transfer progress renderer that `push` shares.
//!
//! `rbuild pull IMAGE [--platform P] [-q]` prints docker's `Digest:`/`Status:` lines and the
//! reference on stdout, layer progress on stderr (indicatif bars on a terminal, plain lines
//! otherwise).
//!
//! `rbuild pull --all-platforms IMAGE` (the flag of `ctr` and `nerdctl`; docker 28's `pull`
//! has none) fetches every platform of a multi-platform image, attestations included, and
//! names the index, so `images` lists it once and `push` sends it whole with the same digest.
//! One progress line per platform precedes the layer lines.

use clap::Args;
use rbuild_registry::{
    Client, Platform, RegistriesConfig, RemoteRef, pull_all_platforms, pull_image,
};

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `name[:tag]` or `name@sha256:...` (`nginx` means `docker.io/library/nginx:latest`).
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The platform to pull from a multi-platform image (`os/arch[/variant]`); default: the host's.
    #[arg(long, value_name = "PLATFORM", conflicts_with = "all_platforms")]
    pub platform: Option<String>,

    /// Pull every platform of a multi-platform image (and its attestations); the name then
    /// refers to the whole image.
    #[arg(long)]
    pub all_platforms: bool,

    /// Print only the image reference, no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &GlobalArgs, args: PullArgs) -> miette::Result<u8> {
    let reference = RemoteRef::parse(&args.image)?;
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(rbuild_registry::RegistryError::from)?,
        None => Platform::host(),
    };
    let store = super::storeutil::open_store(global)?;
    let config = RegistriesConfig::load(Some(store.root()))?;
    let client = Client::new(config);
    let progress = TransferProgress::new(false, args.quiet);
    progress.line(&format!(
        "{}: Pulling from {}",
        reference.reference(),
        reference.repository
    ));
    let (digest, downloaded) = if args.all_platforms {
        let pulled = pull_all_platforms(&client, &store, &reference, &progress)?;
        (pulled.digest, pulled.downloaded)
    } else {
        let pulled = pull_image(&client, &store, &reference, &platform, &progress)?;
        (pulled.digest, pulled.downloaded)
    };
    if !args.quiet {
        println!("Digest: {digest}");
        if downloaded == 0 {
            println!("Status: Image is up to date for {reference}");
        } else {
            println!("Status: Downloaded newer image for {reference}");
        }
    }
    println!("{reference}");
    Ok(0)
}

/// Renders registry transfers: one indicatif bar per blob on a terminal, plain docker-style
/// lines otherwise.
pub struct TransferProgress {
    quiet: bool,
    bars: Option<(
        indicatif::MultiProgress,
        std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
    )>,
    pushing: bool,
}

impl TransferProgress {
    pub fn new(pushing: bool, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let tty = !quiet
            && std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        TransferProgress {
            quiet,
            bars: tty.then(|| {
                (
                    indicatif::MultiProgress::new(),
                    std::sync::Mutex::new(std::collections::HashMap::new()),
                )
            }),
            pushing,
        }
    }

    /// Print a line above the bars (or plainly).
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl rbuild_registry::Progress for TransferProgress {
    fn blob_start(&self, digest: &str, size: u64) {
        if let Some((mp, bars)) = &self.bars {
            let bar = mp.add(indicatif::ProgressBar::new(size));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(short(digest).to_string());
            bar.set_message(if self.pushing {
                "Pushing"
            } else {
                "Downloading"
            });
            if let Some(old) = bars
                .lock()
                .expect("bars lock")
                .insert(digest.to_string(), bar)
            {
                old.finish_and_clear();
            }
        }
    }

    fn blob_bytes(&self, digest: &str, bytes: u64) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().expect("bars lock").get(digest)
        {
            bar.inc(bytes);
        }
    }

    fn blob_done(&self, digest: &str, outcome: rbuild_registry::BlobOutcome) {
        use rbuild_registry::BlobOutcome::*;
        let word = match (outcome, self.pushing) {
            (AlreadyPresent, false) => "Already exists",
            (AlreadyPresent, true) => "Layer already exists",
            (Downloaded, _) => "Pull complete",
            (Uploaded, _) => "Pushed",
            (Mounted, _) => "Mounted from another repository",
        };
        if self.quiet {
            return;
        }
        let text = format!("{}: {word}", short(digest));
        match &self.bars {
            Some((mp, bars)) => {
                if let Some(bar) = bars.lock().expect("bars lock").remove(digest) {
                    bar.finish_and_clear();
                }
                let _ = mp.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn note(&self, text: &str) {
        self.line(text);
    }
}

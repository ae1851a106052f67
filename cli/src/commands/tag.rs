//! `rbuild tag SOURCE TARGET`: give an image another name (moving the name if it existed).

use clap::Args;
use rbuild_store::Reference;

use super::storeutil::open_store;
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to name: name[:tag], name@digest, or (short) ID.
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// The new name.
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub fn run(global: &GlobalArgs, args: TagArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    // A multi-platform image: the new name points at the index, as the old one does.
    let image = store.resolve_target(&args.source)?;
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        return Err(miette::miette!(
            code = "rbuild::tag::digest",
            help = "a tag names an image by `name:tag`; digests are content addresses",
            "refusing to create a tag with a digest reference: `{}`",
            args.target
        ));
    }
    store.tag_target(&image, &target)?;
    Ok(0)
}

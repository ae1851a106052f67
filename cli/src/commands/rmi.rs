//! `rbuild rmi IMAGE...`: untag, and remove images (and their blobs no longer referenced)
//! that have no name left. Refuses, unless `-f`, an image a container uses or one that has
//! several names when addressed by ID.

use clap::Args;

use super::storeutil::{open_store, print_error};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images: name[:tag], name@digest, or (short) ID.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// Remove even if a container uses the image or it has several names.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(global: &GlobalArgs, args: RmiArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let mut code = 0;
    for name in &args.images {
        match store.remove(name, args.force) {
            Ok(r) => {
                for u in &r.untagged {
                    println!("Untagged: {}", u.familiar());
                }
                if let Some(id) = r.id.filter(|_| r.deleted) {
                    println!("Deleted: {id}");
                }
            }
            Err(e) => {
                if args.images.len() == 1 {
                    return Err(e.into());
                }
                let report: miette::Report = e.into();
                code = crate::exit::code_for(&report);
                print_error(report);
            }
        }
    }
    Ok(code)
}

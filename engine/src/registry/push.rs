//! `rbuild build --push`: after a successful build, every `-t` name is pushed to its registry
//! exactly as `rbuild push NAME` would (built layers compressed once, blobs the registry has
//! skipped, sibling repositories mounted).

use miette::{Report, WrapErr};
use rbuild_registry::store_impl::{local_image, mount_candidates, remote_ref};
use rbuild_registry::{Compression, PushOptions, push_image};
use rbuild_store::{Reference, Store, Target};

use super::Registry;
use crate::report::{Reporter, Transfer};

/// `--push` without a name has nowhere to go.
pub fn check(push: bool, tags: &[Reference]) -> miette::Result<()> {
    if push && tags.is_empty() {
        return Err(miette::miette!(
            code = "rbuild::usage::push",
            help = "name the image with `-t REGISTRY/REPO:TAG` to push it",
            "`--push` needs at least one `-t` name"
        ));
    }
    Ok(())
}

/// `--push` of a multi-platform build: refused before building until the registry client
/// pushes image indexes ([`push_all`] refuses an index target too).
pub fn check_multi_platform(push: bool) -> miette::Result<()> {
    if push {
        return Err(miette::Report::new(
            rbuild_store::Failure::new(
                rbuild_store::ErrorClass::Input,
                "rbuild::usage::push",
                "`--push` of a multi-platform build is not supported yet",
            )
            .with_help(
                "push one platform at a time: build with a single `--platform` and `--push`",
            ),
        ));
    }
    Ok(())
}

/// Push every name in `tags` (already tagged in the store, naming `target`). A
/// multi-platform image (an index) is refused until the registry client pushes indexes.
pub fn push_all(
    session: &Registry,
    store: &Store,
    target: &Target,
    tags: &[Reference],
    compression: Compression,
    reporter: &dyn Reporter,
) -> miette::Result<()> {
    if let Target::Index(index) = target {
        return Err(miette::Report::new(
            rbuild_store::Failure::new(
                rbuild_store::ErrorClass::Registry,
                "rbuild::build::push_index",
                format!(
                    "the multi-platform image {} was built and tagged, but `--push` of an \
                     image index is not supported yet",
                    index.digest.short()
                ),
            )
            .with_help(
                "push one platform at a time: build with a single `--platform` and `--push`",
            ),
        ));
    }
    let client = session.client()?;
    let tmp_dir = store.layout().tmp();
    fs_err::create_dir_all(&tmp_dir)
        .map_err(|e| miette::Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    for tag in tags {
        let failed = || {
            format!(
                "the image was built and tagged, but pushing `{}` failed",
                tag.familiar()
            )
        };
        let name = tag.to_string();
        let target = remote_ref(tag).map_err(Report::new).wrap_err_with(failed)?;
        let image = local_image(store, &name)
            .map_err(Report::new)
            .wrap_err_with(failed)?;
        let opts = PushOptions {
            compression,
            compress_threads: 0,
            mount_from: mount_candidates(store, &name, &target),
            tmp_dir: tmp_dir.clone(),
        };
        let progress = reporter.transfer(Transfer::Push);
        progress.note(&format!(
            "The push refers to repository [{}]",
            target.name()
        ));
        let pushed = push_image(client, store, &image, &target, &opts, &*progress)
            .map_err(Report::new)
            .wrap_err_with(failed)?;
        rbuild_registry::store_impl::record_pushed(store, &name, &target, &pushed.digest);
        reporter.line(&format!(
            "pushed {}: digest: {} size: {}",
            tag.familiar(),
            pushed.digest,
            pushed.size
        ));
    }
    Ok(())
}

//! `rbuild build --push`: after a successful build, what the build committed (one image, or
//! for `--platform a,b` the index over its platform images) is pushed under every `-t` name
//! exactly as `rbuild push NAME` would (built layers compressed once, blobs the registry has
//! skipped, sibling repositories mounted; an index goes entries first, then the index).

use miette::{Report, WrapErr};
use rbuild_registry::store_impl::{
    local_target, mount_candidates, record_pushed_target, remote_ref,
};
use rbuild_registry::{Compression, PushOptions, push_target};
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

/// Push `built` (what the build committed, already tagged in the store) under every name in
/// `tags`.
pub fn push_all(
    session: &Registry,
    store: &Store,
    built: &Target,
    tags: &[Reference],
    compression: Compression,
    reporter: &dyn Reporter,
) -> miette::Result<()> {
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
        let target = remote_ref(tag).map_err(Report::new).wrap_err_with(failed)?;
        let local = local_target(store, built, &tag.familiar())
            .map_err(Report::new)
            .wrap_err_with(failed)?;
        let opts = PushOptions {
            compression,
            compress_threads: 0,
            mount_from: mount_candidates(store, built.digest(), &target),
            tmp_dir: tmp_dir.clone(),
        };
        let progress = reporter.transfer(Transfer::Push);
        progress.note(&format!(
            "The push refers to repository [{}]",
            target.name()
        ));
        let pushed = push_target(client, store, &local, &target, &opts, &*progress)
            .map_err(Report::new)
            .wrap_err_with(failed)?;
        record_pushed_target(store, built, &target, &pushed.digest);
        reporter.line(&format!(
            "pushed {}: digest: {} size: {}",
            tag.familiar(),
            pushed.digest,
            pushed.size
        ));
    }
    Ok(())
}

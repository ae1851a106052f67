//! `--cache-to type=inline`: when a platform's image is committed, the cache entries of its
//! stage chain (BuildKit's `min` mode, the only one an inline cache can have) whose layers the
//! image holds are embedded in its config ([`rbuild_registry::cache_inline`]), so the image
//! pushed (or saved) carries its own cache and `--cache-from IMAGE` reads it back.
//!
//! The document is a function of the image alone, so embedding keeps builds reproducible: an
//! entry's build time (`build_ms`) is dropped, and under `SOURCE_DATE_EPOCH` its `created` is
//! the epoch (the image's history says the same); entries are sorted by key, record lists by
//! digest. The image ID (config digest) is that of the image with its cache, as pushed, and
//! `--iidfile`, `--verify-reproducible` and the metadata file all name that one image. An
//! inline cache inherited from the base image (rbuild's or BuildKit's) is always dropped.

use std::collections::BTreeSet;

use miette::Report;
use rbuild_registry::cache_inline::{self, MAX_INLINE_BYTES, TooLarge};
use rbuild_solver::cache::CacheIndex;
use rbuild_solver::cache_export;
use rbuild_solver::op::Plan;
use rbuild_solver::scheduler::Solved;
use rbuild_store::{Digest, ImageConfig};

use super::spec::CacheMode;

/// Set `config`'s inline cache: none (dropping an inherited one) when `note` is `None`; else
/// the entries of the target's chain whose layers are in `config`, reported through `note`.
pub fn apply(
    cache: &CacheIndex,
    plan: &Plan,
    solved: &Solved,
    epoch: Option<i64>,
    config: &mut ImageConfig,
    note: Option<&dyn Fn(&str)>,
) -> miette::Result<()> {
    let Some(note) = note else {
        let _ = cache_inline::embed(config, None);
        return Ok(());
    };
    let steps = super::cache::platform_steps(plan, solved, CacheMode::Min);
    let mut doc = cache_export::export(cache, &steps).map_err(Report::new)?;
    let layers: BTreeSet<&Digest> = config.rootfs.diff_ids.iter().collect();
    // Only what the image can back: a layer it lacks cannot be fetched from it.
    doc.entries.retain(|e| {
        e.result
            .diff_id
            .as_deref()
            .is_none_or(|d| Digest::parse(d).is_ok_and(|d| layers.contains(&d)))
    });
    for entry in &mut doc.entries {
        entry.build_ms = 0;
        if let Some(epoch) = epoch {
            entry.created = epoch;
        }
    }
    let entries = doc.entries.len();
    let mut embedded = cache_inline::embed(config, Some(&doc.to_bytes()));
    let mut without_files = false;
    if embedded.is_err() && !doc.files.is_empty() {
        // The file lists only serve explanations: the entries matter more.
        doc.files.clear();
        without_files = true;
        embedded = cache_inline::embed(config, Some(&doc.to_bytes()));
    }
    match embedded {
        Ok(()) => note(&format!(
            "inline build cache: {entries} entries (mode=min) in the image config{}",
            if without_files {
                "; their file lists were left out to fit (explanations of misses against it will not name files)"
            } else {
                ""
            }
        )),
        Err(TooLarge(size)) => note(&format!(
            "warning: the inline build cache ({size} bytes) exceeds {MAX_INLINE_BYTES} bytes: \
             the image carries none; use `--cache-to type=registry` or `type=local`"
        )),
    }
    Ok(())
}

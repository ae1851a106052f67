//! The registry build cache around a build: `--cache-from` imports each cache artifact's index
//! into the local cache index before solving (what cannot be verified is dropped with a
//! warning; an unreachable or missing cache is only a warning, as in BuildKit) and remembers
//! where its layers live; `--cache-to` exports the entries this build used, with their
//! record lists and layers, uploading only blobs the registry lacks. `type=local` caches (an
//! OCI layout directory) take the same paths: the export differs only in where blobs and the
//! manifest go; the import verifies the whole directory first and copies the usable layers in.
//! An image named as a `--cache-from` reference is read for its inline cache (one per platform
//! image of an index): its layers are the image's, and entries naming others are ignored with
//! a warning. Writing an inline cache is `super::inline`'s, at commit.

use std::collections::BTreeSet;

use miette::Report;
use rbuild_registry::cache::{ImportedCache, export_cache, import_caches};
use rbuild_registry::cache_local::{
    export_cache_local, import_cache_local, layer_path, lock_for_import,
};
use rbuild_registry::{Compression, LocalLayer, PushOptions, RemoteRef};
use rbuild_solver::cache::CacheIndex;
use rbuild_solver::cache_export::{self, LayerAvailability};
use rbuild_solver::op::{Base, Plan};
use rbuild_solver::scheduler::Solved;
use rbuild_store::{Digest, Store};

use super::layers::Source;
use super::spec::{CacheLocation, CacheMode, CacheSpec};
use super::{Registry, describe};
use crate::report::{Reporter, Transfer};

/// Import every `--cache-from` into `cache`; problems are reported through `warn` and never
/// fail the build. `site_prefix` anchors imported entries to this build's Dockerfile.
pub fn import(
    session: &mut Registry,
    store: &Store,
    cache: &CacheIndex,
    specs: &[CacheSpec],
    site_prefix: &str,
    warn: &dyn Fn(&str),
) {
    let now = jiff::Timestamp::now().as_second();
    for spec in specs {
        let reference = match &spec.location {
            CacheLocation::Registry(reference) => reference,
            CacheLocation::Local(dir) => {
                import_local(store, cache, dir, site_prefix, now, warn);
                continue;
            }
            // Refused by the spec parser: an inline cache is read from its image's reference.
            CacheLocation::Inline => continue,
        };
        let imported = match session.client() {
            Ok(client) => import_caches(client, reference).map_err(|e| describe(&e)),
            Err(err) => Err(err.to_string()),
        };
        let imported = match imported {
            Ok(imported) => imported,
            Err(message) => {
                warn(&format!(
                    "warning: cannot import build cache from `{reference}`, building without it: {message}"
                ));
                continue;
            }
        };
        for one in imported {
            match one {
                Ok(imported) => import_one(
                    session,
                    store,
                    cache,
                    reference,
                    &imported,
                    site_prefix,
                    now,
                    warn,
                ),
                Err(err) => warn(&format!(
                    "warning: cannot import build cache from `{reference}`, building without it: {}",
                    describe(&err)
                )),
            }
        }
    }
}

/// Merge one imported registry cache (an artifact, or one image's inline cache) and make its
/// layers fetchable.
#[expect(
    clippy::too_many_arguments,
    reason = "the import's context, passed through from `import`"
)]
fn import_one(
    session: &mut Registry,
    store: &Store,
    cache: &CacheIndex,
    reference: &RemoteRef,
    imported: &ImportedCache,
    site_prefix: &str,
    now: i64,
    warn: &dyn Fn(&str),
) {
    let remote: BTreeSet<&Digest> = imported.layers.iter().map(|l| &l.diff_id).collect();
    // An inline cache describes its image: an entry naming a layer the image lacks is not
    // from that image's build (tampered), whatever this store or other caches hold.
    let local = |d: &Digest| (!imported.inline || remote.contains(d)) && store.has_blob(d);
    let known =
        |d: &Digest| remote.contains(d) || (!imported.inline && session.layers.has_source(d));
    let availability = LayerAvailability {
        local: &local,
        remote: &known,
    };
    let shown = reference.to_string();
    let Some(report) = merge_reporting(
        cache,
        &imported.index,
        site_prefix,
        now,
        &availability,
        &shown,
        warn,
    ) else {
        return;
    };
    if imported.inline && report.no_layer > 0 {
        warn(&format!(
            "warning: ignored {} entr{} of the inline build cache of `{shown}` naming layers the image does not have",
            report.no_layer,
            if report.no_layer == 1 { "y" } else { "ies" }
        ));
    }
    // An image's other layers (its base's) are no cache results: fetching them as such would
    // download the base a second time.
    let used: BTreeSet<&Digest> = report
        .usable
        .iter()
        .filter_map(|(_, d)| d.as_ref())
        .collect();
    let mut available = 0;
    for layer in &imported.layers {
        if imported.inline && !used.contains(&layer.diff_id) {
            continue;
        }
        available += 1;
        session.layers.add_source(
            &layer.diff_id,
            Source {
                reference: reference.clone(),
                blob: layer.blob.clone(),
            },
        );
    }
    for (key, diff_id) in &report.usable {
        let Some(diff_id) = diff_id else { continue };
        if store.has_blob(diff_id) {
            // The layer is already here (built or fetched before): root it for this key.
            let _ = store.set_ref(
                rbuild_store::refs::KIND_CACHE,
                &key.0,
                std::slice::from_ref(diff_id),
            );
        } else {
            session.layers.add_key(diff_id, &key.0);
        }
    }
    warn(&format!(
        "imported {}build cache from `{reference}`{}: {} entries ({} new), {} layers available",
        if imported.inline { "inline " } else { "" },
        if imported.inline {
            format!(" (image {})", imported.digest)
        } else {
            String::new()
        },
        report.present + report.imported,
        report.imported,
        available
    ));
}

/// The steps an export covers: (site suffix, key) of every keyed step of the chosen stages,
/// over every platform's build (a key shared by several platforms once).
fn exported_steps(
    builds: &[(&Plan, &Solved)],
    mode: CacheMode,
) -> Vec<(String, rbuild_solver::cache_key::CacheKey)> {
    let mut out = Vec::new();
    for (plan, solved) in builds {
        for step in platform_steps(plan, solved, mode) {
            if !out.contains(&step) {
                out.push(step);
            }
        }
    }
    out
}

/// The steps of one platform's build an export in `mode` covers (see [`exported_steps`]).
pub(crate) fn platform_steps(
    plan: &Plan,
    solved: &Solved,
    mode: CacheMode,
) -> Vec<(String, rbuild_solver::cache_key::CacheKey)> {
    let stages: Vec<usize> = match mode {
        CacheMode::Max => (0..solved.stages.len()).collect(),
        CacheMode::Min => {
            let mut chain = vec![plan.target];
            let mut stage = plan.target;
            while let Base::Stage(parent) = plan.stages[stage].base {
                if chain.contains(&parent) {
                    break;
                }
                chain.push(parent);
                stage = parent;
            }
            chain
        }
    };
    let mut out = Vec::new();
    for s in stages {
        let Some(Some(outcome)) = solved.stages.get(s) else {
            continue;
        };
        let label = plan.stages[s].label();
        for record in &outcome.steps {
            if let Some(key) = &record.key {
                out.push((
                    cache_export::site_suffix(&label, record.id.index),
                    key.clone(),
                ));
            }
        }
    }
    out
}

/// Everything `--cache-to` needs from the build.
pub struct ExportInput<'a> {
    pub store: &'a Store,
    pub cache: &'a CacheIndex,
    /// Each platform's plan and solve.
    pub builds: &'a [(&'a Plan, &'a Solved)],
    /// `--compression`, unless a spec says otherwise.
    pub compression: Compression,
}

/// Export the build cache to every `--cache-to`.
pub fn export(
    session: &Registry,
    input: &ExportInput<'_>,
    specs: &[CacheSpec],
    reporter: &dyn Reporter,
) -> miette::Result<()> {
    for spec in specs {
        match export_one(session, input, spec, reporter) {
            Ok(()) => {}
            Err(err) if spec.ignore_error => reporter.line(&format!(
                "warning: exporting the build cache to `{}` failed (ignored): {err:?}",
                spec.location
            )),
            Err(err) => {
                return Err(err.wrap_err(format!(
                    "the image was built, but exporting the build cache to `{}` failed",
                    spec.location
                )));
            }
        }
    }
    Ok(())
}

fn export_one(
    session: &Registry,
    input: &ExportInput<'_>,
    spec: &CacheSpec,
    reporter: &dyn Reporter,
) -> miette::Result<()> {
    let note = |text: &str| reporter.line(text);
    if let CacheLocation::Inline = spec.location {
        // Embedded in each platform's image config when it was committed (`inline`).
        return Ok(());
    }
    if let CacheLocation::Local(dir) = &spec.location {
        // The export prunes blobs in DIR: never the store's own layout.
        crate::output::file::outside_store(dir, input.store.root(), false)?;
    }
    let steps = exported_steps(input.builds, spec.mode);
    let doc = cache_export::export(input.cache, &steps).map_err(Report::new)?;
    let target = match &spec.location {
        CacheLocation::Registry(reference) => Some(reference),
        CacheLocation::Local(_) | CacheLocation::Inline => None,
    };
    let mut layers = Vec::new();
    let mut mount_from = BTreeSet::new();
    for diff_id in doc.layers() {
        if !input.store.has_blob(&diff_id)
            && let Some(target) = target
            && let Some(source) = same_registry_source(session, &diff_id, target)
        {
            // Only in the registry we export to: name its blob there (HEAD skips it, or a
            // mount copies it across repositories) instead of downloading it.
            if source.reference.repository != target.repository {
                mount_from.insert(source.reference.repository.clone());
            }
            layers.push(LocalLayer {
                diff_id: diff_id.clone(),
                digest: source.blob.digest.clone(),
                size: source.blob.size,
                media_type: source.blob.media_type.clone(),
            });
            continue;
        }
        session
            .layers
            .ensure_local(session, input.store, std::slice::from_ref(&diff_id), &note)?;
        let size = input.store.blob_size(&diff_id).map_err(Report::new)?;
        layers.push(LocalLayer {
            diff_id: diff_id.clone(),
            digest: diff_id.clone(),
            size,
            media_type: rbuild_store::media::OCI_LAYER_TAR.to_string(),
        });
    }
    let tmp_dir = input.store.layout().tmp();
    fs_err::create_dir_all(&tmp_dir)
        .map_err(|e| miette::Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    let opts = PushOptions {
        compression: spec.compression.unwrap_or(input.compression),
        compress_threads: 0,
        mount_from: mount_from.into_iter().collect(),
        tmp_dir,
    };
    let (exported, written) = match target {
        Some(target) => {
            let progress = reporter.transfer(Transfer::Push);
            let exported = export_cache(
                session.client()?,
                input.store,
                target,
                &doc.to_bytes(),
                &layers,
                &opts,
                &*progress,
            )
            .map_err(Report::new)?;
            (exported, "uploaded")
        }
        None => {
            let CacheLocation::Local(dir) = &spec.location else {
                unreachable!("a cache without a registry target is local")
            };
            let exported = export_cache_local(input.store, dir, &doc.to_bytes(), &layers, &opts)
                .map_err(Report::new)?;
            (exported, "written")
        }
    };
    reporter.line(&format!(
        "exported build cache to `{}` (mode={}): {} entries, {} layers; {} blobs {written}, {} already there; {}",
        spec.location,
        match spec.mode {
            CacheMode::Min => "min",
            CacheMode::Max => "max",
        },
        doc.entries.len(),
        layers.len(),
        exported.uploaded,
        exported.skipped,
        exported.digest
    ));
    Ok(())
}

fn same_registry_source<'a>(
    session: &'a Registry,
    diff_id: &Digest,
    target: &RemoteRef,
) -> Option<&'a Source> {
    session
        .layers
        .source(diff_id)
        .filter(|s| s.reference.registry == target.registry)
}

/// Merge an imported cache document into `cache` (the trust rules of
/// [`cache_export::merge`]), warning about a document that cannot be used and about entries or
/// file lists that failed verification; `None` when nothing was merged. `shown` names the
/// cache (a registry reference or a directory).
fn merge_reporting(
    cache: &CacheIndex,
    index: &[u8],
    site_prefix: &str,
    now: i64,
    availability: &LayerAvailability<'_>,
    shown: &str,
    warn: &dyn Fn(&str),
) -> Option<cache_export::MergeReport> {
    let report = match cache_export::merge(cache, index, site_prefix, now, availability) {
        Ok(report) => report,
        Err(err) => {
            warn(&format!(
                "warning: ignoring build cache from `{shown}`: {}",
                describe(&err)
            ));
            return None;
        }
    };
    if let Some(first) = report.rejected.first() {
        warn(&format!(
            "warning: ignored {} entr{} of the build cache from `{shown}` that failed verification (key {}: {})",
            report.rejected.len(),
            if report.rejected.len() == 1 {
                "y"
            } else {
                "ies"
            },
            first.key,
            first.reason
        ));
    }
    if report.bad_files > 0 {
        warn(&format!(
            "warning: ignored {} file list(s) of the build cache from `{shown}` whose digest does not match (explanations will lack those files)",
            report.bad_files
        ));
    }
    Some(report)
}

/// Import the `type=local` cache in `dir`. Every blob is verified before anything is merged
/// (a corrupt directory is refused whole, as a warning); then the index is merged under the
/// usual trust rules and the layers of the usable entries are copied into the store (each
/// decompressed and verified against the diff_id its entry claims), rooted by their keys. All
/// of it under the directory's shared lock, so no export prunes it meanwhile.
fn import_local(
    store: &Store,
    cache: &CacheIndex,
    dir: &std::path::Path,
    site_prefix: &str,
    now: i64,
    warn: &dyn Fn(&str),
) {
    let shown = dir.display();
    // Shared with other importers, exclusive of exports: held until the last layer is copied.
    let imported = lock_for_import(dir).and_then(|lock| Ok((lock, import_cache_local(dir)?)));
    let (_lock, imported) = match imported {
        Ok(imported) => imported,
        Err(err) => {
            warn(&format!(
                "warning: cannot import build cache from `{shown}`, building without it: {}",
                describe(&err)
            ));
            return;
        }
    };
    let listed: BTreeSet<&Digest> = imported.layers.iter().map(|l| &l.diff_id).collect();
    let local = |d: &Digest| store.has_blob(d);
    let known = |d: &Digest| listed.contains(d);
    let availability = LayerAvailability {
        local: &local,
        remote: &known,
    };
    let Some(report) = merge_reporting(
        cache,
        &imported.index,
        site_prefix,
        now,
        &availability,
        &shown.to_string(),
        warn,
    ) else {
        return;
    };
    let mut copied = 0;
    for (key, diff_id) in &report.usable {
        let Some(diff_id) = diff_id else { continue };
        if !store.has_blob(diff_id) {
            let Some(layer) = imported.layers.iter().find(|l| &l.diff_id == diff_id) else {
                continue;
            };
            if let Err(err) = copy_layer(store, dir, layer) {
                warn(&format!(
                    "warning: cannot use layer {diff_id} of the build cache from `{shown}`: {err}"
                ));
                continue;
            }
            copied += 1;
        }
        let _ = store.set_ref(
            rbuild_store::refs::KIND_CACHE,
            &key.0,
            std::slice::from_ref(diff_id),
        );
    }
    warn(&format!(
        "imported build cache from `{shown}`: {} entries ({} new), {} layers copied",
        report.present + report.imported,
        report.imported,
        copied
    ));
}

/// Decompress one layer blob of a local cache into the store as the blob `diff_id` (the store
/// verifies the digest on commit: a layer whose content is not what the cache claims is
/// refused and nothing is stored).
fn copy_layer(
    store: &Store,
    dir: &std::path::Path,
    layer: &rbuild_registry::cache::CacheLayer,
) -> miette::Result<()> {
    let path = layer_path(dir, layer).map_err(Report::new)?;
    let file = fs_err::File::open(&path)
        .map_err(|e| Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    let declared = rbuild_store::media::layer_compression(&layer.blob.media_type);
    let (_, mut plain) = rbuild_store::layer::decompress(
        std::io::BufReader::with_capacity(1 << 20, file),
        declared,
        store.limits(),
        &layer.blob.digest,
    )
    .map_err(Report::new)?;
    let what = format!("cache layer {} (blob {})", layer.diff_id, layer.blob.digest);
    let mut writer = store
        .blob_writer_expecting(&layer.diff_id, None, &what)
        .map_err(Report::new)?;
    writer.copy_from(&mut plain).map_err(Report::new)?;
    writer.commit().map_err(Report::new)?;
    Ok(())
}

//! `rbuild system df|prune|fsck` and `rbuild store fsck`: disk usage shaped like
//! `docker system df` (with `-v` per-image shared/unique sizes), pruning, and the store
//! consistency check. Images are counted as docker counts them: configs and layers
//! uncompressed, each shared one once (`rbuild_store::content_size`).

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Subcommand};
use rbuild_store::Digest;
use rbuild_store::fsck::FsckOptions;
use rbuild_store::refs::{KIND_CACHE, KIND_CONTAINER};
use serde_json::json;

use super::storeutil::{human_size, open_store, relative_time, table};
use crate::args::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage: images, containers, build cache, snapshots.
    Df(DfArgs),
    /// Remove dangling images, unused build cache and unreferenced blobs.
    Prune(super::prune::PruneArgs),
    /// Check the store's consistency.
    Fsck(FsckArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check the store's consistency (exit 4 when it has problems).
    Fsck(FsckArgs),
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Per-image detail with shared and unique sizes.
    #[arg(short, long)]
    pub verbose: bool,
    /// `json`: one object per line.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Re-hash every blob, not only manifests and configs.
    #[arg(long)]
    pub full: bool,
    /// Quarantine corrupt blobs and remove leftovers of crashed processes.
    #[arg(long)]
    pub repair: bool,
}

pub fn run(global: &GlobalArgs, cmd: SystemCommand) -> miette::Result<u8> {
    match cmd {
        SystemCommand::Df(a) => df(global, a),
        SystemCommand::Prune(a) => super::prune::run(global, a),
        SystemCommand::Fsck(a) => fsck(global, a),
    }
}

pub fn run_store(global: &GlobalArgs, cmd: StoreCommand) -> miette::Result<u8> {
    match cmd {
        StoreCommand::Fsck(a) => fsck(global, a),
    }
}

fn fsck(global: &GlobalArgs, args: FsckArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let r = store.fsck(FsckOptions {
        full: args.full,
        repair: args.repair,
    })?;
    for p in &r.problems {
        println!("error: {p}");
    }
    for g in &r.garbage {
        println!("garbage: {g}");
    }
    for x in &r.repaired {
        println!("repaired: {x}");
    }
    if r.is_ok() {
        println!(
            "store ok: {} images, {} blobs{}",
            r.images_checked,
            r.blobs_checked,
            if args.full { " (all re-hashed)" } else { "" }
        );
        Ok(0)
    } else {
        Err(miette::Report::new(
            rbuild_store::Failure::new(
                rbuild_store::ErrorClass::Store,
                "rbuild::store::fsck",
                format!(
                    "the store at `{}` has {} problem(s)",
                    store.root().display(),
                    r.problems.len()
                ),
            )
            .with_help(
                "`rbuild store fsck --full --repair` quarantines corrupt blobs; pull or load the \
                 affected images again",
            ),
        ))
    }
}

fn df(global: &GlobalArgs, args: DfArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    // Abandoned `--rm` containers (their supervisor died) are removed, not counted.
    let container_dirs = rbuild_executor::container::Containers::open(store.root())?;
    container_dirs.remove_stale(|id| {
        let _ = store.remove_ref(KIND_CONTAINER, id);
    })?;
    let images = store.list_images()?;
    let in_use = store.images_in_use()?;
    let size_of = |d: &Digest| store.blob_size(d).unwrap_or(0);

    // Images are counted as docker counts them: configs and layers *uncompressed* (content
    // sizes by diff_id, `rbuild_store::content_size`), each config or layer once however many
    // platforms or images share it, whether its blob is stored compressed or not.
    let sizes = store.content_sizes(&images.iter().flat_map(|s| s.layers()).collect::<Vec<_>>())?;
    let mut unit_size: BTreeMap<Digest, u64> = BTreeMap::new();
    let units_of: Vec<Vec<Digest>> = images
        .iter()
        .map(|s| {
            let mut units = Vec::new();
            for (_, r) in s.target.images() {
                unit_size.insert(r.config_digest.clone(), r.manifest.config.size);
                units.push(r.config_digest.clone());
                for l in &r.layers {
                    unit_size.insert(
                        l.diff_id.clone(),
                        sizes.get(&l.diff_id).copied().unwrap_or(0),
                    );
                    units.push(l.diff_id.clone());
                }
            }
            units
        })
        .collect();
    let unit_of = |d: &Digest| unit_size.get(d).copied().unwrap_or(0);
    let mut users: BTreeMap<Digest, BTreeSet<usize>> = BTreeMap::new();
    for (i, units) in units_of.iter().enumerate() {
        for u in units {
            users.entry(u.clone()).or_default().insert(i);
        }
    }
    // Every blob the images hold (a multi-platform image: the index and all it holds), so the
    // build cache's own blobs can be told apart.
    let mut image_blobs: BTreeSet<Digest> = BTreeSet::new();
    for s in &images {
        match store.target_blobs(&s.target) {
            Ok(b) => image_blobs.extend(b.into_keys()),
            Err(_) => image_blobs.extend(s.record.blobs()),
        }
    }
    // The manifests and configs a container may name for each image.
    let keys_of = |s: &rbuild_store::ImageSummary| -> Vec<Digest> {
        let mut keys = vec![s.digest().clone()];
        for (_, r) in s.target.images() {
            keys.push(r.manifest_digest.clone());
            keys.push(r.config_digest.clone());
        }
        keys
    };
    let active: BTreeSet<usize> = images
        .iter()
        .enumerate()
        .filter(|(_, s)| keys_of(s).iter().any(|k| in_use.contains_key(k)))
        .map(|(i, _)| i)
        .collect();
    let image_bytes: u64 = users.keys().map(unit_of).sum();
    let reclaimable: u64 = users
        .iter()
        .filter(|(_, u)| u.iter().all(|i| !active.contains(i)))
        .map(|(d, _)| unit_of(d))
        .sum();

    let cache_refs = store.list_refs(KIND_CACHE)?;
    let mut cache_blobs: BTreeSet<Digest> = BTreeSet::new();
    for r in &cache_refs {
        for d in &r.digests {
            if !image_blobs.contains(d) && store.has_blob(d) {
                cache_blobs.insert(d.clone());
            }
        }
    }
    let cache_bytes: u64 = cache_blobs.iter().map(size_of).sum::<u64>()
        + rbuild_store::fsutil::dir_size(&store.layout().cache());
    let containers = store.list_refs(KIND_CONTAINER)?;
    let container_size = |c: &rbuild_store::refs::RefEntry| {
        rbuild_store::fsutil::dir_size(&store.layout().containers().join(&c.name))
    };
    let container_bytes: u64 = containers.iter().map(container_size).sum();
    // Active: running now (its supervisor holds its lock); the others' space is reclaimable.
    let running: Vec<bool> = containers
        .iter()
        .map(|c| container_dirs.status(&c.name).is_running())
        .collect();
    let containers_active = running.iter().filter(|r| **r).count();
    let container_reclaimable: u64 = containers
        .iter()
        .zip(&running)
        .filter(|(_, r)| !**r)
        .map(|(c, _)| container_size(c))
        .sum();
    let live = store.live_set()?;
    let mut snap_total = 0;
    let mut snap_live = 0;
    let mut snap_bytes = 0;
    let mut snap_dead_bytes = 0;
    if let Ok(entries) = std::fs::read_dir(store.snapshot_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::from_hex(&name) else {
                continue;
            };
            let bytes = rbuild_store::fsutil::dir_size(&e.path());
            snap_total += 1;
            snap_bytes += bytes;
            if live.snapshots.contains(&d) {
                snap_live += 1;
            } else {
                snap_dead_bytes += bytes;
            }
        }
    }
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let rows = vec![
        (
            "Images",
            images.len(),
            active.len(),
            image_bytes,
            format!(
                "{} ({}%)",
                human_size(reclaimable),
                pct(reclaimable, image_bytes)
            ),
            reclaimable,
        ),
        (
            "Containers",
            containers.len(),
            containers_active,
            container_bytes,
            format!(
                "{} ({}%)",
                human_size(container_reclaimable),
                pct(container_reclaimable, container_bytes)
            ),
            container_reclaimable,
        ),
        (
            "Build Cache",
            cache_refs.len(),
            0,
            cache_bytes,
            human_size(cache_bytes),
            cache_bytes,
        ),
        (
            "Snapshots",
            snap_total,
            snap_live,
            snap_bytes,
            human_size(snap_dead_bytes),
            snap_dead_bytes,
        ),
    ];
    if args.format.as_deref() == Some("json") {
        for (kind, total, act, size, reclaim, _) in &rows {
            println!(
                "{}",
                json!({"Type": kind, "TotalCount": total.to_string(), "Active": act.to_string(), "Size": human_size(*size), "Reclaimable": reclaim})
            );
        }
        return Ok(0);
    } else if let Some(f) = &args.format {
        return Err(miette::miette!(
            code = "rbuild::df::format",
            help = "use `--format json`",
            "unsupported format `{f}`"
        ));
    }
    if args.verbose {
        println!("Images space usage:\n");
        let mut body = Vec::new();
        for (i, s) in images.iter().enumerate() {
            let mut shared = 0;
            let mut unique = 0;
            let mine: BTreeSet<&Digest> = units_of[i].iter().collect();
            for u in mine {
                if users.get(u).is_some_and(|users| users.len() > 1) {
                    shared += unit_of(u);
                } else {
                    unique += unit_of(u);
                }
            }
            let names: Vec<(String, String)> = if s.names.is_empty() {
                vec![("<none>".into(), "<none>".into())]
            } else {
                s.names
                    .iter()
                    .map(|n| (n.familiar_name(), n.tag().unwrap_or("<none>").to_string()))
                    .collect()
            };
            let mut containers: BTreeSet<&String> = BTreeSet::new();
            for k in keys_of(s) {
                containers.extend(in_use.get(&k).into_iter().flatten());
            }
            let count = containers.len();
            for (repo, tag) in names {
                body.push(vec![
                    repo,
                    tag,
                    s.id().short().to_string(),
                    relative_time(s.record.config.created_time()),
                    human_size(s.content_size(&sizes)),
                    human_size(shared),
                    human_size(unique),
                    count.to_string(),
                ]);
            }
        }
        print!(
            "{}",
            table(
                &[
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "SHARED SIZE",
                    "UNIQUE SIZE",
                    "CONTAINERS"
                ],
                &body
            )
        );
        println!();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, t, a, s, r, _)| {
            vec![
                k.to_string(),
                t.to_string(),
                a.to_string(),
                human_size(*s),
                r.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &body)
    );
    Ok(0)
}

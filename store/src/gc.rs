//! Garbage collection and pruning. Roots: index.json entries (tagged and untagged images),
//! `refs/<kind>/<name>` digests, and the leases of live processes. The mark phase walks
//! manifests and indexes to configs, layers and subjects; a blob is kept iff it is marked. A
//! snapshot `snapshots/v2/<hex>` is kept iff `sha256:<hex>` is the chain id of a prefix of a
//! live config's diff_ids, named by a ref, or leased (a snapshot is keyed by its layer chain, see
//! [`crate::chain`]). The sweep (under the exclusive store lock) removes unmarked blobs,
//! snapshots of no live chain, the diff_id-keyed `snapshots/<hex>` directories of earlier
//! versions (never valid views), staging directories `tmp-<pid>-<start>.*` and other leftovers
//! of dead processes. `cache/` is the solver's: its index entries are kept alive by
//! `refs/cache/` refs and never swept here.
//!
//! Hooks for the other crates: the executor stages a snapshot with
//! [`Store::create_snapshot_staging`]`(chain_id)` (which leases the chain id) and publishes it
//! with [`Store::commit_snapshot`] (`fsutil::sync_tree`: each entry fsynced, or syncfs for a
//! large tree; rename; a concurrent duplicate is discarded). Each
//! cache entry becomes a root through `set_ref("cache", key, &[diff_id, chain id of its
//! snapshot])` (the solver's `Worker::keep_layer`, implemented by the executor), and its use is
//! marked with `touch_ref`; `rbuild run` registers a container with `set_ref("container", id,
//! &[manifest digest])`, so `rmi` refuses the image without `-f` and `prune -a` keeps it.
//!
//! [`Store::prune`]: remove dangling images (with `all_images`, every image no container uses),
//! skipping untagged images whose manifest is leased (a load or build between writing and
//! naming it) and re-checking "still dangling" under the index lock; remove build-cache refs
//! (all, or those unused since a time); then collect garbage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::image::ImageSummary;
use crate::lease::{self, Held};
use crate::manifest::{self, Document};
use crate::media;
use crate::reference::Reference;
use crate::refs::{KIND_CACHE, KIND_CONTAINER};
use crate::store::Store;
use crate::target::Target;

/// What is reachable from the roots.
#[derive(Debug, Default, Clone)]
pub struct LiveSet {
    /// Blobs to keep.
    pub blobs: BTreeSet<Digest>,
    /// Snapshot names (layer chain ids) to keep.
    pub snapshots: BTreeSet<Digest>,
}

/// What a collection removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub blobs: Vec<(Digest, u64)>,
    pub snapshots: Vec<(String, u64)>,
    pub ingests: usize,
    pub expired_leases: usize,
    pub tmp: usize,
}

impl GcReport {
    pub fn reclaimed_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum::<u64>()
            + self.snapshots.iter().map(|s| s.1).sum::<u64>()
    }
}

/// Options of `prune`.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also remove tagged images no container uses (`prune -a`).
    pub all_images: bool,
    /// Remove build-cache refs (those last used before `cache_older_than`, if set).
    pub build_cache: bool,
    pub cache_older_than: Option<jiff::Timestamp>,
}

/// One image removed by `rmi` or `prune`.
#[derive(Debug, Clone, Default)]
pub struct RemovedImage {
    pub id: Option<Digest>,
    pub untagged: Vec<Reference>,
    /// Whether the image itself (not only a name) went away.
    pub deleted: bool,
}

/// What `prune` did.
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    pub images: Vec<RemovedImage>,
    pub cache_refs: usize,
    pub gc: GcReport,
}

impl Store {
    /// The mark phase: everything reachable from the roots. Read-only; GC runs it under the
    /// exclusive lock, `system df` without.
    pub fn live_set(&self) -> Result<LiveSet> {
        let mut live = LiveSet::default();
        let mut queue: Vec<(Digest, Option<String>)> = Vec::new();
        for d in self.read_index()?.manifests {
            queue.push((d.digest, Some(d.media_type)));
        }
        for kind in self.ref_kinds()? {
            for r in self.list_refs(&kind)? {
                for d in r.digests {
                    live.snapshots.insert(d.clone());
                    queue.push((d, None));
                }
            }
        }
        let leases = lease::read_leases(&self.layout.leases())?;
        for d in leases.blobs {
            queue.push((d, None));
        }
        live.snapshots.extend(leases.snapshots);
        while let Some((d, media_type)) = queue.pop() {
            if !live.blobs.insert(d.clone()) {
                continue;
            }
            // Only documents reference other blobs; layers are never parsed.
            let known_doc = media_type
                .as_deref()
                .is_some_and(|m| media::is_manifest(m) || media::is_index(m));
            let unknown = media_type.is_none();
            if !(known_doc || unknown) {
                continue;
            }
            let Ok(size) = self.blob_size(&d) else {
                continue;
            };
            if size > self.limits.max_json_bytes || (unknown && !self.looks_like_json(&d)) {
                continue;
            }
            let Ok(bytes) = self.read_blob(&d) else {
                continue;
            };
            match manifest::parse_document(&bytes, None, self.limits.max_json_bytes, d.as_str()) {
                Ok(Document::Manifest(m)) => {
                    queue.push((m.config.digest.clone(), Some(m.config.media_type.clone())));
                    for l in &m.layers {
                        queue.push((l.digest.clone(), Some(l.media_type.clone())));
                    }
                    if let Some(s) = &m.subject {
                        queue.push((s.digest.clone(), Some(s.media_type.clone())));
                    }
                    if media::is_image_config(&m.config.media_type)
                        && let Ok(cb) = self.read_blob(&m.config.digest)
                        && let Ok(c) = crate::config::ImageConfig::parse(
                            &cb,
                            self.limits.max_json_bytes,
                            "config",
                        )
                    {
                        live.snapshots
                            .extend(crate::chain::chain_ids(&c.rootfs.diff_ids));
                    }
                }
                Ok(Document::Index(i)) => {
                    for c in &i.manifests {
                        queue.push((c.digest.clone(), Some(c.media_type.clone())));
                    }
                }
                Err(_) => {}
            }
        }
        Ok(live)
    }

    fn looks_like_json(&self, d: &Digest) -> bool {
        use std::io::Read;
        let mut b = [0u8; 1];
        self.open_blob(d)
            .and_then(|mut f| {
                f.read(&mut b)
                    .map_err(|e| Error::io("read", self.blob_path(d), e))
            })
            .is_ok_and(|n| n == 1 && b[0] == b'{')
    }

    /// Mark and sweep under the exclusive store lock.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let _g = self.lock_exclusive()?;
        let live = self.live_set()?;
        let mut report = GcReport::default();

        // Leftovers of dead processes first: their leases protect nothing any more.
        let leases = lease::read_leases(&self.layout.leases())?;
        for p in &leases.expired {
            let _ = fs::remove_file(p);
        }
        report.expired_leases = leases.expired.len();
        report.ingests = remove_dead_owned(&self.layout.ingest())?;
        report.tmp = remove_dead_owned(&self.layout.tmp())?;

        let blobs = self.layout.blobs();
        for entry in fs::read_dir(&blobs).ctx("list", &blobs)? {
            let entry = entry.ctx("list", &blobs)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::from_hex(&name) else {
                continue;
            };
            if live.blobs.contains(&d) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(entry.path()) {
                Ok(()) => report.blobs.push((d, size)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("remove", entry.path()),
            }
        }
        if !report.blobs.is_empty() {
            fsutil::fsync_dir(&blobs)?;
        }
        // Remote layer records of images that are gone (or of layers since fetched).
        self.prune_remote_blobs(&live.blobs)?;

        // `snapshots/<hex>` (keyed by one layer's diff_id) are from earlier versions: they are
        // not valid views of any chain, so they always go; `snapshots/v2/<hex>` are by chain.
        let legacy = self.layout.snapshots();
        self.sweep_snapshots(&legacy, &mut report, true, |_| true)?;
        let current = self.snapshot_dir();
        self.sweep_snapshots(&current, &mut report, false, |d| {
            !live.snapshots.contains(d)
        })?;

        Ok(report)
    }

    /// Manifests used by containers (`refs/container/*`), by manifest or config digest.
    pub fn images_in_use(&self) -> Result<BTreeMap<Digest, Vec<String>>> {
        let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for r in self.list_refs(KIND_CONTAINER)? {
            for d in r.digests {
                out.entry(d).or_default().push(r.name.clone());
            }
        }
        Ok(out)
    }

    /// The containers using `target`: its manifest or config, or (a multi-platform image)
    /// the index or any of its platform images.
    fn users_of(&self, target: &Target, in_use: &BTreeMap<Digest, Vec<String>>) -> Vec<String> {
        let mut keys = vec![target.digest()];
        for (_, image) in target.images() {
            keys.push(&image.manifest_digest);
            keys.push(&image.config_digest);
        }
        let mut users: Vec<String> = keys
            .iter()
            .filter_map(|d| in_use.get(*d))
            .flatten()
            .cloned()
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// `rmi`: remove a name, or a whole image. By name with other names left: only untag.
    /// By ID or last name: drop the image and collect its blobs. Refuses (unless `force`) an
    /// image a container uses, or one with several names when addressed by ID. A
    /// multi-platform image is one image: removing it drops the index, and GC collects the
    /// platform images nothing else names.
    pub fn remove(&self, input: &str, force: bool) -> Result<RemovedImage> {
        let target = self.resolve_target(input)?;
        let names = self.names_of(target.digest())?;
        let by_name = Reference::parse(input)
            .ok()
            .filter(|r| names.contains(r) || r.digest().is_some());
        // By ID, the image is every manifest with that config (e.g. the same layers stored
        // once compressed and once not), as docker's image ID names them all.
        let manifests: Vec<ImageSummary> = if by_name.is_none() {
            self.list_images()?
                .into_iter()
                .filter(|s| s.id() == target.id())
                .collect()
        } else {
            Vec::new()
        };
        let names = if manifests.len() > 1 {
            let mut all: Vec<Reference> = manifests.iter().flat_map(|s| s.names.clone()).collect();
            all.sort_by_key(|n| n.to_string());
            all.dedup();
            all
        } else {
            names
        };
        let in_use = self.images_in_use()?;
        let mut users = self.users_of(&target, &in_use);
        for s in &manifests {
            for u in self.users_of(&s.target, &in_use) {
                if !users.contains(&u) {
                    users.push(u);
                }
            }
        }
        let short = target.id().short().to_string();
        if let Some(r) = by_name.as_ref().filter(|r| r.digest().is_none())
            && names.len() > 1
        {
            self.untag(r)?;
            return Ok(RemovedImage {
                id: None,
                untagged: vec![r.clone()],
                deleted: false,
            });
        }
        if !force && !users.is_empty() {
            return Err(Error::Conflict {
                message: format!(
                    "unable to delete {short} (must be forced) - image is being used by container {}",
                    users.join(", ")
                ),
                help: "remove the container first, or pass -f to untag the image anyway"
                    .to_string(),
            });
        }
        if !force && by_name.is_none() && names.len() > 1 {
            let list: Vec<String> = names.iter().map(|n| n.familiar()).collect();
            return Err(Error::Conflict {
                message: format!(
                    "unable to delete {short} (must be forced) - image is referenced in multiple repositories ({})",
                    list.join(", ")
                ),
                help: "remove the names one by one, or pass -f".to_string(),
            });
        }
        let mut untagged = self.remove_image(target.digest())?;
        for s in manifests.iter().filter(|s| s.digest() != target.digest()) {
            untagged.extend(self.remove_image(s.digest())?);
        }
        self.collect_garbage()?;
        Ok(RemovedImage {
            id: Some(target.id().clone()),
            untagged,
            deleted: true,
        })
    }

    /// `prune`: dangling images (and with `all_images` every image no container uses), build
    /// cache refs, then garbage collection. A multi-platform image is one image: pruned as a
    /// whole, kept while a container uses any of its platforms.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let in_use = self.images_in_use()?;
        // Images another process is still producing (load, build) are held by its lease.
        let in_flight = lease::read_leases(&self.layout.leases())?.blobs;
        for summary in self.list_images()? {
            let dangling = summary.names.is_empty();
            if !(dangling || opts.all_images) {
                continue;
            }
            if !self.users_of(&summary.target, &in_use).is_empty()
                || in_flight.contains(summary.digest())
            {
                continue;
            }
            // Re-checked under the index lock: a name given since the listing keeps it.
            let Some(untagged) = self.remove_image_if(summary.digest(), !opts.all_images)? else {
                continue;
            };
            report.images.push(RemovedImage {
                id: Some(summary.id().clone()),
                untagged,
                deleted: true,
            });
        }
        if opts.build_cache {
            for r in self.list_refs(KIND_CACHE)? {
                if opts.cache_older_than.is_none_or(|t| r.updated < t)
                    && self.remove_ref(KIND_CACHE, &r.name)?
                {
                    report.cache_refs += 1;
                }
            }
        }
        report.gc = self.collect_garbage()?;
        Ok(report)
    }

    /// Remove the entries of the snapshot directory `dir` named by a digest hex for which
    /// `doomed` says so, and staging directories of dead processes. In the `legacy` directory
    /// of earlier versions, also their `.tmp-*` staging directories older than an hour.
    fn sweep_snapshots(
        &self,
        dir: &std::path::Path,
        report: &mut GcReport,
        legacy: bool,
        doomed: impl Fn(&Digest) -> bool,
    ) -> Result<()> {
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx("list", dir),
        };
        for entry in entries {
            let entry = entry.ctx("list", dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let remove = if let Ok(d) = Digest::from_hex(&name) {
                doomed(&d)
            } else if let Some(owner) = name.strip_prefix("tmp-") {
                fsutil::owner_of(owner)
                    .is_some_and(|(pid, start)| !fsutil::process_alive(pid, start))
            } else if legacy && name.starts_with(".tmp-") {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff)
            } else {
                false
            };
            if remove {
                let size = fsutil::dir_size(&entry.path());
                fsutil::remove_tree(&entry.path())?;
                report.snapshots.push((name, size));
            }
        }
        Ok(())
    }

    /// The directory of snapshots, `snapshots/v2/<chain id hex>`. A snapshot is the overlay
    /// lower directory that, stacked on the snapshots of the shorter chains below it, shows
    /// the view of its whole layer chain; it is only valid on that chain.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.layout.snapshots().join("v2")
    }

    /// Where the snapshot of the layer chain `chain_id` ([`crate::chain::chain_ids`]) lives
    /// (whether or not it exists). Never pass a bare diff_id of a layer above the first.
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir().join(chain_id.hex())
    }

    /// A fresh staging directory for building the snapshot of `chain_id`; the chain id is
    /// leased first. Fill it, then `commit_snapshot`. GC removes staging dirs of dead processes.
    pub fn create_snapshot_staging(&self, chain_id: &Digest) -> Result<PathBuf> {
        self.hold_snapshot(chain_id)?;
        let (pid, start) = fsutil::self_identity();
        let dir = self.snapshot_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ctx("create", &dir)?;
        let staging = tempfile::Builder::new()
            .prefix(&format!("tmp-{pid}-{start}."))
            .tempdir_in(&dir)
            .ctx("create a snapshot staging directory in", &dir)?;
        Ok(staging.keep())
    }

    /// Make a staged snapshot durable and move it to `snapshots/v2/<chain id hex>`. If another
    /// process committed the same snapshot first, the staging copy is removed and theirs is
    /// used. The staging directory must be on the store's filesystem.
    pub fn commit_snapshot(&self, staging: &std::path::Path, chain_id: &Digest) -> Result<PathBuf> {
        let target = self.snapshot_path(chain_id);
        fsutil::sync_tree(staging)?;
        let _g = self.lock_shared()?;
        self.record_in_lease(Held::Snapshot, chain_id)?;
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            staging,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => fsutil::remove_tree(staging)?,
            Err(e) => return Err(Error::io("rename snapshot into", &target, e.into())),
        }
        fsutil::fsync_dir(&self.snapshot_dir())?;
        Ok(target)
    }
}

/// Remove entries named `<pid>-<start>...` whose process is gone; returns how many.
fn remove_dead_owned(dir: &std::path::Path) -> Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx("list", dir),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((pid, start)) = fsutil::owner_of(&name)
            && !fsutil::process_alive(pid, start)
        {
            fsutil::remove_tree(&entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRecord;
    use crate::image::Layer;
    use crate::manifest::Descriptor;
    use crate::store::StoreOptions;

    fn image(s: &Store, content: &[u8]) -> ImageRecord {
        let b = s.put_blob(content).unwrap();
        let l = Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, b.digest.clone(), b.size),
            diff_id: b.digest,
        };
        s.commit_image(&crate::ImageConfig::new_for_host(), &[l])
            .unwrap()
    }

    #[test]
    fn gc_keeps_roots_and_leased_blobs_and_removes_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let img = image(&s, b"layer");
        let orphan = s.put_blob(b"orphan").unwrap().digest;
        // This handle's lease protects everything it wrote.
        assert!(s.collect_garbage().unwrap().blobs.is_empty());
        drop(s);
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let r = s.collect_garbage().unwrap();
        assert_eq!(
            r.blobs.iter().map(|b| &b.0).collect::<Vec<_>>(),
            vec![&orphan]
        );
        for b in img.blobs() {
            assert!(s.has_blob(&b), "{b} of an untagged image must survive");
        }
        // A ref keeps a blob and its snapshot dir alive; an unreferenced snapshot goes.
        let kept = s.put_blob(b"cached").unwrap().digest;
        s.set_ref(KIND_CACHE, "k1", std::slice::from_ref(&kept))
            .unwrap();
        fs::create_dir_all(s.snapshot_path(&kept)).unwrap();
        let stray = Digest::of(b"stray");
        fs::create_dir_all(s.snapshot_path(&stray)).unwrap();
        fs::create_dir_all(s.layout.cache().join("context")).unwrap();
        drop(s);
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        s.collect_garbage().unwrap();
        assert!(s.has_blob(&kept));
        assert!(s.snapshot_path(&kept).exists());
        assert!(!s.snapshot_path(&stray).exists());
        assert!(
            s.snapshot_path(&img.layers[0].diff_id)
                .parent()
                .unwrap()
                .exists()
        );
        assert!(
            s.layout.cache().join("context").exists(),
            "the solver's own files stay"
        );
    }

    /// Snapshots are kept by layer chain: every prefix chain of a live image's diff_ids stays,
    /// a directory named by a live layer's bare diff_id (above the first layer) is not a view
    /// of anything and goes, and so do the diff_id-keyed directories of earlier versions.
    #[test]
    fn gc_keeps_snapshots_by_chain_id() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let layers: Vec<Layer> = [b"one".as_slice(), b"two", b"three"]
            .iter()
            .map(|c| {
                let b = s.put_blob(c).unwrap();
                Layer {
                    descriptor: Descriptor::new(media::OCI_LAYER_TAR, b.digest.clone(), b.size),
                    diff_id: b.digest,
                }
            })
            .collect();
        let img = s
            .commit_image(&crate::ImageConfig::new_for_host(), &layers)
            .unwrap();
        s.tag(&img, &Reference::parse("chain:1").unwrap()).unwrap();
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = crate::chain::chain_ids(&diff_ids);
        for c in &chains {
            fs::create_dir_all(s.snapshot_path(c)).unwrap();
        }
        // The top layer's diff_id as a snapshot name: the old, wrong key.
        fs::create_dir_all(s.snapshot_path(&diff_ids[2])).unwrap();
        let legacy = s.layout.snapshots().join(diff_ids[1].hex());
        fs::create_dir_all(&legacy).unwrap();
        let legacy_tmp = s.layout.snapshots().join(".tmp-old");
        fs::create_dir_all(&legacy_tmp).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::open(&legacy_tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        drop(s);
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let r = s.collect_garbage().unwrap();
        for c in &chains {
            assert!(s.snapshot_path(c).is_dir(), "chain {c} must be kept");
        }
        assert!(!s.snapshot_path(&diff_ids[2]).exists());
        assert!(
            !legacy.exists(),
            "diff_id-keyed snapshots of old versions go"
        );
        assert!(!legacy_tmp.exists(), "and their stale temporaries");
        assert_eq!(r.snapshots.len(), 3, "{:?}", r.snapshots);
        // Untagged and unreferenced: every chain goes.
        s.untag(&Reference::parse("chain:1").unwrap()).unwrap();
        s.prune(&PruneOptions::default()).unwrap();
        for c in &chains {
            assert!(!s.snapshot_path(c).exists());
        }
    }

    #[test]
    fn rmi_and_prune() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let a = image(&s, b"a");
        let b = image(&s, b"b");
        s.tag(&a, &Reference::parse("a:1").unwrap()).unwrap();
        s.tag(&a, &Reference::parse("a:2").unwrap()).unwrap();
        // By ID with two names: refused without force.
        assert!(matches!(
            s.remove(a.id().short(), false),
            Err(Error::Conflict { .. })
        ));
        // A container using b blocks its removal.
        s.set_ref(
            KIND_CONTAINER,
            "c1",
            std::slice::from_ref(&b.manifest_digest),
        )
        .unwrap();
        assert!(matches!(
            s.remove(b.id().short(), false),
            Err(Error::Conflict { .. })
        ));
        let r = s.remove("a:1", false).unwrap();
        assert!(!r.deleted);
        let r = s.remove("a:2", false).unwrap();
        assert!(r.deleted);
        drop(s);
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        s.collect_garbage().unwrap();
        assert!(!s.has_blob(&a.config_digest));
        // b is dangling but used by a container: prune keeps it; after the container goes, it goes.
        assert!(s.prune(&PruneOptions::default()).unwrap().images.is_empty());
        s.remove_ref(KIND_CONTAINER, "c1").unwrap();
        let r = s.prune(&PruneOptions::default()).unwrap();
        assert_eq!(r.images.len(), 1);
        drop(s);
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        s.collect_garbage().unwrap();
        assert!(!s.has_blob(&b.config_digest));
    }
}

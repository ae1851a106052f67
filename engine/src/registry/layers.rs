//! Layers of imported registry caches, fetched only when the build needs them: a cached step
//! whose layer is only in the registry counts as a hit, and its blob is downloaded (digest
//! verified) just before a step runs on it, a later stage copies from it, or the final image
//! is committed. The blob is decompressed into the store as the uncompressed layer, verified
//! against the diff_id the cache entry claims — exactly how a layer built here is stored — so
//! the image equals the exporting machine's, and a later push reuses the registry's
//! compressed blob (its digest is remembered per compression).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use miette::{Report, WrapErr};
use rbuild_registry::store_api::{Ingest, PullTarget, PushSource};
use rbuild_registry::{Client, Descriptor, FetchedManifest, NoProgress, RegistryError, RemoteRef};
use rbuild_solver::scheduler::Solved;
use rbuild_solver::worker::{ExecRequest, Layer, Worker};
use rbuild_store::{Digest, Store};

use super::Registry;

/// Where one cached layer can be fetched.
#[derive(Debug, Clone)]
pub struct Source {
    pub reference: RemoteRef,
    /// The blob as the registry has it (usually compressed).
    pub blob: Descriptor,
}

/// The layers imported caches can provide, by diff_id.
#[derive(Default)]
pub struct RemoteLayers {
    sources: BTreeMap<Digest, Vec<Source>>,
    /// Cache keys whose entries produced each layer (they become its GC roots once fetched).
    keys: BTreeMap<Digest, BTreeSet<String>>,
    /// One download per layer at a time, whichever stage asks first.
    locks: Mutex<BTreeMap<Digest, Arc<Mutex<()>>>>,
}

impl RemoteLayers {
    pub fn add_source(&mut self, diff_id: &Digest, source: Source) {
        self.sources
            .entry(diff_id.clone())
            .or_default()
            .push(source);
    }

    pub fn add_key(&mut self, diff_id: &Digest, key: &str) {
        self.keys
            .entry(diff_id.clone())
            .or_default()
            .insert(key.to_string());
    }

    pub fn has_source(&self, diff_id: &Digest) -> bool {
        self.sources.contains_key(diff_id)
    }

    /// The first place a layer can be fetched from.
    pub fn source(&self, diff_id: &Digest) -> Option<&Source> {
        self.sources.get(diff_id).and_then(|s| s.first())
    }

    /// Make every layer of `diff_ids` that is missing locally but available remotely local,
    /// downloading in parallel. Layers nobody can provide are left to the caller to report.
    pub fn ensure_local(
        &self,
        session: &Registry,
        store: &Store,
        diff_ids: &[Digest],
        note: &(dyn Fn(&str) + Sync),
    ) -> miette::Result<()> {
        let mut missing: Vec<&Digest> = diff_ids
            .iter()
            .filter(|d| self.has_source(d) && !store.has_blob(d))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let client = session.client()?;
        let workers = client
            .config()
            .network
            .parallel
            .clamp(1, 16)
            .min(missing.len());
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Report>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        if first_error.lock().expect("error lock").is_some() {
                            return;
                        }
                        let Some(diff_id) = missing.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            return;
                        };
                        if let Err(err) = self.fetch(client, store, diff_id, note) {
                            first_error.lock().expect("error lock").get_or_insert(err);
                            return;
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("error lock") {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Download one layer from the first source that serves it correctly.
    fn fetch(
        &self,
        client: &Client,
        store: &Store,
        diff_id: &Digest,
        note: &(dyn Fn(&str) + Sync),
    ) -> miette::Result<()> {
        let lock = self
            .locks
            .lock()
            .expect("layer locks")
            .entry(diff_id.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().expect("layer lock");
        if store.has_blob(diff_id) {
            return Ok(());
        }
        let mut last = None;
        for source in self.sources.get(diff_id).into_iter().flatten() {
            match fetch_from(client, store, diff_id, source) {
                Ok(()) => {
                    // GC roots like those of locally built entries: one ref per cache key.
                    for key in self.keys.get(diff_id).into_iter().flatten() {
                        store
                            .set_ref(
                                rbuild_store::refs::KIND_CACHE,
                                key,
                                std::slice::from_ref(diff_id),
                            )
                            .map_err(Report::new)?;
                    }
                    note(&format!(
                        "fetched cache layer {} ({}) from {}",
                        short(diff_id),
                        rbuild_store::size::human(source.blob.size),
                        source.reference
                    ));
                    return Ok(());
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("only called for layers with a source"))
    }
}

/// Download `source` into a temporary file, then decompress it into the store as the blob
/// `diff_id` (the store verifies the digest on commit: a layer whose content is not what the
/// cache entry claims is refused and nothing is stored).
fn fetch_from(
    client: &Client,
    store: &Store,
    diff_id: &Digest,
    source: &Source,
) -> miette::Result<()> {
    let context = || {
        format!(
            "cannot fetch cache layer {} from `{}`",
            short(diff_id.as_str()),
            source.reference
        )
    };
    let tmp_dir = store.layout().tmp();
    fs_err::create_dir_all(&tmp_dir)
        .map_err(|e| miette::Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    let staging = TempBlob {
        dir: tmp_dir,
        done: Mutex::new(None),
    };
    rbuild_registry::pull::fetch_blob(
        client,
        &staging,
        &source.reference,
        &source.blob,
        &NoProgress,
    )
    .map_err(|e| Report::new(e).wrap_err(context()))?;
    let file = staging
        .done
        .into_inner()
        .expect("staging lock")
        .ok_or_else(|| miette::miette!("internal error: the cache layer download stored nothing"))
        .wrap_err_with(context)?;
    let reader = file
        .reopen()
        .map_err(|e| miette::Report::new(rbuild_store::Failure::store_io(e.to_string())))?;
    let declared = rbuild_store::media::layer_compression(&source.blob.media_type);
    let (codec, mut plain) = rbuild_store::layer::decompress(
        BufReader::with_capacity(1 << 20, reader),
        declared,
        store.limits(),
        &source.blob.digest,
    )
    .map_err(|e| Report::new(e).wrap_err(context()))?;
    let what = format!("cache layer {diff_id} (blob {})", source.blob.digest);
    let mut writer = store
        .blob_writer_expecting(diff_id, None, &what)
        .map_err(Report::new)?;
    writer
        .copy_from(&mut plain)
        .map_err(|e| Report::new(e).wrap_err(context()))?;
    writer
        .commit()
        .map_err(|e| Report::new(e).wrap_err(context()))?;
    if matches!(
        codec,
        rbuild_store::Compression::Gzip | rbuild_store::Compression::Zstd
    ) {
        // A later push or export of this layer finds the registry's blob instead of
        // recompressing; a stale memory only costs one recompression.
        let _ =
            store.remember_compressed(diff_id, codec.name(), &source.blob.digest, source.blob.size);
    }
    Ok(())
}

/// A pull target that stages one blob in a temporary file instead of the store.
struct TempBlob {
    dir: PathBuf,
    done: Mutex<Option<tempfile::NamedTempFile>>,
}

struct TempIngest<'a> {
    file: tempfile::NamedTempFile,
    done: &'a Mutex<Option<tempfile::NamedTempFile>>,
}

impl Write for TempIngest<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Ingest for TempIngest<'_> {
    fn commit(self: Box<Self>) -> rbuild_registry::Result<()> {
        let TempIngest { mut file, done } = *self;
        file.flush()
            .map_err(|e| RegistryError::io("staging a cache layer", e))?;
        *done.lock().expect("staging lock") = Some(file);
        Ok(())
    }
}

impl PullTarget for TempBlob {
    fn has_blob(&self, _digest: &rbuild_store::Digest) -> bool {
        false
    }

    fn begin_blob(
        &self,
        _digest: &rbuild_store::Digest,
        _size: u64,
    ) -> rbuild_registry::Result<Box<dyn Ingest + '_>> {
        let file = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| RegistryError::io("staging a cache layer", e))?;
        Ok(Box::new(TempIngest {
            file,
            done: &self.done,
        }))
    }

    fn record_image(
        &self,
        _name: &str,
        _tag: Option<&str>,
        _manifest: &FetchedManifest,
        _index: Option<&FetchedManifest>,
    ) -> rbuild_registry::Result<()> {
        Err(RegistryError::io(
            "staging a cache layer",
            std::io::Error::other("a cache layer download records no image"),
        ))
    }

    fn record_index(
        &self,
        _name: &str,
        _tag: Option<&str>,
        _index: &FetchedManifest,
        _manifests: &[FetchedManifest],
    ) -> rbuild_registry::Result<()> {
        Err(RegistryError::io(
            "staging a cache layer",
            std::io::Error::other("a cache layer download records no image"),
        ))
    }
}

/// The build's worker, made aware of remote cache layers: they count as present, and the
/// ones a step runs on or reads from are fetched before it executes.
pub struct CacheAwareWorker<'a> {
    inner: &'a dyn Worker,
    session: &'a Registry,
    store: &'a Store,
    note: &'a (dyn Fn(&str) + Sync),
    /// Layers of the build's base images by diff_id: those a step reads are fetched first
    /// when they are remote (`remote_layers`).
    bases: BTreeMap<Digest, rbuild_store::Layer>,
    /// Where base-layer downloads report.
    progress: Option<&'a dyn rbuild_registry::Progress>,
}

impl<'a> CacheAwareWorker<'a> {
    pub fn new(
        inner: &'a dyn Worker,
        session: &'a Registry,
        store: &'a Store,
        note: &'a (dyn Fn(&str) + Sync),
    ) -> CacheAwareWorker<'a> {
        CacheAwareWorker {
            inner,
            session,
            store,
            note,
            bases: BTreeMap::new(),
            progress: None,
        }
    }

    /// Fetch the remote layers of `bases` that a step is about to read, reporting to
    /// `progress`.
    pub fn with_bases(
        mut self,
        bases: &BTreeMap<Digest, rbuild_store::ImageRecord>,
        progress: &'a dyn rbuild_registry::Progress,
    ) -> CacheAwareWorker<'a> {
        self.bases = super::remote_layers::base_layers(bases);
        self.progress = Some(progress);
        self
    }
}

impl Worker for CacheAwareWorker<'_> {
    fn execute(&self, req: ExecRequest<'_>) -> miette::Result<Option<Layer>> {
        let mut needed: Vec<Digest> = req.parent_layers.to_vec();
        needed.extend(req.stage_layers.values().flatten().cloned());
        self.session
            .layers
            .ensure_local(self.session, self.store, &needed, self.note)
            .wrap_err_with(|| {
                format!("cannot prepare the layers `{}` runs on", req.step.display)
            })?;
        if let Some(progress) = self.progress {
            // A base resolved without its layers: the step reads them, so they come now.
            let base: Vec<rbuild_store::Layer> = needed
                .iter()
                .filter_map(|d| self.bases.get(d).cloned())
                .collect();
            super::remote_layers::fetch_layers(self.session, self.store, &base, progress)
                .wrap_err_with(|| {
                    format!("cannot prepare the layers `{}` runs on", req.step.display)
                })?;
        }
        self.inner.execute(req)
    }

    fn has_layer(&self, diff_id: &Digest) -> bool {
        self.inner.has_layer(diff_id) || self.session.layers.has_source(diff_id)
    }

    fn keep_layer(&self, key: &str, diff_id: &Digest) -> miette::Result<()> {
        self.inner.keep_layer(key, diff_id)
    }

    fn touch_layer(&self, key: &str) {
        self.inner.touch_layer(key)
    }
}

/// Before the final image is committed: fetch the target's cached layers that are only in a
/// registry.
pub fn fetch_target_layers(
    session: &Registry,
    store: &Store,
    plan: &rbuild_solver::op::Plan,
    solved: &Solved,
    note: &(dyn Fn(&str) + Sync),
) -> miette::Result<()> {
    let Some(Some(target)) = solved.stages.get(plan.target) else {
        return Ok(());
    };
    let Some(chain) = &target.layers else {
        return Ok(());
    };
    session
        .layers
        .ensure_local(session, store, chain, note)
        .wrap_err("cannot fetch the cached layers of the image")
}

/// The first 12 hex digits of a digest, as docker shows layers.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

//! The solver's `Worker` for real builds: parent layers unpacked once into snapshots, RUN in
//! the sandbox, COPY/ADD/WORKDIR written through a detached overlay of the parent snapshots,
//! and every step's changes stored as an uncompressed layer blob (its digest is its diff_id)
//! whose upper directory becomes the new layer's snapshot.

mod copy;
mod dest;
pub mod error;
mod rootfs;
mod run;
pub(crate) mod upper;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use rbuild_solver::inputs::Inputs;
use rbuild_solver::op::{CopyOp, FileSource, MkdirOp, Op, Plan, Step};
use rbuild_solver::worker::{self, ExecRequest, Layer, Worker};
use rbuild_store::{Descriptor, Digest, ImageRecord, Store, media};

pub use run::SecretSource;

use crate::layer::LayerOptions;
use crate::step::{Executor, ExecutorOptions};
use error::StepError;
use rootfs::FileRootfs;

/// Build-wide settings of the worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Clamp file times and fix whiteout times (reproducible builds).
    pub source_date_epoch: Option<i64>,
    /// `--add-host` entries for every RUN step's `/etc/hosts`, as (name, IP address).
    pub extra_hosts: Vec<(String, String)>,
    /// `--shm-size`: bytes of every RUN step's `/dev/shm`.
    pub shm_size: Option<u64>,
    /// `--ulimit`s of every RUN step.
    pub ulimits: Vec<crate::sandbox::Ulimit>,
    /// `--network` for RUN steps that do not choose.
    pub network: rbuild_solver::op::Network,
    /// `--secret` values by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh` agents by id: the socket each ssh mount of that id forwards to.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--memory`: limit (bytes, memory + swap) for every RUN step.
    pub memory: Option<u64>,
    /// `--pids-limit`: cap on the tasks of every RUN step.
    pub pids: crate::sandbox::PidsLimit,
    /// How step root filesystems are made and diffed (`--snapshotter`).
    pub backend: crate::Backend,
}

pub struct BuildWorker<'a> {
    store: &'a Store,
    exec: Executor,
    inputs: &'a Inputs,
    /// Stored layers of base images by diff_id (they may be compressed).
    bases: BTreeMap<Digest, rbuild_store::Layer>,
    options: WorkerOptions,
    cancel: crate::sandbox::CancelToken,
    logs: PathBuf,
    /// diff_id → chain id of the snapshot each layer built here was made on.
    produced: std::sync::Mutex<std::collections::HashMap<Digest, Digest>>,
}

impl<'a> BuildWorker<'a> {
    pub fn new(
        store: &'a Store,
        _plan: &'a Plan,
        inputs: &'a Inputs,
        bases: &BTreeMap<Digest, ImageRecord>,
        options: WorkerOptions,
        cancel: &worker::CancelToken,
    ) -> miette::Result<BuildWorker<'a>> {
        let exec = Executor::new(
            store.root(),
            ExecutorOptions {
                backend: options.backend,
                ..ExecutorOptions::default()
            },
        )
        .map_err(miette::Report::new)?;
        let exec_cancel = crate::sandbox::CancelToken::new();
        let hook = exec_cancel.clone();
        cancel.on_cancel(move || hook.cancel());
        let logs = store.root().join("logs");
        fs_err::create_dir_all(&logs).map_err(|e| {
            miette::Report::new(rbuild_store::Failure::store_io(format!(
                "cannot create the log directory: {e}"
            )))
        })?;
        let bases = bases
            .values()
            .flat_map(|r| r.layers.iter())
            .map(|l| (l.diff_id.clone(), l.clone()))
            .collect();
        Ok(BuildWorker {
            store,
            exec,
            inputs,
            bases,
            options,
            cancel: exec_cancel,
            logs,
            produced: Default::default(),
        })
    }

    /// The stored layer of a diff_id: a base image's (maybe compressed) or one we built
    /// (uncompressed, blob digest = diff_id).
    fn stored_layer(&self, diff_id: &Digest) -> Result<rbuild_store::Layer, StepError> {
        if let Some(layer) = self.bases.get(diff_id) {
            return Ok(layer.clone());
        }
        let size = self.store.blob_size(diff_id)?;
        Ok(rbuild_store::Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, diff_id.clone(), size),
            diff_id: diff_id.clone(),
        })
    }

    /// Snapshot directories of a layer chain (bottom first), one per prefix chain, applying
    /// missing ones in order; each is leased against GC for this build.
    fn chain(&self, diff_ids: &[Digest]) -> Result<Vec<PathBuf>, StepError> {
        let layers = diff_ids
            .par_iter()
            .map(|diff_id| self.stored_layer(diff_id))
            .collect::<Result<Vec<_>, StepError>>()?;
        self.exec
            .snapshots()
            .ensure_chain(self.store, &layers)
            .map_err(StepError::Exec)
    }

    /// The chain id of `diff_ids` (`None` for no layers): what names their snapshot.
    fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
        rbuild_store::chain::chain_ids(diff_ids).pop()
    }

    /// Remember which chain a step's new layer was made on, so `keep_layer` can keep that
    /// snapshot alive with the cache entry.
    fn produced(&self, parent: Option<&Digest>, layer: &Option<Layer>) {
        if let Some(layer) = layer
            && let Ok(mut map) = self.produced.lock()
        {
            map.insert(
                layer.diff_id.clone(),
                rbuild_store::chain::chain_id(parent, &layer.diff_id),
            );
        }
    }

    fn log_path(&self, step: &Step) -> PathBuf {
        let now = jiff::Timestamp::now().as_millisecond();
        self.logs.join(format!(
            "{now}-{}-s{}-{}.log",
            std::process::id(),
            step.id.stage,
            step.id.index
        ))
    }

    fn layer_options(&self) -> LayerOptions {
        LayerOptions {
            source_date_epoch: self.options.source_date_epoch,
        }
    }

    /// Run a file step (COPY/ADD/WORKDIR) through a detached overlay of the parent layers.
    /// `mount`: write through a detached overlay mount (only needed to extract archives with
    /// the store's unpacker); otherwise entries go straight into the upper directory.
    fn file_step(
        &self,
        req: &ExecRequest<'_>,
        mount: bool,
        body: impl FnOnce(&dest::Dest) -> Result<(), StepError>,
    ) -> Result<Option<Layer>, StepError> {
        let lowers = self.chain(req.parent_layers)?;
        let parent = Self::chain_id(req.parent_layers);
        let rootfs = FileRootfs::new(&self.store.root().join("exec"), &lowers, mount)?;
        {
            let dest = if mount {
                dest::Dest::overlay(rootfs.root())
            } else {
                dest::Dest::upper(rootfs.upper(), &lowers)
            }
            .map_err(|e| StepError::io("open", "the step root", e))?;
            body(&dest)?;
        }
        let layer = rootfs.finish(self.store, &self.layer_options(), parent.as_ref())?;
        self.produced(parent.as_ref(), &layer);
        Ok(layer)
    }

    fn copy(&self, req: &ExecRequest<'_>, op: &CopyOp) -> Result<Option<Layer>, StepError> {
        let source_layers = match &op.from {
            FileSource::Context => None,
            FileSource::Stage(i) => Some(self.chain(&req.stage_layers[i])?),
            FileSource::Image(img) => Some(self.chain(&img.diff_ids)?),
        };
        // The previous build's snapshot of this step, if it was made on the same parent chain
        // (snapshots are keyed by chain: on another parent it is not there to find).
        let parent = Self::chain_id(req.parent_layers);
        let reuse = req
            .previous_layer
            .filter(|_| op.from == FileSource::Context)
            .and_then(|d| {
                let chain = rbuild_store::chain::chain_id(parent.as_ref(), d);
                let path = self.store.snapshot_path(&chain);
                (path.is_dir() && self.store.hold_snapshot(&chain).is_ok()).then_some(path)
            });
        let inputs = copy::CopyInputs {
            context: self.inputs.context.as_deref(),
            step: self.inputs.steps.get(&req.step.id),
            source_layers,
            reuse,
        };
        // ADD may extract local archives (or a URL with --unpack): that needs the mount.
        let mount = op.add
            && (op.unpack == Some(true)
                || (op.unpack != Some(false)
                    && op
                        .sources
                        .iter()
                        .any(|s| matches!(s, rbuild_solver::op::CopySource::Path { .. }))));
        self.file_step(req, mount, |dest| copy::copy(dest, op, &inputs))
    }

    fn mkdir(&self, req: &ExecRequest<'_>, op: &MkdirOp) -> Result<Option<Layer>, StepError> {
        self.file_step(req, false, |dest| {
            // BuildKit creates WORKDIR owned by the USER in effect.
            let owner = if op.user.is_empty() {
                (0, 0)
            } else {
                let passwd = dest.read_small("/etc/passwd", 4 << 20);
                let group = dest.read_small("/etc/group", 4 << 20);
                let id = crate::user::resolve(&op.user, passwd.as_deref(), group.as_deref())
                    .map_err(StepError::Exec)?;
                (id.uid, id.gid)
            };
            let rel =
                dest::rel_path(&op.path).map_err(|e| StepError::io("resolve", &op.path, e))?;
            dest.mkdir_all(&rel, owner, 0o755)
                .map_err(|e| StepError::io("create", &op.path, e))?;
            Ok(())
        })
    }
}

impl Worker for BuildWorker<'_> {
    fn execute(&self, mut req: ExecRequest<'_>) -> miette::Result<Option<Layer>> {
        if req.cancel.is_cancelled() {
            return Err(miette::Report::new(rbuild_store::Failure::interrupted(
                format!("build cancelled before `{}`", req.step.display),
            )));
        }
        let step = req.step;
        match &step.op {
            Op::Run(run) => self.run(&mut req, run),
            Op::Copy(op) => self.copy(&req, op).map_err(|e| e.at(step)),
            Op::Mkdir(op) => self.mkdir(&req, op).map_err(|e| e.at(step)),
            Op::Meta => Ok(None),
        }
    }

    fn has_layer(&self, diff_id: &Digest) -> bool {
        self.store.has_blob(diff_id)
    }

    fn keep_layer(&self, key: &str, diff_id: &Digest) -> miette::Result<()> {
        // The layer, and the snapshot of the chain it was made on (GC keeps both).
        let mut digests = vec![diff_id.clone()];
        if let Some(chain) = self
            .produced
            .lock()
            .ok()
            .and_then(|m| m.get(diff_id).cloned())
        {
            digests.push(chain);
        }
        self.store
            .set_ref(rbuild_store::refs::KIND_CACHE, key, &digests)
            .map_err(miette::Report::new)
    }

    fn touch_layer(&self, key: &str) {
        let _ = self.store.touch_ref(rbuild_store::refs::KIND_CACHE, key);
    }
}

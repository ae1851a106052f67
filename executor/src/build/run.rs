//! RUN: the planned step becomes a sandbox run over the parent snapshots — its mounts converted
//! (context and stage binds, caches, tmpfs, secrets, heredoc scripts), output streamed to the
//! solver and kept in a log — and a non-zero exit becomes a report at the RUN line with the
//! command, the status, the last lines of output and the log's path.

use std::path::PathBuf;

use rbuild_solver::op::{FileSource, Network, RunMount, RunOp, Sharing};
use rbuild_solver::worker::{ExecRequest, Layer};

use super::BuildWorker;
use super::error::{StepError, StepFailure, step_span};
use crate::mounts::{
    self, BindMount, BindSource, CacheMount, CacheSeed, SecretMount, SecretValue, TmpfsMount,
};
use crate::sandbox::Stdio3;
use crate::step::RunStep;

/// How many output lines a failed RUN shows.
const TAIL: usize = 20;

/// Where a `--secret` value comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl BuildWorker<'_> {
    fn mount(&self, req: &ExecRequest<'_>, m: &RunMount) -> Result<mounts::RunMount, StepError> {
        Ok(match m {
            RunMount::Bind {
                target,
                from,
                source,
                rw,
            } => {
                let source = match from {
                    FileSource::Context => {
                        let ctx =
                            self.inputs
                                .context
                                .as_ref()
                                .ok_or_else(|| StepError::Invalid {
                                    message:
                                        "internal error: a context bind mount without a context"
                                            .into(),
                                })?;
                        // The RUN sees what the cache key covers: no `.dockerignore`d file.
                        let hidden = ctx.hidden_paths().map_err(|e| StepError::Invalid {
                            message: format!("cannot read the build context: {e}"),
                        })?;
                        BindSource::Dir {
                            root: ctx.root().to_path_buf(),
                            subpath: source.clone(),
                            hidden,
                        }
                    }
                    FileSource::Stage(i) => BindSource::Layers {
                        lowers: self.chain(&req.stage_layers[i])?,
                        subpath: source.clone(),
                    },
                    FileSource::Image(img) => BindSource::Layers {
                        lowers: self.chain(&img.diff_ids)?,
                        subpath: source.clone(),
                    },
                };
                mounts::RunMount::Bind(BindMount {
                    target: target.clone(),
                    source,
                    readwrite: *rw,
                })
            }
            RunMount::Cache {
                id,
                target,
                sharing,
                readonly,
                mode,
                uid,
                gid,
                from,
                subpath,
            } => mounts::RunMount::Cache(CacheMount {
                subpath: subpath.clone(),
                seed: match from {
                    None => None,
                    Some((source, subpath)) => {
                        let diff_ids = match source {
                            FileSource::Stage(i) => &req.stage_layers[i],
                            FileSource::Image(img) => &img.diff_ids,
                            FileSource::Context => {
                                return Err(StepError::Invalid {
                                    message: "a cache mount cannot start from the build context"
                                        .into(),
                                });
                            }
                        };
                        Some(CacheSeed {
                            lowers: self.chain(diff_ids)?,
                            subpath: subpath.clone(),
                            identity: diff_ids
                                .iter()
                                .map(|d| d.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        })
                    }
                },
                target: target.clone(),
                id: id.clone(),
                sharing: match sharing {
                    Sharing::Shared => mounts::Sharing::Shared,
                    Sharing::Private => mounts::Sharing::Private,
                    Sharing::Locked => mounts::Sharing::Locked,
                },
                mode: *mode,
                uid: *uid,
                gid: *gid,
                readonly: *readonly,
            }),
            RunMount::Tmpfs { target, size } => mounts::RunMount::Tmpfs(TmpfsMount {
                target: target.clone(),
                size: *size,
            }),
            RunMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let value = match self.options.secrets.get(id) {
                    Some(SecretSource::File(path)) => Some(SecretValue::File(path.clone())),
                    Some(SecretSource::Env(var)) => {
                        std::env::var_os(var).map(|v| SecretValue::Bytes(v.into_encoded_bytes()))
                    }
                    None => None,
                };
                let mut secret = SecretMount::new(id, value);
                secret.target = target.clone();
                secret.env = env.clone();
                secret.required = *required;
                secret.mode = *mode;
                secret.uid = *uid;
                secret.gid = *gid;
                mounts::RunMount::Secret(secret)
            }
            RunMount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
                span: _,
            } => mounts::RunMount::Ssh(mounts::SshMount {
                id: id.clone(),
                agent: self.options.ssh.get(id).cloned(),
                target: target.clone(),
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            }),
            RunMount::InlineFile {
                target,
                content,
                mode,
            } => mounts::RunMount::File(mounts::InlineFile {
                // A heredoc script: bound read-only and executable, never in the layer.
                target: target.clone(),
                content: content.clone(),
                mode: *mode,
            }),
        })
    }

    pub(super) fn run(
        &self,
        req: &mut ExecRequest<'_>,
        run: &RunOp,
    ) -> miette::Result<Option<Layer>> {
        let step = req.step;
        let lowers = self.chain(req.parent_layers).map_err(|e| e.at(step))?;
        let mut mounts = Vec::with_capacity(run.mounts.len());
        for m in &run.mounts {
            mounts.push(self.mount(req, m).map_err(|e| e.at(step))?);
        }
        let log_path = self.log_path(step);
        let log = &mut *req.log;
        let mut on_line = |_stream: crate::sandbox::Stream, line: &[u8]| {
            let mut data = Vec::with_capacity(line.len() + 1);
            data.extend_from_slice(line);
            data.push(b'\n');
            log(&data);
        };
        let mut spec = RunStep::new(lowers, run.argv.clone(), Stdio3::Capture(&mut on_line));
        spec.env = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        spec.cwd = run.workdir.clone();
        spec.user = run.user.clone();
        spec.extra_hosts = self.options.extra_hosts.clone();
        spec.shm_size = self.options.shm_size;
        spec.ulimits = self.options.ulimits.clone();
        spec.network = match (run.network, self.options.network) {
            (Network::None, _) | (Network::Default, Network::None) => crate::sandbox::Network::None,
            _ => crate::sandbox::Network::Host,
        };
        if run.security == rbuild_solver::op::Security::Insecure {
            spec.security = crate::sandbox::Security::Insecure;
        }
        spec.mounts = mounts;
        spec.memory = self.options.memory;
        spec.pids = self.options.pids;
        spec.log_path = Some(log_path.clone());
        spec.cancel = Some(self.cancel.clone());
        let outcome = self
            .exec
            .run(spec)
            .map_err(|e| StepError::Exec(e).at(step))?;
        for warning in &outcome.warnings {
            (req.log)(format!("warning: {warning}\n").as_bytes());
        }
        if !outcome.status.success() {
            let tail: Vec<&String> = outcome.tail.iter().rev().take(TAIL).rev().collect();
            let mut help = String::new();
            if !tail.is_empty() {
                help.push_str(&format!("last {} lines of output:\n", tail.len()));
                for line in tail {
                    help.push_str("  ");
                    help.push_str(line);
                    help.push('\n');
                }
            }
            help.push_str(&format!("full log: {}", log_path.display()));
            if let crate::step::ExitStatus::PidsLimit { limit, .. } = outcome.status {
                help.push_str(&format!(
                    "\nthe step may have at most {limit} processes and threads: raise the \
                     limit with `rbuild build --pids-limit N` (-1 for no limit)"
                ));
            }
            return Err(miette::Report::new(StepFailure {
                class: rbuild_store::ErrorClass::Input,
                code: "rbuild::build::run_failed",
                message: format!(
                    "process \"{}\" did not complete successfully: {}",
                    run.argv.join(" "),
                    outcome.status
                ),
                label: format!("this RUN failed ({})", outcome.status),
                help: Some(help),
                span: step_span(step),
            }));
        }
        let rootfs = outcome.rootfs;
        let captured = rootfs
            .capture_layer(self.store, &self.layer_options())
            .map_err(|e| StepError::Exec(e).at(step))?;
        let Some(captured) = captured else {
            return Ok(None);
        };
        // The upper directory is the snapshot of this layer on this parent chain.
        let parent = Self::chain_id(req.parent_layers);
        let chain = rbuild_store::chain::chain_id(parent.as_ref(), &captured.diff_id);
        rootfs
            .commit_snapshot(self.store, &chain)
            .map_err(|e| StepError::Exec(e).at(step))?;
        let layer = Some(Layer {
            diff_id: captured.diff_id,
            size: captured.size,
        });
        self.produced(parent.as_ref(), &layer);
        Ok(layer)
    }
}

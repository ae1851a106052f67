//! Detached containers (`rbuild run -d`). The caller resolves the image, its snapshots and the
//! process, then [`start_detached`] re-executes this binary as `rbuild __rbuild-supervise`
//! with the [`DetachedRun`] as JSON on stdin. The supervisor leaves the caller's session
//! (`setsid`: no terminal signal or hang-up reaches it), creates the container record and its
//! GC root `refs/container/<id>` while holding the container's lock, answers the caller with
//! one JSON line on stdout (the id, or why it failed), and runs the container with its output
//! going to the bounded log ([`super::log`]). When the command ends it writes the exit status
//! to `state.json`, removes a `--rm` container (record, upper and ref), and exits — releasing
//! the lock, which is what `ps` reads as "not running". Killing the supervisor takes the
//! container down (the sandbox's PDEATHSIG chain); `ps` then shows it `Dead`.
//!
//! The binary's `main` must call [`maybe_run_supervisor`] right after
//! [`crate::sandbox::maybe_run_helper`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::log::LogWriter;
use super::{Containers, Process};
use crate::error::{ExecError, Result};
use crate::sandbox::{Network, PidsLimit, Stdio3, Stream};
use crate::step::{Backend, Executor, ExecutorOptions, ExitStatus, RunStep};

/// The hidden first argument that turns the rbuild binary into a container supervisor.
pub const SUPERVISOR_ARG: &str = "__rbuild-supervise";

/// Everything a supervisor needs to create and run one container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetachedRun {
    pub root: PathBuf,
    pub name: Option<String>,
    /// The image as the user named it, and its manifest digest.
    pub image: String,
    pub image_digest: rbuild_store::Digest,
    pub remove_on_exit: bool,
    pub stop_signal: Option<String>,
    /// The image's snapshot directories, base layer first.
    pub lowers: Vec<PathBuf>,
    pub process: Process,
    pub network: Network,
    pub memory: Option<u64>,
    pub pids: PidsLimit,
    /// Bytes per log file ([`super::log`]).
    pub log_max: u64,
    /// `auto`, `overlay` or `copy`.
    pub backend: String,
    pub legacy_overlay: bool,
    /// `-v` / `--mount`.
    #[serde(default)]
    pub mounts: Vec<super::volumes::ContainerMount>,
    /// `--hostname` (default: the id's first 12 characters).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: bool,
}

/// The supervisor's one-line answer.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Started { id: String },
    Failed { message: String },
}

/// Start a detached container; returns its id once it is recorded and about to run.
pub fn start_detached(run: &DetachedRun) -> Result<String> {
    let spec = serde_json::to_vec(run)
        .map_err(|e| ExecError::sandbox(format!("cannot encode the container: {e}")))?;
    let io = |action: &'static str| {
        move |e: std::io::Error| ExecError::io(action, PathBuf::from("container supervisor"), e)
    };
    let mut child = Command::new("/proc/self/exe")
        .arg0("rbuild-supervise")
        .arg(SUPERVISOR_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("cannot start"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(&spec).map_err(io("cannot write to"))?;
    drop(stdin);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .map_err(io("cannot read from"))?;
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::Started { id }) => Ok(id),
        Ok(Reply::Failed { message }) => {
            let _ = child.wait();
            Err(ExecError::Supervisor { message })
        }
        Err(_) => {
            let status = child.wait().map_err(io("cannot wait for"))?;
            Err(ExecError::Supervisor {
                message: format!("the supervisor ended without an answer ({status})"),
            })
        }
    }
}

/// Run the supervisor if this process was started as one (call first thing in `main`).
pub fn maybe_run_supervisor() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == SUPERVISOR_ARG)
    {
        std::process::exit(supervisor_main());
    }
}

fn reply(r: &Reply) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&line);
    let _ = out.flush();
}

fn supervisor_main() -> i32 {
    // Out of the caller's session: its terminal's Ctrl-C and hang-up are not ours.
    let _ = rustix::process::setsid();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        reply(&Reply::Failed {
            message: format!("cannot read the container's spec: {e}"),
        });
        return 1;
    }
    let run: DetachedRun = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            reply(&Reply::Failed {
                message: format!("cannot read the container's spec: {e}"),
            });
            return 1;
        }
    };
    match supervise(&run) {
        Ok(code) => code,
        Err(e) => {
            reply(&Reply::Failed {
                message: e.to_string(),
            });
            1
        }
    }
}

/// Set the container up (errors go back to the caller), answer, run it, record the end.
fn supervise(run: &DetachedRun) -> Result<i32> {
    let store = rbuild_store::Store::open(&run.root)?;
    let exec = Executor::new(
        &run.root,
        ExecutorOptions {
            backend: match run.backend.as_str() {
                "overlay" => Backend::Overlay,
                "copy" => Backend::Copy,
                _ => Backend::Auto,
            },
            legacy_overlay: run.legacy_overlay,
            ..ExecutorOptions::default()
        },
    )?;
    let containers = Containers::open(&run.root)?;
    let container = containers.create_with(
        run.name.as_deref(),
        &run.image,
        &run.image_digest,
        &run.process.argv,
        run.remove_on_exit,
        |r| {
            r.stop_signal = run.stop_signal.clone();
            r.detached = true;
            r.env = run.process.env.clone();
            r.cwd = run.process.cwd.clone();
            r.user = run.process.user.clone();
        },
    )?;
    let id = container.record.id.clone();
    let setup = (|| -> Result<(LogWriter, Vec<crate::mounts::RunMount>)> {
        let mounts = run
            .mounts
            .iter()
            .map(|m| m.to_run_mount(&run.root))
            .collect::<Result<Vec<_>>>()?;
        store.set_ref(
            rbuild_store::refs::KIND_CONTAINER,
            &id,
            std::slice::from_ref(&run.image_digest),
        )?;
        let log = LogWriter::create(&container.dir, run.log_max)
            .map_err(|e| ExecError::io("cannot create", container.dir.join("log"), e))?;
        container.set_started()?;
        Ok((log, mounts))
    })();
    let (mut log, mounts) = match setup {
        Ok(ok) => ok,
        Err(e) => {
            drop(container);
            let _ = containers.remove(&id);
            let _ = store.remove_ref(rbuild_store::refs::KIND_CONTAINER, &id);
            return Err(e);
        }
    };
    reply(&Reply::Started { id: id.clone() });

    let result = {
        let mut on_line = |stream: Stream, line: &[u8]| {
            let _ = log.line(stream, line);
        };
        let mut step = RunStep::new(
            run.lowers.clone(),
            run.process.argv.clone(),
            Stdio3::Capture(&mut on_line),
        );
        step.env = run.process.env.clone();
        step.cwd = run.process.cwd.clone();
        step.user = run.process.user.clone();
        step.hostname = run.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        step.readonly_rootfs = run.read_only;
        step.mounts = mounts;
        step.network = run.network;
        step.memory = run.memory;
        step.pids = run.pids;
        if !run.remove_on_exit {
            step.container_dir = Some(container.dir.clone());
        }
        exec.run(step).map(|outcome| outcome.status)
    };
    let (code, error) = match result {
        Ok(status) => {
            let note = matches!(
                status,
                ExitStatus::OutOfMemory { .. } | ExitStatus::PidsLimit { .. }
            )
            .then(|| status.to_string());
            (status.code(), note)
        }
        Err(e) => {
            // Docker's codes: 127 not found, 126 not runnable, 125 the runtime failed.
            let code = match &e {
                ExecError::Start { reason, .. }
                    if reason.contains("not found") || reason.contains("no such file") =>
                {
                    127
                }
                ExecError::Start { .. } => 126,
                _ => 125,
            };
            (code, Some(e.to_string()))
        }
    };
    if let Some(message) = &error {
        let _ = log.line(Stream::Stderr, format!("rbuild: {message}").as_bytes());
    }
    drop(log);
    let _ = container.set_finished(code, error);
    if run.remove_on_exit {
        let _ = containers.remove(&id);
        let _ = store.remove_ref(rbuild_store::refs::KIND_CONTAINER, &id);
    }
    drop(container);
    Ok(0)
}

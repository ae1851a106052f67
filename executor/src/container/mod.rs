//! Containers for `rbuild run`: how an image's Entrypoint/Cmd/Env/WorkingDir/User combine with
//! the command line (Docker's rules), and the container records under `$ROOT/containers/<id>/`:
//! `container.json` (the record, written once), `state.json` (who supervises it, when it
//! started and how it ended), the kept `upper` directory, the output `log` of a detached
//! container ([`log`]), and a `lock` file the supervising process holds while the container
//! runs. A container is running exactly when its lock is held: a supervisor that dies (killed,
//! crashed) releases it, so a dead container never shows as running; one whose state says it
//! started but never says how it ended is `Dead`.
//!
//! A detached container (`run -d`) is supervised by this binary re-executed
//! ([`supervise`]); an attached one by the `rbuild run` process itself. [`procs`] finds a
//! container's command from its supervisor's pid, for `stop` and `kill`. Containers are named
//! by their name, their full id or a unique prefix of it ([`Containers::find`]).

pub mod log;
pub mod procs;
pub mod supervise;
pub mod volumes;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExecError, IoContext, Result};

/// What the image's config says about running it.
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// What the command line overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `-e K=V` (or `-e K`, taken from the caller's environment when set).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `--entrypoint X` (an empty string clears the image's entrypoint).
    pub entrypoint: Option<String>,
    /// Arguments after the image name.
    pub cmd: Vec<String>,
}

/// The resolved process of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

/// Combine image defaults and overrides as `docker run` does: `--entrypoint` replaces the
/// image's entrypoint and drops its Cmd; arguments replace Cmd; `-e` replaces variables by
/// name; `-w`/`-u` replace WorkingDir/User.
pub fn resolve_process(
    image: &ImageDefaults,
    ov: &Overrides,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<Process> {
    let (entrypoint, default_cmd) = match &ov.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if ov.cmd.is_empty() {
        default_cmd
    } else {
        ov.cmd.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ExecError::Start {
            program: String::new(),
            reason: "no command specified: the image has no Entrypoint or Cmd; give a command after the image name".into(),
        });
    }
    let mut env = image.env.clone();
    for e in &ov.env {
        let (key, value) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match host_env(e) {
                Some(v) => (e.clone(), v),
                None => continue,
            },
        };
        env.retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    let cwd = ov
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let user = ov
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    Ok(Process {
        argv,
        env,
        cwd,
        user,
    })
}

/// The record of one container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its manifest digest.
    pub image: String,
    pub image_digest: rbuild_store::Digest,
    pub created: String,
    pub argv: Vec<String>,
    /// Started with `--rm`: remove when it exits (or, if rbuild died, on the next start).
    #[serde(default)]
    pub remove_on_exit: bool,
    /// The image's `StopSignal` (`stop` sends it; SIGTERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Started with `-d`: its output is in the container's log.
    #[serde(default)]
    pub detached: bool,
    /// The process's environment, working directory and user: `exec`'s defaults.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub user: String,
}

/// A command to run in a running container (`rbuild exec`); unset fields are the container's.
pub struct ExecRequest<'a> {
    pub argv: Vec<String>,
    /// `-e K=V` (replacing the container's variable of that name) or `-e K` (from
    /// `host_env`, skipped when unset there).
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub stdio: crate::sandbox::Stdio3<'a>,
}

/// What `state.json` says about a container's run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    /// The process supervising it (a detached supervisor, or the attached `rbuild run`).
    pub pid: Option<i32>,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// The shell-style exit code (128 + n after signal n; 127/126 when it could not start).
    pub exit_code: Option<i32>,
    /// Why it could not start, or how it ended when that needs words (out of memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Recorded but not started (or started by an rbuild older than `state.json`).
    Created,
    /// Its supervisor holds the lock.
    Running { started: Option<jiff::Timestamp> },
    /// It ran and ended with this code.
    Exited {
        code: i32,
        finished: Option<jiff::Timestamp>,
    },
    /// It started and its supervisor died without saying how it ended.
    Dead,
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running { .. })
    }

    /// Docker's `State` word: created, running, exited, dead.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running { .. } => "running",
            Status::Exited { .. } => "exited",
            Status::Dead => "dead",
        }
    }
}

/// `$ROOT/containers`.
pub struct Containers {
    dir: PathBuf,
}

/// A container being run: its directory (pass it as `RunStep::container_dir`) and the lock
/// that marks it running.
pub struct Container {
    pub record: ContainerRecord,
    pub dir: PathBuf,
    _lock: File,
}

impl Container {
    /// Record that this process supervises the container and it starts now.
    pub fn set_started(&self) -> Result<()> {
        write_state(
            &self.dir,
            &ContainerState {
                pid: Some(std::process::id() as i32),
                started: Some(jiff::Timestamp::now().to_string()),
                ..ContainerState::default()
            },
        )
    }

    /// Record how the container ended.
    pub fn set_finished(&self, exit_code: i32, error: Option<String>) -> Result<()> {
        let mut state = read_state(&self.dir).unwrap_or_default();
        state.finished = Some(jiff::Timestamp::now().to_string());
        state.exit_code = Some(exit_code);
        state.error = error;
        write_state(&self.dir, &state)
    }
}

fn write_state(dir: &Path, state: &ContainerState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| ExecError::sandbox(format!("cannot encode the container state: {e}")))?;
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, json).ctx("cannot write", &tmp)?;
    std::fs::rename(&tmp, dir.join("state.json")).ctx("cannot write", dir)
}

fn read_state(dir: &Path) -> Option<ContainerState> {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()
}

/// Whether the lock file of a container directory is held (by its supervisor).
fn lock_held(dir: &Path) -> bool {
    match File::options()
        .read(true)
        .write(true)
        .open(dir.join("lock"))
    {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// No container has this name, id or id prefix.
fn no_such(query: &str) -> ExecError {
    ExecError::NoSuchContainer {
        query: query.to_string(),
    }
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
        Ok(Containers { dir })
    }

    /// Create a container record with a fresh id; the name defaults to `rbuild-<id12>` and must
    /// be unused.
    pub fn create(
        &self,
        name: Option<&str>,
        image: &str,
        image_digest: &rbuild_store::Digest,
        argv: &[String],
        remove_on_exit: bool,
    ) -> Result<Container> {
        self.create_with(name, image, image_digest, argv, remove_on_exit, |_| {})
    }

    /// [`Containers::create`], letting `fill` set the record's other fields before it is
    /// written.
    pub fn create_with(
        &self,
        name: Option<&str>,
        image: &str,
        image_digest: &rbuild_store::Digest,
        argv: &[String],
        remove_on_exit: bool,
        fill: impl FnOnce(&mut ContainerRecord),
    ) -> Result<Container> {
        let registry_lock = self.dir.join(".lock");
        let guard = File::create(&registry_lock).ctx("cannot create", &registry_lock)?;
        guard.lock().ctx("cannot lock", &registry_lock)?;
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                self.check_name(n)?;
                n.to_string()
            }
            None => format!("rbuild-{}", &id[..12]),
        };
        let dir = self.dir.join(&id);
        std::fs::create_dir(&dir).ctx("cannot create", &dir)?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).ctx("cannot create", &lock_path)?;
        lock.lock().ctx("cannot lock", &lock_path)?;
        let mut record = ContainerRecord {
            id,
            name,
            image: image.to_string(),
            image_digest: image_digest.clone(),
            created: jiff::Timestamp::now().to_string(),
            argv: argv.to_vec(),
            remove_on_exit,
            stop_signal: None,
            detached: false,
            env: Vec::new(),
            cwd: String::new(),
            user: String::new(),
        };
        fill(&mut record);
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| ExecError::sandbox(format!("cannot encode the container record: {e}")))?;
        let tmp = dir.join("container.json.tmp");
        std::fs::write(&tmp, json).ctx("cannot write", &tmp)?;
        std::fs::rename(&tmp, dir.join("container.json")).ctx("cannot write", &dir)?;
        drop(guard);
        Ok(Container {
            record,
            dir,
            _lock: lock,
        })
    }

    /// Every container record (running or not).
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).ctx("cannot read", &self.dir)? {
            let entry = entry.ctx("cannot read", &self.dir)?;
            let p = entry.path().join("container.json");
            if let Ok(bytes) = std::fs::read(&p)
                && let Ok(r) = serde_json::from_slice::<ContainerRecord>(&bytes)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Remove `--rm` containers whose rbuild process died before it could (their lock is
    /// free); `on_removed` gets each removed id (to drop the store's reference).
    pub fn remove_stale(&self, mut on_removed: impl FnMut(&str)) -> Result<()> {
        for record in self.list()? {
            if !record.remove_on_exit {
                continue;
            }
            let lock = self.dir.join(&record.id).join("lock");
            let Ok(f) = File::options().read(true).write(true).open(&lock) else {
                continue;
            };
            if f.try_lock().is_ok() {
                self.remove(&record.id)?;
                on_removed(&record.id);
            }
        }
        Ok(())
    }

    /// Whether `name` can name a new container: valid and not taken (checked again, under
    /// the registry lock, when the container is created).
    pub fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(ExecError::ContainerName {
                message: format!(
                    "invalid container name `{name}`: use letters, digits, `_`, `.` and `-`"
                ),
            });
        }
        if self.list()?.iter().any(|c| c.name == name) {
            return Err(ExecError::ContainerName {
                message: format!("the container name `{name}` is already in use"),
            });
        }
        Ok(())
    }

    /// The directory of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Find a container by name, full id or unique id prefix (names first, as docker does).
    pub fn find(&self, query: &str) -> Result<ContainerRecord> {
        let all = self.list()?;
        if query.is_empty() {
            return Err(no_such(query));
        }
        if let Some(c) = all.iter().find(|c| c.name == query || c.id == query) {
            return Ok(c.clone());
        }
        let matches: Vec<&ContainerRecord> =
            all.iter().filter(|c| c.id.starts_with(query)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(no_such(query)),
            many => Err(ExecError::AmbiguousContainer {
                query: query.to_string(),
                count: many.len(),
            }),
        }
    }

    /// The state file of container `id`.
    pub fn state(&self, id: &str) -> ContainerState {
        read_state(&self.dir.join(id)).unwrap_or_default()
    }

    /// Where container `id` is in its life: running exactly when its lock is held.
    pub fn status(&self, id: &str) -> Status {
        let dir = self.dir.join(id);
        if lock_held(&dir) {
            let state = read_state(&dir).unwrap_or_default();
            return Status::Running {
                started: state.started.and_then(|s| s.parse().ok()),
            };
        }
        // Read the state after the lock: a supervisor writes the exit before it lets go.
        match read_state(&dir) {
            Some(ContainerState {
                exit_code: Some(code),
                finished,
                ..
            }) => Status::Exited {
                code,
                finished: finished.and_then(|s| s.parse().ok()),
            },
            Some(ContainerState {
                started: Some(_), ..
            }) => Status::Dead,
            _ => Status::Created,
        }
    }

    /// Wait up to `timeout` for container `id` to stop running; whether it did.
    pub fn wait_stopped(&self, id: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if !lock_held(&self.dir.join(id)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Send `signal` to the command of running container `id`; `Ok(false)` when it is not
    /// running (or its command has not started or already ended).
    pub fn signal(&self, id: &str, signal: i32) -> Result<bool> {
        if !self.status(id).is_running() {
            return Ok(false);
        }
        let Some(pid) = self.state(id).pid else {
            return Ok(false);
        };
        let Some((_, Some(command))) = procs::container_pids(pid) else {
            return Ok(false);
        };
        match procs::send_signal(command, signal) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(ExecError::io(
                "cannot signal the command of container",
                PathBuf::from(id),
                e,
            )),
        }
    }

    /// Take running container `id` down at once and wait (up to 10 s) until it has stopped;
    /// whether it did. SIGKILL goes to its command; while there is none yet (the container is
    /// still starting), a detached container's supervisor is killed instead — nothing of the
    /// container outlives it — and its end is recorded as 137; an attached one's sandbox
    /// helper is killed, as soon as it exists.
    pub fn kill_now(&self, id: &str) -> Result<bool> {
        let dir = self.dir.join(id);
        let detached = std::fs::read(dir.join("container.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<ContainerRecord>(&b).ok())
            .is_some_and(|r| r.detached);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if !lock_held(&dir) {
                return Ok(true);
            }
            if !self.signal(id, libc::SIGKILL)?
                && let Some(pid) = self.state(id).pid
            {
                if detached {
                    let _ = procs::send_signal(pid, libc::SIGKILL);
                    if self.wait_stopped(id, std::time::Duration::from_secs(5)) {
                        let mut state = read_state(&dir).unwrap_or_default();
                        if state.exit_code.is_none() {
                            state.finished = Some(jiff::Timestamp::now().to_string());
                            state.exit_code = Some(128 + libc::SIGKILL);
                            let _ = write_state(&dir, &state);
                        }
                        self.remove_steps_of(pid);
                        return Ok(true);
                    }
                } else if let Some((helper, _)) = procs::container_pids(pid) {
                    let _ = procs::send_signal(helper, libc::SIGKILL);
                }
            }
            if self.wait_stopped(id, std::time::Duration::from_millis(100)) {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Remove the step directories (`exec/step-<pid>-*`) a killed supervisor left, once their
    /// lock is free (as `Executor::new` would on the next run).
    fn remove_steps_of(&self, pid: i32) {
        let Some(exec) = self.dir.parent().map(|r| r.join("exec")) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&exec) else {
            return;
        };
        let prefix = format!("step-{pid}-");
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            // No lock yet: the supervisor died before it took it (it is gone, see above).
            let free = match File::options()
                .read(true)
                .write(true)
                .open(e.path().join("lock"))
            {
                Ok(f) => f.try_lock().is_ok(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if free {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Run a command in running container `record` (`rbuild exec`): in its namespaces, root
    /// and cgroups (rootless: in its user namespace, joined first — so call this while
    /// single-threaded), with the container's seccomp profile and capabilities; the container's
    /// env, working directory and user unless `req` overrides them. Errors: not running, the
    /// command cannot start, the container cannot be entered.
    pub fn exec(
        &self,
        record: &ContainerRecord,
        req: ExecRequest<'_>,
        host_env: impl Fn(&str) -> Option<String>,
    ) -> Result<crate::step::ExitStatus> {
        use crate::sandbox::{
            Ended, Launch, Network, PidsLimit, RootfsSpec, SandboxSpec, Security,
            Status as Sandbox, Stdio3,
        };
        let not_running = || {
            ExecError::ContainerState {
            name: record.name.clone(),
            message: "is not running".into(),
            help: "`rbuild exec` runs a command in a running container; start one with `rbuild run -d`".into(),
        }
        };
        if !self.status(&record.id).is_running() {
            return Err(not_running());
        }
        let init_pid = self
            .state(&record.id)
            .pid
            .and_then(procs::init_pid)
            .ok_or_else(not_running)?;
        // Rootless: the container's namespaces belong to the user namespace its rbuild made.
        crate::sandbox::userns::join(init_pid).map_err(|e| ExecError::sandbox(e.to_string()))?;
        let mut env = record.env.clone();
        for e in &req.env {
            let (key, value) = match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => match host_env(e) {
                    Some(v) => (e.clone(), v),
                    None => continue,
                },
            };
            env.retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
            env.push(format!("{key}={value}"));
        }
        if !env.iter().any(|kv| kv.starts_with("PATH=")) {
            env.push(format!("PATH={}", crate::step::DEFAULT_PATH));
        }
        let tty = matches!(req.stdio, Stdio3::Terminal(_));
        let spec = SandboxSpec {
            rootfs: RootfsSpec::Enter { init_pid },
            argv: req.argv.clone(),
            env,
            cwd: req.cwd.clone().unwrap_or_else(|| {
                if record.cwd.is_empty() {
                    "/".into()
                } else {
                    record.cwd.clone()
                }
            }),
            user: req.user.clone().unwrap_or_else(|| record.user.clone()),
            hostname: String::new(),
            network: Network::Host,
            security: Security::Sandbox,
            drop_mknod: false,
            mounts: Vec::new(),
            new_session: tty || matches!(req.stdio, Stdio3::Capture(_)),
            tty,
            readonly_rootfs: false,
            scratch: self.dir.join(&record.id),
            shm_size: None,
            ulimits: Vec::new(),
        };
        let mut stdio = req.stdio;
        // Reborrowed for as long as the spec lives.
        let stdio = match &mut stdio {
            Stdio3::Capture(cb) => Stdio3::Capture(&mut **cb),
            Stdio3::Terminal(cb) => Stdio3::Terminal(&mut **cb),
            Stdio3::Inherit => Stdio3::Inherit,
            Stdio3::InheritOutput => Stdio3::InheritOutput,
        };
        let launched = crate::sandbox::launch(Launch {
            helper: Path::new("/proc/self/exe"),
            spec: &spec,
            stdio,
            log: None,
            cancel: None,
            timeout: None,
            memory: None,
            pids: PidsLimit::Unlimited,
        })?;
        match launched.ended {
            Ended::Status(Sandbox::Exited(c)) => Ok(crate::step::ExitStatus::Exited(c)),
            Ended::Status(Sandbox::Signaled(s)) => Ok(crate::step::ExitStatus::Signaled {
                signal: s,
                name: crate::step::signal_name(s),
            }),
            Ended::Status(Sandbox::StartFailed { program, reason }) => {
                Err(ExecError::Start { program, reason })
            }
            Ended::Status(Sandbox::SetupFailed { stage, message }) => {
                Err(ExecError::sandbox(format!("{stage}: {message}")))
            }
            Ended::Status(Sandbox::PtyReady) | Ended::Cancelled | Ended::TimedOut => Err(
                ExecError::sandbox("the exec'd command ended without a report"),
            ),
        }
    }

    /// The changes container `id` made to its image, written into `store` as an
    /// uncompressed layer blob (`rbuild commit`): the kept upper directory diffed against the
    /// image's snapshots `lowers` (bottom first) by the overlay differ, written by the layer
    /// writer RUN steps use. `None` when it changed nothing. The container must not be
    /// running, and must have kept its layer (not `--rm`, overlay snapshotter).
    pub fn capture_layer(
        &self,
        record: &ContainerRecord,
        lowers: &[PathBuf],
        store: &rbuild_store::Store,
    ) -> Result<Option<crate::step::CapturedLayer>> {
        if self.status(&record.id).is_running() {
            return Err(ExecError::ContainerState {
                name: record.name.clone(),
                message: "is running: its layer is still changing".into(),
                help: format!(
                    "stop it first (`rbuild stop {}`); rbuild does not pause containers to commit them",
                    record.name
                ),
            });
        }
        let upper = self.dir.join(&record.id).join("upper");
        if !upper.is_dir() {
            return Err(ExecError::ContainerState {
                name: record.name.clone(),
                message: "has no writable layer to commit".into(),
                help: "only containers run with the overlay snapshotter keep their layer (`--snapshotter copy` does not)".into(),
            });
        }
        let view = crate::lower::LowerView::new(lowers);
        let cs = crate::diff::overlay::diff_upper(&upper, &view)?;
        if cs.is_empty() {
            return Ok(None);
        }
        let mut writer = store.blob_writer()?;
        crate::layer::write_tar(&cs, &mut writer, &crate::layer::LayerOptions::default())?;
        let info = writer.commit()?;
        Ok(Some(crate::step::CapturedLayer {
            diff_id: info.digest,
            size: info.size,
            warnings: cs.warnings,
        }))
    }

    /// Delete a container's directory (its kept upper layer too).
    pub fn remove(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ExecError::sandbox(format!("not a container id: `{id}`")));
        }
        let dir = self.dir.join(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExecError::io("cannot remove", dir, e)),
        }
    }
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ctx("cannot read", Path::new("/dev/urandom"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into(), "args".into()]),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: Some("/app".into()),
            user: Some("app".into()),
        }
    }

    #[test]
    fn image_defaults_apply_when_nothing_is_overridden() {
        let p = resolve_process(&image(), &Overrides::default(), |_| None).unwrap();
        assert_eq!(p.argv, ["/entry", "default", "args"]);
        assert_eq!(p.env, ["PATH=/bin", "A=1"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/app", "app"));
    }

    #[test]
    fn arguments_replace_cmd_and_entrypoint_drops_it() {
        let ov = Overrides {
            cmd: vec!["x".into()],
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["/entry", "x"]
        );
        let ov = Overrides {
            entrypoint: Some("/other".into()),
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["/other"]
        );
        let ov = Overrides {
            entrypoint: Some(String::new()),
            cmd: vec!["echo".into(), "hi".into()],
            ..Overrides::default()
        };
        assert_eq!(
            resolve_process(&image(), &ov, |_| None).unwrap().argv,
            ["echo", "hi"]
        );
    }

    #[test]
    fn env_workdir_and_user_overrides() {
        let ov = Overrides {
            env: vec![
                "A=2".into(),
                "B=3".into(),
                "FROM_HOST".into(),
                "UNSET".into(),
            ],
            workdir: Some("/w".into()),
            user: Some("1000:1000".into()),
            ..Overrides::default()
        };
        let p = resolve_process(&image(), &ov, |k| {
            (k == "FROM_HOST").then(|| "h".to_string())
        })
        .unwrap();
        assert_eq!(p.env, ["PATH=/bin", "A=2", "B=3", "FROM_HOST=h"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/w", "1000:1000"));
    }

    #[test]
    fn no_command_at_all_is_an_error() {
        let err = resolve_process(&ImageDefaults::default(), &Overrides::default(), |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("no command specified"), "{err}");
    }

    fn digest() -> rbuild_store::Digest {
        rbuild_store::Digest::of(b"x")
    }

    #[test]
    fn container_names_are_unique_and_records_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let a = cs
            .create(
                Some("web"),
                "busybox:1.35",
                &digest(),
                &["sh".into()],
                false,
            )
            .unwrap();
        assert!(a.dir.join("container.json").exists());
        let err = cs
            .create(Some("web"), "busybox", &digest(), &[], false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(
            cs.create(Some("../x"), "busybox", &digest(), &[], false)
                .is_err()
        );
        let b = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        assert!(b.record.name.starts_with("rbuild-"));
        assert_eq!(cs.list().unwrap().len(), 2);
        cs.remove(&a.record.id).unwrap();
        assert_eq!(cs.list().unwrap(), std::slice::from_ref(&b.record));
        assert!(cs.remove("../..").is_err());
    }

    #[test]
    fn abandoned_rm_containers_are_removed_and_running_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let running = cs.create(None, "busybox", &digest(), &[], true).unwrap();
        let kept = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        let dead = cs.create(None, "busybox", &digest(), &[], true).unwrap();
        let dead_id = dead.record.id.clone();
        drop(dead); // its lock is released, as when rbuild is killed
        drop(kept);
        let mut removed = Vec::new();
        cs.remove_stale(|id| removed.push(id.to_string())).unwrap();
        assert_eq!(removed, [dead_id]);
        assert_eq!(cs.list().unwrap().len(), 2);
        drop(running);
    }

    #[test]
    fn containers_are_found_by_name_id_or_unique_prefix() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let a = cs
            .create(Some("web"), "busybox", &digest(), &[], false)
            .unwrap();
        let b = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        let (a, b) = (a.record.clone(), b.record.clone());
        assert_eq!(cs.find("web").unwrap(), a);
        assert_eq!(cs.find(&a.id).unwrap(), a);
        assert_eq!(cs.find(&b.id[..12]).unwrap(), b);
        assert_eq!(cs.find(&b.name).unwrap(), b);
        assert!(matches!(
            cs.find("nope"),
            Err(ExecError::NoSuchContainer { .. })
        ));
        assert!(matches!(
            cs.find(""),
            Err(ExecError::NoSuchContainer { .. })
        ));
        // Seventeen ids: two share a first hex digit, which then names neither.
        let ids: Vec<String> = (0..15)
            .map(|_| {
                cs.create(None, "busybox", &digest(), &[], false)
                    .unwrap()
                    .record
                    .id
            })
            .chain([a.id.clone(), b.id.clone()])
            .collect();
        let first = ids
            .iter()
            .map(|i| &i[..1])
            .find(|p| ids.iter().filter(|i| i.starts_with(*p)).count() > 1)
            .unwrap();
        assert!(matches!(
            cs.find(first),
            Err(ExecError::AmbiguousContainer { .. })
        ));
    }

    #[test]
    fn status_follows_the_lock_and_the_state_file() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let c = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        let id = c.record.id.clone();
        assert_eq!(cs.status(&id).word(), "running");
        c.set_started().unwrap();
        assert!(cs.status(&id).is_running());
        assert_eq!(cs.state(&id).pid, Some(std::process::id() as i32));
        assert!(!cs.wait_stopped(&id, std::time::Duration::from_millis(50)));
        c.set_finished(143, None).unwrap();
        drop(c);
        assert!(cs.wait_stopped(&id, std::time::Duration::from_millis(50)));
        assert!(matches!(cs.status(&id), Status::Exited { code: 143, .. }));

        // A supervisor that died after starting, before it recorded the end: dead.
        let d = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        d.set_started().unwrap();
        let id = d.record.id.clone();
        drop(d);
        assert_eq!(cs.status(&id), Status::Dead);
        let e = cs.create(None, "busybox", &digest(), &[], false).unwrap();
        let id = e.record.id.clone();
        drop(e);
        assert_eq!(cs.status(&id), Status::Created);
    }
}

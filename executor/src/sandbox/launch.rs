//! The parent side of the sandbox: start the helper (`/proc/self/exe __rbuild-sandbox`, never a
//! fork of this multi-threaded process) with the spec on fd 3 and a status pipe on fd 4, stream
//! its output line by line to the caller and in full to a log file, honour cancellation and a
//! timeout (killing the helper takes the whole sandbox down), and decode how it ended. The
//! helper is put in its memory, pids and device cgroups before it reads its spec, so nothing
//! it starts escapes them. Cancelling (a `CancelToken` or a timeout) SIGKILLs the helper; the
//! PDEATHSIG chain (helper → init → command) takes the rest down, also when rbuild itself dies
//! (Ctrl-C).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::pipe::{PipeFlags, pipe_with};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::HELPER_ARG;
use super::devices::DeviceCgroup;
use super::pids::{PidsCgroup, PidsLimit};
use super::spec::{SandboxSpec, Security, Status};
use super::sys;
use crate::error::{ExecError, Result};

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where the command's stdio goes.
pub enum Stdio3<'a> {
    /// stdin is /dev/null; stdout and stderr are captured: each complete line (without its
    /// newline; a final partial line too; lines over 64 KiB in pieces) is passed to the
    /// callback and appended to the log.
    Capture(&'a mut dyn FnMut(Stream, &[u8])),
    /// stdin, stdout and stderr are the caller's own (for `rbuild run -i`).
    Inherit,
    /// stdout and stderr are the caller's own, stdin is /dev/null (`rbuild run` without
    /// `-i`).
    InheritOutput,
    /// The command gets a new pseudo-terminal (of the sandbox's own devpts) as stdin, stdout,
    /// stderr and controlling terminal (`rbuild run -t`); the callback gets its master as soon
    /// as it exists and relays it. The master reads EOF/EIO once the sandbox is gone.
    Terminal(&'a mut dyn FnMut(std::os::fd::OwnedFd)),
}

/// A handle to stop running sandboxes from another thread (Ctrl-C, a failing sibling stage).
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    pids: Mutex<Vec<i32>>,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Kill every sandbox started with this token (and refuse new ones).
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let pids = self.inner.pids.lock().unwrap_or_else(|e| e.into_inner());
        for pid in pids.iter() {
            kill(*pid);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    fn register(&self, pid: i32) {
        self.inner
            .pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
        if self.is_cancelled() {
            kill(pid);
        }
    }

    fn unregister(&self, pid: i32) {
        self.inner
            .pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    }
}

fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// How a sandbox run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The command ran; this is its status.
    Status(Status),
    /// Cancelled through the token.
    Cancelled,
    /// The timeout expired.
    TimedOut,
}

/// Options for one launch.
pub struct Launch<'a> {
    /// The executable that understands the helper argument (normally `/proc/self/exe`).
    pub helper: &'a Path,
    pub spec: &'a SandboxSpec,
    pub stdio: Stdio3<'a>,
    /// Full output log (captured mode only); created or truncated.
    pub log: Option<&'a Path>,
    pub cancel: Option<&'a CancelToken>,
    pub timeout: Option<Duration>,
    /// Memory limit in bytes (memory + swap) for everything in the sandbox.
    pub memory: Option<u64>,
    /// Cap on the sandbox's tasks (processes + threads).
    pub pids: PidsLimit,
}

/// The result of [`launch`]: how it ended and the last lines of output.
pub struct Launched {
    pub ended: Ended,
    pub tail: Vec<String>,
    /// The kernel's OOM killer killed a process of the sandbox.
    pub oom_killed: bool,
    /// A fork or clone failed at this cap on the sandbox's tasks.
    pub pids_limit_hit: Option<u64>,
    /// Something the user should hear (once: the caller keeps track), such as a limit that
    /// cannot be applied here.
    pub notes: Vec<String>,
}

/// Lines of output kept for error reports.
const TAIL_LINES: usize = 20;
/// Longest line passed to the callback in one piece.
const MAX_LINE: usize = 64 * 1024;

/// Start the helper and wait until the sandbox is gone.
pub fn launch(mut opts: Launch<'_>) -> Result<Launched> {
    if opts.cancel.is_some_and(|c| c.is_cancelled()) {
        return Ok(Launched {
            ended: Ended::Cancelled,
            tail: Vec::new(),
            oom_killed: false,
            pids_limit_hit: None,
            notes: Vec::new(),
        });
    }
    // Entering a running container (`rbuild exec`): its own cgroups are joined instead.
    let enter_pid = match opts.spec.rootfs {
        super::spec::RootfsSpec::Enter { init_pid } => Some(init_pid),
        _ => None,
    };
    // A memory cgroup: the limit, and telling OOM kills from other SIGKILLs.
    let cgroup = match super::cgroup::MemoryCgroup::create(opts.memory) {
        _ if enter_pid.is_some() => None,
        Ok(Some(cgroup)) => Some(cgroup),
        Ok(None) if opts.memory.is_some() && rbuild_store::userns::rootless() => {
            return Err(ExecError::sandbox(rootless_memory(
                "no memory controller is mounted",
            )));
        }
        Ok(None) if opts.memory.is_some() => {
            return Err(ExecError::sandbox(
                "a memory limit needs a writable memory cgroup (cgroup v1 `memory` or a \
                 cgroup v2 hierarchy that delegates `memory`), and none is available"
                    .to_string(),
            ));
        }
        Ok(None) => None,
        Err(e) if opts.memory.is_some() && rbuild_store::userns::rootless() => {
            return Err(ExecError::sandbox(rootless_memory(&e.to_string())));
        }
        Err(e) if opts.memory.is_some() => {
            return Err(ExecError::sandbox(format!(
                "cannot create a memory cgroup: {e}"
            )));
        }
        Err(e) => {
            tracing::debug!(error = %e, "no memory cgroup: OOM kills show as SIGKILL");
            None
        }
    };
    let mut notes = Vec::new();
    // A pids cgroup: a fork bomb stops at the cap, not at the host's limit.
    let pids = match opts.pids.value() {
        _ if enter_pid.is_some() => None,
        None => None,
        Some(limit) => match PidsCgroup::create(limit, cgroup.as_ref().and_then(|c| c.v2_dir())) {
            Ok(Some(pids)) => Some(pids),
            Ok(None) | Err(_) if opts.pids == PidsLimit::Default => {
                notes.push(format!(
                    "no writable pids cgroup{}: sandboxes run without the default limit of \
                     {limit} processes",
                    if rbuild_store::userns::rootless() {
                        " (rootless, none is delegated)"
                    } else {
                        ""
                    }
                ));
                None
            }
            Ok(None) => {
                return Err(ExecError::sandbox(format!(
                    "a pids limit ({limit}) needs a writable pids cgroup (cgroup v1 `pids` or \
                     a cgroup v2 hierarchy that delegates `pids`), and none is available"
                )));
            }
            Err(e) => {
                return Err(ExecError::sandbox(format!(
                    "cannot create a pids cgroup (limit {limit}): {e}"
                )));
            }
        },
    };
    // The device cgroup: only the standard devices can be opened (not for insecure steps).
    let mut spec = opts.spec.clone();
    let devices = match spec.security {
        _ if enter_pid.is_some() => None,
        Security::Insecure => None,
        // Rootless: the kernel lets no device node be created (CAP_MKNOD counts only in the
        // initial namespace) or opened on a user namespace's mounts, which are all `nodev`;
        // a device filter could not be attached anyway.
        Security::Sandbox if rbuild_store::userns::rootless() => None,
        Security::Sandbox => match DeviceCgroup::create(cgroup.as_ref().and_then(|c| c.v2_dir())) {
            Ok(Some(devices)) => Some(devices),
            Ok(None) => {
                // No cgroup hierarchy at all: the nodev mounts still stop device nodes from
                // being opened, and the step cannot create any.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "no cgroup hierarchy for a device cgroup: RUN steps get nodev mounts \
                         and no CAP_MKNOD instead"
                    )
                });
                spec.drop_mknod = true;
                None
            }
            Err(e) => {
                return Err(ExecError::sandbox(format!(
                    "cannot restrict the sandbox's devices (device cgroup): {e}"
                )));
            }
        },
    };
    let io_err = |what: &'static str| {
        move |e: std::io::Error| ExecError::io(what, PathBuf::from("sandbox helper"), e)
    };
    let (spec_r, spec_w) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_err("cannot create a pipe for")(e.into()))?;
    // A socket, not a pipe: a terminal's master is passed back over it.
    let (status_r, status_w) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io_err("cannot create a socket for")(e.into()))?;
    let mut cmd = Command::new(opts.helper);
    cmd.arg0("rbuild-sandbox").arg(HELPER_ARG);
    match opts.stdio {
        Stdio3::Capture(_) => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        Stdio3::InheritOutput | Stdio3::Terminal(_) => {
            cmd.stdin(Stdio::null());
        }
        Stdio3::Inherit => {}
    }
    let (a, b) = (spec_r.as_raw_fd(), status_w.as_raw_fd());
    // spec_r and status_w stay open until spawn returns.
    sys::pass_fds_3_and_4(&mut cmd, a, b);
    let mut child = cmd.spawn().map_err(io_err("cannot start"))?;
    drop(spec_r);
    drop(status_w);
    let pid = child.id() as i32;
    if let Some(c) = opts.cancel {
        c.register(pid);
    }
    // The helper and the step's init supervise the step inside its memory cgroup: the OOM
    // killer must pick the step's processes, never them, or the report of how the step ended
    // is lost. The command process puts its own score back to 0 before it execs.
    if let Err(e) = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000") {
        tracing::debug!(error = %e, "cannot protect the sandbox helper from the OOM killer");
    }
    // The helper waits for its spec before creating anything, so nothing escapes the move.
    let placed = match &cgroup {
        Some(cg) => cg.add(pid).map_err(|e| {
            ExecError::sandbox(format!("cannot move the sandbox into its cgroup: {e}"))
        }),
        None => Ok(()),
    };
    let fenced = match &devices {
        Some(d) => d.add(pid).map_err(|e| {
            ExecError::sandbox(format!(
                "cannot move the sandbox into its device cgroup: {e}"
            ))
        }),
        None => Ok(()),
    };
    let capped = match &pids {
        Some(p) => p.add(pid).map_err(|e| {
            ExecError::sandbox(format!("cannot move the sandbox into its pids cgroup: {e}"))
        }),
        None => Ok(()),
    };
    let joined = match enter_pid {
        Some(target) => match super::cgroup::join_cgroups_of(target, pid) {
            Ok(devices) => {
                // Without a device cgroup, no new device nodes (as for the container).
                spec.drop_mknod = !devices;
                Ok(())
            }
            // Rootless, the container has cgroups of its own only where they were delegated;
            // the groups it shares with rbuild cannot be written, and need not be.
            Err(e) if rbuild_store::userns::rootless() => {
                tracing::debug!(error = %e, "rootless exec: the container's cgroups not joined");
                Ok(())
            }
            Err(e) => Err(ExecError::sandbox(format!(
                "cannot move the command into the container's cgroups: {e}"
            ))),
        },
        None => Ok(()),
    };
    let result = match (placed, fenced.and(capped).and(joined)) {
        (_, Err(e)) => Err(e),
        // A v2 device filter and pids cap live on the memory cgroup: the move must have worked.
        (Err(e), _)
            if opts.memory.is_some()
                || devices.as_ref().is_some_and(|d| d.shared())
                || pids.as_ref().is_some_and(|p| p.shared()) =>
        {
            Err(e)
        }
        (Ok(()), Ok(())) => supervise(&mut opts, &spec, &mut child, spec_w, status_r),
        (Err(e), Ok(())) => {
            tracing::debug!(error = %e, "no memory cgroup: OOM kills show as SIGKILL");
            supervise(&mut opts, &spec, &mut child, spec_w, status_r)
        }
    };
    if result.is_err() {
        kill(pid);
    }
    let helper_status = child.wait().ok();
    // Without CAP_SYS_RESOURCE (a container that drops it) the -1000 shield above cannot be
    // set, and the OOM killer may take the helper or init instead of the command: the report
    // is lost with them, but the cgroup still says what happened. That is the step killed by
    // the OOM killer, not a sandbox fault.
    let result = match result {
        Err(_)
            if helper_status.and_then(|s| s.signal()) == Some(libc::SIGKILL)
                && cgroup.as_ref().is_some_and(|cg| cg.oom_killed()) =>
        {
            Ok(Launched {
                ended: Ended::Status(Status::Signaled(libc::SIGKILL)),
                tail: Vec::new(),
                oom_killed: true,
                pids_limit_hit: None,
                notes: Vec::new(),
            })
        }
        other => other,
    };
    if let Some(c) = opts.cancel {
        c.unregister(pid);
    }
    result.map(|mut launched| {
        launched.oom_killed = cgroup.as_ref().is_some_and(|cg| cg.oom_killed());
        launched.pids_limit_hit = pids.as_ref().filter(|p| p.hit_limit()).map(|p| p.limit());
        launched.notes = notes;
        launched
    })
}

/// Why a rootless sandbox cannot have a memory limit.
fn rootless_memory(why: &str) -> String {
    format!(
        "rootless, a memory limit (-m) needs a cgroup delegated to you (the `memory` controller \
         in a cgroup v2 subtree you own), and none is writable here ({why}); build without -m, \
         or run rbuild as root"
    )
}

fn supervise(
    opts: &mut Launch<'_>,
    spec: &SandboxSpec,
    child: &mut std::process::Child,
    spec_w: std::os::fd::OwnedFd,
    status_r: std::os::fd::OwnedFd,
) -> Result<Launched> {
    let pid = child.id() as i32;
    let spec = serde_json::to_vec(spec)
        .map_err(|e| ExecError::sandbox(format!("cannot encode the spec: {e}")))?;
    // The helper reads the spec first thing; a failed write means it died and the status pipe
    // says why.
    let _ = File::from(spec_w).write_all(&spec);

    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let timed_out = Arc::new(AtomicBool::new(false));
    // A watchdog enforces the deadline and cancellation while this thread reads output; it
    // polls the token and wakes at once when told the sandbox is gone.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = (deadline.is_some() || opts.cancel.is_some()).then(|| {
        let timed_out = timed_out.clone();
        let cancel = opts.cancel.cloned();
        std::thread::spawn(move || {
            loop {
                let mut wait = Duration::from_millis(50);
                if let Some(d) = deadline {
                    let now = Instant::now();
                    if now >= d {
                        timed_out.store(true, Ordering::SeqCst);
                        kill(pid);
                        return;
                    }
                    wait = wait.min(d - now);
                }
                if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                    kill(pid);
                    return;
                }
                match done_rx.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
    });

    let mut tail = VecDeque::new();
    let log = opts.log;
    let mut statuses = Vec::new();
    let result = match &mut opts.stdio {
        Stdio3::Capture(cb) => pump_output(&mut **cb, log, child, &mut tail),
        Stdio3::Terminal(on_master) => {
            if let Some(master) = receive_master(&status_r, &mut statuses) {
                on_master(master);
            }
            Ok(())
        }
        Stdio3::Inherit | Stdio3::InheritOutput => Ok(()),
    };
    let _ = File::from(status_r).read_to_end(&mut statuses);
    let statuses = String::from_utf8_lossy(&statuses);
    let _ = done_tx.send(());
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    result?;

    // A failure record (setup, start) wins over the init's report of the exit that followed.
    let mut last = None;
    for line in statuses.lines() {
        if let Ok(s) = serde_json::from_str::<Status>(line)
            && s != Status::PtyReady
        {
            let failure = matches!(s, Status::SetupFailed { .. } | Status::StartFailed { .. });
            let have_failure = matches!(
                last,
                Some(Status::SetupFailed { .. } | Status::StartFailed { .. })
            );
            if failure || !have_failure {
                last = Some(s);
            }
            if failure {
                break;
            }
        }
    }
    let ended = if timed_out.load(Ordering::SeqCst) {
        Ended::TimedOut
    } else if opts.cancel.is_some_and(|c| c.is_cancelled()) {
        Ended::Cancelled
    } else {
        match last {
            Some(s) => Ended::Status(s),
            None => {
                let status = child.wait().ok();
                return Err(ExecError::sandbox(format!(
                    "the sandbox helper ended without a report ({})",
                    status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown status".into())
                )));
            }
        }
    };
    Ok(Launched {
        ended,
        tail: tail.into_iter().collect(),
        oom_killed: false,
        pids_limit_hit: None,
        notes: Vec::new(),
    })
}

/// Read status records until the one carrying the terminal's master arrives (or the helper
/// ends without one); the bytes read are kept in `statuses`.
fn receive_master(
    socket: &std::os::fd::OwnedFd,
    statuses: &mut Vec<u8>,
) -> Option<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = [0u8; 4096];
    loop {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match rustix::net::recvmsg(
            socket,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => r,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        };
        if received.bytes == 0 {
            return None;
        }
        statuses.extend_from_slice(&buf[..received.bytes]);
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = message
                && let Some(fd) = fds.next()
            {
                return Some(fd);
            }
        }
    }
}

/// Read stdout and stderr (two reader threads) and deliver whole lines in arrival order.
fn pump_output(
    cb: &mut dyn FnMut(Stream, &[u8]),
    log_path: Option<&Path>,
    child: &mut std::process::Child,
    tail: &mut VecDeque<String>,
) -> Result<()> {
    let mut log = match log_path {
        Some(p) => {
            Some(std::io::BufWriter::new(File::create(p).map_err(|e| {
                ExecError::io("cannot create log file", p, e)
            })?))
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let mut readers = Vec::new();
    let pipes: [(Stream, Option<Box<dyn Read + Send>>); 2] = [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ];
    for (stream, pipe) in pipes {
        let Some(pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            // Lines longer than MAX_LINE are delivered in pieces, so a step printing without
            // newlines cannot make rbuild buffer it all.
            let mut r = BufReader::with_capacity(64 * 1024, pipe);
            let mut line = Vec::new();
            loop {
                let buf = match r.fill_buf() {
                    Ok([]) | Err(_) => break,
                    Ok(b) => b,
                };
                let room = MAX_LINE - line.len();
                let (take, complete) = match buf.iter().take(room).position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (
                        buf.len().min(room),
                        line.len() + buf.len().min(room) == MAX_LINE,
                    ),
                };
                line.extend_from_slice(&buf[..take]);
                r.consume(take);
                if complete && tx.send((stream, std::mem::take(&mut line))).is_err() {
                    return;
                }
            }
            if !line.is_empty() {
                let _ = tx.send((stream, line));
            }
        }));
    }
    drop(tx);
    let mut write_err = None;
    for (stream, mut line) in rx {
        if let Some(log) = log.as_mut() {
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if let Err(e) = log.write_all(&line) {
                write_err.get_or_insert(e);
            }
        }
        if line.ends_with(b"\n") {
            line.pop();
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(String::from_utf8_lossy(&line).into_owned());
        cb(stream, &line);
    }
    for r in readers {
        let _ = r.join();
    }
    if let Some(log) = log.as_mut()
        && let Err(e) = log.flush()
    {
        write_err.get_or_insert(e);
    }
    if let (Some(e), Some(p)) = (write_err, log_path) {
        return Err(ExecError::io("cannot write log file", p, e));
    }
    Ok(())
}

//! The socket a RUN step's ssh mount shows (`RUN --mount=type=ssh`): a listening Unix socket of
//! our own that forwards every connection to the caller's agent, as BuildKit's session does,
//! and like it read-only: a step may list keys and have data signed, nothing else (the
//! messages are read whole and filtered, not copied as bytes). [`AgentSocket::serve`] is the
//! socket server itself (the engine serves `--ssh ID=KEY` files through it too).
//! The caller's socket is never bound into the step (its owner and mode are not ours to
//! change): the proxy's socket gets the mount's owner and mode, lives in a private directory
//! of the host's temporary directory (a socket path must fit in 108 bytes), and is removed with
//! the proxy when the step ends. Nothing of it is in the step's rootfs: the mount point comes
//! from the stub layer like any other mount's.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// A listening agent socket, serving until dropped.
pub struct AgentSocket {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    /// The listening socket, shut down to end the accept loop.
    waker: UnixListener,
    accept: Option<JoinHandle<()>>,
}

/// Connections served at once by one socket; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// The socket's file name inside its directory.
pub const SOCKET_NAME: &str = "ssh_auth_sock";

/// Answers the requests of one connection, in order: each request message (type byte first,
/// without the length) gives the answer message; an error closes the connection.
pub type Session = Box<dyn FnMut(Vec<u8>) -> io::Result<Vec<u8>> + Send>;

/// Makes the [`Session`] of each new connection.
pub type OpenSession = Arc<dyn Fn() -> io::Result<Session> + Send + Sync>;

impl AgentSocket {
    /// Listen on a new socket owned by `uid:gid` with `mode`, in a new private directory of
    /// the host's temporary directory; every connection is served by a session from `open`
    /// on a thread of its own.
    pub fn serve(uid: u32, gid: u32, mode: u32, open: OpenSession) -> io::Result<AgentSocket> {
        let dir = tempfile::Builder::new()
            .prefix(".rbuild-ssh-")
            .tempdir_in(std::env::temp_dir())?;
        // Others may pass through (the step's user need not be root), not list it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let path = dir.path().join(SOCKET_NAME);
        let listener = UnixListener::bind(&path)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let waker = listener.try_clone()?;
        let open_conns = Arc::new(AtomicUsize::new(0));
        let accept = std::thread::Builder::new()
            .name("ssh-agent-socket".into())
            .spawn(move || {
                loop {
                    let accepted = listener.accept();
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let conn = match accepted {
                        Ok((conn, _)) => conn,
                        Err(_) => {
                            // Out of descriptors or the like: do not spin.
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            continue;
                        }
                    };
                    // A step cannot make rbuild hold more than this many connections.
                    if open_conns.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        open_conns.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let open = open.clone();
                    let count = open_conns.clone();
                    let spawned = std::thread::Builder::new()
                        .name("ssh-agent-conn".into())
                        .spawn(move || {
                            if let Ok(session) = open() {
                                serve_connection(conn, session);
                            }
                            count.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        open_conns.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(AgentSocket {
            dir,
            stop,
            waker,
            accept: Some(accept),
        })
    }

    /// A socket that forwards to the agent at `upstream` (which must answer now) what a
    /// step may ask of it, as BuildKit's read-only agent.
    pub fn forward(upstream: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<AgentSocket> {
        // Fail now, with the path in the message, rather than in the step.
        UnixStream::connect(upstream).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot connect to the ssh agent `{}`: {e}",
                    upstream.display()
                ),
            )
        })?;
        let upstream = upstream.to_path_buf();
        let open: OpenSession = Arc::new(move || {
            let agent = UnixStream::connect(&upstream)?;
            Ok(read_only(agent))
        });
        AgentSocket::serve(uid, gid, mode, open)
    }

    /// The directory holding the socket ([`SOCKET_NAME`]).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(SOCKET_NAME)
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag: shutting the listener down fails its
        // accept (connecting is the fallback, should that not).
        if rustix::net::shutdown(&self.waker, rustix::net::Shutdown::Both).is_err() {
            let _ = UnixStream::connect(self.socket());
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Read whole requests and write the session's answers until the peer closes.
fn serve_connection(mut conn: UnixStream, mut session: Session) {
    while let Ok(Some(request)) = read_message(&mut conn) {
        let Ok(answer) = session(request) else { return };
        if write_message(&mut conn, &answer).is_err() {
            return;
        }
    }
}

/// The agent requests a step may make: list keys (11) and sign (13). As BuildKit's read-only
/// agent, anything else (adding, removing, locking keys, extensions) is answered with a
/// failure and never reaches the caller's agent.
const ALLOWED: [u8; 2] = [11, 13];
/// `SSH_AGENT_FAILURE`.
pub const FAILURE: u8 = 5;
/// The largest message either side may send (OpenSSH's agent limit).
const MAX_MESSAGE: u32 = 256 * 1024;

/// A session passing allowed requests to `agent` and its answers back; others fail here.
fn read_only(mut agent: UnixStream) -> Session {
    Box::new(move |request: Vec<u8>| {
        if !request.first().is_some_and(|t| ALLOWED.contains(t)) {
            return Ok(vec![FAILURE]);
        }
        write_message(&mut agent, &request)?;
        read_message(&mut agent)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed"))
    })
}

/// One length-prefixed agent message; `None` at a clean end of stream.
pub fn read_message(from: &mut impl io::Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match from.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an ssh agent message of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    from.read_exact(&mut body)?;
    Ok(Some(body))
}

pub fn write_message(to: &mut impl io::Write, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    to.write_all(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing request through the proxy reaches the upstream agent and its answer comes
    /// back; a request to add a key is refused without reaching it; the socket has the asked
    /// mode; dropping the proxy removes it.
    #[test]
    fn forwards_reading_requests_only_and_cleans_up() {
        let t = tempfile::tempdir().unwrap();
        let up = t.path().join("agent");
        let listener = UnixListener::bind(&up).unwrap();
        let server = std::thread::spawn(move || {
            // The proxy's own probe, then the forwarded connection.
            let _probe = listener.accept().unwrap();
            let (mut c, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            while let Some(m) = read_message(&mut c).unwrap() {
                seen.push(m[0]);
                write_message(&mut c, &[12, 0, 0, 0, 0]).unwrap();
            }
            seen
        });
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let proxy = AgentSocket::forward(&up, uid, gid, 0o640).unwrap();
        let sock = proxy.socket();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let mut c = UnixStream::connect(&sock).unwrap();
        // SSH_AGENTC_ADD_IDENTITY (17): refused here.
        write_message(&mut c, &[17, 1, 2, 3]).unwrap();
        assert_eq!(read_message(&mut c).unwrap().unwrap(), [FAILURE]);
        // SSH_AGENTC_REQUEST_IDENTITIES (11): the agent's answer.
        write_message(&mut c, &[11]).unwrap();
        assert_eq!(read_message(&mut c).unwrap().unwrap(), [12, 0, 0, 0, 0]);
        drop(c);
        assert_eq!(server.join().unwrap(), [11]);
        let dir = proxy.dir().to_path_buf();
        drop(proxy);
        assert!(!dir.exists());
    }

    /// Dropping a socket ends its accept loop even when its file is gone (nothing can
    /// connect to wake it), and a step cannot hold more than [`MAX_CONNECTIONS`].
    #[test]
    fn drop_returns_and_connections_are_capped() {
        let open: OpenSession =
            Arc::new(|| Ok(Box::new(|_request: Vec<u8>| Ok(vec![FAILURE])) as Session));
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let socket = AgentSocket::serve(uid, gid, 0o600, open).unwrap();
        let path = socket.socket();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut c = UnixStream::connect(&path).unwrap();
            write_message(&mut c, &[11]).unwrap();
            assert_eq!(read_message(&mut c).unwrap().unwrap(), [FAILURE]);
            held.push(c);
        }
        let mut extra = UnixStream::connect(&path).unwrap();
        let _ = write_message(&mut extra, &[11]);
        assert!(matches!(read_message(&mut extra), Ok(None) | Err(_)));
        std::fs::remove_file(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(socket);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropping the socket hung");
        drop(held);
    }

    #[test]
    fn a_dead_agent_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let err = AgentSocket::forward(&t.path().join("none"), 0, 0, 0o600)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("cannot connect to the ssh agent"),
            "{err}"
        );
    }
}

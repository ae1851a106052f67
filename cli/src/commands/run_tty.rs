//! The caller's side of `rbuild run -t`: the container's pseudo-terminal master (handed over
//! by the sandbox, see `rbuild_executor::sandbox::Stdio3::Terminal`) is relayed to this
//! process's stdout, and with `-i` this process's stdin to it. When stdin is a terminal it is
//! put in raw mode for the session — so Ctrl-C, Ctrl-Z and Ctrl-\ travel to the container as
//! bytes and its own terminal turns them into signals for its foreground process — and restored
//! when the session ends (also on an error, by the guard's drop). The container's window size
//! is set from ours at the start and again on every SIGWINCH.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

/// The container's standard streams for `-t` / `-i`: a pseudo-terminal whose master goes to
/// `on_master`, the caller's own streams, or its output only (stdin empty, as docker without
/// `-i`). One rule for `run` and `exec`.
pub fn stdio<'a>(
    tty: bool,
    interactive: bool,
    on_master: &'a mut dyn FnMut(std::os::fd::OwnedFd),
) -> rbuild_executor::Stdio3<'a> {
    if tty {
        rbuild_executor::Stdio3::Terminal(on_master)
    } else if interactive {
        rbuild_executor::Stdio3::Inherit
    } else {
        rbuild_executor::Stdio3::InheritOutput
    }
}

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Put stdin in raw mode if it is a terminal (otherwise do nothing).
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode { saved: None };
        }
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        if tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).is_err() {
            return RawMode { saved: None };
        }
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
        }
    }
}

/// Copy our terminal's window size (stdin's, else stdout's) to the container's.
fn copy_window_size(master: &OwnedFd) {
    let size =
        tcgetwinsize(std::io::stdin().as_fd()).or_else(|_| tcgetwinsize(std::io::stdout().as_fd()));
    if let Ok(size) = size {
        let _ = tcsetwinsize(master, size);
    }
}

/// The relay of one session; [`Relay::finish`] waits for the container's last output.
#[derive(Default)]
pub struct Relay {
    output: Option<JoinHandle<()>>,
}

impl Relay {
    /// Start relaying `master` (called by the sandbox as soon as the terminal exists).
    pub fn start(&mut self, master: OwnedFd, forward_stdin: bool) {
        let master = Arc::new(master);
        copy_window_size(&master);
        if let Ok(mut signals) =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        {
            let m = master.clone();
            let _ = std::thread::Builder::new()
                .name("rbuild-winch".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        copy_window_size(&m);
                    }
                });
        }
        if forward_stdin {
            let m = master.clone();
            let _ = std::thread::Builder::new()
                .name("rbuild-stdin".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut stdin = std::io::stdin().lock();
                    loop {
                        match stdin.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if write_all(&m, &buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
        }
        let m = master;
        self.output = std::thread::Builder::new()
            .name("rbuild-tty-out".into())
            .spawn(move || {
                let mut buf = [0u8; 16384];
                let mut stdout = std::io::stdout();
                loop {
                    match rustix::io::read(&*m, &mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if stdout
                                .write_all(&buf[..n])
                                .and_then(|()| stdout.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(rustix::io::Errno::INTR) => {}
                        // EIO: every slave end is closed, the container is gone.
                        Err(_) => return,
                    }
                }
            })
            .ok();
    }

    /// Wait until the container's output is all written out.
    pub fn finish(self) {
        if let Some(h) = self.output {
            let _ = h.join();
        }
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! A real terminal for tests: a private tmux server (its own socket) running one command in a
//! window of a known size; keys are sent and the screen is read with `capture-pane`. tmux is
//! required (CI installs it in `.ci/run`): a missing tmux fails the test.

use std::time::Duration;

use super::containers::wait_until;
use super::tool;

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `command` (a shell command line) in a `width`×`height` terminal.
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!(
            "rbuild-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let t = Tmux { socket };
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "main", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = tool("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Type `keys` (tmux key names: `Enter`, `C-c`, or literal text with `-l`).
    pub fn send(&self, keys: &[&str]) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Type `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        self.send(&["-l", text]);
        self.send(&["Enter"]);
    }

    /// The screen's text.
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the screen has a line equal to `line` (trailing spaces ignored).
    pub fn wait_for_line(&self, line: &str) {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(
                &format!("the line {line:?} shows"),
                Duration::from_secs(20),
                || {
                    last = self.screen();
                    last.lines().any(|l| l.trim_end() == line)
                },
            )
        }));
        assert!(found.is_ok(), "{line:?} never showed; the screen:\n{last}");
    }

    pub fn resize(&self, width: u16, height: u16) {
        let out = self
            .cmd()
            .args(["resize-window", "-t", "main", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux resize-window: {out:?}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

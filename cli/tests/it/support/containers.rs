//! Helpers for container tests: waiting for a condition with a deadline, and reading what
//! `ps` says about a container.

use std::time::{Duration, Instant};

use assert_cmd::Command;

use super::text;

/// Poll `cond` every 20 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rbuild ps -a --format '{{.Names}}|{{.State}}|{{.Status}}'` as (name, state, status).
pub fn ps_all(mut rbuild: Command) -> Vec<(String, String, String)> {
    let out = rbuild
        .args(["ps", "-a", "--format", "{{.Names}}|{{.State}}|{{.Status}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ps: {:?}", text(&out));
    text(&out)
        .0
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '|').map(str::to_string);
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        })
        .collect()
}

/// The `(state, status)` `ps -a` shows for the container named `name`, if listed.
pub fn ps_state(rbuild: Command, name: &str) -> Option<(String, String)> {
    ps_all(rbuild)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, state, status)| (state, status))
}

/// Removes (`rm -f`) every container of a store when dropped, so a failing test leaves no
/// detached container running.
pub struct Reaper<'a>(pub &'a super::TestEnv);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        let Ok(out) = self.0.rbuild().args(["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        let ids: Vec<String> = text(&out).0.lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let _ = self.0.rbuild().args(["rm", "-f"]).args(&ids).output();
        }
    }
}

/// A number unique to this test process, to make process markers (`sleep N`) of different
/// runs of a test distinct.
pub fn unique_number() -> u32 {
    std::process::id()
}

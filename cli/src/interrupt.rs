//! Ctrl-C and SIGTERM during a build: a signal thread cancels the build (killing running
//! sandboxes through the cancel hooks) and records that the user interrupted, so the command
//! exits with 130 and nothing is tagged.

use std::sync::atomic::{AtomicBool, Ordering};

use rbuild_solver::worker::CancelToken;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a termination signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Cancel `token` on SIGINT, SIGTERM or SIGHUP. If signals cannot be watched, builds still
/// work; they just die with the default signal behaviour.
pub fn cancel_on_interrupt(token: &CancelToken) {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let token = token.clone();
    std::thread::Builder::new()
        .name("rbuild-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                token.cancel();
            }
        })
        .ok();
}

//! Exit codes and the miette report hook: how a failed command looks to its user and to CI.

use crate::args::GlobalArgs;

/// A Dockerfile, build or user-input error.
pub const USER: u8 = 1;
/// Bad command-line usage (clap's own errors).
pub const USAGE: u8 = 2;
/// `--fail-on-cache-miss` found a step that would run: distinct from a failed build, so CI
/// can tell "cache cold" from "build broken".
pub const CACHE_MISS: u8 = 5;

/// Pick the exit code for a failed command. Errors carry their class as a miette code prefix
/// (`rbuild::registry::...`, `rbuild::store::...`); anything else is a user error.
pub fn code_for(report: &miette::Report) -> u8 {
    let code = report.code().map(|c| c.to_string()).unwrap_or_default();
    if code.starts_with("rbuild::registry") {
        3
    } else if code.starts_with("rbuild::store") {
        4
    } else if code.starts_with("rbuild::interrupted") {
        130
    } else if code == "rbuild::build::cache_miss" {
        CACHE_MISS
    } else {
        USER
    }
}

/// Configure miette's graphical renderer once: colours only on a terminal and without
/// `NO_COLOR`, unicode box drawing only on a terminal, the width from `COLUMNS` when set.
pub fn install_report_hook(global: &GlobalArgs) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let color = match global.color {
        crate::args::ColorChoice::Always => true,
        crate::args::ColorChoice::Never => false,
        crate::args::ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none(),
    };
    // POSIX: `COLUMNS`, when set, overrides the terminal's width (and gives piped output,
    // such as a CI log or a test, a fixed one instead of 80).
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w >= 20);
    let _ = miette::set_hook(Box::new(move |_| {
        let mut opts = miette::MietteHandlerOpts::new()
            .color(color)
            .unicode(tty)
            .terminal_links(false)
            .context_lines(2);
        if let Some(width) = width {
            opts = opts.width(width);
        }
        Box::new(opts.build())
    }));
}

/// `rbuild images | head` closes our stdout early: `println!` then panics with "Broken pipe".
/// Exit quietly with 141 (128 + SIGPIPE), as a process killed by SIGPIPE would, instead of
/// printing a panic. (The default SIGPIPE action is not restored because the executor talks to
/// its sandbox helpers over pipes and must see EPIPE as an error, not die.)
pub fn quiet_on_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

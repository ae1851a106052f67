//! Exit codes and the miette report hook: how a failed command looks to its user and to CI.

use rbuild_store::ErrorClass;

use crate::args::GlobalArgs;

/// A Dockerfile, build or user-input error.
pub const USER: u8 = 1;
/// Bad command-line usage (clap's own errors).
pub const USAGE: u8 = 2;
/// `--fail-on-cache-miss` found a step that would run: distinct from a failed build, so CI
/// can tell "cache cold" from "build broken".
pub const CACHE_MISS: u8 = 5;
/// Stdout's reader went away (`rbuild save img | head -c 10`): 128 + SIGPIPE, what a shell
/// reports for a writer the closed pipe killed.
pub const BROKEN_PIPE: u8 = 141;

/// The exit code of each class of failure.
pub fn code_of(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Input => USER,
        ErrorClass::Registry => 3,
        ErrorClass::Store => 4,
        ErrorClass::CacheMiss => CACHE_MISS,
        ErrorClass::Interrupted => 130,
    }
}

/// The class of a failed command's error, from its type: every error type of rbuild knows its
/// class (`class()`); diagnostics of other types (the parser's, the planner's, the context's,
/// the cli's own usage errors) are bad input.
pub fn class_of(report: &miette::Report) -> ErrorClass {
    if let Some(e) = report.downcast_ref::<rbuild_store::Failure>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_store::Error>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_registry::RegistryError>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_executor::ExecError>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_executor::export::ExportError>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_executor::build::error::StepFailure>() {
        e.class
    } else if let Some(e) = report.downcast_ref::<rbuild_solver::cache::CacheError>() {
        e.class()
    } else if let Some(e) = report.downcast_ref::<rbuild_solver::cache_export::ImportError>() {
        e.class()
    } else {
        ErrorClass::Input
    }
}

/// Pick the exit code for a failed command.
pub fn code_for(report: &miette::Report) -> u8 {
    code_of(class_of(report))
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

/// Whether a command failed only because nobody reads its stdout any more (`rbuild save img |
/// head -c 10`): an I/O error of kind broken pipe in the report's chain *and* stdout's reader
/// really gone (poll(2) reports POLLERR on a pipe without readers). The second test keeps a
/// broken pipe inside rbuild (to a sandbox helper, say) a real error. Such a failure is not a
/// store or input error: `main` exits with [`BROKEN_PIPE`] without a message, as a process
/// killed by SIGPIPE would.
pub fn is_closed_stdout(report: &miette::Report) -> bool {
    let broken_pipe = report.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken_pipe && stdout_reader_gone()
}

/// poll(2) on stdout, without waiting: POLLERR on a pipe or socket whose reader is gone.
fn stdout_reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok() && fds[0].revents().contains(PollFlags::ERR)
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
            std::process::exit(i32::from(BROKEN_PIPE));
        }
        default_hook(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_store::Failure;

    fn code(e: impl miette::Diagnostic + Send + Sync + 'static) -> u8 {
        code_for(&miette::Report::new(e))
    }

    /// Each error type gives its class's exit code, whatever its diagnostic code string says.
    #[test]
    fn exit_codes_follow_the_error_types() {
        assert_eq!(code(rbuild_store::Error::corrupt("x")), 4);
        assert_eq!(
            code(rbuild_store::Error::usage("root refused", "use another")),
            4
        );
        assert_eq!(
            code(rbuild_store::Digest::parse("sha256:x").unwrap_err()),
            1
        );
        assert_eq!(code(Failure::interrupted("stopped")), 130);
        assert_eq!(code(Failure::store_io("disk")), 4);
        assert_eq!(
            code(Failure::new(
                ErrorClass::CacheMiss,
                "rbuild::build::cache_miss",
                "m"
            )),
            CACHE_MISS
        );
        // A Failure's class decides, not its code string.
        assert_eq!(
            code(Failure::new(
                ErrorClass::Input,
                "rbuild::store::looks_like_store",
                "m"
            )),
            USER
        );
        assert_eq!(
            code(rbuild_executor::ExecError::Cancelled {
                reason: "ctrl-c".into()
            }),
            130
        );
        assert_eq!(
            code(rbuild_executor::ExecError::Store(
                rbuild_store::Error::corrupt("x")
            )),
            4
        );
        assert_eq!(code_for(&miette::miette!("anything else")), USER);
    }

    /// A broken pipe counts as a closed stdout only when stdout's reader is really gone: here
    /// (the test's stdout is the harness's, still read) it is an ordinary error.
    #[test]
    fn a_broken_pipe_elsewhere_is_not_a_closed_stdout() {
        let e = rbuild_store::Error::io(
            "write",
            std::path::Path::new("<helper>"),
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        );
        let report = miette::Report::new(e);
        assert!(
            report
                .chain()
                .any(|e| e.downcast_ref::<std::io::Error>().is_some())
        );
        assert!(!is_closed_stdout(&report));
    }
}

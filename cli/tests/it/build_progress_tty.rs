//! The live build view in a real terminal (tmux, 60×24): BuildKit's header with the elapsed
//! time and the steps done, the last lines of a running step cut to the terminal's width at a
//! word with an ellipsis, a step label without the comments of a multi-line RUN, and once the
//! build is done one line per step, cut to the width like the rest (kept as a snapshot, times
//! and IDs masked).

use crate::support::tmux::Tmux;
use crate::support::{TestEnv, load_busybox};

const WIDTH: usize = 60;

/// One output line of the RUN below, wider than the terminal.
fn long_line(i: usize) -> String {
    format!(
        "line {i}: the quick brown fox jumps over the lazy dog and keeps running far past the edge"
    )
}

/// The screen with durations and image IDs masked, trailing blank lines dropped.
fn masked(screen: &str) -> String {
    let mut out = Vec::new();
    for line in screen.lines() {
        let mut words = Vec::new();
        for w in line.split(' ') {
            let (w, colon) = match w.strip_suffix(':') {
                Some(bare) => (bare, ":"),
                None => (w, ""),
            };
            let secs = w.strip_suffix('s').is_some_and(|n| {
                n.contains('.') && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            });
            let id = w.len() == 12 && w.chars().all(|c| c.is_ascii_hexdigit());
            let word = if secs {
                "X.Xs"
            } else if id {
                "<id>"
            } else {
                w
            };
            words.push(format!("{word}{colon}"));
        }
        out.push(words.join(" ").trim_end().to_string());
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out.join("\n")
}

#[test]
fn live_view_has_a_header_fits_the_terminal_and_prints_each_step_once() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=8).map(long_line).collect();
    let echo: Vec<String> = lines.iter().map(|l| format!("echo '{l}'")).collect();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM busybox:1.35\nRUN {} \\\n    # a comment inside the command\n    && sleep 4\nRUN echo second\n",
            echo.join(" && ")
        ),
    )
    .unwrap();
    let command = format!(
        "{} --root {} build --progress tty --no-cache -t tty:1 {}; echo rbuild-exit=$?; sleep 600",
        env!("CARGO_BIN_EXE_rbuild"),
        env.root().display(),
        ctx.path().display()
    );
    let term = Tmux::start(&command, WIDTH as u16, 24);

    // While the RUN sleeps: the header, the running step and its last lines.
    term.wait_for_line(&format!("  {}", fitted(8)));
    let screen = term.screen();
    let header = screen
        .lines()
        .find(|l| l.starts_with("[+] Building "))
        .unwrap_or_else(|| panic!("no header:\n{screen}"));
    assert!(header.trim_end().ends_with("(0/2)"), "{header}");
    let running = screen
        .lines()
        .find(|l| l.contains("#1 [stage-0 1/2] RUN echo"))
        .unwrap_or_else(|| panic!("no running step:\n{screen}"));
    assert!(!running.contains("comment"), "{running}");
    for line in screen.lines() {
        assert!(
            console_width(line) <= WIDTH,
            "wider than the terminal: {line:?}"
        );
    }
    // Six lines of output (the last six), each cut after a whole word.
    for i in 3..=8 {
        let shown = format!("  {}", fitted(i));
        assert!(
            screen.lines().any(|s| s.trim_end() == shown),
            "{shown:?} missing:\n{screen}"
        );
    }
    assert!(!screen.contains(&format!("  {}", fitted(2))), "{screen}");

    term.wait_for_line("rbuild-exit=0");
    let done = masked(&term.screen());
    assert_eq!(done.matches("#1 [stage-0 1/2]").count(), 1, "{done}");
    for line in done.lines() {
        assert!(
            console_width(line) <= WIDTH,
            "wider than the terminal: {line:?}"
        );
    }
    assert_eq!(done.matches("#2 [stage-0 2/2]").count(), 1, "{done}");
    assert!(!done.contains("[+] Building"), "the header goes: {done}");
    insta::assert_snapshot!(done);
}

/// Output line `i` as the view shows it in a 60-column terminal, indented by two: cut after
/// "and", the last whole word that leaves room for the ellipsis.
fn fitted(i: usize) -> String {
    format!("line {i}: the quick brown fox jumps over the lazy dog and…")
}

fn console_width(line: &str) -> usize {
    line.trim_end().chars().count()
}

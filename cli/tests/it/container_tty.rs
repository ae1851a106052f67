//! `rbuild run -it` in a real terminal (tmux): a shell types and reads back, `tty` names the
//! container's own `/dev/pts/0`, TERM comes from the caller, the window size follows the
//! terminal (SIGWINCH), Ctrl-C interrupts the container's foreground process and not rbuild,
//! the exit code passes through and the terminal leaves raw mode. Plus `-i` (stdin only with
//! it), `-t` without a terminal, and the refusals of `-d` with `-it`.

use crate::support::tmux::Tmux;
use crate::support::{TestEnv, load_busybox, text};

#[test]
fn run_it_is_a_real_terminal_session() {
    let env = TestEnv::new();
    load_busybox(&env);
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let root = env.root().display().to_string();
    // After rbuild: its exit code, and whether the terminal is canonical again (not raw).
    let t = Tmux::start(
        &format!(
            "TERM=screen-test {rbuild} --root {root} run -it --rm busybox:1.35 sh; \
             echo rbuild-exit=$?; stty -a | tr ' ' '\\n' | grep -x -- '-*icanon'; sleep 60"
        ),
        100,
        30,
    );
    t.type_line("echo hi-$((1+2))");
    t.wait_for_line("hi-3");
    t.type_line("tty; echo term=$TERM; stty size");
    t.wait_for_line("/dev/pts/0");
    t.wait_for_line("term=screen-test");
    t.wait_for_line("30 100");
    t.resize(120, 40);
    t.type_line("stty size");
    t.wait_for_line("40 120");
    // Ctrl-C reaches the container's foreground process (sleep), not rbuild.
    // (An interactive shell drops the rest of a line whose job Ctrl-C killed: ask after.)
    t.type_line("sleep 1000");
    std::thread::sleep(std::time::Duration::from_millis(500));
    t.send(&["C-c"]);
    t.type_line("echo after-sleep=$?");
    t.wait_for_line("after-sleep=130");
    t.type_line("exit 3");
    t.wait_for_line("rbuild-exit=3");
    t.wait_for_line("icanon");
}

#[test]
fn stdin_is_passed_only_with_i_and_it_needs_a_terminal() {
    let env = TestEnv::new();
    load_busybox(&env);
    let out = env
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "cat"])
        .write_stdin("not passed\n")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "");
    let out = env
        .rbuild()
        .args(["run", "-i", "--rm", "busybox:1.35", "cat"])
        .write_stdin("passed\n")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "passed\n");
    // `-t` without a terminal still gives the container one (output only).
    let out = env
        .rbuild()
        .args(["run", "-t", "--rm", "busybox:1.35", "tty"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "/dev/pts/0\r\n", "{:?}", text(&out));
    let out = env
        .rbuild()
        .args(["run", "-it", "--rm", "busybox:1.35", "true"])
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("the input device is not a TTY"));
    let out = env
        .rbuild()
        .args(["run", "-d", "-t", "busybox:1.35", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("rbuild logs -f"), "{:?}", text(&out));
}

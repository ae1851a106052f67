//! `rbuild exec` into a running container: the container's namespaces (its processes, hostname,
//! files), its env/workdir/user by default and overrides, its cgroups, the sandbox's seccomp
//! profile, capabilities and device rules, stdin only with `-i`, a terminal with `-it` (tmux),
//! exit codes, and the errors for a stopped or unknown container.

use std::time::Duration;

use crate::support::containers::{Reaper, ps_state, wait_until};
use crate::support::tmux::Tmux;
use crate::support::{TestEnv, load_busybox, text};

fn running_container(env: &TestEnv) -> String {
    let out = env
        .rbuild()
        .args([
            "run", "-d", "--name", "target", "-e", "FOO=bar", "-w", "/data",
        ])
        .args([
            "busybox:1.35",
            "sh",
            "-c",
            "echo kept > /data/f; exec sleep 1000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let id = text(&out).0.trim().to_string();
    wait_until(
        "the container wrote /data/f",
        Duration::from_secs(20),
        || {
            let out = env
                .rbuild()
                .args(["exec", "target", "cat", "/data/f"])
                .output()
                .unwrap();
            text(&out).0 == "kept\n"
        },
    );
    id
}

fn exec(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.rbuild().arg("exec").args(args).output().unwrap()
}

#[test]
fn exec_runs_inside_the_container_with_its_defaults_and_confinement() {
    let env = TestEnv::new();
    load_busybox(&env);
    let _reaper = Reaper(&env);
    let id = running_container(&env);

    // Its PID namespace (the container's `sleep` is visible, we are not PID 1), hostname,
    // environment and working directory.
    let out = exec(
        &env,
        &[
            "target",
            "sh",
            "-c",
            "echo $FOO; pwd; hostname; ps -o pid,args | grep -c 'sleep 1000$'; echo $$",
        ],
    );
    let stdout = text(&out).0;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..4], ["bar", "/data", &id[..12], "1"], "{stdout}");
    assert_ne!(lines[4], "1");
    // Overrides.
    let out = exec(
        &env,
        &[
            "-e",
            "FOO=baz",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "target",
            "sh",
            "-c",
            "echo $FOO; pwd; id -u",
        ],
    );
    assert_eq!(text(&out).0, "baz\n/tmp\n65534\n");
    // The container's cgroups (seen through its cgroup namespace: the same as its PID 1's),
    // the default capability set, seccomp filtering, and the device rules: a node made with
    // mknod cannot be opened.
    let out = exec(
        &env,
        &[
            "target",
            "sh",
            "-c",
            "[ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] && echo same-cgroups; \
             grep -E '^(CapEff|Seccomp):' /proc/self/status; \
             mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 || echo node-refused)",
        ],
    );
    assert_eq!(
        text(&out).0,
        "same-cgroups\nCapEff:\t00000000a80425fb\nSeccomp:\t2\nnode-refused\n",
        "{:?}",
        text(&out)
    );
    // stdin only with -i; exit codes pass through.
    let out = env
        .rbuild()
        .args(["exec", "target", "cat"])
        .write_stdin("dropped\n")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "");
    let out = env
        .rbuild()
        .args(["exec", "-i", "target", "cat"])
        .write_stdin("piped\n")
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "piped\n");
    assert_eq!(
        exec(&env, &["target", "sh", "-c", "exit 5"]).status.code(),
        Some(5)
    );
    let out = exec(&env, &["target", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out).1.contains("executable file not found"));

    // Written files land in the container's layer, seen by its own processes.
    exec(&env, &["target", "sh", "-c", "echo from-exec > /data/g"]);
    let upper = env.root().join("containers").join(&id).join("upper/data/g");
    assert_eq!(std::fs::read_to_string(upper).unwrap(), "from-exec\n");

    // Stopped and unknown containers.
    let out = env
        .rbuild()
        .args(["stop", "-t", "1", "target"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(ps_state(env.rbuild(), "target").is_some_and(|(s, _)| s == "exited"));
    let out = exec(&env, &["target", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
    let out = exec(&env, &["nope", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no such container"));
}

#[test]
fn exec_it_is_a_terminal_session_in_the_container() {
    let env = TestEnv::new();
    load_busybox(&env);
    let _reaper = Reaper(&env);
    let id = running_container(&env);
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let root = env.root().display().to_string();
    let t = Tmux::start(
        &format!("{rbuild} --root {root} exec -it target sh; echo exec-exit=$?; sleep 60"),
        90,
        25,
    );
    t.type_line("echo hi-$((1+2)); tty; stty size; hostname");
    t.wait_for_line("hi-3");
    t.wait_for_line("/dev/pts/0");
    t.wait_for_line("25 90");
    t.wait_for_line(&id[..12]);
    t.type_line("exit 4");
    t.wait_for_line("exec-exit=4");
}

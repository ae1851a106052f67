//! Containers' life outside `rbuild run`'s own process: `run -d` + `ps` + `logs [-f]
//! [--tail]` + `stop` + `kill` + `rm` + `container prune` end to end, the image's STOPSIGNAL
//! and the SIGKILL after `stop -t`, a killed supervisor shown as Dead (and a killed `--rm`
//! container gone), the bounded log, names and id prefixes, `system df`'s active count, and
//! the refusals (`-p`, `rm` of a running container, a taken name).

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::containers::{Reaper, ps_all, ps_state, unique_number, wait_until};
use crate::support::host::HostGuard;
use crate::support::{TestEnv, load_busybox, processes_matching, text};

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    load_busybox(&env);
    env
}

/// `rbuild run -d ARGS...`: assert it printed a full id and return it.
fn detach(cmd: &mut assert_cmd::Command, args: &[&str]) -> String {
    let out = cmd.arg("run").arg("-d").args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "run -d {args:?}: {stderr}");
    let id = stdout.trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d prints the full id: {stdout:?}"
    );
    id
}

/// The whole life of a detached container, with the host left as it was: `run -d` returns at
/// once and the container keeps running; `ps` lists it as Up; `logs` splits stdout and stderr,
/// `--tail` cuts; `logs -f` streams until `stop` ends the container; `ps -a` then says
/// `Exited (143)`; `rm` removes it and its reference on the image.
#[test]
fn detached_run_logs_follow_stop_and_rm_end_to_end() {
    let env = env_with_busybox();
    let guard = HostGuard::new(&env);
    let _reaper = Reaper(&env);
    let marker = format!("sleep 0.0731{}", unique_number());
    let script = format!(
        "echo started; echo to-stderr >&2; i=0; while true; do i=$((i+1)); echo tick $i; {marker}; done"
    );
    let started = Instant::now();
    let id = detach(
        &mut guard.rbuild(),
        &["--name", "web", "busybox:1.35", "sh", "-c", &script],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // rbuild has exited; the container runs on.
    wait_until("the container runs", Duration::from_secs(10), || {
        processes_matching(&marker) > 0
    });
    let out = guard.rbuild().arg("ps").output().unwrap();
    let stdout = text(&out).0;
    let mut lines = stdout.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().expect("one running container");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("busybox:1.35"), "{row}");
    assert!(row.contains("\"sh -c echo started;…\""), "{row}");
    assert!(row.contains(" Up "), "{row}");
    assert!(row.ends_with("web"), "{row}");
    let out = guard.rbuild().args(["ps", "-q"]).output().unwrap();
    assert_eq!(text(&out).0, format!("{}\n", &id[..12]));

    wait_until("three ticks are logged", Duration::from_secs(20), || {
        let out = guard.rbuild().args(["logs", "web"]).output().unwrap();
        text(&out).0.contains("tick 3\n")
    });
    let out = guard.rbuild().args(["logs", &id[..6]]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(stdout.starts_with("started\ntick 1\ntick 2\n"), "{stdout}");
    assert_eq!(stderr, "to-stderr\n");
    let out = guard
        .rbuild()
        .args(["logs", "--tail", "1", "web"])
        .output()
        .unwrap();
    let last = text(&out).0;
    assert!(
        last.starts_with("tick ") && last.lines().count() == 1,
        "{last:?}"
    );

    // `logs -f` streams new lines and ends when the container stops.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(env.root())
        .args(["logs", "-f", "web"])
        .env("RBUILD_HOSTGUARD", guard.marker())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let stop_started = Instant::now();
    let out = guard.rbuild().args(["stop", "web"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "web\n");
    // SIGTERM ends the shell at once: no wait for the 10 s timeout.
    assert!(stop_started.elapsed() < Duration::from_secs(8));
    let mut followed = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut followed)
        .unwrap();
    assert!(follow.wait().unwrap().success());
    let ticks = followed.matches("tick ").count();
    let logged = text(&guard.rbuild().args(["logs", "web"]).output().unwrap())
        .0
        .matches("tick ")
        .count();
    assert_eq!(ticks, logged, "logs -f printed every line, once");
    assert!(processes_matching(&marker) == 0, "stop left processes");

    let (state, status) = ps_state(guard.rbuild(), "web").unwrap();
    assert_eq!(state, "exited");
    assert!(status.starts_with("Exited (143) "), "{status}");
    let out = guard.rbuild().arg("ps").output().unwrap();
    assert_eq!(text(&out).0.lines().count(), 1, "only the header");
    // The image is in use until the container is removed.
    let out = guard
        .rbuild()
        .args(["rmi", "busybox:1.35"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = guard.rbuild().args(["rm", "web"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(ps_all(guard.rbuild()).is_empty());
    assert!(!env.root().join("containers").join(&id).exists());
    guard.check();
}

/// `stop` sends the image's STOPSIGNAL, and SIGKILL when the container ignores it for `-t`
/// seconds; `kill -s` sends any signal; `rm` refuses a running container without `-f`.
#[test]
fn stop_signal_timeout_kill_and_rm_refusals() {
    let env = env_with_busybox();
    let _reaper = Reaper(&env);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:1.35\nSTOPSIGNAL SIGUSR1\n",
    )
    .unwrap();
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "usr1stop"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    // The image's STOPSIGNAL reaches the command; its handler decides the exit code.
    let trap = "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.05; done";
    detach(
        &mut env.rbuild(),
        &["--name", "usr1", "usr1stop", "sh", "-c", trap],
    );
    wait_until("usr1 is ready", Duration::from_secs(20), || {
        text(&env.rbuild().args(["logs", "usr1"]).output().unwrap())
            .0
            .contains("ready")
    });
    let out = env.rbuild().args(["stop", "usr1"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&env.rbuild().args(["logs", "usr1"]).output().unwrap()).0,
        "ready\ngot-usr1\n"
    );
    let (_, status) = ps_state(env.rbuild(), "usr1").unwrap();
    assert!(status.starts_with("Exited (3) "), "{status}");

    // A command that ignores SIGTERM is killed after `-t` seconds: 137.
    let stubborn = "trap 'echo ignored-term' TERM; echo ready; while true; do sleep 0.05; done";
    detach(
        &mut env.rbuild(),
        &["--name", "stubborn", "busybox:1.35", "sh", "-c", stubborn],
    );
    wait_until("stubborn is ready", Duration::from_secs(20), || {
        text(&env.rbuild().args(["logs", "stubborn"]).output().unwrap())
            .0
            .contains("ready")
    });
    // `rm` refuses it while it runs.
    let out = env.rbuild().args(["rm", "stubborn"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("is running"), "{stderr}");
    assert!(stderr.contains("rm -f"), "{stderr}");
    let t = Instant::now();
    let out = env
        .rbuild()
        .args(["stop", "-t", "1", "stubborn"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(
        text(&env.rbuild().args(["logs", "stubborn"]).output().unwrap())
            .0
            .contains("ignored-term")
    );
    let (_, status) = ps_state(env.rbuild(), "stubborn").unwrap();
    assert!(status.starts_with("Exited (137) "), "{status}");

    // `kill -s HUP`: the default action of HUP ends the shell, 128 + 1.
    detach(
        &mut env.rbuild(),
        &[
            "--name",
            "hup",
            "busybox:1.35",
            "sh",
            "-c",
            "echo ready; while true; do sleep 0.05; done",
        ],
    );
    wait_until("hup is ready", Duration::from_secs(20), || {
        text(&env.rbuild().args(["logs", "hup"]).output().unwrap())
            .0
            .contains("ready")
    });
    let out = env
        .rbuild()
        .args(["kill", "-s", "SIGHUP", "hup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    wait_until("hup exits", Duration::from_secs(10), || {
        ps_state(env.rbuild(), "hup").is_some_and(|(s, _)| s == "exited")
    });
    let (_, status) = ps_state(env.rbuild(), "hup").unwrap();
    assert!(status.starts_with("Exited (129) "), "{status}");
    // Killing a stopped container is an error that says so.
    let out = env.rbuild().args(["kill", "hup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
    let out = env
        .rbuild()
        .args(["kill", "-s", "NOPE", "hup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a signal"));

    // `rm -f` kills and removes a running one.
    detach(
        &mut env.rbuild(),
        &["--name", "forced", "busybox:1.35", "sleep", "1000"],
    );
    wait_until("forced runs", Duration::from_secs(20), || {
        ps_state(env.rbuild(), "forced").is_some_and(|(s, _)| s == "running")
    });
    let out = env.rbuild().args(["rm", "-f", "forced"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(ps_state(env.rbuild(), "forced").is_none());
    // The `container` group names the same commands.
    let out = env
        .rbuild()
        .args(["container", "ls", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "hup\nstubborn\nusr1\n", "{:?}", text(&out));
    let out = env.rbuild().args(["container", "prune"]).output().unwrap();
    let stdout = text(&out).0;
    assert!(stdout.starts_with("Deleted Containers:\n"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.len() == 64).count(), 3);
    assert!(stdout.contains("Total reclaimed space: "), "{stdout}");
    assert!(ps_all(env.rbuild()).is_empty());
}

/// The pid of a container's supervisor, from its state file.
fn supervisor_pid(env: &TestEnv, id: &str) -> i32 {
    let state =
        std::fs::read_to_string(env.root().join("containers").join(id).join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// A container whose supervisor is killed is not running any more, whatever its record said:
/// `ps` shows it Dead (a `--rm` one is gone), its processes are gone, and `system df` counts
/// only running containers as active.
#[test]
fn a_killed_supervisor_leaves_a_dead_container_and_df_counts_truthfully() {
    let env = env_with_busybox();
    let _reaper = Reaper(&env);
    let (n1, n2) = (
        (1_000_000 + unique_number()).to_string(),
        (2_000_000 + unique_number()).to_string(),
    );
    let (m1, m2) = (format!("sleep {n1}"), format!("sleep {n2}"));
    let kept = detach(
        &mut env.rbuild(),
        &["--name", "kept", "busybox:1.35", "sleep", &n1],
    );
    let gone = detach(
        &mut env.rbuild(),
        &["--rm", "--name", "gone", "busybox:1.35", "sleep", &n2],
    );
    wait_until("both run", Duration::from_secs(20), || {
        processes_matching(&m1) > 0 && processes_matching(&m2) > 0
    });
    let df = |env: &TestEnv| {
        let out = env.rbuild().args(["system", "df"]).output().unwrap();
        let stdout = text(&out).0;
        let row = stdout
            .lines()
            .find(|l| l.starts_with("Containers"))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>();
        (row[1].clone(), row[2].clone())
    };
    assert_eq!(df(&env), ("2".into(), "2".into()));
    for id in [&kept, &gone] {
        let pid = rustix::process::Pid::from_raw(supervisor_pid(&env, id)).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    }
    wait_until(
        "the containers die with their supervisors",
        Duration::from_secs(10),
        || processes_matching(&m1) == 0 && processes_matching(&m2) == 0,
    );
    let all = ps_all(env.rbuild());
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0], ("kept".into(), "dead".into(), "Dead".into()));
    assert!(!env.root().join("containers").join(&gone).exists());
    assert_eq!(df(&env), ("1".into(), "0".into()));
    let out = env.rbuild().arg("ps").output().unwrap();
    assert_eq!(text(&out).0.lines().count(), 1, "only the header");
    let out = env.rbuild().args(["rm", "kept"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(df(&env), ("0".into(), "0".into()));
}

/// The log is bounded: a chatty container keeps at most two files of `max-size`, `logs` says
/// output was dropped, and the newest lines are kept.
#[test]
fn the_log_is_bounded_and_says_when_it_dropped_output() {
    let env = env_with_busybox();
    let _reaper = Reaper(&env);
    let script = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line-$i; done; echo done";
    let id = detach(
        &mut env.rbuild(),
        &[
            "--log-opt",
            "max-size=4k",
            "--name",
            "chatty",
            "busybox:1.35",
            "sh",
            "-c",
            script,
        ],
    );
    wait_until("chatty exits", Duration::from_secs(30), || {
        ps_state(env.rbuild(), "chatty").is_some_and(|(s, _)| s == "exited")
    });
    let dir = env.root().join("containers").join(&id);
    let size: u64 = ["log", "log.1"]
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(size <= 8192, "{size}");
    let out = env.rbuild().args(["logs", "chatty"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(stdout.ends_with("line-3000\ndone\n"), "{stdout}");
    assert!(!stdout.contains("line-1\n"));
    assert!(stderr.contains("was truncated"), "{stderr}");
    assert!(stderr.contains("--log-opt max-size"), "{stderr}");
    let out = env
        .rbuild()
        .args([
            "run",
            "-d",
            "--log-opt",
            "max-file=3",
            "busybox:1.35",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("only `max-size`"), "{:?}", text(&out));
}

/// Names are unique, a name or id prefix names a container everywhere, unknown names are
/// clear errors, `-p` is refused with the reason, and `run --help` says what is not supported.
#[test]
fn names_prefixes_formats_and_refusals() {
    let env = env_with_busybox();
    let _reaper = Reaper(&env);
    let id = detach(
        &mut env.rbuild(),
        &["--name", "one", "busybox:1.35", "sh", "-c", "echo hello"],
    );
    let out = env
        .rbuild()
        .args(["run", "-d", "--name", "one", "busybox:1.35", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("already in use"), "{:?}", text(&out));
    wait_until("one exits", Duration::from_secs(20), || {
        ps_state(env.rbuild(), "one").is_some_and(|(s, _)| s == "exited")
    });
    for name in ["one", &id[..5], id.as_str()] {
        let out = env.rbuild().args(["logs", name]).output().unwrap();
        assert_eq!(text(&out).0, "hello\n", "{name}");
    }
    let out = env.rbuild().args(["logs", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("no such container: `nope`"), "{stderr}");
    assert!(stderr.contains("ps -a"), "{stderr}");

    let out = env
        .rbuild()
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Command}} {{.State}}",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, format!("{id} \"sh -c echo hello\" exited\n"));
    let out = env
        .rbuild()
        .args(["ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}"])
        .output()
        .unwrap();
    let stdout = text(&out).0;
    assert!(
        stdout.starts_with("NAMES     STATUS\none       Exited (0) "),
        "{stdout}"
    );
    let out = env
        .rbuild()
        .args(["ps", "-a", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(text(&out).0.trim()).unwrap();
    assert_eq!(v["Names"], "one");
    assert_eq!(v["State"], "exited");

    // An attached container records its end too.
    let out = env
        .rbuild()
        .args([
            "run",
            "--name",
            "attached",
            "busybox:1.35",
            "sh",
            "-c",
            "exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let (_, status) = ps_state(env.rbuild(), "attached").unwrap();
    assert!(status.starts_with("Exited (7) "), "{status}");
    let out = env.rbuild().args(["logs", "attached"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("ran attached"), "{:?}", text(&out));

    let out = env
        .rbuild()
        .args(["run", "-p", "8080:80", "busybox:1.35", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out).1;
    assert!(stderr.contains("cannot publish `8080:80`"), "{stderr}");
    assert!(stderr.contains("--network host"), "{stderr}");
    let out = env.rbuild().args(["run", "--help"]).output().unwrap();
    let help = text(&out).0.replace('\n', " ");
    assert!(help.contains("--restart"), "{help}");
    assert!(help.contains("host's network"), "{help}");
    let out = env
        .rbuild()
        .args(["rm", "one", "attached"])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "one\nattached\n");
}

/// `rm -f` (and `kill`) right after `run -d`, while the container may still be starting: it is
/// taken down whatever stage it reached, and nothing of it runs on.
#[test]
fn rm_f_right_after_run_d_leaves_nothing_running() {
    let env = env_with_busybox();
    let guard = HostGuard::new(&env);
    let _reaper = Reaper(&env);
    let seconds = (3_000_000 + unique_number()).to_string();
    let marker = format!("sleep {seconds}");
    for i in 0..3 {
        let name = format!("fast{i}");
        detach(
            &mut guard.rbuild(),
            &["--name", &name, "busybox:1.35", "sleep", &seconds],
        );
        let verb: &[&str] = if i == 2 { &["kill"] } else { &["rm", "-f"] };
        let out = guard.rbuild().args(verb).arg(&name).output().unwrap();
        assert!(out.status.success(), "{verb:?}: {:?}", text(&out));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        processes_matching(&marker),
        0,
        "a container outlived rm -f/kill"
    );
    let (state, status) = ps_state(guard.rbuild(), "fast2").unwrap();
    assert_eq!(state, "exited");
    assert!(status.starts_with("Exited (137) "), "{status}");
    let out = guard.rbuild().args(["rm", "fast2"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(ps_all(guard.rbuild()).is_empty());
    guard.check();
}

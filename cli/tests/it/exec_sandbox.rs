//! The RUN sandbox, end to end through the executor API with the real rbuild binary as helper:
//! isolation facts (PID 1, hostname, fresh /proc, minimal /dev, read-only /sys, network none),
//! users and working directories, exit codes and signals, output capture, cancellation, and
//! deep overlay chains.

use crate::support::{self, processes_matching};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::exec::{Fixture, run_sh};
use rbuild_executor::{Backend, ExecError, ExecutorOptions, ExitStatus, Network};

/// The step is PID 2 under a PID-1 init, sees only its own processes and has its hostname.
#[test]
fn step_runs_in_its_own_pid_and_uts_namespaces() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '",
        |s| s.hostname = "buildbox".into(),
    );
    assert!(ran.outcome().status.success(), "{:?}", ran.stderr);
    assert_eq!(ran.stdout[0], "pid=2");
    assert_eq!(ran.stdout[1], "buildbox");
    let procs: u32 = ran.stdout[2].parse().unwrap();
    assert!(
        procs <= 4,
        "a fresh /proc shows only the step's processes, saw {procs}"
    );
    assert!(
        ran.stdout[3].contains("__rbuild-sandbox"),
        "{}",
        ran.stdout[3]
    );
}

/// /dev holds exactly the minimal set, /sys is read-only and /proc's dangerous files are masked.
#[test]
fn dev_is_minimal_and_sys_and_proc_are_protected() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "ls /dev | tr '\\n' ' '; echo; \
         touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro; \
         (echo h > /proc/sysrq-trigger) 2>/dev/null && echo sysrq-writable || echo sysrq-ro; \
         for f in kcore keys timer_list sched_debug; do [ -e /proc/$f ] && wc -c < /proc/$f; done | sort -u; \
         mount -t tmpfs none /mnt 2>/dev/null && echo can-mount || echo no-mount; \
         echo x > /dev/shm/f && cat /dev/shm/f",
        |_| {},
    );
    assert!(ran.outcome().status.success(), "{:?}", ran.stderr);
    assert_eq!(
        ran.stdout[0].trim(),
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"
    );
    assert_eq!(ran.stdout[1], "sys-ro");
    assert_eq!(ran.stdout[2], "sysrq-ro");
    assert_eq!(
        ran.stdout[3].trim(),
        "0",
        "/proc/kcore and co. read as empty"
    );
    assert_eq!(ran.stdout[4], "no-mount", "CAP_SYS_ADMIN is dropped");
    assert_eq!(ran.stdout[5], "x");
}

/// On both backends every mount is nodev: a node the step makes (even of /dev/null's numbers,
/// which the device cgroup allows) cannot be opened, while /dev/null itself works.
#[test]
fn device_nodes_made_by_the_step_cannot_be_opened_on_either_backend() {
    for backend in [Backend::Overlay, Backend::Copy] {
        let fx = Fixture::new(backend);
        let ran = run_sh(
            &fx.exec,
            &fx.lowers(),
            "mknod /n c 1 3 && echo made; (echo x > /n) 2>/dev/null && echo opened || echo denied; \
             mknod /tmp/n c 1 3; (echo x > /tmp/n) 2>/dev/null && echo opened || echo denied; \
             echo x > /dev/null && echo null-ok",
            |_| {},
        );
        assert_eq!(
            ran.stdout,
            ["made", "denied", "denied", "null-ok"],
            "{backend:?}: {:?}",
            ran.stderr
        );
    }
}

/// `Security::Insecure` lifts the confinement: device nodes open, no seccomp filter.
#[test]
fn insecure_steps_can_open_devices_and_have_no_seccomp() {
    let fx = Fixture::new(Backend::Overlay);
    let script = "mknod /n c 1 3; (echo x > /n) 2>/dev/null && echo opened || echo denied; \
                  grep '^Seccomp:' /proc/self/status";
    let ran = run_sh(&fx.exec, &fx.lowers(), script, |s| {
        s.security = rbuild_executor::Security::Insecure
    });
    assert_eq!(ran.stdout, ["opened", "Seccomp:\t0"], "{:?}", ran.stderr);
    let ran = run_sh(&fx.exec, &fx.lowers(), script, |_| {});
    assert_eq!(ran.stdout, ["denied", "Seccomp:\t2"], "{:?}", ran.stderr);
}

/// `--network=none` gives a namespace with only an active loopback; the default is the host's.
#[test]
fn network_none_has_only_loopback_and_host_is_the_default() {
    let fx = Fixture::new(Backend::Overlay);
    let none = run_sh(
        &fx.exec,
        &fx.lowers(),
        "ls /sys/class/net | tr '\\n' ' '; echo; ip -o link show lo | grep -c UP",
        |s| s.network = Network::None,
    );
    assert!(none.outcome().status.success(), "{:?}", none.stderr);
    assert_eq!(none.stdout[0].trim(), "lo");
    assert_eq!(none.stdout[1], "1", "loopback is up");
    let host = run_sh(&fx.exec, &fx.lowers(), "ls /sys/class/net", |_| {});
    let mut expected: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(host.stdout, expected);
}

/// Only stdin/stdout/stderr reach the command: no descriptor of rbuild or the test leaks.
#[test]
fn only_the_standard_descriptors_reach_the_step() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "ls /proc/self/fd | tr '\\n' ' '",
        |_| {},
    );
    // 3 is the directory `ls` itself opened.
    assert_eq!(ran.outcome().status, ExitStatus::Exited(0));
    assert_eq!(ran.stdout[0].trim(), "0 1 2 3");
}

/// The step cannot reach its init (which runs rbuild's binary): no /proc/1/exe, fds or
/// environment, no ptrace; and a working directory through /proc/self/fd cannot start.
#[test]
fn the_init_process_and_proc_fd_tricks_are_out_of_reach() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "readlink /proc/1/exe 2>/dev/null || echo no-exe; readlink /proc/1/fd/4 2>/dev/null || echo no-fd; \
         cat /proc/1/environ >/dev/null 2>&1 || echo no-environ; grep CapEff /proc/1/status",
        |_| {},
    );
    assert!(ran.outcome().status.success(), "{:?}", ran.stderr);
    assert_eq!(
        ran.stdout,
        ["no-exe", "no-fd", "no-environ", "CapEff:\t0000000000000000"]
    );
    for n in 3..8 {
        let ran = run_sh(&fx.exec, &fx.lowers(), "pwd", |s| {
            s.cwd = format!("/proc/self/fd/{n}")
        });
        assert!(
            matches!(ran.result, Err(ExecError::Start { .. })),
            "cwd /proc/self/fd/{n} started: {:?}",
            ran.stdout
        );
    }
}

/// After a step, no mount of it is visible on the host, its directory is gone once the handle
/// is dropped, and host files next to the store were neither visible nor touched.
#[test]
fn steps_leave_no_mounts_and_cannot_see_the_host() {
    let fx = Fixture::new(Backend::Overlay);
    let canary = fx.tmp.path().join("canary-7f3a");
    std::fs::write(&canary, "host").unwrap();
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "find / -name 'canary-7f3a' 2>/dev/null | wc -l; echo new > /made-by-step",
        |_| {},
    );
    let outcome = ran.outcome();
    assert_eq!(ran.stdout[0], "0", "the host filesystem is not visible");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = fx.root.to_string_lossy().into_owned();
    assert!(
        !mountinfo.contains(&root),
        "a mount under the store leaked to the host:\n{mountinfo}"
    );
    let upper = outcome.rootfs.upper_dir().unwrap().to_path_buf();
    assert!(upper.join("made-by-step").exists());
    drop(ran);
    assert!(
        !upper.exists(),
        "the step directory is removed with its handle"
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host");
    assert!(!PathBuf::from("/made-by-step").exists());
}

/// Exit codes pass through; death by a signal is reported with the signal's name.
#[test]
fn exit_codes_and_signals_are_reported_distinctly() {
    let fx = Fixture::new(Backend::Overlay);
    let lowers = [fx.base.clone()];
    let ran = run_sh(&fx.exec, &lowers, "exit 42", |_| {});
    assert_eq!(ran.outcome().status, ExitStatus::Exited(42));
    let ran = run_sh(&fx.exec, &lowers, "kill -9 $$", |_| {});
    let status = &ran.outcome().status;
    assert_eq!(
        *status,
        ExitStatus::Signaled {
            signal: 9,
            name: "SIGKILL"
        }
    );
    assert_eq!(status.to_string(), "killed by signal SIGKILL (9)");
    assert_eq!(status.code(), 137);
    let ran = run_sh(&fx.exec, &lowers, "kill -TERM $$", |_| {});
    assert_eq!(
        ran.outcome().status.to_string(),
        "killed by signal SIGTERM (15)"
    );
}

/// A command that cannot start is an error that says why, not an exit code.
#[test]
fn commands_that_cannot_start_are_errors() {
    let fx = Fixture::new(Backend::Overlay);
    let mut cb = |_: rbuild_executor::Stream, _: &[u8]| {};
    let step = rbuild_executor::RunStep::new(
        vec![fx.base.clone()],
        vec!["no-such-tool".into(), "x".into()],
        rbuild_executor::Stdio3::Capture(&mut cb),
    );
    match fx.exec.run(step) {
        Err(ExecError::Start { program, reason }) => {
            assert_eq!(program, "no-such-tool");
            assert_eq!(reason, "executable file not found in $PATH");
        }
        other => panic!("expected a start error, got {:?}", other.map(|o| o.status)),
    }
}

/// USER resolves through the image's passwd/group (with supplementary groups); numeric ids
/// work without entries; unknown names fail clearly.
#[test]
fn users_resolve_from_the_image_files() {
    let fx = Fixture::new(Backend::Overlay);
    let lowers = [fx.base.clone()];
    let ran = run_sh(&fx.exec, &lowers, "id", |s| s.user = "app".into());
    assert_eq!(
        ran.out(),
        "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)"
    );
    let ran = run_sh(&fx.exec, &lowers, "id -u; id -g; id -G", |s| {
        s.user = "4321:8765".into()
    });
    assert_eq!(ran.stdout, ["4321", "8765", "8765"]);
    let ran = run_sh(&fx.exec, &lowers, "id", |s| s.user = "ghost".into());
    match &ran.result {
        Err(ExecError::Start { reason, .. }) => {
            assert!(reason.contains("unable to find user `ghost`"))
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(o) => panic!("unexpected success: {}", o.status),
    }
}

/// A missing working directory is created (every missing level 0755 and owned by the user, as
/// BuildKit does) and ends up in the layer.
#[test]
fn a_missing_workdir_is_created_for_the_user() {
    let fx = Fixture::new(Backend::Overlay);
    let ran = run_sh(&fx.exec, &fx.lowers(), "pwd; stat -c '%a %u:%g' .", |s| {
        s.cwd = "/srv/app".into();
        s.user = "app".into();
    });
    assert_eq!(ran.stdout, ["/srv/app", "755 1000:1000"]);
    let cs = ran.outcome().rootfs.changeset().unwrap();
    let lines = rbuild_executor::diff::normalized(&cs).unwrap();
    assert_eq!(
        lines,
        ["srv Dir 755 1000:1000", "srv/app Dir 755 1000:1000"]
    );
}

/// Output is streamed line by line per stream, kept in full in the log, and the last lines
/// are returned for error reports.
#[test]
fn output_is_streamed_and_logged_in_full() {
    let fx = Fixture::new(Backend::Overlay);
    let log = fx.tmp.path().join("step.log");
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "for i in $(seq 1 3000); do echo out $i; done; echo err >&2; printf partial",
        |s| s.log_path = Some(log.clone()),
    );
    let outcome = ran.outcome();
    assert_eq!(ran.stdout.len(), 3001);
    assert_eq!(ran.stdout[2999], "out 3000");
    assert_eq!(ran.stdout[3000], "partial");
    assert_eq!(ran.stderr, ["err"]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.lines().count(), 3002, "nothing is clipped");
    assert!(logged.contains("out 1\n") && logged.contains("err\n"));
    assert_eq!(outcome.tail.len(), 20);
    assert_eq!(outcome.tail.last().unwrap(), "partial");
}

/// Output without newlines is delivered in bounded pieces (nothing buffers it all), and
/// invalid UTF-8 passes through as bytes.
#[test]
fn long_lines_come_in_pieces_and_bytes_pass_through() {
    let fx = Fixture::new(Backend::Overlay);
    let mut pieces = Vec::new();
    let mut cb = |_: rbuild_executor::Stream, l: &[u8]| pieces.push(l.to_vec());
    let mut step = rbuild_executor::RunStep::new(
        fx.lowers(),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "head -c 200000 /dev/zero | tr '\\0' x; printf '\\n\\377\\376\\n'".into(),
        ],
        rbuild_executor::Stdio3::Capture(&mut cb),
    );
    step.env = vec!["PATH=/bin".into()];
    let outcome = fx.exec.run(step).unwrap();
    assert!(outcome.status.success());
    drop(outcome);
    let sizes: Vec<usize> = pieces.iter().map(Vec::len).collect();
    assert_eq!(sizes, [65536, 65536, 65536, 3392, 2]);
    assert_eq!(pieces[4], [0xff, 0xfe]);
}

/// A timeout (or a cancel) kills the step and everything it started; daemonized processes
/// never outlive their step.
#[test]
fn timeouts_and_step_end_kill_every_process_of_the_step() {
    let fx = Fixture::new(Backend::Overlay);
    let lowers = [fx.base.clone()];
    let started = Instant::now();
    let ran = run_sh(&fx.exec, &lowers, "sleep 9871 & sleep 9872", |s| {
        s.timeout = Some(Duration::from_millis(500))
    });
    assert!(matches!(ran.result, Err(ExecError::Cancelled { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(processes_matching("sleep 987"), 0);

    let ran = run_sh(
        &fx.exec,
        &lowers,
        "setsid sleep 9873 & echo started",
        |_| {},
    );
    assert!(ran.outcome().status.success());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(processes_matching("sleep 9873"), 0);

    let token = rbuild_executor::CancelToken::new();
    let t2 = token.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        t2.cancel();
    });
    let ran = run_sh(&fx.exec, &lowers, "sleep 9874", |s| s.cancel = Some(token));
    killer.join().unwrap();
    assert!(matches!(ran.result, Err(ExecError::Cancelled { .. })));
    assert_eq!(processes_matching("sleep 9874"), 0);
}

fn deep_chain(fx: &Fixture, n: u32) -> Vec<PathBuf> {
    let mut lowers = vec![fx.base.clone()];
    for i in 0..n {
        lowers.push(fx.layer(i + 1, |d| {
            std::fs::create_dir(d.join("layers")).unwrap();
            std::fs::write(d.join("layers").join(format!("l{i:03}")), i.to_string()).unwrap();
            std::fs::write(d.join("top"), i.to_string()).unwrap();
        }));
    }
    lowers
}

/// 120 layers mount through `lowerdir+` and through the short-name fallback for old kernels.
#[test]
fn a_120_layer_chain_mounts_with_both_overlay_apis() {
    for legacy in [false, true] {
        let fx = Fixture::with_options(ExecutorOptions {
            helper: Some(support::exec::helper()),
            backend: Backend::Overlay,
            legacy_overlay: legacy,
        });
        let lowers = deep_chain(&fx, 120);
        let ran = run_sh(
            &fx.exec,
            &lowers,
            "ls /layers | wc -l; echo $(cat /top) $(cat /layers/l000)",
            |_| {},
        );
        assert_eq!(
            ran.stdout,
            ["120", "119 0"],
            "legacy={legacy} {:?}",
            ran.stderr
        );
    }
}

/// The copy-based backend (no overlayfs) runs steps with the same isolation.
#[test]
fn the_copy_backend_runs_steps() {
    let fx = Fixture::new(Backend::Copy);
    let ran = run_sh(
        &fx.exec,
        &fx.lowers(),
        "echo pid=$$; echo x > /f; ls /dev | wc -l",
        |_| {},
    );
    let outcome = ran.outcome();
    assert_eq!(ran.stdout, ["pid=2", "14"]);
    assert_eq!(outcome.rootfs.backend(), Backend::Copy);
    let cs = outcome.rootfs.changeset().unwrap();
    let lines = rbuild_executor::diff::normalized(&cs).unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("f File 644 0:0"));
}

/// Step directories left by a killed rbuild (their lock is free) are removed by the next
/// executor; live ones are kept.
#[test]
fn stale_step_directories_are_removed_on_start() {
    let fx = Fixture::new(Backend::Overlay);
    let stale = fx.root.join("exec/step-stale");
    std::fs::create_dir_all(stale.join("work/work")).unwrap();
    std::fs::write(stale.join("lock"), "").unwrap();
    let live = fx.root.join("exec/step-live");
    std::fs::create_dir_all(&live).unwrap();
    let lock = std::fs::File::create(live.join("lock")).unwrap();
    lock.lock().unwrap();
    let _again = rbuild_executor::Executor::new(&fx.root, ExecutorOptions::default()).unwrap();
    assert!(!stale.exists());
    assert!(live.exists());
}

/// A step is capped in tasks (`pids.max`): a bounded fork bomb under a small cap fails as
/// having hit the cap, and nothing it started survives; the default cap lets a step run a
/// hundred processes at once, and `Unlimited` sets none.
#[test]
fn a_fork_bomb_stops_at_the_pids_limit_and_normal_steps_are_not_bothered() {
    use rbuild_executor::sandbox::PidsLimit;
    let fx = Fixture::new(Backend::Overlay);
    let lowers = fx.lowers();
    let ran = run_sh(
        &fx.exec,
        &lowers,
        "for i in $(seq 200); do sleep 3701 & done; wait",
        |s| s.pids = PidsLimit::Max(64),
    );
    let status = ran.outcome().status.clone();
    assert_eq!(
        status,
        ExitStatus::PidsLimit {
            code: status.code(),
            limit: 64
        },
        "{:?}",
        ran.stderr
    );
    assert!(!status.success());
    assert!(status.to_string().contains("pids limit of 64"), "{status}");
    drop(ran);
    assert_eq!(processes_matching("sleep 3701"), 0);

    for pids in [PidsLimit::Default, PidsLimit::Unlimited] {
        let ran = run_sh(
            &fx.exec,
            &lowers,
            "for i in $(seq 100); do sleep 1 & done; wait; echo done",
            |s| s.pids = pids,
        );
        assert!(ran.outcome().status.success(), "{pids:?}: {:?}", ran.stderr);
        assert_eq!(ran.stdout, ["done"]);
    }
}

/// The sandbox cgroups (pids) of process `pid` still present.
fn pids_groups_of(pid: u32) -> Vec<PathBuf> {
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = ours
        .lines()
        .find_map(|l| {
            l.split(':')
                .nth(1)
                .filter(|c| c.split(',').any(|c| c == "pids"))
                .map(|_| l.splitn(3, ':').nth(2).unwrap().to_string())
        })
        .expect("no cgroup v1 pids hierarchy on this machine");
    let dir = Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'));
    let prefix = format!("rbuild-pids-{pid}-");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// `rbuild build --pids-limit 64` over a fork bomb: the build fails with a report naming the
/// limit and the flag, no process of the step survives and its cgroup is gone; the same kind
/// of step under the default works; `rbuild run --pids-limit` caps the container alike, and a
/// limit too small to start a step is refused.
#[test]
fn the_pids_limit_flags_cap_builds_and_containers() {
    let env = support::TestEnv::new();
    support::load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    let build = |dockerfile: &str, extra: &[&str]| {
        support::write_file(ctx.path(), "Dockerfile", dockerfile);
        // A std command, to know the build's pid (its cgroups are named after it).
        let child = std::process::Command::new(support::exec::helper())
            .env_remove("RBUILD_ROOT")
            .env("NO_COLOR", "1")
            .arg("--root")
            .arg(env.root())
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(ctx.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            pids_groups_of(pid),
            Vec::<PathBuf>::new(),
            "cgroups left behind"
        );
        out
    };
    let out = build(
        "FROM busybox:1.35\nRUN for i in $(seq 200); do sleep 3702 & done; wait\n",
        &["--pids-limit", "64"],
    );
    let (_, stderr) = support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "the pids limit of 64 processes and threads was reached",
        "--pids-limit N",
        "2 | RUN for i in",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in {stderr}");
    }
    assert_eq!(processes_matching("sleep 3702"), 0);

    let out = build(
        "FROM busybox:1.35\nRUN for i in $(seq 100); do sleep 1 & done; wait\n",
        &[],
    );
    assert!(out.status.success(), "{:?}", support::text(&out));

    let run = |args: &[&str]| {
        let out = env.rbuild().arg("run").args(args).output().unwrap();
        let (_, stderr) = support::text(&out);
        (out.status.code(), stderr)
    };
    let (code, stderr) = run(&[
        "--rm",
        "--pids-limit",
        "16",
        "busybox:1.35",
        "sh",
        "-c",
        "for i in $(seq 50); do sleep 3703 & done; wait",
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("pids limit of 16"), "{stderr}");
    assert_eq!(processes_matching("sleep 3703"), 0);
    let (code, stderr) = run(&["--rm", "--pids-limit", "-1", "busybox:1.35", "true"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run(&["--rm", "--pids-limit", "2", "busybox:1.35", "true"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("below the minimum pids limit"), "{stderr}");
}

//! `rbuild run`: containers from images in the store — the busybox fixture prints, exit codes
//! pass through, image config and command-line overrides apply, containers are kept or
//! removed, interrupting rbuild takes the container down, and non-root gets a clear error.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{TestEnv, processes_matching, shared_dir, text};

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .arg("load")
        .arg("-i")
        .arg(shared_dir().join("images/busybox-1.35.oci.tar"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    env
}

/// `rbuild run --rm busybox:1.35 echo hi` prints hi and leaves nothing behind.
#[test]
fn run_rm_busybox_echo_prints_hi() {
    let env = env_with_busybox();
    let out = env
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "echo", "hi"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout, "hi\n", "{stderr}");
    assert_eq!(out.status.code(), Some(0));
    let left = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .count();
    assert_eq!(left, 1, "only the registry lock file remains");
    // No container holds the image, so it can be removed.
    let out = env.rbuild().args(["rmi", "busybox:1.35"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

/// The command's exit code is rbuild's; death by a signal gives 128 + n; a missing command
/// gives 127.
#[test]
fn exit_codes_pass_through() {
    let env = env_with_busybox();
    let code = |args: &[&str]| {
        env.rbuild()
            .args(["run", "--rm", "busybox:1.35"])
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(code(&["sh", "-c", "exit 42"]).status.code(), Some(42));
    assert_eq!(code(&["sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    let out = code(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out).1.contains("executable file not found in $PATH"));
    // A relative `-w` is a usage error, as with docker.
    let out = env
        .rbuild()
        .args(["run", "--rm", "-w", "rel", "busybox:1.35", "pwd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("needs to be an absolute path"));
}

/// The image's Cmd and Env apply by default (Cmd `sh` reads the script from stdin); `-e`,
/// `-w`, `-u` and `--entrypoint` override them.
#[test]
fn image_config_and_overrides_apply() {
    let env = env_with_busybox();
    let out = env
        .rbuild()
        .args(["run", "-i", "--rm", "busybox:1.35"])
        .write_stdin("echo $PATH; echo from-stdin\n")
        .output()
        .unwrap();
    assert_eq!(
        text(&out).0,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nfrom-stdin\n"
    );
    let out = env
        .rbuild()
        .args(["run", "--rm", "-e", "FOO=bar", "-w", "/x/y", "-u", "nobody"])
        .args(["busybox:1.35", "sh", "-c", "echo $FOO; pwd; id -u; id -g"])
        .output()
        .unwrap();
    assert_eq!(
        text(&out).0,
        "bar\n/x/y\n65534\n65534\n",
        "{:?}",
        text(&out)
    );
    let out = env
        .rbuild()
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/echo",
            "busybox:1.35",
            "-n",
            "a",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "a b");
    let out = env
        .rbuild()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "busybox:1.35",
            "ls",
            "/sys/class/net",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "lo\n");
}

/// Without `--rm` the container's writable layer is kept and the image counts as in use.
#[test]
fn containers_without_rm_are_kept_and_hold_their_image() {
    let env = env_with_busybox();
    let out = env
        .rbuild()
        .args([
            "run",
            "--name",
            "keeper",
            "busybox:1.35",
            "sh",
            "-c",
            "echo kept > /f",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let dirs: Vec<_> = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        std::fs::read_to_string(dirs[0].join("upper/f")).unwrap(),
        "kept\n"
    );
    let record = std::fs::read_to_string(dirs[0].join("container.json")).unwrap();
    assert!(record.contains("\"name\": \"keeper\""), "{record}");
    let out = env.rbuild().args(["rmi", "busybox:1.35"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("used by container"),
        "{:?}",
        text(&out)
    );
    let out = env
        .rbuild()
        .args(["run", "--name", "keeper", "busybox:1.35", "true"])
        .output()
        .unwrap();
    assert!(text(&out).1.contains("already in use"), "{:?}", text(&out));
}

/// Killing rbuild (SIGTERM; Ctrl-C's SIGINT acts the same) kills the container's processes
/// and leaves no mount behind; the abandoned `--rm` container is cleaned by the next run.
#[test]
fn interrupting_rbuild_takes_the_container_down() {
    let env = env_with_busybox();
    for sig in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
        let marker = format!("sleep 98{}", sig.as_raw());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(env.root())
            .args(["run", "--rm", "busybox:1.35", "sh", "-c"])
            .arg(format!("{marker} & wait"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while processes_matching(&marker) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the container never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        child.wait().unwrap();
        let killed = Instant::now();
        while processes_matching(&marker) > 0 {
            assert!(
                killed.elapsed() < Duration::from_secs(5),
                "{marker} outlived rbuild"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&*env.root().to_string_lossy()),
            "{mountinfo}"
        );
    }
    let out = env
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dirs = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, 0, "abandoned --rm containers are removed");
}

/// A non-root user without subordinate ids gets an error that says what is missing, not a
/// half-started sandbox.
#[test]
fn non_root_users_get_a_clear_error() {
    let env = TestEnv::new();
    let root = env.root().join("nobody-store");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(env.root(), Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(&root)
            .args(args)
            .env("NO_COLOR", "1")
            // One line per sentence: the assertions below look for words a wrap could split.
            .env("COLUMNS", "1000")
            .output()
            .unwrap()
    };
    let archive = shared_dir().join("images/busybox-1.35.oci.tar");
    // nobody has no subordinate ids: every store command stops before any work, naming the
    // user, the file and the fix (rootless.rs covers a user who has them).
    for args in [
        &["load", "-i", archive.to_str().unwrap()][..],
        &["run", "--rm", "busybox:1.35", "true"],
    ] {
        let out = as_nobody(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {:?}", text(&out));
        let stderr = text(&out).1;
        assert!(
            stderr.contains("`/etc/subuid` has no range for `nobody` (uid 65534)"),
            "{stderr}"
        );
        assert!(stderr.contains("usermod --add-subuids"), "{stderr}");
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "nothing was written to the store"
        );
    }
}

//! The sandbox's promises, through the real binary as root, for RUN and `rbuild run`: host
//! devices cannot be opened (a loop device over a file the test made stays untouched),
//! Docker's default capabilities and a seccomp filter apply (`unshare -U` fails), and the
//! `--allow` entitlements gate `RUN --network=host` and `RUN --security=insecure`, which
//! lifts the confinement for its own step only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::{TestEnv, load_busybox, run_ok, text, tool, write_file};

/// Docker's default capability set, as /proc/self/status shows it.
pub(crate) const DOCKER_CAPS: &str = "00000000a80425fb";

/// A loop device over a file holding a canary; detached on drop.
struct Loop {
    device: PathBuf,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

const CANARY: &[u8] = b"HOST-CANARY-5d1e";

impl Loop {
    fn new() -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        let mut data = CANARY.to_vec();
        data.resize(1 << 20, 0);
        std::fs::write(&file, &data).unwrap();
        let out = run_ok(tool("losetup").arg("-f").arg("--show").arg(&file));
        Loop {
            device: PathBuf::from(out.trim()),
            file,
            _dir: dir,
        }
    }

    /// `MAJOR MINOR` of the device.
    fn numbers(&self) -> (u64, u64) {
        let rdev = std::fs::metadata(&self.device).unwrap().rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        (major, minor)
    }

    fn untouched(&self) -> bool {
        std::fs::read(&self.file).unwrap()[..CANARY.len()] == *CANARY
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.device)
            .status();
    }
}

/// A script that makes block-device nodes for the loop device in the rootfs, /dev and
/// /dev/shm and tries to read and write each; prints `READ`/`WROTE` on success.
fn device_script(major: u64, minor: u64) -> String {
    let mut s = String::new();
    for node in ["/d", "/dev/d", "/dev/shm/d", "/tmp/d"] {
        s.push_str(&format!(
            "mknod {node} b {major} {minor} && echo made; \
             head -c 16 {node} 2>/dev/null | grep -q CANARY && echo READ-{node}; \
             (echo pwned > {node}) 2>/dev/null && echo WROTE-{node}; "
        ));
    }
    s.push_str("echo x > /dev/null && echo null-ok");
    s
}

fn build(env: &TestEnv, dir: &Path, extra: &[&str]) -> std::process::Output {
    env.rbuild()
        .args(["build", "--progress", "plain", "--no-cache"])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap()
}

/// mknod succeeds (as in docker) but the node cannot be opened, in RUN and in `rbuild run`,
/// wherever it is made; the host's device is untouched and /dev/null still works.
#[test]
fn host_devices_cannot_be_opened_from_run_or_rbuild_run() {
    let env = TestEnv::new();
    load_busybox(&env);
    let lo = Loop::new();
    let (major, minor) = lo.numbers();
    let script = device_script(major, minor);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        &format!("FROM busybox:1.35\nRUN {script}\n"),
    );
    let out = build(&env, ctx.path(), &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        step_lines(&stderr, 1),
        ["made", "made", "made", "made", "null-ok"]
    );
    assert!(lo.untouched());

    let out = env
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "sh", "-c", &script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "made\nmade\nmade\nmade\nnull-ok\n");
    assert!(lo.untouched());
}

pub(crate) const STATUS_SCRIPT: &str = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Seccomp|NoNewPrivs):' /proc/self/status; \
     unshare -U true 2>/dev/null && echo unshared || echo no-unshare; \
     chroot / true && echo chroot-ok; \
     echo oom_score_adj=$(cat /proc/self/oom_score_adj)";

/// The lines of the status script, tab-separated as the kernel prints them.
pub(crate) fn expected_status(caps: &str, seccomp: u8, unshare: &str) -> Vec<String> {
    vec![
        "CapInh:\t0000000000000000".into(),
        format!("CapPrm:\t{caps}"),
        format!("CapEff:\t{caps}"),
        format!("CapBnd:\t{caps}"),
        "CapAmb:\t0000000000000000".into(),
        "NoNewPrivs:\t0".into(),
        format!("Seccomp:\t{seccomp}"),
        unshare.into(),
        "chroot-ok".into(),
        // The helper and init are shielded from the OOM killer; the step is not.
        "oom_score_adj=0".into(),
    ]
}

/// Lines a RUN step printed (`#N 0.123 text` in plain progress), in order.
fn step_lines(stderr: &str, step: usize) -> Vec<String> {
    let prefix = format!("#{step} ");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (time, rest) = l.split_once(' ')?;
            time.parse::<f64>().ok().map(|_| rest.to_string())
        })
        .filter(|l| !l.starts_with("Seccomp_filters"))
        .collect()
}

/// RUN and `rbuild run` have exactly Docker's default capabilities (none inheritable or
/// ambient), a seccomp filter without no_new_privs, and cannot create a user namespace.
#[test]
fn steps_get_dockers_capabilities_and_seccomp_filter() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        &format!("FROM busybox:1.35\nRUN {STATUS_SCRIPT}\n"),
    );
    let out = build(&env, ctx.path(), &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        step_lines(&stderr, 1),
        expected_status(DOCKER_CAPS, 2, "no-unshare")
    );

    let out = env
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "sh", "-c", STATUS_SCRIPT])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with("Seccomp_filters"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines, expected_status(DOCKER_CAPS, 2, "no-unshare"));
}

/// Without `--allow`, a RUN asking for the host network or for no confinement fails before
/// anything runs, pointing at its flag.
#[test]
fn entitlements_are_required_and_errors_point_at_the_flag() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    for (flag, entitlement) in [
        ("--network=host", "network.host"),
        ("--security=insecure", "security.insecure"),
    ] {
        write_file(
            ctx.path(),
            "Dockerfile",
            &format!("FROM busybox:1.35\nRUN echo first-step-ran\nRUN {flag} true\n"),
        );
        let out = build(&env, ctx.path(), &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("entitlement {entitlement} is not allowed")),
            "{stderr}"
        );
        assert!(stderr.contains("Dockerfile:3:5]"), "{stderr}");
        let caret = format!("    {}", "^".repeat(flag.len() / 2));
        assert!(
            stderr.contains(&caret),
            "the label spans the flag: {stderr}"
        );
        assert!(
            stderr.contains(&format!("--allow {entitlement}")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("#1 [") && step_lines(&stderr, 1).is_empty(),
            "nothing ran: {stderr}"
        );
        // Another entitlement does not do.
        let other = if entitlement == "network.host" {
            "security.insecure"
        } else {
            "network.host"
        };
        let out = build(&env, ctx.path(), &["--allow", other]);
        assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    }
}

/// `RUN --security=insecure` with `--allow security.insecure` has every capability rbuild
/// has, no seccomp filter and device access (the host's loop devices, as BuildKit); the next
/// step is confined again.
#[test]
fn insecure_steps_are_unconfined_and_only_them() {
    let env = TestEnv::new();
    load_busybox(&env);
    let own_caps = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t").map(str::to_string))
        .unwrap();
    let lo = Loop::new();
    let devices = format!(
        "rm -f /tmp/n; mknod /tmp/n c 1 3 && (echo x > /tmp/n) 2>/dev/null && echo dev-ok \
         || echo dev-denied; head -c 16 {} 2>/dev/null | grep -q CANARY \
         && echo host-loop-readable || echo no-host-loop",
        lo.device.display()
    );
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM busybox:1.35\nRUN --security=insecure {STATUS_SCRIPT}; {devices}\n\
             RUN {STATUS_SCRIPT}; {devices}\n"
        ),
    );
    let out = build(&env, ctx.path(), &["--allow", "security.insecure"]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let mut insecure = expected_status(&own_caps, 0, "unshared");
    insecure[0] = step_lines(&stderr, 1)[0].clone(); // CapInh is whatever rbuild's is
    insecure.push("dev-ok".into());
    insecure.push("host-loop-readable".into());
    assert_eq!(step_lines(&stderr, 1), insecure);
    let mut confined = expected_status(DOCKER_CAPS, 2, "no-unshare");
    confined.push("dev-denied".into());
    confined.push("no-host-loop".into());
    assert_eq!(step_lines(&stderr, 2), confined);
}

/// A server on the host's loopback answering every connection with `reply`.
fn loopback_server(reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(reply.as_bytes());
            let mut sink = [0u8; 64];
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(100)));
            let _ = conn.read(&mut sink);
        }
    });
    port
}

/// `build --network none` with `RUN --network=host`: refused without `--allow network.host`;
/// with it, the step reaches a server on the host's loopback (the RUN's choice wins, as in
/// BuildKit), while a step without the flag still has no network.
#[test]
fn network_host_needs_the_entitlement_and_then_reaches_the_host() {
    let env = TestEnv::new();
    load_busybox(&env);
    let port = loopback_server("pong-81c2\n");
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM busybox:1.35\nRUN --network=host nc 127.0.0.1 {port} </dev/null | grep pong\n\
             RUN nc 127.0.0.1 {port} </dev/null || echo no-network\n"
        ),
    );
    let out = build(&env, ctx.path(), &["--network", "none"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("entitlement network.host is not allowed"),
        "{stderr}"
    );
    assert!(!stderr.contains("pong-81c2"), "{stderr}");

    let out = build(
        &env,
        ctx.path(),
        &["--network", "none", "--allow", "network.host"],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(step_lines(&stderr, 1), ["pong-81c2"]);
    assert!(
        step_lines(&stderr, 2).contains(&"no-network".to_string()),
        "{stderr}"
    );
}

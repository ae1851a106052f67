//! Hostile and accidental inputs the CLI must survive (issue 12 §3, §4, §6): bounded variable
//! expansion, capped Dockerfile and `.dockerignore` reads, outputs that never replace devices
//! or write into the store, prompts before destructive commands. Each runs the real binary.

use crate::support::{self, TestEnv, text, write_file};
use std::path::Path;
use std::time::{Duration, Instant};

/// A Dockerfile whose ARGs double in size on every line, 40 times.
fn doubling_dockerfile() -> String {
    let mut df = String::from("ARG a0=xxxxxxxx\n");
    for i in 1..=40 {
        df.push_str(&format!("ARG a{i}=${{a{}}}${{a{}}}\n", i - 1, i - 1));
    }
    df.push_str("FROM scratch\nARG a40\nENV big=$a40\n");
    df
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "Dockerfile", dockerfile);
    ctx
}

/// Asserts a quick failure with exit code 1, no panic; returns stderr.
#[track_caller]
fn fails_fast(cmd: &mut assert_cmd::Command) -> String {
    let start = Instant::now();
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    stderr
}

// ---- §3 bounded inputs -------------------------------------------------------------------------

/// `build`, `plan`, `explain` and `check` all stop at the line whose expansion crosses the
/// per-word bound (4 MiB: `a20` is 8 MiB, line 21), with a pointed report; the bound is
/// overridable by the environment.
#[test]
fn exponential_args_fail_at_the_crossing_line() {
    let env = TestEnv::new();
    let ctx = context(&doubling_dockerfile());
    for cmd in [&["build", "."][..], &["plan", "."], &["explain", "."]] {
        let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(cmd));
        assert!(
            stderr.contains("rbuild::plan::expansion_too_large"),
            "{stderr}"
        );
        assert!(stderr.contains("[Dockerfile:21:9]"), "{cmd:?}: {stderr}");
        assert!(stderr.contains("RBUILD_EXPANSION_LIMIT"), "{stderr}");
    }
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["check", "Dockerfile"]),
    );
    assert!(
        stderr.contains("rbuild::parse::expansion_too_large"),
        "{stderr}"
    );
    assert!(stderr.contains("[Dockerfile:21:9]"), "{stderr}");
    assert!(stderr.contains("1 error"), "{stderr}");

    // A lower bound (1 KiB: a8 is 2 KiB, line 9) fails earlier.
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .env("RBUILD_EXPANSION_LIMIT", "1KiB")
            .args(["plan", "."]),
    );
    assert!(stderr.contains("[Dockerfile:9:8]"), "{stderr}");
    // And the total per build: 200 values of 1 KiB against a 100 KiB budget.
    let mut df = String::from("FROM scratch\nENV k=");
    df.push_str(&"k".repeat(1000));
    df.push('\n');
    for i in 0..200 {
        df.push_str(&format!("ENV c{i}=$k\n"));
    }
    let ctx = context(&df);
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .env("RBUILD_EXPANSION_TOTAL", "100KiB")
            .args(["plan", "."]),
    );
    assert!(stderr.contains("in total"), "{stderr}");
    assert!(stderr.contains("RBUILD_EXPANSION_TOTAL"), "{stderr}");
}

/// `-f /dev/zero` stops at the size cap; a file of NULs just under it gives a short report
/// (the snippet is cut, the message quotes a bounded part of the word).
#[test]
fn dockerfile_reads_are_capped_and_reports_stay_short() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\n");
    let stderr =
        fails_fast(
            env.rbuild()
                .current_dir(ctx.path())
                .args(["build", "-f", "/dev/zero", "."]),
        );
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");
    let stderr = fails_fast(env.rbuild().args(["check", "/dev/zero"]));
    assert!(stderr.contains("larger than 4 MiB"), "{stderr}");

    let nul = ctx.path().join("nul.df");
    std::fs::write(&nul, vec![0u8; 4_000_000]).unwrap();
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["build", "-f", "nul.df", "."]),
    );
    assert!(stderr.contains("NUL byte"), "{stderr}");
    assert!(
        stderr.len() < 20_000,
        "{} bytes of diagnostics",
        stderr.len()
    );
    let stderr = fails_fast(env.rbuild().arg("check").arg(&nul));
    assert!(
        stderr.len() < 20_000,
        "{} bytes of diagnostics",
        stderr.len()
    );

    // Thousands of errors: only the first ones are printed, the count names them all.
    let mut many = String::from("FROM scratch\n");
    for _ in 0..5000 {
        many.push_str("BAD x\n");
    }
    std::fs::write(ctx.path().join("many.df"), &many).unwrap();
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["check", "many.df"]),
    );
    assert!(
        stderr.contains("5000 errors"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
    assert!(
        stderr.contains("and 4950 more"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
    assert!(
        stderr.len() < 50_000,
        "{} bytes of diagnostics",
        stderr.len()
    );
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["build", "-f", "many.df", "."]),
    );
    assert!(
        stderr.contains("and 4950 more"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
    let stderr = fails_fast(
        env.rbuild()
            .current_dir(ctx.path())
            .args(["parse", "many.df"]),
    );
    assert!(
        stderr.contains("and 4950 more"),
        "{}",
        &stderr[stderr.len() - 300..]
    );
}

/// A Dockerfile-specific ignore file that is a symlink to `/dev/zero` is refused (not a
/// regular file), and one larger than the cap is refused at the cap.
#[test]
fn dockerignore_reads_are_capped() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    let ignore = ctx.path().join("Dockerfile.dockerignore");
    std::os::unix::fs::symlink("/dev/zero", &ignore).unwrap();
    let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(["build", "."]));
    assert!(stderr.contains("not a regular file"), "{stderr}");
    std::fs::remove_file(&ignore).unwrap();
    std::fs::write(&ignore, "#".repeat(5 << 20)).unwrap();
    let stderr = fails_fast(env.rbuild().current_dir(ctx.path()).args(["build", "."]));
    assert!(stderr.contains("the limit for an ignore file"), "{stderr}");
    assert_fsck(&env);
}

/// `rbuild fsck` finds the store sound.
#[track_caller]
fn assert_fsck(env: &TestEnv) {
    if !env.root().join("index.json").exists() {
        return;
    }
    let out = env.rbuild().args(["system", "fsck"]).output().unwrap();
    assert!(out.status.success(), "fsck: {:?}", text(&out));
}

// ---- §4 outputs never destroy anything ---------------------------------------------------------

fn loaded() -> TestEnv {
    let env = TestEnv::new();
    support::load_busybox(&env);
    env
}

fn file_type(p: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(p).unwrap().file_type()
}

/// `save -o /dev/full` writes into the device (and fails: the device is full) without
/// replacing the host's `/dev/full`; `/dev/stdout`, a FIFO and a symlink the user named are
/// written through; the store still passes fsck.
#[test]
fn save_writes_through_devices_fifos_and_symlinks() {
    use std::os::unix::fs::FileTypeExt;
    let env = loaded();
    let out = env
        .rbuild()
        .args(["save", "-o", "/dev/full", "busybox:1.35"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("No space left"), "{:?}", text(&out));
    assert!(
        file_type(Path::new("/dev/full")).is_char_device(),
        "/dev/full was replaced"
    );

    // `/dev/stdout` when stdout is a pipe: the archive comes through the pipe.
    let out = env
        .rbuild()
        .args(["save", "-o", "/dev/stdout", "busybox:1.35"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(out.stdout.len() > 100_000, "{} bytes", out.stdout.len());

    // A named pipe stays a pipe; the reader gets the archive.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    support::run_ok(std::process::Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap().len())
    };
    env.rbuild()
        .args(["save", "-o"])
        .arg(&fifo)
        .arg("busybox:1.35")
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    // Checked before joining: a replaced FIFO would leave the reader waiting forever.
    assert!(file_type(&fifo).is_fifo(), "the FIFO was replaced");
    assert!(reader.join().unwrap() > 100_000);

    // A symlink the user named is followed: the link stays, its target gets the archive.
    let target = dir.path().join("real.tar");
    let link = dir.path().join("link.tar");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink("real.tar", &link).unwrap();
    env.rbuild()
        .args(["save", "-o"])
        .arg(&link)
        .arg("busybox:1.35")
        .assert()
        .success();
    assert!(file_type(&link).is_symlink(), "the symlink was replaced");
    assert!(std::fs::metadata(&target).unwrap().len() > 100_000);
    assert_fsck(&env);
}

/// No output may land in the store: `save -o $ROOT/index.json` (directly, through a
/// symlinked parent, or through a symlink), into `blobs/` or as a hidden name is refused
/// and the store stays sound; so are build outputs, `--iidfile` and `--metadata-file` there,
/// and a directory output holding the store. A name the store does not own (`$ROOT/new.tar`)
/// is the user's and is written, leaving the store sound.
#[test]
fn outputs_inside_the_store_are_refused() {
    let env = loaded();
    let root = env.root().to_path_buf();
    let index = std::fs::read(root.join("index.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&root, dir.path().join("store-link")).unwrap();
    std::os::unix::fs::symlink(root.join("index.json"), dir.path().join("index-link")).unwrap();
    for dest in [
        root.join("index.json"),
        root.join("blobs/sha256/new.tar"),
        root.join(".new.tar"),
        dir.path().join("store-link/index.json"),
        dir.path().join("index-link"),
    ] {
        let out = env
            .rbuild()
            .args(["save", "-o"])
            .arg(&dest)
            .arg("busybox:1.35")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{dest:?}: {:?}", text(&out));
        assert!(
            text(&out).1.contains("rbuild::output::in_store"),
            "{:?}",
            text(&out)
        );
    }
    assert_eq!(std::fs::read(root.join("index.json")).unwrap(), index);
    assert!(!root.join("blobs/sha256/new.tar").exists());
    assert_fsck(&env);
    env.rbuild()
        .args(["save", "-o"])
        .arg(root.join("new.tar"))
        .arg("busybox:1.35")
        .assert()
        .success();
    assert!(std::fs::metadata(root.join("new.tar")).unwrap().len() > 100_000);
    assert_eq!(std::fs::read(root.join("index.json")).unwrap(), index);
    assert_fsck(&env);

    let ctx = context("FROM busybox:1.35\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    let flag = |f: &str, p: &Path| format!("{f}={}", p.display());
    for extra in [
        vec![
            "-o".to_string(),
            format!("type=tar,dest={}", root.join("tmp/x.tar").display()),
        ],
        vec![
            "-o".to_string(),
            format!("type=oci,dest={}", root.join("index.json").display()),
        ],
        vec![
            "-o".to_string(),
            format!("type=local,dest={}", root.join("blobs").display()),
        ],
        vec![
            "-o".to_string(),
            format!("type=local,dest={}", root.parent().unwrap().display()),
        ],
        vec![flag("--iidfile", &root.join("index.json"))],
        vec![flag("--metadata-file", &root.join("index.json"))],
    ] {
        let out = env
            .rbuild()
            .current_dir(ctx.path())
            .args(["build", "--progress", "plain"])
            .args(&extra)
            .arg(".")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {:?}", text(&out));
        let stderr = text(&out).1;
        assert!(stderr.contains("the image store"), "{extra:?}: {stderr}");
        assert_eq!(
            std::fs::read(root.join("index.json")).unwrap(),
            index,
            "{extra:?}"
        );
        assert_fsck(&env);
    }
    assert!(!root.join("x.tar").exists());
}

/// `--iidfile /dev/stdout` writes through; `--iidfile` through a symlink follows it.
#[test]
fn iidfile_writes_through_devices_and_symlinks() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    let out = env
        .rbuild()
        .current_dir(ctx.path())
        .args(["build", "-q", "--iidfile", "/dev/stderr", "."])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(stdout.trim()), "{stdout} / {stderr}");
    let link = ctx.path().join("iid");
    std::os::unix::fs::symlink("iid.real", &link).unwrap();
    env.rbuild()
        .current_dir(ctx.path())
        .args([
            "build",
            "-q",
            "--iidfile",
            "iid",
            "--metadata-file",
            "/dev/null",
            ".",
        ])
        .assert()
        .success();
    assert!(file_type(&link).is_symlink());
    let id = std::fs::read_to_string(ctx.path().join("iid.real")).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
}

/// `--root` on a non-empty directory that is not a store is refused, untouched (mode kept).
#[test]
fn root_on_a_foreign_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "notes.txt", "mine\n");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = support::rbuild()
        .arg("--root")
        .arg(dir.path())
        .arg("images")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("is not an rbuild store"),
        "{:?}",
        text(&out)
    );
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    assert!(!dir.path().join("index.json").exists());
    // An empty directory and an existing store are fine.
    let empty = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        support::rbuild()
            .arg("--root")
            .arg(empty.path())
            .arg("images")
            .assert()
            .success();
    }
}

/// `prune -a` asks even when stdin is not a terminal: `n` (or no answer) keeps everything,
/// `y` proceeds, `-f` does not ask.
#[test]
fn prune_asks_before_removing() {
    let env = loaded();
    for (answer, kept) in [("n\n", true), ("", true), ("yes\n", false)] {
        let out = env
            .rbuild()
            .args(["prune", "-a"])
            .write_stdin(answer)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        assert!(
            text(&out)
                .1
                .contains("Are you sure you want to continue? [y/N]"),
            "{:?}",
            text(&out)
        );
        let images = env.rbuild().arg("images").output().unwrap();
        assert_eq!(
            text(&images).0.contains("busybox"),
            kept,
            "answer {answer:?}"
        );
    }
    support::load_busybox(&env);
    let out = env
        .rbuild()
        .args(["system", "prune", "-a", "-f"])
        .output()
        .unwrap();
    assert!(!text(&out).1.contains("Are you sure"), "{:?}", text(&out));
    let images = env.rbuild().arg("images").output().unwrap();
    assert!(!text(&images).0.contains("busybox"));
    assert_fsck(&env);
}

// ---- §6 smaller ----------------------------------------------------------------------------------

/// A FIFO in the build context is skipped with the documented warning (and never opened: the
/// build does not block on it).
#[test]
fn fifo_in_the_context_is_skipped_with_a_warning() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY . /ctx/\n");
    write_file(ctx.path(), "a", "a\n");
    support::run_ok(std::process::Command::new("mkfifo").arg(ctx.path().join("pipe")));
    let out = env
        .rbuild()
        .current_dir(ctx.path())
        .args(["build", "--progress", "plain", "-t", "fifo", "."])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: `pipe`: skipped fifo: special files are not part of the build context"
        ),
        "{stderr}"
    );
}

/// A `--secret` whose file is missing fails before the build starts, even when the step that
/// mounts it is cached, with a hint about the flag.
#[test]
fn missing_secret_file_is_reported_before_the_build() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    write_file(ctx.path(), "tok", "secret\n");
    env.rbuild()
        .current_dir(ctx.path())
        .args(["build", "--secret", "id=tok,src=tok", "."])
        .assert()
        .success();
    let out = env
        .rbuild()
        .current_dir(ctx.path())
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=tok,src=nope",
            ".",
        ])
        .output()
        .unwrap();
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read the file of `--secret id=tok,src=nope`"),
        "{stderr}"
    );
    assert!(stderr.contains("src="), "{stderr}");
    assert!(!stderr.contains("#1"), "the build started: {stderr}");
}

/// `ADD https://…` trusts the CA that `SSL_CERT_FILE` names (as pull and push do): a local
/// HTTPS server whose certificate a test CA signed serves the file; without that CA the
/// download fails with a hint about SSL_CERT_FILE.
#[test]
fn add_https_uses_the_registry_transport_and_its_ca_store() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        support::run_ok(support::tool("openssl").current_dir(d).args(args));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=rbuild test CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    std::fs::create_dir(d.join("www")).unwrap();
    std::fs::write(d.join("www/hello.txt"), "hello over tls\n").unwrap();
    let server = "import http.server, ssl, sys, functools\n\
        h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='www')\n\
        s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
        c.load_cert_chain('srv.crt', 'srv.key')\n\
        s.socket = c.wrap_socket(s.socket, server_side=True)\n\
        print(s.server_address[1], flush=True)\n\
        s.serve_forever()\n";
    let mut child = support::tool("python3")
        .current_dir(d)
        .args(["-c", server])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://127.0.0.1:{}/hello.txt", port.trim());

    let env = TestEnv::new();
    let ctx = context(&format!("FROM scratch\nADD {url} /hello.txt\n"));
    let build = |ca: Option<&Path>| {
        let mut cmd = env.rbuild();
        cmd.current_dir(ctx.path())
            .args([
                "build",
                "--progress",
                "plain",
                "-o",
                "type=local,dest=out",
                ".",
            ])
            .env("NO_PROXY", "127.0.0.1")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .timeout(Duration::from_secs(120));
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        cmd.output().unwrap()
    };
    let untrusted = build(None);
    let with_ca = build(Some(&d.join("ca.crt")));
    let _ = child.kill();
    let _ = child.wait();
    let stderr = text(&untrusted).1;
    assert_eq!(untrusted.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");
    let stderr = text(&with_ca).1;
    assert!(with_ca.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("out/hello.txt")).unwrap(),
        "hello over tls\n"
    );
}

/// Build outputs use the same helper: `-o type=tar,dest=FIFO` and `type=oci,dest=FIFO` write
/// into the pipe, which stays a pipe.
#[test]
fn build_outputs_write_through_fifos() {
    use std::os::unix::fs::FileTypeExt;
    let env = TestEnv::new();
    let ctx = context("FROM scratch\nCOPY a /a\n");
    write_file(ctx.path(), "a", "a\n");
    for kind in ["tar", "oci"] {
        let fifo = ctx.path().join(format!("{kind}.pipe"));
        support::run_ok(std::process::Command::new("mkfifo").arg(&fifo));
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let out = env
            .rbuild()
            .current_dir(ctx.path())
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type={kind},dest={}", fifo.display()))
            .arg(".")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind}: {:?}", text(&out));
        // Checked before joining: a replaced FIFO would leave the reader waiting forever.
        assert!(file_type(&fifo).is_fifo(), "{kind}: the FIFO was replaced");
        let bytes = reader.join().unwrap();
        assert!(bytes.len() >= 1024, "{kind}: {} bytes", bytes.len());
    }
}

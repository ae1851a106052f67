//! Where the main build context comes from (issue 16): a git URL served by a git server the
//! test starts on 127.0.0.1 (`git daemon` for `git://`, `git http-backend` behind a small
//! Python HTTP server for smart HTTP), `ADD <git URL>` with and without `--keep-git-dir`,
//! a Dockerfile on stdin (no context), a tar archive of the context on stdin (plain and
//! compressed), and hostile archives, which stay inside their directory.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::host::HostGuard;
use crate::support::{TestEnv, load_busybox, run_ok, text, tool, write_file};

/// `git` with a fixed identity and dates, and no user or system configuration.
fn git(dir: &Path) -> Command {
    let mut cmd = tool("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A repository `repo.git` under a served directory, and the server (killed on drop).
struct GitServer {
    base: tempfile::TempDir,
    work: PathBuf,
    child: Child,
    port: u16,
    /// Commits by name: `one` (tag `v1`, annotated `v1-annotated`), `two` (branch `main`).
    commits: Vec<(String, String)>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PY_HTTP_BACKEND: &str = r#"
import http.server, os, subprocess, sys
base, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.cgi()
    def do_POST(self): self.cgi()
    def cgi(self):
        path, _, query = self.path.partition('?')
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else b''
        env = {'GIT_PROJECT_ROOT': base, 'GIT_HTTP_EXPORT_ALL': '1', 'PATH_INFO': path,
               'QUERY_STRING': query, 'REQUEST_METHOD': self.command,
               'CONTENT_TYPE': self.headers.get('Content-Type', ''),
               'CONTENT_LENGTH': str(len(body)), 'PATH': os.environ['PATH'],
               'GIT_CONFIG_NOSYSTEM': '1', 'HOME': '/nonexistent'}
        for h in ('Content-Encoding', 'Git-Protocol'):
            if self.headers.get(h):
                env['HTTP_' + h.upper().replace('-', '_')] = self.headers[h]
        out = subprocess.run(['git', 'http-backend'], input=body, env=env,
                             capture_output=True).stdout
        head, _, rest = out.partition(b'\r\n\r\n')
        status, headers = 200, []
        for line in head.split(b'\r\n'):
            k, _, v = line.decode().partition(':')
            if k.lower() == 'status':
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
"#;

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Git,
    Http,
}

impl GitServer {
    /// Two commits: `one` has `app/Dockerfile`, `app/hello` (executable) and `top.txt`;
    /// `two` changes `app/hello`. `Dockerfile` at the root copies the whole context.
    fn start(protocol: Protocol) -> GitServer {
        let base = tempfile::tempdir().unwrap();
        let work = base.path().join("work");
        std::fs::create_dir(&work).unwrap();
        run_ok(git(base.path()).args(["init", "-q", "--bare", "-b", "main", "repo.git"]));
        run_ok(git(&work).args(["init", "-q", "-b", "main"]));
        write_file(
            &work,
            "Dockerfile",
            "FROM busybox:1.35\nCOPY . /ctx\nRUN cat /ctx/app/hello\n",
        );
        write_file(&work, "app/Dockerfile", "FROM busybox:1.35\nCOPY . /ctx\n");
        write_file(&work, "app/hello", "one\n");
        std::fs::set_permissions(
            work.join("app/hello"),
            std::fs::Permissions::from_mode(0o775),
        )
        .unwrap();
        write_file(&work, "top.txt", "top\n");
        run_ok(git(&work).args(["add", "-A"]));
        run_ok(git(&work).args(["commit", "-qm", "one"]));
        run_ok(git(&work).args(["tag", "v1"]));
        run_ok(git(&work).args(["tag", "-a", "v1-annotated", "-m", "annotated"]));
        let one = run_ok(git(&work).args(["rev-parse", "HEAD"]))
            .trim()
            .to_string();
        write_file(&work, "app/hello", "two\n");
        run_ok(git(&work).args(["commit", "-qam", "two"]));
        let two = run_ok(git(&work).args(["rev-parse", "HEAD"]))
            .trim()
            .to_string();
        let served = base.path().join("repo.git");
        run_ok(
            git(&work)
                .arg("push")
                .arg("-q")
                .arg(&served)
                .args(["main", "--tags"]),
        );
        run_ok(git(&served).args(["config", "http.receivepack", "false"]));
        let port = free_port();
        let child = match protocol {
            Protocol::Git => tool("git")
                .arg("daemon")
                .arg("--export-all")
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.path().display()))
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            Protocol::Http => tool("python3")
                .arg("-c")
                .arg(PY_HTTP_BACKEND)
                .arg(base.path())
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the git server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        GitServer {
            base,
            work,
            child,
            port,
            commits: vec![("one".into(), one), ("two".into(), two)],
        }
    }

    fn url(&self, protocol: Protocol, fragment: &str) -> String {
        let scheme = match protocol {
            Protocol::Git => "git",
            Protocol::Http => "http",
        };
        format!("{scheme}://127.0.0.1:{}/repo.git{fragment}", self.port)
    }

    fn commit(&self, name: &str) -> &str {
        &self.commits.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Commit a new `app/hello` on `main` and push it; returns the commit.
    fn push_change(&mut self, content: &str) -> String {
        write_file(&self.work, "app/hello", content);
        run_ok(git(&self.work).args(["commit", "-qam", content]));
        let served = self.base.path().join("repo.git");
        run_ok(
            git(&self.work)
                .arg("push")
                .arg("-q")
                .arg(&served)
                .arg("main"),
        );
        run_ok(git(&self.work).args(["rev-parse", "HEAD"]))
            .trim()
            .to_string()
    }
}

/// `rbuild build --progress plain ARGS` with `stdin` piped in (when given).
fn build(env: &TestEnv, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain"]).args(args);
    run_rbuild(cmd, stdin)
}

/// Run an `rbuild` command with `stdin` (or an empty stdin).
fn run_rbuild(mut cmd: assert_cmd::Command, stdin: Option<&[u8]>) -> Output {
    cmd.write_stdin(stdin.unwrap_or_default().to_vec());
    cmd.output().unwrap()
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The build may stop reading early (an error): a broken pipe is its answer.
        let _ = pipe.write_all(bytes);
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "build failed:\n{stdout}\n{stderr}");
    stderr
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn mode(dir: &Path, rel: &str) -> u32 {
    std::fs::symlink_metadata(dir.join(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn git_context_by_branch_subdir_tag_and_commit() {
    let env = TestEnv::new();
    load_busybox(&env);
    let server = GitServer::start(Protocol::Git);
    let out = tempfile::tempdir().unwrap();
    let dest = |name: &str| out.path().join(name);
    let one = server.commit("one").to_string();
    let cases = [
        ("main-sub", "#main:app", "two\n", false),
        ("tag", "#v1", "one\n", true),
        ("annotated", "#v1-annotated", "one\n", true),
        ("commit", &format!("#{one}"), "one\n", true),
        ("head", "", "two\n", true),
    ];
    for (name, fragment, hello, root) in &cases {
        let url = server.url(Protocol::Git, fragment);
        let output = format!("type=local,dest={}", dest(name).display());
        let stderr = ok(&build(&env, &["-o", &output, &url], None));
        assert!(stderr.contains("at commit"), "{name}: {stderr}");
        let ctx = dest(name).join("ctx");
        if *root {
            assert_eq!(read(&ctx, "app/hello"), *hello, "{name}");
            assert_eq!(read(&ctx, "top.txt"), "top\n", "{name}");
        } else {
            // The subdirectory is the context, and its Dockerfile the one built.
            assert_eq!(read(&ctx, "hello"), *hello, "{name}");
            assert!(!ctx.join("top.txt").exists(), "{name}");
        }
        assert!(
            !ctx.join(".git").exists(),
            "{name}: no .git without keep-git-dir"
        );
        // Modes as BuildKit's umask 022 checkout: 0755 executables, 0644 files.
        let hello_rel = if *root { "app/hello" } else { "hello" };
        assert_eq!(mode(&ctx, hello_rel), 0o755, "{name}");
        assert_eq!(mode(&ctx, "Dockerfile"), 0o644, "{name}");
    }
    // `-f` is relative to the repository's root; a missing ref says so.
    let output = format!("type=local,dest={}", dest("f").display());
    let url = server.url(Protocol::Git, "#v1");
    ok(&build(
        &env,
        &["-f", "app/Dockerfile", "-o", &output, &url],
        None,
    ));
    assert_eq!(read(&dest("f"), "ctx/app/hello"), "one\n");
    let missing = build(&env, &[&server.url(Protocol::Git, "#nope")], None);
    let (_, stderr) = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no ref `nope`"), "{stderr}");
    // Nothing is left in the store's temporary area.
    let tmp = env.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn git_context_over_smart_http_with_mtime_commit() {
    let env = TestEnv::new();
    load_busybox(&env);
    let server = GitServer::start(Protocol::Http);
    let out = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out.path().display());
    let url = server.url(Protocol::Http, "?branch=main&mtime=commit");
    ok(&build(&env, &["-o", &output, &url], None));
    assert_eq!(read(out.path(), "ctx/app/hello"), "two\n");
    // `mtime=commit`: the commit's time (GIT_COMMITTER_DATE) on every file.
    let mtime = std::fs::metadata(out.path().join("ctx/app/hello"))
        .unwrap()
        .mtime();
    assert_eq!(mtime, 1_700_000_000);
    // An http(s) URL without `.git` is not a git repository (BuildKit's rule).
    let plain = format!("http://127.0.0.1:{}/repo", server.port);
    let out = build(&env, &[&plain], None);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is not a directory"),
        "{}",
        text(&out).1
    );
}

#[test]
fn add_git_url_with_and_without_keep_git_dir() {
    let env = TestEnv::new();
    load_busybox(&env);
    let mut server = GitServer::start(Protocol::Git);
    let ctx = tempfile::tempdir().unwrap();
    let url = server.url(Protocol::Git, "#main");
    write_file(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM busybox:1.35\nADD {} /sub\nADD {url} /src\n\
             ADD --keep-git-dir {url} /kept\n",
            server.url(Protocol::Git, "#v1:app")
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out.path().display());
    let args = ["-o", output.as_str(), ctx.path().to_str().unwrap()];
    ok(&build(&env, &args, None));
    let o = out.path();
    assert_eq!(read(o, "src/app/hello"), "two\n");
    assert!(!o.join("src/.git").exists());
    assert_eq!(read(o, "sub/hello"), "one\n");
    assert_eq!(read(o, "kept/app/hello"), "two\n");
    // The kept repository: the commit checked out detached, origin set to the URL.
    assert_eq!(read(o, "kept/.git/HEAD").trim(), server.commit("two"));
    assert!(read(o, "kept/.git/config").contains(&server.url(Protocol::Git, "")));
    let meta = std::fs::symlink_metadata(o.join("src/app/hello")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(mode(o, "src/app/hello"), 0o755);
    assert_eq!(mode(o, "src/top.txt"), 0o644);
    // The key is the resolved commit: the same commit is a cache hit...
    let again = ok(&build(&env, &args, None));
    assert!(again.contains("3 cached, 0 built"), "{again}");
    // ...and a new commit on the branch rebuilds the two ADDs of it (the tag's is cached).
    let three = server.push_change("three\n");
    let changed = ok(&build(&env, &args, None));
    assert!(changed.contains("1 cached, 2 built"), "{changed}");
    assert_eq!(read(o, "src/app/hello"), "three\n");
    assert_eq!(read(o, "kept/.git/HEAD").trim(), three);
}

#[test]
fn git_sources_are_refused_where_buildkit_refuses_them() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    for (dockerfile, want) in [
        (
            "FROM scratch\nCOPY git://127.0.0.1:9/r.git /x\n",
            "source can't be a git ref for COPY",
        ),
        (
            "FROM scratch\nADD https://h/r.git?mtime=never /x\n",
            "invalid mtime value",
        ),
        (
            "FROM scratch\nADD --keep-git-dir=false git://h/r.git?keep-git-dir /x\n",
            "inconsistent keep-git-dir configuration",
        ),
    ] {
        write_file(ctx.path(), "Dockerfile", dockerfile);
        let out = build(&env, &[ctx.path().to_str().unwrap()], None);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{dockerfile}: {stderr}");
        assert!(stderr.contains(want), "{dockerfile}: {stderr}");
    }
    // An invalid git URL as the context is a usage error before anything runs.
    let out = build(&env, &["git://h/r.git?nope=1"], None);
    assert!(
        text(&out).1.contains("unexpected query `nope`"),
        "{}",
        text(&out).1
    );
}

#[test]
fn git_fetches_are_bounded_in_size() {
    let env = TestEnv::new();
    let server = GitServer::start(Protocol::Git);
    let mut cmd = env.rbuild();
    cmd.env("RBUILD_MAX_GIT_SIZE", "1")
        .args(["build", "--progress", "plain"])
        .arg(server.url(Protocol::Git, "#main"));
    let out = run_rbuild(cmd, None);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("RBUILD_MAX_GIT_SIZE"), "{stderr}");
    let tmp = env.root().join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn git_submodules_are_checked_out_and_local_ones_refused() {
    let env = TestEnv::new();
    load_busybox(&env);
    let server = GitServer::start(Protocol::Git);
    let base = server.base.path();
    let sub_work = base.join("sub-work");
    std::fs::create_dir(&sub_work).unwrap();
    run_ok(git(base).args(["init", "-q", "--bare", "-b", "main", "sub.git"]));
    run_ok(git(&sub_work).args(["init", "-q", "-b", "main"]));
    write_file(&sub_work, "lib.txt", "from the submodule\n");
    run_ok(git(&sub_work).args(["add", "-A"]));
    run_ok(git(&sub_work).args(["commit", "-qm", "lib"]));
    run_ok(
        git(&sub_work)
            .arg("push")
            .arg("-q")
            .arg(base.join("sub.git"))
            .arg("main"),
    );
    // `main`: a submodule served by the same server.
    let sub_url = format!("git://127.0.0.1:{}/sub.git", server.port);
    run_ok(git(&server.work).args(["submodule", "add", "-q", &sub_url, "lib"]));
    run_ok(git(&server.work).args(["commit", "-qm", "submodule"]));
    // `evil`: a submodule at a path on the machine that builds (a `file://` transport).
    run_ok(git(&server.work).args(["checkout", "-q", "-b", "evil"]));
    let local = base.join("sub.git");
    run_ok(
        git(&server.work)
            .args(["-c", "protocol.file.allow=always", "submodule", "add", "-q"])
            .arg(&local)
            .arg("evil"),
    );
    run_ok(git(&server.work).args(["commit", "-qm", "local submodule"]));
    run_ok(
        git(&server.work)
            .arg("push")
            .arg("-q")
            .arg(base.join("repo.git"))
            .args(["main", "evil"]),
    );
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out_dir.path().display());
    ok(&build(
        &env,
        &["-o", &output, &server.url(Protocol::Git, "#main")],
        None,
    ));
    assert_eq!(
        read(out_dir.path(), "ctx/lib/lib.txt"),
        "from the submodule\n"
    );
    // `?submodules=false` leaves the submodule's directory empty.
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out_dir.path().display());
    let url = server.url(Protocol::Git, "?branch=main&submodules=false");
    ok(&build(&env, &["-o", &output, &url], None));
    assert!(!out_dir.path().join("ctx/lib/lib.txt").exists());
    // A submodule on the local disk is not fetched.
    let out = build(&env, &[&server.url(Protocol::Git, "#evil")], None);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("git submodule"), "{stderr}");
    assert!(stderr.contains("'file' not allowed"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn dockerfile_on_stdin_without_a_context() {
    let env = TestEnv::new();
    load_busybox(&env);
    let out = build(
        &env,
        &["-t", "nocontext:1", "-"],
        Some(b"FROM busybox:1.35\nRUN echo from-stdin\n"),
    );
    assert!(ok(&out).contains("from-stdin"));
    // A step that reads the context fails, pointing at it.
    let out = build(
        &env,
        &["-"],
        Some(b"FROM busybox:1.35\nRUN true\nCOPY app /app\n"),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("this build has no context"), "{stderr}");
    assert!(
        stderr.contains("this step reads the build context"),
        "{stderr}"
    );
    // Both from stdin, or a Dockerfile on stdin and another with -f: refused.
    let out = build(&env, &["-f", "-", "-"], Some(b"FROM scratch\n"));
    assert!(text(&out).1.contains("cannot both come from stdin"));
    let out = build(&env, &["-f", "x", "-"], Some(b"FROM scratch\n"));
    assert!(text(&out).1.contains("stdin holds a Dockerfile"));
}

#[test]
fn dockerfile_on_stdin_with_a_directory_context() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(ctx.path(), "a.txt", "from the directory\n");
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out_dir.path().display());
    ok(&build(
        &env,
        &["-f", "-", "-o", &output, ctx.path().to_str().unwrap()],
        Some(b"FROM busybox:1.35\nCOPY a.txt /a.txt\n"),
    ));
    assert_eq!(read(out_dir.path(), "a.txt"), "from the directory\n");
}

/// A tar of `dir`, compressed with `compress` (`cat` for none).
fn tar_of(dir: &Path, compress: &str) -> Vec<u8> {
    let mut tar = tool("tar");
    tar.arg("-C").arg(dir).args(["-cf", "-", "."]);
    let bytes = tar.output().unwrap().stdout;
    let mut cmd = tool(compress);
    if compress != "cat" {
        cmd.arg("-c");
    }
    run_with_stdin(cmd, Some(&bytes)).stdout
}

#[test]
fn tar_context_on_stdin_plain_and_compressed() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\nCOPY a.txt /a.txt\n",
    );
    write_file(
        ctx.path(),
        "sub/Dockerfile",
        "FROM busybox:1.35\nCOPY . /all\n",
    );
    write_file(ctx.path(), "a.txt", "in the archive\n");
    write_file(ctx.path(), ".dockerignore", "ignored.txt\n");
    write_file(ctx.path(), "ignored.txt", "no\n");
    for compress in ["cat", "gzip", "bzip2", "xz", "zstd"] {
        let archive = tar_of(ctx.path(), compress);
        let out_dir = tempfile::tempdir().unwrap();
        let output = format!("type=local,dest={}", out_dir.path().display());
        ok(&build(&env, &["-o", &output, "-"], Some(&archive)));
        assert_eq!(
            read(out_dir.path(), "a.txt"),
            "in the archive\n",
            "{compress}"
        );
        // `-f` is relative to the archive's root; `.dockerignore` applies.
        let out_dir = tempfile::tempdir().unwrap();
        let output = format!("type=local,dest={}", out_dir.path().display());
        ok(&build(
            &env,
            &["-f", "sub/Dockerfile", "-o", &output, "-"],
            Some(&archive),
        ));
        assert_eq!(read(out_dir.path(), "all/a.txt"), "in the archive\n");
        assert!(
            !out_dir.path().join("all/ignored.txt").exists(),
            "{compress}"
        );
    }
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0
    );
}

/// A tar archive from `(name, kind, data or link target)` entries: kind `f` file, `l` symlink.
fn raw_tar(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let field = |h: &mut [u8; 512], at: usize, len: usize, value: &str| {
            h[at..at + value.len().min(len)]
                .copy_from_slice(&value.as_bytes()[..value.len().min(len)]);
        };
        field(&mut header, 100, 8, "0000644\0");
        field(&mut header, 108, 8, "0000000\0");
        field(&mut header, 116, 8, "0000000\0");
        let size = if *kind == 'f' { data.len() } else { 0 };
        field(&mut header, 124, 12, &format!("{size:011o}\0"));
        field(&mut header, 136, 12, "00000000000\0");
        header[156] = if *kind == 'f' { b'0' } else { b'2' };
        if *kind == 'l' {
            field(&mut header, 157, 100, data);
        }
        field(&mut header, 257, 8, "ustar\x0000");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        field(&mut header, 148, 8, &format!("{sum:06o}\0 "));
        out.extend_from_slice(&header);
        if *kind == 'f' {
            out.extend_from_slice(data.as_bytes());
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_tar_contexts_stay_inside_their_directory() {
    let env = TestEnv::new();
    load_busybox(&env);
    let mut guard = HostGuard::new(&env);
    let canary = guard.tmp_canary().to_path_buf();
    guard.record(&canary.join("sub/x"));
    let canary_text = canary.display().to_string();
    let dockerfile = "FROM busybox:1.35\nCOPY . /ctx\n";
    // `..` is refused.
    let out = run_rbuild(
        {
            let mut cmd = guard.rbuild();
            cmd.args(["build", "--progress", "plain", "-"]);
            cmd
        },
        Some(&raw_tar(&[
            ("Dockerfile", 'f', dockerfile),
            ("../../../../../../tmp/evil", 'f', "pwned"),
        ])),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`..` component"), "{stderr}");
    // An absolute name and a symlink out are rooted in the context; the Dockerfile as a
    // symlink to a host file is resolved inside the context (and is not there).
    let abs_file = format!("{canary_text}/file");
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("type=local,dest={}", out_dir.path().display());
    let archive = raw_tar(&[
        ("Dockerfile", 'f', dockerfile),
        (&abs_file, 'f', "pwned"),
        ("esc", 'l', &canary_text),
        ("esc/sub/x", 'f', "pwned"),
    ]);
    let mut cmd = guard.rbuild();
    cmd.args(["build", "--progress", "plain", "-o", &output, "-"]);
    ok(&run_rbuild(cmd, Some(&archive)));
    let rooted = out_dir
        .path()
        .join("ctx")
        .join(abs_file.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(rooted).unwrap(), "pwned");
    let archive = raw_tar(&[("Dockerfile", 'l', &abs_file)]);
    let mut cmd = guard.rbuild();
    cmd.args(["build", "--progress", "plain", "-"]);
    let out = run_rbuild(cmd, Some(&archive));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the Dockerfile"), "{stderr}");
    assert!(!stderr.contains("canary file"), "{stderr}");
    guard.check();
}

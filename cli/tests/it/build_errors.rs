//! Every way a build can fail that issue 7 lists, as the user sees it: a miette report that
//! points at the Dockerfile (or `.dockerignore`) span, says why and how to fix it, a non-zero
//! exit, and a store with nothing new tagged. The most important reports are snapshotted.

use crate::support::{self, TestEnv, shared_dir, text, write_file as write};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The tag every failing build asks for; it must never appear.
const TAG: &str = "errtest";

/// A store (optionally with busybox loaded) and a context directory.
struct Case {
    env: TestEnv,
    ctx: tempfile::TempDir,
}

impl Case {
    fn new(dockerfile: &str) -> Case {
        let ctx = tempfile::Builder::new()
            .prefix("rbuild-ctx-")
            .tempdir()
            .unwrap();
        write(ctx.path(), "Dockerfile", dockerfile);
        Case {
            env: TestEnv::new(),
            ctx,
        }
    }

    /// With `busybox:1.35` in the store.
    fn with_busybox(dockerfile: &str) -> Case {
        let case = Case::new(dockerfile);
        let out = case
            .env
            .rbuild()
            .args(["load", "-q", "-i"])
            .arg(shared_dir().join("images/busybox-1.35.oci.tar"))
            .output()
            .unwrap();
        assert!(out.status.success(), "load: {:?}", text(&out));
        case
    }

    fn file(&self, name: &str, content: &str) -> &Case {
        write(self.ctx.path(), name, content);
        self
    }

    /// `rbuild -t errtest .` from inside the context (so the report names `Dockerfile`);
    /// asserts it fails with `code` and leaves the store's image index as it was.
    fn fails(&self, code: i32, extra: &[&str]) -> String {
        let index = self.index();
        let out = self
            .env
            .rbuild()
            .current_dir(self.ctx.path())
            .args(["build", "--progress", "plain", "-t", TAG])
            .args(extra)
            .arg(".")
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(self.index(), index, "the image index changed:\n{stderr}");
        let images = self.env.rbuild().arg("images").output().unwrap();
        assert!(!text(&images).0.contains(TAG), "{:?}", text(&images));
        stderr
    }

    /// The images and tags of the store's `index.json` (none before the store exists).
    fn index(&self) -> serde_json::Value {
        std::fs::read(self.env.root().join("index.json")).map_or(
            serde_json::Value::Array(Vec::new()),
            |bytes| {
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["manifests"].clone()
            },
        )
    }

    /// The reports in `stderr` (progress lines, which carry timings, dropped) with the
    /// temporary directories replaced, for snapshots.
    fn redact(&self, stderr: &str) -> String {
        stderr
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(&self.env.root().display().to_string(), "[ROOT]")
            .replace(&self.ctx.path().display().to_string(), "[CTX]")
    }
}

/// Snapshot a rendered report; build log names carry a time and a PID.
macro_rules! snapshot {
    ($text:expr) => {
        insta::with_settings!({filters => vec![(r"/\d+-\d+-(s\d+-\d+\.log)", "/[TIME]-[PID]-$1")]}, {
            insta::assert_snapshot!($text);
        })
    };
}

/// Asserts `haystack` contains every needle, as written or with miette's wrapped lines joined
/// (so a needle may span a line break of the message or help text).
#[track_caller]
fn has(haystack: &str, needles: &[&str]) {
    let joined = haystack
        .lines()
        .map(|l| {
            let l = l.trim_start();
            l.strip_prefix("| ").unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join(" ");
    for needle in needles {
        assert!(
            haystack.contains(needle) || joined.contains(needle),
            "missing `{needle}` in:\n{haystack}"
        );
    }
}

// ---- COPY sources ----------------------------------------------------------------------------

/// A missing source is labelled at its span in the COPY line and says it is not in the context.
#[test]
fn missing_copy_source_points_at_the_source() {
    let case = Case::new("FROM scratch\nCOPY nope.txt /app/\n");
    case.file("other.txt", "x\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::context::source_not_found",
            "`nope.txt` not found in the build context",
            "[Dockerfile:2:6]",
            "2 | COPY nope.txt /app/",
            "not in the context",
        ],
    );
    snapshot!(case.redact(&stderr));
}

/// A near miss suggests the closest context path ("did you mean `src/`?").
#[test]
fn near_miss_suggests_the_close_name() {
    let case = Case::new("FROM scratch\nCOPY scr/ /app/\n");
    case.file("src/main.rs", "fn main() {}\n");
    let stderr = case.fails(1, &[]);
    has(&stderr, &["did you mean `src/`?", "2 | COPY scr/ /app/"]);
}

/// A source excluded by `.dockerignore` names the file, line and pattern, and shows the rule.
#[test]
fn ignored_copy_source_names_the_dockerignore_rule() {
    let case = Case::new("FROM scratch\nCOPY notes.txt /\n");
    case.file("notes.txt", "x\n")
        .file(".dockerignore", "# build junk\ntarget/\n*.txt\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::context::source_excluded",
            "`.dockerignore:3`",
            "`*.txt`",
            "2 | COPY notes.txt /",
            "3 | *.txt",
        ],
    );
    snapshot!(case.redact(&stderr));
}

/// `../x` means `x` inside the context; when that does not exist the report says so.
#[test]
fn source_outside_the_context_is_explained() {
    let case = Case::new("FROM scratch\nCOPY ../secret.txt /\n");
    write(case.ctx.path().parent().unwrap(), "secret.txt", "x\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::context::source_outside",
            "`../secret.txt` is outside the build context",
            "means `secret.txt` inside the context",
        ],
    );
}

/// A symlink that leaves the context is refused, naming the link and its target.
#[test]
fn symlink_leaving_the_context_is_refused() {
    let case = Case::new("FROM scratch\nCOPY passwd /\n");
    std::os::unix::fs::symlink("/etc/passwd", case.ctx.path().join("passwd")).unwrap();
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::context::symlink_escape",
            "through symlink `passwd` -> `/etc/passwd`",
            "2 | COPY passwd /",
        ],
    );
}

// ---- --from ------------------------------------------------------------------------------

/// `--from` with a misspelt stage name: the image lookup fails and the report names the stage
/// it probably meant.
#[test]
fn copy_from_unknown_stage_suggests_the_close_stage() {
    let case = Case::with_busybox(
        "FROM busybox:1.35 AS builder\nRUN echo hi > /out\n\
         FROM busybox:1.35\nCOPY --from=buidler /out /out\n",
    );
    // `--pull=never`: the name is also a valid image reference, and the test stays offline.
    let stderr = case.fails(1, &["--pull=never"]);
    has(
        &stderr,
        &["COPY --from=buidler /out /out", "`buidler`", "`builder`"],
    );
    snapshot!(case.redact(&stderr));
}

/// `FROM` with a misspelt stage name: the same hint, at the FROM's image word.
#[test]
fn from_unknown_stage_suggests_the_close_stage() {
    let case = Case::new("FROM scratch AS builder\nFROM biulder\nRUN true\n");
    let stderr = case.fails(1, &["--pull=never"]);
    has(
        &stderr,
        &[
            "rbuild::plan::unknown_stage",
            "cannot use `biulder`: it is not a stage",
            "2 | FROM biulder",
            "did you mean the stage `builder`?",
        ],
    );
}

/// A stage that copies from a later stage (a forward reference, the only way to write a
/// cycle) is refused at the reference.
#[test]
fn forward_stage_reference_is_refused() {
    let case = Case::with_busybox(
        "FROM busybox:1.35 AS a\nCOPY --from=b /x /x\n\
         FROM busybox:1.35 AS b\nCOPY --from=a /y /y\n",
    );
    let stderr = case.fails(1, &[]);
    has(&stderr, &["2 | COPY --from=b /x /x", "`b`"]);
    snapshot!(case.redact(&stderr));
}

// ---- --chown / --chmod --------------------------------------------------------------------

/// `--chown` to a user the image does not have names the user and the image's /etc/passwd.
#[test]
fn chown_to_unknown_user_names_the_user() {
    let case = Case::with_busybox("FROM busybox:1.35\nCOPY --chown=appuser a.txt /a.txt\n");
    case.file("a.txt", "x\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::build::chown",
            "`appuser`",
            "/etc/passwd",
            "2 | COPY --chown=appuser a.txt /a.txt",
        ],
    );
    snapshot!(case.redact(&stderr));
}

/// An invalid `--chmod` written literally is an error at the flag.
#[test]
fn invalid_static_chmod_points_at_the_flag() {
    let case = Case::new("FROM scratch\nCOPY --chmod=0999 a.txt /a.txt\n");
    case.file("a.txt", "x\n");
    let stderr = case.fails(1, &[]);
    has(&stderr, &["0999", "2 | COPY --chmod=0999 a.txt /a.txt"]);
    snapshot!(case.redact(&stderr));
}

/// An invalid `--chmod` that comes from an ARG is caught after expansion, at the flag.
#[test]
fn invalid_chmod_after_arg_expansion_points_at_the_flag() {
    let case = Case::new("FROM scratch\nARG MODE=rwxr-xr-x\nCOPY --chmod=$MODE a.txt /a.txt\n");
    case.file("a.txt", "x\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rwxr-xr-x",
            "3 | COPY --chmod=$MODE a.txt /a.txt",
            "--chmod",
        ],
    );
}

// ---- ADD URLs ---------------------------------------------------------------------------

/// A tiny HTTP server on 127.0.0.1: `/hello.txt` is 200 with `hello\n`, everything else 404.
fn http_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let response = if path == "/hello.txt" {
                "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n"
                    .to_string()
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://127.0.0.1:{}", addr.port())
}

/// An ADD URL that answers 404 says so, labelled at the URL.
#[test]
fn add_url_404_is_reported_at_the_url() {
    let base = http_server();
    let case = Case::new(&format!("FROM scratch\nADD {base}/missing.txt /m.txt\n"));
    let stderr = case.fails(1, &[]);
    has(&stderr, &["rbuild::add::fetch", "404", "/missing.txt"]);
    snapshot!(case.redact(&stderr).replace(&base, "[SERVER]"));
}

/// An ADD URL whose body does not match `--checksum` shows both digests.
#[test]
fn add_url_checksum_mismatch_shows_both_digests() {
    let base = http_server();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let case = Case::new(&format!(
        "FROM scratch\nADD --checksum={wrong} {base}/hello.txt /h.txt\n"
    ));
    let stderr = case.fails(1, &[]);
    // sha256 of "hello\n".
    has(
        &stderr,
        &[
            "rbuild::add::fetch",
            "does not match --checksum",
            &format!("expected {wrong}"),
            "got      sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        ],
    );
    snapshot!(case.redact(&stderr).replace(&base, "[SERVER]"));
}

// ---- FROM -------------------------------------------------------------------------------

/// An ARG used in FROM with no value names the ARG and how to give it one.
#[test]
fn from_arg_without_value_names_the_arg() {
    let case = Case::new("ARG BASE\nFROM $BASE\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::plan::empty_base",
            "2 | FROM $BASE",
            "--build-arg BASE=",
        ],
    );
    snapshot!(case.redact(&stderr));
}

// ---- RUN --------------------------------------------------------------------------------

/// The log path a RUN failure names.
fn log_path_in(stderr: &str) -> PathBuf {
    let start = stderr.find("full log: ").expect("a log path") + "full log: ".len();
    let rest = &stderr[start..];
    let end = rest.find(".log").expect("a .log path") + 4;
    PathBuf::from(&rest[..end])
}

/// `RUN false`: the report shows the command, the exit code and the log path.
#[test]
fn run_false_reports_command_and_exit_code() {
    let case = Case::with_busybox("FROM busybox:1.35\nRUN false\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "rbuild::build::run_failed",
            "/bin/sh -c false",
            "exit code: 1",
            "2 | RUN false",
        ],
    );
    assert!(log_path_in(&stderr).is_file(), "{stderr}");
}

/// `RUN ... exit 42`: the report shows the last 20 output lines, and the log file has them all.
#[test]
fn run_exit_42_shows_the_last_lines_and_a_complete_log() {
    let case = Case::with_busybox(
        "FROM busybox:1.35\nRUN for i in $(seq 1 30); do echo line $i; done; exit 42\n",
    );
    let stderr = case.fails(1, &[]);
    // The progress output shows every line as it comes; the report only the last 20.
    let report = &stderr[stderr.find("rbuild::build::run_failed").unwrap()..];
    has(report, &["exit code: 42", "line 11\n", "line 30\n"]);
    assert!(!report.contains("line 10\n"), "{report}");
    let log = std::fs::read_to_string(log_path_in(&stderr)).unwrap();
    for i in 1..=30 {
        assert!(log.contains(&format!("line {i}\n")), "{log}");
    }
    snapshot!(case.redact(&stderr));
}

/// A RUN over its `--memory` limit is reported as out of memory, not as a bare SIGKILL;
/// `rbuild run -m` says the same and passes 137 through.
#[test]
fn run_over_its_memory_limit_is_reported_as_out_of_memory() {
    let hog = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let case = Case::with_busybox(&format!("FROM busybox:1.35\nRUN echo start; {hog}\n"));
    let stderr = case.fails(1, &["--memory", "16m"]);
    if stderr.contains("a memory limit needs a writable memory cgroup") {
        // A host without a usable memory controller: the limit is refused, clearly.
        eprintln!("no memory cgroup on this host; only the refusal was checked");
        return;
    }
    has(
        &stderr,
        &[
            "out of memory: the OOM killer killed a process",
            "2 | RUN echo start;",
            "start",
        ],
    );
    // Under the limit the same build works; without -m there is no limit.
    let fine = Case::with_busybox("FROM busybox:1.35\nRUN head -c 1000000 /dev/zero | wc -c\n");
    let out = fine
        .env
        .rbuild()
        .args(["build", "-q", "--memory", "16m"])
        .arg(fine.ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let out = case
        .env
        .rbuild()
        .args(["run", "--rm", "-m", "16m", "busybox:1.35", "sh", "-c", hog])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    has(&stderr, &["out of memory"]);
    let out = case
        .env
        .rbuild()
        .args(["run", "--rm", "-m", "1k", "busybox:1.35", "true"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    has(&stderr, &["below the minimum memory limit"]);
}

/// A RUN killed by a signal says which signal.
#[test]
fn run_killed_by_signal_names_the_signal() {
    let case = Case::with_busybox("FROM busybox:1.35\nRUN echo before; kill -9 $$\n");
    let stderr = case.fails(1, &[]);
    has(
        &stderr,
        &[
            "killed by signal SIGKILL (9)",
            "2 | RUN echo before; kill -9 $$",
            "before",
        ],
    );
}

// ---- Ctrl-C -----------------------------------------------------------------------------

/// Processes whose environment holds `marker` (the rbuild process, its sandbox helpers and the
/// step's own processes all carry it).
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

fn mountinfo() -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Ctrl-C while a RUN sleeps: exit 130 promptly, nothing tagged, no new image, no partial blob,
/// no leftover mount, no surviving sandbox process.
#[test]
fn interrupted_build_leaves_nothing_behind() {
    // The whole mount table is compared below: no test may hold a host mount meanwhile.
    let _mounts = support::watching_host_mounts();
    let marker = format!("RBUILD_ERRTEST_MARKER={}", std::process::id());
    let case = Case::with_busybox(&format!(
        "FROM busybox:1.35\nRUN echo one > /one\nENV {marker}\nRUN sleep 30\n"
    ));
    let index = case.index();
    let mounts = mountinfo();
    let blobs_before = blobs(case.env.root());

    let (var, value) = marker.split_once('=').unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rbuild"))
        .arg("--root")
        .arg(case.env.root())
        .args(["build", "--progress", "plain", "-t", TAG, "."])
        .current_dir(case.ctx.path())
        .env("NO_COLOR", "1")
        .env(var, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the step's `sleep` to run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_with(&marker)
        .iter()
        .any(|(_, comm)| comm == "sleep")
    {
        assert!(Instant::now() < deadline, "the RUN never started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("rbuild exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "rbuild did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = sent.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    has(&stderr, &["rbuild::interrupted", "nothing was tagged"]);

    assert_eq!(case.index(), index, "{stderr}");
    let ingest: Vec<_> = std::fs::read_dir(case.env.root().join("ingest"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "partial blobs: {ingest:?}");
    for scratch in ["exec", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(case.env.root().join(scratch))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {scratch}/: {left:?}");
    }
    // The first RUN's layer may have been stored; nothing else is new.
    let new: Vec<String> = blobs(case.env.root())
        .into_iter()
        .filter(|b| !blobs_before.contains(b))
        .collect();
    assert!(new.len() <= 1, "new blobs: {new:?}");
    let fsck = case
        .env
        .rbuild()
        .args(["store", "fsck", "--full"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{:?}", text(&fsck));
    assert_eq!(mountinfo(), mounts);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "surviving processes: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn blobs(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

//! `--ssh` with `RUN --mount=type=ssh`, and `--build-context` (issue 16, section 1), against
//! an `ssh-agent` these tests start and the shared busybox image; BuildKit/buildx behaviour is
//! the reference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::{TestEnv, busybox_archive, load_busybox, run_ok, text, tool, write_file};

/// `rbuild build ARGS CONTEXT` with plain progress, offline.
fn build(env: &TestEnv, context: &Path, args: &[&str]) -> std::process::Output {
    build_with(env, context, args, None)
}

fn build_with(
    env: &TestEnv,
    context: &Path,
    args: &[&str],
    auth_sock: Option<&Path>,
) -> std::process::Output {
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain", "--pull=never"])
        .args(args)
        .arg(context);
    match auth_sock {
        Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    cmd.output().unwrap()
}

/// An `ssh-agent` in the foreground on its own socket, killed (by its pid) when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path, name: &str) -> Agent {
        let socket = dir.join(name);
        // `tool` fails the test loudly when openssh-client is not installed.
        let child = tool("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, socket };
        crate::support::containers::wait_until(
            "the ssh agent's socket",
            Duration::from_secs(10),
            || agent.socket.exists(),
        );
        agent
    }

    fn add(&self, key: &Path) {
        run_ok(
            tool("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket)
                .stderr(std::process::Stdio::null()),
        );
    }

    /// `ssh-add -l` on the host: one `BITS SHA256:... COMMENT (TYPE)` line per key.
    fn list(&self) -> String {
        run_ok(tool("ssh-add").arg("-l").env("SSH_AUTH_SOCK", &self.socket))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key without a passphrase at `dir/name`.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    run_ok(
        tool("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("rbuild-test-{name}"))
            .arg("-f")
            .arg(&key),
    );
    key
}

/// The host's `ssh-add` with the libraries it links and their loader, copied into `dir` so a
/// busybox step can run it: `/tools/ld.so --library-path /tools /tools/ssh-add -l`.
fn copy_ssh_add(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let path = run_ok(Command::new("sh").args(["-c", "command -v ssh-add"]));
    let path = path.trim();
    std::fs::copy(path, dir.join("ssh-add")).unwrap();
    let ldd = run_ok(tool("ldd").arg(path));
    let mut loader = false;
    for line in ldd.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let file = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|f| f.starts_with('/')),
        };
        let Some(file) = file.filter(|f| f.starts_with('/')) else {
            continue;
        };
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        if name.starts_with("ld-linux") {
            std::fs::copy(file, dir.join("ld.so")).unwrap();
            loader = true;
        } else {
            std::fs::copy(file, dir.join(name)).unwrap();
        }
    }
    assert!(loader, "no dynamic loader in `ldd {path}`:\n{ldd}");
}

/// The forwarded socket is the agent's: the step lists the agent's key through it with the
/// real `ssh-add`, finds it at BuildKit's default target named by SSH_AUTH_SOCK, and the layer
/// holds neither the socket nor its mount point. The agent is not in the cache key: the same
/// step with another agent is cached; other mount settings are another step.
#[test]
fn ssh_agent_is_forwarded_into_the_step_and_never_into_the_layer_or_key() {
    let env = TestEnv::new();
    load_busybox(&env);
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "one");
    let agent = Agent::start(keys.path(), "agent.sock");
    agent.add(&key);
    let listed = agent.list();
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");

    let ctx = tempfile::tempdir().unwrap();
    copy_ssh_add(&ctx.path().join("tools"));
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN --mount=type=ssh --mount=type=bind,source=tools,target=/tools \\\n  \
         test -S \"$SSH_AUTH_SOCK\" && ls -ln \"$SSH_AUTH_SOCK\" > /sock.txt && \\\n  \
         echo \"sock=$SSH_AUTH_SOCK\" > /out.txt && \\\n  \
         /tools/ld.so --library-path /tools /tools/ssh-add -l >> /out.txt\n",
    );
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out_dir.path().display());
    let out = build_with(
        &env,
        ctx.path(),
        &["--ssh", "default", "-o", &dest],
        Some(&agent.socket),
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let got = std::fs::read_to_string(out_dir.path().join("out.txt")).unwrap();
    assert!(got.starts_with("sock=/run/buildkit/ssh_agent.0\n"), "{got}");
    assert!(
        got.contains(&fingerprint),
        "the step's listing:\n{got}\nthe host's:\n{listed}"
    );
    assert!(got.contains("rbuild-test-one"), "{got}");
    // A socket owned by root, mode 0600 (BuildKit's default).
    let sock = std::fs::read_to_string(out_dir.path().join("sock.txt")).unwrap();
    assert!(
        sock.starts_with("srw------- ") && sock.contains(" 0 "),
        "{sock}"
    );
    // Nothing of the mount in the image: no socket, no mount point, no /run/buildkit.
    assert!(
        !out_dir.path().join("run/buildkit").exists(),
        "{:?}",
        std::fs::read_dir(out_dir.path())
            .unwrap()
            .collect::<Vec<_>>()
    );

    // Another agent (another key): the step's key is the same, so it is cached.
    let other_key = keygen(keys.path(), "two");
    let other = Agent::start(keys.path(), "other.sock");
    other.add(&other_key);
    let other_sock = format!("default={}", other.socket.display());
    let out = build_with(&env, ctx.path(), &["--ssh", &other_sock], None);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 1, "{stderr}");

    // Other mount settings are another step: it runs, and sees the other agent's key.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:1.35\n\
         RUN --mount=type=ssh,id=work,target=/agent.sock,mode=0644 \\\n    \
         --mount=type=bind,source=tools,target=/tools \\\n  \
         ls -ln /agent.sock > /sock.txt && echo \"sock=$SSH_AUTH_SOCK\" > /out.txt && \\\n  \
         /tools/ld.so --library-path /tools /tools/ssh-add -l >> /out.txt\n",
    )
    .unwrap();
    let work = format!("work={}", other.socket.display());
    let out = build_with(&env, ctx.path(), &["--ssh", &work, "-o", &dest], None);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 0, "{stderr}");
    let got = std::fs::read_to_string(out_dir.path().join("out.txt")).unwrap();
    assert!(got.starts_with("sock=/agent.sock\n"), "{got}");
    assert!(
        got.contains("rbuild-test-two") && !got.contains("rbuild-test-one"),
        "{got}"
    );
    let sock = std::fs::read_to_string(out_dir.path().join("sock.txt")).unwrap();
    assert!(sock.starts_with("srw-r--r-- "), "{sock}");
    assert!(!out_dir.path().join("agent.sock").exists());
}

/// A step may only read the agent (list, sign), as with BuildKit's read-only agent: removing
/// every key through the forwarded socket fails and leaves the caller's agent as it was.
#[test]
fn a_step_cannot_change_the_callers_agent() {
    let env = TestEnv::new();
    load_busybox(&env);
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "kept");
    let agent = Agent::start(keys.path(), "agent.sock");
    agent.add(&key);
    let ctx = tempfile::tempdir().unwrap();
    copy_ssh_add(&ctx.path().join("tools"));
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN --mount=type=ssh --mount=type=bind,source=tools,target=/tools \\\n  \
         if /tools/ld.so --library-path /tools /tools/ssh-add -D; then exit 1; fi\n",
    );
    let out = build_with(&env, ctx.path(), &["--ssh", "default"], Some(&agent.socket));
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(agent.list().contains("rbuild-test-kept"));
}

/// Without `--ssh`, an optional ssh mount is skipped (SSH_AUTH_SOCK is still set, as BuildKit
/// sets it in the op); a required one is an error at its `--mount` flag naming `--ssh`.
#[test]
fn ssh_mounts_without_an_agent_are_skipped_or_refused_when_required() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN --mount=type=ssh test \"$SSH_AUTH_SOCK\" = /run/buildkit/ssh_agent.0 && \
         test ! -e /run/buildkit/ssh_agent.0\n",
    );
    let out = build(&env, ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out).1);

    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\nRUN --mount=type=ssh,id=deploy,required=true true\n",
    );
    let out = build(&env, ctx.path(), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no ssh agent `deploy` was given to the build"),
        "{stderr}"
    );
    assert!(stderr.contains("--ssh deploy"), "{stderr}");
    assert!(stderr.contains("this mount requires it"), "{stderr}");
    // An agent of another id does not count.
    let keys = tempfile::tempdir().unwrap();
    let agent = Agent::start(keys.path(), "agent.sock");
    let out = build_with(&env, ctx.path(), &["--ssh", "default"], Some(&agent.socket));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    // A key with a passphrase cannot be served: a usage error that says what to do.
    let locked = keys.path().join("locked");
    run_ok(
        tool("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
            .arg(&locked),
    );
    let as_file = format!("deploy={}", locked.display());
    let out = build(&env, ctx.path(), &["--ssh", &as_file]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("passphrase") && stderr.contains("ssh-add"),
        "{stderr}"
    );
}

/// `--ssh ID=KEY,KEY`: key files are served by an agent of rbuild's for the build, as buildx
/// does; the step lists both keys with the real `ssh-add`.
#[test]
fn key_files_are_served_to_the_step() {
    let env = TestEnv::new();
    load_busybox(&env);
    let keys = tempfile::tempdir().unwrap();
    let one = keygen(keys.path(), "k1");
    let two = keygen(keys.path(), "k2");
    let ctx = tempfile::tempdir().unwrap();
    copy_ssh_add(&ctx.path().join("tools"));
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN --mount=type=ssh,id=deploy,required --mount=type=bind,source=tools,target=/tools \\\n  \
         /tools/ld.so --library-path /tools /tools/ssh-add -l > /keys.txt\n",
    );
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out_dir.path().display());
    let arg = format!("deploy={},{}", one.display(), two.display());
    let out = build(&env, ctx.path(), &["--ssh", &arg, "-o", &dest]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let listed = std::fs::read_to_string(out_dir.path().join("keys.txt")).unwrap();
    for key in [&one, &two] {
        let expected = run_ok(tool("ssh-keygen").arg("-lf").arg(key.with_extension("pub")));
        let fingerprint = expected.split_whitespace().nth(1).unwrap();
        assert!(listed.contains(fingerprint), "{listed}\n{expected}");
    }
    assert!(
        listed.contains("rbuild-test-k1") && listed.contains("rbuild-test-k2"),
        "{listed}"
    );
}

/// The files of `dir` as `relative path → content` (directories as `/`).
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().is_dir() {
                (rel, "/".into())
            } else {
                (rel, std::fs::read_to_string(e.path()).unwrap_or_default())
            }
        })
        .collect();
    out.sort();
    out
}

/// A directory context: its own `.dockerignore` applies; it serves `COPY --from`,
/// `RUN --mount from=` and `FROM`, owned by root; it replaces a stage of its name (which is then
/// not built); and its files enter the keys (a changed file is a miss, the same files a hit).
#[test]
fn a_directory_context_serves_copy_mount_and_from_and_replaces_a_stage() {
    let env = TestEnv::new();
    load_busybox(&env);
    let extra = tempfile::tempdir().unwrap();
    write_file(extra.path(), "a.txt", "a\n");
    write_file(extra.path(), "sub/b.txt", "b\n");
    write_file(extra.path(), "secret.txt", "no\n");
    write_file(extra.path(), ".dockerignore", "secret.txt\n");
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35 AS extra\n\
         RUN echo the stage must not be built; exit 1\n\
         FROM busybox:1.35\n\
         COPY --from=extra a.txt /copied.txt\n\
         RUN --mount=from=extra,target=/x cd /x && find . | sort > /mounted.txt && \
         stat -c '%u:%g' sub/b.txt > /owner.txt\n",
    );
    let arg = format!("extra={}", extra.path().display());
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out_dir.path().display());
    let out = build(&env, ctx.path(), &["--build-context", &arg, "-o", &dest]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("must not be built"), "{stderr}");
    let read = |name: &str| std::fs::read_to_string(out_dir.path().join(name)).unwrap();
    assert_eq!(read("copied.txt"), "a\n");
    assert_eq!(
        read("mounted.txt"),
        ".\n./.dockerignore\n./a.txt\n./sub\n./sub/b.txt\n"
    );
    assert_eq!(read("owner.txt"), "0:0\n");

    // The same files: cached. A changed file: the steps that read it run again.
    let out = build(&env, ctx.path(), &["--build-context", &arg]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 2, "{stderr}");
    write_file(extra.path(), "a.txt", "changed\n");
    let out = build(&env, ctx.path(), &["--build-context", &arg, "-o", &dest]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 0, "{stderr}");
    assert_eq!(read("copied.txt"), "changed\n");

    // FROM the context: its files are the image's.
    write_file(ctx.path(), "Dockerfile", "FROM extra\nLABEL from=dir\n");
    let from_dir = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", from_dir.path().display());
    let out = build(&env, ctx.path(), &["--build-context", &arg, "-o", &dest]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        tree(from_dir.path()),
        [
            (".dockerignore".to_string(), "secret.txt\n".to_string()),
            ("a.txt".into(), "changed\n".into()),
            ("sub".into(), "/".into()),
            ("sub/b.txt".into(), "b\n".into()),
        ]
    );
}

/// `docker-image://REF` replaces an image name however it is written (`alpine`,
/// `alpine:latest`, `docker.io/library/alpine`), in FROM and COPY --from; another tag of that
/// name is another name.
#[test]
fn an_image_context_replaces_an_image_name() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM alpine\n\
         COPY --from=docker.io/library/alpine:latest /bin/busybox /copied\n\
         RUN test -x /bin/busybox && test -x /copied\n",
    );
    let out = build(
        &env,
        ctx.path(),
        &[
            "--build-context",
            "alpine=docker-image://busybox:1.35",
            "-t",
            "ctx:1",
        ],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // `alpine:3` is not the context's name: it is looked up as an image (offline: missing).
    write_file(ctx.path(), "Dockerfile", "FROM alpine:3\n");
    let out = build(
        &env,
        ctx.path(),
        &["--build-context", "alpine=docker-image://busybox:1.35"],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("alpine:3"), "{stderr}");
}

/// `oci-layout://DIR[:TAG]`: the image the layout names with that tag (a layout extracted from
/// the shared archive with `tar`), for FROM; an unknown tag is an error naming those it has.
#[test]
fn an_oci_layout_context_is_read_by_tag() {
    let env = TestEnv::new();
    let layout = tempfile::tempdir().unwrap();
    run_ok(
        tool("tar")
            .arg("-xf")
            .arg(busybox_archive())
            .arg("-C")
            .arg(layout.path()),
    );
    let ctx = tempfile::tempdir().unwrap();
    write_file(
        ctx.path(),
        "Dockerfile",
        "FROM base\nRUN test -x /bin/busybox && echo ran > /ran.txt\n",
    );
    let arg = format!("base=oci-layout://{}:1.35", layout.path().display());
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out_dir.path().display());
    // The store is empty: the base can only come from the layout.
    let out = build(&env, ctx.path(), &["--build-context", &arg, "-o", &dest]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("ran.txt")).unwrap(),
        "ran\n"
    );
    assert!(out_dir.path().join("bin/busybox").is_file());
    // Without a tag, the layout's only image.
    let arg = format!("base=oci-layout://{}", layout.path().display());
    let out = build(&env, ctx.path(), &["--build-context", &arg]);
    assert!(out.status.success(), "{}", text(&out).1);

    let arg = format!("base=oci-layout://{}:9.9", layout.path().display());
    let out = build(&env, ctx.path(), &["--build-context", &arg]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no image tagged `9.9`"), "{stderr}");
    assert!(stderr.contains("1.35"), "{stderr}");
}

/// Copy `src` into `dest` with the modes the recordings were made with (files 0644,
/// directories 0755), whatever the checkout gave them.
fn copy_tree(src: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.unwrap();
        let to = dest.join(entry.path().strip_prefix(src).unwrap());
        let mode = if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            0o755
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
            0o644
        };
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The named-context cases of `testdata/conformance/named-context` build to the files and
/// config BuildKit built (recorded by hand: see its README): a directory context with its own
/// `.dockerignore` for COPY --from, a bind mount from it, FROM it, and replacing a stage.
#[test]
fn named_contexts_match_buildkit() {
    let env = TestEnv::new();
    load_busybox(&env);
    let cases = crate::support::testdata().join("conformance/named-context");
    let work = tempfile::tempdir().unwrap();
    let extra = work.path().join("extra");
    copy_tree(&cases.join("extra"), &extra);
    let arg = format!("extra={}", extra.display());
    let store = || rbuild_store::Store::open(env.root()).unwrap();
    for name in ["copy-mount", "from-dir"] {
        let ctx = work.path().join(name);
        copy_tree(&cases.join(name), &ctx);
        let tag = format!("named/{name}:test");
        let out = build(&env, &ctx, &["--build-context", &arg, "-t", &tag]);
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{name}: {stderr}");
        let recorded: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(cases.join("expected").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let want: std::collections::BTreeMap<String, String> =
            serde_json::from_value(recorded["files"].clone()).unwrap();
        let image = store().resolve_image(&tag).unwrap();
        let got = rbuild_store::layer::flatten_image(&store(), &image)
            .unwrap()
            .to_conformance_map();
        assert_eq!(got, want, "{name}: files");
        let config = rbuild_store::testing::conformance_config_fields(
            &image.config.config.clone().unwrap_or_default(),
        );
        assert_eq!(config, recorded["config"], "{name}: config");
        // Every layer has its history entry.
        let layered = image
            .config
            .history
            .iter()
            .filter(|h| !h.empty_layer)
            .count();
        assert_eq!(
            layered,
            image.layers.len(),
            "{name}: {:?}",
            image.config.history
        );
    }
}

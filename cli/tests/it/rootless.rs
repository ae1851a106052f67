//! Rootless rbuild (issue 15) end to end, as an ordinary user of this host that the harness
//! creates (`useradd`, subordinate ranges from `useradd` or `usermod --add-subuids`): the
//! conformance cases build to BuildKit's recordings (the same files, owners, modes and config
//! a root build gives, which `build_conformance` checks against the same recordings); `run`,
//! the container lifecycle, `images`, `inspect`, `save`/`load`, `push`/`pull` work with the
//! store in `$XDG_DATA_HOME/rbuild`; files in layers carry container ids (`--chown=1000:1000`
//! is 1000:1000) while on disk they belong to the subordinate range; steps are confined as a
//! root build's are; a user without a range, and `-m` without a delegated cgroup, get a pointed
//! error before any work. Nothing here skips: a host without `uidmap` or user namespaces fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::build_conformance::{
    Built, check_cases_with, flattened, prepare_context, prepare_own_context,
};
use crate::exec_security::{DOCKER_CAPS, STATUS_SCRIPT, expected_status};
use crate::support::real_registry::RealRegistry;
use crate::support::{TestEnv, busybox_archive, shared_dir, testdata, text, write_file};

/// The user with subordinate ranges, and the one without.
const WITH_RANGE: &str = "rbuild-rootless";
const WITHOUT_RANGE: &str = "rbuild-norange";

/// An ordinary user of this host, with a private home (`HOME`, and `XDG_DATA_HOME` inside it,
/// so the store is the default one), and a copy of the rbuild binary it can execute.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// Root-owned, mode 0755: `bin/rbuild` and `home/`.
    work: tempfile::TempDir,
}

impl User {
    fn with_range() -> User {
        User::new(WITH_RANGE, true)
    }

    fn without_range() -> User {
        User::new(WITHOUT_RANGE, false)
    }

    fn new(name: &str, with_range: bool) -> User {
        require_rootless_host();
        let (uid, gid) = ensure_user(name, with_range);
        let work = tempfile::Builder::new()
            .prefix("rbuild-rootless-")
            .tempdir()
            .unwrap();
        chmod(work.path(), 0o755);
        let bin = work.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        chmod(&bin, 0o755);
        let exe = Path::new(env!("CARGO_BIN_EXE_rbuild"));
        if std::fs::hard_link(exe, bin.join("rbuild")).is_err() {
            std::fs::copy(exe, bin.join("rbuild")).unwrap();
        }
        let home = work.path().join("home");
        std::fs::create_dir(&home).unwrap();
        chmod(&home, 0o700);
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        User {
            name: name.to_string(),
            uid,
            gid,
            work,
        }
    }

    fn home(&self) -> PathBuf {
        self.work.path().join("home")
    }

    /// The default store of this user: `$XDG_DATA_HOME/rbuild`.
    fn store(&self) -> PathBuf {
        self.home().join("data/rbuild")
    }

    /// `rbuild ARGS` as this user, with a clean environment.
    fn rbuild(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg("--reuid")
            .arg(self.uid.to_string())
            .arg("--regid")
            .arg(self.gid.to_string())
            .arg("--init-groups")
            .arg("--")
            .arg(self.work.path().join("bin/rbuild"))
            .env_clear()
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.home().join("data"))
            .env("USER", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("NO_COLOR", "1")
            // One line per sentence: assertions look for words a wrap could split.
            .env("COLUMNS", "1000")
            .current_dir(self.home());
        cmd
    }

    /// Run `rbuild ARGS` as this user; assert it succeeded; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.rbuild().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "rbuild {args:?} as {} failed: {:?}",
            self.name,
            text(&out)
        );
        text(&out).0
    }

    /// Give every entry under `dir` (itself included) to this user.
    fn own_tree(&self, dir: &Path) {
        for entry in walkdir::WalkDir::new(dir) {
            let entry = entry.unwrap();
            std::os::unix::fs::lchown(entry.path(), Some(self.uid), Some(self.gid)).unwrap();
        }
    }

    /// A directory this user owns, for contexts and outputs.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.home().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid)).unwrap();
        dir
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Fail loudly unless this host can run rootless rbuild: the setuid newuidmap/newgidmap of
/// Debian's `uidmap`, and the tools the harness uses.
fn require_rootless_host() {
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        let meta = std::fs::metadata(tool).unwrap_or_else(|_| {
            panic!("{tool} is missing: rootless tests need Debian's `uidmap` (CI's .ci/run installs it)")
        });
        assert!(
            meta.uid() == 0 && meta.mode() & 0o4000 != 0,
            "{tool} must be setuid root"
        );
    }
    for tool in ["useradd", "usermod", "setpriv", "id"] {
        crate::support::tool(tool);
    }
}

/// `start-end` ranges of `/etc/subuid`-format `text` for `name`.
fn ranges_of(text: &str, name: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then_some(())?;
            let start: u64 = f.next()?.parse().ok()?;
            let count: u64 = f.next()?.parse().ok()?;
            Some((start, count))
        })
        .collect()
}

/// Create user `name` unless it exists (a system user, without subordinate ids, when
/// `!with_range`), give it a range of 65536 subordinate uids and gids when it should have one
/// and has none, and return its uid and gid.
fn ensure_user(name: &str, with_range: bool) -> (u32, u32) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).arg(name).output().unwrap();
        out.status
            .success()
            .then(|| text(&out).0.trim().parse::<u32>().unwrap())
    };
    if id("-u").is_none() {
        let mut useradd = Command::new("useradd");
        useradd.args([
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ]);
        if !with_range {
            useradd.arg("--system");
        }
        let out = useradd.arg(name).output().unwrap();
        // 9: created meanwhile by another test process.
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd {name}: {:?}",
            text(&out)
        );
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    let has = !ranges_of(&subuid, name).is_empty() && !ranges_of(&subgid, name).is_empty();
    if with_range && !has {
        // After every range any user has.
        let end = [&subuid, &subgid]
            .iter()
            .flat_map(|t| t.lines())
            .filter_map(|l| {
                let mut f = l.split(':').skip(1);
                Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
            })
            .max()
            .unwrap_or(100_000)
            .max(100_000);
        let range = format!("{end}-{}", end + 65535);
        let out = Command::new("usermod")
            .args(["--add-subuids", &range, "--add-subgids", &range, name])
            .output()
            .unwrap();
        assert!(out.status.success(), "usermod {name}: {:?}", text(&out));
    }
    if !with_range {
        assert!(
            ranges_of(&subuid, name).is_empty(),
            "user {name} was meant to have no subordinate uids, and /etc/subuid gives it some"
        );
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// The first subordinate uid of `name`.
fn first_subuid(name: &str) -> u64 {
    let text = std::fs::read_to_string("/etc/subuid").unwrap();
    ranges_of(&text, name)[0].0
}

/// Every conformance case built rootless gives the files, owners, modes and config BuildKit
/// recorded — which is what a root build gives (`build_conformance` holds root builds to the
/// same recordings). Each image goes out with the user's `save` and is read back in a root
/// store, so what is compared is exactly what the layers carry.
#[test]
fn rootless_builds_match_the_conformance_recordings() {
    let user = User::with_range();
    user.ok(&["load", "-i", busybox_archive().to_str().unwrap()]);
    let reader = TestEnv::new();
    let saved = user.dir("out").join("image.tar");
    let mut build = |tag: &str, args: &[String], context: &Path| -> Result<Built, String> {
        // The user's own context, as it would be (a RUN's rw bind mount writes through it).
        user.own_tree(context);
        let out = user
            .rbuild()
            .args(["build", "--progress", "plain", "-t", tag])
            .args(args)
            .arg(context)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("rootless build failed\n{}", text(&out).1));
        }
        let out = user
            .rbuild()
            .args(["save", "-o"])
            .arg(&saved)
            .arg(tag)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("rootless save failed\n{}", text(&out).1));
        }
        let out = reader
            .rbuild()
            .args(["load", "-i"])
            .arg(&saved)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("load of the saved image failed\n{}", text(&out).1));
        }
        Ok(flattened(reader.root(), tag))
    };
    check_cases_with(
        &shared_dir().join("conformance/build"),
        prepare_context,
        10,
        &mut build,
    );
    check_cases_with(
        &testdata().join("conformance/build"),
        prepare_own_context,
        30,
        &mut build,
    );
}

/// The owners a rootless build gives: `COPY --chown=1000:1000` and a RUN's `chown` are those
/// ids in the layer and inside containers, root's files are 0:0, and on disk the store's
/// snapshots belong to the user's subordinate range (container id N is subuid start + N - 1).
#[test]
fn rootless_layers_carry_container_ids() {
    let user = User::with_range();
    user.ok(&["load", "-i", busybox_archive().to_str().unwrap()]);
    let ctx = user.dir("ctx");
    write_file(&ctx, "f", "owned\n");
    write_file(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.35\n\
         COPY --chown=1000:1000 f /owned/f\n\
         RUN mkdir /r && echo x > /r/a && chown 1234:2345 /r/a && touch /r/root\n",
    );
    user.ok(&["build", "-q", "-t", "rl/owners:1", ctx.to_str().unwrap()]);

    let saved = user.dir("out").join("owners.tar");
    user.ok(&["save", "-o", saved.to_str().unwrap(), "rl/owners:1"]);
    let reader = TestEnv::new();
    let out = reader
        .rbuild()
        .args(["load", "-i"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let (files, _) = flattened(reader.root(), "rl/owners:1");
    // `file 0o644 UID:GID …`, `dir 0o755 UID:GID`.
    let owner = |path: &str| {
        let desc = files.get(path).unwrap_or_else(|| panic!("{path} missing"));
        desc.split_whitespace().nth(2).unwrap().to_string()
    };
    assert_eq!(owner("/owned/f"), "1000:1000", "{files:?}");
    assert_eq!(owner("/r/a"), "1234:2345");
    assert_eq!(owner("/r/root"), "0:0");
    assert_eq!(owner("/etc/passwd"), "0:0");
    // A destination parent COPY creates gets the --chown too, as in BuildKit.
    assert_eq!(owner("/owned"), "1000:1000");

    // Inside a container: the same ids.
    let out = user.ok(&[
        "run",
        "--rm",
        "rl/owners:1",
        "stat",
        "-c",
        "%u:%g %n",
        "/owned/f",
        "/r/a",
        "/r/root",
    ]);
    assert_eq!(out, "1000:1000 /owned/f\n1234:2345 /r/a\n0:0 /r/root\n");

    // On disk: the subordinate range, never the host's ids 1000 or 1234.
    let base = first_subuid(WITH_RANGE);
    let snapshot_file = walkdir::WalkDir::new(user.store().join("snapshots"))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.path().ends_with("owned/f"))
        .expect("a snapshot holds /owned/f");
    let meta = snapshot_file.metadata().unwrap();
    assert_eq!(u64::from(meta.uid()), base + 999);
    let store_meta = std::fs::metadata(user.store()).unwrap();
    assert_eq!(store_meta.uid(), user.uid, "the store root is the user's");
}

/// As the user: `run` (output, USER, `--network none`), the detached lifecycle (`run -d`,
/// `ps`, `logs`, `exec`, `stop`, `rm`), `images`, `inspect`, `tag`, `save`/`load`, `push`/`pull`
/// against a local registry, `info`; the sandbox is confined exactly as for root; `-m`
/// without a delegated cgroup fails with a clear message while builds without it work.
#[test]
fn rootless_run_lifecycle_and_registry() {
    let user = User::with_range();
    user.ok(&["load", "-i", busybox_archive().to_str().unwrap()]);

    let info: Value = serde_json::from_str(&user.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Rootless"], true, "{info}");
    assert_eq!(info["RootlessDetail"]["Ready"], true, "{info}");
    assert!(
        info["RootlessDetail"]["Uids"].as_u64().unwrap() > 65536,
        "{info}"
    );
    assert_eq!(
        info["Store"]["Root"].as_str().unwrap(),
        user.store().to_str().unwrap()
    );
    assert!(user.ok(&["info"]).contains("Rootless:"));

    // run: output, identity, USER, the network.
    assert_eq!(
        user.ok(&["run", "--rm", "busybox:1.35", "echo", "hi"]),
        "hi\n"
    );
    let as_root = TestEnv::new();
    crate::support::load_busybox(&as_root);
    let root_id = as_root
        .rbuild()
        .args(["run", "--rm", "busybox:1.35", "id"])
        .output()
        .unwrap();
    assert_eq!(
        user.ok(&["run", "--rm", "busybox:1.35", "id"]),
        text(&root_id).0
    );
    assert_eq!(
        user.ok(&["run", "--rm", "-u", "1000:1000", "busybox:1.35", "id", "-u"]),
        "1000\n"
    );
    let links = user.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox:1.35",
        "sh",
        "-c",
        "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1",
    ]);
    assert_eq!(
        links.split_whitespace().last(),
        Some("lo"),
        "only a loopback: {links}"
    );

    // Confinement: Docker's capabilities, seccomp, no user namespace, no device nodes.
    let out = user.ok(&["run", "--rm", "busybox:1.35", "sh", "-c", STATUS_SCRIPT]);
    let lines: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("Seccomp_filters"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines, expected_status(DOCKER_CAPS, 2, "no-unshare"));
    let out = user.ok(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "mknod /tmp/null c 1 3 2>/dev/null && echo made || echo refused; \
         echo ok > /dev/null && echo null-ok; ls /dev",
    ]);
    assert!(out.starts_with("refused\nnull-ok\n"), "{out}");
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
    ] {
        assert!(out.lines().any(|l| l == node), "/dev/{node} missing: {out}");
    }

    // A build with RUN steps; -m fails before anything runs, with what is missing.
    let ctx = user.dir("ctx");
    write_file(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.35\nRUN echo built > /built\n",
    );
    let out = user
        .rbuild()
        .args(["build", "-m", "64m", "-t", "rl/app:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("rootless, a memory limit (-m) needs a cgroup delegated to you"),
        "{stderr}"
    );
    user.ok(&["build", "-q", "-t", "rl/app:1", ctx.to_str().unwrap()]);
    assert_eq!(
        user.ok(&["run", "--rm", "rl/app:1", "cat", "/built"]),
        "built\n"
    );

    // images, inspect, tag, save/load.
    assert!(user.ok(&["images"]).contains("rl/app"));
    let id = user.ok(&["inspect", "-f", "{{.Id}}", "rl/app:1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    user.ok(&["tag", "rl/app:1", "rl/app:2"]);
    let archive = user.dir("out").join("app.tar");
    user.ok(&["save", "-o", archive.to_str().unwrap(), "rl/app:2"]);
    user.ok(&["rmi", "rl/app:2"]);
    user.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(user.ok(&["inspect", "-f", "{{.Id}}", "rl/app:2"]), id);

    // The detached lifecycle.
    let cid = user.ok(&[
        "run",
        "-d",
        "--name",
        "rl-web",
        "busybox:1.35",
        "sh",
        "-c",
        "echo up; exec sleep 1000",
    ]);
    assert_eq!(cid.trim().len(), 64, "{cid}");
    crate::support::containers::wait_until(
        "the container logs `up`",
        std::time::Duration::from_secs(20),
        || user.ok(&["logs", "rl-web"]) == "up\n",
    );
    assert!(user.ok(&["ps"]).contains("rl-web"));
    // exec joins the namespaces of the rbuild that started the container.
    assert_eq!(
        user.ok(&["exec", "rl-web", "sh", "-c", "echo in; id -u; pidof sleep"]),
        "in\n0\n2\n"
    );
    user.ok(&["stop", "-t", "1", "rl-web"]);
    let ps = user.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert!(ps.contains("rl-web exited"), "{ps}");
    user.ok(&["rm", "rl-web"]);
    assert!(!user.ok(&["ps", "-a"]).contains("rl-web"));

    // push and pull through a local registry.
    let reg = RealRegistry::start();
    let remote = format!("{}/rootless/app:1", reg.host());
    user.ok(&["tag", "rl/app:1", &remote]);
    user.ok(&["push", &remote]);
    user.ok(&["rmi", &remote, "rl/app:1", "rl/app:2"]);
    user.ok(&["prune", "-f"]);
    user.ok(&["pull", &remote]);
    assert_eq!(user.ok(&["inspect", "-f", "{{.Id}}", &remote]), id);
    assert_eq!(
        user.ok(&["run", "--rm", &remote, "cat", "/built"]),
        "built\n"
    );
    user.ok(&["store", "fsck", "--full"]);
}

/// Rootless on the copy snapshotter — chosen (`--snapshotter copy`), or by `auto` when the
/// overlay mount is refused (forced here with `RBUILD_REFUSE_OVERLAY=1`; the fallback is said
/// once) — gives the same image as with overlay.
#[test]
fn rootless_copy_snapshotter_builds_the_same_image() {
    let user = User::with_range();
    user.ok(&["load", "-i", busybox_archive().to_str().unwrap()]);
    let ctx = user.dir("ctx");
    write_file(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.35\nRUN mkdir -p /app && echo hi > /app/f && chown 7:7 /app/f && \
         rm -rf /home && chmod 700 /etc\nRUN echo again > /app/g\n",
    );
    let build = |snapshotter: &str, tag: &str, refuse: bool| {
        let mut cmd = user.rbuild();
        if refuse {
            cmd.env("RBUILD_REFUSE_OVERLAY", "1");
        }
        let out = cmd
            .args(["--snapshotter", snapshotter, "build", "--progress", "plain"])
            .args(["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1000"])
            .args(["-t", tag])
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{snapshotter}: {:?}", text(&out));
        (user.ok(&["inspect", "-f", "{{.Id}}", tag]), text(&out).1)
    };
    let (overlay, _) = build("overlay", "via-overlay", false);
    let (copy, _) = build("copy", "via-copy", false);
    assert_eq!(overlay, copy);
    let (auto, stderr) = build("auto", "via-auto", true);
    assert_eq!(overlay, auto);
    assert_eq!(
        stderr.matches("overlay mounts are not available").count(),
        1,
        "{stderr}"
    );
    // No pids cgroup is delegated here: said once too, and the steps run.
    assert_eq!(
        stderr
            .matches("no writable pids cgroup (rootless, none is delegated)")
            .count(),
        1,
        "{stderr}"
    );
}

/// A user without subordinate ids gets, before any work, an error naming the user, the file
/// and the fix; nothing is written; `info` says the same instead of failing.
#[test]
fn rootless_without_a_range_fails_before_any_work() {
    let user = User::without_range();
    let ctx = user.dir("ctx");
    write_file(&ctx, "Dockerfile", "FROM busybox:1.35\nRUN true\n");
    for args in [
        vec!["images"],
        vec!["build", ctx.to_str().unwrap()],
        vec!["run", "--rm", "busybox:1.35", "true"],
    ] {
        let out = user.rbuild().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {:?}", text(&out));
        let stderr = text(&out).1;
        assert!(
            stderr.contains(&format!(
                "`/etc/subuid` has no range for `{WITHOUT_RANGE}` (uid {})",
                user.uid
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {WITHOUT_RANGE}"
            )),
            "{stderr}"
        );
        assert!(!user.store().exists(), "nothing was written");
    }
    let out = user.ok(&["info"]);
    assert!(
        out.contains("it cannot work: `/etc/subuid` has no range"),
        "{out}"
    );
}

/// `--userns=single` needs no range: only the user's own id, as 0. Builds and containers work
/// with every file owned by 0, in a store of its own; any other owner fails, clearly.
#[test]
fn rootless_single_id_without_a_range() {
    let user = User::without_range();
    let single = |args: &[&str]| {
        let mut all = vec!["--userns=single"];
        all.extend_from_slice(args);
        user.ok(&all)
    };
    single(&["load", "-i", busybox_archive().to_str().unwrap()]);
    assert!(user.home().join("data/rbuild-single").is_dir());
    assert!(
        !user.store().exists(),
        "never the store a mapped rbuild uses"
    );
    assert_eq!(
        single(&[
            "run",
            "--rm",
            "busybox:1.35",
            "sh",
            "-c",
            "id -u; stat -c %u /bin/busybox"
        ]),
        "0\n0\n"
    );
    let ctx = user.dir("ctx");
    write_file(&ctx, "Dockerfile", "FROM busybox:1.35\nRUN echo ok > /ok\n");
    single(&["build", "-q", "-t", "single:1", ctx.to_str().unwrap()]);
    assert_eq!(single(&["run", "--rm", "single:1", "cat", "/ok"]), "ok\n");

    write_file(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.35\nCOPY --chown=1000:1000 Dockerfile /x\n",
    );
    let out = user
        .rbuild()
        .args(["--userns=single", "build"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("an owner is outside the ids rbuild's user namespace maps"),
        "{stderr}"
    );
    assert!(stderr.contains("--userns=single"), "{stderr}");

    write_file(&ctx, "Dockerfile", "FROM busybox:1.35\nRUN chown 5 /tmp\n");
    let out = user
        .rbuild()
        .args(["--userns=single", "build"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("Invalid argument"),
        "{:?}",
        text(&out)
    );
}

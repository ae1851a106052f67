//! The shared harness of the cli's integration tests: run the real `rbuild` binary against a
//! temporary store, and find the shared conformance data beside the repository. Submodules:
//! [`host`] (the hostile-input guard), [`exec`] (in-process executor fixtures), [`store`]
//! (archive builders and store-state checks), [`oci`] (reading OCI layout archives) and
//! [`real_registry`] (a local docker-registry, shared with the registry crate's tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use assert_cmd::Command;

pub mod containers;
pub mod exec;
pub mod host;
pub mod oci;
#[path = "../../../../registry/tests/support/real_registry.rs"]
pub mod real_registry;
pub mod store;
pub mod tmux;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// `../shared` beside the repository (override with `RBUILD_SHARED`). Tests that need it
/// fail loudly when it is missing rather than silently passing.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBUILD_SHARED") {
        return PathBuf::from(dir);
    }
    let dir = repo_root().join("../shared");
    assert!(
        dir.is_dir(),
        "the shared test data is missing: expected {} (set RBUILD_SHARED)",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

/// The project's own fixtures.
pub fn testdata() -> PathBuf {
    repo_root().join("testdata")
}

/// A temporary store root plus a command builder for `rbuild` bound to it.
pub struct TestEnv {
    pub root: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            root: tempfile::Builder::new()
                .prefix("rbuild-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `rbuild --root <tmp> ...` with a clean, predictable environment.
    pub fn rbuild(&self) -> Command {
        let mut cmd = rbuild();
        cmd.arg("--root").arg(self.root.path());
        cmd
    }

    /// `rbuild build --progress plain ARGS CTX`: (success, stderr — the plain progress).
    pub fn build_plain(&self, ctx: &Path, args: &[&str]) -> (bool, String) {
        let out = self
            .rbuild()
            .args(["build", "--progress", "plain"])
            .args(args)
            .arg(ctx)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        (out.status.success(), stderr)
    }

    /// [`TestEnv::build_plain`] that must succeed; returns its stderr.
    pub fn build_plain_ok(&self, ctx: &Path, args: &[&str]) -> String {
        let (ok, stderr) = self.build_plain(ctx, args);
        assert!(ok, "build failed:\n{stderr}");
        stderr
    }
}

/// The `rbuild` binary with colours off and no inherited store location.
pub fn rbuild() -> Command {
    let mut cmd = Command::cargo_bin("rbuild").unwrap();
    cmd.env_remove("RBUILD_ROOT")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100");
    cmd
}

/// stdout and stderr as strings, for assertions and failure messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared busybox image: `../shared/images/busybox-1.35.oci.tar`.
pub fn busybox_archive() -> PathBuf {
    shared_dir().join("images/busybox-1.35.oci.tar")
}

/// The shared two-platform busybox index (linux/amd64 + linux/arm64):
/// `../shared/images/busybox-1.35-multi.oci.tar`.
pub fn busybox_multi_archive() -> PathBuf {
    shared_dir().join("images/busybox-1.35-multi.oci.tar")
}

/// Panic, saying how to fix it, unless this host can run RUN steps for `platform` (natively or
/// under a registered QEMU emulator with the F flag). Tests that need emulation never skip.
pub fn require_run_platform(platform: &str) -> rbuild_executor::RunSupport {
    let parsed: rbuild_store::Platform = platform.parse().unwrap();
    match rbuild_executor::check_run_platform(&parsed) {
        Ok(support) => support,
        Err(e) => {
            use miette::Diagnostic;
            let help = e.help().map(|h| h.to_string()).unwrap_or_default();
            panic!(
                "this test needs RUN steps for {platform} on this host, and they cannot run: {e}\n\
                 to fix: {help}\n(CI's .ci/run registers QEMU's aarch64 emulator)"
            )
        }
    }
}

/// Load the shared busybox image into `env`.
pub fn load_busybox(env: &TestEnv) {
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(busybox_archive())
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {:?}", text(&out));
}

/// Write `content` to `dir/name`, creating parent directories.
pub fn write_file(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// An external tool CI installs (skopeo, umoci, ...), failing clearly when it is missing.
pub fn tool(name: &str) -> std::process::Command {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "`{name}` is not installed (CI installs it via .ci/run)"
    );
    std::process::Command::new(name)
}

/// Run `cmd`, assert it succeeded and return its stdout.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many processes have `marker` in their command line.
pub fn processes_matching(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(marker)
        })
        .count()
}

/// The conformance-format map of a directory tree, and every entry's mtime.
pub fn describe_tree(root: &Path) -> (BTreeMap<String, String>, BTreeMap<String, i64>) {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut mtimes = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
        let own = format!("{}:{}", m.uid(), m.gid());
        let desc = if m.file_type().is_symlink() {
            format!(
                "symlink {own} -> {}",
                std::fs::read_link(e.path()).unwrap().display()
            )
        } else if m.is_dir() {
            format!("dir 0o{:o} {own}", m.mode() & 0o7777)
        } else {
            let data = std::fs::read(e.path()).unwrap();
            let h = hex::encode(sha2::Sha256::digest(&data));
            format!(
                "file 0o{:o} {own} {} {}",
                m.mode() & 0o7777,
                data.len(),
                &h[..16]
            )
        };
        mtimes.insert(rel.clone(), m.mtime());
        out.insert(rel, desc);
    }
    (out, mtimes)
}

/// Mounts made in the tests' own mount namespace (the host's), against tests that assert the
/// whole of `/proc/self/mountinfo` is unchanged across a build. As separate binaries they never
/// overlapped; in one process a tmpfs mounted by one module's test shows up in another's
/// before/after comparison. Mounters share the lock ([`mounting_on_the_host`]); a whole-table
/// comparison takes it alone ([`watching_host_mounts`]). rbuild's own mounts live in the
/// sandboxes' namespaces and need neither.
static HOST_MOUNTS: RwLock<()> = RwLock::new(());

/// Held while a test keeps a mount of its own in the host's mount namespace.
pub fn mounting_on_the_host() -> RwLockReadGuard<'static, ()> {
    HOST_MOUNTS.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while a test compares the whole mount table before and after.
pub fn watching_host_mounts() -> RwLockWriteGuard<'static, ()> {
    HOST_MOUNTS.write().unwrap_or_else(PoisonError::into_inner)
}

/// Load the two-platform busybox into `env`: `busybox:1.35-multi` names an index over both
/// platform images (`rbuild load` keeps a multi-platform archive whole).
pub fn load_busybox_multi(env: &TestEnv) {
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(busybox_multi_archive())
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {:?}", text(&out));
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let target = store.resolve_target("busybox:1.35-multi").unwrap();
    let platforms: Vec<String> = target
        .images()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
}

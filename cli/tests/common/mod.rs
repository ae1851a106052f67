//! Shared harness for the integration tests: run the real `rbuild` binary against a temporary
//! store, and find the shared conformance data beside the repository.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub mod host;

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

/// Load the shared busybox image (`../shared/images/busybox-1.35.oci.tar`) into `env`.
pub fn load_busybox(env: &TestEnv) {
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(shared_dir().join("images/busybox-1.35.oci.tar"))
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

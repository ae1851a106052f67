//! The little the three parser test binaries (`parser_*.rs`) need: the `rbuild` binary, its
//! output as text, and where the fixtures are. Everything else lives in `it/support`, the
//! harness of the cli's single integration-test binary (`it/`). Each parser binary uses a part
//! of this module, hence the `allow`; it goes away with them when they move to the parser crate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// `../shared` beside the repository (override with `RBUILD_SHARED`).
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

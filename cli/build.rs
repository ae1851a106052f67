//! Build-time facts `rbuild version` prints: the git commit the binary was built from and the
//! compiler's version. Both come from local commands (`git`, `$RUSTC --version`), never the
//! network; a source tree without git (a crate tarball) or without the `git` program gives no
//! commit, which `rbuild version` shows as "unknown".
//!
//! Why by hand: `vergen`/`built` do this too, but pull in libgit2 or a dozen crates for two
//! command lines.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(&dir).args(args));

    // The commit only: a "dirty" mark would go stale, since cargo does not rerun this script
    // when a tracked file changes without a commit.
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=RBUILD_GIT_COMMIT={}",
        commit.unwrap_or_default()
    );

    // Rerun when HEAD moves: HEAD itself, the branch it names, packed refs. Only paths that
    // exist: cargo reruns every time for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = run(Command::new(rustc).arg("--version")).unwrap_or_default();
    println!("cargo:rustc-env=RBUILD_RUSTC_VERSION={version}");
}

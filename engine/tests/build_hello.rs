//! The library example (`examples/build_hello.rs`) end to end: load the shared busybox image
//! into a temporary store, build `examples/hello` through `rbuild_engine::build`, then again
//! (every step cached). Its own `main` (no libtest harness) so that RUN steps, which start
//! this binary again as the sandbox helper, work.

#[path = "../examples/build_hello.rs"]
#[allow(dead_code)]
mod example;

use std::path::PathBuf;

use rbuild_engine::StepOutcome;

/// `../shared` beside the repository, or `RBUILD_SHARED`.
fn shared_dir() -> PathBuf {
    std::env::var_os("RBUILD_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
        PathBuf::from,
    )
}

fn main() {
    rbuild_executor::sandbox::maybe_run_helper();
    let busybox = shared_dir().join("images/busybox-1.35.oci.tar");
    assert!(
        busybox.is_file(),
        "the shared test image is missing: {} (set RBUILD_SHARED)",
        busybox.display()
    );
    let root = tempfile::Builder::new()
        .prefix("rbuild-engine-test-")
        .tempdir()
        .unwrap();

    let first = example::build_hello(root.path(), Some(&busybox), &example::StepLines)
        .unwrap_or_else(|e| panic!("build failed: {e:?}"));
    let outcomes = |r: &rbuild_engine::BuildResult| {
        r.steps
            .iter()
            .map(|s| (s.step.clone(), s.outcome))
            .collect::<Vec<_>>()
    };
    let built = outcomes(&first);
    assert!(
        built
            .iter()
            .any(|(step, o)| step.starts_with("RUN") && *o == StepOutcome::Built),
        "{built:?}"
    );
    assert_eq!(
        first.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
        ["hello:latest"]
    );
    let store = rbuild_store::Store::open(root.path()).unwrap();
    assert_eq!(
        store.resolve_image("hello").unwrap().manifest_digest,
        *first.target.digest()
    );

    // Again: every step hits the cache and the image is the same.
    let second = example::build_hello(root.path(), None, &rbuild_engine::Silent).unwrap();
    assert_eq!(second.target.digest(), first.target.digest());
    assert!(
        second.steps.iter().all(|s| s.outcome != StepOutcome::Built),
        "{:?}",
        outcomes(&second)
    );
    println!("build_hello: ok ({})", first.target.id());
}

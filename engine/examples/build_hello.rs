//! Build the bundled `examples/hello` through the library, without the cli: a tiny reporter
//! prints one line per step, and the image id is printed at the end.
//!
//! ```text
//! cargo run -p rbuild-engine --example build_hello -- [STORE_ROOT] [BUSYBOX_OCI_TAR]
//! ```
//!
//! `examples/hello` is `FROM busybox:1.35`, and this build never pulls, so the store must hold
//! that image. Either run `./scripts/demo` first (it imports busybox from Debian's
//! busybox-static into its own store, `.demo-store/`: pass that as STORE_ROOT, which defaults
//! to `$RBUILD_ROOT`, else `rbuild_store::default_root()`), or pass the shared test image
//! `../shared/images/busybox-1.35.oci.tar` as BUSYBOX_OCI_TAR and it is loaded into the store
//! first. The image is tagged `hello:latest`; run it with `rbuild --root STORE_ROOT run --rm
//! hello`. `engine/tests/build_hello.rs` runs [`build_hello`] against a temporary store.

use std::path::{Path, PathBuf};

use rbuild_engine::{BuildOptions, BuildResult, Notice, PullPolicy, Reporter};
use rbuild_solver::reporter::Event;
use rbuild_solver::worker::CancelToken;
use rbuild_store::{Reference, Store};

/// Prints one line per step on stdout, and what the engine has to say on stderr.
pub struct StepLines;

impl rbuild_solver::reporter::Reporter for StepLines {
    fn event(&self, event: Event<'_>) {
        let (stage, what, step) = match event {
            Event::StepMeta { stage, step } => (stage, "meta  ", step),
            Event::StepCached { stage, step, .. } => (stage, "cached", step),
            Event::StepMiss { stage, step, .. } => (stage, "run   ", step),
            Event::StepFailed { stage, step } => (stage, "FAILED", step),
            _ => return,
        };
        println!("[{}] {what} {}", stage.label(), step.display);
    }
}

impl Reporter for StepLines {
    fn notice(&self, notice: Notice<'_>) {
        match notice {
            Notice::Message(text) | Notice::Problem(text) | Notice::Line(text) => {
                eprintln!("{text}")
            }
            Notice::Diagnostic { report, .. } => eprintln!("{report:?}"),
            _ => {}
        }
    }
}

/// The bundled `examples/hello` directory.
pub fn hello_context() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

/// Load `busybox` (an image archive) into the store at `root` when given, then build
/// `examples/hello` there, tagged `hello:latest`, offline.
pub fn build_hello(
    root: &Path,
    busybox: Option<&Path>,
    reporter: &dyn Reporter,
) -> miette::Result<BuildResult> {
    if let Some(archive) = busybox {
        Store::open(root)?.load_file(archive)?;
    }
    let mut options = BuildOptions::new(root, hello_context());
    options.prepare.pull = PullPolicy::Never;
    options.tags = vec![Reference::parse("hello").expect("a valid name")];
    rbuild_engine::build(&options, reporter, &CancelToken::new())
}

fn main() -> miette::Result<()> {
    // RUN steps start this binary again as the sandbox helper: that must come first.
    rbuild_executor::sandbox::maybe_run_helper();
    let mut args = std::env::args_os().skip(1);
    let root = args
        .next()
        .or_else(|| std::env::var_os("RBUILD_ROOT"))
        .map_or_else(rbuild_store::default_root, PathBuf::from);
    let busybox = args.next().map(PathBuf::from);
    let result = build_hello(&root, busybox.as_deref(), &StepLines)?;
    println!("{}", result.target.id());
    Ok(())
}

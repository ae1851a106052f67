//! COPY into an image whose paths hold symlinks: destinations resolve inside the image (an
//! absolute link re-anchors at the image root), never on the host.

mod common;

use std::path::Path;

use common::{TestEnv, shared_dir, text};

fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// `/escape -> /tmp/<canary>` in the image: COPY and WORKDIR through it land in the image's
/// `/tmp/<canary>`; the host directory of that name stays empty.
#[test]
fn destination_symlinks_stay_in_the_image() {
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(shared_dir().join("images/busybox-1.35.oci.tar"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let canary = tempfile::Builder::new()
        .prefix("rbuild-canary-")
        .tempdir_in("/tmp")
        .unwrap();
    let name = canary.path().display().to_string();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM busybox:1.35\nRUN mkdir -p {name} && ln -s {name} /escape && ln -s ../../{name} /rel\n\
             COPY a.txt /escape/a.txt\nCOPY a.txt /rel/b.txt\nWORKDIR /escape/work\n"
        ),
    );
    write(ctx.path(), "a.txt", "inside\n");
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "links"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        std::fs::read_dir(canary.path()).unwrap().next().is_none(),
        "the host directory was written"
    );
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let image = store.resolve_image("links").unwrap();
    let files = rbuild_store::layer::flatten_image(&store, &image)
        .unwrap()
        .to_conformance_map();
    for path in ["a.txt", "b.txt", "work"] {
        assert!(
            files.contains_key(&format!("{name}/{path}")),
            "{path} missing from the image: {files:?}"
        );
    }
}

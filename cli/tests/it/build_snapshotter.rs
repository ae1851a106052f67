//! `--snapshotter overlay|copy` (or `RBUILD_SNAPSHOTTER`): the choice reaches RUN steps and
//! containers, and both snapshotters build the same image.

use crate::support::{self, TestEnv, text};
use std::path::Path;

fn build(env: &TestEnv, ctx: &Path, snapshotter: &str, tag: &str) -> String {
    let out = env
        .rbuild()
        .args(["--snapshotter", snapshotter, "build", "-q", "--no-cache"])
        .args(["--build-arg", "SOURCE_DATE_EPOCH=1000", "-t", tag])
        .arg(ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout.trim().to_string()
}

/// The root filesystem type seen by RUN and by `rbuild run` follows the flag, and the layers
/// the two snapshotters capture are identical.
#[test]
fn both_snapshotters_build_the_same_image() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:1.35\nRUN mkdir -p /app && echo hi > /app/f && rm -rf /home && chmod 700 /etc\n",
    )
    .unwrap();
    let overlay = build(&env, ctx.path(), "overlay", "via-overlay");
    let copy = build(&env, ctx.path(), "copy", "via-copy");
    assert_eq!(overlay, copy);

    let root_fs = |snapshotter: &str| {
        let out = env
            .rbuild()
            .args([
                "--snapshotter",
                snapshotter,
                "run",
                "--rm",
                "via-copy",
                "sh",
                "-c",
            ])
            .arg("awk '$2 == \"/\" { print $3 }' /proc/mounts")
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        text(&out).0.trim().to_string()
    };
    assert_eq!(root_fs("overlay"), "overlay");
    assert_ne!(root_fs("copy"), "overlay");

    let out = env
        .rbuild()
        .args(["--snapshotter", "zfs", "images"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("overlay"), "{:?}", text(&out));
}

//! Bad input through the CLI (issue list and catalogue §4.D/§4.F): every case fails with a
//! pointed error and a non-zero exit, the store is byte-for-byte unchanged and passes
//! `fsck --full`, and canary files beside the store are untouched.

use std::path::{Path, PathBuf};

use crate::support::store::*;
use crate::support::{TestEnv, load_busybox, text};
use rbuild_store::Digest;
use rbuild_store::testing::{TarBuilder, gzip};

struct Case {
    env: TestEnv,
    canary: PathBuf,
    work: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let env = TestEnv::new();
        load_busybox(&env);
        let work = tempfile::tempdir().unwrap();
        let canary = work.path().join("canary");
        std::fs::write(&canary, b"canary").unwrap();
        Case { env, canary, work }
    }

    /// Load `archive`; it must fail mentioning `needle` and change nothing.
    fn refused(&self, archive: &[u8], needle: &str, env_vars: &[(&str, &str)]) {
        let before = store_state(self.env.root());
        let file = self.work.path().join("input.tar");
        std::fs::write(&file, archive).unwrap();
        let mut cmd = self.env.rbuild();
        for (k, v) in env_vars {
            cmd.env(k, v);
        }
        let out = cmd.args(["load", "-i"]).arg(&file).output().unwrap();
        let (o, e) = text(&out);
        assert!(!out.status.success(), "accepted ({needle}): {o}");
        assert!(
            matches!(out.status.code(), Some(1) | Some(4)),
            "exit {:?}",
            out.status.code()
        );
        assert!(e.contains(needle), "stderr lacks `{needle}`:\n{e}");
        assert_eq!(
            store_state(self.env.root()),
            before,
            "store changed ({needle})"
        );
        assert_fsck_ok(&self.env);
        assert_eq!(std::fs::read(&self.canary).unwrap(), b"canary");
        assert_eq!(
            std::fs::read_dir(self.env.root().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }
}

fn layer(build: impl FnOnce(&mut TarBuilder)) -> Vec<u8> {
    let mut t = TarBuilder::new();
    build(&mut t);
    t.finish()
}

fn archive_with(l: Vec<u8>) -> Vec<u8> {
    Parts::new("docker.io/library/evil:1", vec![l]).build()
}

/// Hostile layers inside an otherwise valid archive are refused.
#[test]
fn hostile_layers_are_refused() {
    let c = Case::new();
    let canary = c.canary.display().to_string();
    c.refused(
        &archive_with(layer(|t| {
            t.file("../../canary", b"pwned");
        })),
        "`..`",
        &[],
    );
    c.refused(
        &archive_with(layer(|t| {
            t.symlink("x", Path::new(&canary).parent().unwrap().to_str().unwrap())
                .file("x/canary", b"pwned");
        })),
        "symlink",
        &[],
    );
    c.refused(
        &archive_with(layer(|t| {
            t.hardlink("h", "../../../etc/passwd");
        })),
        "hardlink",
        &[],
    );
    c.refused(
        &archive_with(layer(|t| {
            t.hardlink("h", &canary);
        })),
        "hardlink",
        &[],
    );
    for w in [".wh..", ".wh...", "etc/.wh..", ".wh."] {
        c.refused(
            &archive_with(layer(|t| {
                t.file(w, b"");
            })),
            "whiteout",
            &[],
        );
    }
    c.refused(
        &archive_with(layer(|t| {
            t.file("a", b"1").file("./a", b"2");
        })),
        "twice",
        &[],
    );
    c.refused(
        &archive_with(layer(|t| {
            t.huge_pax_header(2 << 20);
        })),
        "exceeds the limit",
        &[],
    );
    c.refused(
        &archive_with(layer(|t| {
            t.char_device("w", 0, 0);
        })),
        "whiteout",
        &[],
    );
}

/// A gzip bomb stops at RBUILD_MAX_LAYER_SIZE with an error naming the limit and the knob.
#[test]
fn gzip_bomb_is_bounded_by_the_configured_limit() {
    let c = Case::new();
    let l = layer(|t| {
        t.file("zeros", &vec![0u8; 8 << 20]);
    });
    let mut p = Parts::new("docker.io/library/bomb:1", vec![gzip(&l)]);
    p.layer_media = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    p.config["rootfs"]["diff_ids"] = serde_json::json!([Digest::of(&l).to_string()]);
    c.refused(
        &p.build(),
        "RBUILD_MAX_LAYER_SIZE",
        &[("RBUILD_MAX_LAYER_SIZE", "1M")],
    );
}

/// Broken archives: truncation, digest mismatch, missing blob, bad JSON, wrong media type,
/// two images under one name.
#[test]
fn broken_archives_are_refused() {
    let c = Case::new();
    let good = archive_with(small_layer("ok"));
    c.refused(&good[..good.len() / 2 + 7], "truncated", &[]);
    c.refused(&good[..good.len() - 1024], "truncated", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.corrupt_blob = Some(0);
    c.refused(&p.build(), "digest mismatch", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.drop_blob = Some(1);
    c.refused(&p.build(), "lacks", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.manifest_override = Some(b"{\"schemaVersion\": 2,".to_vec());
    c.refused(&p.build(), "invalid manifest", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.manifest_override = Some(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec());
    c.refused(&p.build(), "mediaType", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.config["rootfs"]["diff_ids"] = serde_json::json!([Digest::of(b"other").to_string()]);
    c.refused(&p.build(), "diff_id", &[]);
    let mut p = Parts::new("docker.io/library/x:1", vec![small_layer("ok")]);
    p.layer_media = "text/plain".into();
    c.refused(&p.build(), "not a layer type", &[]);
    c.refused(
        &b"not a tar archive, just text. ".repeat(40),
        "not a tar archive",
        &[],
    );

    // Two images under one name.
    let a = Parts::new("docker.io/library/dup:1", vec![small_layer("a")]);
    let b = Parts::new("docker.io/library/dup:1", vec![small_layer("b")]);
    c.refused(&merge(&[a, b]), "two different images", &[]);
}

/// Device nodes in a loaded layer are only entries: the load succeeds and nothing is created.
#[test]
fn devices_are_kept_as_entries_never_created_by_load() {
    let c = Case::new();
    let l = layer(|t| {
        t.dir("dev")
            .char_device("dev/mem", 1, 1)
            .char_device("dev/sda", 8, 0);
    });
    let file = c.work.path().join("dev.tar");
    std::fs::write(&file, archive_with(l)).unwrap();
    c.env
        .rbuild()
        .args(["load", "-i"])
        .arg(&file)
        .assert()
        .success();
    for e in walkdir::WalkDir::new(c.env.root()) {
        let e = e.unwrap();
        let ft = e.file_type();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            !ft.is_char_device() && !ft.is_block_device(),
            "device created: {}",
            e.path().display()
        );
    }
    assert_fsck_ok(&c.env);
}

/// An absolute entry name means that path inside the image (catalogue D2, as Docker and
/// containerd read it): the archive loads, the file lands in the image's root filesystem, and
/// the host file of that name is never touched.
#[test]
fn absolute_layer_names_are_rooted_inside_the_image() {
    let c = Case::new();
    let canary = c.canary.display().to_string();
    let file = c.work.path().join("abs.tar");
    std::fs::write(
        &file,
        archive_with(layer(|t| {
            t.file(&canary, b"inside").hardlink("/linked", &canary);
        })),
    )
    .unwrap();
    let out = c
        .env
        .rbuild()
        .args(["load", "-i"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_fsck_ok(&c.env);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM evil:1\n").unwrap();
    let dest = c.work.path().join("rootfs");
    let out = c
        .env
        .rbuild()
        .args(["build", "-q", "-o"])
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let inside = dest.join(canary.trim_start_matches('/'));
    assert_eq!(std::fs::read(&inside).unwrap(), b"inside");
    assert_eq!(std::fs::read(dest.join("linked")).unwrap(), b"inside");
    assert_eq!(std::fs::read(&c.canary).unwrap(), b"canary");
}

//! COPY into an image whose paths hold symlinks: destinations resolve inside the image (an
//! absolute link re-anchors at the image root), never on the host.

mod common;

use std::path::Path;

use common::{TestEnv, text};

fn write(dir: &Path, name: &str, content: &str) {
    common::write_file(dir, name, content);
}

/// `/escape -> /tmp/<canary>` in the image: COPY and WORKDIR through it land in the image's
/// `/tmp/<canary>`; the host directory of that name stays empty.
#[test]
fn destination_symlinks_stay_in_the_image() {
    let env = TestEnv::new();
    common::load_busybox(&env);
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

/// The store, the last layer's diff_id and its chain id (what names its snapshot).
fn layer_of_last_step(
    env: &TestEnv,
    tag: &str,
) -> (
    rbuild_store::Store,
    rbuild_store::Digest,
    rbuild_store::Digest,
) {
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let image = store.resolve_image(tag).unwrap();
    let diff_id = image.layers.last().unwrap().diff_id.clone();
    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = rbuild_store::chain::chain_ids(&diff_ids).pop().unwrap();
    (store, diff_id, chain)
}

/// Rebuilding a COPY after one file changed reuses the unchanged files of the previous layer's
/// snapshot (same inode), and the new layer has the new content — even when the changed file
/// kept its size and mtime (content is checked, not trusted).
#[test]
fn changed_copy_reuses_unchanged_files_safely() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", "FROM scratch\nCOPY . /app/\n");
    for i in 0..20 {
        write(ctx.path(), &format!("src/f{i}.txt"), &format!("file {i}\n"));
    }
    let build = || {
        let out = env
            .rbuild()
            .args(["build", "-q", "-t", "reuse"])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
    };
    build();
    let (store, first, first_chain) = layer_of_last_step(&env, "reuse");
    let first_snapshot = store.snapshot_path(&first_chain);

    // Same size, same mtime, different bytes.
    let changed = ctx.path().join("src/f3.txt");
    let mtime = std::fs::metadata(&changed).unwrap().modified().unwrap();
    std::fs::write(&changed, "FILE 3\n").unwrap();
    let f = std::fs::File::options().write(true).open(&changed).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    // (The context's stat cache still notices: the ctime changed.)
    build();
    let (store, second, second_chain) = layer_of_last_step(&env, "reuse");
    assert_ne!(first, second);
    let second_snapshot = store.snapshot_path(&second_chain);
    let ino = |root: &Path, p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(
        ino(&first_snapshot, "app/src/f1.txt"),
        ino(&second_snapshot, "app/src/f1.txt")
    );
    assert_ne!(
        ino(&first_snapshot, "app/src/f3.txt"),
        ino(&second_snapshot, "app/src/f3.txt")
    );
    let image = store.resolve_image("reuse").unwrap();
    let files = rbuild_store::layer::flatten_image(&store, &image)
        .unwrap()
        .to_conformance_map();
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"FILE 3\n"));
    assert!(
        files["/app/src/f3.txt"].ends_with(&want[..16]),
        "{}",
        files["/app/src/f3.txt"]
    );
}

/// `--chown=UID` means UID:UID and `--chown=NAME` the user's passwd group, as in BuildKit;
/// RUN and `rbuild run` get `HOME` from the user's passwd entry, as runc gives it.
#[test]
fn chown_groups_and_home_follow_buildkit() {
    let env = TestEnv::new();
    common::load_busybox(&env);
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "f", "x\n");
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox:1.35\n\
         RUN echo 'app:x:1500:2000::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:2000:' >> /etc/group\n\
         COPY --chown=4242 f /a\n\
         COPY --chown=1500 f /b\n\
         COPY --chown=app f /c\n\
         COPY --chown=app:0 f /d\n\
         RUN echo $HOME > /root-home\n\
         USER app\n\
         RUN echo $HOME > /tmp/app-home\n",
    );
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "owners"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let out = env
        .rbuild()
        .args(["run", "--rm", "-u", "0", "owners", "sh", "-c"])
        .arg("stat -c %u:%g /a /b /c /d; cat /root-home /tmp/app-home; echo $HOME")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "4242:4242",
            "1500:1500",
            "1500:2000",
            "1500:0",
            "/root",
            "/home/app",
            "/root"
        ]
    );
    let out = env
        .rbuild()
        .args([
            "run",
            "--rm",
            "-e",
            "HOME=/elsewhere",
            "owners",
            "sh",
            "-c",
            "echo $HOME",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "/elsewhere\n", "{:?}", text(&out));
}

/// `COPY --parents proj/**/a.js /out/` copies every `a.js` below `proj` (none of them one
/// level down) keeping its path, as BuildKit's include patterns do; `b.js` stays out.
#[test]
fn copy_parents_double_star_keeps_every_deep_match() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM scratch\nCOPY --parents proj/**/a.js /out/\n",
    );
    for f in ["proj/x/a.js", "proj/x/y/a.js", "proj/x/b.js", "other/a.js"] {
        write(ctx.path(), f, f);
    }
    let dest = tempfile::tempdir().unwrap();
    let out = env
        .rbuild()
        .args(["build", "-q", "-o"])
        .arg(format!(
            "type=local,dest={}",
            dest.path().join("fs").display()
        ))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let fs = dest.path().join("fs");
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("out/proj/x/a.js"), "proj/x/a.js");
    assert_eq!(read("out/proj/x/y/a.js"), "proj/x/y/a.js");
    assert!(!fs.join("out/proj/x/b.js").exists());
    assert!(!fs.join("out/other").exists());
}

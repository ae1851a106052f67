//! COPY into an image whose paths hold symlinks: destinations resolve inside the image (an
//! absolute link re-anchors at the image root), never on the host.

use crate::support::{self, TestEnv, text, write_file as write};
use std::path::Path;

/// `/escape -> /tmp/<canary>` in the image: COPY and WORKDIR through it land in the image's
/// `/tmp/<canary>`; the host directory of that name stays empty.
#[test]
fn destination_symlinks_stay_in_the_image() {
    let env = TestEnv::new();
    support::load_busybox(&env);
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
    support::load_busybox(&env);
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

/// A build context holding `dockerfile` and `files`.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", dockerfile);
    for (name, content) in files {
        write(ctx.path(), name, content);
    }
    ctx
}

fn build_ctx(env: &TestEnv, tag: &str, ctx: &Path) {
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", tag])
        .arg(ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Run `script` in `image` and return its stdout lines.
fn run_lines(env: &TestEnv, image: &str, script: &str) -> Vec<String> {
    let out = env
        .rbuild()
        .args(["run", "--rm", image, "sh", "-c", script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout.lines().map(str::to_string).collect()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Copying a directory's contents into an existing directory leaves that directory's mode and
/// owner alone (from the context and from a stage); `--chown`/`--chmod` apply to what is
/// copied and to the parents the copy creates — with an octal `--chmod` only, a symbolic one
/// leaves created parents at 0755, as BuildKit does. `--link` builds on an empty tree, so its
/// destination is a created parent (0755), not the source directory's mode.
#[test]
fn copy_into_existing_directories_keeps_their_mode_and_owner() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let ctx = context(
        "FROM busybox:1.35 AS src\n\
         RUN mkdir -p /srcdir/sub && echo s > /srcdir/sub/s && chmod 700 /srcdir\n\
         FROM busybox:1.35\n\
         RUN chmod 1777 /tmp && mkdir -m 750 /home/u && chown 7:8 /home/u\n\
         COPY conf/ /tmp/\n\
         COPY --chmod=644 conf/ /etc/\n\
         COPY --chown=5:5 home/ /home/u/\n\
         COPY --from=src --chown=6:6 --chmod=600 /srcdir/ /home/u/\n\
         COPY --chmod=u+x,g-w plain.txt /sym/new/\n\
         COPY --chmod=0640 plain.txt /oct/new/\n\
         COPY --link conf/ /linked/\n",
        &[
            ("conf/a.conf", "a\n"),
            ("home/.profile", "p\n"),
            ("plain.txt", "x\n"),
        ],
    );
    chmod(&ctx.path().join("conf"), 0o700);
    chmod(&ctx.path().join("home"), 0o700);
    build_ctx(&env, "modes", ctx.path());
    let lines = run_lines(
        &env,
        "modes",
        "stat -c '%n %a %u:%g' /tmp /tmp/a.conf /etc /etc/a.conf /home/u /home/u/.profile \
         /home/u/sub /home/u/sub/s /sym /sym/new /sym/new/plain.txt /oct /oct/new /linked",
    );
    assert_eq!(
        lines,
        [
            "/tmp 1777 0:0",
            "/tmp/a.conf 644 0:0",
            "/etc 755 0:0",
            "/etc/a.conf 644 0:0",
            "/home/u 750 7:8",
            "/home/u/.profile 644 5:5",
            "/home/u/sub 600 6:6",
            "/home/u/sub/s 600 6:6",
            "/sym 755 0:0",
            "/sym/new 755 0:0",
            "/sym/new/plain.txt 744 0:0",
            "/oct 640 0:0",
            "/oct/new 640 0:0",
            "/linked 755 0:0",
        ]
    );
}

/// `ADD rootfs.tar.xz /` extracts into the root (how base images are made), `ADD file /`
/// copies the file there, ADD of a non-archive to `dir/` creates the directory, and several
/// archives extract in source order.
#[test]
fn add_archives_and_files_to_the_root() {
    let env = TestEnv::new();
    let ctx = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    write(rootfs.path(), "etc/os-release", "ID=test\n");
    write(rootfs.path(), "bin/tool", "#!/bin/sh\n");
    support::run_ok(
        support::tool("tar")
            .arg("-C")
            .arg(rootfs.path())
            .arg("-cJf")
            .arg(ctx.path().join("rootfs.tar.xz"))
            .arg("."),
    );
    let over = tempfile::tempdir().unwrap();
    write(over.path(), "etc/os-release", "ID=over\n");
    support::run_ok(
        support::tool("tar")
            .arg("-C")
            .arg(over.path())
            .arg("-czf")
            .arg(ctx.path().join("a-over.tar.gz"))
            .arg("."),
    );
    write(
        ctx.path(),
        "Dockerfile",
        "FROM scratch\nADD rootfs.tar.xz /\nADD notes.txt /\nADD notes.txt /docs/\nADD notes.txt /renamed\n\
         ADD rootfs.tar.xz a-over.tar.gz /both/\n",
    );
    write(ctx.path(), "notes.txt", "notes\n");
    let dest = tempfile::tempdir().unwrap();
    let fs = dest.path().join("fs");
    let out = env
        .rbuild()
        .args(["build", "-q", "-o"])
        .arg(format!("type=local,dest={}", fs.display()))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("etc/os-release"), "ID=test\n");
    assert_eq!(read("bin/tool"), "#!/bin/sh\n");
    assert_eq!(read("notes.txt"), "notes\n");
    assert_eq!(read("docs/notes.txt"), "notes\n");
    assert_eq!(read("renamed"), "notes\n");
    assert!(!fs.join("rootfs.tar.xz").exists());
    // Archives extract in source order: the later one wins where they overlap.
    assert_eq!(read("both/etc/os-release"), "ID=over\n");
    assert_eq!(read("both/bin/tool"), "#!/bin/sh\n");
}

/// Wildcards matching nothing copy nothing (one or several, from the context or a stage); a
/// destination whose last component is a symlink is written through it (dangling too);
/// `COPY --parents --from` keeps the parent directories; `COPY --from` copies a FIFO.
#[test]
fn wildcards_links_parents_and_fifos() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let ctx = context(
        "FROM busybox:1.35 AS src\n\
         RUN mkfifo -m 640 /pipe && mkdir -p /app/pkg/lib && echo m > /app/pkg/lib/m.js \
             && echo o > /app/other.txt && chmod 750 /app/pkg\n\
         FROM busybox:1.35\n\
         RUN ln -s /etc/target /dangling && ln -s /etc /etclink && mkdir /work\n\
         WORKDIR /work\n\
         COPY package.json yarn.lock* ./\n\
         COPY none* nothing.[ab] /empty/\n\
         COPY --from=src /none* /empty2/\n\
         COPY plain.txt /dangling\n\
         COPY plain.txt /etclink\n\
         COPY --from=src --parents /app/./pkg/lib/m.js /out/\n\
         COPY --from=src --parents /app/**/*.js /all/\n\
         COPY --from=src /pipe /pipe\n",
        &[("package.json", "{}\n"), ("plain.txt", "x\n")],
    );
    build_ctx(&env, "misc", ctx.path());
    let lines = run_lines(
        &env,
        "misc",
        "ls /work; ls -d /empty /empty2 2>&1; cat /etc/target /etc/plain.txt; \
         readlink /dangling; readlink /etclink; stat -c '%n %a %F' /out/pkg /out/pkg/lib/m.js \
         /all/app/pkg/lib/m.js /pipe; ls /all/app",
    );
    assert_eq!(
        lines,
        [
            "package.json",
            "ls: /empty: No such file or directory",
            "ls: /empty2: No such file or directory",
            "x",
            "x",
            "/etc/target",
            "/etc",
            "/out/pkg 750 directory",
            "/out/pkg/lib/m.js 644 regular file",
            "/all/app/pkg/lib/m.js 644 regular file",
            "/pipe 640 fifo",
            "pkg",
        ]
    );
}

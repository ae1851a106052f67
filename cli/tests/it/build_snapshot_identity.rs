//! Snapshot identity: a snapshot is a whole filesystem view, keyed by the chain of layers below
//! it (OCI ChainID), never by one layer's diff_id. Every view of a built image must agree: what
//! the last RUN saw, `rbuild run`, `-o type=local`, and the image after `save | load` into a
//! fresh store (flattened, and run there). Also: hostile layers (entries below a lower layer's
//! absolute symlink, whiteouts through symlinks) resolve in-root the same way for `rbuild run`
//! (overlay snapshots) and for exports (the flattener).

use crate::support::{self, TestEnv, text, write_file};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

/// Paths whose content comes from the sandbox (mounts), not the image.
const MOUNTED: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
];

/// One line per path: `dir 755 0:0`, `file 644 0:0 SIZE SHA256`, `symlink 0:0 -> TARGET`.
type Listing = BTreeMap<String, String>;

fn mounted(path: &str) -> bool {
    MOUNTED
        .iter()
        .any(|m| path == *m || path.starts_with(&format!("{m}/")))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The listing of a directory on the host (an `-o type=local` export).
fn listing_of_dir(root: &Path) -> Listing {
    let mut out = Listing::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if mounted(&rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let own = format!("{}:{}", meta.uid(), meta.gid());
        let perm = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let line = if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            format!("symlink {own} -> {}", target.to_string_lossy())
        } else if ft.is_dir() {
            format!("dir {perm:o} {own}")
        } else if ft.is_file() {
            let data = std::fs::read(entry.path()).unwrap();
            format!("file {perm:o} {own} {} {}", data.len(), sha256_hex(&data))
        } else {
            format!("other {perm:o} {own}")
        };
        out.insert(rel, line);
    }
    out
}

/// The listing of a stored image, flattened by the store (what exports are made from).
fn listing_of_flattened(root: &Path, image: &str) -> Listing {
    use rbuild_store::layer::FlatKind;
    let store = rbuild_store::Store::open(root).unwrap();
    let image = store.resolve_image(image).unwrap();
    let tree = rbuild_store::layer::flatten_image(&store, &image).unwrap();
    let mut out = Listing::new();
    for (path, e) in &tree.entries {
        let rel = String::from_utf8_lossy(path).into_owned();
        if mounted(&rel) {
            continue;
        }
        let own = format!("{}:{}", e.uid, e.gid);
        let perm = e.mode & 0o7777;
        let line = match &e.kind {
            FlatKind::Dir => format!("dir {perm:o} {own}"),
            FlatKind::File { size, sha256 } => format!("file {perm:o} {own} {size} {sha256}"),
            FlatKind::Symlink { target } => {
                format!("symlink {own} -> {}", String::from_utf8_lossy(target))
            }
            _ => format!("other {perm:o} {own}"),
        };
        out.insert(rel, line);
    }
    out
}

/// The script `rbuild run` uses to list its root filesystem: metadata of every path (one
/// `stat` for all), then content hashes, then symlink targets.
const LIST_SCRIPT: &str = r#"cd / || exit 1
echo '#stat'
find . -xdev -exec stat -c '%n|%F|%a|%u|%g|%s' {} +
echo '#sha'
find . -xdev -type f -exec sha256sum {} +
echo '#link'
find . -xdev -type l | while read -r p; do echo "$p|$(readlink "$p")"; done
"#;

/// The listing of the root filesystem `rbuild run` gives a container of `image`.
fn listing_of_run(env_root: &Path, snapshotter: &str, image: &str) -> Listing {
    let out = support::rbuild()
        .arg("--root")
        .arg(env_root)
        .args(["--snapshotter", snapshotter, "run", "--rm", image])
        .args(["sh", "-c", LIST_SCRIPT])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "run listing: {stderr}");
    let mut stats: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut shas: BTreeMap<String, String> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut section = "";
    for line in stdout.lines() {
        if let Some(s) = line.strip_prefix('#') {
            section = match s {
                "stat" => "stat",
                "sha" => "sha",
                "link" => "link",
                _ => panic!("unexpected line {line}"),
            };
            continue;
        }
        let rel = |p: &str| p.strip_prefix("./").unwrap_or(p).to_string();
        match section {
            "stat" => {
                let parts: Vec<String> = line.split('|').map(str::to_string).collect();
                assert_eq!(parts.len(), 6, "stat line {line:?}");
                stats.insert(rel(&parts[0]), parts[1..].to_vec());
            }
            "sha" => {
                let (sum, path) = line.split_once("  ").expect("sha256sum line");
                shas.insert(rel(path), sum.to_string());
            }
            "link" => {
                let (path, target) = line.split_once('|').expect("link line");
                links.insert(rel(path), target.to_string());
            }
            _ => panic!("output before the first section: {line:?}"),
        }
    }
    let mut out = Listing::new();
    for (path, f) in stats {
        if path == "." || mounted(&path) {
            continue;
        }
        let perm = u32::from_str_radix(&f[1], 8).unwrap();
        let own = format!("{}:{}", f[2], f[3]);
        let line = match f[0].as_str() {
            "directory" => format!("dir {perm:o} {own}"),
            "regular file" | "regular empty file" => {
                format!("file {perm:o} {own} {} {}", f[4], shas[&path])
            }
            "symbolic link" => format!("symlink {own} -> {}", links[&path]),
            _ => format!("other {perm:o} {own}"),
        };
        out.insert(path, line);
    }
    out
}

/// Lines that differ between two listings, for failure messages.
fn diff(a_name: &str, a: &Listing, b_name: &str, b: &Listing) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            Some(w) if w == v => {}
            Some(w) => s.push_str(&format!("  {k}: {a_name}={v} {b_name}={w}\n")),
            None => s.push_str(&format!("  {k}: only in {a_name} ({v})\n")),
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            s.push_str(&format!("  {k}: only in {b_name} ({v})\n"));
        }
    }
    s
}

fn assert_same(a_name: &str, a: &Listing, b_name: &str, b: &Listing) {
    assert!(
        a == b,
        "{a_name} and {b_name} differ:\n{}",
        diff(a_name, a, b_name, b)
    );
}

/// `rbuild build` with a local export; returns the export directory.
fn build(env: &TestEnv, ctx: &Path, snapshotter: &str, tag: &str, out: &Path) -> PathBuf {
    let dest = out.join(format!("local-{}", rand_suffix()));
    let result = env
        .rbuild()
        .args(["--snapshotter", snapshotter, "build", "-q", "-t", tag])
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(ctx)
        .output()
        .unwrap();
    let (_, stderr) = text(&result);
    assert!(result.status.success(), "build: {stderr}");
    dest
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// `rbuild save IMG | rbuild load` into the fresh store at `fresh`.
fn save_load(env: &TestEnv, image: &str, fresh: &Path, tmp: &Path) {
    let archive = tmp.join(format!("img-{}.tar", rand_suffix()));
    let out = env
        .rbuild()
        .args(["save", "-o"])
        .arg(&archive)
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "save: {:?}", text(&out));
    let out = support::rbuild()
        .arg("--root")
        .arg(fresh)
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {:?}", text(&out));
    std::fs::remove_file(&archive).unwrap();
}

fn run_cat(root: &Path, snapshotter: &str, image: &str, path: &str) -> String {
    let out = support::rbuild()
        .arg("--root")
        .arg(root)
        .args([
            "--snapshotter",
            snapshotter,
            "run",
            "--rm",
            image,
            "cat",
            path,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "run cat {path}: {:?}", text(&out));
    text(&out).0
}

/// Build, then every view of the image must agree: `rbuild run`, `-o type=local`, and the
/// image after `save | load` into a fresh store (flattened, and run there).
fn check_views(env: &TestEnv, ctx: &Path, snapshotter: &str, tag: &str, tmp: &Path) -> Listing {
    let local = listing_of_dir(&build(env, ctx, snapshotter, tag, tmp));
    let run = listing_of_run(env.root(), snapshotter, tag);
    assert_same("rbuild run", &run, "-o type=local", &local);
    let fresh = tmp.join(format!("fresh-{}", rand_suffix()));
    save_load(env, tag, &fresh, tmp);
    let flat = listing_of_flattened(&fresh, tag);
    assert_same("-o type=local", &local, "save|load (flattened)", &flat);
    local
}

const REPRO: &str = "FROM busybox:1.35
WORKDIR /app
COPY requirements.txt .
RUN cat requirements.txt > /installed.txt
COPY . .
RUN cat /app/requirements.txt > /seen.txt
";

/// The reported bug: `COPY . .` leaves out files equal to the layer below, so after
/// `requirements.txt` changes its layer keeps its diff_id; the snapshot made on the first
/// build's parent must not be reused on the new parent.
fn repro(snapshotter: &str) {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_file(&ctx, "Dockerfile", REPRO);
    write_file(&ctx, "requirements.txt", "flask\n");
    write_file(&ctx, "app.py", "print(1)\n");
    check_views(&env, &ctx, snapshotter, "repro", tmp.path());

    write_file(&ctx, "requirements.txt", "flask\nrequests\n");
    let local = check_views(&env, &ctx, snapshotter, "repro", tmp.path());
    let want = "flask\nrequests\n";
    for path in ["/installed.txt", "/seen.txt", "/app/requirements.txt"] {
        assert_eq!(
            run_cat(env.root(), snapshotter, "repro", path),
            want,
            "{path}"
        );
    }
    assert!(
        local["seen.txt"].contains(&sha256_hex(want.as_bytes())),
        "{}",
        local["seen.txt"]
    );
    // The loaded copy, run from snapshots unpacked in the fresh store, agrees as well.
    let fresh = tmp.path().join("fresh-repro");
    save_load(&env, "repro", &fresh, tmp.path());
    assert_eq!(run_cat(&fresh, snapshotter, "repro", "/seen.txt"), want);
    let out = support::rbuild()
        .arg("--root")
        .arg(env.root())
        .args(["store", "fsck", "--full"])
        .output()
        .unwrap();
    assert!(out.status.success(), "fsck: {:?}", text(&out));
}

#[test]
fn a_changed_lower_layer_is_seen_by_later_steps_overlay() {
    repro("overlay");
}

#[test]
fn a_changed_lower_layer_is_seen_by_later_steps_copy() {
    repro("copy");
}

// ---------------------------------------------------------------------------------------------
// Property test: random context edits and rebuilds; all views agree after every build.

const PROP_DOCKERFILE: &str = "FROM busybox:1.35
WORKDIR /app
COPY requirements.txt .
RUN cat requirements.txt > /installed.txt
COPY a/ ./a/
RUN touch /app/a/.keep && rm -rf /app/a/sub && find /app | sort > /seen1.txt
COPY . .
RUN find /app -type f | sort | xargs cat > /seen2.txt; chmod -R go-w /app
";

/// Context paths the edits touch (`requirements.txt` and `a/` always exist).
const PATHS: &[&str] = &["requirements.txt", "a/x", "a/y", "a/sub/z", "top", "top2"];

#[derive(Debug, Clone)]
enum Edit {
    /// Create or overwrite a file (replacing a directory).
    Write(usize, u8),
    Delete(usize),
    Chmod(usize, u32),
    /// Replace the path by a directory holding one file.
    MakeDir(usize, u8),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let i = 0..PATHS.len();
    prop_oneof![
        (i.clone(), 0u8..4).prop_map(|(i, v)| Edit::Write(i, v)),
        i.clone().prop_map(Edit::Delete),
        (
            i.clone(),
            prop_oneof![Just(0o644u32), Just(0o755), Just(0o600)]
        )
            .prop_map(|(i, m)| Edit::Chmod(i, m)),
        (i, 0u8..3).prop_map(|(i, v)| Edit::MakeDir(i, v)),
    ]
}

fn apply(ctx: &Path, edit: &Edit) {
    let (i, path) = match edit {
        Edit::Write(i, _) | Edit::Delete(i) | Edit::Chmod(i, _) | Edit::MakeDir(i, _) => {
            (*i, ctx.join(PATHS[*i]))
        }
    };
    let remove = |p: &Path| {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                std::fs::remove_dir_all(p).unwrap();
            } else {
                std::fs::remove_file(p).unwrap();
            }
        }
    };
    match edit {
        Edit::Write(_, v) => {
            remove(&path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                &path,
                format!("{} v{v}\n", PATHS[i]).repeat(*v as usize + 1),
            )
            .unwrap();
        }
        Edit::Delete(_) if PATHS[i] == "requirements.txt" => {
            std::fs::write(&path, "").unwrap();
        }
        Edit::Delete(_) => remove(&path),
        Edit::Chmod(_, mode) => {
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
        }
        Edit::MakeDir(_, _) if PATHS[i] == "requirements.txt" => {}
        Edit::MakeDir(_, v) => {
            remove(&path);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("inner"), format!("inner v{v}\n")).unwrap();
        }
    }
    std::fs::create_dir_all(ctx.join("a")).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        max_shrink_iters: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_context_edits_keep_every_view_identical(
        overlay in any::<bool>(),
        rounds in prop::collection::vec(prop::collection::vec(edit_strategy(), 1..4), 3..5),
    ) {
        let snapshotter = if overlay { "overlay" } else { "copy" };
        let env = TestEnv::new();
        support::load_busybox(&env);
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        write_file(&ctx, "Dockerfile", PROP_DOCKERFILE);
        write_file(&ctx, "requirements.txt", "base\n");
        write_file(&ctx, "a/x", "x\n");
        check_views(&env, &ctx, snapshotter, "prop", tmp.path());
        for edits in &rounds {
            for e in edits {
                apply(&ctx, e);
            }
            check_views(&env, &ctx, snapshotter, "prop", tmp.path());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile layers: one in-root rule for snapshots (RUN, `rbuild run`) and the flattener (exports).

/// Layers with entries below a lower layer's absolute (and escaping relative) symlinks, a
/// whiteout and an opaque marker reached through symlinks, and a whiteout of the symlink itself.
/// containerd applies each layer on the mounted chain below, resolving every parent in-root
/// through those symlinks; the snapshots must do the same, so `rbuild run` (both snapshotters),
/// `-o type=local` and the flattened store agree, and nothing outside the root is touched.
#[test]
fn hostile_layers_resolve_in_root_the_same_way_everywhere() {
    use rbuild_store::testing::TarBuilder;
    let env = TestEnv::new();
    support::load_busybox(&env);
    let work = tempfile::tempdir().unwrap();
    // Host canaries: the absolute symlink names a real host directory.
    let canary_dir = work.path().join("canary-dir");
    std::fs::create_dir(&canary_dir).unwrap();
    std::fs::write(canary_dir.join("keep"), b"host").unwrap();
    let canary = canary_dir.display().to_string();
    let canary_in_root = canary.trim_start_matches('/').to_string();

    let busybox = {
        let store = rbuild_store::Store::open(env.root()).unwrap();
        let image = store.resolve_image("busybox:1.35").unwrap();
        assert_eq!(image.layers.len(), 1);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut store.open_layer(&image.layers[0].descriptor).unwrap(),
            &mut bytes,
        )
        .unwrap();
        bytes
    };
    let l1 = {
        let mut t = TarBuilder::new();
        t.symlink("esc", &canary)
            .symlink("rel", "../../../etc")
            .dir("victim")
            .file("victim/keep", b"keep")
            .file("victim/gone", b"gone")
            .symlink("vlink", "/victim")
            .dir("d")
            .file("d/old", b"old")
            .symlink("dl", "/d")
            .symlink("home-link", "/home");
        t.finish()
    };
    let l2 = {
        let mut t = TarBuilder::new();
        t.file("esc/pwned", b"pwned")
            .file("rel/owned", b"owned")
            .file("vlink/.wh.gone", b"")
            .file("dl/.wh..wh..opq", b"")
            .file("dl/new", b"new")
            .dir("home-link/sub")
            .file("home-link/sub/f", b"f");
        t.finish()
    };
    let l3 = {
        let mut t = TarBuilder::new();
        t.file(".wh.esc", b"")
            .file(format!("{canary_in_root}/after"), b"after");
        t.finish()
    };
    let archive = work.path().join("hostile.tar");
    std::fs::write(
        &archive,
        support::store::Parts::new("docker.io/library/hostile:1", vec![busybox, l1, l2, l3])
            .build(),
    )
    .unwrap();
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {:?}", text(&out));

    let ctx = work.path().join("ctx");
    write_file(&ctx, "Dockerfile", "FROM hostile:1\n");
    let local = listing_of_dir(&build(&env, &ctx, "overlay", "hostile-out", work.path()));
    let flat = listing_of_flattened(env.root(), "hostile:1");
    assert_same("-o type=local", &local, "flattened", &flat);
    for snapshotter in ["overlay", "copy"] {
        let run = listing_of_run(env.root(), snapshotter, "hostile:1");
        assert_same(
            &format!("rbuild run ({snapshotter})"),
            &run,
            "-o type=local",
            &local,
        );
    }
    // The in-root meaning, spelled out.
    let file = |p: &str| {
        local
            .get(p)
            .map(|l| l.split(' ').next().unwrap().to_string())
    };
    assert_eq!(
        file(&format!("{canary_in_root}/pwned")).as_deref(),
        Some("file")
    );
    assert_eq!(
        file(&format!("{canary_in_root}/after")).as_deref(),
        Some("file")
    );
    assert_eq!(file("etc/owned").as_deref(), Some("file"));
    assert_eq!(file("victim/keep").as_deref(), Some("file"));
    assert_eq!(file("victim/gone"), None, "whiteout through a symlink");
    assert_eq!(file("d/old"), None, "opaque marker through a symlink");
    assert_eq!(file("d/new").as_deref(), Some("file"));
    assert_eq!(file("home/sub/f").as_deref(), Some("file"));
    assert_eq!(
        file("esc"),
        None,
        "the whiteout hides the symlink, not its target"
    );
    assert_eq!(
        run_cat(
            env.root(),
            "overlay",
            "hostile:1",
            &format!("{canary}/pwned")
        ),
        "pwned"
    );
    // Nothing escaped to the host.
    let host: Vec<_> = std::fs::read_dir(&canary_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(host, ["keep"]);
    assert_eq!(std::fs::read(canary_dir.join("keep")).unwrap(), b"host");
    assert!(!Path::new("/etc/owned").exists());
    support::store::assert_fsck_ok(&env);
}

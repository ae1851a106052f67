//! `rbuild build --output` and `--verify-reproducible` with real builds on the busybox fixture:
//! every output type writes what it should (checked with skopeo, umoci, `rbuild load`, and
//! against the store's flattened image), outputs are deterministic and appear only after a
//! successful build, `SOURCE_DATE_EPOCH` builds give the same image twice, and bad `--output`
//! values are pointed errors.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::support::{
    TestEnv, describe_tree, load_busybox, processes_matching, run_ok, text, tool,
};
use rbuild_store::Store;

/// A context directory holding only `Dockerfile`.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// `rbuild build --progress plain ARGS CONTEXT`; returns (success, stdout bytes, stderr).
fn build(
    env: &TestEnv,
    ctx: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (bool, Vec<u8>, String) {
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        out.stdout.clone(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build_ok(env: &TestEnv, ctx: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Vec<u8>, String) {
    let (ok, stdout, stderr) = build(env, ctx, args, envs);
    assert!(ok, "build failed:\n{stderr}");
    (stdout, stderr)
}

fn flattened(env: &TestEnv, name: &str) -> BTreeMap<String, String> {
    let store = Store::open(env.root()).unwrap();
    let img = store.resolve_image(name).unwrap();
    rbuild_store::layer::flatten_image(&store, &img)
        .unwrap()
        .to_conformance_map()
}

fn manifest_digest(env: &TestEnv, name: &str) -> String {
    let store = Store::open(env.root()).unwrap();
    store
        .resolve_image(name)
        .unwrap()
        .manifest_digest
        .to_string()
}

/// The conformance-format map of a rootfs tar (hard links shown as their target), with the
/// hard links and every mtime.
struct TarListing {
    map: BTreeMap<String, String>,
    hardlinks: BTreeMap<String, String>,
    mtimes: BTreeMap<String, u64>,
    order: Vec<String>,
}

fn list_tar(bytes: &[u8]) -> TarListing {
    use sha2::Digest as _;
    let mut listing = TarListing {
        map: BTreeMap::new(),
        hardlinks: BTreeMap::new(),
        mtimes: BTreeMap::new(),
        order: Vec::new(),
    };
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = format!("/{}", path.trim_end_matches('/'));
        let own = format!("{}:{}", h.uid().unwrap(), h.gid().unwrap());
        let mode = h.mode().unwrap() & 0o7777;
        let desc = match h.entry_type() {
            tar::EntryType::Directory => format!("dir 0o{mode:o} {own}"),
            tar::EntryType::Symlink => format!(
                "symlink {own} -> {}",
                e.link_name().unwrap().unwrap().display()
            ),
            tar::EntryType::Link => {
                let target = format!("/{}", e.link_name().unwrap().unwrap().display());
                listing.hardlinks.insert(path.clone(), target.clone());
                listing.map[&target].clone()
            }
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let sum = hex::encode(sha2::Sha256::digest(&data));
                format!("file 0o{mode:o} {own} {} {}", data.len(), &sum[..16])
            }
            other => panic!("unexpected entry type {other:?} at {path}"),
        };
        listing.mtimes.insert(path.clone(), h.mtime().unwrap());
        listing.order.push(path.clone());
        listing.map.insert(path, desc);
    }
    listing
}

/// A RUN that makes a file, a symlink, a hard link, a setuid binary, a chown'd file, a
/// whiteout (`rm /bin/vi`) and an opaque directory (`/home` removed and made again).
const RICH: &str = "FROM busybox:1.35\n\
RUN mkdir -p /app/sub && echo hello > /app/a.txt && ln -s a.txt /app/link \
 && ln /app/a.txt /app/hard && cp /bin/busybox /app/suid && chmod 4755 /app/suid \
 && echo owned > /app/sub/owned && chown 1000:1001 /app/sub/owned \
 && rm /bin/vi && rm -rf /home && mkdir /home && echo new > /home/only\n";

/// One build writes every output type; each is what its consumers expect.
#[test]
fn every_output_type_writes_what_it_should() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context(RICH);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let arg = |spec: &str| format!("--output={spec}");
    build_ok(
        &env,
        ctx.path(),
        &[
            "-t",
            "outs:1",
            &arg(&format!("type=local,dest={}", o.join("local").display())),
            &arg(&format!("type=tar,dest={}", o.join("rootfs.tar").display())),
            &arg(&format!("type=oci,dest={}", o.join("layout").display())),
            &arg(&format!(
                "type=oci,dest={}",
                o.join("image.oci.tar").display()
            )),
            &arg(&format!(
                "type=docker,dest={}",
                o.join("image.docker.tar").display()
            )),
        ],
        &[],
    );
    let flat = flattened(&env, "outs:1");
    let digest = manifest_digest(&env, "outs:1");
    assert!(!flat.contains_key("/bin/vi"), "the whiteout applies");
    assert_eq!(flat["/home/only"].split(' ').next(), Some("file"));

    // local: the flattened image, file for file, hard links kept.
    let (local, _) = describe_tree(&o.join("local"));
    assert_eq!(local, flat);
    assert_eq!(
        std::fs::metadata(o.join("local/app/a.txt")).unwrap().ino(),
        std::fs::metadata(o.join("local/app/hard")).unwrap().ino()
    );
    assert!(local["/app/suid"].starts_with("file 0o4755 0:0"));
    assert!(local["/app/sub/owned"].starts_with("file 0o644 1000:1001"));

    // tar: the same entries, sorted, parents first, the hard link as a link.
    let tar_bytes = std::fs::read(o.join("rootfs.tar")).unwrap();
    let listing = list_tar(&tar_bytes);
    assert_eq!(listing.map, flat);
    let mut sorted = listing.order.clone();
    sorted.sort();
    assert_eq!(listing.order, sorted);
    assert_eq!(
        listing.hardlinks,
        BTreeMap::from([("/app/hard".to_string(), "/app/a.txt".to_string())])
    );

    // oci directory and archive: skopeo reads both (same manifest), umoci unpacks the
    // directory to the same root filesystem.
    let name = "docker.io/library/outs:1";
    for src in [
        format!("oci:{}:{name}", o.join("layout").display()),
        format!("oci-archive:{}:{name}", o.join("image.oci.tar").display()),
        format!("docker-archive:{}", o.join("image.docker.tar").display()),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&run_ok(tool("skopeo").arg("inspect").arg(&src))).unwrap();
        if !src.starts_with("docker-archive") {
            assert_eq!(v["Digest"], digest.as_str(), "{src}");
        }
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "{src}");
    }
    let bundle = o.join("bundle");
    run_ok(
        tool("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{name}", o.join("layout").display()))
            .arg(&bundle),
    );
    let (umoci, _) = describe_tree(&bundle.join("rootfs"));
    assert_eq!(umoci, flat);

    // docker-archive: loads back into another store as the same image under its name.
    let other = TestEnv::new();
    let loaded = other
        .rbuild()
        .args(["load", "-i"])
        .arg(o.join("image.docker.tar"))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{:?}", text(&loaded));
    assert_eq!(manifest_digest(&other, "outs:1"), digest);
    assert_eq!(flattened(&other, "outs:1"), flat);

    // Nothing half-written is left beside the outputs.
    let names: Vec<String> = std::fs::read_dir(o)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rbuild-tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// The rootfs tar is the same bytes every time (also on stdout via `-o -`); with
/// SOURCE_DATE_EPOCH every entry of the tar and of a local output carries that mtime.
#[test]
fn rootfs_tar_is_deterministic_and_epoch_stamped() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context("FROM busybox:1.35\nRUN echo x > /x && mkdir -p /d/e && touch /d/e/f\n");
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first.tar");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    build_ok(
        &env,
        ctx.path(),
        &["-o", &format!("type=tar,dest={}", first.display())],
        &epoch,
    );
    let local = out.path().join("local");
    let (stdout, _) = build_ok(
        &env,
        ctx.path(),
        &["-o", "-", "-o", local.to_str().unwrap()],
        &epoch,
    );
    let first = std::fs::read(&first).unwrap();
    assert_eq!(first, stdout, "the same image gives the same tar bytes");
    let listing = list_tar(&stdout);
    assert!(listing.map.contains_key("/d/e/f"));
    assert!(
        listing.mtimes.values().all(|&t| t == 1_700_000_000),
        "{:?}",
        listing.mtimes
    );
    let (tree, mtimes) = describe_tree(&local);
    assert_eq!(tree, listing.map);
    assert!(mtimes.values().all(|&t| t == 1_700_000_000), "{mtimes:?}");
}

/// Like BuildKit, `type=local` writes into an existing directory: files the image has
/// replace what is there, other files stay, and a symlink in the destination is replaced,
/// never followed out of it.
#[test]
fn local_output_writes_into_an_existing_directory_without_leaving_it() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context("FROM busybox:1.35\nRUN echo image > /etc/marker\n");
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    std::fs::write(dest.join("bin"), "a file where the image has a directory").unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("etc")).unwrap();
    build_ok(
        &env,
        ctx.path(),
        &["-o", &format!("type=local,dest={}", dest.display())],
        &[],
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(dest.join("bin/busybox").is_file());
    let etc = dest.join("etc").symlink_metadata().unwrap();
    assert!(
        etc.is_dir(),
        "the symlink was replaced by the image's directory"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/marker")).unwrap(),
        "image\n"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
}

/// A failed build writes no output at all (and leaves no temporary file behind).
#[test]
fn failed_builds_write_no_output() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context("FROM busybox:1.35\nRUN exit 3\n");
    let out = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = build(
        &env,
        ctx.path(),
        &[
            "-o",
            &format!("type=tar,dest={}", out.path().join("r.tar").display()),
            "-o",
            &format!("type=oci,dest={}", out.path().join("layout").display()),
            "-o",
            out.path().join("local").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// With SOURCE_DATE_EPOCH, building the same Dockerfile again without the cache (its RUN
/// writes files stamped "now") gives the same image digest; the epoch is part of the cache
/// key, so a layer built without it is not reused; `--verify-reproducible` agrees.
#[test]
fn source_date_epoch_builds_are_reproducible() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context(
        "FROM busybox:1.35\n\
         RUN mkdir -p /srv/data && echo hi > /srv/data/hi && touch /srv/stamp && sleep 1 \
         && echo later > /srv/data/later\n\
         ENV A=b\n",
    );
    build_ok(&env, ctx.path(), &["-t", "plain"], &[]);
    let epoch = [("SOURCE_DATE_EPOCH", "1600000000")];
    let (_, stderr) = build_ok(&env, ctx.path(), &["-t", "repro1"], &epoch);
    assert!(
        stderr.contains("#1 missed: source-date-epoch changed (unset) → 1600000000"),
        "a layer built without the epoch is not reused:\n{stderr}"
    );
    build_ok(
        &env,
        ctx.path(),
        &[
            "-t",
            "repro2",
            "--no-cache",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1600000000",
        ],
        &[],
    );
    let d1 = manifest_digest(&env, "repro1");
    assert_eq!(d1, manifest_digest(&env, "repro2"));
    assert_ne!(d1, manifest_digest(&env, "plain"));

    let (_, stderr) = build_ok(
        &env,
        ctx.path(),
        &["-t", "verified", "--verify-reproducible"],
        &epoch,
    );
    let verdict: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("reproducible:"))
        .collect();
    assert_eq!(
        verdict,
        [format!("reproducible: both builds gave {d1} (SOURCE_DATE_EPOCH=1600000000)").as_str()],
        "{stderr}"
    );
    assert_eq!(manifest_digest(&env, "verified"), d1);
}

/// `--verify-reproducible` fails on a RUN that records the time and randomness, naming the
/// file; nothing is tagged and no output is written. Without SOURCE_DATE_EPOCH it says which
/// default it used.
#[test]
fn verify_reproducible_fails_naming_the_differing_file() {
    let env = TestEnv::new();
    load_busybox(&env);
    let ctx = context(
        "FROM busybox:1.35\n\
         RUN date +%s%N > /built-at && head -c 16 /dev/urandom | od -An -tx1 >> /built-at \
         && echo same > /same\n",
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("r.tar");
    let (ok, _, stderr) = build(
        &env,
        ctx.path(),
        &[
            "-t",
            "unstable",
            "--verify-reproducible",
            "-o",
            &format!("type=tar,dest={}", tar.display()),
        ],
        &[],
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("SOURCE_DATE_EPOCH=0 (not set"), "{stderr}");
    assert!(stderr.contains("1 file differs:"), "{stderr}");
    assert!(stderr.contains("  /built-at: content sha256:"), "{stderr}");
    assert!(!stderr.contains("/same:"), "{stderr}");
    assert!(
        stderr.contains("rbuild::build::not_reproducible"),
        "{stderr}"
    );
    assert!(!tar.exists());
    let store = Store::open(env.root()).unwrap();
    assert!(
        store.resolve_image("unstable").is_err(),
        "nothing was tagged"
    );
}

/// Bad `--output` values fail before anything is built, pointing at the bad part.
#[test]
fn bad_output_values_are_pointed_errors() {
    let env = TestEnv::new();
    let ctx = context("FROM scratch\n");
    let file = ctx.path().join("Dockerfile");
    let cases: Vec<(String, &str)> = vec![
        ("type=lcoal,dest=x".into(), "did you mean `local`?"),
        ("type=oci,dets=x.tar".into(), "did you mean `dest`?"),
        ("dest=x".into(), "does not say which type of output"),
        ("type=local".into(), "needs a destination directory"),
        ("type=tar,dest=a,dest=b".into(), "`dest` appears twice"),
        (
            "type=oci,dest=x,tar=yes".into(),
            "`tar=yes` is not a boolean",
        ),
        (
            "type=registry,name=x".into(),
            "`--output type=registry` is not supported",
        ),
        (
            "type=image,push=true".into(),
            "pushing from `--output` is not supported",
        ),
        (
            format!("type=tar,dest={}", ctx.path().display()),
            "is a directory",
        ),
        (
            format!("type=local,dest={}", file.display()),
            "is not a directory",
        ),
    ];
    for (value, expected) in &cases {
        let out = env
            .rbuild()
            .args(["build", "-o", value])
            .arg(ctx.path())
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains(expected), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("--output {value}")),
            "{value}: {stderr}"
        );
        assert!(
            stderr.contains("rbuild::usage::output"),
            "{value}: {stderr}"
        );
    }
    // Two outputs on stdout.
    let out = env
        .rbuild()
        .args(["build", "-o", "-", "-o", "type=oci,dest=-"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("both write to stdout"), "{stderr}");
}

/// Ctrl-C during a build: exit 130, no output file or directory, no temporary left behind.
#[test]
fn interrupted_builds_write_no_output() {
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    load_busybox(&env);
    let marker = "sleep 4711";
    let ctx = context(&format!("FROM busybox:1.35\nRUN echo x > /x && {marker}\n"));
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(env.root())
        .args(["build", "--progress", "plain", "-t", "never"])
        .arg("-o")
        .arg(format!(
            "type=tar,dest={}",
            out.path().join("r.tar").display()
        ))
        .arg("-o")
        .arg(out.path().join("local"))
        .arg(ctx.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while processes_matching(marker) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the RUN never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    let store = Store::open(env.root()).unwrap();
    assert!(store.resolve_image("never").is_err());
}

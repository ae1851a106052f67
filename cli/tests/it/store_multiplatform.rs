//! Multi-platform images through the real binary (issue 14): `load` of the two-platform busybox
//! fixture keeps the index; `images` shows it as one image and `--tree` lists its platforms;
//! `inspect`/`history`/`run --platform` pick a platform (arm64 runs under QEMU user
//! emulation); `save` round-trips the index digest (checked with skopeo too), `--platform` and
//! `--format docker` write one platform; `rmi` + `prune` remove every blob; `system df` counts
//! shared blobs once; hostile indexes are refused with the store unchanged.

use std::path::PathBuf;

use rbuild_store::Digest;
use rbuild_store::testing::{OciArchive, TarBuilder};

use crate::support::store::{assert_fsck_ok, store_state};
use crate::support::{TestEnv, run_ok, shared_dir, text, tool};

const NAME: &str = "busybox:1.35-multi";

fn multi_archive() -> PathBuf {
    shared_dir().join("images/busybox-1.35-multi.oci.tar")
}

/// The digest of the index the fixture's index.json names.
fn fixture_index_digest() -> String {
    let mut a = tar::Archive::new(std::fs::File::open(multi_archive()).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            let v: serde_json::Value = serde_json::from_reader(&mut e).unwrap();
            return v["manifests"][0]["digest"].as_str().unwrap().to_string();
        }
    }
    panic!("the fixture has no index.json");
}

fn ok(env: &TestEnv, args: &[&str]) -> (String, String) {
    let out = env.rbuild().args(args).output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "rbuild {args:?} failed:\n{o}\n{e}");
    (o, e)
}

fn load(env: &TestEnv, archive: &std::path::Path) -> String {
    ok(env, &["load", "-i", archive.to_str().unwrap()]).0
}

fn env_with_multi() -> TestEnv {
    let env = TestEnv::new();
    let out = load(&env, &multi_archive());
    assert_eq!(out, format!("Loaded image: {NAME}\n"));
    env
}

fn blob_names(env: &TestEnv) -> Vec<String> {
    store_state(env.root()).1
}

/// Rows of a table (header dropped).
fn rows(out: &str) -> Vec<&str> {
    out.lines().skip(1).collect()
}

#[test]
fn load_keeps_every_platform_and_images_shows_one_row() {
    let env = env_with_multi();
    let index = fixture_index_digest();
    let short = &index["sha256:".len().."sha256:".len() + 12];

    let (out, _) = ok(&env, &["images"]);
    let r = rows(&out);
    assert_eq!(r.len(), 1, "{out}");
    assert!(
        r[0].starts_with("busybox") && r[0].contains("1.35-multi"),
        "{out}"
    );
    assert!(r[0].contains(short), "IMAGE ID is the index digest: {out}");

    let (out, _) = ok(&env, &["images", "-q", "--no-trunc"]);
    assert_eq!(out, format!("{index}\n"));
    let (out, _) = ok(
        &env,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    assert_eq!(out, format!("busybox:1.35-multi {short}\n"));

    let (out, _) = ok(&env, &["images", "--tree"]);
    let r = rows(&out);
    assert_eq!(r.len(), 3, "{out}");
    assert!(r[0].starts_with(NAME) && r[0].contains(short), "{out}");
    assert!(r[1].starts_with("├─ linux/amd64"), "{out}");
    assert!(r[2].starts_with("└─ linux/arm64"), "{out}");
    // Each platform has its own ID (its manifest digest), not the index's.
    assert!(!r[1].contains(short) && !r[2].contains(short), "{out}");

    // Every blob of the archive is in the store, and the store is consistent.
    let mut want: Vec<String> = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(multi_archive()).unwrap());
    for e in a.entries().unwrap() {
        let p = e.unwrap().path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = p.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            want.push(hex.to_string());
        }
    }
    want.sort();
    assert_eq!(blob_names(&env), want);
    assert_fsck_ok(&env);
}

#[test]
fn inspect_and_history_pick_a_platform() {
    let env = env_with_multi();
    let index = fixture_index_digest();
    let fmt = "{{.Id}} {{.Os}}/{{.Architecture}}";
    let (out, _) = ok(
        &env,
        &[
            "inspect",
            "--platform",
            "linux/arm64",
            "--format",
            fmt,
            NAME,
        ],
    );
    assert_eq!(out, format!("{index} linux/arm64\n"));
    let (out, _) = ok(&env, &["inspect", "--format", fmt, NAME]);
    let host = rbuild_store::Platform::host();
    assert_eq!(
        out,
        format!("{index} {host}\n"),
        "the host's image by default"
    );

    let (out, _) = ok(
        &env,
        &["history", "--no-trunc", "--platform", "linux/arm64", NAME],
    );
    assert!(out.contains("arm64"), "{out}");
    let (out, _) = ok(
        &env,
        &["history", "--no-trunc", "--platform", "linux/amd64", NAME],
    );
    assert!(!out.contains("arm64"), "{out}");

    let out = env
        .rbuild()
        .args(["inspect", "--platform", "linux/s390x", NAME])
        .output()
        .unwrap();
    let (_, e) = text(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("linux/s390x") && e.contains("linux/amd64, linux/arm64"),
        "{e}"
    );
}

#[test]
fn save_round_trips_the_index_and_docker_archives_hold_one_platform() {
    let env = env_with_multi();
    let index = fixture_index_digest();
    let work = tempfile::tempdir().unwrap();

    // OCI archive: the index, every platform; loading it elsewhere gives the same digest.
    let x = work.path().join("x.tar");
    ok(&env, &["save", "-o", x.to_str().unwrap(), NAME]);
    let raw = run_ok(
        tool("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", x.display())),
    );
    assert_eq!(
        Digest::of(raw.trim_end_matches('\n').as_bytes()).to_string(),
        index,
        "skopeo reads the index itself: {raw}"
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let archs: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm = run_ok(
        tool("skopeo")
            .args(["inspect", "--override-arch", "arm64", "--config"])
            .arg(format!("oci-archive:{}", x.display())),
    );
    assert!(arm.contains("\"architecture\": \"arm64\""), "{arm}");

    let second = TestEnv::new();
    assert_eq!(load(&second, &x), format!("Loaded image: {NAME}\n"));
    let (out, _) = ok(&second, &["images", "-q", "--no-trunc"]);
    assert_eq!(out, format!("{index}\n"));
    let (out, _) = ok(&second, &["images", "--tree"]);
    assert!(
        out.contains("linux/amd64") && out.contains("linux/arm64"),
        "{out}"
    );
    assert_eq!(blob_names(&second), blob_names(&env));
    assert_fsck_ok(&second);

    // --platform: that platform's image only.
    let a = work.path().join("arm.tar");
    ok(
        &env,
        &[
            "save",
            "--platform",
            "linux/arm64",
            "-o",
            a.to_str().unwrap(),
            NAME,
        ],
    );
    let third = TestEnv::new();
    load(&third, &a);
    let (out, _) = ok(&third, &["images", "--tree"]);
    assert!(
        out.contains("linux/arm64") && !out.contains("linux/amd64"),
        "{out}"
    );
    let (out, _) = ok(&third, &["inspect", "--format", "{{.Architecture}}", NAME]);
    assert_eq!(out, "arm64\n");

    // docker-archive: one platform, the host's unless --platform, with a note saying so.
    let host = rbuild_store::Platform::host();
    let d = work.path().join("d.tar");
    let (_, err) = ok(
        &env,
        &[
            "save",
            "--format",
            "docker",
            "-o",
            d.to_str().unwrap(),
            NAME,
        ],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{host} image")) && err.contains("docker-archive holds one platform"),
        "{err}"
    );
    let mut manifest = None;
    let mut t = tar::Archive::new(std::fs::File::open(&d).unwrap());
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("manifest.json") {
            manifest = Some(serde_json::from_reader::<_, serde_json::Value>(&mut e).unwrap());
        }
    }
    let manifest = manifest.expect("a docker-archive has manifest.json");
    assert_eq!(manifest.as_array().unwrap().len(), 1, "{manifest}");
    let fourth = TestEnv::new();
    load(&fourth, &d);
    let (out, _) = ok(&fourth, &["inspect", "--format", "{{.Architecture}}", NAME]);
    assert_eq!(out, format!("{}\n", host.architecture));
    let (out, _) = ok(&fourth, &["images", "--tree"]);
    assert_eq!(rows(&out).len(), 2, "one image, one platform: {out}");

    let (_, err) = ok(
        &env,
        &[
            "save",
            "--format",
            "docker",
            "--platform",
            "linux/arm64",
            "-o",
            d.to_str().unwrap(),
            NAME,
        ],
    );
    assert!(err.contains("linux/arm64 image"), "{err}");
}

#[test]
fn run_picks_the_platform_and_arm64_runs_emulated() {
    let env = env_with_multi();
    let run = |args: &[&str]| {
        env.rbuild()
            .args(["run", "--rm"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--platform", "linux/arm64", NAME, "uname", "-m"]);
    let (o, e) = text(&out);
    assert_eq!(o, "aarch64\n", "{e}");
    assert_eq!(out.status.code(), Some(0));
    let out = run(&[NAME, "uname", "-m"]);
    assert_eq!(text(&out).0, format!("{}\n", std::env::consts::ARCH));

    let out = run(&["--platform", "linux/s390x", NAME, "uname", "-m"]);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "{o}");
    assert!(
        e.contains("has no linux/s390x image") && e.contains("linux/amd64, linux/arm64"),
        "{e}"
    );
    assert_fsck_ok(&env);
}

#[test]
fn tag_rmi_and_prune_treat_the_index_as_one_image() {
    let env = env_with_multi();
    let index = fixture_index_digest();
    ok(&env, &["tag", NAME, "copy:1"]);
    let (out, _) = ok(&env, &["images", "-q", "--no-trunc"]);
    assert_eq!(out, format!("{index}\n"), "both names, one image");
    let (out, _) = ok(&env, &["inspect", "--format", "{{.Id}}", "copy:1"]);
    assert_eq!(out, format!("{index}\n"));

    // One name left after the first rmi: untagged only.
    let (out, _) = ok(&env, &["rmi", NAME]);
    assert_eq!(out, format!("Untagged: {NAME}\n"));
    let (out, _) = ok(&env, &["rmi", "copy:1"]);
    assert_eq!(out, format!("Untagged: copy:1\nDeleted: {index}\n"));
    let (out, _) = ok(&env, &["images", "-q"]);
    assert_eq!(out, "");
    ok(&env, &["prune", "-a", "-f"]);
    assert!(blob_names(&env).is_empty(), "{:?}", blob_names(&env));
    assert_fsck_ok(&env);

    // Untagged (dangling) index: prune removes it whole.
    let untagged = {
        let mut a = tar::Archive::new(std::fs::File::open(multi_archive()).unwrap());
        let mut t = TarBuilder::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            if p == "index.json" {
                let mut v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                v["manifests"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("annotations");
                data = serde_json::to_vec(&v).unwrap();
            }
            if !p.ends_with('/') {
                t.file(&p, &data);
            }
        }
        t.finish()
    };
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("untagged.tar");
    std::fs::write(&file, untagged).unwrap();
    assert_eq!(load(&env, &file), format!("Loaded image ID: {index}\n"));
    let (out, _) = ok(
        &env,
        &["images", "--filter", "dangling=true", "-q", "--no-trunc"],
    );
    assert_eq!(out, format!("{index}\n"));
    ok(&env, &["prune", "-f"]);
    assert!(blob_names(&env).is_empty(), "{:?}", blob_names(&env));
    assert_fsck_ok(&env);
}

#[test]
fn system_df_counts_shared_content_once() {
    let env = env_with_multi();
    // The same amd64 image under its own name: its blobs are already in the store.
    ok(
        &env,
        &[
            "load",
            "-i",
            shared_dir()
                .join("images/busybox-1.35.oci.tar")
                .to_str()
                .unwrap(),
        ],
    );
    // Counted as docker does: each platform's config and layers uncompressed; the amd64 image
    // loaded under its own name adds nothing.
    let fixture = crate::support::oci::OciArchive::open(&multi_archive()).unwrap();
    let total: u64 = ["linux/amd64", "linux/arm64"]
        .iter()
        .map(|p| {
            fixture
                .content_size(&fixture.image_for(p).unwrap())
                .unwrap()
        })
        .sum();
    let (out, _) = ok(&env, &["system", "df", "--format", "json"]);
    let images: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(images["Type"], "Images");
    assert_eq!(images["TotalCount"], "2");
    assert_eq!(images["Size"], rbuild_store::size::human(total), "{out}");
}

/// Load `archive` into a store holding the fixture: refused mentioning `needle`, the store
/// byte-for-byte unchanged and consistent.
fn refused(archive: &[u8], needle: &str) {
    let env = env_with_multi();
    let before = store_state(env.root());
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("hostile.tar");
    std::fs::write(&file, archive).unwrap();
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(&file)
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(!out.status.success(), "accepted: {o}");
    assert!(e.contains(needle), "stderr lacks `{needle}`:\n{e}");
    assert_eq!(store_state(env.root()), before, "store changed");
    assert_eq!(
        std::fs::read_dir(env.root().join("ingest"))
            .unwrap()
            .count(),
        0
    );
    assert_fsck_ok(&env);
}

fn small_layer(tag: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc").file(format!("etc/{tag}"), tag.as_bytes());
    t.finish()
}

#[test]
fn hostile_indexes_are_refused_with_the_store_unchanged() {
    // Nested five deep.
    let mut a = OciArchive::new();
    let mut next = a.image("linux", "amd64", &small_layer("deep"));
    for _ in 0..5 {
        next = a.index(&[next]);
    }
    a.entry(&next, Some("docker.io/library/deep:1"));
    refused(&a.build(), "image indexes nest deeper than 4");

    // An index that lists itself: the member named by the digest it lists is the index, which
    // cannot hash to that name.
    let mut b = OciArchive::new();
    let img = b.image("linux", "amd64", &small_layer("loop"));
    let claimed = Digest::of(b"the index itself").to_string();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [img, {"mediaType": "application/vnd.oci.image.index.v1+json",
                            "digest": claimed, "size": 40}],
    }))
    .unwrap();
    b.raw_blob(&claimed, &bytes);
    let d = b.blob("application/vnd.oci.image.index.v1+json", &bytes);
    b.entry(&d, Some("docker.io/library/loop:1"));
    refused(&b.build(), claimed.strip_prefix("sha256:").unwrap());

    // A platform image with a hostile layer inside an otherwise good index.
    let mut c = OciArchive::new();
    let good = c.image("linux", "amd64", &small_layer("good"));
    let mut evil = TarBuilder::new();
    evil.file("../escape", b"x");
    let bad = c.image("linux", "arm64", &evil.finish());
    let index = c.index(&[good, bad]);
    c.entry(&index, Some("docker.io/library/evil:1"));
    refused(&c.build(), "escape");
}

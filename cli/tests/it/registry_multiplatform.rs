//! Multi-platform images against a real `docker-registry`: `pull --all-platforms` stores the
//! index and every platform under one name, `push` sends it whole with the same index digest
//! (skopeo reads it back byte for byte and copies it with `--all`), `push --platform` sends
//! one manifest, and an index whose platforms are not all stored is refused with the store
//! and the registry untouched.

use std::path::{Path, PathBuf};

use rbuild_store::{Descriptor, Digest, Platform, Reference, Store};

use crate::support::real_registry::RealRegistry;
use crate::support::store::{assert_fsck_ok, store_state};
use crate::support::{TestEnv, text};

const REPO: &str = "library/busybox:1.35-multi";

/// `skopeo inspect --raw` of `reference` on a plain-HTTP registry: the bytes it serves.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn digest_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_string()
}

fn rows_naming(env: &TestEnv, repository: &str) -> usize {
    let out = env.rbuild().arg("images").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(repository))
        .count()
}

/// Every file under the registry's storage: "the registry is untouched" compares these.
fn registry_files(reg: &RealRegistry) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&reg.dir.path().join("data"), &mut out);
    out.sort();
    out
}

fn platform(p: &str) -> Platform {
    p.parse().unwrap()
}

/// Pull every platform, push to another registry and another repository: the index digest is
/// the same everywhere, skopeo reads the index back byte for byte and copies it with `--all`.
#[test]
fn pull_all_platforms_then_push_keeps_the_index() {
    let a = RealRegistry::start();
    a.seed_busybox_multi(REPO);
    let src = format!("{}/{REPO}", a.host());
    let index_bytes = raw_manifest(&src);
    let index_digest = Digest::of(&index_bytes);

    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["pull", "--all-platforms", &src])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(digest_line(&stdout), index_digest.to_string());
    assert!(
        stderr.contains("linux/amd64: manifest") && stderr.contains("linux/arm64: manifest"),
        "a progress line per platform: {stderr}"
    );
    assert_eq!(stderr.matches("Pull complete").count(), 4, "{stderr}");
    assert_eq!(
        rows_naming(&env, &format!("{}/library/busybox", a.host())),
        1
    );

    // Both platforms' blobs are stored under the one name, which points at the index, and
    // survive a prune (the index is named, its platform images reachable through it).
    let out = env.rbuild().arg("prune").output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    {
        let store = Store::open(env.root()).unwrap();
        let target = store.resolve_target(&src).unwrap();
        assert!(target.is_index());
        assert_eq!(target.digest(), &index_digest);
        let images = target.images();
        let platforms: Vec<String> = images.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        for (_, image) in &images {
            for blob in image.blobs() {
                assert!(store.has_blob(&blob), "{blob} is stored");
            }
        }
        assert_eq!(
            store
                .resolve_image_for(&src, &platform("linux/arm64"))
                .unwrap()
                .config
                .architecture,
            "arm64"
        );
    }
    let again = env
        .rbuild()
        .args(["pull", "--all-platforms", &src])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(stdout.contains("Image is up to date"), "{stdout}");
    assert!(!stderr.contains("Pull complete"), "{stderr}");

    // Another repository of the same registry: blobs are mounted, the index is unchanged.
    let copy = format!("{}/copy/busybox:multi", a.host());
    let out = env.rbuild().args(["push", &src, &copy]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("multi: digest: {index_digest}")),
        "{stdout}"
    );
    assert!(
        stderr.contains("Mounted from another repository"),
        "{stderr}"
    );
    assert!(
        stderr.contains("linux/amd64: digest:") && stderr.contains("linux/arm64: digest:"),
        "{stderr}"
    );
    assert_eq!(raw_manifest(&copy), index_bytes);

    // Another registry: everything uploaded, the same index bytes; skopeo copies it whole.
    let b = RealRegistry::start();
    let there = format!("{}/elsewhere/busybox:multi", b.host());
    let out = env.rbuild().args(["push", &src, &there]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&index_digest.to_string()), "{stdout}");
    assert_eq!(raw_manifest(&there), index_bytes);
    let oci = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{there}"))
        .arg(format!("oci:{}:x", oci.path().display()))
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        layout["manifests"][0]["digest"],
        index_digest.to_string(),
        "{layout}"
    );

    // And back: an empty store pulls it whole from B with the same digest.
    let env_b = TestEnv::new();
    let out = env_b
        .rbuild()
        .args(["pull", "--all-platforms", &there])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(digest_line(&text(&out).0), index_digest.to_string());

    // RepoDigests: the index digest in every repository it came from or went to.
    let out = env.rbuild().args(["inspect", &src]).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let repo_digests = v[0]["RepoDigests"].to_string();
    for name in [&src, &copy, &there] {
        let repo = Reference::parse(name).unwrap();
        let expected = format!("{}@{index_digest}", repo.repository());
        assert!(
            repo_digests.contains(&expected),
            "{expected} in {repo_digests}"
        );
    }
    assert_fsck_ok(&env);
}

/// `push --platform linux/arm64` sends that platform's manifest alone under the tag.
#[test]
fn push_one_platform_of_an_index() {
    let reg = RealRegistry::start();
    reg.seed_busybox_multi(REPO);
    let src = format!("{}/{REPO}", reg.host());
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["pull", "--all-platforms", "-q", &src])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let arm = Store::open(env.root())
        .unwrap()
        .resolve_image_for(&src, &platform("linux/arm64"))
        .unwrap();

    let dst = format!("{}/arm/busybox:1", reg.host());
    let out = env
        .rbuild()
        .args(["push", "--platform", "linux/arm64", &src, &dst])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("1: digest: {}", arm.manifest_digest)),
        "{stdout}"
    );
    let served = raw_manifest(&dst);
    assert_eq!(Digest::of(&served), arm.manifest_digest);
    let doc: serde_json::Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(
        doc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // A platform the image does not have is refused.
    let out = env
        .rbuild()
        .args(["push", "--platform", "linux/s390x", &src, &dst])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("linux/s390x"), "{}", text(&out).1);
}

/// A name pointing at an index of which only one platform was pulled: `push` refuses before
/// connecting (store and registry untouched) and says how to go on; `push --platform` of the
/// stored platform works.
#[test]
fn incomplete_index_is_refused() {
    let reg = RealRegistry::start();
    reg.seed_busybox_multi(REPO);
    let src = format!("{}/{REPO}", reg.host());
    let index_bytes = raw_manifest(&src);
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["pull", "--platform", "linux/amd64", &src])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    // The single-platform pull kept the index blob; name it (as a load of a partial archive
    // would).
    let partial = format!("{}/partial/busybox:1", reg.host());
    {
        let store = Store::open(env.root()).unwrap();
        let desc = Descriptor::new(
            "application/vnd.oci.image.index.v1+json",
            Digest::of(&index_bytes),
            index_bytes.len() as u64,
        );
        let target = store.target(&desc).unwrap();
        assert_eq!(target.images().len(), 1, "only amd64 is stored");
        store
            .tag_target(&target, &Reference::parse(&partial).unwrap())
            .unwrap();
    }
    let store_before = store_state(env.root());
    let registry_before = registry_files(&reg);
    let out = env.rbuild().args(["push", &partial]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("linux/arm64")
            && stderr.contains("pull --all-platforms")
            && stderr.contains("push --platform linux/amd64"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("The push refers to"),
        "nothing was sent: {stderr}"
    );
    assert_eq!(store_state(env.root()), store_before);
    assert_eq!(registry_files(&reg), registry_before);

    let out = env
        .rbuild()
        .args(["push", "--platform", "linux/amd64", &partial])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let served = raw_manifest(&partial);
    let doc: serde_json::Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(
        doc["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
}

/// What a multi-platform build commits (platform images with uncompressed layers and the
/// index over them) is pushed whole by the build's publish step: each platform's layers are
/// compressed and its manifest pushed by digest, then an index over the pushed manifests with
/// the platforms kept; skopeo copies it with `--all`, and the registry digest is recorded.
#[test]
fn built_index_is_published_whole() {
    use rbuild_store::testing::TarBuilder;
    use rbuild_store::{ImageConfig, Layer, Target};

    let reg = RealRegistry::start();
    let env = TestEnv::new();
    let store = Store::open(env.root()).unwrap();
    let image = |arch: &str| {
        let layer = TarBuilder::new()
            .file("etc/arch", arch.repeat(500).as_bytes())
            .finish();
        let blob = store.put_blob(&layer).unwrap();
        let layer = Layer {
            descriptor: Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar",
                blob.digest.clone(),
                blob.size,
            ),
            diff_id: blob.digest,
        };
        let mut config = ImageConfig::new_for_host();
        config.architecture = arch.to_string();
        store.commit_image(&config, &[layer]).unwrap()
    };
    let built = store
        .commit_index(&[
            (platform("linux/amd64"), image("amd64")),
            (platform("linux/arm64"), image("arm64")),
        ])
        .unwrap();
    let name = Reference::parse(&format!("{}/built/app:1", reg.host())).unwrap();
    let built = Target::Index(built);
    store.tag_target(&built, &name).unwrap();

    rbuild_engine::registry::push::push_all(
        &rbuild_engine::registry::Registry::new(&store),
        &store,
        &built,
        std::slice::from_ref(&name),
        rbuild_registry::Compression::Gzip,
        &rbuild_engine::Silent,
    )
    .unwrap();

    let pushed = raw_manifest(&name.to_string());
    let index: serde_json::Value = serde_json::from_slice(&pushed).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    let archs: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    for entry in entries {
        let child = raw_manifest(&format!(
            "{}@{}",
            name.repository(),
            entry["digest"].as_str().unwrap()
        ));
        let child: serde_json::Value = serde_json::from_slice(&child).unwrap();
        assert_eq!(
            child["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "built layers are compressed at push"
        );
    }
    let oci = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:x", oci.path().display()))
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        Reference::parse(&format!("{}@{}", name.repository(), Digest::of(&pushed))).unwrap();
    assert_eq!(store.repo_digests(built.digest()).unwrap(), [expected]);
}

/// A platform manifest deleted from the registry (the index still lists it): `pull
/// --all-platforms` fails with the registry's 404 (exit 3) and stores and names nothing.
#[test]
fn pull_all_platforms_with_a_missing_platform_stores_nothing() {
    let reg = RealRegistry::start();
    reg.seed_busybox_multi(REPO);
    let src = format!("{}/{REPO}", reg.host());
    let index: serde_json::Value = serde_json::from_slice(&raw_manifest(&src)).unwrap();
    let arm = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{}/library/busybox@{arm}", reg.host()))
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = TestEnv::new();
    let out = env.rbuild().args(["images", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let before = store_state(env.root());
    let out = env
        .rbuild()
        .args(["pull", "--all-platforms", &src])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("404") && stderr.contains(&arm), "{stderr}");
    assert_eq!(store_state(env.root()), before, "nothing stored or named");
    assert_fsck_ok(&env);
}

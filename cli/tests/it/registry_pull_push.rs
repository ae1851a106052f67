//! `rbuild pull` / `rbuild push` end to end against a real `docker-registry`: round trip,
//! pull by digest, the docker.io mirror, compression of built layers, and failures that
//! leave the store untouched.

use std::path::{Path, PathBuf};

use crate::support::real_registry::RealRegistry;
use crate::support::{TestEnv, text};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn digest_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_string()
}

/// Pull, push under another name, pull that into an empty store: the digest printed by
/// every step is the same, and a second pull downloads nothing.
#[test]
fn pull_push_pull_round_trip() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1.35", None);
    let a = TestEnv::new();
    let src = format!("{}/base/busybox:1.35", reg.host());
    let out = a.rbuild().args(["pull", &src]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let digest = digest_line(&stdout);
    assert!(stderr.contains("Pull complete"), "{stderr}");
    let again = a.rbuild().args(["pull", &src]).output().unwrap();
    let (stdout2, stderr2) = text(&again);
    assert!(stdout2.contains("Image is up to date"), "{stdout2}");
    assert!(!stderr2.contains("Pull complete"), "{stderr2}");

    let dst = format!("{}/copy/busybox:v1", reg.host());
    let out = a.rbuild().args(["push", &src, &dst]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("v1: digest: {digest}")),
        "{stdout}"
    );
    assert!(
        stderr.contains("Mounted from another repository"),
        "{stderr}"
    );

    // RepoDigests: the pulled repository and the pushed one, both at the registry digest;
    // `images --digests` shows it per repository.
    let out = a.rbuild().args(["inspect", &src]).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(
        v[0]["RepoDigests"],
        serde_json::json!([
            format!("{}/base/busybox@{digest}", reg.host()),
            format!("{}/copy/busybox@{digest}", reg.host())
        ])
    );
    let listing = text(&a.rbuild().args(["images", "--digests"]).output().unwrap()).0;
    assert!(listing.contains(&digest), "{listing}");

    let b = TestEnv::new();
    let by_digest = format!("{}/copy/busybox@{digest}", reg.host());
    let out = b.rbuild().args(["pull", &by_digest]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(digest_line(&text(&out).0), digest);
}

/// `docker.io` mapped to a local registry in `$ROOT/registries.toml`: `rbuild pull nginx:x`
/// works offline.
#[test]
fn pull_official_image_through_mirror() {
    let reg = RealRegistry::start();
    reg.seed_busybox("library/nginx:x", None);
    let env = TestEnv::new();
    std::fs::write(
        env.root().join("registries.toml"),
        format!(
            "[registries.\"docker.io\"]\nmirrors = [\"http://{}\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let out = env.rbuild().args(["pull", "nginx:x"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.trim_end().ends_with("docker.io/library/nginx:x"),
        "{stdout}"
    );
    let images = env.rbuild().arg("images").output().unwrap();
    assert!(text(&images).0.contains("nginx"), "{}", text(&images).0);
}

/// A built (uncompressed) layer is gzip-compressed at push, skopeo reads the result, and a
/// second push neither recompresses nor uploads.
#[test]
fn push_compresses_built_layers_once() {
    let reg = RealRegistry::start();
    let env = TestEnv::new();
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
    std::fs::write(rootfs.path().join("etc/hello"), "hello\n".repeat(1000)).unwrap();
    let tarball = rootfs.path().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["-cf"])
        .arg(&tarball)
        .arg("etc")
        .status()
        .unwrap();
    assert!(st.success());
    let name = format!("{}/built/app:1", reg.host());
    let out = env
        .rbuild()
        .arg("import")
        .arg(&tarball)
        .arg(&name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let repo_digests = |image: &str| -> serde_json::Value {
        let out = env.rbuild().args(["inspect", image]).output().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
        v[0]["RepoDigests"].clone()
    };
    // Built here and never pushed: no registry digest, as with docker.
    assert_eq!(repo_digests(&name), serde_json::json!([]));
    let out = env.rbuild().args(["push", &name]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("compressing layer") && stderr.contains("Pushed"),
        "{stderr}"
    );
    // After the push: the digest the registry has (the compressed manifest's), which a
    // deploy by digest can use.
    let pushed = stdout
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(
        repo_digests(&name),
        serde_json::json!([format!("{}/built/app@{pushed}", reg.host())])
    );
    let again = env.rbuild().args(["push", &name]).output().unwrap();
    let (_, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(
        !stderr.contains("compressing") && stderr.contains("Layer already exists"),
        "{stderr}"
    );
    // The same image under a new repository of that registry: the remembered gzip blob is
    // mounted from the first repository, not compressed again.
    let other = format!("{}/other/app:1", reg.host());
    let out = env.rbuild().args(["tag", &name, &other]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let out = env.rbuild().args(["push", &other]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("compressing") && stderr.contains("Mounted from"),
        "{stderr}"
    );
    let oci = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:x", oci.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A missing tag fails with exit code 3 and the registry's message; the store is unchanged.
#[test]
fn failed_pull_changes_nothing() {
    let reg = RealRegistry::start();
    reg.seed_busybox("base/busybox:1.35", None);
    let env = TestEnv::new();
    let ok = env
        .rbuild()
        .args(["pull", &format!("{}/base/busybox:1.35", reg.host())])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let before = files(env.root());
    let out = env
        .rbuild()
        .args(["pull", &format!("{}/base/busybox:nope", reg.host())])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("MANIFEST_UNKNOWN"), "{stderr}");
    let after: Vec<PathBuf> = files(env.root())
        .into_iter()
        .filter(|p| !p.starts_with(env.root().join("leases")))
        .collect();
    let before: Vec<PathBuf> = before
        .into_iter()
        .filter(|p| !p.starts_with(env.root().join("leases")))
        .collect();
    assert_eq!(before, after);
    let bad = env
        .rbuild()
        .args(["pull", "--platform", "linux//x", "busybox"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        text(&bad).1.contains("invalid platform"),
        "{}",
        text(&bad).1
    );
}

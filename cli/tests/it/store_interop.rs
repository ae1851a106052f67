//! Interop with the OCI tools CI installs (skopeo, umoci): our store and our archives are read
//! by them, umoci unpacks our saved image to exactly the rootfs our flattener computes, and
//! archives skopeo writes (OCI and docker-archive) load back.

use std::process::Command;

use crate::support::store::*;
use crate::support::{TestEnv, describe_tree, load_busybox, run_ok, text, tool};
use rbuild_store::Store;

/// load busybox → save → skopeo inspects the archive and the live store; umoci unpacks the
/// saved image to the same rootfs as our flattener.
#[test]
fn saved_image_is_read_by_skopeo_and_unpacked_identically_by_umoci() {
    let env = TestEnv::new();
    load_busybox(&env);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("bb.tar");
    env.rbuild()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("busybox:1.35")
        .assert()
        .success();

    let name = "docker.io/library/busybox:1.35";
    let inspect = run_ok(
        tool("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:{name}", archive.display())),
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        v["Digest"],
        "sha256:0221852225c8456bdfa025a2656be6c12be059d535ada46e9423f596afea515e"
    );
    let live = run_ok(
        tool("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{name}", env.root().display())),
    );
    assert!(live.contains("sha256:0221852225c8"), "{live}");

    let layout = work.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout),
    );
    let bundle = work.path().join("bundle");
    run_ok(
        tool("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{name}", layout.display()))
            .arg(&bundle),
    );
    let (umoci, _) = describe_tree(&bundle.join("rootfs"));

    let store = Store::open(env.root()).unwrap();
    let img = store.resolve_image("busybox:1.35").unwrap();
    let ours = rbuild_store::layer::flatten_image(&store, &img)
        .unwrap()
        .to_conformance_map();
    assert_eq!(umoci.len(), ours.len());
    for (path, desc) in &ours {
        assert_eq!(umoci.get(path), Some(desc), "{path}");
    }
}

/// `rbuild inspect` names the image as the store's OCI layout does (`OCILayoutNames`), and
/// that is the NAME `skopeo inspect oci:$ROOT:NAME` takes (the short name is not).
#[test]
fn inspect_prints_the_oci_layout_name_skopeo_takes() {
    let env = TestEnv::new();
    load_busybox(&env);
    env.rbuild()
        .args(["tag", "busybox:1.35", "localhost:5000/me/bb:v1"])
        .assert()
        .success();
    let out = env
        .rbuild()
        .args(["inspect", "localhost:5000/me/bb:v1"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = serde_json::from_value(v[0]["OCILayoutNames"].clone()).unwrap();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1.35", "localhost:5000/me/bb:v1"]
    );
    for name in &names {
        let live = run_ok(
            tool("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:{name}", env.root().display())),
        );
        assert!(live.contains("sha256:0221852225c8"), "{live}");
    }
    // The familiar name is not a name of the layout.
    let short = tool("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:busybox:1.35", env.root().display()))
        .output()
        .unwrap();
    assert!(!short.status.success());
    let first = text(
        &env.rbuild()
            .args([
                "inspect",
                "-f",
                "{{index .OCILayoutNames 0}}",
                "busybox:1.35",
            ])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(first, "docker.io/library/busybox:1.35\n");
}

/// Archives written by skopeo from our store — OCI and docker-archive — load back, keeping
/// the image ID; our docker-format save is readable by skopeo as a docker-archive.
#[test]
fn skopeo_archives_load_back() {
    let env = TestEnv::new();
    load_busybox(&env);
    let work = tempfile::tempdir().unwrap();
    let src = format!(
        "oci:{}:docker.io/library/busybox:1.35",
        env.root().display()
    );
    let oci = work.path().join("oci.tar");
    let dock = work.path().join("docker.tar");
    run_ok(tool("skopeo").args(["copy", "-q", &src]).arg(format!(
        "oci-archive:{}:docker.io/library/busybox:copied",
        oci.display()
    )));
    run_ok(
        tool("skopeo")
            .args(["copy", "-q", &src])
            .arg(format!("docker-archive:{}:busybox:dock", dock.display())),
    );

    let fresh = TestEnv::new();
    let out = fresh
        .rbuild()
        .args(["load", "-i"])
        .arg(&oci)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "Loaded image: busybox:copied\n");
    let out = fresh
        .rbuild()
        .args(["load", "-i"])
        .arg(&dock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "Loaded image: busybox:dock\n");
    let ids = text(
        &fresh
            .rbuild()
            .args(["images", "-q", "--no-trunc"])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(
        ids.trim(),
        "sha256:8366966a27353925d9cd7cb6d939eb5795d9e77fb389e545f4c8d787dd3cdf70"
    );
    assert_fsck_ok(&fresh);
    // One image ID, two manifests (gzip and plain layers): by ID it is one image with two
    // names, so `rmi ID` refuses as docker does and `rmi -f ID` removes both.
    let out = fresh
        .rbuild()
        .args(["rmi", "8366966a2735"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("referenced in multiple"),
        "{:?}",
        text(&out)
    );
    let out = fresh
        .rbuild()
        .args(["rmi", "-f", "8366966a2735"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("Untagged: busybox:copied") && stdout.contains("Untagged: busybox:dock"),
        "{stdout}"
    );
    let ids = text(&fresh.rbuild().args(["images", "-q"]).output().unwrap()).0;
    assert_eq!(ids, "");
    assert_fsck_ok(&fresh);

    let saved = work.path().join("saved-docker.tar");
    env.rbuild()
        .args(["save", "--format", "docker", "-o"])
        .arg(&saved)
        .arg("busybox:1.35")
        .assert()
        .success();
    let v = run_ok(
        tool("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", saved.display())),
    );
    assert!(v.contains("\"Cmd\"") || v.contains("\"Layers\""), "{v}");
}

/// Saving the same image twice gives identical bytes, through a file and through stdout.
#[test]
fn save_is_deterministic() {
    let env = TestEnv::new();
    load_busybox(&env);
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a.tar");
    env.rbuild()
        .args(["save", "-o"])
        .arg(&a)
        .arg("busybox:1.35")
        .assert()
        .success();
    let b = env
        .rbuild()
        .args(["save", "busybox:1.35"])
        .output()
        .unwrap();
    assert!(b.status.success());
    assert_eq!(std::fs::read(&a).unwrap(), b.stdout);
    let d1 = env
        .rbuild()
        .args(["save", "--format", "docker", "busybox:1.35"])
        .output()
        .unwrap()
        .stdout;
    let d2 = env
        .rbuild()
        .args(["save", "--format", "docker", "busybox:1.35"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(d1, d2);
}

//! The image commands against a real store: output shapes like docker's, names, errors with
//! suggestions, and the lifecycle load → tag → history/inspect → rmi → prune.

use crate::support::store::*;
use crate::support::{TestEnv, busybox_archive, load_busybox, text};

/// `images` shows docker's columns and the loaded image; `-q`, `--digests`, `--no-trunc`,
/// `--format json` and a template work.
#[test]
fn images_lists_like_docker() {
    let env = TestEnv::new();
    load_busybox(&env);
    let out = env.rbuild().arg("images").output().unwrap();
    let (o, _) = text(&out);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(
        lines[0],
        "REPOSITORY   TAG       IMAGE ID       CREATED        SIZE"
    );
    assert!(
        lines[1].starts_with("busybox      1.35      8366966a2735   "),
        "{o}"
    );
    // SIZE is the content uncompressed (the fixture's layer is gzipped), as docker shows it.
    let fixture =
        crate::support::oci::OciArchive::open(&crate::support::busybox_archive()).unwrap();
    let content = fixture
        .content_size(&fixture.images(None).unwrap()[0].1)
        .unwrap();
    let size = rbuild_store::size::human(content);
    assert_eq!(size, "2.14MB");
    assert!(lines[1].ends_with(&format!("ago   {size}")), "{o}");

    let q = text(&env.rbuild().args(["images", "-q"]).output().unwrap()).0;
    assert_eq!(q, "8366966a2735\n");
    let full = text(
        &env.rbuild()
            .args(["images", "-q", "--no-trunc"])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(
        full.trim(),
        "sha256:8366966a27353925d9cd7cb6d939eb5795d9e77fb389e545f4c8d787dd3cdf70"
    );
    let d = text(
        &env.rbuild()
            .args(["image", "ls", "--digests"])
            .output()
            .unwrap(),
    )
    .0;
    // A loaded image has no registry digest (as after `docker load`).
    assert!(
        d.contains("DIGEST") && d.contains("<none>") && !d.contains("sha256:0221852225c8"),
        "{d}"
    );
    let j = text(
        &env.rbuild()
            .args(["images", "--format", "json"])
            .output()
            .unwrap(),
    )
    .0;
    let v: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
    assert_eq!(v["Repository"], "busybox");
    assert_eq!(v["Tag"], "1.35");
    assert_eq!(v["Size"], size);
    let t = text(
        &env.rbuild()
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(t, "busybox:1.35\n");
    // Pattern filters.
    assert_eq!(
        text(
            &env.rbuild()
                .args(["images", "-q", "bus*"])
                .output()
                .unwrap()
        )
        .0,
        q
    );
    assert_eq!(
        text(
            &env.rbuild()
                .args(["images", "-q", "nginx"])
                .output()
                .unwrap()
        )
        .0,
        ""
    );
    assert_eq!(
        text(
            &env.rbuild()
                .args(["images", "-q", "--filter", "dangling=true"])
                .output()
                .unwrap()
        )
        .0,
        ""
    );
}

/// tag adds a row; history and inspect read the image; inspect --format selects a path.
#[test]
fn tag_history_inspect() {
    let env = TestEnv::new();
    load_busybox(&env);
    env.rbuild()
        .args(["tag", "busybox:1.35", "localhost:5000/me/app:v1"])
        .assert()
        .success();
    let o = text(&env.rbuild().arg("images").output().unwrap()).0;
    assert!(o.contains("localhost:5000/me/app   v1"), "{o}");

    let h = text(
        &env.rbuild()
            .args(["history", "busybox:1.35"])
            .output()
            .unwrap(),
    )
    .0;
    let lines: Vec<&str> = h.lines().collect();
    assert_eq!(
        lines[0],
        "IMAGE          CREATED        CREATED BY                 SIZE      COMMENT"
    );
    assert!(lines[1].starts_with("8366966a2735"), "{h}");
    let hj = text(
        &env.rbuild()
            .args(["history", "--format", "json", "8366"])
            .output()
            .unwrap(),
    )
    .0;
    // The layer uncompressed (its blob is gzipped, 1.03MB), as docker shows it.
    assert!(hj.contains("\"Size\":\"2.14MB\""), "{hj}");

    let i = env
        .rbuild()
        .args(["inspect", "busybox:1.35"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    let doc = &v[0];
    assert_eq!(
        doc["Id"],
        "sha256:8366966a27353925d9cd7cb6d939eb5795d9e77fb389e545f4c8d787dd3cdf70"
    );
    assert_eq!(
        doc["RepoTags"],
        serde_json::json!(["busybox:1.35", "localhost:5000/me/app:v1"])
    );
    assert_eq!(doc["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(doc["RootFS"]["Type"], "layers");
    assert_eq!(doc["Os"], "linux");
    for key in [
        "RepoDigests",
        "Created",
        "Author",
        "Architecture",
        "Size",
        "Metadata",
    ] {
        assert!(doc.get(key).is_some(), "inspect lacks {key}");
    }
    let f = text(
        &env.rbuild()
            .args(["inspect", "--format", "{{.Config.Cmd}}", "busybox:1.35"])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(f, "[sh]\n");
}

/// Unknown names fail with exit 1, a "did you mean", and invalid references say what is wrong.
#[test]
fn unknown_and_invalid_names_are_clear_errors() {
    let env = TestEnv::new();
    load_busybox(&env);
    let out = env
        .rbuild()
        .args(["inspect", "busybx:1.35"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out).1;
    assert!(
        e.contains("no such image") && e.contains("did you mean `busybox:1.35`"),
        "{e}"
    );
    let out = env
        .rbuild()
        .args(["tag", "busybox:1.35", "Bad/Name"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("must be lowercase"),
        "{}",
        text(&out).1
    );
    let out = env
        .rbuild()
        .args(["tag", "busybox:1.35", "x:-bad"])
        .output()
        .unwrap();
    assert!(text(&out).1.contains("cannot start with `-`"));
    let d = "sha256:0221852225c8456bdfa025a2656be6c12be059d535ada46e9423f596afea515e";
    let out = env
        .rbuild()
        .args(["tag", "busybox:1.35", &format!("x@{d}")])
        .output()
        .unwrap();
    assert!(text(&out).1.contains("digest"), "{}", text(&out).1);
}

/// rmi untags while other names remain, refuses an ID with several names, and removes the
/// image and its blobs with the last name; prune removes dangling images.
#[test]
fn rmi_and_prune_lifecycle() {
    let env = TestEnv::new();
    load_busybox(&env);
    env.rbuild()
        .args(["tag", "busybox:1.35", "other"])
        .assert()
        .success();
    let out = env.rbuild().args(["rmi", "8366966a2735"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("must be forced"), "{}", text(&out).1);
    let o = text(&env.rbuild().args(["rmi", "other"]).output().unwrap()).0;
    assert_eq!(o, "Untagged: other:latest\n");
    let o = text(&env.rbuild().args(["rmi", "busybox:1.35"]).output().unwrap()).0;
    assert!(
        o.contains("Untagged: busybox:1.35") && o.contains("Deleted: sha256:8366966a2735"),
        "{o}"
    );
    assert_eq!(
        store_state(env.root()).1,
        Vec::<String>::new(),
        "blobs collected"
    );

    // A tag moved to a new image leaves the old one dangling; prune removes it.
    load_busybox(&env);
    let imp = env.root().join("..").join(format!(
        "{}.tar",
        env.root().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&imp, small_layer("x")).unwrap();
    env.rbuild()
        .args(["import"])
        .arg(&imp)
        .arg("busybox:1.35")
        .assert()
        .success();
    let o = text(&env.rbuild().arg("images").output().unwrap()).0;
    assert!(o.contains("<none>       <none>    8366966a2735"), "{o}");
    let o = text(
        &env.rbuild()
            .args(["system", "prune", "-f"])
            .output()
            .unwrap(),
    )
    .0;
    assert!(
        o.contains("deleted: sha256:8366966a2735") && o.contains("Total reclaimed space: 1.03MB"),
        "{o}"
    );
    let _ = std::fs::remove_file(imp);
    assert_fsck_ok(&env);
}

/// A container ref protects its image from rmi (without -f) and prune.
#[test]
fn images_used_by_containers_are_protected() {
    let env = TestEnv::new();
    load_busybox(&env);
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let img = store.resolve_image("busybox:1.35").unwrap();
    store
        .set_ref(
            "container",
            "c1",
            std::slice::from_ref(&img.manifest_digest),
        )
        .unwrap();
    drop(store);
    let out = env.rbuild().args(["rmi", "busybox:1.35"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("used by container c1"),
        "{}",
        text(&out).1
    );
    env.rbuild().args(["prune", "-a", "-f"]).assert().success();
    assert!(
        text(&env.rbuild().args(["images", "-q"]).output().unwrap())
            .0
            .contains("8366966a2735")
    );
    env.rbuild()
        .args(["rmi", "-f", "busybox:1.35"])
        .assert()
        .success();
    let df = text(&env.rbuild().args(["system", "df"]).output().unwrap()).0;
    assert!(df.starts_with("TYPE"), "{df}");
    assert_fsck_ok(&env);
}

/// import with --change builds a one-layer image with that config; a bad change is refused
/// before the store is touched.
#[test]
fn import_with_changes() {
    let env = TestEnv::new();
    let tarball = rbuild_store::testing::gzip(&small_layer("hello"));
    let out = env
        .rbuild()
        .args([
            "import",
            "-",
            "imported:1",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "ENV A=1",
            "-c",
            "EXPOSE 80",
        ])
        .write_stdin(tarball.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.starts_with("sha256:"));
    let f = text(
        &env.rbuild()
            .args([
                "inspect",
                "-f",
                "{{.Config.Cmd}} {{.Config.Env}} {{json .Config.ExposedPorts}}",
                "imported:1",
            ])
            .output()
            .unwrap(),
    )
    .0;
    assert_eq!(f, "[sh] [A=1] {\"80/tcp\":{}}\n");
    let before = store_state(env.root());
    let out = env
        .rbuild()
        .args(["import", "-", "x", "--change", "RUN rm -rf /"])
        .write_stdin(tarball)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("`RUN` cannot be used with --change"),
        "{}",
        text(&out).1
    );
    assert_eq!(store_state(env.root()), before);
}

/// `load` reads an archive from stdin (streamed) as well as from `-i FILE` (parallel).
#[test]
fn load_reads_stdin() {
    let env = TestEnv::new();
    let archive = std::fs::read(busybox_archive()).unwrap();
    let out = env
        .rbuild()
        .arg("load")
        .write_stdin(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "Loaded image: busybox:1.35\n");
    assert_fsck_ok(&env);
}

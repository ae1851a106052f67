//! The RUN-only build conformance cases, driven at the executor level the way the solver will
//! drive it, with the real store: the busybox image is loaded and unpacked into a snapshot by
//! the store, each RUN runs over the previous snapshots, its layer is captured into a store
//! blob and its upper becomes the next snapshot. The final filesystem — the base and captured
//! layers flattened by the store's own layer reader (an independent tar implementation), and
//! the snapshot chain — must equal what BuildKit built (`expected/CASE.json`).

use crate::support;
use std::collections::BTreeMap;
use std::path::Path;

use crate::support::exec::{Fixture, walk};
use rbuild_executor::lower::LowerView;
use rbuild_executor::{Backend, LayerOptions, RunStep, Stdio3};
use rbuild_store::Store;
use rbuild_store::layer::FlatTree;

/// The conformance comparison format (see ../shared/conformance/build/README.md).
fn flatten(dir: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    for p in walk(dir) {
        let rel = p.strip_prefix(dir).unwrap();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        let owner = format!("{}:{}", md.uid(), md.gid());
        let mode = md.mode() & 0o7777;
        let v = if md.is_dir() {
            format!("dir 0o{mode:o} {owner}")
        } else if md.file_type().is_symlink() {
            format!(
                "symlink {owner} -> {}",
                std::fs::read_link(&p).unwrap().display()
            )
        } else {
            let data = std::fs::read(&p).unwrap();
            let digest = hex::encode(Sha256::digest(&data));
            format!("file 0o{mode:o} {owner} {} {}", data.len(), &digest[..16])
        };
        out.insert(format!("/{}", rel.display()), v);
    }
    out
}

fn expected(case: &str) -> BTreeMap<String, String> {
    let shared = support::shared_dir();
    let text =
        std::fs::read(shared.join(format!("conformance/build/expected/{case}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v["files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Run `steps` (argv lists) as successive RUN steps and compare with the case's expectation.
fn conform(case: &str, steps: &[Vec<&str>]) {
    let fx = Fixture::new(Backend::Overlay);
    let store = Store::open(&fx.root).unwrap();
    store
        .load_file(&support::shared_dir().join("images/busybox-1.35.oci.tar"))
        .unwrap();
    let image = store.resolve_image("busybox:1.35").unwrap();
    let base_layer = &image.layers[0];
    let mut chain = fx
        .exec
        .snapshots()
        .ensure_chain(&store, std::slice::from_ref(base_layer))
        .unwrap();
    let mut chain_id = base_layer.diff_id.clone();
    let mut captured = Vec::new();
    for (i, argv) in steps.iter().enumerate() {
        let mut err = Vec::new();
        let mut cb = |_: rbuild_executor::Stream, l: &[u8]| {
            err.push(String::from_utf8_lossy(l).into_owned())
        };
        let mut step = RunStep::new(
            chain.clone(),
            argv.iter().map(|s| s.to_string()).collect(),
            Stdio3::Capture(&mut cb),
        );
        step.env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
        let outcome = fx.exec.run(step).unwrap();
        assert!(
            outcome.status.success(),
            "{case} step {i}: {} {err:?}",
            outcome.status
        );
        let layer = outcome
            .rootfs
            .capture_layer(&store, &LayerOptions::default())
            .unwrap()
            .expect("every RUN of these cases changes something");
        assert!(store.has_blob(&layer.diff_id));
        chain_id = rbuild_store::chain::chain_id(Some(&chain_id), &layer.diff_id);
        let snap = outcome
            .rootfs
            .commit_snapshot(&store, &chain_id)
            .unwrap()
            .unwrap();
        chain.push(snap);
        captured.push(layer.diff_id);
    }
    let want = expected(case);
    let mut tree = FlatTree::new();
    let base_tar = store.open_layer(&base_layer.descriptor).unwrap();
    tree.apply_layer(base_tar, store.limits(), "base").unwrap();
    for d in &captured {
        tree.apply_layer(store.open_blob(d).unwrap(), store.limits(), d.as_str())
            .unwrap();
    }
    support::exec::assert_same_tree(
        &tree.to_conformance_map(),
        &want,
        &format!("{case}: layers flattened by the store"),
    );
    let merged = fx.tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    rbuild_executor::materialize::materialize(&LowerView::new(&chain), &merged).unwrap();
    support::exec::assert_same_tree(&flatten(&merged), &want, &format!("{case}: snapshot chain"));
}

const SH: [&str; 2] = ["/bin/sh", "-c"];

fn sh(cmd: &str) -> Vec<&str> {
    vec![SH[0], SH[1], cmd]
}

/// run-diff-whiteouts: deletions of base and earlier-step files, exec form, chmod-only.
#[test]
fn run_diff_whiteouts_matches_buildkit() {
    conform(
        "run-diff-whiteouts",
        &[
            sh(
                "mkdir -p /data/keep /data/drop && echo 1 > /data/keep/f && echo 2 > /data/drop/g && echo 3 > /data/file",
            ),
            sh("rm -rf /data/drop && rm /data/file && rm /bin/vi && echo new > /data/keep/added"),
            vec!["/bin/sh", "-c", "echo exec-form > /exec.txt"],
            sh("chmod 600 /data/keep/f"),
        ],
    );
}

/// opaque-recreate: a directory deleted and recreated with new contents.
#[test]
fn opaque_recreate_matches_buildkit() {
    conform(
        "opaque-recreate",
        &[
            sh("mkdir -p /cfg && echo old1 > /cfg/one && echo old2 > /cfg/two"),
            sh("rm -rf /cfg && mkdir /cfg && echo new > /cfg/three"),
        ],
    );
}

/// shell-and-entrypoint: RUN through a custom SHELL.
#[test]
fn shell_and_entrypoint_files_match_buildkit() {
    conform(
        "shell-and-entrypoint",
        &[vec![
            "/bin/sh",
            "-e",
            "-c",
            "echo shell-changed > /shell.txt",
        ]],
    );
}

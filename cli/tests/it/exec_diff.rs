//! The two differs on real steps: the same step run over overlayfs (upper-dir differ) and over
//! a copied rootfs (walking differ) must give the same changeset and byte-identical layers, and
//! applying the layer to the parent must reproduce the step's filesystem exactly.

use crate::support;
use std::path::PathBuf;

use crate::support::exec::{Fixture, apply_layer, run_sh, tree};
use rbuild_executor::diff::normalized;
use rbuild_executor::lower::LowerView;
use rbuild_executor::mounts::{BindMount, BindSource, RunMount};
use rbuild_executor::{Backend, ExecError, LayerOptions, RunOutcome};

/// A layer over busybox with something for every scenario to change.
fn scenario_layers(fx: &Fixture) -> Vec<PathBuf> {
    let top = fx.layer(500, |d| {
        for dir in [
            "data/keep",
            "data/drop",
            "opq",
            "tofile-dir/sub",
            "sp ace",
            "etc",
        ] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
        }
        for (f, c) in [
            ("data/keep/f", "1"),
            ("data/drop/g", "2"),
            ("data/file", "3"),
            ("opq/one", "o1"),
            ("opq/two", "o2"),
            ("mode-file", "m"),
            ("own-file", "o"),
            ("xattr-file", "x"),
            ("tofile-dir/sub/x", "x"),
            ("todir-file", "f"),
            ("sp ace/naïve file", "n"),
            ("etc/hosts", "127.0.0.1 localhost\n"),
            ("etc/resolv.conf", ""),
        ] {
            std::fs::write(d.join(f), c).unwrap();
        }
        xattr::set(d.join("xattr-file"), "user.x", b"1").unwrap();
        std::os::unix::fs::symlink("/data/file", d.join("link")).unwrap();
        support::exec::set_times(d, 1000);
    });
    vec![fx.base.clone(), top]
}

/// A command that sets an xattr using the host's perl (busybox has no setfattr); needs the
/// host's root bind-mounted at /host.
fn setxattr(path: &str, name: &str, value: &str) -> String {
    let loader = if cfg!(target_arch = "aarch64") {
        "/lib/ld-linux-aarch64.so.1"
    } else {
        "/lib64/ld-linux-x86-64.so.2"
    };
    let ld = std::fs::canonicalize(loader).unwrap();
    let libdir = ld.parent().unwrap().display().to_string();
    let perl = std::fs::canonicalize("/usr/bin/perl").unwrap();
    let nr = if cfg!(target_arch = "aarch64") {
        5
    } else {
        188
    };
    format!(
        "/host{} --library-path /host{libdir} /host{} -e 'my ($p, $n, $v) = (\"{path}\", \"{name}\", \"{value}\"); syscall({nr}, $p, $n, $v, {}, 0) == 0 or die \"setxattr: $!\"'",
        ld.display(),
        perl.display(),
        value.len()
    )
}

fn host_root_mount() -> RunMount {
    RunMount::Bind(BindMount {
        target: "/host".into(),
        source: BindSource::Dir {
            root: PathBuf::from("/"),
            subpath: "/".into(),
            hidden: Vec::new(),
        },
        readwrite: false,
    })
}

struct Both {
    overlay: RunOutcome,
    copy: RunOutcome,
    copy_fx: Fixture,
    _overlay_fx: Fixture,
    lowers_copy: Vec<PathBuf>,
}

fn run_both(script: &str, host: bool) -> Both {
    let ofx = Fixture::new(Backend::Overlay);
    let cfx = Fixture::new(Backend::Copy);
    let lo = scenario_layers(&ofx);
    let lc = scenario_layers(&cfx);
    let mounts = if host {
        vec![host_root_mount()]
    } else {
        vec![]
    };
    let o = run_sh(&ofx.exec, &lo, script, |s| s.mounts = mounts.clone());
    let c = run_sh(&cfx.exec, &lc, script, |s| s.mounts = mounts.clone());
    assert!(o.outcome().status.success(), "overlay: {:?}", o.stderr);
    assert!(c.outcome().status.success(), "copy: {:?}", c.stderr);
    Both {
        overlay: o.result.unwrap(),
        copy: c.result.unwrap(),
        copy_fx: cfx,
        _overlay_fx: ofx,
        lowers_copy: lc,
    }
}

/// The step's layer, also checked by the store's validating layer reader (what `load` and
/// pull accept): same diff_id, no rule broken.
fn layer_bytes(o: &RunOutcome, epoch: Option<i64>) -> Option<(rbuild_store::Digest, Vec<u8>)> {
    let mut buf = Vec::new();
    let opts = LayerOptions {
        source_date_epoch: epoch,
    };
    let r = o.rootfs.write_layer(&mut buf, &opts).unwrap();
    r.map(|(info, _)| {
        assert_eq!(info.size, buf.len() as u64);
        let scan = rbuild_store::layer::scan(&buf[..], &rbuild_store::Limits::default(), "step")
            .unwrap_or_else(|e| panic!("the store rejects the layer: {e:?}"));
        assert_eq!(scan.diff_id, info.diff_id);
        (info.diff_id, buf)
    })
}

/// Run a scenario in both backends and check the differs agree, the layers are identical
/// (mtimes clamped), and applying the layer reproduces the copy backend's rootfs. Returns the
/// normalized changeset.
fn check(script: &str, host: bool) -> Vec<String> {
    let both = run_both(script, host);
    let cs_o = both.overlay.rootfs.changeset().unwrap();
    let cs_c = both.copy.rootfs.changeset().unwrap();
    let n_o = normalized(&cs_o).unwrap();
    let n_c = normalized(&cs_c).unwrap();
    assert_eq!(n_o, n_c, "the differs disagree on `{script}`");
    let lo = layer_bytes(&both.overlay, Some(2000));
    let lc = layer_bytes(&both.copy, Some(2000));
    assert_eq!(
        lo.as_ref().map(|l| &l.0),
        lc.as_ref().map(|l| &l.0),
        "layers differ for `{script}`"
    );
    // apply(layer, parent) == the step's rootfs
    let before = both.copy_fx.tmp.path().join("applied");
    std::fs::create_dir(&before).unwrap();
    rbuild_executor::materialize::materialize(&LowerView::new(&both.lowers_copy), &before).unwrap();
    if let Some((_, bytes)) = layer_bytes(&both.copy, None) {
        apply_layer(&bytes, &before);
    }
    let after = both.copy.rootfs.copy_dir().unwrap();
    // Hard links to files of lower layers cannot be expressed in a layer (the link becomes a
    // copy), so link identity is not compared here; `hard_links_are_kept_within_the_layer`
    // checks the links a layer can hold.
    let mut want = tree(after, true, false);
    let mut got = tree(&before, true, false);
    if host {
        // The /host mount point is a stub in the copy; it is not part of the layer.
        want.remove("/host");
        got.remove("/host");
    }
    support::exec::assert_same_tree(
        &got,
        &want,
        &format!("applying the layer does not reproduce `{script}`"),
    );
    n_o
}

fn has(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

/// Deleting a base file gives one whiteout and its parent directory.
#[test]
fn deleting_a_base_file_gives_a_whiteout() {
    let cs = check("rm /data/file", false);
    assert_eq!(cs[0], "data Dir 755 0:0");
    assert_eq!(cs[1], "data/.wh.file whiteout");
    assert_eq!(cs.len(), 2);
}

/// Deleting a base directory whites out the directory, not its children.
#[test]
fn deleting_a_base_directory_whites_out_only_the_directory() {
    let cs = check("rm -rf /data/drop", false);
    assert_eq!(cs, ["data Dir 755 0:0", "data/.wh.drop whiteout"]);
}

/// A deleted and recreated directory is opaque and carries all its new contents.
#[test]
fn a_recreated_directory_is_opaque() {
    let cs = check("rm -rf /opq && mkdir /opq && echo new > /opq/three", false);
    assert!(has(&cs, "opq Dir 755 0:0"), "{cs:?}");
    assert!(has(&cs, "opq/.wh..wh..opq opaque"), "{cs:?}");
    assert!(has(&cs, "opq/three File 644 0:0"), "{cs:?}");
    assert_eq!(cs.len(), 3, "{cs:?}");
}

/// Metadata-only changes (mode, owner, xattr, mtime) emit the full entry.
#[test]
fn metadata_only_changes_emit_the_entry() {
    let cs = check(
        &format!(
            "chmod 600 /mode-file && chown 1000:1000 /own-file && touch -d @5000 /data/keep/f && {}",
            setxattr("/xattr-file", "user.x", "2")
        ),
        true,
    );
    assert!(has(&cs, "mode-file File 600 0:0"), "{cs:?}");
    assert!(has(&cs, "own-file File 644 1000:1000"), "{cs:?}");
    assert!(has(&cs, "data/keep/f File 644 0:0"), "{cs:?}");
    assert!(
        cs.iter()
            .any(|l| l.starts_with("xattr-file File") && l.ends_with("user.x=32")),
        "{cs:?}"
    );
    assert!(
        !cs.iter().any(|l| l.starts_with("host")),
        "mount points stay out: {cs:?}"
    );
}

/// Hard links inside the layer stay links; a link to an unchanged base file becomes a copy.
#[test]
fn hard_links_are_kept_within_the_layer() {
    let both = run_both(
        "echo x > /hl1 && ln /hl1 /hl2 && ln /bin/busybox /bb",
        false,
    );
    let (_, bytes) = layer_bytes(&both.copy, None).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let entries: Vec<(String, tar::EntryType, Option<String>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
                e.link_name().unwrap().map(|l| l.display().to_string()),
            )
        })
        .collect();
    assert!(
        entries.contains(&("bb".into(), tar::EntryType::Regular, None)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("hl1".into(), tar::EntryType::Regular, None)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("hl2".into(), tar::EntryType::Link, Some("hl1".into()))),
        "{entries:?}"
    );
    assert!(
        !entries.iter().any(|e| e.0.starts_with("bin")),
        "{entries:?}"
    );
    drop(both);
    check(
        "echo x > /hl1 && ln /hl1 /hl2 && ln /bin/busybox /bb",
        false,
    );
}

/// A file replaced by a directory and a directory replaced by a file need no whiteouts.
#[test]
fn type_changes_replace_the_entry() {
    let cs = check(
        "rm /todir-file && mkdir /todir-file && echo in > /todir-file/x && rm -rf /tofile-dir && echo now > /tofile-dir",
        false,
    );
    assert!(has(&cs, "todir-file Dir 755 0:0"), "{cs:?}");
    assert!(has(&cs, "todir-file/x File"), "{cs:?}");
    assert!(has(&cs, "tofile-dir File 644 0:0"), "{cs:?}");
    assert!(
        !cs.iter()
            .any(|l| l.contains("whiteout") || l.contains("opaque")),
        "{cs:?}"
    );
}

/// Names with spaces and non-ASCII characters, and very long names, survive.
#[test]
fn unusual_and_long_names_survive() {
    let long = "d".repeat(120);
    let cs = check(
        &format!(
            "echo 1 >> '/sp ace/naïve file' && echo 2 > '/新しい ファイル' && mkdir -p /{long}/{long} && echo deep > /{long}/{long}/f && ln -s /{long}/{long}/f /longlink"
        ),
        false,
    );
    assert!(has(&cs, "sp ace/naïve file File"), "{cs:?}");
    assert!(has(&cs, "新しい ファイル File"), "{cs:?}");
    assert!(has(&cs, &format!("{long}/{long}/f File")), "{cs:?}");
    assert!(
        cs.iter()
            .any(|l| l.starts_with("longlink Symlink") && l.ends_with(&format!("{long}/f"))),
        "{cs:?}"
    );
}

/// Retargeting a symlink emits the new link.
#[test]
fn a_retargeted_symlink_is_emitted() {
    let cs = check("ln -sfn /data/keep /link", false);
    assert_eq!(cs, ["link Symlink 777 0:0 -> /data/keep"]);
}

/// A step that changes nothing produces no layer.
#[test]
fn an_unchanged_rootfs_gives_no_layer() {
    let both = run_both("cat /data/file >/dev/null; ls / >/dev/null", false);
    assert!(both.overlay.rootfs.changeset().unwrap().is_empty());
    assert!(both.copy.rootfs.changeset().unwrap().is_empty());
    assert!(layer_bytes(&both.overlay, None).is_none());
}

/// A 0:0 character device is the overlay whiteout marker: overlayfs refuses to let a step
/// create one, and the walking differ ignores one (with a warning) on the copy backend.
#[test]
fn a_step_made_whiteout_device_never_reaches_the_layer() {
    let both = run_both("mknod /data/wh c 0 0 && echo made || echo refused", false);
    let _ = &both;
    let ofx = Fixture::new(Backend::Overlay);
    let lo = scenario_layers(&ofx);
    let o = run_sh(
        &ofx.exec,
        &lo,
        "mknod /data/wh c 0 0 2>&1 || echo refused",
        |_| {},
    );
    assert_eq!(
        o.stdout.last().map(String::as_str),
        Some("refused"),
        "{:?}",
        o.stdout
    );
    let cs = both.copy.rootfs.changeset().unwrap();
    let lines = normalized(&cs).unwrap();
    assert_eq!(
        lines,
        ["data Dir 755 0:0"],
        "only the directory's mtime changed"
    );
    assert!(
        cs.warnings.iter().any(|w| w.contains("`/data/wh`")),
        "{:?}",
        cs.warnings
    );
}

/// Creating a `.wh.` name is an error that names the path, in both differs.
#[test]
fn reserved_whiteout_names_are_an_error() {
    let both = run_both("touch /data/.wh.sneaky", false);
    for o in [&both.overlay, &both.copy] {
        match o.rootfs.changeset() {
            Err(ExecError::ReservedName { path }) => assert_eq!(path, "data/.wh.sneaky"),
            other => panic!(
                "expected a reserved-name error, got {:?}",
                other.map(|c| c.changes.len())
            ),
        }
        let err = o.rootfs.changeset().unwrap_err();
        assert!(err.to_string().contains("`/data/.wh.sneaky`"), "{err}");
    }
}

/// Random sequences of filesystem operations: both differs agree and applying the layer
/// reproduces the rootfs.
mod random_steps {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec![
            "/data/keep/f",
            "/data/drop",
            "/data/file",
            "/opq",
            "/opq/one",
            "/new",
            "/new/sub",
            "/mode-file",
            "/link",
            "/sp ace",
        ]);
        (0..8usize, name.clone(), name).prop_map(|(k, a, b)| match k {
            0 => format!("rm -rf '{a}'"),
            1 => format!("mkdir -p '{a}'"),
            2 => format!("echo $RANDOM > '{a}'"),
            3 => format!("chmod 640 '{a}'"),
            4 => format!("ln -sfn '{b}' '{a}'"),
            5 => format!("ln '{b}' '{a}'"),
            6 => format!("chown 7:8 '{a}'"),
            _ => format!("rm -rf '{a}' && mkdir '{a}' && echo x > '{a}/x'"),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn differs_agree_and_layers_reproduce_the_rootfs(ops in prop::collection::vec(op(), 1..6)) {
            // RANDOM differs between the two runs, so make writes deterministic per position.
            let script: Vec<String> = ops
                .iter()
                .enumerate()
                .map(|(i, o)| format!("({}) 2>/dev/null", o.replace("$RANDOM", &i.to_string())))
                .collect();
            check(&format!("{}; true", script.join("; ")), false);
        }
    }
}

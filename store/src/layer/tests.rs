//! Hostile-layer and semantics tests for the unpacker, scanner and flattener (catalogue §4.D
//! cases and containerd/umoci breakout cases, re-implemented). Every test checks that a canary
//! tree outside the root is byte-for-byte untouched.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::limits::Limits;
use crate::testing::{RawEntry, TarBuilder};

struct Sandbox {
    _t: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    before: String,
}

fn snapshot(dir: &Path) -> String {
    let mut out = String::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let content = if m.is_file() {
            fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out += &format!(
            "{} {:o} {} {} {:?}\n",
            e.path().display(),
            m.mode(),
            m.ino(),
            m.mtime(),
            content
        );
    }
    out
}

impl Sandbox {
    fn new() -> Sandbox {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("perm400"), b"host secret").unwrap();
        fs::set_permissions(outside.join("perm400"), fs::Permissions::from_mode(0o400)).unwrap();
        fs::set_permissions(outside.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
        let before = snapshot(&outside);
        Sandbox {
            _t: t,
            root,
            outside,
            before,
        }
    }

    fn unpack(&self, tar: &[u8], mode: UnpackMode) -> crate::Result<UnpackStats> {
        unpack(
            tar,
            &self.root,
            &UnpackOptions::new(mode),
            &Limits::default(),
            "test-layer",
        )
    }

    fn out(&self) -> String {
        self.outside.display().to_string()
    }

    fn assert_host_untouched(&self) {
        assert_eq!(
            snapshot(&self.outside),
            self.before,
            "HOST PATH WAS CHANGED! THIS IS A PATH ESCAPE!"
        );
    }
}

fn getx(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::lgetxattr(p, name, &mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn err_text(r: crate::Result<UnpackStats>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dotdot_entries_are_refused() {
    let s = Sandbox::new();
    for name in ["../outside/perm400", "a/../../outside/x", "/../outside/x"] {
        let mut t = TarBuilder::new();
        t.file(name, b"pwned");
        let e = err_text(s.unpack(&t.finish(), UnpackMode::Merged));
        assert!(e.contains("`..`"), "{name}: {e}");
        assert!(scan(&t.finish()[..], &Limits::default(), "l").is_err());
    }
    s.assert_host_untouched();
}

#[test]
fn absolute_names_land_inside_the_root() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.file("/etc/passwd", b"root:x:0:0");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert_eq!(fs::read(s.root.join("etc/passwd")).unwrap(), b"root:x:0:0");
    // Validation of loaded layers reads them the same way (as Docker and containerd do), and
    // a hard link to an absolute name means the entry inside the layer.
    t.hardlink("/etc/passwd2", "/etc/passwd");
    let scanned = scan(&t.finish()[..], &Limits::default(), "l").unwrap();
    assert_eq!(scanned.entries, 2);
    s.assert_host_untouched();
}

#[test]
fn absolute_symlink_parent_is_reanchored() {
    // `etc -> /outside-dir` then `etc/shadow`: lands in root/<outside-dir>/shadow (D3).
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.symlink("etc", s.out()).file("etc/shadow", b"x");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    let inside = s.root.join(s.out().trim_start_matches('/')).join("shadow");
    assert!(inside.is_file(), "{} missing", inside.display());
    s.assert_host_untouched();
    let e = scan(&t.finish()[..], &Limits::default(), "l")
        .unwrap_err()
        .to_string();
    assert!(e.contains("through"), "{e}");
}

#[test]
fn relative_symlink_up_and_out_is_clamped() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.symlink("x", "../../../../../../outside")
        .file("x/evil", b"x");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert!(s.root.join("outside/evil").is_file());
    let mut t = TarBuilder::new();
    t.symlink("sym", "..").file("sym/exploit/foo/bar", b"x");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert!(s.root.join("exploit/foo/bar").is_file());
    s.assert_host_untouched();
}

#[test]
fn file_replaces_symlink_instead_of_writing_through_it() {
    let s = Sandbox::new();
    let mut l1 = TarBuilder::new();
    l1.symlink("f", format!("{}/perm400", s.out()))
        .symlink("d", format!("{}/dir", s.out()));
    s.unpack(&l1.finish(), UnpackMode::Merged).unwrap();
    let mut l2 = TarBuilder::new();
    l2.file("f", b"new");
    let mut dir = RawEntry::new("d", b'5');
    dir.mode = 0o777;
    l2.entry(dir);
    s.unpack(&l2.finish(), UnpackMode::Merged).unwrap();
    assert_eq!(fs::read(s.root.join("f")).unwrap(), b"new");
    let d = s.root.join("d").symlink_metadata().unwrap();
    assert!(d.is_dir() && d.mode() & 0o7777 == 0o777);
    s.assert_host_untouched();
}

#[test]
fn hardlinks_stay_in_the_root() {
    let s = Sandbox::new();
    fs::create_dir_all(s.root.join("etc")).unwrap();
    fs::write(s.root.join("etc/passwd"), b"inside").unwrap();
    let mut t = TarBuilder::new();
    t.hardlink("abs", "/etc/passwd");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert_eq!(
        fs::metadata(s.root.join("abs")).unwrap().ino(),
        fs::metadata(s.root.join("etc/passwd")).unwrap().ino()
    );
    for target in ["../outside/perm400", "../../../../etc/passwd"] {
        let mut t = TarBuilder::new();
        t.hardlink("l", target);
        assert!(err_text(s.unpack(&t.finish(), UnpackMode::Merged)).contains("`..`"));
    }
    let mut t = TarBuilder::new();
    t.hardlink("missing", "/no/such/file");
    assert!(err_text(s.unpack(&t.finish(), UnpackMode::Merged)).contains("not found"));
    s.assert_host_untouched();
}

#[test]
fn hardlink_to_symlink_links_the_symlink_and_chmod_never_follows() {
    // CVE-2021-32760: symlink ep -> host file; hardlink sketchy -> ep; later mode change.
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.symlink("ep", format!("{}/perm400", s.out()))
        .hardlink("sketchy", "ep");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert!(
        s.root
            .join("sketchy")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mut t = TarBuilder::new();
    t.file_mode("sketchy", b"", 0o4777, 0, 0);
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    s.assert_host_untouched();
}

#[test]
fn the_root_cannot_be_replaced() {
    let s = Sandbox::new();
    for name in [".", "./", "/."] {
        let mut t = TarBuilder::new();
        t.symlink(name, s.out());
        assert!(
            err_text(s.unpack(&t.finish(), UnpackMode::Merged)).contains("root"),
            "{name}"
        );
        if name.ends_with('/') {
            continue; // a "file" named with a trailing slash is a directory (v7 tar rule)
        }
        let mut t = TarBuilder::new();
        t.file(name, b"x");
        assert!(
            err_text(s.unpack(&t.finish(), UnpackMode::Merged)).contains("root"),
            "{name}"
        );
        assert!(scan(&t.finish()[..], &Limits::default(), "l").is_err());
    }
    // A directory entry for the root only sets its attributes.
    let mut t = TarBuilder::new();
    t.dir("./");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    s.assert_host_untouched();
}

#[test]
fn nondir_parent_is_an_error_not_a_write_through() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.file("nondir", b"x").file("nondir/foo/bar", b"y");
    let e = err_text(s.unpack(&t.finish(), UnpackMode::Merged));
    assert!(e.contains("not a directory"), "{e}");
    assert!(scan(&t.finish()[..], &Limits::default(), "l").is_err());
}

#[test]
fn invalid_whiteouts_are_refused() {
    let s = Sandbox::new();
    for name in [".wh..", ".wh...", "etc/.wh..", ".wh."] {
        let mut t = TarBuilder::new();
        t.file(name, b"");
        let e = err_text(s.unpack(&t.finish(), UnpackMode::Merged));
        assert!(e.contains("whiteout"), "{name}: {e}");
        assert!(
            scan(&t.finish()[..], &Limits::default(), "l").is_err(),
            "{name}"
        );
    }
    // `.wh.etc/somefile` is an ordinary path.
    let mut t = TarBuilder::new();
    t.file(".wh.etc/somefile", b"x");
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    assert!(s.root.join(".wh.etc/somefile").is_file());
}

#[test]
fn whiteouts_act_through_in_root_symlinks_only() {
    let s = Sandbox::new();
    let mut l1 = TarBuilder::new();
    l1.dir("etc")
        .file("etc/x", b"1")
        .symlink("localetc", "/etc")
        .symlink("hostdir", s.out());
    s.unpack(&l1.finish(), UnpackMode::Merged).unwrap();
    let mut l2 = TarBuilder::new();
    l2.file("localetc/.wh.x", b"")
        .file("hostdir/.wh.perm400", b"");
    s.unpack(&l2.finish(), UnpackMode::Merged).unwrap();
    assert!(!s.root.join("etc/x").exists());
    let mut l3 = TarBuilder::new();
    l3.file(".wh.localetc", b"");
    s.unpack(&l3.finish(), UnpackMode::Merged).unwrap();
    assert!(
        s.root.join("etc").is_dir(),
        "removing the symlink must not remove its target"
    );
    assert!(!s.root.join("localetc").exists());
    s.assert_host_untouched();
}

#[test]
fn opaque_and_whiteout_only_hide_lower_layers() {
    let s = Sandbox::new();
    let mut l1 = TarBuilder::new();
    l1.dir("a")
        .file("a/old", b"1")
        .dir("a/sub")
        .file("a/sub/old", b"1")
        .file("keep", b"1");
    s.unpack(&l1.finish(), UnpackMode::Merged).unwrap();
    // Opaque marker listed after new children; a whiteout for a file added in this layer.
    let mut l2 = TarBuilder::new();
    l2.file("a/new", b"2")
        .file("a/sub/new", b"2")
        .file("a/.wh..wh..opq", b"")
        .file("same", b"2")
        .file(".wh.same", b"");
    s.unpack(&l2.finish(), UnpackMode::Merged).unwrap();
    assert!(s.root.join("a/new").is_file());
    assert!(s.root.join("a/sub/new").is_file());
    assert!(!s.root.join("a/old").exists());
    assert!(!s.root.join("a/sub/old").exists());
    assert!(
        s.root.join("same").is_file(),
        "same-layer file is not hidden"
    );
    assert!(s.root.join("keep").is_file());

    // The flattener agrees.
    let mut tree = FlatTree::new();
    tree.apply_layer(&l1.finish()[..], &Limits::default(), "l1")
        .unwrap();
    tree.apply_layer(&l2.finish()[..], &Limits::default(), "l2")
        .unwrap();
    let keys: Vec<String> = tree.to_conformance_map().into_keys().collect();
    assert_eq!(
        keys,
        ["/a", "/a/new", "/a/sub", "/a/sub/new", "/keep", "/same"]
    );
}

#[test]
fn duplicates_in_one_layer_are_refused() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.file("x", b"1").file("./x", b"2");
    assert!(err_text(s.unpack(&t.finish(), UnpackMode::Merged)).contains("twice"));
    assert!(scan(&t.finish()[..], &Limits::default(), "l").is_err());
    let mut opts = UnpackOptions::new(UnpackMode::Merged);
    opts.duplicates = DuplicatePolicy::LastWins;
    unpack(&t.finish()[..], &s.root, &opts, &Limits::default(), "l").unwrap();
    assert_eq!(fs::read(s.root.join("x")).unwrap(), b"2");
}

#[test]
fn devices_setuid_xattrs_and_owners_are_preserved() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.char_device("dev/null", 1, 3).fifo("dev/fifo");
    let mut su = RawEntry::new("bin/su", b'0');
    su.data = b"#!".to_vec();
    su.mode = 0o4755;
    su.uid = 7;
    su.gid = 8;
    su.mtime = 1_000_000;
    su.pax.push((
        "SCHILY.xattr.security.capability".into(),
        vec![
            1, 0, 0, 2, b'\n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    su.pax
        .push(("SCHILY.xattr.user.note".into(), b"hi".to_vec()));
    su.pax
        .push(("SCHILY.xattr.trusted.overlay.opaque".into(), b"y".to_vec()));
    t.entry(su);
    s.unpack(&t.finish(), UnpackMode::Merged).unwrap();
    let dev = s.root.join("dev/null").symlink_metadata().unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
    assert!(
        s.root
            .join("dev/fifo")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let su = s.root.join("bin/su").symlink_metadata().unwrap();
    assert_eq!(
        (su.mode() & 0o7777, su.uid(), su.gid(), su.mtime()),
        (0o4755, 7, 8, 1_000_000)
    );
    let cap = getx(&s.root.join("bin/su"), "security.capability").unwrap();
    assert_eq!(cap.len(), 20);
    assert!(getx(&s.root.join("bin/su"), "trusted.overlay.opaque").is_none());
    let mut z = TarBuilder::new();
    z.char_device("w", 0, 0);
    assert!(err_text(s.unpack(&z.finish(), UnpackMode::Merged)).contains("whiteout"));
    assert!(scan(&z.finish()[..], &Limits::default(), "l").is_err());
    // Devices are fine for validation: they are only entries until unpacked.
    scan(&t.finish()[..], &Limits::default(), "l").unwrap();
    s.assert_host_untouched();
}

#[test]
fn overlay_lower_mode_writes_overlayfs_whiteouts() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.file("a/.wh.gone", b"")
        .file("b/.wh..wh..opq", b"")
        .file("b/kept", b"1")
        .file("c/x", b"1")
        .file("c/.wh.x", b"");
    s.unpack(&t.finish(), UnpackMode::OverlayLower).unwrap();
    let w = s.root.join("a/gone").symlink_metadata().unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(w.file_type().is_char_device() && w.rdev() == 0);
    let opq = getx(&s.root.join("b"), "trusted.overlay.opaque").unwrap();
    assert_eq!(opq, b"y");
    assert!(s.root.join("b/kept").is_file());
    assert!(
        s.root.join("c/x").is_file(),
        "same-layer file wins over its whiteout"
    );
    assert!(getx(&s.root.join("c"), "trusted.overlay.opaque").is_none());
}

/// A directory made where this layer whited out the lower one is opaque: the lower
/// directory's children stay hidden (as the flattener and overlayfs itself show it).
#[test]
fn overlay_lower_directory_over_a_whiteout_is_opaque() {
    let s = Sandbox::new();
    let mut t = TarBuilder::new();
    t.file(".wh.d", b"").dir("d").file("d/new", b"1");
    s.unpack(&t.finish(), UnpackMode::OverlayLower).unwrap();
    assert!(s.root.join("d").is_dir());
    assert_eq!(
        getx(&s.root.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    let mut lower = TarBuilder::new();
    lower.dir("d").file("d/old", b"0");
    let mut tree = FlatTree::new();
    tree.apply_layer(&lower.finish()[..], &Limits::default(), "l1")
        .unwrap();
    tree.apply_layer(&t.finish()[..], &Limits::default(), "l2")
        .unwrap();
    let keys: Vec<String> = tree.to_conformance_map().into_keys().collect();
    assert_eq!(keys, ["/d", "/d/new"]);
}

#[test]
fn add_archive_through_absolute_symlink_lands_inside() {
    // BuildKit moby/moby#53258: base has var/run -> /run; ADD payload.tar to /var/run.
    let s = Sandbox::new();
    fs::create_dir_all(s.root.join("var")).unwrap();
    fs::create_dir_all(s.root.join("run")).unwrap();
    std::os::unix::fs::symlink("/run", s.root.join("var/run")).unwrap();
    let mut t = TarBuilder::new();
    t.file("act/repo/HEAD", b"ref")
        .hardlink("HEAD.link", "act/repo/HEAD")
        .file(".wh.notawhiteout", b"");
    let mut opts = UnpackOptions::new(UnpackMode::Plain);
    opts.base = path::clean(b"var/run", AbsolutePaths::Strip).unwrap();
    unpack(
        &t.finish()[..],
        &s.root,
        &opts,
        &Limits::default(),
        "payload.tar",
    )
    .unwrap();
    let head = s.root.join("run/act/repo/HEAD");
    assert_eq!(fs::read(&head).unwrap(), b"ref");
    assert_eq!(
        fs::metadata(&head).unwrap().ino(),
        fs::metadata(s.root.join("run/HEAD.link")).unwrap().ino()
    );
    assert!(s.root.join("run/.wh.notawhiteout").is_file());
    s.assert_host_untouched();
}

#[test]
fn oversized_pax_header_is_a_limit_error() {
    let mut t = TarBuilder::new();
    t.huge_pax_header(2 << 20);
    let e = scan(&t.finish()[..], &Limits::default(), "l").unwrap_err();
    assert!(matches!(e, crate::Error::Limit { .. }), "{e}");
}

#[test]
fn truncated_and_trailing_data() {
    let mut t = TarBuilder::new();
    t.file("a", &vec![7u8; 5000]);
    let full = t.finish();
    for cut in [100, 700, 3000] {
        let e = scan(&full[..cut], &Limits::default(), "l")
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{cut}: {e}");
    }
    // Trailing garbage after the end marker is hashed but not parsed.
    let mut with_tail = full.clone();
    with_tail.extend_from_slice(b"garbage");
    let a = scan(&full[..], &Limits::default(), "l").unwrap();
    let b = scan(&with_tail[..], &Limits::default(), "l").unwrap();
    assert_eq!(a.diff_id, crate::Digest::of(&full));
    assert_eq!(b.diff_id, crate::Digest::of(&with_tail));
    // A corrupt header checksum is an error.
    let mut bad = full.clone();
    bad[0] ^= 1;
    assert!(
        scan(&bad[..], &Limits::default(), "l")
            .unwrap_err()
            .to_string()
            .contains("checksum")
    );
}

#[test]
fn header_only_entries_with_a_size_field_carry_no_data() {
    // A symlink header claiming 512 bytes of data: Go reads none, so the next header follows.
    let mut t = TarBuilder::new();
    t.raw_header(b"link", b'2', 512, 0o777, 0, 0, b"target", 0, (0, 0));
    t.file("next", b"x");
    let mut tree = FlatTree::new();
    tree.apply_layer(&t.finish()[..], &Limits::default(), "l")
        .unwrap();
    assert!(tree.entries.contains_key(&b"next"[..]));
}

#[test]
fn hardlinks_flatten_to_their_target_and_unpack_matches_flatten() {
    let s = Sandbox::new();
    let mut l1 = TarBuilder::new();
    l1.dir("bin")
        .file_mode("bin/busybox", b"ELF", 0o755, 0, 0)
        .hardlink("bin/sh", "bin/busybox")
        .symlink("bin/ls", "/bin/busybox")
        .symlink("lib", "usr/lib")
        .file("lib/libc.so", b"libc");
    s.unpack(&l1.finish(), UnpackMode::Merged)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tree = FlatTree::new();
    tree.apply_layer(&l1.finish()[..], &Limits::default(), "l1")
        .unwrap();
    let m = tree.to_conformance_map();
    assert_eq!(m["/bin/sh"], m["/bin/busybox"]);
    assert!(
        m["/bin/sh"].starts_with("file 0o755 0:0 3 "),
        "{}",
        m["/bin/sh"]
    );
    assert_eq!(m["/bin/ls"], "symlink 0:0 -> /bin/busybox");
    assert!(m.contains_key("/usr/lib/libc.so"), "{m:?}");
    // Every flattened path exists on disk with the same type.
    for (p, desc) in &m {
        let meta = s
            .root
            .join(p.trim_start_matches('/'))
            .symlink_metadata()
            .unwrap();
        let kind = desc.split(' ').next().unwrap();
        let disk = if meta.is_dir() {
            "dir"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else {
            "file"
        };
        assert_eq!(kind, disk, "{p}");
    }
}

/// A whiteout of a directory that holds a hard link of the same layer hides only the lower
/// content: the link stays (the flattener marks a hard link's parents as this layer's, as the
/// unpacker does for every entry).
#[test]
fn whiteout_of_a_hardlinks_parent_keeps_the_link_like_the_unpacker() {
    let s = Sandbox::new();
    let mut l1 = TarBuilder::new();
    l1.dir("d").file("d/lower", b"1");
    let mut l2 = TarBuilder::new();
    l2.file("t", b"t").hardlink("d/h", "t").file(".wh.d", b"");
    s.unpack(&l1.finish(), UnpackMode::Merged).unwrap();
    s.unpack(&l2.finish(), UnpackMode::Merged).unwrap();
    assert!(s.root.join("d/h").is_file());
    assert!(!s.root.join("d/lower").exists());
    let mut tree = FlatTree::new();
    tree.apply_layer(&l1.finish()[..], &Limits::default(), "l1")
        .unwrap();
    tree.apply_layer(&l2.finish()[..], &Limits::default(), "l2")
        .unwrap();
    let keys: Vec<String> = tree.to_conformance_map().into_keys().collect();
    assert_eq!(keys, ["/d", "/d/h", "/t"]);
    s.assert_host_untouched();
}

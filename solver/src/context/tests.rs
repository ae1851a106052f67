//! End-to-end tests of the build-context layer: walk + `.dockerignore` + source resolution +
//! hashing + records, on the fixtures in `testdata/context/`, on the shared build conformance
//! cases, and on temporary directories for what git cannot store (non-UTF-8 names, FIFOs,
//! devices, escaping symlinks and loops).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use miette::Diagnostic;

use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("testdata/context").join(name)
}

/// A Dockerfile with one COPY naming `srcs`; returns its source and the args with real spans.
fn copy_line(srcs: &[&str]) -> (Source, Vec<SourceArg>) {
    let mut text = String::from("FROM scratch\nCOPY ");
    let mut args = Vec::new();
    for s in srcs {
        args.push(SourceArg::new(*s, (text.len(), s.len())));
        text.push_str(s);
        text.push(' ');
    }
    text.push_str("/dst/\n");
    (source("Dockerfile", text), args)
}

fn resolve(ctx: &BuildContext, srcs: &[&str]) -> Result<ResolvedSources, SourceError> {
    resolve_with(ctx, srcs, &[], false)
}

fn resolve_with(
    ctx: &BuildContext,
    srcs: &[&str],
    excludes: &[&str],
    parents: bool,
) -> Result<ResolvedSources, SourceError> {
    let (df, args) = copy_line(srcs);
    let ex: Vec<SourceArg> = excludes
        .iter()
        .map(|e| SourceArg::new(*e, (0, e.len())))
        .collect();
    ctx.resolve(&CopyRequest {
        dockerfile: &df,
        sources: &args,
        excludes: &ex,
        parents,
    })
}

fn dests(r: &ResolvedSources) -> Vec<String> {
    r.items
        .iter()
        .map(|i| String::from_utf8_lossy(i.dest.as_os_str().as_bytes()).into_owned())
        .collect()
}

fn label_text(e: &SourceError) -> (usize, usize) {
    let l = e.labels().unwrap().next().unwrap();
    (l.offset(), l.len())
}

/// The fixture context: `.dockerignore` rules apply, the literal exception re-includes under an
/// excluded directory, and excluded names (Dockerfile-adjacent rules aside) are not walked.
#[test]
fn fixture_walk_honours_dockerignore() {
    let ctx = BuildContext::load(&fixture("basic"), Some(&fixture("basic/Dockerfile"))).unwrap();
    let paths: Vec<String> = ctx
        .entries()
        .iter()
        .map(|e| e.path.display().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "",
            ".dockerignore",
            "Dockerfile",
            "app",
            "app/debug.log",
            "app/lib.rs",
            "app/main.rs",
            "build",
            "build/keep.txt",
            "docs",
            "docs/readme.md",
            "link-to-app",
            "main-link",
        ]
    );
}

/// A missing source that `.dockerignore` excludes names the rule, its line, and points at both
/// the COPY source and the rule's line.
#[test]
fn excluded_source_names_the_rule_and_points_at_it() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    let (df, args) = copy_line(&["secret.env"]);
    let e = ctx
        .resolve(&CopyRequest {
            dockerfile: &df,
            sources: &args,
            excludes: &[],
            parents: false,
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "COPY source `secret.env` is excluded by `.dockerignore:5` (`secret.env`)"
    );
    assert_eq!(label_text(&e), (args[0].span.offset(), 10));
    let related: Vec<_> = e.related().unwrap().collect();
    let rel_label = related[0].labels().unwrap().next().unwrap();
    let ig = std::fs::read_to_string(fixture("basic/.dockerignore")).unwrap();
    assert_eq!(
        &ig[rel_label.offset()..rel_label.offset() + rel_label.len()],
        "secret.env"
    );
    assert_eq!(
        e.code().unwrap().to_string(),
        "rbuild::context::source_excluded"
    );

    // A file under a pruned directory names the directory's rule.
    let e = resolve(&ctx, &["build/out.bin"]).unwrap_err();
    assert!(
        e.to_string().contains("`.dockerignore:3` (`build/`)"),
        "{e}"
    );
    let e = resolve(&ctx, &["top.log"]).unwrap_err();
    assert!(e.to_string().contains(".dockerignore:2"), "{e}");
}

/// Missing sources say why: not in the context with a suggestion, or outside the context.
#[test]
fn missing_sources_say_why() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    let e = resolve(&ctx, &["ap"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "COPY source `ap` not found in the build context"
    );
    assert_eq!(e.help().unwrap().to_string(), "did you mean `app/`?");
    let e = resolve(&ctx, &["main.rs"]).unwrap_err();
    assert_eq!(e.help().unwrap().to_string(), "did you mean `app/main.rs`?");
    let e = resolve(&ctx, &["../x"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "COPY source `../x` is outside the build context"
    );
    assert!(e.help().unwrap().to_string().contains("means `x`"));
    let e = resolve(&ctx, &["app/main.rs/x"]).unwrap_err();
    assert!(matches!(e, SourceError::NotADirectory { .. }), "{e:?}");
}

/// `..` and a leading `/` are cleaned into the context, a trailing `/` on a source is ignored,
/// a directory means its contents, a file keeps its name.
#[test]
fn cleaning_and_directory_contents() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    for src in ["app", "app/", "/app", "../app", "./x/../app/"] {
        let r = resolve(&ctx, &[src]).unwrap();
        assert_eq!(
            dests(&r),
            ["", "debug.log", "lib.rs", "main.rs"],
            "source {src}"
        );
        assert_eq!(r.roots[0].kind, RootKind::Dir);
    }
    let r = resolve(&ctx, &["app/main.rs", "docs"]).unwrap();
    assert_eq!(dests(&r), ["main.rs", "", "readme.md"]);
    assert!(r.multiple);
    assert!(!resolve(&ctx, &["app"]).unwrap().multiple);
    assert!(resolve(&ctx, &["app/m*.rs"]).unwrap().multiple);
}

/// A symlink named as a source is followed inside the context; symlinks inside a copied
/// directory stay symlinks.
#[test]
fn source_symlinks_followed_inside_context() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    let r = resolve(&ctx, &["link-to-app"]).unwrap();
    assert_eq!(dests(&r), ["", "debug.log", "lib.rs", "main.rs"]);
    let r = resolve(&ctx, &["main-link"]).unwrap();
    assert_eq!(dests(&r), ["main-link"]);
    assert_eq!(
        ctx.entries()[r.items[0].entry].path,
        PathBuf::from("app/main.rs")
    );
    let r = resolve(&ctx, &["."]).unwrap();
    let link = r
        .items
        .iter()
        .find(|i| i.dest == Path::new("link-to-app"))
        .unwrap();
    assert_eq!(
        ctx.entries()[link.entry].kind,
        EntryKind::Symlink {
            target: "app".into()
        }
    );
}

/// Wildcards follow `filepath.Match`; a wildcard matching nothing adds nothing (BuildKit's
/// `AllowEmptyWildcard`), alone or beside other sources; `--exclude` and `--parents` shape
/// the result.
#[test]
fn wildcards_exclude_and_parents() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    let r = resolve(&ctx, &["app/*.rs"]).unwrap();
    assert_eq!(dests(&r), ["lib.rs", "main.rs"]);
    let r = resolve(&ctx, &["*/*.md"]).unwrap();
    assert_eq!(dests(&r), ["readme.md"]);
    let r = resolve(&ctx, &["*.nothing"]).unwrap();
    assert!(r.roots.is_empty() && r.items.is_empty(), "{r:?}");
    let r = resolve(&ctx, &["*.nothing", "yarn.loc[k]"]).unwrap();
    assert!(r.roots.is_empty() && r.items.is_empty(), "{r:?}");
    // A literal missing source stays an error, even beside an empty wildcard.
    let e = resolve(&ctx, &["*.nothing", "missing.txt"]).unwrap_err();
    assert!(matches!(e, SourceError::NotFound { .. }), "{e:?}");
    let r = resolve(&ctx, &["app/main.rs", "yarn.loc[k]"]).unwrap();
    assert_eq!(dests(&r), ["main.rs"]);
    let e = resolve(&ctx, &["app/[a-"]).unwrap_err();
    assert!(matches!(e, SourceError::BadWildcard { .. }), "{e:?}");

    let r = resolve_with(&ctx, &["app"], &["*.log"], false).unwrap();
    assert_eq!(dests(&r), ["", "lib.rs", "main.rs"]);
    // A file source is never excluded, named or matched by a wildcard (BuildKit).
    let r = resolve_with(&ctx, &["app/*"], &["main.rs"], false).unwrap();
    assert_eq!(dests(&r), ["debug.log", "lib.rs", "main.rs"]);
    let r = resolve_with(&ctx, &["app/main.rs"], &["*.rs"], false).unwrap();
    assert_eq!(dests(&r), ["main.rs"]);
    let e = resolve_with(&ctx, &["app"], &["[z"], false).unwrap_err();
    assert!(matches!(e, SourceError::BadExclude { .. }), "{e:?}");

    let r = resolve_with(&ctx, &["app/main.rs", "docs"], &[], true).unwrap();
    assert_eq!(dests(&r), ["app", "app/main.rs", "docs", "docs/readme.md"]);
    let r = resolve_with(&ctx, &["app/./main.rs"], &[], true).unwrap();
    assert_eq!(dests(&r), ["main.rs"]);
    let r = resolve_with(&ctx, &["./app/./main.rs"], &[], true).unwrap();
    assert_eq!(dests(&r), ["main.rs"]);
    let r = resolve_with(&ctx, &["./app/main.rs"], &[], true).unwrap();
    assert_eq!(dests(&r), ["app", "app/main.rs"]);
}

/// Records from the fixture: hashed contents, context-default owner, and a digest that is
/// stable across reloads and changes with a mode change, which the diff names.
#[test]
fn records_digest_and_diff_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let ctx_dir = t.path().join("ctx");
    std::fs::create_dir_all(ctx_dir.join("src")).unwrap();
    std::fs::write(ctx_dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(ctx_dir.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("run.sh", ctx_dir.join("run")).unwrap();
    let chmod = |p: &str, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx_dir.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    };
    chmod("run.sh", 0o664);
    let cache_path = t.path().join("cache/context/stat");

    let records_of = || {
        let mut ctx = BuildContext::load(&ctx_dir, None).unwrap();
        let mut cache = StatCache::open(&cache_path).unwrap();
        ctx.hash_all(&mut cache).unwrap();
        cache.save().unwrap();
        let r = resolve(&ctx, &["."]).unwrap();
        ctx.records(&r, &Overrides::context_default(), &mut cache)
            .unwrap()
    };
    let a = records_of();
    let paths: Vec<String> = a.iter().map(|r| r.path.display().to_string()).collect();
    assert_eq!(paths, ["", "run", "run.sh", "src", "src/main.rs"]);
    let main = &a[4];
    assert_eq!(
        main.content,
        Some(*blake3::hash(b"fn main() {}\n").as_bytes())
    );
    assert_eq!((main.uid, main.gid), (0, 0));
    assert_eq!(a[1].link_target, Some(PathBuf::from("run.sh")));
    assert_eq!(digest(&a), digest(&records_of()));

    chmod("run.sh", 0o644);
    std::fs::write(ctx_dir.join("src/main.rs"), "fn main() { }\n").unwrap();
    let b = records_of();
    assert_ne!(digest(&a), digest(&b));
    assert_eq!(
        diff(&a, &b).summary(10),
        "2 files changed — run.sh (mode 0664→0644), src/main.rs (content)"
    );
}

/// Symlink escapes (absolute and `..`) are refused naming the link; loops report ELOOP.
#[test]
fn symlink_escapes_and_loops_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir(r.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", r.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../outside", r.join("d/up")).unwrap();
    std::os::unix::fs::symlink("b", r.join("a")).unwrap();
    std::os::unix::fs::symlink("a", r.join("b")).unwrap();
    let ctx = BuildContext::load(r, None).unwrap();
    let e = resolve(&ctx, &["abs"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "COPY source `abs` leaves the build context through symlink `abs` -> `/etc/passwd`"
    );
    let e = resolve(&ctx, &["d/up/x"]).unwrap_err();
    assert!(
        matches!(&e, SourceError::SymlinkEscape { link, .. } if link == "d/up"),
        "{e:?}"
    );
    let e = resolve(&ctx, &["a"]).unwrap_err();
    assert!(matches!(e, SourceError::SymlinkLoop { .. }), "{e:?}");
    // Copying the directory holding them copies the links verbatim.
    let r2 = resolve(&ctx, &["."]).unwrap();
    assert_eq!(dests(&r2), ["", "a", "abs", "b", "d", "d/up"]);
}

/// Non-UTF-8 names resolve, copy and hash byte-exactly.
#[test]
fn non_utf8_names_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(t.path().join(name), "x").unwrap();
    let mut ctx = BuildContext::load(t.path(), None).unwrap();
    let r = resolve(&ctx, &["*.txt"]).unwrap();
    assert_eq!(r.items[0].dest.as_os_str().as_bytes(), b"caf\xe9.txt");
    let recs = ctx
        .records(&r, &Overrides::default(), &mut StatCache::in_memory())
        .unwrap();
    assert_eq!(recs[0].content, Some(*blake3::hash(b"x").as_bytes()));
}

/// Special files: FIFOs are skipped with a warning (and explained if named), devices and
/// `.wh.` names are refused only when a COPY would copy them, labelled at the source.
#[test]
fn special_files_and_reserved_names() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("ok")).unwrap();
    std::fs::write(r.join("ok/f"), "").unwrap();
    std::fs::create_dir_all(r.join("wh")).unwrap();
    std::fs::write(r.join("wh/.wh.foo"), "").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("ok/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::create_dir_all(r.join("dev")).unwrap();
    let have_dev = rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .is_ok();
    let ctx = BuildContext::load(r, None).unwrap();
    assert_eq!(ctx.warnings().len(), 1);
    assert_eq!(dests(&resolve(&ctx, &["ok"]).unwrap()), ["", "f"]);
    let e = resolve(&ctx, &["ok/fifo"]).unwrap_err();
    assert!(e.help().unwrap().to_string().contains("fifo"), "{e}");
    let e = resolve(&ctx, &["wh"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot add file with reserved whiteout prefix: `wh/.wh.foo`"
    );
    assert_eq!(label_text(&e).1, 2);
    if have_dev {
        let e = resolve(&ctx, &["dev"]).unwrap_err();
        assert!(matches!(e, SourceError::DeviceFile { .. }), "{e:?}");
        let ok = resolve_with(&ctx, &["dev"], &["null"], false).unwrap();
        assert_eq!(dests(&ok), [""]);
    }
}

/// `<Dockerfile>.dockerignore` wins over the context's `.dockerignore`; an escaping symlinked
/// `.dockerignore` is refused.
#[test]
fn dockerfile_specific_ignore_file_wins() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::write(r.join("a"), "").unwrap();
    std::fs::write(r.join("b"), "").unwrap();
    std::fs::write(r.join(".dockerignore"), "a\n").unwrap();
    std::fs::write(r.join("Dockerfile"), "FROM scratch\n").unwrap();
    let ctx = BuildContext::load(r, Some(&r.join("Dockerfile"))).unwrap();
    assert!(ctx.index_of(b"a").is_none());
    std::fs::write(r.join("Dockerfile.dockerignore"), "b\n").unwrap();
    let ctx = BuildContext::load(r, Some(&r.join("Dockerfile"))).unwrap();
    assert!(ctx.index_of(b"a").is_some());
    assert!(ctx.index_of(b"b").is_none());
    assert_eq!(ctx.ignore().name(), "Dockerfile.dockerignore");

    std::fs::remove_file(r.join(".dockerignore")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", r.join(".dockerignore")).unwrap();
    let e = BuildContext::load(r, None).unwrap_err();
    assert!(matches!(e, ContextError::IgnoreFileEscapes { .. }), "{e:?}");
}

/// The shared conformance case `dockerignore`: `COPY . /ctx/` yields exactly the paths BuildKit
/// put under `/ctx`.
#[test]
fn conformance_dockerignore_case_matches_buildkit() {
    let shared = repo().join("../shared/conformance/build");
    let case = shared.join("dockerignore");
    if !case.is_dir() {
        eprintln!("skipping: {} not present", case.display());
        return;
    }
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("expected/dockerignore.json")).unwrap())
            .unwrap();
    let want: BTreeSet<String> = expected["files"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("/ctx/").map(str::to_string))
        .collect();
    let ctx = BuildContext::load(&case, Some(&case.join("Dockerfile"))).unwrap();
    let r = resolve(&ctx, &["."]).unwrap();
    let got: BTreeSet<String> = dests(&r).into_iter().filter(|d| !d.is_empty()).collect();
    assert_eq!(got, want);
}

/// The shared conformance case `copy-basic`: each COPY's resolved names match BuildKit's result.
#[test]
fn conformance_copy_basic_sources() {
    let case = repo().join("../shared/conformance/build/copy-basic");
    if !case.is_dir() {
        eprintln!("skipping: {} not present", case.display());
        return;
    }
    let ctx = BuildContext::load(&case, Some(&case.join("Dockerfile"))).unwrap();
    assert_eq!(
        dests(&resolve(&ctx, &["dir/sub/*.md"]).unwrap()),
        ["guide.md", "readme.md"]
    );
    assert_eq!(
        dests(&resolve(&ctx, &["dir"]).unwrap()),
        [
            "",
            "sub",
            "sub/code.rs",
            "sub/guide.md",
            "sub/readme.md",
            "top.txt"
        ]
    );
    assert_eq!(
        dests(&resolve(&ctx, &["a.txt", "dir/top.txt"]).unwrap()),
        ["a.txt", "top.txt"]
    );
}

/// The rendered report shows the COPY line, the `.dockerignore` line and both labels.
#[test]
fn excluded_report_renders_both_snippets() {
    let ctx = BuildContext::load(&fixture("basic"), None).unwrap();
    let e = resolve(&ctx, &["secret.env"]).unwrap_err();
    let mut out = String::new();
    miette::NarratableReportHandler::new()
        .render_report(&mut out, &e)
        .unwrap();
    for want in [
        "is excluded by `.dockerignore:5` (`secret.env`)",
        "COPY secret.env /dst/",
        "excluded from the build context",
        "this rule excludes it",
        "rbuild::context::source_excluded",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

/// What a bind mount of the context must hide: the top-most excluded paths, but not the
/// parents of a re-included file (they are part of the context), nor what is included.
#[test]
fn hidden_paths_are_the_topmost_excluded_entries() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    for (path, body) in [
        ("app/main.sh", "x"),
        ("secret.env", "x"),
        ("logs/a.log", "x"),
        ("logs/keep/keep.txt", "x"),
        ("logs/keep/other.txt", "x"),
        ("node_modules/m/index.js", "x"),
    ] {
        std::fs::create_dir_all(r.join(path).parent().unwrap()).unwrap();
        std::fs::write(r.join(path), body).unwrap();
    }
    std::fs::write(
        r.join(".dockerignore"),
        "*.env\nlogs\n!logs/keep/keep.txt\nnode_modules\n",
    )
    .unwrap();
    let ctx = BuildContext::load(r, None).unwrap();
    let hidden: Vec<String> = ctx
        .hidden_paths()
        .unwrap()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        hidden,
        [
            "logs/a.log",
            "logs/keep/other.txt",
            "node_modules",
            "secret.env"
        ]
    );
}

/// A context with `a.js` at several depths below `proj` (none directly in it unless `top`).
fn js_context(top: bool) -> (tempfile::TempDir, BuildContext) {
    let t = tempfile::tempdir().unwrap();
    let mut files = vec!["proj/x/a.js", "proj/x/y/a.js", "proj/x/b.js", "other/a.js"];
    if top {
        files.push("proj/a.js");
    }
    for f in files {
        let p = t.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    let ctx = BuildContext::load(t.path(), None).unwrap();
    (t, ctx)
}

/// The destinations of the files (not the directories) a resolution copies, sorted.
fn file_dests(ctx: &BuildContext, r: &ResolvedSources) -> Vec<String> {
    let mut out: Vec<String> = r
        .items
        .iter()
        .filter(|i| !ctx.entries()[i.entry].is_dir())
        .map(|i| String::from_utf8_lossy(i.dest.as_os_str().as_bytes()).into_owned())
        .collect();
    out.sort();
    out
}

/// With `--parents`, `**` spans any number of directories (BuildKit's include patterns), even
/// when no match is one level down, and each match keeps its path (below a `/./` pivot).
#[test]
fn parents_double_star_recurses() {
    let (_t, ctx) = js_context(false);
    let r = resolve_with(&ctx, &["proj/**/a.js"], &[], true).unwrap();
    assert_eq!(file_dests(&ctx, &r), ["proj/x/a.js", "proj/x/y/a.js"]);
    // The directories on the way are copied too.
    assert!(
        dests(&r).contains(&"proj/x/y".to_string()),
        "{:?}",
        dests(&r)
    );
    let (_t, ctx) = js_context(true);
    let r = resolve_with(&ctx, &["proj/**/a.js"], &[], true).unwrap();
    assert_eq!(
        file_dests(&ctx, &r),
        ["proj/a.js", "proj/x/a.js", "proj/x/y/a.js"]
    );
    let r = resolve_with(&ctx, &["proj/./**/a.js"], &[], true).unwrap();
    assert_eq!(file_dests(&ctx, &r), ["a.js", "x/a.js", "x/y/a.js"]);
    let r = resolve_with(&ctx, &["**/a.js"], &[], true).unwrap();
    assert_eq!(
        file_dests(&ctx, &r),
        ["other/a.js", "proj/a.js", "proj/x/a.js", "proj/x/y/a.js"]
    );
    // A matched directory brings its subtree; `*` stays one level.
    let r = resolve_with(&ctx, &["proj/**/y"], &[], true).unwrap();
    assert_eq!(file_dests(&ctx, &r), ["proj/x/y/a.js"]);
    let r = resolve_with(&ctx, &["proj/*/a.js"], &[], true).unwrap();
    assert_eq!(file_dests(&ctx, &r), ["proj/x/a.js"]);
}

/// Without `--parents` a source is a Go `filepath.Match` glob (`**` is `*`); with it, a
/// pattern matching nothing copies nothing, as without.
#[test]
fn double_star_without_parents_is_one_level_and_no_match_is_empty() {
    let (_t, ctx) = js_context(false);
    let r = resolve(&ctx, &["proj/**/a.js"]).unwrap();
    assert_eq!(dests(&r), ["a.js"]);
    let r = resolve_with(&ctx, &["proj/**/none.js"], &[], true).unwrap();
    assert!(r.roots.is_empty(), "{r:?}");
    let e = resolve_with(&ctx, &["proj/**/[z"], &[], true).unwrap_err();
    assert!(matches!(e, SourceError::BadWildcard { .. }), "{e:?}");
}

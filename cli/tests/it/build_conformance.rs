//! The main acceptance test: every case in `../shared/conformance/build` and in the project's
//! own `testdata/conformance/build` builds with rbuild (on the busybox fixture) to the image
//! BuildKit built — the same files (paths, types, modes, owners, sizes, content digests,
//! symlink targets) and the same config fields. The recordings were made by BuildKit master
//! (`testdata/conformance/record.sh`); this test never needs BuildKit. Beside the cases,
//! BuildKit behaviour checked on the fixture directly: heredoc RUN forms (shebang scripts) and
//! global ARGs in `FROM` naming a stage.

use crate::support::{self, TestEnv, shared_dir, testdata, text};
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The config fields the conformance format compares, non-empty only.
fn config_fields(config: &rbuild_store::ImageConfig) -> Value {
    rbuild_store::testing::conformance_config_fields(&config.config.clone().unwrap_or_default())
}

/// `--target x --build-arg K=V` from `expected/CASE.args`.
fn case_args(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("expected").join(format!("{name}.args")))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Copy a case into `dest` as its authors had it. The shared data is a read-only copy of a git
/// checkout made without symlink support: every file lost its write bit, and each symlink
/// became a small file holding its target. Restore both (`u+w`, and a file without a trailing
/// newline that names an existing sibling becomes that symlink again) so the context matches
/// the one BuildKit built from.
pub(crate) fn prepare_context(src: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from).unwrap();
        if meta.is_dir() {
            prepare_context(&from, &to);
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
            continue;
        } else {
            let bytes = std::fs::read(&from).unwrap();
            let target = String::from_utf8(bytes.clone()).ok().filter(|t| {
                bytes.len() < 256
                    && !t.is_empty()
                    && !t.ends_with('\n')
                    && !t.contains('\0')
                    && src.join(t).exists()
            });
            if let Some(target) = target {
                std::os::unix::fs::symlink(target, &to).unwrap();
                continue;
            }
            std::fs::write(&to, bytes).unwrap();
        }
        let mode = meta.permissions().mode() & 0o7777 | 0o200;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Copy one of the project's own cases into `dest` with the modes a git checkout gives, whatever
/// the umask of the checkout: directories 0755, files 0755 when their owner may execute them
/// and 0644 otherwise; symlinks stay symlinks. `testdata/conformance/record.sh` normalises the
/// same way before BuildKit builds the case.
pub(crate) fn prepare_own_context(src: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).unwrap();
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from).unwrap();
        if meta.is_dir() {
            prepare_own_context(&from, &to);
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(&from, &to).unwrap();
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// Differences between two flattened trees, one line each (bounded).
fn diff_files(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => out.push(format!("  missing {path}: {w}")),
            Some(g) if g != w => out.push(format!("  differs {path}: got `{g}`, want `{w}`")),
            _ => {}
        }
    }
    for (path, g) in got {
        if !want.contains_key(path) {
            out.push(format!("  extra   {path}: {g}"));
        }
    }
    out.truncate(30);
    out
}

/// What one build of a case gave: the flattened image's files (conformance format) and its
/// compared config fields.
pub(crate) type Built = (BTreeMap<String, String>, Value);

/// Builds one case: `(tag, args, context)` to what it gave, or why it failed.
pub(crate) type BuildCase<'a> = dyn FnMut(&str, &[String], &Path) -> Result<Built, String> + 'a;

/// Build every case folder of `cases_dir` (context prepared by `prepare`) with rbuild as root
/// and compare it with `cases_dir/expected/CASE.json`; panics listing every case that differs.
fn check_cases(cases_dir: &Path, prepare: fn(&Path, &Path), min_cases: usize) {
    let env = TestEnv::new();
    support::load_busybox(&env);
    check_cases_with(cases_dir, prepare, min_cases, &mut |tag, args, context| {
        let out = env
            .rbuild()
            .args(["build", "--progress", "plain", "-t", tag])
            .args(args)
            .arg(context)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("build failed\n{}", text(&out).1));
        }
        Ok(flattened(env.root(), tag))
    });
}

/// The files and compared config fields of image `tag` in the store at `root`.
pub(crate) fn flattened(root: &Path, tag: &str) -> Built {
    let store = rbuild_store::Store::open(root).unwrap();
    let image = store.resolve_image(tag).unwrap();
    let files = rbuild_store::layer::flatten_image(&store, &image)
        .unwrap()
        .to_conformance_map();
    (files, config_fields(&image.config))
}

/// Build every case folder of `cases_dir` with `build(tag, args, context)` (contexts
/// prepared by `prepare` in a directory readable by everyone) and compare each result with
/// `cases_dir/expected/CASE.json`; panics listing every case that differs.
pub(crate) fn check_cases_with(
    cases_dir: &Path,
    prepare: fn(&Path, &Path),
    min_cases: usize,
    build: &mut BuildCase<'_>,
) {
    let mut cases: Vec<String> = std::fs::read_dir(cases_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| cases_dir.join(n).join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= min_cases, "too few cases: {cases:?}");

    let contexts = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(contexts.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut failures = Vec::new();
    for name in &cases {
        let context = contexts.path().join(name);
        prepare(&cases_dir.join(name), &context);
        let recorded = cases_dir.join("expected").join(format!("{name}.json"));
        let Ok(recorded) = std::fs::read_to_string(&recorded) else {
            failures.push(format!(
                "{name}: no recording at {} (record it with BuildKit)",
                recorded.display()
            ));
            continue;
        };
        let expected: Value = serde_json::from_str(&recorded).unwrap();
        let tag = format!("conformance/{name}:test");
        let (got_files, got_config) = match build(&tag, &case_args(cases_dir, name), &context) {
            Ok(built) => built,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let want_files: BTreeMap<String, String> =
            serde_json::from_value(expected["files"].clone()).unwrap();
        let file_diffs = diff_files(&got_files, &want_files);
        if !file_diffs.is_empty() {
            failures.push(format!("{name}: files differ\n{}", file_diffs.join("\n")));
        }
        if got_config != expected["config"] {
            failures.push(format!(
                "{name}: config differs\n  got  {got_config}\n  want {}",
                expected["config"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Every shared conformance case builds to BuildKit's files and config.
#[test]
fn conformance_cases_match_buildkit() {
    check_cases(&shared_dir().join("conformance/build"), prepare_context, 10);
}

/// Every one of the project's own cases (`testdata/conformance/build`, recorded with BuildKit
/// master) builds to BuildKit's files and config.
#[test]
fn own_conformance_cases_match_buildkit() {
    check_cases(
        &testdata().join("conformance/build"),
        prepare_own_context,
        30,
    );
}

/// Build `dockerfile` on the busybox fixture with `extra` flags, writing the final root
/// filesystem to a directory; returns it (and the tempdir holding it and the context `ctx/`)
/// or the build's status and stderr.
fn build_local(
    env: &TestEnv,
    dockerfile: &str,
    extra: &[&str],
) -> Result<(tempfile::TempDir, std::path::PathBuf), String> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    support::write_file(&ctx, "Dockerfile", dockerfile);
    let out_dir = dir.path().join("out");
    let out = env
        .rbuild()
        .args(["build", "--progress", "plain"])
        .args(extra)
        .arg("-o")
        .arg(format!("type=local,dest={}", out_dir.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("{:?}\n{}", out.status, text(&out).1));
    }
    Ok((dir, out_dir))
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A heredoc RUN whose script starts with a shebang runs as a script of that interpreter, as
/// BuildKit does (`/bin/sh -c /dev/pipes/EOF`, the file mounted read-only and executable);
/// the other heredoc forms keep going to the shell; nothing of the script lands in the layer.
#[test]
fn heredoc_run_forms_on_busybox() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let dockerfile = r#"FROM busybox:1.35
ARG WHO=arg
RUN <<EOF
#!/bin/sh
echo "sh as $0 for $WHO" > /shebang-sh.txt
EOF
RUN <<EOF
#!/bin/busybox sh
echo "busybox sh" > /shebang-busybox.txt
EOF
RUN <<-SCRIPT
	#!/usr/bin/env sh
	echo "env sh, tabs stripped" > /shebang-env.txt
	SCRIPT
RUN <<EOF
#!/usr/bin/awk -f
BEGIN { print "awk ran " (1 + 2) > "/shebang-awk.txt" }
EOF
RUN <<EOF
echo "plain heredoc" > /plain.txt
EOF
RUN <<EOF cat > /cat.txt
piped to cat
EOF
RUN <<FILE1 cat > /multi1.txt && <<FILE2 cat > /multi2.txt
I am
first
FILE1
I am
second
FILE2
"#;
    let (keep, out) = build_local(&env, dockerfile, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read(&out, "shebang-sh.txt"),
        "sh as /dev/pipes/EOF for arg\n"
    );
    assert_eq!(read(&out, "shebang-busybox.txt"), "busybox sh\n");
    assert_eq!(read(&out, "shebang-env.txt"), "env sh, tabs stripped\n");
    assert_eq!(read(&out, "shebang-awk.txt"), "awk ran 3\n");
    assert_eq!(read(&out, "plain.txt"), "plain heredoc\n");
    assert_eq!(read(&out, "cat.txt"), "piped to cat\n");
    assert_eq!(read(&out, "multi1.txt"), "I am\nfirst\n");
    assert_eq!(read(&out, "multi2.txt"), "I am\nsecond\n");
    assert!(
        !out.join("dev/pipes").exists(),
        "the script's mount point must not be in the image"
    );
    // BuildKit's history text for the shebang form.
    let out = env
        .rbuild()
        .args(["build", "-q", "-t", "heredocs"])
        .arg(keep.path().join("ctx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let store = rbuild_store::Store::open(env.root()).unwrap();
    let history: Vec<String> = store
        .resolve_image("heredocs")
        .unwrap()
        .config
        .history
        .into_iter()
        .filter_map(|h| h.created_by)
        .collect();
    assert!(
        history.contains(&"RUN |1 WHO=arg /bin/sh -c /dev/pipes/EOF # buildkit".to_string()),
        "{history:#?}"
    );
}

/// A shebang script that fails fails the step with its exit code.
#[test]
fn failing_shebang_heredoc_fails_the_build() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let err = build_local(
        &env,
        "FROM busybox:1.35\nRUN <<EOF\n#!/bin/sh\nexit 7\nEOF\n",
        &[],
    )
    .unwrap_err();
    assert!(err.contains("exit code: 7"), "{err}");
    assert!(err.contains("/bin/sh -c /dev/pipes/EOF"), "{err}");
}

/// A global ARG used in `FROM` that names an earlier stage is that stage (BuildKit matches the
/// expanded name against the stages): by default, through `--build-arg`, and with `AS`.
#[test]
fn global_arg_in_from_names_an_earlier_stage() {
    let env = TestEnv::new();
    support::load_busybox(&env);
    let dockerfile = "ARG BASE=builder\nFROM busybox:1.35 AS builder\nRUN echo builder > /from.txt\nFROM busybox:1.35 AS other\nRUN echo other > /from.txt\nFROM ${BASE} AS x\nRUN cat /from.txt > /seen.txt\nFROM ${BASE}\nRUN cat /from.txt > /last.txt\n";
    let (keep, out) = build_local(&env, dockerfile, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&out, "last.txt"), "builder\n");
    let (_other, out) = build_local(&env, dockerfile, &["--build-arg", "BASE=other"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&out, "last.txt"), "other\n");
    let (_x, out) = build_local(
        &env,
        dockerfile,
        &["--build-arg", "BASE=builder", "--target", "x"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&out, "seen.txt"), "builder\n");
    // `plan` and `explain` go through the same planner.
    for cmd in ["plan", "explain"] {
        let out = env
            .rbuild()
            .arg(cmd)
            .arg(keep.path().join("ctx"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {:?}", text(&out));
    }
}

/// One platform's image of an archive, flattened as `../shared/tools/imgtree.py`'s
/// `summarize_all` does: the files, the compared config fields, and the os/arch[/variant] the
/// image's own config states.
#[derive(Debug)]
struct PlatformImage {
    files: BTreeMap<String, String>,
    config: Value,
    image_platform: String,
}

/// A saved archive in `summarize_all`'s terms: the platforms in index order and each one's
/// image (an index's entries; a single manifest gives one).
#[derive(Debug)]
struct ArchiveSummary {
    platforms: Vec<String>,
    images: BTreeMap<String, PlatformImage>,
}

/// `os/arch[/variant]` with empty parts left out, as imgtree.py's `platform_name`.
fn platform_name(os: &str, architecture: &str, variant: Option<&str>) -> String {
    [Some(os), Some(architecture), variant]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Flatten every platform's image of the OCI layout archive at `path` (its first entry, or the
/// one naming `reference`) with the store's own flattener (`FlatTree`, the one
/// `own_conformance_cases_match_buildkit` compares through `flatten_image`).
fn summarize_archive(path: &Path, reference: Option<&str>) -> Result<ArchiveSummary, String> {
    let archive = support::oci::OciArchive::open(path)?;
    let mut summary = ArchiveSummary {
        platforms: Vec::new(),
        images: BTreeMap::new(),
    };
    for (platform, manifest) in archive.images(reference)? {
        let config = archive.config(&manifest.config)?;
        let image_platform =
            platform_name(&config.os, &config.architecture, config.variant.as_deref());
        let name = platform
            .map(|p| platform_name(&p.os, &p.architecture, p.variant.as_deref()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| image_platform.clone());
        let mut tree = rbuild_store::layer::FlatTree::new();
        for layer in &manifest.layers {
            tree.apply_layer(
                archive.layer(layer)?,
                &rbuild_store::Limits::default(),
                layer.digest.as_str(),
            )
            .map_err(|e| format!("{}: {e}", layer.digest))?;
        }
        summary.platforms.push(name.clone());
        summary.images.insert(
            name,
            PlatformImage {
                files: tree.to_conformance_map(),
                config: config_fields(&config),
                image_platform,
            },
        );
    }
    Ok(summary)
}

/// The differences between a recording of `../shared/tools/conform-build` and `got`, as its
/// `diff_multi` sees them: the same set of platforms (index order is not compared) and, per
/// platform, the image config's platform, the files and the config. A single-platform
/// recording (`{files, config}`) needs exactly one image, for `single_platform`: BuildKit wrote
/// that platform in the config (checked on its output by hand, as the format does not record
/// it).
fn recording_differences(
    expected: &Value,
    got: &ArchiveSummary,
    single_platform: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(platforms) = expected.get("platforms") else {
        if got.platforms.len() != 1 {
            return vec![format!(
                "  expected one image, got platforms {:?}",
                got.platforms
            )];
        }
        let image = &got.images[&got.platforms[0]];
        out.extend(image_differences("", expected, image));
        if let Some(p) = single_platform
            && image.image_platform != p
        {
            out.push(format!(
                "  config platform: expected {p}, got {}",
                image.image_platform
            ));
        }
        return out;
    };
    let want_platforms: Vec<String> = serde_json::from_value(platforms.clone()).unwrap();
    let mut want_sorted = want_platforms.clone();
    want_sorted.sort();
    let mut got_sorted = got.platforms.clone();
    got_sorted.sort();
    if want_sorted != got_sorted {
        out.push(format!(
            "  platforms: expected {want_platforms:?}, got {:?}",
            got.platforms
        ));
    }
    for p in &want_platforms {
        let Some(image) = got.images.get(p) else {
            continue;
        };
        let want = &expected["images"][p];
        if want["image_platform"] != image.image_platform.as_str() {
            out.push(format!(
                "  [{p}] config platform: expected {}, got {}",
                want["image_platform"], image.image_platform
            ));
        }
        out.extend(image_differences(&format!("  [{p}]"), want, image));
    }
    out
}

/// The differences of one image from its recording (`{files, config}`), each line prefixed.
fn image_differences(prefix: &str, want: &Value, got: &PlatformImage) -> Vec<String> {
    let want_files: BTreeMap<String, String> =
        serde_json::from_value(want["files"].clone()).unwrap();
    let mut out: Vec<String> = diff_files(&got.files, &want_files)
        .into_iter()
        .map(|line| format!("{prefix}{line}"))
        .collect();
    if got.config != want["config"] {
        out.push(format!(
            "{prefix}  config differs\n    got  {}\n    want {}",
            got.config, want["config"]
        ));
    }
    out
}

/// The platforms of a case's `--platform` flag (none: the host's).
fn case_platforms(args: &[String]) -> Vec<String> {
    args.iter()
        .position(|a| a == "--platform")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The multi-platform cases (`testdata/conformance/build-multi`, recorded with BuildKit master
/// on `busybox:1.35-multi`): each builds with its `--platform` flags, is saved with
/// `rbuild save`, and every platform's image has BuildKit's files, config and config platform,
/// under the same set of platforms. A host that cannot run a case's platforms (no QEMU
/// emulator registered) fails with how to register one.
#[test]
fn multi_platform_cases_match_buildkit() {
    let cases_dir = testdata().join("conformance/build-multi");
    let env = TestEnv::new();
    let out = env
        .rbuild()
        .args(["load", "-i"])
        .arg(support::busybox_multi_archive())
        .output()
        .unwrap();
    assert!(out.status.success(), "load failed: {:?}", text(&out));

    let mut cases: Vec<String> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| cases_dir.join(n).join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "too few cases: {cases:?}");
    // Every platform any case names must run here (RUN steps of a foreign one run emulated).
    for name in &cases {
        for platform in case_platforms(&case_args(&cases_dir, name)) {
            support::require_run_platform(&platform);
        }
    }

    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for name in &cases {
        let context = work.path().join(name);
        prepare_own_context(&cases_dir.join(name), &context);
        let args = case_args(&cases_dir, name);
        let recorded = cases_dir.join("expected").join(format!("{name}.json"));
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&recorded).unwrap_or_else(|e| {
                panic!("{}: {e} (record it with BuildKit)", recorded.display())
            }))
            .unwrap();
        let tag = format!("conformance/{name}:test");
        let out = env
            .rbuild()
            .args(["build", "--progress", "plain", "-t", &tag])
            .args(&args)
            .arg(&context)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!("{name}: build failed\n{}", text(&out).1));
            continue;
        }
        let saved = work.path().join(format!("{name}.tar"));
        let out = env
            .rbuild()
            .args(["save", "-o"])
            .arg(&saved)
            .arg(&tag)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!("{name}: save failed\n{}", text(&out).1));
            continue;
        }
        let got = match summarize_archive(&saved, Some(&tag)) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: saved archive unreadable: {e}"));
                continue;
            }
        };
        let platforms = case_platforms(&args);
        let single = (platforms.len() == 1).then(|| platforms[0].as_str());
        let diffs = recording_differences(&expected, &got, single);
        if !diffs.is_empty() {
            failures.push(format!("{name}: differs\n{}", diffs.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} multi-platform cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The comparison of `multi_platform_cases_match_buildkit` checked on BuildKit's own output:
/// the OCI archives BuildKit exported for the build-multi cases (kept out of git; make them
/// with `buildctl build … --output type=oci,dest=DIR/CASE.tar` as
/// `../shared/tools/conform-build` does) flatten to exactly their recordings, which imgtree.py
/// made from the same output. Run with `RBUILD_BUILDKIT_OCI=DIR cargo test -p rbuild --test it
/// multi_platform_flattener -- --ignored`.
#[test]
#[ignore = "needs BuildKit's OCI exports of the build-multi cases in RBUILD_BUILDKIT_OCI"]
fn multi_platform_flattener_reads_buildkit_output_as_recorded() {
    let dir = std::env::var_os("RBUILD_BUILDKIT_OCI")
        .map(std::path::PathBuf::from)
        .expect("set RBUILD_BUILDKIT_OCI to a directory of BuildKit's CASE.tar exports");
    let cases_dir = testdata().join("conformance/build-multi");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&cases_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let export = dir.join(format!("{name}.tar"));
        if !cases_dir.join(&name).join("Dockerfile").is_file() || !export.is_file() {
            continue;
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(cases_dir.join("expected").join(format!("{name}.json")))
                .unwrap(),
        )
        .unwrap();
        let got = summarize_archive(&export, None).unwrap();
        let platforms = case_platforms(&case_args(&cases_dir, &name));
        let single = (platforms.len() == 1).then(|| platforms[0].as_str());
        let diffs = recording_differences(&expected, &got, single);
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n{}", diffs.join("\n")));
        }
        checked.push(name);
    }
    assert!(!checked.is_empty(), "no CASE.tar in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("checked {checked:?}");
}

/// The multi-platform flattening on the shared two-platform fixture, without BuildKit: both
/// entries in index order with their config platforms, the same tree but for `/bin/busybox`,
/// and the comparison reports exactly that when one platform is held against the other's
/// recording.
#[test]
fn multi_platform_summary_of_the_fixture() {
    let got = summarize_archive(&support::busybox_multi_archive(), None).unwrap();
    assert_eq!(got.platforms, ["linux/amd64", "linux/arm64"]);
    let amd64 = &got.images["linux/amd64"];
    let arm64 = &got.images["linux/arm64"];
    assert_eq!(amd64.image_platform, "linux/amd64");
    assert_eq!(arm64.image_platform, "linux/arm64");
    assert_eq!(amd64.config, arm64.config);
    assert!(amd64.files.len() > 100, "{}", amd64.files.len());
    let differing: Vec<&String> = amd64
        .files
        .iter()
        .filter(|(k, v)| arm64.files.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(differing, ["/bin/busybox"]);

    // A recording of the fixture in conform-build's format, and the same with the platforms'
    // images swapped.
    let recording = |swap: bool| {
        let image = |p: &PlatformImage, platform: &str| serde_json::json!({"files": p.files, "config": p.config, "image_platform": platform});
        let (a, b) = if swap { (arm64, amd64) } else { (amd64, arm64) };
        serde_json::json!({
            "platforms": ["linux/arm64", "linux/amd64"],
            "images": {"linux/amd64": image(a, "linux/amd64"), "linux/arm64": image(b, "linux/arm64")},
        })
    };
    assert_eq!(
        recording_differences(&recording(false), &got, None),
        Vec::<String>::new()
    );
    let diffs = recording_differences(&recording(true), &got, None);
    assert_eq!(diffs.len(), 2, "{diffs:#?}");
    assert!(
        diffs.iter().all(|d| d.contains("/bin/busybox")),
        "{diffs:#?}"
    );
    // A platform missing from the archive, and a config platform that differs.
    let mut missing = recording(false);
    missing["platforms"] = serde_json::json!(["linux/amd64", "linux/arm64", "linux/s390x"]);
    missing["images"]["linux/arm64"]["image_platform"] = "linux/amd64".into();
    let diffs = recording_differences(&missing, &got, None);
    assert_eq!(diffs.len(), 2, "{diffs:#?}");
    assert!(diffs[0].contains("platforms"), "{diffs:#?}");
    assert!(
        diffs[1].contains("[linux/arm64] config platform"),
        "{diffs:#?}"
    );
}

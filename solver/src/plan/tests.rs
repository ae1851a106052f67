//! Planner tests: the build conformance Dockerfiles must plan to the image configs BuildKit
//! produced (the `config` part of `expected/*.json`), with a fake image source that knows the
//! busybox fixture. Files are compared by the build conformance test of the CLI.

use crate::op::{FileSource, Op, RunOp};
use std::path::PathBuf;

use super::*;

const BUSYBOX_CONFIG: &str = r#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z","created_by":"rootfs from busybox:1.35"}],"os":"linux","rootfs":{"diff_ids":["sha256:8e72dda08fadc620728434017439e53ba873d653053fb4ba8165b0de42186d16"],"type":"layers"}}"#;

fn digest(text: &str) -> rbuild_store::Digest {
    rbuild_store::Digest::parse(text).unwrap()
}

struct Fake;

impl ImageSource for Fake {
    fn resolve(
        &self,
        reference: &str,
        _platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        if reference != "busybox:1.35" {
            return Err((format!("no image `{reference}`"), None));
        }
        let config = ImageConfig::parse(BUSYBOX_CONFIG.as_bytes(), 1 << 20, "config").unwrap();
        Ok(ResolvedImage {
            base: ImageBase {
                reference: "docker.io/library/busybox:1.35".into(),
                manifest_digest: digest(
                    "sha256:0221852225c8456bdfa025a2656be6c12be059d535ada46e9423f596afea515e",
                ),
                config_digest: digest(
                    "sha256:8366966a27353925d9cd7cb6d939eb5795d9e77fb389e545f4c8d787dd3cdf70",
                ),
                diff_ids: vec![digest(
                    "sha256:8e72dda08fadc620728434017439e53ba873d653053fb4ba8165b0de42186d16",
                )],
            },
            config,
        })
    }
}

fn opts(args: &[(&str, &str)], target: Option<&str>) -> PlanOptions {
    PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        platform: Some(Platform::new("linux", "amd64", None)),
    }
}

fn plan_text(src: &str, opts: &PlanOptions) -> Result<Planned, PlanError> {
    let parsed = rbuild_parser::parse(src);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    plan(src, &parsed.dockerfile, opts, &Fake)
}

/// `../shared` beside the repository, or `$RBUILD_SHARED` (as the CLI tests' harness).
fn shared() -> PathBuf {
    std::env::var_os("RBUILD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("conformance/build")
}

/// The compared config fields of a planned target stage, as JSON.
fn config_fields(planned: &Planned) -> serde_json::Value {
    let config = &planned.images[planned.plan.target].config.config;
    rbuild_store::testing::conformance_config_fields(&config.clone().unwrap_or_default())
}

/// Every conformance case plans to BuildKit's image config.
#[test]
fn conformance_configs_match_buildkit() {
    let dir = shared();
    assert!(
        dir.is_dir(),
        "missing shared conformance data at {}",
        dir.display()
    );
    let mut failures = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let mut args = Vec::new();
        let mut target = None;
        if let Ok(line) = std::fs::read_to_string(dir.join("expected").join(format!("{name}.args")))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut i = 0;
            while i < words.len() {
                match words[i] {
                    "--target" => target = Some(words[i + 1].to_string()),
                    "--build-arg" => {
                        let (k, v) = words[i + 1].split_once('=').unwrap();
                        args.push((k.to_string(), v.to_string()));
                    }
                    other => panic!("unknown arg {other}"),
                }
                i += 2;
            }
        }
        let args_ref: Vec<(&str, &str)> =
            args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let planned = match plan_text(&src, &opts(&args_ref, target.as_deref())) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let got = config_fields(&planned);
        if got != expected["config"] {
            failures.push(format!(
                "{name}:\n  got      {got}\n  expected {}",
                expected["config"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// ARG scoping: a global ARG is only visible in a stage when redeclared; ENV wins over ARG.
#[test]
fn arg_scoping() {
    let src = "ARG V=global\nFROM busybox:1.35\nRUN echo $V\nARG V\nENV E=$V\nARG W=w\nENV W=env\nRUN echo\n";
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    let steps = &planned.plan.stages[0].steps;
    let Op::Run(first) = &steps[0].op else {
        panic!()
    };
    assert!(!first.env.iter().any(|(k, _)| k == "V"));
    let Op::Run(last) = &steps[5].op else {
        panic!()
    };
    assert!(last.env.contains(&("V".into(), "global".into())));
    assert!(last.env.contains(&("E".into(), "global".into())));
    assert!(last.env.contains(&("W".into(), "env".into())));
    assert_eq!(
        steps[5].created_by,
        "RUN |2 V=global W=env /bin/sh -c echo # buildkit"
    );
}

/// Unused build args are reported; used ones are not.
#[test]
fn unused_build_args() {
    let planned = plan_text(
        "FROM busybox:1.35\nARG USED\n",
        &opts(&[("USED", "1"), ("TYPO", "2"), ("HTTP_PROXY", "x")], None),
    )
    .unwrap();
    assert_eq!(planned.unused_build_args, vec!["TYPO".to_string()]);
}

/// Stage references: by name, by earlier index, or an image; errors for bad ones. (Forward
/// references, the only way to a cycle, are refused by the parser as BuildKit does.)
#[test]
fn stage_references() {
    let ok = "FROM busybox:1.35 AS a\nFROM busybox:1.35 AS b\nCOPY --from=A /x /x\nCOPY --from=0 /y /y\nCOPY --from=busybox:1.35 /z /z\n";
    let planned = plan_text(ok, &opts(&[], None)).unwrap();
    let froms: Vec<FileSource> = planned.plan.stages[1]
        .steps
        .iter()
        .map(|s| match &s.op {
            Op::Copy(c) => c.from.clone(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(froms[0], FileSource::Stage(0));
    assert_eq!(froms[1], FileSource::Stage(0));
    assert!(matches!(froms[2], FileSource::Image(_)));
}

/// A global ARG in `FROM` that names an earlier stage is that stage (BuildKit expands the
/// base name with the global ARGs before matching stage names), as a default, as a build arg,
/// and with `AS`; a build arg can also turn it into an image, leaving the stage unused.
#[test]
fn global_arg_in_from_names_a_stage() {
    let src = "ARG BASE=builder\nFROM busybox:1.35 AS builder\nENV FROM_BUILDER=1\nFROM busybox:1.35 AS other\nENV FROM_OTHER=1\nFROM ${BASE} AS x\nRUN true\n";
    let env = |planned: &Planned| {
        planned.images[planned.plan.target]
            .config
            .config
            .clone()
            .unwrap_or_default()
            .env
            .unwrap_or_default()
    };
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    assert_eq!(planned.plan.stages[2].base, Base::Stage(0));
    assert!(env(&planned).contains(&"FROM_BUILDER=1".to_string()));
    let order = crate::graph::stage_order(&planned.plan).unwrap();
    assert_eq!(order.skipped, vec![1]);

    let planned = plan_text(src, &opts(&[("BASE", "OTHER")], None)).unwrap();
    assert_eq!(planned.plan.stages[2].base, Base::Stage(1));
    assert!(env(&planned).contains(&"FROM_OTHER=1".to_string()));
    assert!(
        planned.plan.stages[0].steps.is_empty(),
        "builder is not needed"
    );

    let planned = plan_text(src, &opts(&[("BASE", "busybox:1.35")], None)).unwrap();
    assert!(matches!(planned.plan.stages[2].base, Base::Image(_)));
    let order = crate::graph::stage_order(&planned.plan).unwrap();
    assert_eq!(order.skipped, vec![0, 1]);

    // Without a name, and through a stage that is itself based on an ARG-named stage.
    let src =
        "ARG A=one\nARG B=two\nFROM busybox:1.35 AS one\nFROM ${A} AS two\nENV T=2\nFROM $B\n";
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    assert_eq!(planned.plan.stages[1].base, Base::Stage(0));
    assert_eq!(planned.plan.stages[2].base, Base::Stage(1));
    assert!(env(&planned).contains(&"T=2".to_string()));
}

/// Unknown targets suggest the closest stage name.
#[test]
fn unknown_target_suggests() {
    let err = plan_text(
        "FROM busybox:1.35 AS builder\nFROM busybox:1.35\n",
        &opts(&[], Some("buidler")),
    )
    .unwrap_err();
    let PlanError::UnknownTarget { help, .. } = err else {
        panic!()
    };
    assert_eq!(help, "did you mean `builder`?");
}

/// An ARG without value in FROM is a pointed error naming the ARG.
#[test]
fn empty_base_names_the_arg() {
    let err = plan_text("ARG IMAGE\nFROM $IMAGE\n", &opts(&[], None)).unwrap_err();
    let PlanError::EmptyBase { help, .. } = err else {
        panic!("{err:?}")
    };
    assert!(help.contains("IMAGE"), "{help}");
}

/// VOLUME words expand to one path each in both forms (never split); an empty one is refused.
#[test]
fn volume_words_are_single_paths() {
    let planned = plan_text(
        "FROM busybox:1.35\nARG V=\"a b\"\nVOLUME $V /c\nVOLUME [\"$V\"]\n",
        &opts(&[], None),
    )
    .unwrap();
    let fields = config_fields(&planned);
    let volumes = fields["Volumes"].as_object().unwrap();
    assert_eq!(
        volumes.keys().collect::<Vec<_>>(),
        ["/c", "a b"],
        "{fields:#}"
    );
    // (`VOLUME [""]` is the parser's error; these are empty only once expanded.)
    for src in [
        "VOLUME \"\"",
        "ARG E\nVOLUME $E",
        "ARG E=\" \"\nVOLUME [\"$E\"]",
    ] {
        let err = plan_text(&format!("FROM busybox:1.35\n{src}\n"), &opts(&[], None)).unwrap_err();
        assert!(
            err.to_string().contains("can not be an empty string"),
            "{src}: {err}"
        );
    }
}

/// Unused stages are not resolved (an unknown image there is no error) and get no steps.
#[test]
fn unused_stage_is_not_resolved() {
    let planned = plan_text(
        "FROM nosuch/image AS unused\nRUN x\nFROM busybox:1.35\nRUN y\n",
        &opts(&[], None),
    )
    .unwrap();
    assert!(planned.plan.stages[0].steps.is_empty());
    let order = crate::graph::stage_order(&planned.plan).unwrap();
    assert_eq!(order.skipped, vec![0]);
}

/// Heredoc RUN forms: a lone heredoc is the script; others are passed to the shell.
#[test]
fn run_heredocs() {
    let src = "FROM busybox:1.35\nRUN <<EOT\necho hi\nEOT\nRUN <<EOT cat - > /x\nbody\nEOT\nRUN <<EOT\n#!/bin/sh\necho x\nEOT\n";
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    let runs: Vec<&RunOp> = planned.plan.stages[0]
        .steps
        .iter()
        .map(|s| match &s.op {
            Op::Run(r) => r,
            _ => panic!(),
        })
        .collect();
    assert_eq!(runs[0].argv, vec!["/bin/sh", "-c", "echo hi\n"]);
    assert_eq!(
        runs[1].argv,
        vec!["/bin/sh", "-c", "<<EOT cat - > /x\nbody\nEOT"]
    );
    // A shebang script is a file the shell runs (BuildKit: `/bin/sh -c /dev/pipes/EOT`).
    assert_eq!(runs[2].argv, vec!["/bin/sh", "-c", "/dev/pipes/EOT"]);
    assert!(matches!(
        runs[2].mounts[0],
        crate::op::RunMount::InlineFile { .. }
    ));
}

/// COPY keys include the variables used and follow the expanded, workdir-relative dest.
#[test]
fn copy_expansion_and_dest() {
    let src = "FROM busybox:1.35\nWORKDIR /app\nARG SRC=a.txt\nCOPY --chmod=0640 $SRC sub/\n";
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    let step = &planned.plan.stages[0].steps[2];
    let Op::Copy(c) = &step.op else { panic!() };
    assert_eq!(c.dest, "/app/sub/");
    assert_eq!(step.key.vars.get("SRC"), Some(&Some("a.txt".to_string())));
    assert_eq!(step.created_by, "COPY --chmod=0640 a.txt sub/ # buildkit");
    let multi = "FROM busybox:1.35\nCOPY a b /dest\n";
    assert!(matches!(
        plan_text(multi, &opts(&[], None)).unwrap_err(),
        PlanError::Invalid { .. }
    ));
}

/// An image source whose `onbase` is busybox with ONBUILD triggers in its config.
struct WithTriggers(Vec<&'static str>);

impl ImageSource for WithTriggers {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        let mut image = Fake.resolve("busybox:1.35", platform)?;
        if reference == "onbase" {
            image.config.config.as_mut().unwrap().on_build =
                Some(self.0.iter().map(|t| t.to_string()).collect());
            return Ok(image);
        }
        Fake.resolve(reference, platform)
    }
}

fn plan_triggers(src: &str, triggers: Vec<&'static str>) -> Result<Planned, PlanError> {
    let parsed = rbuild_parser::parse(src);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    plan(
        src,
        &parsed.dockerfile,
        &opts(&[], None),
        &WithTriggers(triggers),
    )
}

/// The base image's triggers run right after FROM, in order, with BuildKit's history text;
/// the child's config does not keep the OnBuild list.
#[test]
fn onbuild_triggers_of_the_base_image_run_first() {
    let planned = plan_triggers(
        "FROM onbase\nRUN true\n",
        vec!["COPY ob.txt /onbuild/", "RUN echo hi > /hi"],
    )
    .unwrap();
    let steps = &planned.plan.stages[0].steps;
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0].display, "ONBUILD COPY ob.txt /onbuild/");
    assert_eq!(steps[0].created_by, "COPY ob.txt /onbuild/ # buildkit");
    assert!(matches!(steps[0].op, Op::Copy(_)));
    assert_eq!(steps[0].site.line, 1);
    assert_eq!(
        steps[1].created_by,
        "RUN /bin/sh -c echo hi > /hi # buildkit"
    );
    assert_eq!(steps[2].display, "RUN true");
    let config = planned.images[0].config.config.clone().unwrap();
    assert_eq!(config.on_build, None);
}

/// ONBUILD instructions of a stage run in a stage built `FROM` it (BuildKit does so), not in
/// the stage that declares them, and are not inherited further.
#[test]
fn onbuild_of_a_stage_runs_in_its_child_stage() {
    let src = "FROM busybox:1.35 AS base\nONBUILD RUN touch /t\nFROM base AS child\nFROM child\n";
    let planned = plan_triggers(src, vec![]).unwrap();
    let stages = &planned.plan.stages;
    assert!(stages[0].steps.iter().all(|s| !matches!(s.op, Op::Run(_))));
    assert_eq!(
        planned.images[0].config.config.clone().unwrap().on_build,
        Some(vec!["RUN touch /t".to_string()])
    );
    assert_eq!(stages[1].steps.len(), 1);
    assert_eq!(stages[1].steps[0].display, "ONBUILD RUN touch /t");
    assert!(stages[2].steps.is_empty());
    assert_eq!(
        planned.images[2].config.config.clone().unwrap().on_build,
        None
    );
}

/// A trigger that copies from a stage of the child Dockerfile makes that stage needed.
#[test]
fn onbuild_trigger_from_a_child_stage_plans_that_stage() {
    let src = "FROM busybox:1.35 AS tools\nRUN echo x > /x\nFROM onbase\n";
    let planned = plan_triggers(src, vec!["COPY --from=tools /x /x"]).unwrap();
    let stages = &planned.plan.stages;
    assert_eq!(stages[0].steps.len(), 1);
    let Op::Copy(c) = &stages[1].steps[0].op else {
        panic!()
    };
    assert_eq!(c.from, FileSource::Stage(0));
}

/// A trigger expands with the child stage's scope, which starts with the base image's ENV.
#[test]
fn onbuild_trigger_expands_in_the_child_scope() {
    let planned = plan_triggers("FROM onbase\n", vec!["COPY $PATH.txt /p/"]).unwrap();
    let Op::Copy(c) = &planned.plan.stages[0].steps[0].op else {
        panic!()
    };
    assert!(
        planned.plan.stages[0].steps[0]
            .key
            .vars
            .contains_key("PATH")
    );
    assert_eq!(c.dest, "/p/");
}

/// A bad trigger is reported at the FROM line, naming the trigger.
#[test]
fn bad_onbuild_trigger_points_at_from() {
    let src = "FROM busybox:1.35\nFROM onbase\n";
    for trigger in ["FROM busybox", "COPY --chmod=xyz a /b", "RUN a\nRUN b"] {
        let err = plan_triggers(src, vec!["RUN true", trigger]).unwrap_err();
        let PlanError::OnbuildTrigger {
            number,
            trigger: text,
            span,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*number, 2);
        assert_eq!(text, trigger);
        assert_eq!(
            &src[span.offset()..span.offset() + span.len()],
            "FROM onbase"
        );
    }
}

/// `--mount=type=cache,source=DIR` without `from`: a directory of the cache, cleaned like
/// BuildKit's `path.Join("/", source)` (so `..` stays in the cache), in the step's key; with
/// `from`, `source` is the seed's directory and the whole cache is mounted.
#[test]
fn cache_mount_sources_are_cache_subpaths() {
    let src = "FROM busybox:1.35 AS seed\nFROM busybox:1.35\n\
               RUN --mount=type=cache,target=/c,source=../../etc/./x/ true\n\
               RUN --mount=type=cache,target=/c true\n\
               RUN --mount=type=cache,target=/c,from=seed,source=/opt true\n";
    let planned = plan_text(src, &opts(&[], None)).unwrap();
    let steps = &planned.plan.stages[1].steps;
    let cache = |i: usize| match &steps[i].op {
        Op::Run(r) => match &r.mounts[0] {
            crate::op::RunMount::Cache { subpath, from, .. } => (subpath.clone(), from.clone()),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(cache(0), ("/etc/x".to_string(), None));
    assert_eq!(cache(1).0, "/");
    let (subpath, from) = cache(2);
    assert_eq!(subpath, "/");
    assert_eq!(from.unwrap().1, "/opt");
    let key = |i: usize| steps[i].key.inputs["mount:/c"].clone();
    assert!(key(0).ends_with(" subpath=/etc/x"), "{}", key(0));
    assert!(!key(1).contains("subpath"), "{}", key(1));
    assert_eq!(key(0), format!("{} subpath=/etc/x", key(1)));
}

/// A multi-platform `busybox:1.35`: resolved for any platform, its config names it, and each
/// platform has its own manifest; every request is recorded.
#[derive(Default)]
struct MultiArch(std::sync::Mutex<Vec<(String, String)>>);

impl ImageSource for MultiArch {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        self.0
            .lock()
            .unwrap()
            .push((reference.to_string(), platform.to_string()));
        let mut image = Fake.resolve(reference, platform)?;
        image.config.architecture = platform.architecture.clone();
        image.config.variant = platform.variant.clone();
        image.base.manifest_digest = rbuild_store::Digest::of(platform.to_string().as_bytes());
        Ok(image)
    }
}

fn plan_for(
    src: &str,
    platform: Option<&str>,
    args: &[(&str, &str)],
) -> Result<(Planned, Vec<(String, String)>), PlanError> {
    let parsed = rbuild_parser::parse(src);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let mut o = opts(args, None);
    o.platform = platform.map(|p| p.parse().unwrap());
    let images = MultiArch::default();
    let planned = plan(src, &parsed.dockerfile, &o, &images)?;
    Ok((planned, images.0.into_inner().unwrap()))
}

fn run_env(planned: &Planned, stage: usize, index: usize) -> BTreeMap<String, String> {
    let Op::Run(run) = &planned.plan.stages[stage].steps[index].op else {
        panic!("not a RUN")
    };
    run.env.iter().cloned().collect()
}

const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox:1.35 AS build
ARG TARGETARCH
ARG BUILDARCH
RUN echo $TARGETARCH $BUILDARCH
FROM busybox:1.35
COPY --from=build /out /out
RUN echo hi
";

/// `FROM --platform=$BUILDPLATFORM`: the stage runs for the build machine and its base is
/// resolved for it; the target stage for the target. TARGET* ARGs still mean the target.
#[test]
fn pinned_stage_runs_for_the_build_platform() {
    let host = Platform::host();
    let target = if host.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let target_arch = target.rsplit('/').next().unwrap();
    let (planned, resolved) = plan_for(CROSS, Some(target), &[]).unwrap();
    let stages = &planned.plan.stages;
    assert_eq!(stages[0].platform, host);
    assert_eq!(stages[1].platform.to_string(), target);
    assert_eq!(planned.plan.platform.to_string(), target);
    assert_eq!(
        resolved,
        vec![
            ("busybox:1.35".to_string(), host.to_string()),
            ("busybox:1.35".to_string(), target.to_string())
        ]
    );
    let env = run_env(&planned, 0, 2);
    assert_eq!(env.get("TARGETARCH").map(String::as_str), Some(target_arch));
    assert_eq!(
        env.get("BUILDARCH").map(String::as_str),
        Some(host.architecture.as_str())
    );
    // The pinned stage's keys hold the target only where it reads TARGETARCH.
    let key = &stages[0].steps[2].key;
    assert_eq!(
        key.vars.get("TARGETARCH"),
        Some(&Some(target_arch.to_string()))
    );
}

/// The automatic ARGs are global: a stage sees one only when it declares it.
#[test]
fn automatic_args_need_a_declaration_in_a_stage() {
    let src = "FROM busybox:1.35\nRUN echo $TARGETARCH\nARG TARGETPLATFORM\nARG TARGETSTAGE\nRUN echo $TARGETPLATFORM\n";
    let (planned, _) = plan_for(src, Some("linux/arm64"), &[]).unwrap();
    let first = run_env(&planned, 0, 0);
    assert!(!first.contains_key("TARGETARCH"), "{first:?}");
    assert!(!first.contains_key("TARGETPLATFORM"), "{first:?}");
    let second = run_env(&planned, 0, 3);
    assert_eq!(second["TARGETPLATFORM"], "linux/arm64");
    // No stage name: BuildKit's TARGETSTAGE is `default`.
    assert_eq!(second["TARGETSTAGE"], "default");
    assert!(!second.contains_key("TARGETARCH"));
}

/// A `--build-arg` replaces an automatic ARG in the global scope too, as BuildKit's defaults
/// are overridden by build args.
#[test]
fn build_args_replace_automatic_args() {
    let (planned, resolved) = plan_for(
        "FROM --platform=$BUILDPLATFORM busybox:1.35\n",
        Some("linux/amd64"),
        &[("BUILDPLATFORM", "linux/s390x")],
    )
    .unwrap();
    assert_eq!(planned.plan.stages[0].platform.to_string(), "linux/s390x");
    assert_eq!(resolved[0].1, "linux/s390x");
    assert!(planned.unused_build_args.is_empty());
}

/// A global ARG can choose a stage's platform; empty and invalid values are errors at the flag.
#[test]
fn platform_flag_from_global_args() {
    let src = "ARG P=linux/arm/v7\nFROM --platform=$P busybox:1.35\n";
    let (planned, _) = plan_for(src, Some("linux/amd64"), &[]).unwrap();
    assert_eq!(planned.plan.stages[0].platform.to_string(), "linux/arm/v7");
    // Normalised as containerd does.
    let (planned, _) = plan_for(src, Some("linux/amd64"), &[("P", "linux/aarch64")]).unwrap();
    assert_eq!(planned.plan.stages[0].platform.to_string(), "linux/arm64");
    let err = plan_for(src, None, &[("P", "")]).unwrap_err();
    assert!(matches!(err, PlanError::EmptyPlatform { .. }), "{err:?}");
    assert!(
        miette::Diagnostic::help(&err)
            .unwrap()
            .to_string()
            .contains("give P a value")
    );
    let err = plan_for(src, None, &[("P", "linux//x")]).unwrap_err();
    assert!(matches!(err, PlanError::InvalidPlatform { .. }), "{err:?}");
    // A stage's ARG is not in the global scope FROM expands with.
    let src = "FROM busybox:1.35\nARG P=linux/arm64\nFROM --platform=$P busybox:1.35\n";
    let err = plan_for(src, None, &[]).unwrap_err();
    assert!(matches!(err, PlanError::EmptyPlatform { .. }), "{err:?}");
}

/// `FROM stage` runs for that stage's platform, whatever its own `--platform` says; `scratch`
/// gets the target platform (BuildKit ignores `--platform` there) in its config.
#[test]
fn stage_and_scratch_platforms() {
    let src = "FROM --platform=linux/s390x busybox:1.35 AS a
FROM --platform=linux/arm64 a AS b
RUN true
FROM --platform=linux/s390x scratch AS c
COPY --from=b /x /x
";
    let (planned, _) = plan_for(src, Some("linux/amd64"), &[]).unwrap();
    let stages = &planned.plan.stages;
    assert_eq!(stages[1].platform.to_string(), "linux/s390x");
    assert_eq!(stages[2].platform.to_string(), "linux/amd64");
    let config = &planned.images[2].config;
    assert_eq!(
        (config.os.as_str(), config.architecture.as_str()),
        ("linux", "amd64")
    );
    let (planned, _) = plan_for("FROM scratch\n", Some("linux/arm/v7"), &[]).unwrap();
    let config = &planned.images[0].config;
    assert_eq!(config.architecture, "arm");
    assert_eq!(config.variant.as_deref(), Some("v7"));
}

/// The final config names an asked-for target platform even when the stage ran for another
/// (BuildKit); without `--platform` it keeps its base's.
#[test]
fn final_config_names_the_target_platform() {
    let src = "FROM --platform=linux/s390x busybox:1.35\n";
    let (planned, _) = plan_for(src, Some("linux/arm64"), &[]).unwrap();
    assert_eq!(planned.images[0].config.architecture, "arm64");
    let (planned, _) = plan_for(src, None, &[]).unwrap();
    assert_eq!(planned.images[0].config.architecture, "s390x");
}

/// `COPY --from=image` is resolved for the target platform, not the stage's.
#[test]
fn copy_from_image_uses_the_target_platform() {
    let src = "FROM --platform=linux/s390x busybox:1.35\nCOPY --from=busybox:1.35 /bin/sh /sh\n";
    let (_, resolved) = plan_for(src, Some("linux/arm64"), &[]).unwrap();
    assert_eq!(
        resolved[1],
        ("busybox:1.35".to_string(), "linux/arm64".to_string())
    );
}

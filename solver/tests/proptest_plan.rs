//! Property tests: whatever the parser accepts, the planner and the build graph never panic.
//! Random and mutated multi-stage Dockerfiles (global ARGs in `FROM`, stage references by name
//! and index, `--from`, mounts, ONBUILD, heredocs) go through `plan()` with random build args
//! and targets, against a fake image source that knows every name, gives some images ONBUILD
//! triggers and refuses others; every plan is then ordered and drawn as the step graph.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rbuild_solver::graph::{stage_order, step_graph};
use rbuild_solver::op::{ImageBase, Platform};
use rbuild_solver::plan::{ImageSource, PlanOptions, ResolvedImage, plan};
use rbuild_store::{Digest, ImageConfig};

/// Resolves every reference except those containing `missing`; references containing `onb`
/// carry ONBUILD triggers (good and bad ones, some naming stages of the child Dockerfile).
struct FakeImages;

const TRIGGERS: &[&str] = &[
    "RUN echo $A",
    "COPY --from=b /x /y",
    "COPY --from=0 /x /y",
    "COPY --from=onbase /x /y",
    "RUN --mount=from=b,target=/m true",
    "ENV K=v",
    "ONBUILD RUN x",
    "FROM x",
    "FROM --platform=$BUILDPLATFORM x AS p",
    "FROM --platform=${P:-linux/arm64} scratch",
    "",
    "COPY --from=$X /a /b",
    "ARG A=${B:-x}",
    "WORKDIR ${A}",
];

impl ImageSource for FakeImages {
    fn resolve(
        &self,
        reference: &str,
        _platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        if reference.contains("missing") {
            return Err((format!("no image `{reference}`"), Some("pull it".into())));
        }
        let on_build: Vec<&str> = if reference.contains("onb") {
            let n = reference.len() % TRIGGERS.len();
            TRIGGERS.iter().cycle().skip(n).take(3).copied().collect()
        } else {
            Vec::new()
        };
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "A=1"], "OnBuild": on_build, "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "a".repeat(64))]},
        });
        let config = ImageConfig::parse(config.to_string().as_bytes(), 1 << 20, "config")
            .map_err(|e| (e.to_string(), None))?;
        Ok(ResolvedImage {
            base: ImageBase {
                reference: reference.to_string(),
                manifest_digest: Digest::from_hex(&"b".repeat(64)).unwrap(),
                config_digest: Digest::from_hex(&"c".repeat(64)).unwrap(),
                diff_ids: vec![Digest::from_hex(&"a".repeat(64)).unwrap()],
            },
            config,
        })
    }
}

const SEEDS: &[&str] = &[
    "ARG BASE=builder\nFROM alpine AS builder\nRUN echo hi\nFROM ${BASE} AS x\nCOPY --from=builder /a /b\n",
    "ARG B=b\nFROM onbase AS b\nONBUILD COPY --from=a /x /y\nFROM $B\nRUN --mount=type=cache,target=/c,from=b true\n",
    "FROM x AS a\nFROM a AS b\nCOPY --from=0 /x /y\nFROM b\nRUN <<EOF\n#!/bin/sh\necho $A\nEOF\n",
    "ARG A=1 B\nFROM $A\nENV K=v L=\"w x\" M\nARG A\nLABEL a=$A\nWORKDIR ${W:-/w}\nUSER $K\n",
    "FROM scratch AS s\nCOPY <<EOF /f\nbody\nEOF\nFROM s\nADD --chmod=755 a /b\nRUN --mount=type=bind,from=s,target=/m ls\n",
    "ARG X=missing\nFROM ${X} AS m\nFROM m\nCOPY --from=m / /\n",
    "ARG P=linux/arm64\nFROM --platform=$P x AS a\nFROM --platform=$BUILDPLATFORM a\nCOPY --from=a / /\n",
];

const ALPHABET: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "ONBUILD ",
    "WORKDIR ",
    "USER ",
    "CMD ",
    "ENTRYPOINT ",
    "SHELL ",
    "LABEL ",
    " AS ",
    " ",
    "\n",
    "\\\n",
    "\"",
    "$",
    "${",
    "}",
    ":-",
    "=",
    "[",
    "]",
    ",",
    "<<EOF\n",
    "EOF\n",
    "#!/bin/sh\n",
    "--from=",
    "--mount=",
    "type=cache,",
    "type=bind,",
    "from=",
    "target=/t",
    "--chown=",
    "--chmod=",
    "0",
    "1",
    "a",
    "b",
    "x",
    "scratch",
    "onbase",
    "missing",
    "BASE",
    "${BASE}",
    "/",
    ".",
    "-",
];

/// Plan `src` with the given options; planning may fail, but never panic. The graph of every
/// successful plan must be computable too.
fn check(src: &str, build_args: &[(String, String)], target: Option<String>) {
    let parsed = rbuild_parser::parse(src);
    let opts = PlanOptions {
        build_args: build_args.iter().cloned().collect::<BTreeMap<_, _>>(),
        target,
        platform: Some(Platform::new("linux", "amd64", None)),
    };
    // The CLI plans only Dockerfiles without errors; plan the others too, it must cope.
    let Ok(planned) = plan(src, &parsed.dockerfile, &opts, &FakeImages) else {
        return;
    };
    assert_eq!(planned.images.len(), planned.plan.stages.len());
    assert!(planned.plan.target < planned.plan.stages.len());
    if let Ok(order) = stage_order(&planned.plan) {
        assert!(order.order.contains(&planned.plan.target));
        let _ = step_graph(&planned.plan, &order).to_dot();
    }
}

fn build_args() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(vec!["BASE", "A", "B", "X", "W"]),
            proptest::sample::select(vec![
                "builder", "b", "a", "0", "", "missing", "scratch", "x",
            ]),
        ),
        0..3,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn target() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(proptest::sample::select(vec![
        "a".to_string(),
        "b".into(),
        "x".into(),
        "builder".into(),
        "nosuch".into(),
    ]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Dockerfile-shaped token soup never panics the planner.
    #[test]
    fn token_soup_never_panics_the_planner(
        tokens in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..60),
        args in build_args(),
        target in target(),
    ) {
        check(&tokens.concat(), &args, target);
    }

    /// Valid multi-stage Dockerfiles with random edits never panic the planner.
    #[test]
    fn mutated_dockerfiles_never_panic_the_planner(
        seed in proptest::sample::select(SEEDS),
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), 0u8..3, proptest::sample::select(ALPHABET)),
            1..6,
        ),
        args in build_args(),
        target in target(),
    ) {
        let mut text = seed.to_string();
        for (at, op, token) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            match op {
                0 => text.insert_str(i, token),
                1 => {
                    let end = (i + token.len()).min(text.len());
                    let end = (end..=text.len()).find(|e| text.is_char_boundary(*e)).unwrap_or(text.len());
                    text.replace_range(i..end, "");
                }
                _ => {
                    let end = (i + 1..=text.len()).find(|e| text.is_char_boundary(*e)).unwrap_or(text.len());
                    text.replace_range(i..end, token);
                }
            }
        }
        check(&text, &args, target);
    }
}

/// The case of issue 11: a global ARG naming an earlier stage, as default and build arg.
#[test]
fn global_arg_naming_a_stage_plans() {
    let src = SEEDS[0];
    check(src, &[], None);
    check(src, &[("BASE".into(), "builder".into())], Some("x".into()));
    let planned = plan(
        src,
        &rbuild_parser::parse(src).dockerfile,
        &PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            platform: Some(Platform::host()),
        },
        &FakeImages,
    )
    .unwrap();
    assert_eq!(
        planned.plan.stages[1].base,
        rbuild_solver::op::Base::Stage(0)
    );
}

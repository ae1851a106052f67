//! The planner (rbuild's analogue of BuildKit's dockerfile2llb): typed Dockerfile instructions →
//! the build [`Plan`] (expanded steps per stage) plus each stage's image config.
//!
//! Stages are grouped, the global ARGs and the automatic platform ARGs evaluated, and base images
//! resolved through an [`ImageSource`] — only for the stages the target needs. A plan is for one
//! target platform (a multi-platform build plans once per platform); each stage runs for its
//! own platform (`FROM --platform=` expanded with the global scope, a base stage's platform,
//! else the target; `scratch` is always the target's, as in BuildKit), and its base image is
//! resolved for it. `TARGET*` ARGs name the target, `BUILD*` this machine (see
//! [`automatic_args`]); an asked-for target platform is written into the final config. FROM names are
//! expanded with the global ARGs before they are matched against stage names, so no input makes
//! the planner panic (random Dockerfiles go through `plan()` in `solver/tests/proptest_plan.rs`).
//! Every instruction is then expanded into an `op::Step` with BuildKit's dispatch rules:
//!
//! - ARG scoping: a global ARG is visible in a stage only when the stage redeclares it; a stage
//!   based on another stage inherits its ARGs. ENV wins over ARG; the default `PATH` is set.
//! - WORKDIR chains onto the previous one; ENTRYPOINT resets an inherited CMD.
//! - ONBUILD triggers of a base image or base stage run right after its FROM.
//! - COPY/ADD destinations are resolved against WORKDIR, keeping a trailing `/`.
//! - Stage references work by name or index.
//!
//! The planner also builds the stage's image config and the history text BuildKit writes
//! (`RUN |1 A=b /bin/sh -c ... # buildkit`). The build conformance cases plan to BuildKit's
//! configs exactly (`tests.rs`).

mod copy;
mod error;
mod expand;
mod meta;
mod run;
mod state;
mod trigger;

use std::collections::{BTreeMap, BTreeSet};

use rbuild_parser::{Dockerfile, Instruction, LineIndex};
use rbuild_store::ImageConfig;

pub use error::PlanError;
use expand::Vars;
use state::StageState;
pub use state::scratch_config;

use crate::op::{Base, ImageBase, Plan, Platform, Site, Stage, Step, StepId};

/// A resolved base image: what enters keys and layer chains, and its config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub base: ImageBase,
    pub config: ImageConfig,
}

/// Finds (and if needed pulls) images named by `FROM` and `COPY --from`.
pub trait ImageSource {
    /// Resolve `reference` (as written after expansion) for `platform`. The error message is
    /// shown under the reference in the Dockerfile; the help line below it.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)>;

    /// Whether a named build context (`--build-context NAME=...`) replaces the stage called
    /// `name`: BuildKit then builds no such stage, and `FROM name`, `--from=name` and
    /// `from=name` resolve through [`ImageSource::resolve`] to the context instead.
    fn replaces_stage(&self, _name: &str) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// The platform the build targets (`TARGETPLATFORM`). `None`: this machine's, not asked
    /// for (BuildKit's implicit target: the final image then keeps the platform its base
    /// image's config names; an asked-for platform is written into the final config).
    pub platform: Option<Platform>,
}

impl PlanOptions {
    /// The target platform: the one asked for, else this machine's.
    pub fn target_platform(&self) -> Platform {
        self.platform.clone().unwrap_or_else(Platform::host)
    }
}

/// A stage's image before layers are known: its config (without rootfs/history of its own
/// steps) and where it came from.
#[derive(Debug, Clone)]
pub struct StageImage {
    /// The config after every instruction of the stage; `rootfs` and `history` are those of
    /// the base (image or stage chain), completed by [`crate::image::assemble`].
    pub config: ImageConfig,
}

/// The planner's result.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    /// One per plan stage (unused stages get their base config only).
    pub images: Vec<StageImage>,
    /// Build args given on the command line that no ARG declared.
    pub unused_build_args: Vec<String>,
}

/// ARGs that are predefined (usable without an ARG line) and never enter history or keys
/// unless declared: the parser's list, which its lint rules use too.
pub use rbuild_parser::PROXY_ARGS;

/// Plan a parsed Dockerfile. `src` is its text (for display strings and line numbers).
pub fn plan(
    src: &str,
    dockerfile: &Dockerfile,
    opts: &PlanOptions,
    images: &dyn ImageSource,
) -> Result<Planned, PlanError> {
    let stages = dockerfile.stages();
    if stages.stages.is_empty() {
        return Err(PlanError::NoStage);
    }
    let escape = dockerfile.directives.escape;
    let lines = LineIndex::new(src);
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    let target_platform = opts.target_platform();

    // Stage names (lowercased) for FROM and --from.
    let names: Vec<Option<String>> = stages.stages.iter().map(|s| s.name()).collect();

    // Global scope: automatic platform ARGs (a `--build-arg` of the same name replaces one),
    // then the ARGs before the first FROM.
    let mut global = Vars::default();
    let target_stage = match &opts.target {
        Some(t) => t.clone(),
        None => names.last().cloned().flatten().unwrap_or_default(),
    };
    for (name, value) in automatic_args(&target_platform, &Platform::host(), &target_stage) {
        match opts.build_args.get(&name) {
            Some(given) => {
                consumed.insert(name.clone());
                global.set(name, given.clone());
            }
            None => global.set(name, value),
        }
    }
    for arg in &stages.global_args {
        for def in &arg.args {
            let name = def.name.value.clone();
            consumed.insert(name.clone());
            let value = match (opts.build_args.get(&name), &def.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(expand::word(
                    &global,
                    default,
                    escape,
                    &mut BTreeMap::new(),
                )?),
                (None, None) => None,
            };
            match value {
                Some(v) => global.set(name, v),
                None => global.declare(name),
            }
        }
    }

    let target = match &opts.target {
        None => stages.stages.len() - 1,
        Some(t) => names
            .iter()
            .position(|n| n.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
                PlanError::UnknownTarget {
                    target: t.clone(),
                    help: match rbuild_parser::diagnostics::suggest(t, &known) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => {
                            "the Dockerfile names no stages (`FROM image AS name`)".into()
                        }
                        None => format!("stages: {}", known.join(", ")),
                    },
                }
            })?,
    };

    // A stage a named context replaces is matched by no reference: they resolve to the
    // context (it is still built when it is the target).
    let names: Vec<Option<String>> = names
        .into_iter()
        .map(|n| n.filter(|n| !images.replaces_stage(n)))
        .collect();
    let ctx = Ctx {
        src,
        lines: &lines,
        escape,
        opts,
        images,
        names: &names,
        target_platform: &target_platform,
    };

    // Which stages the target needs, from the static references (FROM name after expansion
    // with the global ARGs, --from, mounts). ONBUILD triggers may name stages of this
    // Dockerfile too (`COPY --from=stage`); they are only known once the base is resolved, so
    // such a reference adds the stage and plans again. Planning adds every stage it finds it
    // needs the same way, so the static analysis can never leave a needed stage unplanned.
    let mut extra_deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); stages.stages.len()];
    let (plan_stages, mut stage_images, consumed) = loop {
        let needed = needed_stages(&ctx, &stages.stages, target, &extra_deps, &global);
        match plan_stages(&ctx, &stages.stages, &needed, &global, consumed.clone())? {
            Stages::Planned(stages, images, consumed) => break (stages, images, consumed),
            Stages::Needs { stage, deps } => {
                // Each round adds a stage that was not needed before, so this ends.
                debug_assert!(deps.iter().all(|d| !needed.contains(d)));
                extra_deps[stage].extend(deps)
            }
        }
    };

    if let Some(platform) = &opts.platform {
        pin_platform(&mut stage_images[target].config, platform);
    }
    normalize_config_platform(&mut stage_images[target].config);
    let plan = Plan {
        stages: plan_stages,
        target,
        platform: target_platform.clone(),
    };
    // Cycles can only come from forward `--from` references.
    if let Err(cycle) = crate::graph::stage_order(&plan) {
        let names: Vec<String> = cycle
            .stages
            .iter()
            .map(|s| plan.stages[*s].label())
            .collect();
        let first = &plan.stages[cycle.stages[0]];
        return Err(PlanError::Cycle {
            cycle: format!("{} → {}", names.join(" → "), names[0]),
            span: first.site.span.clone().into(),
        });
    }
    let unused_build_args = opts
        .build_args
        .keys()
        .filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
        .filter(|k| !k.starts_with("BUILDKIT_") && k.as_str() != "SOURCE_DATE_EPOCH")
        .cloned()
        .collect();
    Ok(Planned {
        plan,
        images: stage_images,
        unused_build_args,
    })
}

/// What planning the stages gave: the stages, or stages that ONBUILD triggers of `stage` use
/// and the static analysis did not know about (plan again with them).
enum Stages {
    Planned(Vec<Stage>, Vec<StageImage>, BTreeSet<String>),
    Needs { stage: usize, deps: BTreeSet<usize> },
}

/// Plan every needed stage in order (unneeded ones become empty placeholders).
fn plan_stages(
    ctx: &Ctx<'_>,
    stages: &[rbuild_parser::Stage<'_>],
    needed: &BTreeSet<usize>,
    global: &Vars,
    mut consumed: BTreeSet<String>,
) -> Result<Stages, PlanError> {
    let (escape, names) = (ctx.escape, ctx.names);
    let mut plan_stages: Vec<Stage> = Vec::with_capacity(stages.len());
    let mut stage_images: Vec<StageImage> = Vec::with_capacity(stages.len());
    let mut states: Vec<Option<StageState>> = Vec::with_capacity(stages.len());
    for st in stages {
        let from = st.from;
        let site = ctx.site(from.meta.span);
        if !needed.contains(&st.index) {
            plan_stages.push(Stage {
                index: st.index,
                name: st.name(),
                base: Base::Scratch,
                steps: Vec::new(),
                site,
                platform: ctx.target_platform.clone(),
                no_cache: false,
            });
            stage_images.push(StageImage {
                config: ImageConfig::default(),
            });
            states.push(None);
            continue;
        }
        // FROM: expanded with the global scope only.
        let image = expand::word(global, &from.image, escape, &mut BTreeMap::new())?;
        if image.is_empty() {
            let referenced = expand::referenced(global, &from.image, escape);
            return Err(PlanError::EmptyBase {
                written: from.image.value.clone(),
                help: if referenced.is_empty() {
                    "name an image, a stage, or `scratch`".into()
                } else {
                    format!(
                        "give {} a value: `--build-arg {}=...` or a default in `ARG`",
                        referenced.join(", "),
                        referenced[0]
                    )
                },
                span: from.image.span.into(),
            });
        }
        let lower = image.to_ascii_lowercase();
        let earlier_stage = base_stage(names, st.index, &image);
        // Checked for every stage, even where BuildKit then ignores it (a stage or scratch
        // base), as BuildKit does.
        let requested = stage_platform(ctx, from, global)?;
        // The triggers: the ONBUILD list of the base image, or the ONBUILD instructions of the
        // base stage (BuildKit runs both); the child's own config starts without them.
        let (base, mut state, onbuild, platform) = if let Some(i) = earlier_stage {
            let Some(base_state) = states[i].clone() else {
                // Not planned: the static analysis missed it. Plan again with it.
                return Ok(Stages::Needs {
                    stage: st.index,
                    deps: BTreeSet::from([i]),
                });
            };
            let onbuild = base_state
                .config
                .config
                .as_ref()
                .and_then(|c| c.on_build.clone())
                .unwrap_or_default();
            // A stage built on another runs for that stage's platform.
            let platform = plan_stages[i].platform.clone();
            (Base::Stage(i), base_state.for_child(), onbuild, platform)
        } else if lower == "scratch" {
            // BuildKit gives `scratch` the target platform, whatever `--platform` says.
            let platform = ctx.target_platform.clone();
            (
                Base::Scratch,
                StageState::scratch(&platform),
                Vec::new(),
                platform,
            )
        } else {
            let platform = requested.unwrap_or_else(|| ctx.target_platform.clone());
            let resolved =
                ctx.resolve_not_stage(&image, from.image.span, &names[..st.index], &platform)?;
            let onbuild = resolved
                .config
                .config
                .as_ref()
                .and_then(|c| c.on_build.clone())
                .unwrap_or_default();
            (
                Base::Image(resolved.base.clone()),
                StageState::from_image(resolved.config),
                onbuild,
                platform,
            )
        };
        let mut steps: Vec<Step> = Vec::new();

        // ONBUILD triggers of the base run first, in order, with this stage's scope; errors
        // point at the FROM line that pulled them in.
        for (k, text) in onbuild.iter().enumerate() {
            let fail = |reason: String, help: Option<String>| PlanError::OnbuildTrigger {
                base: image.clone(),
                number: k + 1,
                trigger: text.clone(),
                span: from.meta.span.into(),
                reason,
                help,
            };
            let trigger = trigger::parse(text).map_err(|(reason, help)| fail(reason, help))?;
            let mut deps = BTreeSet::new();
            for value in static_from_refs(&trigger.instruction) {
                if let Ok(Some(i)) = ctx.stage_ref(&value, st.index, from.meta.span)
                    && !needed.contains(&i)
                {
                    deps.insert(i);
                }
            }
            if !deps.is_empty() {
                return Ok(Stages::Needs {
                    stage: st.index,
                    deps,
                });
            }
            let trig_ctx = Ctx {
                src: &trigger.src,
                lines: &trigger.lines,
                ..*ctx
            };
            let id = StepId {
                stage: st.index,
                index: steps.len(),
            };
            let mut step = dispatch(
                &trig_ctx,
                &mut state,
                st.index,
                id,
                &trigger.instruction,
                &mut consumed,
                global,
            )
            .map_err(|e| {
                let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
                fail(e.to_string(), help)
            })?;
            step.site = site.clone();
            step.display = format!("ONBUILD {}", step.display);
            steps.push(step);
        }
        for ins in st.instructions {
            let id = StepId {
                stage: st.index,
                index: steps.len(),
            };
            let step = dispatch(ctx, &mut state, st.index, id, ins, &mut consumed, global)?;
            steps.push(step);
        }
        stage_images.push(StageImage {
            config: state.finished_config(),
        });
        plan_stages.push(Stage {
            index: st.index,
            name: st.name(),
            base,
            steps,
            site,
            platform,
            no_cache: false,
        });
        states.push(Some(state));
    }
    Ok(Stages::Planned(plan_stages, stage_images, consumed))
}

/// The automatic ARGs of the global scope, as BuildKit defines them: `BUILD*` name the
/// machine that builds (`build`), `TARGET*` the platform the build targets (whatever platform
/// a stage runs for), `TARGETSTAGE` the target stage (`default` when it has no name). Like any
/// global ARG, a stage sees one only when it declares it (`ARG TARGETARCH`).
pub fn automatic_args(
    target: &Platform,
    build: &Platform,
    target_stage: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((
            format!("{prefix}OSVERSION"),
            p.os_version.clone().unwrap_or_default(),
        ));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    let stage = if target_stage.is_empty() {
        "default"
    } else {
        target_stage
    };
    out.push(("TARGETSTAGE".to_string(), stage.to_string()));
    out
}

/// `FROM --platform=...` expanded with the global scope and parsed (normalised as containerd
/// does); `None` without the flag.
fn stage_platform(
    ctx: &Ctx<'_>,
    from: &rbuild_parser::From,
    global: &Vars,
) -> Result<Option<Platform>, PlanError> {
    let Some(flag) = &from.platform else {
        return Ok(None);
    };
    let word = rbuild_parser::Word::new(flag.raw.clone(), flag.span);
    let value = expand::word(global, &word, ctx.escape, &mut BTreeMap::new())?;
    if value.is_empty() {
        let referenced = expand::referenced(global, &word, ctx.escape);
        return Err(PlanError::EmptyPlatform {
            written: flag.raw.clone(),
            help: if referenced.is_empty() {
                "write `--platform=os/arch[/variant]`, e.g. `--platform=$BUILDPLATFORM`".into()
            } else {
                format!(
                    "give {} a value: `--build-arg {}=...` or a default in a global `ARG`",
                    referenced.join(", "),
                    referenced[0]
                )
            },
            span: flag.span.into(),
        });
    }
    value
        .parse::<Platform>()
        .map(Some)
        .map_err(|e| PlanError::InvalidPlatform {
            value,
            message: match e {
                rbuild_store::Error::InvalidPlatform { reason, .. } => reason,
                other => other.to_string(),
            },
            span: flag.span.into(),
        })
}

/// An asked-for target platform is what the final image's config names (BuildKit's
/// finalizeResultImage): os and architecture always, the variant when the target has one or
/// the os/architecture changed.
fn pin_platform(config: &mut ImageConfig, platform: &Platform) {
    let same = config.os == platform.os && config.architecture == platform.architecture;
    config.os = platform.os.clone();
    config.architecture = platform.architecture.clone();
    if platform.variant.is_some() || !same {
        config.variant = platform.variant.clone();
    }
}

/// The final config's platform fields normalised as containerd does (`aarch64` → `arm64`,
/// arm64's `v8` dropped), as BuildKit writes them.
fn normalize_config_platform(config: &mut ImageConfig) {
    if config.architecture.is_empty() {
        return;
    }
    let normal =
        Platform::new(&config.os, &config.architecture, config.variant.as_deref()).normalized();
    config.os = normal.os;
    config.architecture = normal.architecture;
    config.variant = normal.variant;
}

/// Shared, read-only planning context.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    src: &'a str,
    lines: &'a LineIndex,
    escape: char,
    opts: &'a PlanOptions,
    images: &'a dyn ImageSource,
    names: &'a [Option<String>],
    /// The build's target platform: `COPY --from=image` and `--mount from=image` images are
    /// resolved for it (BuildKit's implicit stages take the target platform).
    target_platform: &'a Platform,
}

impl Ctx<'_> {
    fn site(&self, span: rbuild_parser::Span) -> Site {
        Site {
            span: span.start..span.end,
            line: self.lines.line_col(self.src, span.start).0,
        }
    }

    /// The instruction as written, on one line: continuations joined, heredoc bodies left out.
    fn display(&self, ins: &Instruction) -> String {
        let span = ins.span();
        let text = self.src.get(span.start..span.end).unwrap_or_default();
        let mut out = String::new();
        let mut lines = text.lines().peekable();
        let mut first = true;
        while let Some(line) = lines.next() {
            let trimmed = line.trim_end();
            // Inside a continuation, comment and empty lines are not part of the instruction
            // (the parser drops them too): `RUN a \ <# note> && b` is `RUN a && b`.
            let inner = trimmed.trim_start();
            if !first && (inner.is_empty() || inner.starts_with('#')) {
                continue;
            }
            first = false;
            if let Some(stripped) = trimmed.strip_suffix(self.escape) {
                out.push_str(stripped.trim_start());
                if lines.peek().is_some() {
                    continue;
                }
            } else {
                out.push_str(trimmed.trim_start());
            }
            break;
        }
        let collapsed: Vec<&str> = out.split_whitespace().collect();
        collapsed.join(" ")
    }

    fn resolve(
        &self,
        reference: &str,
        span: rbuild_parser::Span,
        platform: &Platform,
    ) -> Result<ResolvedImage, PlanError> {
        self.images
            .resolve(reference, platform)
            .map_err(|(message, help)| PlanError::BaseImage {
                reference: reference.to_string(),
                span: span.into(),
                message,
                help,
            })
    }

    /// Resolve a name that is not a stage as an image (`FROM name`, `--from=name`,
    /// `from=name`). When that fails and the name is close to one of `stages` (the stage names
    /// the reference may use), it was most likely a misspelt stage: say so.
    fn resolve_not_stage(
        &self,
        reference: &str,
        span: rbuild_parser::Span,
        stages: &[Option<String>],
        platform: &Platform,
    ) -> Result<ResolvedImage, PlanError> {
        self.resolve(reference, span, platform).map_err(|err| {
            let PlanError::BaseImage { message, .. } = &err else {
                return err;
            };
            let known: Vec<&str> = stages.iter().flatten().map(String::as_str).collect();
            match rbuild_parser::diagnostics::suggest(reference, &known) {
                Some(close) => PlanError::NotAStage {
                    reference: reference.to_string(),
                    close: close.to_string(),
                    image_error: message.clone(),
                    span: span.into(),
                },
                None => err,
            }
        })
    }

    /// The stage a `--from` / `from=` value names: a stage name (any position), or an index
    /// of an earlier stage. `Ok(None)` means it is an image reference.
    fn stage_ref(
        &self,
        value: &str,
        current: usize,
        span: rbuild_parser::Span,
    ) -> Result<Option<usize>, PlanError> {
        if let Ok(index) = value.parse::<usize>() {
            if index >= current {
                return Err(PlanError::StageIndex {
                    from: value.to_string(),
                    span: span.into(),
                });
            }
            return Ok(Some(index));
        }
        let lower = value.to_ascii_lowercase();
        match self
            .names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            Some(i) if i == current => Err(PlanError::SelfReference {
                from: value.to_string(),
                span: span.into(),
            }),
            found => Ok(found),
        }
    }
}

/// The stage a `FROM` names: `image` is the base name after expansion with the global ARGs
/// (BuildKit expands it before matching it against stage names). Only earlier stages count,
/// and the latest of two with the same name wins.
fn base_stage(names: &[Option<String>], stage: usize, image: &str) -> Option<usize> {
    let lower = image.to_ascii_lowercase();
    names[..stage.min(names.len())]
        .iter()
        .rposition(|n| n.as_deref() == Some(lower.as_str()))
}

/// Stages the target needs, following FROM names (expanded with the global ARGs; earlier
/// stages only), `COPY --from` and `RUN --mount from=` references, and the stages planning
/// found a stage to use beyond those (ONBUILD triggers).
fn needed_stages(
    ctx: &Ctx<'_>,
    stages: &[rbuild_parser::Stage<'_>],
    target: usize,
    extra_deps: &[BTreeSet<usize>],
    global: &Vars,
) -> BTreeSet<usize> {
    let deps: Vec<BTreeSet<usize>> = stages
        .iter()
        .map(|st| {
            let mut deps = extra_deps[st.index].clone();
            // An expansion error is reported when the stage is planned.
            if let Ok(image) =
                expand::word(global, &st.from.image, ctx.escape, &mut BTreeMap::new())
                && let Some(i) = base_stage(ctx.names, st.index, &image)
            {
                deps.insert(i);
            }
            for ins in st.instructions {
                for value in static_from_refs(ins) {
                    if let Ok(Some(i)) = ctx.stage_ref(&value, st.index, ins.span()) {
                        deps.insert(i);
                    }
                }
            }
            deps
        })
        .collect();
    let mut needed = BTreeSet::new();
    let mut stack = vec![target];
    while let Some(s) = stack.pop() {
        if needed.insert(s) {
            stack.extend(deps[s].iter().copied());
        }
    }
    needed
}

/// `--from` of COPY and `from=` of RUN mounts, as written.
fn static_from_refs(ins: &Instruction) -> Vec<String> {
    match ins {
        Instruction::Copy(c) => c.from.iter().map(|f| f.raw.clone()).collect(),
        Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.clone()).collect(),
        Instruction::Onbuild(_) => Vec::new(),
        _ => Vec::new(),
    }
}

/// The metadata instructions [`apply_metadata`] takes (`rbuild import --change`).
pub const METADATA_INSTRUCTIONS: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
];

/// Apply one metadata instruction (one of [`METADATA_INSTRUCTIONS`]) to `config` exactly as a
/// Dockerfile stage would: the planner's own code, so `import --change` and a build agree on
/// WORKDIR normalisation, EXPOSE and VOLUME words, signals and command forms. Values expand
/// against the config's `Env` alone (no ARGs; no default PATH is added). `src` is the text
/// `ins` was parsed from: error spans point into it. Any other instruction is refused with
/// [`PlanError::Invalid`] at its keyword.
pub fn apply_metadata(
    config: &mut rbuild_store::ContainerConfig,
    src: &str,
    ins: &Instruction,
) -> Result<(), PlanError> {
    struct NoImages;
    impl ImageSource for NoImages {
        fn resolve(
            &self,
            reference: &str,
            _: &Platform,
        ) -> Result<ResolvedImage, (String, Option<String>)> {
            Err((format!("no image `{reference}` here"), None))
        }
    }
    let keyword = &ins.meta().keyword;
    let name = keyword.value.to_ascii_uppercase();
    if !METADATA_INSTRUCTIONS.contains(&name.as_str()) {
        return Err(PlanError::invalid(
            keyword.span,
            format!("`{}` is not a metadata instruction", keyword.value),
            "this instruction",
            Some(format!("use one of {}", METADATA_INSTRUCTIONS.join(", "))),
        ));
    }
    let lines = LineIndex::new(src);
    let opts = PlanOptions {
        build_args: BTreeMap::new(),
        target: None,
        platform: None,
    };
    let host = Platform::host();
    let ctx = Ctx {
        src,
        lines: &lines,
        escape: '\\',
        opts: &opts,
        images: &NoImages,
        names: &[],
        target_platform: &host,
    };
    let mut vars = Vars::default();
    for entry in config.env.iter().flatten() {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        vars.set(k, v);
    }
    let mut state = StageState {
        vars,
        build_args: Vec::new(),
        config: ImageConfig {
            config: Some(config.clone()),
            ..ImageConfig::default()
        },
        cmd_set: config.cmd.is_some(),
    };
    let mut step = Step {
        id: StepId { stage: 0, index: 0 },
        display: String::new(),
        site: ctx.site(ins.span()),
        op: crate::op::Op::Meta,
        created_by: String::new(),
        key: crate::op::KeyParts::default(),
    };
    meta::dispatch(&ctx, &mut state, ins, &mut step)?;
    *config = state.config.config.unwrap_or_default();
    Ok(())
}

/// Turn one instruction into a step, updating the stage state.
fn dispatch(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    stage: usize,
    id: StepId,
    ins: &Instruction,
    consumed: &mut BTreeSet<String>,
    global: &Vars,
) -> Result<Step, PlanError> {
    let site = ctx.site(ins.span());
    let display = ctx.display(ins);
    let mut step = Step {
        id,
        display,
        site,
        op: crate::op::Op::Meta,
        created_by: String::new(),
        key: crate::op::KeyParts::default(),
    };
    match ins {
        Instruction::From(_) => unreachable!("stages() splits at FROM"),
        Instruction::Run(run) => run::dispatch(ctx, state, stage, run, &mut step)?,
        Instruction::Copy(copy) => copy::dispatch_copy(ctx, state, stage, copy, &mut step)?,
        Instruction::Add(add) => copy::dispatch_add(ctx, state, add, &mut step)?,
        Instruction::Arg(arg) => meta::arg(ctx, state, arg, consumed, global, &mut step)?,
        other => meta::dispatch(ctx, state, other, &mut step)?,
    }
    Ok(step)
}

#[cfg(test)]
mod tests;

//! Planning errors: each points at the Dockerfile span that caused it and says how to fix it.
//! The CLI attaches the Dockerfile text when it renders them.

use miette::SourceSpan;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error("cannot expand `{word}`: {message}")]
    #[diagnostic(
        code(rbuild::plan::expansion),
        help(
            "check the `${{...}}` syntax; `${{VAR:?message}}` fails on purpose when VAR is unset"
        )
    )]
    Expansion {
        word: String,
        message: String,
        #[label("here")]
        span: SourceSpan,
    },

    #[error("variable expansion too large: {message}")]
    #[diagnostic(
        code(rbuild::plan::expansion_too_large),
        help(
            "a variable that refers to itself several times grows exponentially from line to \
             line; the limits are RBUILD_EXPANSION_LIMIT (one word) and RBUILD_EXPANSION_TOTAL \
             (the whole build)"
        )
    )]
    ExpansionTooLarge {
        message: String,
        #[label("expands past the limit")]
        span: SourceSpan,
    },

    #[error("base image name `{written}` is empty after expansion")]
    #[diagnostic(code(rbuild::plan::empty_base), help("{help}"))]
    EmptyBase {
        written: String,
        help: String,
        #[label("expands to nothing")]
        span: SourceSpan,
    },

    #[error("empty platform value from `--platform={written}`")]
    #[diagnostic(code(rbuild::plan::empty_platform), help("{help}"))]
    EmptyPlatform {
        written: String,
        help: String,
        #[label("expands to nothing")]
        span: SourceSpan,
    },

    #[error("invalid platform `{value}`: {message}")]
    #[diagnostic(
        code(rbuild::plan::invalid_platform),
        help("write `--platform=os/arch[/variant]`, e.g. `linux/arm64` or `$BUILDPLATFORM`")
    )]
    InvalidPlatform {
        value: String,
        message: String,
        #[label("not a platform")]
        span: SourceSpan,
    },

    #[error("cannot use base image `{reference}`")]
    #[diagnostic(code(rbuild::plan::base_image))]
    BaseImage {
        reference: String,
        #[label("{message}")]
        span: SourceSpan,
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("cannot use `{reference}`: it is not a stage, and {image_error}")]
    #[diagnostic(
        code(rbuild::plan::unknown_stage),
        help(
            "a name that is not a stage is used as an image; to use the stage, write \
             `{close}` (stage names are defined with `FROM <image> AS <name>`)"
        )
    )]
    NotAStage {
        reference: String,
        close: String,
        image_error: String,
        #[label("did you mean the stage `{close}`?")]
        span: SourceSpan,
    },

    #[error("`--from={from}` does not name a stage before this one")]
    #[diagnostic(
        code(rbuild::plan::unknown_stage_index),
        help("stage indexes count from 0 and must refer to an earlier stage")
    )]
    StageIndex {
        from: String,
        #[label("no stage {from} before this line")]
        span: SourceSpan,
    },

    #[error("stage `{from}` cannot copy from itself")]
    #[diagnostic(
        code(rbuild::plan::self_reference),
        help("copy from an earlier stage, or split this stage in two")
    )]
    SelfReference {
        from: String,
        #[label("this is the current stage")]
        span: SourceSpan,
    },

    #[error("variable expansion is not supported for `--from`")]
    #[diagnostic(
        code(rbuild::plan::from_expansion),
        help("define a new stage with `FROM ${{VAR}} AS name` (global ARG) and use `--from=name`")
    )]
    FromExpansion {
        #[label("contains a variable")]
        span: SourceSpan,
    },

    #[error("target stage `{target}` does not exist")]
    #[diagnostic(code(rbuild::plan::unknown_target))]
    UnknownTarget {
        target: String,
        #[help]
        help: String,
    },

    #[error("stages depend on each other in a cycle: {cycle}")]
    #[diagnostic(
        code(rbuild::plan::cycle),
        help("a stage cannot (indirectly) use its own result; break the loop of FROM / --from")
    )]
    Cycle {
        cycle: String,
        #[label("part of the cycle")]
        span: SourceSpan,
    },

    #[error("{message}")]
    #[diagnostic(code(rbuild::plan::invalid))]
    Invalid {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("ONBUILD trigger #{number} of `{base}` failed: `{trigger}`")]
    #[diagnostic(code(rbuild::plan::onbuild_trigger))]
    OnbuildTrigger {
        base: String,
        number: usize,
        trigger: String,
        #[label("{reason}")]
        span: SourceSpan,
        reason: String,
        #[help]
        help: Option<String>,
    },

    #[error("the Dockerfile has no FROM instruction")]
    #[diagnostic(
        code(rbuild::plan::no_stage),
        help("start the Dockerfile with `FROM <image>` (or `FROM scratch`)")
    )]
    NoStage,
}

impl PlanError {
    pub fn invalid(
        span: impl Into<SourceSpan>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> PlanError {
        PlanError::Invalid {
            message: message.into(),
            span: span.into(),
            label: label.into(),
            help,
        }
    }
}

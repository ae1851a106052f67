//! Build checks in the spirit of BuildKit's linter, with its rule names and messages. This
//! module owns:
//!
//! - [`Rule`]: every rule name, parsed from text once (`# check=skip=...` in
//!   [`crate::parser`]) and carried as the enum after that; [`Rule::as_str`] and `Display` give
//!   BuildKit's exact name, [`Rule::url`] its documentation page. [`RuleSet`] is a set of rules
//!   (what `skip` switches off).
//! - One file per rule (`stage_name_casing.rs` for `StageNameCasing`, ...), each with one
//!   `pub(super) fn check(cx: &Context, out: &mut Vec<ParseDiagnostic>)` that pushes only
//!   warnings of its own rule, built with [`diagnostics::lint`]. Rules read the parsed tree
//!   through [`Context`] (no base image: variables a base image may set are only assumed for a
//!   few universal names, see [`vars::BASE_ENV`]); shared helpers live in [`vars`] (which
//!   variables are in scope) and here (keyword casing).
//! - [`run`], the driver: runs the rules in the fixed order of [`PASSES`], skips the ones
//!   `# check=skip=` switches off, and then warns about unknown names in `skip`.
//!
//! `UnknownStageReference` is the one rule without a pass: the parser's stage check emits it
//! (see [`diagnostics::unknown_stage_hint`]), so `# check=skip=` does not drop it.
//!
//! # Order of results
//!
//! [`crate::parse`] sorts all diagnostics by span start (errors first), keeping the order of
//! equal starts, so the driver's order matters only for warnings at the same offset. Rules
//! that can share one run in this order: `ConsistentInstructionCasing` before the rules on
//! whole instructions (`LegacyKeyValueFormat`, `MaintainerDeprecated`, `JSONArgsRecommended`,
//! then `MultipleInstructionsDisallowed`); `StageNameCasing`, `DuplicateStageName`,
//! `ReservedStageName` on a stage name; `RedundantTargetPlatform` and
//! `FromPlatformFlagConstDisallowed`, `UndefinedArgInFrom`, `InvalidDefaultArgInFrom` on a
//! `FROM`; `UndefinedVar` before `WorkdirRelativePath`, `ExposeInvalidFormat` and
//! `ExposeProtoCasing` on a word. Inside a rule, warnings come in instruction order. The
//! unknown-`skip` warnings come last.
//!
//! # Writing a rule
//!
//! Add a variant (with its name and docs page) to the `rules!` table below, a file with its
//! `check`, and an entry in [`PASSES`] at a place that keeps the order above; give it a
//! fixture `testdata/lint/<Rule>.Dockerfile` (checked by `parser/tests/lint.rs`).

mod consistent_instruction_casing;
mod continuation_at_eof;
mod duplicate_stage_name;
mod expose_invalid_format;
mod expose_proto_casing;
mod from_as_casing;
mod from_platform_flag_const_disallowed;
mod invalid_default_arg_in_from;
mod json_args_recommended;
mod legacy_key_value_format;
mod maintainer_deprecated;
mod multiple_instructions_disallowed;
mod no_empty_continuation;
mod redundant_target_platform;
mod reserved_stage_name;
mod secrets_used_in_arg_or_env;
mod stage_name_casing;
mod undefined_arg_in_from;
mod undefined_var;
mod vars;
pub use vars::PROXY_ARGS;
mod workdir_relative_path;

use std::fmt;
use std::str::FromStr;

use crate::ast::{ArgDef, Dockerfile, Instruction, Stages};
use crate::diagnostics::{self, ParseDiagnostic, suggest};
use crate::parser::Extras;

/// The documentation page of a BuildKit rule, from its kebab-case name.
macro_rules! docs {
    ($slug:literal) => {
        Some(concat!(
            "https://docs.docker.com/go/dockerfile/rule/",
            $slug,
            "/"
        ))
    };
}

/// Declares [`Rule`] from a table of `Variant => "Name", url;` (`url` is `docs!(slug)` or
/// `None`). The table's order is [`Rule::ALL`]'s, which `did you mean` suggestions break
/// ties by.
macro_rules! rules {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $url:expr;)*) => {
        /// A lint rule, named as BuildKit names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $($(#[$doc])* $variant,)*
        }

        impl Rule {
            /// Every rule this linter knows.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// [`Rule::ALL`]'s names, in the same order.
            const NAMES: &'static [&'static str] = &[$($name),*];

            /// BuildKit's name of the rule (`JSONArgsRecommended`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Rule::$variant => $name,)*
                }
            }

            /// The rule's documentation page, if it has one (rbuild's own
            /// `UnknownStageReference` has none).
            pub const fn url(self) -> Option<&'static str> {
                match self {
                    $(Rule::$variant => $url,)*
                }
            }
        }
    };
}

rules! {
    /// Stage names (`AS name`) should be lowercase.
    StageNameCasing => "StageNameCasing", docs!("stage-name-casing");
    /// `AS` should have the casing of its `FROM`.
    FromAsCasing => "FromAsCasing", docs!("from-as-casing");
    /// No empty line inside a continued instruction.
    NoEmptyContinuation => "NoEmptyContinuation", docs!("no-empty-continuation");
    /// Instruction keywords follow the casing of the majority.
    ConsistentInstructionCasing => "ConsistentInstructionCasing",
        docs!("consistent-instruction-casing");
    /// Stage names are unique.
    DuplicateStageName => "DuplicateStageName", docs!("duplicate-stage-name");
    /// No stage is named `scratch` or `context`.
    ReservedStageName => "ReservedStageName", docs!("reserved-stage-name");
    /// `CMD` and `ENTRYPOINT` in exec (JSON) form, unless a `SHELL` was set.
    JsonArgsRecommended => "JSONArgsRecommended", docs!("json-args-recommended");
    /// `MAINTAINER` is deprecated in favour of a label.
    MaintainerDeprecated => "MaintainerDeprecated", docs!("maintainer-deprecated");
    /// Variables in `FROM` are global `ARG`s (or predefined).
    UndefinedArgInFrom => "UndefinedArgInFrom", docs!("undefined-arg-in-from");
    /// A relative `WORKDIR` before any absolute one depends on the base image.
    WorkdirRelativePath => "WorkdirRelativePath", docs!("workdir-relative-path");
    /// Variables used by an instruction are defined in its stage (or assumed from the base).
    UndefinedVar => "UndefinedVar", docs!("undefined-var");
    /// One `CMD`, `ENTRYPOINT` and `HEALTHCHECK` per stage: only the last one counts.
    MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
        docs!("multiple-instructions-disallowed");
    /// `ENV` and `LABEL` in `key=value` form, not the legacy `key value`.
    LegacyKeyValueFormat => "LegacyKeyValueFormat", docs!("legacy-key-value-format");
    /// `FROM --platform=$TARGETPLATFORM` is the default.
    RedundantTargetPlatform => "RedundantTargetPlatform", docs!("redundant-target-platform");
    /// `ARG` and `ENV` names that look like secrets.
    SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv", docs!("secrets-used-in-arg-or-env");
    /// The `FROM` image built from `ARG` defaults is empty or invalid.
    InvalidDefaultArgInFrom => "InvalidDefaultArgInFrom", docs!("invalid-default-arg-in-from");
    /// `FROM --platform` with a constant (unless the stage is named after it).
    FromPlatformFlagConstDisallowed => "FromPlatformFlagConstDisallowed",
        docs!("from-platform-flag-const-disallowed");
    /// `EXPOSE` protocols are lowercase.
    ExposeProtoCasing => "ExposeProtoCasing", docs!("expose-proto-casing");
    /// `EXPOSE` takes no IP address or host-port mapping.
    ExposeInvalidFormat => "ExposeInvalidFormat", docs!("expose-invalid-format");
    /// The file ends inside a continued instruction.
    ContinuationAtEof => "ContinuationAtEof", docs!("continuation-at-eof");
    /// A `--from` name close to a stage name: probably a typo (it would be pulled as an image).
    UnknownStageReference => "UnknownStageReference", None;
}

// A `RuleSet` is a bit per rule.
const _: () = assert!(Rule::ALL.len() <= u32::BITS as usize);

impl Rule {
    /// The rule named `name`, compared ignoring ASCII case as `# check=skip=` does.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| Rule::ALL[i])
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A name that is no [`Rule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule `{0}`")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;

    /// [`Rule::from_name`].
    fn from_str(s: &str) -> Result<Rule, UnknownRule> {
        Rule::from_name(s).ok_or_else(|| UnknownRule(s.to_string()))
    }
}

/// A set of [`Rule`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSet(u32);

impl RuleSet {
    /// Every rule.
    pub fn all() -> RuleSet {
        RuleSet(Rule::ALL.iter().fold(0, |bits, r| bits | r.bit()))
    }

    pub fn insert(&mut self, rule: Rule) {
        self.0 |= rule.bit();
    }

    pub fn contains(self, rule: Rule) -> bool {
        self.0 & rule.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What the rules read: the tree, the facts the parser kept beside it, and what several
/// rules need, computed once.
pub(crate) struct Context<'a> {
    pub df: &'a Dockerfile,
    pub extras: &'a Extras,
    /// The escape character of the file.
    pub escape: char,
    pub stages: Stages<'a>,
    /// Every global `ARG` definition, in order.
    pub global_args: Vec<&'a ArgDef>,
}

impl<'a> Context<'a> {
    fn new(df: &'a Dockerfile, extras: &'a Extras) -> Self {
        let stages = df.stages();
        let global_args = stages
            .global_args
            .iter()
            .flat_map(|a| a.args.iter())
            .collect();
        Context {
            df,
            extras,
            escape: df.directives.escape,
            stages,
            global_args,
        }
    }

    /// The instructions of every stage after its `FROM`, in order.
    pub fn stage_instructions(&self) -> impl Iterator<Item = &'a Instruction> + '_ {
        self.stages.stages.iter().flat_map(|st| st.instructions)
    }
}

type Pass = fn(&Context<'_>, &mut Vec<ParseDiagnostic>);

/// Every rule with a pass, in the order the driver runs them (see the module docs for why
/// this order).
const PASSES: &[(Rule, Pass)] = &[
    (Rule::NoEmptyContinuation, no_empty_continuation::check),
    (Rule::ContinuationAtEof, continuation_at_eof::check),
    (
        Rule::ConsistentInstructionCasing,
        consistent_instruction_casing::check,
    ),
    (
        Rule::SecretsUsedInArgOrEnv,
        secrets_used_in_arg_or_env::check,
    ),
    (Rule::StageNameCasing, stage_name_casing::check),
    (Rule::DuplicateStageName, duplicate_stage_name::check),
    (Rule::ReservedStageName, reserved_stage_name::check),
    (Rule::FromAsCasing, from_as_casing::check),
    (
        Rule::RedundantTargetPlatform,
        redundant_target_platform::check,
    ),
    (
        Rule::FromPlatformFlagConstDisallowed,
        from_platform_flag_const_disallowed::check,
    ),
    (Rule::UndefinedArgInFrom, undefined_arg_in_from::check),
    (
        Rule::InvalidDefaultArgInFrom,
        invalid_default_arg_in_from::check,
    ),
    (Rule::LegacyKeyValueFormat, legacy_key_value_format::check),
    (Rule::MaintainerDeprecated, maintainer_deprecated::check),
    (Rule::JsonArgsRecommended, json_args_recommended::check),
    (Rule::UndefinedVar, undefined_var::check),
    (Rule::WorkdirRelativePath, workdir_relative_path::check),
    (Rule::ExposeInvalidFormat, expose_invalid_format::check),
    (Rule::ExposeProtoCasing, expose_proto_casing::check),
    (
        Rule::MultipleInstructionsDisallowed,
        multiple_instructions_disallowed::check,
    ),
];

/// Run every rule `# check=skip=` leaves on, then warn about unknown names in `skip`.
pub(crate) fn run(df: &Dockerfile, extras: &Extras) -> Vec<ParseDiagnostic> {
    let cx = Context::new(df, extras);
    let check = &df.directives.check;
    let mut out = Vec::new();
    for &(rule, pass) in PASSES {
        if check.skips(rule) {
            continue;
        }
        let from = out.len();
        pass(&cx, &mut out);
        debug_assert!(
            out[from..].iter().all(|d| d.rule == Some(rule)),
            "the {rule} pass reported another rule"
        );
    }
    // Report unknown rule names in `check=skip=` once.
    for s in &check.unknown_skips {
        let help = suggest(s, Rule::NAMES).map(|h| format!("did you mean {h}?"));
        let mut d = diagnostics::invalid_check_directive(
            check.span.unwrap_or_default(),
            &format!("unknown rule `{s}` in `skip`"),
        );
        d.severity = diagnostics::Severity::Warning;
        d.help = help.or(d.help);
        out.push(d);
    }
    out
}

/// Whether `s` has no lowercase letter (keywords are short: one plain pass over the bytes).
fn is_upper(s: &str) -> bool {
    for b in s.bytes() {
        if !b.is_ascii() {
            return s.chars().all(|c| !c.is_lowercase());
        }
        if b.is_ascii_lowercase() {
            return false;
        }
    }
    true
}

/// Whether `s` has no uppercase letter.
fn is_lower(s: &str) -> bool {
    for b in s.bytes() {
        if !b.is_ascii() {
            return s.chars().all(|c| !c.is_uppercase());
        }
        if b.is_ascii_uppercase() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_ignoring_case() {
        for &rule in Rule::ALL {
            assert_eq!(Rule::from_name(rule.as_str()), Some(rule));
            assert_eq!(rule.as_str().to_lowercase().parse::<Rule>(), Ok(rule));
            assert_eq!(rule.to_string(), rule.as_str());
        }
        assert_eq!("Nope".parse::<Rule>(), Err(UnknownRule("Nope".to_string())));
        assert_eq!(Rule::from_name("all"), None);
    }

    /// The docs page is the name in kebab case, `JSON` kept as one word.
    #[test]
    fn docs_urls_are_the_kebab_case_names() {
        for &rule in Rule::ALL {
            let Some(url) = rule.url() else {
                assert_eq!(rule, Rule::UnknownStageReference);
                continue;
            };
            let mut slug = String::new();
            for (i, c) in rule.as_str().replace("JSON", "Json").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    slug.push('-');
                }
                slug.push(c.to_ascii_lowercase());
            }
            assert_eq!(
                url,
                format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
            );
        }
    }

    /// Every rule but the parser's own has exactly one pass.
    #[test]
    fn every_rule_has_one_pass() {
        for &rule in Rule::ALL {
            let passes = PASSES.iter().filter(|(r, _)| *r == rule).count();
            let expected = usize::from(rule != Rule::UnknownStageReference);
            assert_eq!(passes, expected, "{rule}");
        }
    }

    #[test]
    fn rule_sets() {
        let mut set = RuleSet::default();
        assert!(set.is_empty());
        set.insert(Rule::UndefinedVar);
        assert!(set.contains(Rule::UndefinedVar));
        assert!(!set.contains(Rule::StageNameCasing));
        assert!(Rule::ALL.iter().all(|&r| RuleSet::all().contains(r)));
    }
}

//! Why a step missed the cache: compare its preimage with the closest previous one for the same
//! step site and name every difference (cargo's "dirty reason", for Dockerfiles).
//!
//! [`MissReason`] is typed and serialisable, with old and new values: `--no-cache`, never built,
//! layer pruned, parent changed (named), base image now resolves elsewhere, FROM names another
//! base, platform, instruction text, each variable's value or use, each named input, each file set
//! (with the changed files: content, mode `0664→0644`, owner, type, symlink target, added,
//! removed), and a source stage that changed (with what changed in it).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cache_key::{ParentNote, Preimage};

/// How many file names a one-line summary lists before it says "and N more".
pub const FILES_SHOWN: usize = 5;

/// One reason a step missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// `--no-cache` was given.
    NoCache,
    /// `--no-cache-filter` names the step's stage.
    NoCacheFilter {
        stage: String,
    },
    /// The cache has no earlier build of this step to compare with.
    NeverBuilt,
    /// The key matched an entry whose layer has since been pruned.
    LayerMissing {
        key: String,
    },
    /// The step it builds on changed.
    ParentChanged {
        parent: String,
        line: Option<usize>,
    },
    /// The base image now resolves to other content.
    BaseImageChanged {
        reference: String,
        old: String,
        new: String,
    },
    /// `FROM` now names a different base (another image, scratch, or a stage).
    BaseChanged {
        old: String,
        new: String,
    },
    PlatformChanged {
        old: String,
        new: String,
    },
    InstructionChanged {
        old: String,
        new: String,
    },
    VarChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The step started (`used: true`) or stopped using a variable.
    VarUsage {
        name: String,
        used: bool,
        value: Option<String>,
    },
    InputChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    FilesChanged {
        set: String,
        diff: FileDiff,
    },
    /// A stage the step reads (`COPY --from`, a mount's `from`) changed (or, in a dry run,
    /// would be rebuilt): what changed in it.
    SourceStageChanged {
        stage: String,
        /// The files that changed in the stage's own inputs, over its steps that missed.
        #[serde(skip_serializing_if = "Option::is_none")]
        files: Option<FileDiff>,
        /// Its first step that missed (text, line), when no file change explains it.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<(String, usize)>,
    },
}

/// The reason for a step whose source stage `stage` changed, from the stage's steps that
/// missed (text, line, reasons), in order: the file changes they name (a nested source stage's
/// included), merged, or else the first of them.
pub fn source_stage_changed(stage: &str, missed: &[(&str, usize, &[MissReason])]) -> MissReason {
    let mut files: Option<FileDiff> = None;
    for (_, _, reasons) in missed {
        for reason in *reasons {
            let diff = match reason {
                MissReason::FilesChanged { diff, .. } => diff,
                MissReason::SourceStageChanged {
                    files: Some(diff), ..
                } => diff,
                _ => continue,
            };
            let all = files.get_or_insert_with(FileDiff::default);
            for path in &diff.added {
                if !all.added.contains(path) {
                    all.added.push(path.clone());
                }
            }
            for path in &diff.removed {
                if !all.removed.contains(path) {
                    all.removed.push(path.clone());
                }
            }
            for change in &diff.changed {
                if !all.changed.contains(change) {
                    all.changed.push(change.clone());
                }
            }
            all.unknown |= diff.unknown;
        }
    }
    // A known file list wins over "no longer stored" in another step.
    if let Some(diff) = &mut files
        && diff.total() > 0
    {
        diff.unknown = false;
    }
    MissReason::SourceStageChanged {
        stage: stage.to_string(),
        step: match files {
            Some(_) => None,
            None => missed
                .first()
                .map(|(text, line, _)| (text.to_string(), *line)),
        },
        files,
    }
}

/// Differences between two file sets, each changed path with what changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Path and the changed aspects (`content`, `mode 0664→0644`, `owner 0:0→1000:1000`, ...).
    pub changed: Vec<(String, Vec<String>)>,
    /// True when the previous records were not available (only digests differ).
    pub unknown: bool,
}

impl FileDiff {
    pub fn total(&self) -> usize {
        self.added.len() + self.removed.len() + self.changed.len()
    }
}

/// Compare a step's preimage with a previous one for the same step. `files_diff` computes the
/// per-file differences for a named file set, given the old and new digests; it returns `None`
/// when the records are no longer stored.
pub fn compare(
    now: &Preimage,
    before: &Preimage,
    files_diff: &mut dyn FnMut(&str, &str, &str) -> Option<FileDiff>,
) -> Vec<MissReason> {
    let mut reasons = Vec::new();
    let platform_changed = now.platform != before.platform;
    if platform_changed {
        reasons.push(MissReason::PlatformChanged {
            old: before.platform.clone(),
            new: now.platform.clone(),
        });
    }
    // The same base image for another platform is another image: the platform says why.
    let base_for_platform = platform_changed
        && matches!(
            (&now.note.parent, &before.note.parent),
            (ParentNote::Image { reference: a, .. }, ParentNote::Image { reference: b, .. })
                if a == b
        );
    if now.parent != before.parent && !base_for_platform {
        reasons.push(match (&now.note.parent, &before.note.parent) {
            (
                ParentNote::Image {
                    reference,
                    manifest_digest: new,
                },
                ParentNote::Image {
                    reference: old_ref,
                    manifest_digest: old,
                },
            ) if reference == old_ref && new != old => MissReason::BaseImageChanged {
                reference: reference.clone(),
                old: old.clone(),
                new: new.clone(),
            },
            (ParentNote::Step { display, line }, ParentNote::Step { .. }) => {
                MissReason::ParentChanged {
                    parent: display.clone(),
                    line: Some(*line),
                }
            }
            (new, old) if std::mem::discriminant(new) != std::mem::discriminant(old) => {
                MissReason::BaseChanged {
                    old: describe_parent(old),
                    new: describe_parent(new),
                }
            }
            (new, _) => MissReason::ParentChanged {
                parent: describe_parent(new),
                line: None,
            },
        });
    }
    if now.instruction != before.instruction {
        reasons.push(MissReason::InstructionChanged {
            old: before.instruction.clone(),
            new: now.instruction.clone(),
        });
    }
    for name in union(now.vars.keys(), before.vars.keys()) {
        match (before.vars.get(name), now.vars.get(name)) {
            (Some(old), Some(new)) if old != new => reasons.push(MissReason::VarChanged {
                name: name.clone(),
                old: old.clone(),
                new: new.clone(),
            }),
            (None, Some(value)) | (Some(value), None) => reasons.push(MissReason::VarUsage {
                name: name.clone(),
                used: now.vars.contains_key(name),
                value: value.clone(),
            }),
            _ => {}
        }
    }
    for name in union(now.inputs.keys(), before.inputs.keys()) {
        let (new, old) = (now.inputs.get(name), before.inputs.get(name));
        if new != old {
            reasons.push(MissReason::InputChanged {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    for name in union(now.files.keys(), before.files.keys()) {
        let (new, old) = (now.files.get(name), before.files.get(name));
        if new.map(|f| &f.digest) == old.map(|f| &f.digest) {
            continue;
        }
        let diff = match (old, new) {
            (Some(old), Some(new)) => {
                files_diff(name, &old.digest, &new.digest).unwrap_or(FileDiff {
                    unknown: true,
                    ..FileDiff::default()
                })
            }
            _ => FileDiff {
                unknown: true,
                ..FileDiff::default()
            },
        };
        reasons.push(MissReason::FilesChanged {
            set: name.clone(),
            diff,
        });
    }
    reasons
}

fn describe_parent(parent: &ParentNote) -> String {
    match parent {
        ParentNote::Scratch => "scratch".into(),
        ParentNote::Image {
            reference,
            manifest_digest,
        } => format!("{reference} ({})", short_digest(manifest_digest)),
        ParentNote::Step { display, .. } => display.clone(),
    }
}

fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> std::collections::BTreeSet<&'a String> {
    a.chain(b).collect()
}

/// `sha256:0123456789ab` (12 hex digits).
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..12.min(hex.len())]),
        None => digest[..12.min(digest.len())].to_string(),
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(unset)")
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache => write!(f, "--no-cache was given"),
            MissReason::NoCacheFilter { stage } => {
                write!(f, "--no-cache-filter names the stage `{stage}`")
            }
            MissReason::NeverBuilt => write!(f, "no earlier build of this step is in the cache"),
            MissReason::LayerMissing { key } => write!(
                f,
                "its cache entry {} lost its layer (pruned, or never fetched from a registry cache)",
                &key[..12.min(key.len())]
            ),
            MissReason::ParentChanged { parent, line } => match line {
                Some(line) => write!(f, "its parent changed (`{parent}`, line {line})"),
                None => write!(f, "its parent changed (`{parent}`)"),
            },
            MissReason::BaseImageChanged {
                reference,
                old,
                new,
            } => write!(
                f,
                "base image {reference} now resolves to {}, was {}",
                short_digest(new),
                short_digest(old)
            ),
            MissReason::BaseChanged { old, new } => {
                write!(f, "the base changed from {old} to {new}")
            }
            MissReason::PlatformChanged { old, new } => {
                write!(f, "the platform changed {old} → {new}")
            }
            MissReason::InstructionChanged { old, new } => {
                write!(f, "the instruction changed: `{old}` → `{new}`")
            }
            MissReason::VarChanged { name, old, new } => {
                write!(f, "{name} changed {} → {}", opt(old), opt(new))
            }
            MissReason::VarUsage { name, used, value } => {
                let verb = if *used { "now uses" } else { "no longer uses" };
                match value {
                    Some(v) => write!(f, "it {verb} {name}={v}"),
                    None => write!(f, "it {verb} {name} (unset)"),
                }
            }
            MissReason::InputChanged { name, old, new } => {
                write!(f, "{name} changed {} → {}", opt(old), opt(new))
            }
            MissReason::FilesChanged { set, diff } => {
                let what = if set == "context" {
                    String::new()
                } else {
                    format!(" in {set}")
                };
                write_files(f, diff, &what)
            }
            MissReason::SourceStageChanged { stage, files, step } => match (files, step) {
                (Some(diff), _) => {
                    write!(f, "stage `{stage}` changed: ")?;
                    write_files(f, diff, "")
                }
                (None, Some((text, line))) => {
                    write!(f, "stage `{stage}` changed: `{text}` (line {line}) missed")
                }
                (None, None) => write!(f, "stage `{stage}` has other content than last time"),
            },
        }
    }
}

/// `2 files changed{what} — src/a (content), src/b (added)`, at most [`FILES_SHOWN`] names.
fn write_files(f: &mut fmt::Formatter<'_>, diff: &FileDiff, what: &str) -> fmt::Result {
    if diff.unknown {
        return write!(
            f,
            "files changed{what} (earlier file list no longer stored)"
        );
    }
    let total = diff.total();
    let noun = if total == 1 { "file" } else { "files" };
    write!(f, "{total} {noun} changed{what} — ")?;
    let mut items: Vec<String> = Vec::new();
    for (path, aspects) in &diff.changed {
        items.push(format!("{path} ({})", aspects.join(", ")));
    }
    for path in &diff.added {
        items.push(format!("{path} (added)"));
    }
    for path in &diff.removed {
        items.push(format!("{path} (removed)"));
    }
    let shown: Vec<&str> = items.iter().take(FILES_SHOWN).map(String::as_str).collect();
    write!(f, "{}", shown.join(", "))?;
    if items.len() > FILES_SHOWN {
        write!(f, ", and {} more", items.len() - FILES_SHOWN)?;
    }
    Ok(())
}

/// The explanation for one step of a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepExplanation {
    /// The target platform, in a multi-platform build (each platform is explained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub stage: String,
    pub step: String,
    pub line: usize,
    #[serde(skip)]
    pub span: std::ops::Range<usize>,
    pub key: String,
    pub cached: bool,
    pub reasons: Vec<MissReason>,
}

impl StepExplanation {
    /// `COPY . /app (Dockerfile:7) missed: 3 files changed — ...`
    pub fn summary(&self, file: &str) -> String {
        let platform = self
            .platform
            .as_ref()
            .map(|p| format!("[{p}] "))
            .unwrap_or_default();
        if self.cached {
            return format!("{platform}{} ({file}:{}) CACHED", self.step, self.line);
        }
        let reasons: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        format!(
            "{platform}{} ({file}:{}) missed: {}",
            self.step,
            self.line,
            reasons.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::{FilesInput, Note};

    fn pre(chain: &str, parent: ParentNote) -> Preimage {
        let mut p = Preimage::new("linux/amd64".into(), chain.into(), "RUN make".into());
        p.note = Note {
            display: "RUN make".into(),
            line: 9,
            stage: "stage-0".into(),
            parent,
        };
        p
    }

    fn copy_parent() -> ParentNote {
        ParentNote::Step {
            display: "COPY . /app".into(),
            line: 7,
        }
    }

    fn no_files(_: &str, _: &str, _: &str) -> Option<FileDiff> {
        None
    }

    /// A changed parent is reported with the parent's text and line.
    #[test]
    fn parent_change() {
        let a = pre("a", copy_parent());
        let b = pre("b", copy_parent());
        let reasons = compare(&b, &a, &mut no_files);
        assert_eq!(
            reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["its parent changed (`COPY . /app`, line 7)"]
        );
    }

    /// A retagged base image that resolves elsewhere is named with both digests.
    #[test]
    fn base_image_change() {
        let img = |d: &str| {
            pre(
                d,
                ParentNote::Image {
                    reference: "nginx:latest".into(),
                    manifest_digest: format!("sha256:{d}"),
                },
            )
        };
        let reasons = compare(
            &img("bbbbbbbbbbbbbbbbbbbb"),
            &img("aaaaaaaaaaaaaaaaaaaa"),
            &mut no_files,
        );
        assert_eq!(
            reasons[0].to_string(),
            "base image nginx:latest now resolves to sha256:bbbbbbbbbbbb, was sha256:aaaaaaaaaaaa"
        );
    }

    /// Variables and inputs report old → new, unset shown as such.
    #[test]
    fn var_and_input_changes() {
        let mut a = pre("", ParentNote::Scratch);
        let mut b = pre("", ParentNote::Scratch);
        a.vars.insert("VERSION".into(), Some("1.2".into()));
        b.vars.insert("VERSION".into(), Some("1.3".into()));
        b.vars.insert("NEW".into(), None);
        a.inputs.insert("user".into(), "root".into());
        let reasons: Vec<String> = compare(&b, &a, &mut no_files)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            reasons,
            vec![
                "it now uses NEW (unset)",
                "VERSION changed 1.2 → 1.3",
                "user changed root → (unset)"
            ]
        );
    }

    /// A changed source stage is explained by the files its missed steps name (merged, also
    /// from a stage it reads itself), else by its first missed step.
    #[test]
    fn source_stage_reasons_name_files_or_the_first_missed_step() {
        let files = |changed: &[&str], removed: &[&str]| MissReason::FilesChanged {
            set: "context".into(),
            diff: FileDiff {
                changed: changed
                    .iter()
                    .map(|p| (p.to_string(), vec!["content".to_string()]))
                    .collect(),
                removed: removed.iter().map(|p| p.to_string()).collect(),
                ..FileDiff::default()
            },
        };
        let parent = MissReason::ParentChanged {
            parent: "COPY src/ /src/".into(),
            line: Some(2),
        };
        let nested = source_stage_changed("deps", &[("COPY lock /l", 2, &[files(&["lock"], &[])])]);
        let first = [files(&["src/b.txt"], &["src/a.txt"])];
        let second = [parent.clone(), nested];
        let reason = source_stage_changed(
            "builder",
            &[("COPY src/ /src/", 2, &first), ("RUN make", 3, &second)],
        );
        assert_eq!(
            reason.to_string(),
            "stage `builder` changed: 3 files changed — src/b.txt (content), lock (content), src/a.txt (removed)"
        );
        let only_parent = [parent];
        let changed = [MissReason::InstructionChanged {
            old: "RUN a".into(),
            new: "RUN b".into(),
        }];
        let reason = source_stage_changed(
            "builder",
            &[("RUN b", 3, &changed), ("RUN c", 4, &only_parent)],
        );
        assert_eq!(
            reason.to_string(),
            "stage `builder` changed: `RUN b` (line 3) missed"
        );
        assert_eq!(
            source_stage_changed("builder", &[]).to_string(),
            "stage `builder` has other content than last time"
        );
    }

    /// File lists are summarised with a limit and a count of the rest.
    #[test]
    fn files_summary_is_limited() {
        let mut a = pre("", ParentNote::Scratch);
        let mut b = pre("", ParentNote::Scratch);
        let set = |d: &str| FilesInput {
            digest: d.into(),
            count: 1,
            bytes: 1,
        };
        a.files.insert("context".into(), set("1"));
        b.files.insert("context".into(), set("2"));
        let mut diff_fn = |_: &str, _: &str, _: &str| {
            Some(FileDiff {
                added: (0..6).map(|i| format!("f{i}")).collect(),
                removed: vec![],
                changed: vec![("run.sh".into(), vec!["mode 0664→0644".into()])],
                unknown: false,
            })
        };
        let text = compare(&b, &a, &mut diff_fn)[0].to_string();
        assert_eq!(
            text,
            "7 files changed — run.sh (mode 0664→0644), f0 (added), f1 (added), f2 (added), f3 (added), and 2 more"
        );
    }
}

//! The typed syntax tree: a [`Dockerfile`] is its directives plus a list of [`Instruction`]s,
//! one struct per instruction. Arguments stay unexpanded (as written); flags whose values are
//! static are parsed into typed values, with the raw text kept beside them.

use std::time::Duration;

use serde::Serialize;

use crate::lint::{Rule, RuleSet};
use crate::mount::Mount;
use crate::node::Node;
use crate::span::{Span, Word};

/// Parser directives at the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Directives {
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=...`, if given.
    pub syntax: Option<Word>,
    /// `# check=skip=...;error=...`.
    pub check: CheckSettings,
}

/// What `# check=` asks for. The rule names are read once, when the directive is parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckSettings {
    /// Rule names to skip, as written (any case); `all` skips every rule.
    pub skip: Vec<String>,
    /// The rules [`skip`](Self::skip) switches off (every rule for `all`).
    #[serde(skip)]
    pub skipped: RuleSet,
    /// The names in `skip` that are neither `all` nor a rule, in order (the linter warns
    /// about them).
    #[serde(skip)]
    pub unknown_skips: Vec<String>,
    /// Treat warnings as errors.
    pub error: bool,
    pub span: Option<Span>,
}

impl CheckSettings {
    /// Add one name of `skip=`: `all`, a rule (ignoring ASCII case) or an unknown name.
    pub(crate) fn add_skip(&mut self, name: &str) {
        if name.eq_ignore_ascii_case("all") {
            self.skipped = RuleSet::all();
        } else if let Some(rule) = Rule::from_name(name) {
            self.skipped.insert(rule);
        } else {
            self.unknown_skips.push(name.to_string());
        }
        self.skip.push(name.to_string());
    }

    /// Whether `rule` is switched off.
    pub fn skips(&self, rule: Rule) -> bool {
        self.skipped.contains(rule)
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
    /// Raw nodes that are syntactically valid but were refused as instructions (unknown
    /// instruction, bad flag, ...): kept so the AST dump shows what BuildKit's parser sees.
    #[serde(skip)]
    pub rejected: Vec<Node>,
}

/// One build stage: its `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// 0-based position among the stages.
    pub index: usize,
    pub from: &'a From,
    /// The instructions after `FROM`, in order.
    pub instructions: &'a [Instruction],
}

impl<'a> Stage<'a> {
    /// The stage name from `AS name`, lowercased as BuildKit compares it.
    pub fn name(&self) -> Option<String> {
        self.from
            .stage_name
            .as_ref()
            .map(|n| n.value.to_ascii_lowercase())
    }

    /// [`Stage::name`], borrowed when it is lowercase already.
    pub(crate) fn name_lowercase(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.from
            .stage_name
            .as_ref()
            .map(|n| ascii_lowercase(&n.value))
    }
}

/// `s` with ASCII letters lowercased (as stage names compare), borrowed when it has none.
pub(crate) fn ascii_lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        s.to_ascii_lowercase().into()
    } else {
        s.into()
    }
}

/// Global ARGs (before the first FROM) and the stages.
#[derive(Debug, Clone)]
pub struct Stages<'a> {
    pub global_args: Vec<&'a Arg>,
    pub stages: Vec<Stage<'a>>,
}

impl Dockerfile {
    /// Group the instructions into global ARGs and stages.
    pub fn stages(&self) -> Stages<'_> {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage<'_>> = Vec::new();
        let mut current: Option<(usize, &From)> = None;
        for (i, ins) in self.instructions.iter().enumerate() {
            match ins {
                Instruction::From(f) => {
                    if let Some((start, from)) = current.take() {
                        stages.push(Stage {
                            index: stages.len(),
                            from,
                            instructions: &self.instructions[start..i],
                        });
                    }
                    current = Some((i + 1, f.as_ref()));
                }
                Instruction::Arg(a) if current.is_none() => global_args.push(a.as_ref()),
                _ => {}
            }
        }
        if let Some((start, from)) = current {
            stages.push(Stage {
                index: stages.len(),
                from,
                instructions: &self.instructions[start..],
            });
        }
        Stages {
            global_args,
            stages,
        }
    }

    /// BuildKit's AST dump of the whole file (one line per instruction, newline-terminated).
    pub fn dump(&self) -> String {
        let mut nodes: Vec<&Node> = self
            .instructions
            .iter()
            .map(|i| i.meta().node.as_ref())
            .chain(self.rejected.iter())
            .collect();
        nodes.sort_by_key(|n| n.span.start);
        let mut out = String::new();
        for n in nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Facts every instruction has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    /// The keyword as written (`RUN`, `run`, ...).
    pub keyword: Word,
    /// The whole instruction, from the keyword to the end of its last line (heredoc bodies
    /// included).
    pub span: Span,
    /// 1-based first and last line.
    pub start_line: usize,
    pub end_line: usize,
    /// The raw BuildKit-style node, for the AST dump.
    #[serde(skip)]
    pub node: Box<Node>,
}

/// A flag value: the raw text as written, and the typed value when it is static (no `$`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag<T> {
    /// The value as written (quotes removed as BuildKit does for flags).
    pub raw: String,
    /// The typed value, or `None` when the value contains variables the solver must expand
    /// first.
    pub value: Option<T>,
    /// The whole `--name=value` text.
    pub span: Span,
}

/// Shell form (one string, continuations joined) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CommandForm {
    Shell(Word),
    Exec(Vec<Word>),
}

impl CommandForm {
    pub fn is_exec(&self) -> bool {
        matches!(self, CommandForm::Exec(_))
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter (quotes removed); for COPY/ADD also the file name.
    pub name: String,
    /// The body exactly as written, each line with its newline; tabs not yet stripped.
    pub body: String,
    /// Whether variables in the body are expanded (false for `<<"EOF"` / `<<'EOF'`).
    pub expand: bool,
    /// `<<-EOF`: leading tabs are stripped from each line.
    pub strip_tabs: bool,
    /// The file descriptor prefix (`3<<EOF`), if any.
    pub fd: Option<u32>,
    /// The body lines plus the terminator line.
    pub span: Span,
}

impl Heredoc {
    /// The body with leading tabs removed when `strip_tabs` is set.
    pub fn content(&self) -> std::borrow::Cow<'_, str> {
        if !self.strip_tabs {
            return self.body.as_str().into();
        }
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out.into()
    }
}

/// `KEY=value` (or legacy `KEY value`) in ENV and LABEL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    pub key: Word,
    /// The value as written: quotes and escapes intact, unexpanded.
    pub value: Word,
    /// The legacy whitespace-separated form (`ENV KEY value`).
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct From {
    pub meta: Meta,
    pub image: Word,
    /// The `AS` keyword as written (for the casing lint).
    pub as_keyword: Option<Word>,
    pub stage_name: Option<Word>,
    pub platform: Option<Flag<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub meta: Meta,
    pub command: CommandForm,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<Flag<NetworkMode>>,
    pub security: Option<Flag<SecurityMode>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cmd {
    pub meta: Meta,
    pub command: CommandForm,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entrypoint {
    pub meta: Meta,
    pub command: CommandForm,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub meta: Meta,
    pub labels: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Maintainer {
    pub meta: Meta,
    pub name: Word,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expose {
    pub meta: Meta,
    pub ports: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Env {
    pub meta: Meta,
    pub vars: Vec<KeyValue>,
}

/// `--chmod`: octal or symbolic (`u=rwX,go=rX`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Chmod {
    Octal(u32),
    Symbolic(String),
}

impl std::fmt::Display for Chmod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:04o}"),
            Chmod::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Flags COPY and ADD share.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CopyFlags {
    pub chown: Option<Flag<String>>,
    pub chmod: Option<Flag<Chmod>>,
    pub link: Option<Flag<bool>>,
    pub exclude: Vec<Flag<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Add {
    pub meta: Meta,
    /// Source paths and URLs (heredoc sources are in `heredocs`).
    pub sources: Vec<Word>,
    pub dest: Word,
    pub heredocs: Vec<Heredoc>,
    /// JSON-array form.
    pub json: bool,
    pub flags: CopyFlags,
    pub keep_git_dir: Option<Flag<bool>>,
    pub checksum: Option<Flag<String>>,
    pub unpack: Option<Flag<bool>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    pub meta: Meta,
    pub sources: Vec<Word>,
    pub dest: Word,
    pub heredocs: Vec<Heredoc>,
    pub json: bool,
    pub flags: CopyFlags,
    pub from: Option<Flag<String>>,
    pub parents: Option<Flag<bool>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    pub meta: Meta,
    pub paths: Vec<Word>,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub meta: Meta,
    pub user: Word,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workdir {
    pub meta: Meta,
    pub path: Word,
}

/// One `name[=default]` of an ARG line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgDef {
    pub name: Word,
    pub default: Option<Word>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arg {
    pub meta: Meta,
    pub args: Vec<ArgDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Onbuild {
    pub meta: Meta,
    /// The trigger, parsed like a top-level instruction.
    pub trigger: Box<Instruction>,
    /// The trigger's text as stored in the image config.
    pub expression: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stopsignal {
    pub meta: Meta,
    pub signal: Word,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum HealthcheckKind {
    /// `HEALTHCHECK NONE`: disable an inherited check.
    None,
    /// `HEALTHCHECK CMD ...`.
    Cmd(CommandForm),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthcheck {
    pub meta: Meta,
    pub kind: HealthcheckKind,
    pub interval: Option<Flag<Duration>>,
    pub timeout: Option<Flag<Duration>>,
    pub start_period: Option<Flag<Duration>>,
    pub start_interval: Option<Flag<Duration>>,
    pub retries: Option<Flag<u32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shell {
    pub meta: Meta,
    pub shell: Vec<Word>,
}

/// One Dockerfile instruction (each payload boxed, so a `Vec<Instruction>` stays small).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    From(Box<From>),
    Run(Box<Run>),
    Cmd(Box<Cmd>),
    Label(Box<Label>),
    Maintainer(Box<Maintainer>),
    Expose(Box<Expose>),
    Env(Box<Env>),
    Add(Box<Add>),
    Copy(Box<Copy>),
    Entrypoint(Box<Entrypoint>),
    Volume(Box<Volume>),
    User(Box<User>),
    Workdir(Box<Workdir>),
    Arg(Box<Arg>),
    Onbuild(Box<Onbuild>),
    Stopsignal(Box<Stopsignal>),
    Healthcheck(Box<Healthcheck>),
    Shell(Box<Shell>),
}

impl Instruction {
    pub fn meta(&self) -> &Meta {
        match self {
            Instruction::From(i) => &i.meta,
            Instruction::Run(i) => &i.meta,
            Instruction::Cmd(i) => &i.meta,
            Instruction::Label(i) => &i.meta,
            Instruction::Maintainer(i) => &i.meta,
            Instruction::Expose(i) => &i.meta,
            Instruction::Env(i) => &i.meta,
            Instruction::Add(i) => &i.meta,
            Instruction::Copy(i) => &i.meta,
            Instruction::Entrypoint(i) => &i.meta,
            Instruction::Volume(i) => &i.meta,
            Instruction::User(i) => &i.meta,
            Instruction::Workdir(i) => &i.meta,
            Instruction::Arg(i) => &i.meta,
            Instruction::Onbuild(i) => &i.meta,
            Instruction::Stopsignal(i) => &i.meta,
            Instruction::Healthcheck(i) => &i.meta,
            Instruction::Shell(i) => &i.meta,
        }
    }

    /// The whole instruction's span.
    pub fn span(&self) -> Span {
        self.meta().span
    }

    /// The canonical upper-case name (`RUN`, `COPY`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }

    /// Whether the builder expands `$VAR` in this instruction's arguments (BuildKit's list:
    /// ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, plus ARG defaults, and
    /// ONBUILD when its trigger is one of these). RUN, CMD, ENTRYPOINT, HEALTHCHECK and SHELL
    /// leave `$` to the shell at run time; MAINTAINER is never expanded.
    pub fn expands_variables(&self) -> bool {
        match self {
            Instruction::Add(_)
            | Instruction::Copy(_)
            | Instruction::Env(_)
            | Instruction::Expose(_)
            | Instruction::From(_)
            | Instruction::Label(_)
            | Instruction::Stopsignal(_)
            | Instruction::User(_)
            | Instruction::Volume(_)
            | Instruction::Workdir(_)
            | Instruction::Arg(_) => true,
            Instruction::Onbuild(o) => o.trigger.expands_variables(),
            Instruction::Run(_)
            | Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Healthcheck(_)
            | Instruction::Shell(_)
            | Instruction::Maintainer(_) => false,
        }
    }

    /// BuildKit's AST dump line for this instruction (no trailing newline).
    pub fn dump(&self) -> String {
        format!("({})", self.meta().node.dump())
    }
}

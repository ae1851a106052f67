//! From raw nodes to typed instructions (BuildKit's `instructions/parse.go` stage): argument
//! counts, flags per instruction, typed flag values, heredoc attachment, and a syntax check
//! of every word the builder will later expand.

use crate::ast::*;
use crate::diagnostics::{self, ParseDiagnostic};
use crate::duration;
use crate::flags::{self, Kind};
use crate::heredoc;
use crate::mount;
use crate::node::Node;
use crate::shell;
use crate::span::{Span, Word};

/// Instruction keywords, for "did you mean" help.
pub(crate) const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

type R<T> = Result<T, ParseDiagnostic>;

/// Build the typed instruction for `node`.
pub(crate) fn build(node: Node, lines: (usize, usize), span: Span, escape: char) -> R<Instruction> {
    let meta = Meta {
        keyword: node.keyword.clone(),
        span,
        start_line: lines.0,
        end_line: lines.1,
        node: Box::new(node),
    };
    let kind = meta.node.kind;
    let b = Builder { meta, escape };
    match kind {
        "from" => b.from(),
        "run" => b.run(),
        "cmd" => b.cmd(),
        "entrypoint" => b.entrypoint(),
        "label" => b.label(),
        "maintainer" => b.maintainer(),
        "expose" => b.expose(),
        "env" => b.env(),
        "add" => b.add(),
        "copy" => b.copy(),
        "volume" => b.volume(),
        "user" => b.user(),
        "workdir" => b.workdir(),
        "arg" => b.arg(),
        "onbuild" => b.onbuild(),
        "stopsignal" => b.stopsignal(),
        "healthcheck" => b.healthcheck(),
        "shell" => b.shell(),
        _ => Err(diagnostics::unknown_instruction(&b.meta.keyword, KEYWORDS)),
    }
}

struct Builder {
    meta: Meta,
    escape: char,
}

impl Builder {
    fn args(&self) -> &[Word] {
        &self.meta.node.args
    }

    fn name(&self) -> String {
        self.meta.node.command().to_uppercase()
    }

    fn flags(&self, spec: &[(&'static str, Kind)]) -> R<flags::Flags> {
        flags::parse(&self.meta.node.flags, &self.name(), spec)
    }

    fn no_flags(&self) -> R<()> {
        self.flags(&[]).map(|_| ())
    }

    /// Where a missing argument would go.
    fn args_span(&self) -> Span {
        let s = self.meta.node.args_span;
        if s.is_empty() {
            Span::at(self.meta.keyword.span.end)
        } else {
            s
        }
    }

    fn check(&self, word: &Word) -> R<()> {
        shell::check_syntax(&word.value, self.escape)
            .map_err(|e| diagnostics::expansion_syntax(word.span, &word.value, &e.message))
    }

    fn at_least_one(&self) -> R<()> {
        if self.args().is_empty() {
            return Err(diagnostics::at_least_one_argument(
                self.args_span(),
                &self.name(),
            ));
        }
        Ok(())
    }

    fn exactly_one(&self) -> R<Word> {
        match self.args() {
            [one] => Ok(one.clone()),
            [] => Err(diagnostics::exactly_one_argument(
                self.args_span(),
                &self.name(),
            )),
            _ => Err(diagnostics::exactly_one_argument(
                self.args_span(),
                &self.name(),
            )),
        }
    }

    fn command_form(&self) -> CommandForm {
        if self.meta.node.json {
            CommandForm::Exec(self.args().to_vec())
        } else {
            CommandForm::Shell(
                self.args()
                    .first()
                    .cloned()
                    .unwrap_or_else(|| Word::new("", self.args_span())),
            )
        }
    }

    fn from(self) -> R<Instruction> {
        let args = self.args();
        let (image, as_keyword, stage_name) = match args {
            [image] => (image.clone(), None, None),
            [image, kw, name] if kw.value.eq_ignore_ascii_case("as") => {
                let lower = name.value.to_ascii_lowercase();
                let mut chars = lower.chars();
                let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                    });
                if !ok {
                    return Err(diagnostics::invalid_stage_name(name));
                }
                (image.clone(), Some(kw.clone()), Some(name.clone()))
            }
            _ => return Err(diagnostics::from_arguments(self.args_span())),
        };
        let flags = self.flags(&[("platform", Kind::Str)])?;
        self.check(&image)?;
        Ok(Instruction::From(Box::new(From {
            image,
            as_keyword,
            stage_name,
            platform: flags.string("platform"),
            meta: self.meta,
        })))
    }

    fn run(self) -> R<Instruction> {
        let flags = self.flags(&[
            ("mount", Kind::Strings),
            ("network", Kind::Str),
            ("security", Kind::Str),
        ])?;
        self.at_least_one()?;
        let mut mounts = Vec::new();
        for f in flags.strings("mount") {
            // The value starts after `--mount=`.
            let value_start = f.span.end.saturating_sub(f.raw.len());
            let mut m = mount::parse_mount(&f.raw).map_err(|e| {
                let span = Span::new(
                    (value_start + e.start).min(f.span.end),
                    (value_start + e.end).min(f.span.end),
                );
                diagnostics::invalid_mount(span, &e.message, e.help.clone())
            })?;
            m.span = f.span;
            mounts.push(m);
        }
        let network = flags.typed("network", |v, span| match v {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(diagnostics::flag_choice(
                span,
                "network",
                v,
                &["default", "none", "host"],
            )),
        })?;
        let security = flags.typed("security", |v, span| match v {
            "sandbox" => Ok(SecurityMode::Sandbox),
            "insecure" => Ok(SecurityMode::Insecure),
            _ => Err(diagnostics::flag_choice(
                span,
                "security",
                v,
                &["sandbox", "insecure"],
            )),
        })?;
        Ok(Instruction::Run(Box::new(Run {
            command: self.command_form(),
            heredocs: self.meta.node.heredocs.clone(),
            mounts,
            network,
            security,
            meta: self.meta,
        })))
    }

    fn cmd(self) -> R<Instruction> {
        self.no_flags()?;
        Ok(Instruction::Cmd(Box::new(Cmd {
            command: self.command_form(),
            meta: self.meta,
        })))
    }

    fn entrypoint(self) -> R<Instruction> {
        self.no_flags()?;
        Ok(Instruction::Entrypoint(Box::new(Entrypoint {
            command: self.command_form(),
            meta: self.meta,
        })))
    }

    fn key_values(&self) -> R<Vec<KeyValue>> {
        self.no_flags()?;
        self.at_least_one()?;
        let mut out = Vec::new();
        for kv in self.args().chunks(3) {
            let [key, value, sep] = kv else {
                return Err(diagnostics::at_least_one_argument(
                    self.args_span(),
                    &self.name(),
                ));
            };
            if key.value.is_empty() {
                return Err(diagnostics::blank_name(
                    key.span.join(sep.span),
                    &self.name(),
                ));
            }
            self.check(key)?;
            self.check(value)?;
            out.push(KeyValue {
                key: key.clone(),
                value: value.clone(),
                legacy: sep.value.is_empty(),
            });
        }
        Ok(out)
    }

    fn label(self) -> R<Instruction> {
        let labels = self.key_values()?;
        Ok(Instruction::Label(Box::new(Label {
            labels,
            meta: self.meta,
        })))
    }

    fn env(self) -> R<Instruction> {
        let vars = self.key_values()?;
        Ok(Instruction::Env(Box::new(Env {
            vars,
            meta: self.meta,
        })))
    }

    fn maintainer(self) -> R<Instruction> {
        let name = self.exactly_one()?;
        self.no_flags()?;
        Ok(Instruction::Maintainer(Box::new(Maintainer {
            name,
            meta: self.meta,
        })))
    }

    fn expose(self) -> R<Instruction> {
        self.at_least_one()?;
        self.no_flags()?;
        for p in self.args() {
            self.check(p)?;
        }
        Ok(Instruction::Expose(Box::new(Expose {
            ports: self.args().to_vec(),
            meta: self.meta,
        })))
    }

    /// Sources (heredoc markers split out), destination, heredocs.
    fn sources_and_dest(&self) -> R<(Vec<Word>, Word, Vec<Heredoc>)> {
        let args = self.args();
        if args.len() < 2 {
            return Err(diagnostics::no_destination(self.args_span(), &self.name()));
        }
        let (srcs, dest) = args.split_at(args.len() - 1);
        let dest = dest[0].clone();
        if heredoc::parse_marker(&dest.value).is_some() {
            return Err(diagnostics::heredoc_destination(dest.span, &self.name()));
        }
        let mut sources = Vec::new();
        let mut docs = Vec::new();
        for s in srcs {
            match heredoc::parse_marker(&s.value) {
                Some(m) if !self.meta.node.json => {
                    if let Some(h) = self.meta.node.heredocs.iter().find(|h| h.name == m.name) {
                        docs.push(h.clone());
                    }
                }
                _ => {
                    self.check(s)?;
                    sources.push(s.clone());
                }
            }
        }
        self.check(&dest)?;
        Ok((sources, dest, docs))
    }

    fn copy_flags(&self, flags: &flags::Flags) -> R<CopyFlags> {
        Ok(CopyFlags {
            chown: flags.string("chown"),
            chmod: flags.typed("chmod", parse_chmod)?,
            link: flags.bool("link"),
            exclude: flags.strings("exclude"),
        })
    }

    fn add(self) -> R<Instruction> {
        let (sources, dest, heredocs) = self.sources_and_dest()?;
        let flags = self.flags(&[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("unpack", Kind::Bool),
            ("exclude", Kind::Strings),
        ])?;
        let copy_flags = self.copy_flags(&flags)?;
        let checksum = flags.typed("checksum", |v, span| {
            check_checksum(v).map_err(|d| diagnostics::flag_value(span, "checksum", v, &d))?;
            Ok(v.to_string())
        })?;
        Ok(Instruction::Add(Box::new(Add {
            sources,
            dest,
            heredocs,
            json: self.meta.node.json,
            flags: copy_flags,
            keep_git_dir: flags.bool("keep-git-dir"),
            checksum,
            unpack: flags.bool("unpack"),
            meta: self.meta,
        })))
    }

    fn copy(self) -> R<Instruction> {
        let (sources, dest, heredocs) = self.sources_and_dest()?;
        let flags = self.flags(&[
            ("from", Kind::Str),
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::Strings),
        ])?;
        let copy_flags = self.copy_flags(&flags)?;
        Ok(Instruction::Copy(Box::new(Copy {
            sources,
            dest,
            heredocs,
            json: self.meta.node.json,
            flags: copy_flags,
            from: flags.string("from"),
            parents: flags.bool("parents"),
            meta: self.meta,
        })))
    }

    fn volume(self) -> R<Instruction> {
        self.at_least_one()?;
        self.no_flags()?;
        for v in self.args() {
            if v.value.trim().is_empty() {
                return Err(diagnostics::volume_empty(v.span));
            }
            self.check(v)?;
        }
        Ok(Instruction::Volume(Box::new(Volume {
            paths: self.args().to_vec(),
            json: self.meta.node.json,
            meta: self.meta,
        })))
    }

    fn user(self) -> R<Instruction> {
        let user = self.exactly_one()?;
        self.no_flags()?;
        self.check(&user)?;
        Ok(Instruction::User(Box::new(User {
            user,
            meta: self.meta,
        })))
    }

    fn workdir(self) -> R<Instruction> {
        let path = self.exactly_one()?;
        self.no_flags()?;
        self.check(&path)?;
        Ok(Instruction::Workdir(Box::new(Workdir {
            path,
            meta: self.meta,
        })))
    }

    fn arg(self) -> R<Instruction> {
        self.at_least_one()?;
        self.no_flags()?;
        let mut args = Vec::new();
        for w in self.args() {
            let def = match w.value.split_once('=') {
                Some((k, v)) => {
                    if k.is_empty() {
                        return Err(diagnostics::blank_name(w.span, "ARG"));
                    }
                    let key_end = (w.span.start + k.len()).min(w.span.end);
                    let default =
                        Word::new(v, Span::new((key_end + 1).min(w.span.end), w.span.end));
                    self.check(&default)?;
                    ArgDef {
                        name: Word::new(k, Span::new(w.span.start, key_end)),
                        default: Some(default),
                        span: w.span,
                    }
                }
                None => ArgDef {
                    name: w.clone(),
                    default: None,
                    span: w.span,
                },
            };
            args.push(def);
        }
        Ok(Instruction::Arg(Box::new(Arg {
            args,
            meta: self.meta,
        })))
    }

    fn onbuild(self) -> R<Instruction> {
        self.no_flags()?;
        let Some(child) = self.meta.node.child.clone() else {
            return Err(diagnostics::at_least_one_argument(
                self.args_span(),
                "ONBUILD",
            ));
        };
        match child.kind {
            "onbuild" => return Err(diagnostics::onbuild_chain(child.keyword.span)),
            "from" | "maintainer" => return Err(diagnostics::onbuild_trigger(&child.keyword)),
            _ => {}
        }
        let mut child = *child;
        child.heredocs = self.meta.node.heredocs.clone();
        let span = child.span;
        let mut expression = child.original.trim().to_string();
        for h in &child.heredocs {
            expression.push('\n');
            expression.push_str(&h.body);
            expression.push_str(&h.name);
        }
        let trigger = build(
            child,
            (self.meta.start_line, self.meta.end_line),
            span,
            self.escape,
        )?;
        Ok(Instruction::Onbuild(Box::new(Onbuild {
            trigger: Box::new(trigger),
            expression,
            meta: self.meta,
        })))
    }

    fn stopsignal(self) -> R<Instruction> {
        let signal = self.exactly_one()?;
        self.no_flags()?;
        self.check(&signal)?;
        Ok(Instruction::Stopsignal(Box::new(Stopsignal {
            signal,
            meta: self.meta,
        })))
    }

    fn healthcheck(self) -> R<Instruction> {
        self.at_least_one()?;
        let args = self.args();
        let typ = &args[0];
        let rest = &args[1..];
        if typ.value.eq_ignore_ascii_case("NONE") {
            if !rest.is_empty() {
                let span = rest[0].span.join(rest[rest.len() - 1].span);
                return Err(diagnostics::healthcheck_none_args(span));
            }
            self.no_flags()?;
            return Ok(Instruction::Healthcheck(Box::new(Healthcheck {
                kind: HealthcheckKind::None,
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
                meta: self.meta,
            })));
        }
        let flags = self.flags(&[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ])?;
        if !typ.value.eq_ignore_ascii_case("CMD") {
            return Err(diagnostics::healthcheck_type(typ));
        }
        if rest.is_empty() || (!self.meta.node.json && rest[0].value.is_empty()) {
            return Err(diagnostics::healthcheck_missing_cmd(Span::at(typ.span.end)));
        }
        let command = if self.meta.node.json {
            CommandForm::Exec(rest.to_vec())
        } else {
            CommandForm::Shell(rest[0].clone())
        };
        let dur = |name: &'static str| {
            flags.typed(name, |v, span| {
                let n = duration::parse_go_duration(v)
                    .map_err(|e| diagnostics::invalid_duration(span, name, &e))?;
                if n != 0 && n < 1_000_000 {
                    return Err(diagnostics::duration_too_small(span, name));
                }
                Ok(duration::to_std(n))
            })
        };
        let interval = dur("interval")?;
        let timeout = dur("timeout")?;
        let start_period = dur("start-period")?;
        let start_interval = dur("start-interval")?;
        let retries = flags.typed("retries", |v, span| {
            v.parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| diagnostics::invalid_retries(span, v))
        })?;
        Ok(Instruction::Healthcheck(Box::new(Healthcheck {
            kind: HealthcheckKind::Cmd(command),
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
            meta: self.meta,
        })))
    }

    fn shell(self) -> R<Instruction> {
        self.no_flags()?;
        if !self.meta.node.json {
            if self.args().is_empty() {
                return Err(diagnostics::at_least_one_argument(
                    self.args_span(),
                    "SHELL",
                ));
            }
            return Err(diagnostics::shell_not_json(self.args_span()));
        }
        self.at_least_one()?;
        Ok(Instruction::Shell(Box::new(Shell {
            shell: self.args().to_vec(),
            meta: self.meta,
        })))
    }
}

/// `--chmod`: octal up to 7777, or symbolic clauses like `u=rwX,go=rX`.
fn parse_chmod(v: &str, span: Span) -> R<Chmod> {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        return match u32::from_str_radix(v, 8) {
            Ok(n) if n <= 0o7777 => Ok(Chmod::Octal(n)),
            _ => Err(diagnostics::flag_value(
                span,
                "chmod",
                v,
                "expected an octal mode up to 7777 or a symbolic mode like `u=rwX,go=rX`",
            )),
        };
    }
    let clause_ok = |c: &str| {
        let who = c.len() - c.trim_start_matches(['u', 'g', 'o', 'a']).len();
        let rest = &c[who..];
        let mut chars = rest.chars();
        matches!(chars.next(), Some('+' | '-' | '='))
            && chars.all(|ch| {
                matches!(
                    ch,
                    'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o' | '+' | '-' | '='
                )
            })
    };
    if !v.is_empty() && v.split(',').all(clause_ok) {
        return Ok(Chmod::Symbolic(v.to_string()));
    }
    Err(diagnostics::flag_value(
        span,
        "chmod",
        v,
        "expected an octal mode up to 7777 or a symbolic mode like `u=rwX,go=rX`",
    ))
}

/// `--checksum`: `sha256:<hex>` (or sha384/sha512) for URLs, a hex commit for git.
fn check_checksum(v: &str) -> Result<(), String> {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    match v.split_once(':') {
        Some((alg, digest)) => {
            let want = match alg {
                "sha256" => 64,
                "sha384" => 96,
                "sha512" => 128,
                _ => return Err(format!("unsupported digest algorithm `{alg}`")),
            };
            if digest.len() != want || !hex(digest) {
                return Err(format!("a {alg} digest is {want} hex characters"));
            }
            Ok(())
        }
        None if hex(v) && v.len() <= 64 => Ok(()),
        None => Err("expected `sha256:<hex>` or a git commit hash".into()),
    }
}

//! `rbuild parse`: show how rbuild reads a Dockerfile: the typed instruction list with spans,
//! BuildKit's AST dump (`--dump`), or JSON for tools. Also the file-reading and diagnostic
//! rendering helpers `check` shares.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use rbuild_parser::{CommandForm, Flag, Instruction, ParseDiagnostic, Parsed, Word};

use crate::args::GlobalArgs;
use crate::exit;

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Print BuildKit's raw AST dump format instead of the typed instruction list.
    #[arg(long)]
    pub dump: bool,

    /// Output format of the instruction list.
    #[arg(long, value_enum, default_value_t = ParseFormat::Text, value_name = "FORMAT")]
    pub format: ParseFormat,

    /// The Dockerfile to read; `-` reads stdin.
    #[arg(value_name = "FILE", default_value = "Dockerfile")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseFormat {
    /// One line per instruction with its location.
    Text,
    /// The typed syntax tree and diagnostics as JSON.
    Json,
}

/// A Dockerfile read from disk or stdin: its display name and bytes.
pub(crate) struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

pub(crate) fn read_source(path: &Path) -> miette::Result<Source> {
    let stdin = path == Path::new("-");
    let bytes = rbuild_engine::dockerfile::read_bytes((!stdin).then_some(path))?;
    Ok(Source {
        name: if stdin {
            "<stdin>".into()
        } else {
            path.display().to_string()
        },
        bytes,
    })
}

/// Render one diagnostic with its source snippet the way miette's installed hook does.
pub(crate) fn render(diag: &ParseDiagnostic, name: &str, text: &str) -> String {
    let report = miette::Report::new(diag.clone()).with_source_code(
        rbuild_parser::diagnostics::CutSource::new(name, std::sync::Arc::<str>::from(text)),
    );
    format!("{report:?}")
}

pub fn run(_global: &GlobalArgs, args: ParseArgs) -> miette::Result<u8> {
    let src = read_source(&args.file)?;
    let parsed_bytes = rbuild_parser::parse_bytes(&src.bytes);
    let text = &parsed_bytes.text;
    let parsed = &parsed_bytes.parsed;
    // The dump is BuildKit's parser stage: only syntax errors prevent it.
    let blocking = if args.dump {
        parsed.has_syntax_errors()
    } else {
        parsed.has_errors()
    };
    if blocking {
        let shown = crate::commands::check::MAX_SHOWN;
        let mut errors = parsed.errors().filter(|d| d.syntax || !args.dump);
        for d in errors.by_ref().take(shown) {
            eprintln!("{}", render(d, &src.name, text));
        }
        let hidden = errors.count();
        if hidden > 0 {
            eprintln!("... and {hidden} more errors (`rbuild check --format json` lists them all)");
        }
        return Ok(exit::USER);
    }
    if args.dump {
        print!("{}", parsed.dockerfile.dump());
        return Ok(0);
    }
    match args.format {
        ParseFormat::Json => {
            let value = serde_json::json!({
                "file": src.name,
                "directives": parsed.dockerfile.directives,
                "instructions": parsed.dockerfile.instructions,
                "diagnostics": parsed.diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        ParseFormat::Text => print!("{}", listing(parsed, text)),
    }
    Ok(0)
}

fn quote(w: &Word) -> String {
    rbuild_parser::go_quote(&w.value)
}

fn form(c: &CommandForm) -> String {
    match c {
        CommandForm::Shell(w) => format!("shell {}", quote(w)),
        CommandForm::Exec(v) => format!(
            "exec [{}]",
            v.iter().map(quote).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn flag<T: std::fmt::Debug>(name: &str, f: &Option<Flag<T>>, out: &mut Vec<String>) {
    flag_with(name, f, out, |v| format!("{v:?}"));
}

/// `--name=value` with the typed value shown by `show`, or the raw text when it has variables.
fn flag_with<T>(
    name: &str,
    f: &Option<Flag<T>>,
    out: &mut Vec<String>,
    show: impl Fn(&T) -> String,
) {
    if let Some(f) = f {
        match &f.value {
            Some(v) => out.push(format!("--{name}={}", show(v))),
            None => out.push(format!("--{name}={} (expanded at build time)", f.raw)),
        }
    }
}

fn lower_debug<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}").to_lowercase()
}

/// The readable typed listing: `line:col  [start..end]  NAME  details`.
fn listing(parsed: &Parsed, text: &str) -> String {
    use std::fmt::Write;
    let df = &parsed.dockerfile;
    let index = rbuild_parser::LineIndex::new(text);
    let mut out = String::new();
    let d = &df.directives;
    let _ = writeln!(out, "# escape={}", d.escape);
    if let Some(s) = &d.syntax {
        let _ = writeln!(out, "# syntax={}", s.value);
    }
    if !d.check.skip.is_empty() || d.check.error {
        let _ = writeln!(
            out,
            "# check=skip={};error={}",
            d.check.skip.join(","),
            d.check.error
        );
    }
    for ins in &df.instructions {
        let span = ins.span();
        let (line, col) = index.line_col(text, span.start);
        let _ = writeln!(
            out,
            "{line}:{col} [{}..{}] {} {}",
            span.start,
            span.end,
            ins.name(),
            details(ins)
        );
    }
    out
}

fn details(ins: &Instruction) -> String {
    let mut parts: Vec<String> = Vec::new();
    match ins {
        Instruction::From(f) => {
            flag("platform", &f.platform, &mut parts);
            parts.push(format!("image={}", quote(&f.image)));
            if let Some(n) = &f.stage_name {
                parts.push(format!("stage={}", quote(n)));
            }
        }
        Instruction::Run(r) => {
            for m in &r.mounts {
                parts.push(format!(
                    "--mount(type={}, target={:?}{})",
                    m.kind.as_str(),
                    m.target.as_deref().unwrap_or(""),
                    if m.deferred {
                        ", expanded at build time"
                    } else {
                        ""
                    }
                ));
            }
            flag_with("network", &r.network, &mut parts, lower_debug);
            flag_with("security", &r.security, &mut parts, lower_debug);
            parts.push(form(&r.command));
            for h in &r.heredocs {
                parts.push(format!(
                    "heredoc {} ({} bytes, expand={})",
                    h.name,
                    h.body.len(),
                    h.expand
                ));
            }
        }
        Instruction::Cmd(c) => parts.push(form(&c.command)),
        Instruction::Entrypoint(e) => parts.push(form(&e.command)),
        Instruction::Label(l) => parts.extend(
            l.labels
                .iter()
                .map(|kv| format!("{}={}", quote(&kv.key), quote(&kv.value))),
        ),
        Instruction::Env(e) => parts.extend(
            e.vars
                .iter()
                .map(|kv| format!("{}={}", quote(&kv.key), quote(&kv.value))),
        ),
        Instruction::Maintainer(m) => parts.push(quote(&m.name)),
        Instruction::Expose(e) => parts.extend(e.ports.iter().map(quote)),
        Instruction::Add(a) => {
            flag("chown", &a.flags.chown, &mut parts);
            flag_with("chmod", &a.flags.chmod, &mut parts, ToString::to_string);
            flag("link", &a.flags.link, &mut parts);
            flag("keep-git-dir", &a.keep_git_dir, &mut parts);
            flag("checksum", &a.checksum, &mut parts);
            flag("unpack", &a.unpack, &mut parts);
            parts.extend(
                a.flags
                    .exclude
                    .iter()
                    .map(|f| format!("--exclude={}", f.raw)),
            );
            parts.extend(a.sources.iter().map(quote));
            parts.extend(a.heredocs.iter().map(|h| format!("<<{}", h.name)));
            parts.push(format!("-> {}", quote(&a.dest)));
        }
        Instruction::Copy(c) => {
            flag("from", &c.from, &mut parts);
            flag("chown", &c.flags.chown, &mut parts);
            flag_with("chmod", &c.flags.chmod, &mut parts, ToString::to_string);
            flag("link", &c.flags.link, &mut parts);
            flag("parents", &c.parents, &mut parts);
            parts.extend(
                c.flags
                    .exclude
                    .iter()
                    .map(|f| format!("--exclude={}", f.raw)),
            );
            parts.extend(c.sources.iter().map(quote));
            parts.extend(c.heredocs.iter().map(|h| format!("<<{}", h.name)));
            parts.push(format!("-> {}", quote(&c.dest)));
        }
        Instruction::Volume(v) => parts.extend(v.paths.iter().map(quote)),
        Instruction::User(u) => parts.push(quote(&u.user)),
        Instruction::Workdir(w) => parts.push(quote(&w.path)),
        Instruction::Arg(a) => parts.extend(a.args.iter().map(|d| match &d.default {
            Some(v) => format!("{}={}", quote(&d.name), quote(v)),
            None => quote(&d.name),
        })),
        Instruction::Onbuild(o) => {
            parts.push(format!("{} {}", o.trigger.name(), details(&o.trigger)))
        }
        Instruction::Stopsignal(s) => parts.push(quote(&s.signal)),
        Instruction::Healthcheck(h) => {
            flag("interval", &h.interval, &mut parts);
            flag("timeout", &h.timeout, &mut parts);
            flag("start-period", &h.start_period, &mut parts);
            flag("start-interval", &h.start_interval, &mut parts);
            flag("retries", &h.retries, &mut parts);
            match &h.kind {
                rbuild_parser::HealthcheckKind::None => parts.push("NONE".into()),
                rbuild_parser::HealthcheckKind::Cmd(c) => parts.push(form(c)),
            }
        }
        Instruction::Shell(s) => parts.push(format!(
            "[{}]",
            s.shell.iter().map(quote).collect::<Vec<_>>().join(", ")
        )),
    }
    parts.join(" ")
}

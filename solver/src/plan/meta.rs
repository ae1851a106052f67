//! Instructions that change the image config (and WORKDIR, which also creates a directory):
//! ENV, ARG, LABEL, MAINTAINER, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL,
//! CMD, ENTRYPOINT, ONBUILD. History texts follow BuildKit's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rbuild_parser::{Arg, CommandForm, Healthcheck, HealthcheckKind, Instruction, Word, go_quote};

use super::Ctx;
use super::error::PlanError;
use super::expand::{self, Vars};
use super::state::StageState;
use crate::op::{MkdirOp, Op, Step};

/// ARGs that never become variables of the build environment.
const NON_ENV_ARGS: &[&str] = &["SOURCE_DATE_EPOCH"];

/// `["a" "b"]`: Go's `%q` of a string slice, as BuildKit's history shows commands.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// A shell- or exec-form command as the image config stores it.
pub fn command_args(form: &CommandForm, state: &StageState) -> Vec<String> {
    match form {
        CommandForm::Exec(words) => words.iter().map(|w| w.value.clone()).collect(),
        CommandForm::Shell(word) => {
            let mut args = state.shell();
            args.push(word.value.clone());
            args
        }
    }
}

/// Go's `time.Duration` formatting (`30s`, `1m30s`, `1.5s`, `0s`).
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let total = d.as_secs_f64();
    let hours = (total / 3600.0).floor() as u64;
    let minutes = ((total - hours as f64 * 3600.0) / 60.0).floor() as u64;
    let secs = total - hours as f64 * 3600.0 - minutes as f64 * 60.0;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let secs_text = format!("{secs:.9}");
    let secs_text = secs_text.trim_end_matches('0').trim_end_matches('.');
    out.push_str(secs_text);
    out.push('s');
    out
}

pub fn arg(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    arg: &Arg,
    consumed: &mut BTreeSet<String>,
    global: &Vars,
    step: &mut Step,
) -> Result<(), PlanError> {
    let mut history = Vec::new();
    for def in &arg.args {
        let name = def.name.value.clone();
        consumed.insert(name.clone());
        let given = ctx.opts.build_args.get(&name);
        let value = match (given, &def.default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(default)) => Some(expand::word(
                &state.vars,
                default,
                ctx.escape,
                &mut BTreeMap::new(),
            )?),
            // `ARG NAME` without a value inherits the global one.
            (None, None) => global.get(&name).map(str::to_string),
        };
        if let Some(v) = &value {
            if !NON_ENV_ARGS.contains(&name.as_str()) {
                state.vars.set(name.clone(), v.clone());
            }
            history.push(format!("{name}={v}"));
        } else {
            state.vars.declare(name.clone());
            history.push(name.clone());
        }
        state.build_args.retain(|(n, _)| *n != name);
        state.build_args.push((name, value));
    }
    step.created_by = format!("ARG {}", history.join(" "));
    Ok(())
}

pub fn dispatch(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    ins: &Instruction,
    step: &mut Step,
) -> Result<(), PlanError> {
    let escape = ctx.escape;
    let mut used = BTreeMap::new();
    match ins {
        Instruction::Env(env) => {
            // Every value sees the variables as they were before this instruction.
            let mut pairs = Vec::new();
            for kv in &env.vars {
                let key = expand::word(&state.vars, &kv.key, escape, &mut used)?;
                if key.is_empty() {
                    return Err(PlanError::invalid(
                        kv.key.span,
                        "ENV names can not be blank",
                        "empty name",
                        Some("write `ENV NAME=value`".into()),
                    ));
                }
                let value = expand::word(&state.vars, &kv.value, escape, &mut used)?;
                pairs.push((key, value));
            }
            let mut text = String::from("ENV");
            for (k, v) in &pairs {
                state.set_env(k, v);
                text.push_str(&format!(" {k}={v}"));
            }
            step.created_by = text;
        }
        Instruction::Label(label) => {
            let mut text = String::from("LABEL");
            let mut pairs = Vec::new();
            for kv in &label.labels {
                let key = expand::word(&state.vars, &kv.key, escape, &mut used)?;
                let value = expand::word(&state.vars, &kv.value, escape, &mut used)?;
                text.push_str(&format!(" {key}={value}"));
                pairs.push((key, value));
            }
            let labels = state.container().labels.get_or_insert_with(BTreeMap::new);
            labels.extend(pairs);
            step.created_by = text;
        }
        Instruction::Maintainer(m) => {
            state.config.author = Some(m.name.value.clone());
            step.created_by = format!("MAINTAINER {}", m.name.value);
        }
        Instruction::Expose(expose) => {
            let mut ports = Vec::new();
            for word in &expose.ports {
                for spec in expand::words(&state.vars, word, escape, &mut used)? {
                    ports.extend(parse_port(&spec, word)?);
                }
            }
            let exposed = state
                .container()
                .exposed_ports
                .get_or_insert_with(BTreeMap::new);
            for port in &ports {
                exposed.insert(port.clone(), serde_json::json!({}));
            }
            step.created_by = format!("EXPOSE {}", ports.join(" "));
        }
        Instruction::Volume(volume) => {
            let mut paths = Vec::new();
            // Each word (shell or JSON form) expands to one path, never split further
            // (BuildKit's single-word expander); an empty result is an error.
            for word in &volume.paths {
                let path = expand::word(&state.vars, word, escape, &mut used)?;
                if path.trim().is_empty() {
                    return Err(PlanError::invalid(
                        word.span,
                        "VOLUME specified can not be an empty string",
                        "empty volume",
                        Some("name a path, e.g. `VOLUME /data`".into()),
                    ));
                }
                paths.push(path);
            }
            let volumes = state.container().volumes.get_or_insert_with(BTreeMap::new);
            for path in &paths {
                volumes.insert(path.clone(), serde_json::json!({}));
            }
            step.created_by = format!("VOLUME {}", go_plain_list(&paths));
        }
        Instruction::User(user) => {
            let value = expand::word(&state.vars, &user.user, escape, &mut used)?;
            if value.is_empty() {
                return Err(PlanError::invalid(
                    user.user.span,
                    "USER requires a user name or id",
                    "empty after expansion",
                    None,
                ));
            }
            state.container().user = Some(value.clone());
            step.created_by = format!("USER {value}");
        }
        Instruction::Workdir(workdir) => {
            let requested = expand::word(&state.vars, &workdir.path, escape, &mut used)?;
            if requested.is_empty() {
                return Err(PlanError::invalid(
                    workdir.path.span,
                    "WORKDIR requires a path",
                    "empty after expansion",
                    None,
                ));
            }
            // The config keeps an absolute WORKDIR as written (BuildKit's NormalizeWorkdir only
            // joins and cleans relative ones); the directory made, and every later use of the
            // working directory (`State::workdir`), is the cleaned path.
            let path = normalize_workdir(&state.workdir(), &requested);
            let config_path = if requested.starts_with('/') {
                requested.clone()
            } else {
                path.clone()
            };
            state.container().working_dir = Some(config_path.clone());
            if path != "/" {
                step.op = Op::Mkdir(MkdirOp {
                    path: path.clone(),
                    user: state.user(),
                });
                step.key.canonical = format!("WORKDIR {path}");
                step.key.inputs.insert("user".into(), state.user());
                step.key.vars = used.clone();
            }
            step.created_by = format!("WORKDIR {config_path}");
        }
        Instruction::Stopsignal(sig) => {
            let value = expand::word(&state.vars, &sig.signal, escape, &mut used)?;
            if !valid_signal(&value) {
                return Err(PlanError::invalid(
                    sig.signal.span,
                    format!("invalid signal `{value}`"),
                    "not a signal name or number",
                    Some("use a name like `SIGTERM` or a number like `15`".into()),
                ));
            }
            state.container().stop_signal = Some(value.clone());
            step.created_by = format!("STOPSIGNAL {value}");
        }
        Instruction::Healthcheck(hc) => healthcheck(state, hc, step),
        Instruction::Shell(shell) => {
            let args: Vec<String> = shell.shell.iter().map(|w| w.value.clone()).collect();
            step.created_by = format!("SHELL {}", go_plain_list(&args));
            state.container().shell = Some(args);
        }
        Instruction::Cmd(cmd) => {
            let args = command_args(&cmd.command, state);
            step.created_by = format!("CMD {}", go_list(&args));
            let container = state.container();
            container.cmd = Some(args);
            container.args_escaped = Some(true);
            state.cmd_set = true;
        }
        Instruction::Entrypoint(ep) => {
            let args = command_args(&ep.command, state);
            step.created_by = format!("ENTRYPOINT {}", go_list(&args));
            let cmd_set = state.cmd_set;
            let container = state.container();
            container.entrypoint = Some(args);
            if !cmd_set {
                container.cmd = None;
            }
        }
        Instruction::Onbuild(onbuild) => {
            state
                .container()
                .on_build
                .get_or_insert_with(Vec::new)
                .push(onbuild.expression.clone());
            // BuildKit records no history entry for ONBUILD.
        }
        Instruction::From(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Arg(_) => unreachable!("dispatched elsewhere"),
    }
    Ok(())
}

fn healthcheck(state: &mut StageState, hc: &Healthcheck, step: &mut Step) {
    let test = match &hc.kind {
        HealthcheckKind::None => vec!["NONE".to_string()],
        HealthcheckKind::Cmd(CommandForm::Shell(word)) => {
            vec!["CMD-SHELL".to_string(), word.value.clone()]
        }
        HealthcheckKind::Cmd(CommandForm::Exec(words)) => std::iter::once("CMD".to_string())
            .chain(words.iter().map(|w| w.value.clone()))
            .collect(),
    };
    let nanos = |flag: &Option<rbuild_parser::Flag<Duration>>| {
        flag.as_ref()
            .and_then(|f| f.value)
            .map(|d| d.as_nanos() as i64)
            .filter(|n| *n > 0)
    };
    let dur = |flag: &Option<rbuild_parser::Flag<Duration>>| {
        go_duration(flag.as_ref().and_then(|f| f.value).unwrap_or_default())
    };
    let retries = hc
        .retries
        .as_ref()
        .and_then(|f| f.value)
        .map(i64::from)
        .filter(|r| *r > 0);
    step.created_by = format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_plain_list(&test),
        dur(&hc.interval),
        dur(&hc.timeout),
        dur(&hc.start_period),
        dur(&hc.start_interval),
        retries.unwrap_or(0)
    );
    state.container().healthcheck = Some(rbuild_store::Healthcheck {
        test: Some(test),
        interval: nanos(&hc.interval),
        timeout: nanos(&hc.timeout),
        start_period: nanos(&hc.start_period),
        start_interval: nanos(&hc.start_interval),
        retries,
        extra: BTreeMap::new(),
    });
}

/// WORKDIR: relative paths build on the current one; the result is cleaned and absolute.
pub fn normalize_workdir(current: &str, requested: &str) -> String {
    let joined = if requested.starts_with('/') {
        requested.to_string()
    } else {
        format!("{current}/{requested}")
    };
    clean_path(&joined)
}

/// Lexical cleaning like Go's `path.Clean` for absolute paths.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// One EXPOSE word → `port/proto` keys (ranges expanded; an `ip:host:` prefix is dropped).
fn parse_port(spec: &str, word: &Word) -> Result<Vec<String>, PlanError> {
    let bad = |why: &str| {
        PlanError::invalid(
            word.span,
            format!("invalid port `{spec}`: {why}"),
            "in this EXPOSE",
            Some("write `PORT`, `PORT/tcp`, `PORT/udp` or a range `8000-8010/tcp`".into()),
        )
    };
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let container = ports.rsplit(':').next().unwrap_or(ports);
    let (lo, hi) = match container.split_once('-') {
        Some((a, b)) => (a, b),
        None => (container, container),
    };
    let parse = |s: &str| s.parse::<u16>().map_err(|_| bad("not a port number"));
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if hi < lo {
        return Err(bad("the range ends before it starts"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(sig: &str) -> bool {
    if let Ok(n) = sig.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = sig.strip_prefix("SIG").unwrap_or(sig);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "UNUSED",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    for base in ["RTMIN", "RTMAX"] {
        if let Some(rest) = name.strip_prefix(base) {
            return rest.is_empty()
                || rest
                    .strip_prefix(['+', '-'])
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n <= 30);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_normalisation() {
        assert_eq!(normalize_workdir("/a", "b"), "/a/b");
        assert_eq!(normalize_workdir("/a/b", "../c/./d/"), "/a/c/d");
        assert_eq!(normalize_workdir("/a", "/x"), "/x");
        assert_eq!(normalize_workdir("/", ".."), "/");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn ports() {
        let w = Word::new("x", rbuild_parser::Span::default());
        assert_eq!(parse_port("80", &w).unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_port("53/UDP", &w).unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_port("8000-8002", &w).unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_port("http", &w).is_err());
        assert!(parse_port("80/xyz", &w).is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3", "SIGQUIT"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", "RTMIN+40"] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }
}

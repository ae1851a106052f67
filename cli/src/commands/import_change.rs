//! `--change` for `rbuild import`: a Dockerfile metadata instruction (CMD, ENTRYPOINT, ENV,
//! EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL) parsed by `rbuild-parser` and applied to
//! an image config; values are expanded against the config's environment, as `docker import`
//! does. Errors point into the `--change` text.

use std::collections::HashMap;

use miette::{Diagnostic, SourceSpan};
use rbuild_parser::{CommandForm, Instruction, KeyValue, Word, shell};
use rbuild_store::ContainerConfig;
use serde_json::Value;
use thiserror::Error;

const ALLOWED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL";
/// The change is parsed as the second line of a tiny Dockerfile.
const PREFIX: &str = "FROM scratch\n";

#[derive(Debug, Error, Diagnostic)]
#[error("invalid --change: {reason}")]
#[diagnostic(code(rbuild::import::change), help("{help}"))]
pub struct ChangeError {
    #[source_code]
    src: String,
    #[label("{label}")]
    span: SourceSpan,
    reason: String,
    label: String,
    pub help: String,
}

impl ChangeError {
    fn at(
        change: &str,
        start: usize,
        end: usize,
        reason: impl Into<String>,
        label: &str,
        help: &str,
    ) -> Self {
        let start = start.min(change.len());
        let end = end.clamp(start, change.len());
        ChangeError {
            src: change.to_string(),
            span: (start, (end - start).max(usize::from(start < change.len()))).into(),
            reason: reason.into(),
            label: label.to_string(),
            help: help.to_string(),
        }
    }

    /// An error at a parser span (offsets into `PREFIX + change`).
    fn word(change: &str, w: &Word, reason: impl Into<String>, label: &str, help: &str) -> Self {
        let s = w.span.start.saturating_sub(PREFIX.len());
        let e = w.span.end.saturating_sub(PREFIX.len());
        ChangeError::at(change, s, e, reason, label, help)
    }
}

/// Apply one `--change` line to `config`.
pub fn apply(change: &str, config: &mut ContainerConfig) -> Result<(), ChangeError> {
    if change.contains('\n') {
        let at = change.find('\n').unwrap_or(0);
        return Err(ChangeError::at(
            change,
            at,
            at + 1,
            "a --change holds one instruction",
            "line break",
            "pass several --change options",
        ));
    }
    let text = format!("{PREFIX}{change}\n");
    let parsed = rbuild_parser::parse(&text);
    if let Some(d) = parsed.errors().next() {
        let s = d.span.start.saturating_sub(PREFIX.len());
        let e = d.span.end.saturating_sub(PREFIX.len());
        let word = change
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let known: Vec<&str> = ALLOWED.split(", ").collect();
        // Edit distance rather than Jaro-Winkler: it catches transpositions like `CDM`.
        let closest = known
            .iter()
            .map(|k| (strsim::osa_distance(&word, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| k);
        let help = match (d.help.as_deref(), closest) {
            (Some(h), _) => h.to_string(),
            (None, Some(k)) => format!("did you mean `{k}`? --change accepts {ALLOWED}"),
            (None, None) => format!("--change accepts {ALLOWED}"),
        };
        return Err(ChangeError::at(
            change,
            s,
            e,
            d.message.clone(),
            &d.label,
            &help,
        ));
    }
    let Some(instr) = parsed.dockerfile.instructions.get(1) else {
        return Err(ChangeError::at(
            change,
            0,
            change.len(),
            "there is no instruction",
            "empty",
            &format!("--change accepts {ALLOWED}"),
        ));
    };
    let env: HashMap<String, String> = config
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let expand = |w: &Word| -> Result<String, ChangeError> {
        shell::expand_word(&w.value, &env, '\\')
            .map(|x| x.value)
            .map_err(|e| {
                ChangeError::word(
                    change,
                    w,
                    format!("cannot expand `{}`: {e}", w.value),
                    "here",
                    "check the quoting and `${...}` syntax",
                )
            })
    };
    let expand_list = |w: &Word| -> Result<Vec<String>, ChangeError> {
        shell::expand_words(&w.value, &env, '\\')
            .map(|x| x.words)
            .map_err(|e| {
                ChangeError::word(
                    change,
                    w,
                    format!("cannot expand `{}`: {e}", w.value),
                    "here",
                    "check the quoting and `${...}` syntax",
                )
            })
    };
    let pairs = |kvs: &[KeyValue]| -> Result<Vec<(String, String)>, ChangeError> {
        kvs.iter()
            .map(|kv| Ok((expand(&kv.key)?, expand(&kv.value)?)))
            .collect()
    };
    let command = |form: &CommandForm| -> Vec<String> {
        match form {
            CommandForm::Exec(words) => words.iter().map(|w| w.value.clone()).collect(),
            CommandForm::Shell(w) => {
                let mut argv = config
                    .shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                argv.push(w.value.clone());
                argv
            }
        }
    };
    match instr {
        Instruction::Cmd(c) => config.cmd = Some(command(&c.command)),
        Instruction::Entrypoint(c) => config.entrypoint = Some(command(&c.command)),
        Instruction::Env(e) => {
            let vars = pairs(&e.vars)?;
            let list = config.env.get_or_insert_with(Vec::new);
            for (k, v) in vars {
                list.retain(|x| x.split('=').next() != Some(k.as_str()));
                list.push(format!("{k}={v}"));
            }
        }
        Instruction::Label(l) => {
            let vars = pairs(&l.labels)?;
            let labels = config.labels.get_or_insert_with(Default::default);
            labels.extend(vars);
        }
        Instruction::Expose(e) => {
            let mut ports = Vec::new();
            for w in &e.ports {
                for p in expand_list(w)? {
                    let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                    let (lo, hi) = port.split_once('-').unwrap_or((port, port));
                    let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
                        return Err(ChangeError::word(
                            change,
                            w,
                            format!("`{p}` is not a port"),
                            "this port",
                            "use `80`, `80/tcp`, `53/udp` or `8000-8010`",
                        ));
                    };
                    if lo == 0 || hi < lo || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(ChangeError::word(
                            change,
                            w,
                            format!("`{p}` is not a port"),
                            "this port",
                            "use `80`, `80/tcp`, `53/udp` or `8000-8010`",
                        ));
                    }
                    ports.extend((lo..=hi).map(|n| format!("{n}/{proto}")));
                }
            }
            let map = config.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                map.insert(p, Value::Object(Default::default()));
            }
        }
        Instruction::Volume(v) => {
            let mut paths = Vec::new();
            for w in &v.paths {
                if v.json {
                    paths.push(w.value.clone());
                } else {
                    paths.extend(expand_list(w)?);
                }
            }
            let map = config.volumes.get_or_insert_with(Default::default);
            for p in paths {
                map.insert(p, Value::Object(Default::default()));
            }
        }
        Instruction::User(u) => config.user = Some(expand(&u.user)?),
        Instruction::Workdir(w) => {
            let dir = expand(&w.path)?;
            config.working_dir = Some(if dir.starts_with('/') {
                dir
            } else {
                let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{dir}", base.trim_end_matches('/'))
            });
        }
        Instruction::Stopsignal(s) => {
            let sig = expand(&s.signal)?;
            let ok = sig.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n))
                || (sig.len() > 3
                    && sig.starts_with("SIG")
                    && sig[3..].chars().all(|c| {
                        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-'
                    }));
            if !ok {
                return Err(ChangeError::word(
                    change,
                    &s.signal,
                    format!("`{sig}` is not a signal"),
                    "this signal",
                    "use a name like `SIGTERM` or a number",
                ));
            }
            config.stop_signal = Some(sig);
        }
        other => {
            let m = other.meta();
            let s = m.span.start.saturating_sub(PREFIX.len());
            let word_end = change[s.min(change.len())..]
                .find(char::is_whitespace)
                .map(|i| s + i)
                .unwrap_or(change.len());
            let keyword = change.get(s..word_end).unwrap_or(change).to_string();
            return Err(ChangeError::at(
                change,
                s,
                word_end,
                format!("`{keyword}` cannot be used with --change"),
                "this instruction",
                &format!("--change accepts {ALLOWED}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(changes: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for ch in changes {
            apply(ch, &mut c).unwrap_or_else(|e| panic!("{ch}: {e} ({})", e.help));
        }
        c
    }

    #[test]
    fn metadata_instructions_apply() {
        let c = cfg(&[
            r#"CMD ["sh"]"#,
            "ENTRYPOINT echo hi",
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV C=${A}x",
            "EXPOSE 80 53/udp 8000-8001",
            r#"LABEL org.x="y z""#,
            "USER app:app",
            "WORKDIR /srv",
            "WORKDIR sub",
            "VOLUME [\"/data\"]",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(c.cmd.unwrap(), ["sh"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            c.env.unwrap(),
            ["A=1", "B=two words", "LEGACY=some value", "C=1x"]
        );
        let ports = c.exposed_ports.unwrap();
        assert!(ports.contains_key("53/udp") && ports.contains_key("8001/tcp"));
        assert_eq!(c.labels.unwrap()["org.x"], "y z");
        assert_eq!(c.working_dir.unwrap(), "/srv/sub");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.unwrap(), "SIGINT");
    }

    #[test]
    fn bad_changes_point_at_the_problem() {
        let mut c = ContainerConfig::default();
        let e = apply("RUN echo", &mut c).unwrap_err();
        assert!(e.to_string().contains("`RUN` cannot be used"), "{e}");
        let e = apply("EXPOSE http", &mut c).unwrap_err();
        assert!(e.to_string().contains("not a port"), "{e}");
        let e = apply("CDM x", &mut c).unwrap_err();
        assert!(e.help.contains("did you mean `CMD`"), "{}", e.help);
        assert!(apply("LABEL novalue", &mut c).is_err());
        assert!(apply("STOPSIGNAL kill", &mut c).is_err());
        assert!(apply("CMD a\nRUN b", &mut c).is_err());
    }
}

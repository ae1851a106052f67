//! `--change` for `rbuild import`: the Dockerfile metadata instructions CMD, ENTRYPOINT, ENV,
//! EXPOSE, LABEL, USER, WORKDIR, VOLUME and STOPSIGNAL applied to an image config.
//! A stop-gap until `rbuild-parser` lands: these few forms are parsed here, with spans, and
//! this module should then delegate to the parser's instruction types.

use miette::{Diagnostic, SourceSpan};
use rbuild_store::ContainerConfig;
use serde_json::Value;
use thiserror::Error;

const KNOWN: &[&str] = &[
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
    help: String,
}

fn err(
    src: &str,
    start: usize,
    len: usize,
    reason: impl Into<String>,
    label: &str,
    help: &str,
) -> ChangeError {
    ChangeError {
        src: src.to_string(),
        span: (
            start,
            len.max(1).min(src.len().saturating_sub(start).max(1)),
        )
            .into(),
        reason: reason.into(),
        label: label.to_string(),
        help: help.to_string(),
    }
}

/// Apply one `--change` line to `config`.
pub fn apply(change: &str, config: &mut ContainerConfig) -> Result<(), ChangeError> {
    let trimmed_start = change.len() - change.trim_start().len();
    let line = change.trim();
    let (word, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim_start()),
        None => (line, ""),
    };
    let rest_at = change.len() - change.trim_start().len() + (line.len() - rest.len());
    let instr = word.to_ascii_uppercase();
    if !KNOWN.contains(&instr.as_str()) {
        let suggestion = KNOWN
            .iter()
            .map(|k| (strsim::jaro_winkler(k, &instr), k))
            .filter(|(s, _)| *s > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| format!("did you mean `{k}`? "))
            .unwrap_or_default();
        return Err(err(
            change,
            trimmed_start,
            word.len(),
            format!("`{word}` cannot be used with --change"),
            "this instruction",
            &format!("{suggestion}--change accepts {}", KNOWN.join(", ")),
        ));
    }
    if rest.is_empty() {
        return Err(err(
            change,
            trimmed_start,
            word.len(),
            format!("{instr} needs an argument"),
            "missing argument",
            "e.g. `CMD [\"sh\"]`",
        ));
    }
    match instr.as_str() {
        "CMD" | "ENTRYPOINT" => {
            let argv = exec_or_shell(change, rest, rest_at)?;
            if instr == "CMD" {
                config.cmd = Some(argv);
            } else {
                config.entrypoint = Some(argv);
            }
        }
        "ENV" => {
            let pairs = key_values(change, rest, rest_at, true)?;
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let pairs = key_values(change, rest, rest_at, false)?;
            let labels = config.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(Default::default);
            for (word, at) in words(change, rest, rest_at)? {
                let (port, proto) = word.split_once('/').unwrap_or((&word, "tcp"));
                let ok_port = port.parse::<u16>().is_ok_and(|p| p > 0);
                if !ok_port || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(err(
                        change,
                        at,
                        word.len(),
                        format!("`{word}` is not a port"),
                        "this port",
                        "use `80`, `80/tcp` or `53/udp`",
                    ));
                }
                ports.insert(format!("{port}/{proto}"), Value::Object(Default::default()));
            }
        }
        "VOLUME" => {
            let paths = if rest.starts_with('[') {
                json_array(change, rest, rest_at)?
            } else {
                words(change, rest, rest_at)?
                    .into_iter()
                    .map(|(w, _)| w)
                    .collect()
            };
            let vols = config.volumes.get_or_insert_with(Default::default);
            for p in paths {
                vols.insert(p, Value::Object(Default::default()));
            }
        }
        "USER" => config.user = Some(rest.to_string()),
        "WORKDIR" => {
            let dir = if rest.starts_with('/') {
                rest.to_string()
            } else {
                let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{rest}", base.trim_end_matches('/'))
            };
            config.working_dir = Some(dir);
        }
        "STOPSIGNAL" => {
            let ok = rest.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n))
                || (rest.starts_with("SIG")
                    && rest.len() > 3
                    && rest[3..].chars().all(|c| {
                        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-'
                    }));
            if !ok {
                return Err(err(
                    change,
                    rest_at,
                    rest.len(),
                    format!("`{rest}` is not a signal"),
                    "this signal",
                    "use a name like `SIGTERM` or a number",
                ));
            }
            config.stop_signal = Some(rest.to_string());
        }
        _ => unreachable!("checked against KNOWN"),
    }
    Ok(())
}

fn exec_or_shell(src: &str, rest: &str, at: usize) -> Result<Vec<String>, ChangeError> {
    if rest.starts_with('[') {
        json_array(src, rest, at)
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    }
}

fn json_array(src: &str, rest: &str, at: usize) -> Result<Vec<String>, ChangeError> {
    serde_json::from_str::<Vec<String>>(rest).map_err(|e| {
        err(
            src,
            at,
            rest.len(),
            format!("the JSON form is not an array of strings ({e})"),
            "here",
            "write it as `[\"executable\", \"arg\"]` with double quotes",
        )
    })
}

/// Split on whitespace honouring quotes and backslash escapes; words with their offsets.
fn words(src: &str, rest: &str, at: usize) -> Result<Vec<(String, usize)>, ChangeError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = None;
    let mut quote: Option<char> = None;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push((std::mem::take(&mut cur), at + s));
                }
            }
            (None, '"' | '\'') => {
                start.get_or_insert(i);
                quote = Some(c);
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                start.get_or_insert(i);
                if let Some((_, n)) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => {
                start.get_or_insert(i);
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(err(
            src,
            at,
            rest.len(),
            "a quote is not closed",
            "here",
            "close the quote",
        ));
    }
    if let Some(s) = start {
        out.push((cur, at + s));
    }
    Ok(out)
}

/// `k=v k2="v 2"`, or for ENV also the legacy `KEY value with spaces`.
fn key_values(
    src: &str,
    rest: &str,
    at: usize,
    env: bool,
) -> Result<Vec<(String, String)>, ChangeError> {
    let ws = words(src, rest, at)?;
    if env && !ws.first().is_some_and(|(w, _)| w.contains('=')) {
        let (key, _) = ws.first().cloned().unwrap_or_default();
        let value = rest[key.len()..].trim().to_string();
        return Ok(vec![(key, value)]);
    }
    let mut out = Vec::new();
    for (w, pos) in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(
                src,
                pos,
                w.len(),
                format!("`{w}` is not KEY=VALUE"),
                "expected KEY=VALUE",
                "write `KEY=VALUE` pairs",
            ));
        };
        if k.is_empty() {
            return Err(err(
                src,
                pos,
                w.len(),
                "the key is empty",
                "here",
                "write `KEY=VALUE` pairs",
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(changes: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for ch in changes {
            apply(ch, &mut c).unwrap();
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
            "EXPOSE 80 53/udp",
            r#"LABEL org.x="y z""#,
            "USER app:app",
            "WORKDIR /srv",
            "WORKDIR sub",
            "VOLUME [\"/data\"]",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(c.cmd.unwrap(), ["sh"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), ["A=1", "B=two words", "LEGACY=some value"]);
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.labels.unwrap()["org.x"], "y z");
        assert_eq!(c.working_dir.unwrap(), "/srv/sub");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.unwrap(), "SIGINT");
    }

    #[test]
    fn bad_changes_point_at_the_problem() {
        let mut c = ContainerConfig::default();
        let e = apply("RUN echo", &mut c).unwrap_err();
        assert!(e.to_string().contains("`RUN` cannot be used"));
        let e = apply("CMD [sh]", &mut c).unwrap_err();
        assert!(e.to_string().contains("JSON form"));
        let e = apply("EXPOSE http", &mut c).unwrap_err();
        assert!(e.to_string().contains("not a port"));
        let e = apply("CDM x", &mut c).unwrap_err();
        assert!(e.help.contains("CMD"), "{}", e.help);
        assert!(apply("LABEL novalue", &mut c).is_err());
        assert!(apply("STOPSIGNAL kill", &mut c).is_err());
    }
}

//! `--change` for `rbuild import`: a Dockerfile metadata instruction (CMD, ENTRYPOINT, ENV,
//! EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL) parsed by `rbuild-parser` and applied to
//! an image config by the planner's own code (`rbuild_solver::plan::apply_metadata`), so a
//! change means what the same line means in a Dockerfile; values are expanded against the
//! config's environment, as `docker import` does. Errors point into the `--change` text.

use miette::{Diagnostic, SourceSpan};
use rbuild_solver::plan::METADATA_INSTRUCTIONS;
use rbuild_store::ContainerConfig;
use thiserror::Error;

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
        let known = METADATA_INSTRUCTIONS;
        // Edit distance rather than Jaro-Winkler: it catches transpositions like `CDM`.
        let closest = known
            .iter()
            .map(|k| (strsim::osa_distance(&word, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| k);
        let help = match (d.help.as_deref(), closest) {
            (Some(h), _) => h.to_string(),
            (None, Some(k)) => format!("did you mean `{k}`? --change accepts {}", allowed()),
            (None, None) => format!("--change accepts {}", allowed()),
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
            &format!("--change accepts {}", allowed()),
        ));
    };
    let keyword = &instr.meta().keyword;
    if !METADATA_INSTRUCTIONS.contains(&keyword.value.to_ascii_uppercase().as_str()) {
        let s = keyword.span.start.saturating_sub(PREFIX.len());
        let e = keyword.span.end.saturating_sub(PREFIX.len());
        return Err(ChangeError::at(
            change,
            s,
            e,
            format!("`{}` cannot be used with --change", keyword.value),
            "this instruction",
            &format!("--change accepts {}", allowed()),
        ));
    }
    rbuild_solver::plan::apply_metadata(config, &text, instr).map_err(|e| plan_error(change, &e))
}

fn allowed() -> String {
    METADATA_INSTRUCTIONS.join(", ")
}

/// A planner error (spans into `PREFIX + change`) as an error pointing into the `--change`.
fn plan_error(change: &str, e: &rbuild_solver::plan::PlanError) -> ChangeError {
    use miette::Diagnostic;
    let (start, end, label) = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| {
            (
                l.offset().saturating_sub(PREFIX.len()),
                (l.offset() + l.len()).saturating_sub(PREFIX.len()),
                l.label().unwrap_or("here").to_string(),
            )
        })
        .unwrap_or((0, change.len(), "here".to_string()));
    let help = e
        .help()
        .map(|h| h.to_string())
        .unwrap_or_else(|| format!("--change accepts {}", allowed()));
    ChangeError::at(change, start, end, e.to_string(), &label, &help)
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

    /// A change means what the same line means in a Dockerfile (the planner's code applies
    /// it): relative WORKDIRs are joined and cleaned, EXPOSE takes `ip:host:` prefixes and any
    /// protocol case, a VOLUME word is one path.
    #[test]
    fn changes_mean_what_the_dockerfile_line_means() {
        let c = cfg(&[
            "WORKDIR /srv",
            "WORKDIR ../opt/./x",
            "EXPOSE 127.0.0.1:8080:80 53/UDP",
            "ENV DIR=/var/lib/app",
            "VOLUME $DIR /cache",
            "ENTRYPOINT [\"/bin/app\"]",
        ]);
        assert_eq!(c.working_dir.as_deref(), Some("/opt/x"));
        let ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        let volumes: Vec<&String> = c.volumes.as_ref().unwrap().keys().collect();
        assert_eq!(volumes, ["/cache", "/var/lib/app"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/app"]);
        // ENTRYPOINT after a CMD of the same import keeps it, as in one Dockerfile stage.
        let c = cfg(&["CMD [\"x\"]", "ENTRYPOINT [\"/e\"]"]);
        assert_eq!(c.cmd.unwrap(), ["x"]);
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

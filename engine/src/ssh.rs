//! `--ssh`: the agents a build may forward into `RUN --mount=type=ssh` steps, as buildx reads
//! them — `default` or `ID` (the caller's `$SSH_AUTH_SOCK`), `ID=SOCKET` (another agent's
//! socket) — and the check, before anything runs, that every required ssh mount of the needed
//! stages names an agent the build was given (an optional one is skipped, as BuildKit does).
//! Key files (`ID=KEY[,KEY]`, which buildx serves from an agent of its own) are refused with a
//! help line: load them into an agent with `ssh-add` and forward that.
//!
//! Neither the agent nor its keys enter a cache key: a step's key holds the mount's id and
//! settings only (`solver/src/plan/run.rs`), as BuildKit's exec op does.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt as _;
use std::path::PathBuf;

use miette::{Diagnostic, SourceSpan};
use rbuild_solver::op::{Op, RunMount};

use crate::Session;

/// The id an ssh mount without `id=` uses, and `--ssh default`.
pub const DEFAULT_ID: &str = "default";

/// Parse `--ssh` values into agent sockets by id. `auth_sock` is the caller's
/// `$SSH_AUTH_SOCK`, used for a value without a path.
pub fn parse(
    values: &[String],
    auth_sock: Option<&OsStr>,
) -> miette::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for raw in values {
        let (id, paths) = match raw.split_once('=') {
            Some((id, paths)) => (id.trim(), paths),
            None => (raw.trim(), ""),
        };
        if id.is_empty() {
            return Err(usage(
                format!("`--ssh {raw}` has no id"),
                "write `--ssh default`, `--ssh ID` or `--ssh ID=SOCKET`".into(),
            ));
        }
        if out.contains_key(id) {
            return Err(usage(
                format!("`--ssh {id}` is given twice"),
                "give each agent id once".into(),
            ));
        }
        let paths: Vec<&str> = paths.split(',').filter(|p| !p.is_empty()).collect();
        let socket = match paths.as_slice() {
            [] => match auth_sock.filter(|s| !s.is_empty()) {
                Some(sock) => PathBuf::from(sock),
                None => {
                    return Err(usage(
                        format!("`--ssh {raw}` forwards $SSH_AUTH_SOCK, which is not set"),
                        "start an agent (`eval $(ssh-agent)`, then `ssh-add`), or name a \
                         socket: `--ssh ID=/path/to/agent.sock`"
                            .into(),
                    ));
                }
            },
            [one] => PathBuf::from(one),
            _ => {
                return Err(usage(
                    format!("`--ssh {raw}` names several paths"),
                    "rbuild forwards one agent socket per id; load key files into an agent \
                     with `ssh-add KEY` and forward it"
                        .into(),
                ));
            }
        };
        match std::fs::metadata(&socket) {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(_) => {
                return Err(usage(
                    format!(
                        "`--ssh {id}`: `{}` is not an agent socket",
                        socket.display()
                    ),
                    "rbuild forwards agent sockets, not key files: load the key into an agent \
                     (`eval $(ssh-agent)`, `ssh-add KEY`) and pass `--ssh ID` or \
                     `--ssh ID=$SSH_AUTH_SOCK`"
                        .into(),
                ));
            }
            Err(e) => {
                return Err(usage(
                    format!("`--ssh {id}`: cannot use `{}`: {e}", socket.display()),
                    "name a running agent's socket (`echo $SSH_AUTH_SOCK`)".into(),
                ));
            }
        }
        out.insert(id.to_string(), socket);
    }
    Ok(out)
}

fn usage(message: String, help: String) -> miette::Report {
    miette::miette!(code = "rbuild::usage::ssh", help = help, "{message}")
}

/// A required ssh mount whose id the build was not given.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("no ssh agent `{id}` was given to the build")]
#[diagnostic(code(rbuild::build::ssh))]
pub struct NoAgent {
    pub id: String,
    #[label("this mount requires it")]
    pub span: SourceSpan,
    #[help]
    pub help: String,
}

/// Fail at the first required ssh mount of a needed stage whose id is not in `given`
/// (checked before anything runs, cached steps included).
pub fn check(prepared: &Session, given: &BTreeMap<String, PathBuf>) -> miette::Result<()> {
    for build in &prepared.platforms {
        let plan = &build.planned.plan;
        for &s in &build.order.order {
            for step in &plan.stages[s].steps {
                let Op::Run(run) = &step.op else { continue };
                for mount in &run.mounts {
                    let RunMount::Ssh {
                        id,
                        required: true,
                        span,
                        ..
                    } = mount
                    else {
                        continue;
                    };
                    if given.contains_key(id) {
                        continue;
                    }
                    let flag = if id == DEFAULT_ID {
                        "--ssh default".to_string()
                    } else {
                        format!("--ssh {id}")
                    };
                    let err = NoAgent {
                        id: id.clone(),
                        span: (span.start, span.end - span.start).into(),
                        help: format!(
                            "pass `{flag}` to forward $SSH_AUTH_SOCK (or `{flag}=SOCKET`), or \
                             drop `required` to run the step without an agent"
                        ),
                    };
                    return Err(prepared.dockerfile.report(err));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_sockets_by_id() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let got = parse(
            &["default".into(), format!("work={}", sock.display())],
            Some(sock.as_os_str()),
        )
        .unwrap();
        assert_eq!(got["default"], sock);
        assert_eq!(got["work"], sock);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn bad_values_are_usage_errors_with_help() {
        let t = tempfile::tempdir().unwrap();
        let key = t.path().join("id_ed25519");
        std::fs::write(&key, "not a socket").unwrap();
        for (values, auth, wanted) in [
            (vec!["default".to_string()], None, "not set"),
            (vec!["=x".into()], None, "has no id"),
            (
                vec![format!("k={}", key.display())],
                None,
                "is not an agent socket",
            ),
            (vec!["k=/nonexistent/agent".into()], None, "cannot use"),
            (
                vec![format!("k={}", key.display()), "k".into()],
                Some(key.as_os_str()),
                "is not an agent socket",
            ),
        ] {
            let err = parse(&values, auth).unwrap_err();
            assert!(err.to_string().contains(wanted), "{values:?}: {err}");
            assert!(err.help().is_some(), "{values:?}");
        }
        let _l = std::os::unix::net::UnixListener::bind(t.path().join("s")).unwrap();
        let s = t.path().join("s");
        let err = parse(
            &[format!("a={}", s.display()), format!("a={}", s.display())],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }
}

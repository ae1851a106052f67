//! RUN: the final argv (shell form wrapped in SHELL, here-documents turned into a script or a
//! reconstructed shell command as BuildKit does), the process environment, and `--mount`s
//! re-parsed after variable expansion. An ssh mount gets BuildKit's defaults (id `default`,
//! target `/run/buildkit/ssh_agent.N`, mode 0600) and `SSH_AUTH_SOCK` names the first one.

use std::collections::BTreeMap;

use rbuild_parser::{
    CommandForm, Heredoc, Mount, MountSharing, MountType, NetworkMode, Run, SecurityMode,
    parse_mount_with,
};

use super::error::PlanError;
use super::expand;
use super::state::StageState;
use super::{Ctx, PROXY_ARGS};
use crate::op::{FileSource, Network, Op, RunMount, RunOp, Security, Sharing, Step};

/// Where a single shebang heredoc script is mounted (BuildKit's path).
const PIPES_DIR: &str = "/dev/pipes";

pub fn dispatch(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    stage: usize,
    run: &Run,
    step: &mut Step,
) -> Result<(), PlanError> {
    let mut mounts = Vec::new();
    let argv = match &run.command {
        CommandForm::Exec(words) => {
            if !run.heredocs.is_empty() {
                return Err(PlanError::invalid(
                    run.meta.span,
                    "here-documents need the shell form of RUN",
                    "exec form with a here-document",
                    Some("write `RUN <<EOF` ... `EOF` without the JSON array".into()),
                ));
            }
            words.iter().map(|w| w.value.clone()).collect()
        }
        CommandForm::Shell(word) => {
            let mut args = state.shell();
            match run.heredocs.as_slice() {
                [] => args.push(word.value.clone()),
                [doc] if is_only_heredoc(&word.value, doc) => {
                    let data = doc.content().into_owned();
                    if data.starts_with("#!") {
                        // BuildKit writes the script (0755) into a read-only mount at
                        // `/dev/pipes/` and has the shell run it, so the kernel starts the
                        // shebang's interpreter: argv is SHELL + the script's path.
                        let target = format!("{PIPES_DIR}/{}", doc.name);
                        mounts.push(RunMount::InlineFile {
                            target: target.clone(),
                            content: data.into_bytes(),
                            mode: 0o755,
                        });
                        args.push(target);
                    } else {
                        args.push(data);
                    }
                }
                docs => {
                    // Let the shell read the here-documents itself.
                    let mut script = word.value.clone();
                    for doc in docs {
                        script.push('\n');
                        script.push_str(&doc.body);
                        script.push_str(&doc.name);
                    }
                    args.push(script);
                }
            }
            args
        }
    };

    for mount in &run.mounts {
        let ssh_index = mounts
            .iter()
            .filter(|m| matches!(m, RunMount::Ssh { .. }))
            .count();
        mounts.push(convert_mount(ctx, state, stage, mount, ssh_index, step)?);
    }
    let network = match run.network.as_ref().and_then(|f| f.value) {
        None | Some(NetworkMode::Default) => Network::Default,
        Some(NetworkMode::None) => Network::None,
        Some(NetworkMode::Host) => Network::Host,
    };
    let security = match run.security.as_ref().and_then(|f| f.value) {
        None | Some(SecurityMode::Sandbox) => Security::Sandbox,
        Some(SecurityMode::Insecure) => Security::Insecure,
    };

    let mut env = state.run_env();
    // As BuildKit: the first ssh mount is the agent, unless the environment names one.
    if let Some(RunMount::Ssh { target, .. }) =
        mounts.iter().find(|m| matches!(m, RunMount::Ssh { .. }))
        && !env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK")
    {
        env.push(("SSH_AUTH_SOCK".to_string(), target.clone()));
    }
    // Proxy build args reach RUN without an ARG line but stay out of keys and history.
    for name in PROXY_ARGS {
        if let Some(value) = ctx.opts.build_args.get(*name)
            && !env.iter().any(|(k, _)| k == name)
        {
            env.push((name.to_string(), value.clone()));
        }
    }
    step.key.canonical = format!(
        "RUN {}",
        serde_json::to_string(&argv).expect("strings serialise")
    );
    step.key.vars = state
        .run_env()
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    let workdir = state.workdir();
    let user = state.user();
    step.key.inputs.insert("workdir".into(), workdir.clone());
    step.key.inputs.insert("user".into(), user.clone());
    step.key
        .inputs
        .insert("network".into(), format!("{network:?}").to_lowercase());
    step.key
        .inputs
        .insert("security".into(), format!("{security:?}").to_lowercase());
    for mount in &mounts {
        let (name, spec) = mount_key(mount);
        step.key.inputs.insert(name, spec);
    }
    step.created_by = format!("RUN {} # buildkit", run_command_string(&argv, state));
    step.op = Op::Run(RunOp {
        argv,
        env,
        workdir,
        user,
        network,
        security,
        mounts,
    });
    Ok(())
}

/// True when the command line is nothing but the here-document's marker (`<<EOF`, `<<-EOF`,
/// `<<"EOF"`): the body is then the script itself.
fn is_only_heredoc(cmdline: &str, doc: &Heredoc) -> bool {
    let rest = cmdline.trim();
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    unquoted == doc.name
}

/// BuildKit's history text for RUN: `|N K=V ... argv...` when the stage declared ARGs.
fn run_command_string(argv: &[String], state: &StageState) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (name, value) in &state.build_args {
        let value = state
            .vars
            .get(name)
            .map(str::to_string)
            .or_else(|| value.clone())
            .unwrap_or_default();
        parts.push(format!("{name}={value}"));
    }
    if !parts.is_empty() {
        parts.insert(0, format!("|{}", parts.len()));
    }
    parts.extend(argv.iter().cloned());
    parts.join(" ")
}

/// The key entry of a mount: what it is, never a secret's value or a cache's contents.
fn mount_key(mount: &RunMount) -> (String, String) {
    match mount {
        RunMount::Bind {
            target,
            from,
            source,
            rw,
        } => (
            format!("mount:{target}"),
            format!("bind from={} source={source} rw={rw}", source_key(from)),
        ),
        RunMount::Cache {
            id,
            target,
            sharing,
            readonly,
            mode,
            uid,
            gid,
            from,
            subpath,
        } => (
            format!("mount:{target}"),
            format!(
                "cache id={id} sharing={sharing:?} ro={readonly} mode={mode:o} uid={uid} gid={gid} from={}{}",
                from.as_ref()
                    .map(|(s, p)| format!("{}:{p}", source_key(s)))
                    .unwrap_or_default(),
                // Only a subdirectory is named: keys of whole-cache mounts stay as they were.
                if subpath == "/" {
                    String::new()
                } else {
                    format!(" subpath={subpath}")
                }
            ),
        ),
        RunMount::Tmpfs { target, size } => (
            format!("mount:{target}"),
            format!("tmpfs size={}", size.unwrap_or(0)),
        ),
        RunMount::Secret {
            id,
            target,
            env,
            required,
            mode,
            uid,
            gid,
        } => (
            format!("mount:secret:{id}"),
            format!(
                "secret target={} env={} required={required} mode={mode:o} uid={uid} gid={gid}",
                target.as_deref().unwrap_or(""),
                env.as_deref().unwrap_or("")
            ),
        ),
        // The id and settings, as BuildKit's exec op holds them; never the agent.
        RunMount::Ssh {
            id,
            target,
            required,
            mode,
            uid,
            gid,
            span: _,
        } => (
            format!("mount:{target}"),
            format!("ssh id={id} required={required} mode={mode:o} uid={uid} gid={gid}"),
        ),
        RunMount::InlineFile {
            target,
            content,
            mode,
        } => (
            format!("mount:{target}"),
            format!(
                "file mode={mode:o} blake3={}",
                blake3::hash(content).to_hex()
            ),
        ),
    }
}

fn source_key(source: &FileSource) -> String {
    match source {
        FileSource::Context => "context".into(),
        // The stage's content enters the key through `stage:<name>` inputs.
        FileSource::Stage(i) => format!("stage-{i}"),
        FileSource::Image(img) => img.manifest_digest.to_string(),
    }
}

fn convert_mount(
    ctx: &Ctx<'_>,
    state: &StageState,
    stage: usize,
    mount: &Mount,
    ssh_index: usize,
    step: &mut Step,
) -> Result<RunMount, PlanError> {
    let mut used = BTreeMap::new();
    let mut expand_err = None;
    let span = mount.span;
    let parsed = parse_mount_with(&mount.raw, &mut |value| {
        let word = rbuild_parser::Word::new(value, span);
        expand::word(&state.vars, &word, ctx.escape, &mut used).map_err(|e| {
            let message = e.to_string();
            expand_err = Some(e);
            message
        })
    });
    if let Some(err) = expand_err {
        return Err(err);
    }
    let m = parsed.map_err(|e| {
        PlanError::invalid(
            span,
            format!("invalid --mount: {}", e.message),
            "in this mount",
            e.help.clone(),
        )
    })?;
    for (k, v) in used {
        step.key.vars.insert(k, v);
    }
    let target = m.target.clone();
    let need_target = |kind: &str| {
        target.clone().ok_or_else(|| {
            PlanError::invalid(
                span,
                format!("a {kind} mount needs a target"),
                "no target=",
                Some("add `target=/path`".into()),
            )
        })
    };
    let from = match &m.from {
        None => None,
        Some(value) => Some(match ctx.stage_ref(value, stage, span)? {
            Some(i) => FileSource::Stage(i),
            None => FileSource::Image(
                ctx.resolve_not_stage(value, span, ctx.names, ctx.target_platform)?
                    .base,
            ),
        }),
    };
    let sharing = match m.sharing {
        None | Some(MountSharing::Shared) => Sharing::Shared,
        Some(MountSharing::Private) => Sharing::Private,
        Some(MountSharing::Locked) => Sharing::Locked,
    };
    Ok(match m.kind {
        MountType::Bind => RunMount::Bind {
            target: absolute(&state.workdir(), &need_target("bind")?),
            from: from.unwrap_or(FileSource::Context),
            source: m.source.clone().unwrap_or_else(|| "/".into()),
            rw: is_rw(&mount.raw),
        },
        MountType::Cache => {
            let target = absolute(&state.workdir(), &need_target("cache")?);
            RunMount::Cache {
                id: m.id.clone().unwrap_or_else(|| target.clone()),
                target,
                sharing,
                readonly: m.readonly,
                mode: m.mode.unwrap_or(0o755),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                // With `from`, `source` names the seed's directory; without, a directory of
                // the cache itself.
                subpath: match (&from, &m.source) {
                    (None, Some(source)) => super::meta::clean_path(source),
                    _ => "/".into(),
                },
                from: from.map(|f| (f, m.source.clone().unwrap_or_else(|| "/".into()))),
            }
        }
        MountType::Tmpfs => RunMount::Tmpfs {
            target: absolute(&state.workdir(), &need_target("tmpfs")?),
            size: m.size,
        },
        MountType::Secret => {
            let id = match (&m.id, &target) {
                (Some(id), _) => id.clone(),
                (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
                (None, None) => {
                    return Err(PlanError::invalid(
                        span,
                        "a secret mount needs an id or a target",
                        "no id= or target=",
                        Some("add `id=NAME` (given with `--secret id=NAME,src=FILE`)".into()),
                    ));
                }
            };
            let target = match (&target, &m.env) {
                (Some(t), _) => Some(absolute(&state.workdir(), t)),
                (None, Some(_)) => None,
                (None, None) => Some(format!("/run/secrets/{id}")),
            };
            RunMount::Secret {
                id,
                target,
                env: m.env.clone(),
                required: m.required,
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            }
        }
        MountType::Ssh => {
            if m.source.is_some() {
                return Err(PlanError::invalid(
                    span,
                    "an ssh mount does not take a source",
                    "source= in an ssh mount",
                    Some("name the agent with `id=NAME` (given with `--ssh NAME=...`)".into()),
                ));
            }
            // BuildKit keeps a target as written: a relative one is relative to `/`.
            let target = match &target {
                Some(t) => absolute("/", t),
                None => format!("/run/buildkit/ssh_agent.{ssh_index}"),
            };
            RunMount::Ssh {
                id: m.id.clone().unwrap_or_else(|| "default".into()),
                target,
                required: m.required,
                mode: m.mode.unwrap_or(0o600),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                span: span.start..span.end,
            }
        }
    })
}

/// Whether a bind mount's options ask for read-write (`rw`, `readwrite`, `rw=true`).
fn is_rw(raw: &str) -> bool {
    raw.split(',').any(|field| {
        let (k, v) = field.split_once('=').unwrap_or((field, "true"));
        matches!(k.trim(), "rw" | "readwrite") && v.trim().eq_ignore_ascii_case("true")
    })
}

fn absolute(workdir: &str, path: &str) -> String {
    super::meta::normalize_workdir(workdir, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            body: "x\n".into(),
            expand: true,
            strip_tabs: false,
            fd: None,
            span: rbuild_parser::Span::default(),
        }
    }

    #[test]
    fn only_heredoc_detection() {
        assert!(is_only_heredoc("<<EOT", &doc("EOT")));
        assert!(is_only_heredoc(" <<-EOT ", &doc("EOT")));
        assert!(is_only_heredoc("<<'EOT'", &doc("EOT")));
        assert!(!is_only_heredoc("<<EOT cat - > /x", &doc("EOT")));
        assert!(!is_only_heredoc("cat <<EOT", &doc("EOT")));
    }

    #[test]
    fn rw_detection() {
        assert!(is_rw("type=bind,target=/x,rw"));
        assert!(is_rw("target=/x,readwrite=true"));
        assert!(!is_rw("target=/x,source=rw"));
        assert!(!is_rw("target=/x,rw=false"));
    }
}

//! `--ssh`: the agents a build may forward into `RUN --mount=type=ssh` steps, as buildx reads
//! them — `default` or `ID` (the caller's `$SSH_AUTH_SOCK`), `ID=SOCKET` (another agent's
//! socket), `ID=KEY[,KEY...]` (OpenSSH private key files, served for the build by an agent of
//! rbuild's, as buildx serves them: list and sign; ed25519 and ECDSA P-256/P-384 keys, while
//! RSA keys and passphrase-protected ones are refused with a help line: load those with
//! `ssh-add` and forward the agent) —
//! and the check, before anything runs, that every required ssh mount of the needed stages
//! names an agent the build was given (an optional one is skipped, as BuildKit does).
//!
//! Neither the agent nor its keys enter a cache key: a step's key holds the mount's id and
//! settings only (`solver/src/plan/run.rs`), as BuildKit's exec op does.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, SourceSpan};
use rbuild_executor::agent_proxy::{AgentSocket, FAILURE, OpenSession};
use rbuild_solver::op::{Op, RunMount};
use ssh_key::{Algorithm, PrivateKey};

use crate::Session;

/// Where the agent of one `--ssh` id is.
#[derive(Debug, Clone)]
pub enum SshSource {
    /// A running agent's socket.
    Socket(PathBuf),
    /// Private keys, served for the build by an agent of rbuild's ([`Agents::start`]).
    Keys(Arc<Vec<PrivateKey>>),
}

/// The id an ssh mount without `id=` uses, and `--ssh default`.
pub const DEFAULT_ID: &str = "default";

/// Parse `--ssh` values into agents by id. `auth_sock` is the caller's `$SSH_AUTH_SOCK`, used
/// for a value without a path. Key files are read and parsed here.
pub fn parse(
    values: &[String],
    auth_sock: Option<&OsStr>,
) -> miette::Result<BTreeMap<String, SshSource>> {
    let mut out = BTreeMap::new();
    for raw in values {
        let (id, paths) = match raw.split_once('=') {
            Some((id, paths)) => (id.trim(), paths),
            None => (raw.trim(), ""),
        };
        if id.is_empty() {
            return Err(usage(
                format!("`--ssh {raw}` has no id"),
                "write `--ssh default`, `--ssh ID`, `--ssh ID=SOCKET` or `--ssh ID=KEY`".into(),
            ));
        }
        if out.contains_key(id) {
            return Err(usage(
                format!("`--ssh {id}` is given twice"),
                "give each agent id once".into(),
            ));
        }
        let mut paths: Vec<PathBuf> = paths
            .split(',')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if paths.is_empty() {
            match auth_sock.filter(|s| !s.is_empty()) {
                Some(sock) => paths.push(PathBuf::from(sock)),
                None => {
                    return Err(usage(
                        format!("`--ssh {raw}` forwards $SSH_AUTH_SOCK, which is not set"),
                        "start an agent (`eval $(ssh-agent)`, then `ssh-add`), or name a \
                         socket or key: `--ssh ID=/path/to/agent.sock`, `--ssh ID=~/.ssh/id_ed25519`"
                            .into(),
                    ));
                }
            }
        }
        let mut sockets = Vec::new();
        let mut keys = Vec::new();
        for path in &paths {
            match std::fs::metadata(path) {
                Ok(meta) if meta.file_type().is_socket() => sockets.push(path.clone()),
                Ok(_) => keys.push(read_key(id, path)?),
                Err(e) => {
                    return Err(usage(
                        format!("`--ssh {id}`: cannot use `{}`: {e}", path.display()),
                        "name a running agent's socket (`echo $SSH_AUTH_SOCK`) or a private \
                         key file"
                            .into(),
                    ));
                }
            }
        }
        let source = match (sockets.as_slice(), keys.is_empty()) {
            ([socket], true) => SshSource::Socket(socket.clone()),
            ([], false) => SshSource::Keys(Arc::new(keys)),
            _ => {
                return Err(usage(
                    format!("`--ssh {raw}` names more than one socket, or sockets and keys"),
                    "give one agent socket, or key files, per id".into(),
                ));
            }
        };
        out.insert(id.to_string(), source);
    }
    Ok(out)
}

/// The largest key file read (buildx reads 100 KiB).
const MAX_KEY: u64 = 100 * 1024;

/// An unencrypted OpenSSH private key of a kind the agent can sign with.
fn read_key(id: &str, path: &Path) -> miette::Result<PrivateKey> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY).read_to_end(&mut text))
        .map_err(|e| {
            usage(
                format!("`--ssh {id}`: cannot read `{}`: {e}", path.display()),
                "name a readable private key file".into(),
            )
        })?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        usage(
            format!(
                "`--ssh {id}`: `{}` is neither an agent socket nor an OpenSSH private key ({e})",
                path.display()
            ),
            "give the private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`), or load it with \
             `ssh-add KEY` and pass `--ssh ID=$SSH_AUTH_SOCK`"
                .into(),
        )
    })?;
    if key.is_encrypted() {
        return Err(usage(
            format!(
                "`--ssh {id}`: `{}` is protected by a passphrase",
                path.display()
            ),
            "load it into an agent (`eval $(ssh-agent)`, `ssh-add KEY`) and pass `--ssh ID`".into(),
        ));
    }
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(key),
        // ssh-key 0.6 builds RSA signing keys wrongly (its second prime is the first), so
        // its signatures fail: such keys go through a real agent.
        other => Err(usage(
            format!(
                "`--ssh {id}`: `{}` is a {} key, which rbuild's agent cannot sign with",
                path.display(),
                other.as_str()
            ),
            "load it into an agent (`eval $(ssh-agent)`, `ssh-add KEY`) and pass `--ssh ID`, \
             or use an ed25519 or ECDSA key"
                .into(),
        )),
    }
}

/// The agents of a build: each id's socket, and the sockets rbuild serves keys on (for as
/// long as this lives).
pub struct Agents {
    pub sockets: BTreeMap<String, PathBuf>,
    _served: Vec<AgentSocket>,
}

impl Agents {
    /// Serve the key files of `given` (readable by this user only) and name every socket.
    pub fn start(given: &BTreeMap<String, SshSource>) -> miette::Result<Agents> {
        let mut sockets = BTreeMap::new();
        let mut served = Vec::new();
        for (id, source) in given {
            let socket = match source {
                SshSource::Socket(path) => path.clone(),
                SshSource::Keys(keys) => {
                    let keys = keys.clone();
                    let open: OpenSession = Arc::new(move || {
                        let keys = keys.clone();
                        Ok(Box::new(move |request: Vec<u8>| {
                            Ok(answer(&keys, &request))
                        }))
                    });
                    let uid = rustix::process::getuid().as_raw();
                    let gid = rustix::process::getgid().as_raw();
                    let agent = AgentSocket::serve(uid, gid, 0o600, open).map_err(|e| {
                        miette::miette!(
                            code = "rbuild::build::ssh",
                            "cannot serve the keys of `--ssh {id}`: {e}"
                        )
                    })?;
                    let path = agent.socket();
                    served.push(agent);
                    path
                }
            };
            sockets.insert(id.clone(), socket);
        }
        Ok(Agents {
            sockets,
            _served: served,
        })
    }
}

/// `SSH_AGENTC_REQUEST_IDENTITIES`, `SSH_AGENT_IDENTITIES_ANSWER`, `SSH_AGENTC_SIGN_REQUEST`,
/// `SSH_AGENT_SIGN_RESPONSE`.
const LIST: u8 = 11;
const LISTED: u8 = 12;
const SIGN: u8 = 13;
const SIGNED: u8 = 14;

/// The agent's answer to one request: list the keys or sign; anything else fails.
fn answer(keys: &[PrivateKey], request: &[u8]) -> Vec<u8> {
    match request.split_first() {
        Some((&LIST, _)) => {
            let mut out = vec![LISTED];
            out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
            for key in keys {
                put_string(&mut out, &key.public_key().to_bytes().unwrap_or_default());
                put_string(&mut out, key.comment().as_bytes());
            }
            out
        }
        Some((&SIGN, body)) => sign(keys, body).unwrap_or_else(|| vec![FAILURE]),
        _ => vec![FAILURE],
    }
}

/// `string key blob, string data, uint32 flags` → the signature, or `None` (a failure) for an
/// unknown key. (The flags only choose RSA hashes, and RSA keys are not served.)
fn sign(keys: &[PrivateKey], mut body: &[u8]) -> Option<Vec<u8>> {
    let blob = take_string(&mut body)?;
    let data = take_string(&mut body)?;
    body.get(..4)?;
    let key = keys
        .iter()
        .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(blob))?;
    let signature: ssh_key::Signature = signature::Signer::try_sign(key, data).ok()?;
    let mut encoded = Vec::new();
    put_string(&mut encoded, signature.algorithm().as_str().as_bytes());
    put_string(&mut encoded, signature.as_bytes());
    let mut out = vec![SIGNED];
    put_string(&mut out, &encoded);
    Some(out)
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_string<'a>(from: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(from.get(..4)?.try_into().ok()?) as usize;
    let s = from.get(4..4 + len)?;
    *from = &from[4 + len..];
    Some(s)
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
pub fn check(prepared: &Session, given: &BTreeMap<String, SshSource>) -> miette::Result<()> {
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
                            "pass `{flag}` to forward $SSH_AUTH_SOCK (or `{flag}=SOCKET|KEY`), \
                             or drop `required` to run the step without an agent"
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

    fn keygen(dir: &Path, kind: &str, bits: Option<&str>) -> PathBuf {
        let key = dir.join(format!("id_{kind}{}", bits.unwrap_or_default()));
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args([
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            &format!("test-{kind}"),
            "-f",
        ])
        .arg(&key);
        if let Some(bits) = bits {
            cmd.args(["-b", bits]);
        }
        let out = cmd
            .output()
            .expect("ssh-keygen (openssh-client) must be installed for these tests");
        assert!(out.status.success(), "{out:?}");
        key
    }

    #[test]
    fn values_name_sockets_or_keys_by_id() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let key = keygen(t.path(), "ed25519", None);
        let got = parse(
            &[
                "default".into(),
                format!("work={}", sock.display()),
                format!("keys={}", key.display()),
            ],
            Some(sock.as_os_str()),
        )
        .unwrap();
        assert!(matches!(&got["default"], SshSource::Socket(p) if *p == sock));
        assert!(matches!(&got["work"], SshSource::Socket(p) if *p == sock));
        assert!(matches!(&got["keys"], SshSource::Keys(k) if k.len() == 1));
    }

    #[test]
    fn bad_values_are_usage_errors_with_help() {
        let t = tempfile::tempdir().unwrap();
        let junk = t.path().join("junk");
        std::fs::write(&junk, "not a key").unwrap();
        let locked = t.path().join("locked");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
            .arg(&locked)
            .output()
            .expect("ssh-keygen (openssh-client) must be installed for these tests");
        assert!(out.status.success(), "{out:?}");
        let rsa = keygen(t.path(), "rsa", Some("2048"));
        let sock = t.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for (values, auth, wanted) in [
            (vec!["default".to_string()], None, "not set"),
            (vec!["=x".into()], None, "has no id"),
            (
                vec![format!("k={}", junk.display())],
                None,
                "neither an agent socket",
            ),
            (vec![format!("k={}", locked.display())], None, "passphrase"),
            (
                vec![format!("k={}", rsa.display())],
                None,
                "cannot sign with",
            ),
            (vec!["k=/nonexistent/agent".into()], None, "cannot use"),
            (
                vec![format!("k={},{}", sock.display(), sock.display())],
                None,
                "more than one socket",
            ),
            (
                vec![
                    format!("a={}", sock.display()),
                    format!("a={}", sock.display()),
                ],
                None,
                "given twice",
            ),
        ] {
            let err = parse(&values, auth).unwrap_err();
            assert!(err.to_string().contains(wanted), "{values:?}: {err}");
            assert!(err.help().is_some(), "{values:?}");
        }
    }

    /// OpenSSH's own tools use the agent rbuild serves key files on: `ssh-add -l` lists each
    /// key with its comment, and `ssh-keygen -Y sign` signs through it a signature that
    /// `ssh-keygen -Y check-novalidate` accepts — for each key kind the agent supports.
    #[test]
    fn key_files_are_served_to_openssh() {
        let t = tempfile::tempdir().unwrap();
        for (kind, bits) in [
            ("ed25519", None),
            ("ecdsa", Some("256")),
            ("ecdsa", Some("384")),
        ] {
            let key = keygen(t.path(), kind, bits);
            let given = parse(&[format!("k={}", key.display())], None).unwrap();
            let agents = Agents::start(&given).unwrap();
            let sock = &agents.sockets["k"];
            let run = |args: &[&str], stdin: Option<&Path>| {
                let mut cmd = std::process::Command::new(args[0]);
                cmd.args(&args[1..]).env("SSH_AUTH_SOCK", sock);
                if let Some(file) = stdin {
                    cmd.stdin(std::fs::File::open(file).unwrap());
                }
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{kind}: {args:?}: {out:?}");
                String::from_utf8(out.stdout).unwrap()
            };
            let listed = run(&["ssh-add", "-l"], None);
            let expected = run(
                &["ssh-keygen", "-l", "-f", &format!("{}.pub", key.display())],
                None,
            );
            let fingerprint = expected.split_whitespace().nth(1).unwrap();
            assert!(
                listed.contains(fingerprint),
                "{kind}: {listed} / {expected}"
            );
            assert!(listed.contains(&format!("test-{kind}")), "{listed}");
            // Sign with the public key only: the private half is the agent's.
            let data = t
                .path()
                .join(format!("data-{kind}{}", bits.unwrap_or_default()));
            std::fs::write(&data, b"signed through rbuild's agent").unwrap();
            let public = format!("{}.pub", key.display());
            run(
                &[
                    "ssh-keygen",
                    "-Y",
                    "sign",
                    "-f",
                    &public,
                    "-n",
                    "test",
                    data.to_str().unwrap(),
                ],
                None,
            );
            let sig = format!("{}.sig", data.display());
            let checked = run(
                &[
                    "ssh-keygen",
                    "-Y",
                    "check-novalidate",
                    "-n",
                    "test",
                    "-s",
                    &sig,
                ],
                Some(&data),
            );
            assert!(checked.contains("Good"), "{kind}: {checked}");
        }
    }

    #[test]
    fn other_requests_and_unknown_keys_fail() {
        assert_eq!(answer(&[], &[17, 0]), [FAILURE]);
        assert_eq!(answer(&[], &[LIST]), [LISTED, 0, 0, 0, 0]);
        let mut req = vec![SIGN];
        put_string(&mut req, b"no such key");
        put_string(&mut req, b"data");
        req.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(answer(&[], &req), [FAILURE]);
        assert_eq!(answer(&[], &[SIGN, 0, 0]), [FAILURE]);
    }
}

//! Registry credentials: read from docker's `config.json` (`auths`, `credsStore`,
//! `credHelpers`) through docker_credential, and written back by `login`/`logout` (an `auths`
//! entry, written 0600 through a temporary file and a rename, or the configured helper's
//! `store`/`erase`). Secrets never appear in Debug output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::canonical_registry;
use crate::error::{RegistryError, Result};

/// A credential for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or access token used as a password).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint by POST.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic …` value, when this is a username/password.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Where credentials come from. The default reads docker's configuration; tests and embedders
/// may supply fixed ones.
pub trait CredentialProvider: Send + Sync {
    /// The credential for `host` (`host[:port]` of the endpoint), or `None` for anonymous.
    fn get(&self, host: &str) -> Result<Option<Credential>>;
}

/// Docker's `config.json` (honouring `$DOCKER_CONFIG`), including credential helpers.
#[derive(Debug, Default, Clone, Copy)]
pub struct DockerConfigCredentials;

/// The key docker uses for a registry host in `config.json` and with helpers.
pub fn server_key(host: &str) -> String {
    if canonical_registry(host) == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

impl CredentialProvider for DockerConfigCredentials {
    fn get(&self, host: &str) -> Result<Option<Credential>> {
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        // No config file (a fresh CI runner): anonymous. The crate reports a missing file as
        // a read error, which must not hide the registry's own 401 and its login hint.
        if docker_config_path().is_ok_and(|path| !path.exists()) {
            return Ok(None);
        }
        match docker_credential::get_credential(&server_key(host)) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                Ok(Some(Credential::Basic { username, password }))
            }
            Ok(DockerCredential::IdentityToken(token)) => {
                Ok(Some(Credential::IdentityToken(token)))
            }
            Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(None),
            // A helper that knows nothing about this server exits non-zero with
            // "credentials not found"; that is "anonymous", not a failure.
            Err(E::HelperFailure { stdout, stderr, .. })
                if (stdout.contains("credentials not found")
                    || stderr.contains("credentials not found")) =>
            {
                Ok(None)
            }
            Err(E::HelperFailure { helper, stderr, .. }) => Err(RegistryError::Credentials {
                registry: host.to_string(),
                reason: format!("credential helper `{helper}` failed: {}", stderr.trim()),
            }),
            Err(other) => Err(RegistryError::Credentials {
                registry: host.to_string(),
                reason: other.to_string().to_lowercase(),
            }),
        }
    }
}

/// Fixed credentials per host (for embedders and tests).
#[derive(Debug, Default, Clone)]
pub struct StaticCredentials(pub Vec<(String, Credential)>);

impl CredentialProvider for StaticCredentials {
    fn get(&self, host: &str) -> Result<Option<Credential>> {
        Ok(self
            .0
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, c)| c.clone()))
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
        .ok_or_else(|| RegistryError::Credentials {
            registry: String::new(),
            reason: "neither `$DOCKER_CONFIG` nor `$HOME` is set".into(),
        })
}

fn read_config(path: &PathBuf, host: &str) -> Result<Map<String, Value>> {
    match fs_err::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(RegistryError::Credentials {
                registry: host.into(),
                reason: format!("`{}` is not a JSON object", path.display()),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(RegistryError::io(
            format!("reading `{}`", path.display()),
            e,
        )),
    }
}

fn write_config(path: &PathBuf, map: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    fs_err::create_dir_all(dir)
        .map_err(|e| RegistryError::io("creating the docker config directory", e))?;
    let what = || format!("writing `{}`", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| RegistryError::io(what(), e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| RegistryError::io(what(), e))?;
    let mut text =
        serde_json::to_vec_pretty(&Value::Object(map.clone())).expect("json value serializes");
    text.push(b'\n');
    tmp.write_all(&text)
        .map_err(|e| RegistryError::io(what(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| RegistryError::io(what(), e))?;
    tmp.persist(path)
        .map_err(|e| RegistryError::io(what(), e.error))?;
    Ok(())
}

/// The helper configured for `key`: `credHelpers[key]`, else `credsStore`.
fn helper_for(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(Value::as_str)
        .or_else(|| map.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &str, input: &[u8], host: &str) -> Result<()> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| RegistryError::Credentials {
        registry: host.into(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run credential helper `{program}`: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .map_err(|e| fail(format!("credential helper `{program}`: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("credential helper `{program}`: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        // Helpers print their error on stdout; neither stream ever contains the secret we sent.
        let msg = String::from_utf8_lossy(if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        })
        .trim()
        .to_string();
        Err(fail(format!(
            "credential helper `{program} {action}` failed: {msg}"
        )))
    }
}

/// Store a username/password for `host` the way `docker login` does.
pub fn store_login(host: &str, username: &str, password: &str) -> Result<PathBuf> {
    let path = docker_config_path()?;
    let mut map = read_config(&path, host)?;
    let key = server_key(host);
    let auths = map
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let entry = if let Some(helper) = helper_for(&map, &key) {
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        run_helper(&helper, "store", input.to_string().as_bytes(), host)?;
        Value::Object(Map::new())
    } else {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        serde_json::json!({ "auth": auth })
    };
    map.get_mut("auths")
        .and_then(Value::as_object_mut)
        .expect("auths is an object")
        .insert(key, entry);
    write_config(&path, &map)?;
    Ok(path)
}

/// Forget the credentials for `host`. Returns false when there were none.
pub fn remove_login(host: &str) -> Result<bool> {
    let path = docker_config_path()?;
    let mut map = read_config(&path, host)?;
    let key = server_key(host);
    let mut removed = false;
    if let Some(helper) = helper_for(&map, &key) {
        match run_helper(&helper, "erase", key.as_bytes(), host) {
            Ok(()) => removed = true,
            Err(RegistryError::Credentials { reason, .. })
                if reason.contains("credentials not found") => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(auths) = map.get_mut("auths").and_then(Value::as_object_mut) {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| {
                **k == key
                    || k.trim_start_matches("https://")
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        == Some(host)
            })
            .cloned()
            .collect();
        for k in keys {
            auths.remove(&k);
            removed = true;
        }
    }
    if removed {
        write_config(&path, &map)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken("tok123".into())).contains("tok123"));
    }

    #[test]
    fn docker_hub_uses_the_v1_key() {
        assert_eq!(
            server_key("registry-1.docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}

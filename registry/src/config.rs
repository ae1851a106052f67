//! `registries.toml`: per-registry mirrors and insecure (plain HTTP) opt-ins, plus network
//! timeouts, retries, parallelism and upload chunking (the keys: [`RegistriesConfig`]). Turns a
//! registry name into the ordered endpoints to try.
//!
//! Read from `$ROOT/registries.toml` (the store root), else `$XDG_CONFIG_HOME/rbuild/` (or
//! `~/.config/rbuild/`); every key is optional. Pulls try the mirrors in order, then the
//! registry itself; pushes go to the registry. A mirror is `[http[s]://]host[:port][/prefix]`:
//! `docker.io/library/nginx` is requested as `/v2/<prefix>/library/nginx/...` on it, and an
//! explicit `http://` opts that mirror into plain HTTP. Otherwise plain HTTP is allowed only
//! for loopback hosts and registries with `insecure = true`. This is how `FROM nginx` works in
//! an offline CI: seed a local registry with `library/nginx` and map `docker.io` to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{RegistryError, Result};

/// The parsed configuration file. Every field is optional; an absent file means defaults.
///
/// ```toml
/// [network]
/// connect_timeout_secs = 15   # TCP + TLS connect
/// read_timeout_secs = 30      # idle time between two reads (not a total)
/// retries = 5                 # attempts on resets, 5xx and 429
/// parallel = 4                # concurrent blob transfers
/// backoff_ms = 250            # first retry delay, doubled per attempt, with jitter
/// chunk_size_mb = 16          # optional: chunked uploads instead of one PUT per blob
///
/// [registries."docker.io"]
/// mirrors = ["http://127.0.0.1:5000", "mirror.example.com/dockerhub"]
///
/// [registries."registry.internal:5000"]
/// insecure = true             # plain HTTP allowed (TLS otherwise)
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryEntry>,
}

/// One `[registries."host"]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Endpoints tried in order before the registry itself, for pulls only.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Allow plain HTTP to this host.
    #[serde(default)]
    pub insecure: bool,
}

/// The `[network]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub connect_timeout_secs: f64,
    pub read_timeout_secs: f64,
    pub retries: u32,
    pub parallel: usize,
    /// First backoff delay in milliseconds (doubles per attempt, with jitter).
    pub backoff_ms: u64,
    /// Upload blobs in chunks of this many MiB instead of one PUT (for registries or
    /// proxies that limit request sizes).
    pub chunk_size_mb: Option<u64>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            connect_timeout_secs: 15.0,
            read_timeout_secs: 30.0,
            retries: 5,
            parallel: 4,
            backoff_ms: 250,
            chunk_size_mb: None,
        }
    }
}

impl NetworkConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs.max(0.05))
    }
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.read_timeout_secs.max(0.05))
    }
}

/// Where to send requests for one registry: scheme + authority + optional repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` or `http`.
    pub scheme: String,
    /// `host[:port]` as it appears in URLs; credentials and tokens are bound to it.
    pub host: String,
    /// Prepended to repository names (mirrors such as `mirror.example/dockerhub`).
    pub prefix: String,
    /// True for a configured mirror (a failure falls through to the next endpoint).
    pub mirror: bool,
}

impl Endpoint {
    /// `scheme://host`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// The repository path on this endpoint.
    pub fn repository(&self, repository: &str) -> String {
        if self.prefix.is_empty() {
            repository.to_string()
        } else {
            format!("{}/{}", self.prefix, repository)
        }
    }
}

/// True for hosts where plain HTTP is allowed without configuration.
pub fn is_loopback(host: &str) -> bool {
    let name = host_without_port(host);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

impl RegistriesConfig {
    /// Read the configuration: `$ROOT/registries.toml` when it exists, else
    /// `$XDG_CONFIG_HOME/rbuild/registries.toml` (`~/.config/rbuild/registries.toml`), else
    /// defaults.
    pub fn load(store_root: Option<&Path>) -> Result<Self> {
        match Self::path_in_use(store_root) {
            Some(path) => Self::from_file(&path),
            None => Ok(Self::default()),
        }
    }

    /// The file [`load`](Self::load) reads, when there is one (`rbuild info` shows it).
    pub fn path_in_use(store_root: Option<&Path>) -> Option<PathBuf> {
        Self::candidate_paths(store_root)
            .into_iter()
            .find(|path| path.is_file())
    }

    fn candidate_paths(store_root: Option<&Path>) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        if let Some(root) = store_root {
            paths.push(root.join("registries.toml"));
        }
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = config_home {
            paths.push(dir.join("rbuild").join("registries.toml"));
        }
        paths
    }

    /// Parse one file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|e| RegistryError::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| RegistryError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parse TOML text; the error is toml's message (with line and column).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: RegistriesConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, entry) in &config.registries {
            for mirror in &entry.mirrors {
                parse_endpoint(mirror, false).map_err(|e| format!("registry `{name}`: {e}"))?;
            }
        }
        Ok(config)
    }

    fn entry(&self, registry: &str) -> Option<&RegistryEntry> {
        let canonical = canonical_registry(registry);
        self.registries
            .iter()
            .find(|(k, _)| canonical_registry(k) == canonical)
            .map(|(_, v)| v)
    }

    /// True when plain HTTP may be used for `host`.
    pub fn allows_http(&self, host: &str) -> bool {
        is_loopback(host) || self.entry(host).is_some_and(|e| e.insecure)
    }

    /// The endpoints to try for pulls from `registry`, mirrors first.
    pub fn pull_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if let Some(entry) = self.entry(registry) {
            for mirror in &entry.mirrors {
                if let Ok(ep) = parse_endpoint(mirror, true) {
                    let ep = self.with_scheme(ep);
                    out.push(ep);
                }
            }
        }
        out.push(self.push_endpoint(registry));
        out
    }

    /// The registry itself (pushes never go to mirrors).
    pub fn push_endpoint(&self, registry: &str) -> Endpoint {
        let host = api_host(registry);
        let scheme = if self.allows_http(&host) {
            "http"
        } else {
            "https"
        };
        Endpoint {
            scheme: scheme.into(),
            host,
            prefix: String::new(),
            mirror: false,
        }
    }

    fn with_scheme(&self, mut ep: Endpoint) -> Endpoint {
        if ep.scheme.is_empty() {
            ep.scheme = if self.allows_http(&ep.host) {
                "http".into()
            } else {
                "https".into()
            };
        }
        ep
    }
}

/// `docker.io` and its aliases name one registry.
pub fn canonical_registry(name: &str) -> &str {
    match name {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io"
        }
        other => other,
    }
}

/// The host that serves the API for a registry name.
pub fn api_host(registry: &str) -> String {
    match canonical_registry(registry) {
        "docker.io" => "registry-1.docker.io".into(),
        other => other.into(),
    }
}

/// `[scheme://]host[:port][/prefix]`. An explicit `http://` is an explicit insecure opt-in.
fn parse_endpoint(text: &str, mirror: bool) -> std::result::Result<Endpoint, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some(("http", rest)) => ("http", rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => return Err(format!("mirror `{text}`: unsupported scheme `{other}`")),
        None => ("", text),
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(format!(
            "mirror `{text}`: expected `[http[s]://]host[:port][/prefix]`"
        ));
    }
    Ok(Endpoint {
        scheme: scheme.into(),
        host: host.into(),
        prefix: prefix.into(),
        mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_and_docker_aliases_match() {
        let cfg = RegistriesConfig::parse(
            r#"
            [registries."docker.io"]
            mirrors = ["http://127.0.0.1:5000", "mirror.example.com/hub"]
            "#,
        )
        .unwrap();
        let eps = cfg.pull_endpoints("index.docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].base_url(), "http://127.0.0.1:5000");
        assert_eq!(eps[1].base_url(), "https://mirror.example.com");
        assert_eq!(eps[1].repository("library/nginx"), "hub/library/nginx");
        assert_eq!(eps[2].base_url(), "https://registry-1.docker.io");
        assert!(!eps[2].mirror);
    }

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        let cfg =
            RegistriesConfig::parse("[registries.\"reg.lan:5000\"]\ninsecure = true\n").unwrap();
        assert_eq!(cfg.push_endpoint("localhost:5000").scheme, "http");
        assert_eq!(cfg.push_endpoint("127.0.0.1:1234").scheme, "http");
        assert_eq!(cfg.push_endpoint("[::1]:80").scheme, "http");
        assert_eq!(cfg.push_endpoint("reg.lan:5000").scheme, "http");
        assert_eq!(cfg.push_endpoint("ghcr.io").scheme, "https");
        assert_eq!(cfg.push_endpoint("127.evil.com").scheme, "https");
    }

    #[test]
    fn bad_config_is_rejected_with_location() {
        let err = RegistriesConfig::parse("[registries.x]\nmirors = []\n").unwrap_err();
        assert!(err.contains("mirors"), "{err}");
        let err = RegistriesConfig::parse("[registries.x]\nmirrors = [\"ftp://a\"]\n").unwrap_err();
        assert!(err.contains("unsupported scheme"), "{err}");
    }
}

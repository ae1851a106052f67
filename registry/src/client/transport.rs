//! The HTTP layer: one ureq agent (rustls; root certificates from `$SSL_CERT_FILE` or the
//! system bundle, e.g. `/etc/ssl/certs/ca-certificates.crt`; proxies from the environment) with
//! connect and idle-read timeouts. Requests carry host-bound authentication: Bearer tokens
//! cached per (host, scope) for their lifetime, or Basic. Redirects are followed by hand, at
//! most `MAX_REDIRECTS` (10) hops, so `Authorization` is dropped after the first hop that
//! leaves the host and stays off; `http` is allowed only to loopback hosts and registries marked
//! `insecure`. Retries use exponential backoff with jitter on connection resets, 5xx and 429
//! (`Retry-After` honoured, up to a bound).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::{self, Method, Response, StatusCode};
use ureq::{Body, SendBody};

use crate::auth::challenge::{Challenge, parse_challenges};
use crate::auth::credentials::{Credential, CredentialProvider, DockerConfigCredentials};
use crate::config::{Endpoint, RegistriesConfig};
use crate::error::{RegistryError, Result};

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 10;
/// Longest `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Error bodies and token responses are small; never read more.
const SMALL_BODY_LIMIT: u64 = 1 << 20;

/// A body to send; called again for every retry so readers start from the beginning.
pub(crate) type BodyFactory<'a> = &'a (dyn Fn() -> Result<SendBody<'static>> + Sync);

/// One request before authentication and retries.
pub(crate) struct Req<'a> {
    pub method: Method,
    /// Absolute URL on the endpoint (redirect targets are handled internally).
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<BodyFactory<'a>>,
    /// What the request is for, in error messages: "pull manifest `x`".
    pub what: &'a str,
}

/// The auth-cache scope under which a host's Basic credentials are kept.
const BASIC_SCOPE: &str = "*basic*";
/// `(endpoint host, token scope)`.
type AuthKey = (String, String);
/// An `Authorization` value and when it expires (`None` for Basic).
type CachedAuth = (String, Option<Instant>);

/// A registry client: configuration, credentials and authentication state. Cheap to share
/// between threads (`&Client` is `Sync`).
pub struct Client {
    agent: ureq::Agent,
    pub(crate) config: RegistriesConfig,
    creds: Arc<dyn CredentialProvider>,
    /// `(host, scope)` → Authorization value and its expiry.
    auth_cache: Mutex<HashMap<AuthKey, CachedAuth>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with docker's credentials (`~/.docker/config.json`).
    pub fn new(config: RegistriesConfig) -> Self {
        Self::with_credentials(config, Arc::new(DockerConfigCredentials))
    }

    /// A client with a custom credential source.
    pub fn with_credentials(config: RegistriesConfig, creds: Arc<dyn CredentialProvider>) -> Self {
        let net = &config.network;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(system_roots())
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .https_only(false)
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(net.connect_timeout()))
            .timeout_per_read(Some(net.read_timeout()))
            .timeout_per_write(Some(net.read_timeout()))
            .max_idle_connections_per_host(16)
            .tls_config(tls)
            .build()
            .into();
        Client {
            agent,
            config,
            creds,
            auth_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistriesConfig {
        &self.config
    }

    fn credential(&self, host: &str) -> Result<Option<Credential>> {
        self.creds.get(host)
    }

    /// Send `req` to `ep`, authenticating for `scope` (space-separated token scopes) as the
    /// registry demands, following redirects and retrying transient failures. Returns the
    /// final response, whatever its status, except that 401/403 after authentication and
    /// exhausted retries become errors.
    pub(crate) fn execute(
        &self,
        ep: &Endpoint,
        scope: &str,
        req: &Req<'_>,
    ) -> Result<Response<Body>> {
        let net = &self.config.network;
        let attempts = net.retries.max(1);
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.cached_auth(&ep.host, scope);
            let had_auth = auth.is_some();
            let outcome = self.send_with_redirects(ep, req, auth.as_deref());
            let (resp, from_origin) = match outcome {
                Ok(r) => r,
                Err(SendError::Fatal(e)) => return Err(e),
                Err(SendError::Transient(reason)) => {
                    if attempt < attempts {
                        tracing::debug!(what = req.what, %reason, attempt, "retrying after network error");
                        std::thread::sleep(self.backoff(attempt, None));
                        continue;
                    }
                    return Err(RegistryError::Network {
                        registry: ep.host.clone(),
                        what: req.what.to_string(),
                        reason: if attempts > 1 {
                            format!("{reason} (after {attempts} attempts)")
                        } else {
                            reason
                        },
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && from_origin && !authenticated {
                // Only the registry host itself may ask for credentials (never a redirect
                // target), and we try once per request.
                let challenges = resp
                    .headers()
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect::<Vec<_>>();
                if had_auth {
                    // The cached token expired or lacks scope: drop it and authenticate anew.
                    let mut cache = self.auth_cache.lock().expect("auth cache lock");
                    cache.remove(&(ep.host.clone(), scope.to_string()));
                    cache.remove(&(ep.host.clone(), BASIC_SCOPE.to_string()));
                }
                if !challenges.is_empty() {
                    drop(resp);
                    self.authenticate(ep, scope, &challenges, req.what)?;
                    authenticated = true;
                    attempt -= 1;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let message = registry_message(resp);
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    what: req.what.to_string(),
                    status: status.as_u16(),
                    message,
                });
            }
            let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            if retryable && attempt < attempts {
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                tracing::debug!(
                    what = req.what,
                    status = status.as_u16(),
                    attempt,
                    "retrying"
                );
                drop(resp);
                std::thread::sleep(self.backoff(attempt, retry_after));
                continue;
            }
            if retryable && attempts > 1 {
                let mut err = status_error(ep, req.what, resp);
                if let RegistryError::Http { message, .. } = &mut err {
                    let suffix = format!("after {attempts} attempts");
                    *message = if message.is_empty() {
                        suffix
                    } else {
                        format!("{message} ({suffix})")
                    };
                }
                return Err(err);
            }
            return Ok(resp);
        }
    }

    /// GET an arbitrary URL (`ADD https://…`) through the registry transport: the system CA
    /// store or `$SSL_CERT_FILE`, proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...),
    /// the configured timeouts, and retries with backoff on resets, timeouts, 5xx and 429.
    /// Redirects are followed (at most 10), never from `https` to plain `http`; no credentials
    /// are sent. Returns the final response whatever its status (after retries); errors are a
    /// message without the URL (which may hold a password) and a help line.
    pub fn get_url(&self, url: &str) -> std::result::Result<Response<Body>, (String, String)> {
        let attempts = self.config.network.retries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.get_following_redirects(url) {
                Ok(resp) => {
                    let status = resp.status();
                    let retryable =
                        status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable || attempt >= attempts {
                        return Ok(resp);
                    }
                    let retry_after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    drop(resp);
                    std::thread::sleep(self.backoff(attempt, retry_after));
                    continue;
                }
                Err(f) => f,
            };
            match failure {
                UrlFailure::Fatal(message, help) => return Err((message, help)),
                UrlFailure::Transient(reason) if attempt < attempts => {
                    tracing::debug!(%reason, attempt, "retrying a download after a network error");
                    std::thread::sleep(self.backoff(attempt, None));
                }
                UrlFailure::Transient(reason) => {
                    let reason = if attempts > 1 {
                        format!("{reason} (after {attempts} attempts)")
                    } else {
                        reason
                    };
                    return Err((
                        format!("request failed: {reason}"),
                        "check the URL and that this machine can reach it (proxies come from \
                         HTTPS_PROXY/HTTP_PROXY/NO_PROXY)"
                            .into(),
                    ));
                }
            }
        }
    }

    fn get_following_redirects(
        &self,
        url: &str,
    ) -> std::result::Result<Response<Body>, UrlFailure> {
        let mut current = url::Url::parse(url).map_err(|e| {
            UrlFailure::Fatal(
                format!("not a valid URL: {e}"),
                "write a full `https://host/path` URL".into(),
            )
        })?;
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.agent.get(current.as_str()).call().map_err(|e| {
                let reason = describe_ureq(&e);
                match failure_kind(&e) {
                    FailureKind::Transient => UrlFailure::Transient(reason),
                    FailureKind::Tls => UrlFailure::Fatal(
                        format!("request failed: {reason}"),
                        "the server's certificate is not trusted: rbuild uses the system CA \
                         store; point SSL_CERT_FILE at a bundle that holds your CA (for a \
                         TLS-inspecting proxy, its CA)"
                            .into(),
                    ),
                    FailureKind::Permanent => UrlFailure::Fatal(
                        format!("request failed: {reason}"),
                        "check the URL and that this machine can reach it".into(),
                    ),
                }
            })?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(location) = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(resp);
            };
            let next = current.join(location).map_err(|_| {
                UrlFailure::Fatal(
                    "the server redirected to an invalid location".into(),
                    "check the URL".into(),
                )
            })?;
            if current.scheme() == "https" && next.scheme() != "https" {
                return Err(UrlFailure::Fatal(
                    format!(
                        "the server redirected from https to {}, which rbuild refuses",
                        next.scheme()
                    ),
                    "use a URL whose redirects stay on https".into(),
                ));
            }
            current = next;
        }
        Err(UrlFailure::Fatal(
            format!("more than {MAX_REDIRECTS} redirects"),
            "check the URL".into(),
        ))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let base = self.config.network.backoff_ms.max(1);
        let exp = base.saturating_mul(1 << (attempt - 1).min(10)).min(10_000);
        // Jitter of up to a quarter, from the clock's low bits (no rand dependency needed).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Duration::from_millis(exp + nanos % (exp / 4 + 1))
    }

    fn cached_auth(&self, host: &str, scope: &str) -> Option<String> {
        let mut cache = self.auth_cache.lock().expect("auth cache lock");
        // A host that answered with a Basic challenge takes the same header for every scope.
        if let Some((basic, _)) = cache.get(&(host.to_string(), BASIC_SCOPE.to_string())) {
            return Some(basic.clone());
        }
        let key = (host.to_string(), scope.to_string());
        match cache.get(&key) {
            Some((_, Some(expiry))) if *expiry <= Instant::now() => {
                cache.remove(&key);
                None
            }
            Some((value, _)) => Some(value.clone()),
            None => None,
        }
    }

    /// Answer a 401 challenge: Bearer → fetch a token from the realm, Basic → credentials.
    fn authenticate(
        &self,
        ep: &Endpoint,
        scope: &str,
        challenges: &[Challenge],
        what: &str,
    ) -> Result<()> {
        let cred = self.credential(&ep.host)?;
        let key = (ep.host.clone(), scope.to_string());
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let (token, ttl) = self.fetch_token(ep, bearer, scope, cred.as_ref(), what)?;
            let expiry = Instant::now()
                + ttl
                    .saturating_sub(Duration::from_secs(10))
                    .max(Duration::from_secs(5));
            self.auth_cache
                .lock()
                .expect("auth cache lock")
                .insert(key, (format!("Bearer {token}"), Some(expiry)));
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(header) = cred.as_ref().and_then(Credential::basic_header) else {
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    what: what.to_string(),
                    status: 401,
                    message:
                        "the registry requires a username and password and none are configured"
                            .into(),
                });
            };
            let mut cache = self.auth_cache.lock().expect("auth cache lock");
            cache.remove(&key);
            cache.insert((ep.host.clone(), BASIC_SCOPE.to_string()), (header, None));
            return Ok(());
        }
        Err(RegistryError::Unauthorized {
            registry: ep.host.clone(),
            what: what.to_string(),
            status: 401,
            message: format!(
                "unsupported authentication scheme `{}`",
                challenges.first().map(|c| c.scheme.as_str()).unwrap_or("")
            ),
        })
    }

    /// The token flow of the distribution spec (GET with optional Basic credentials, or the
    /// OAuth2 refresh-token POST for identity tokens).
    fn fetch_token(
        &self,
        ep: &Endpoint,
        challenge: &Challenge,
        scope: &str,
        cred: Option<&Credential>,
        what: &str,
    ) -> Result<(String, Duration)> {
        let realm = challenge.param("realm").unwrap_or_default();
        let realm_url = url::Url::parse(realm).map_err(|_| RegistryError::Unauthorized {
            registry: ep.host.clone(),
            what: what.to_string(),
            status: 401,
            message: format!("token realm `{realm}` is not a URL"),
        })?;
        let realm_host = authority(&realm_url);
        match realm_url.scheme() {
            "https" => {}
            "http"
                if self.config.allows_http(&realm_host)
                    || ep.scheme == "http" && realm_host == ep.host => {}
            other => {
                return Err(RegistryError::Insecure {
                    what: what.to_string(),
                    reason: format!(
                        "to send credentials to token realm `{realm_host}` over `{other}`"
                    ),
                });
            }
        }
        let service = challenge.param("service");
        let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        let token_what = format!("{what} (token from `{realm_host}`)");
        let mut url = realm_url.clone();
        let request = match cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", refresh);
                form.append_pair("client_id", "rbuild");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                for s in &scopes {
                    form.append_pair("scope", s);
                }
                let form = form.finish().into_bytes();
                http::Request::post(url.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("content-length", form.len())
                    .body(SendBody::from_owned_reader(std::io::Cursor::new(form)))
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                    if let Some(Credential::Basic { username, .. }) = other {
                        q.append_pair("account", username);
                    }
                }
                let mut b = http::Request::get(url.as_str());
                if let Some(h) = other.and_then(Credential::basic_header) {
                    b = b.header("authorization", h);
                }
                b.body(SendBody::none())
            }
        }
        .expect("token request is well-formed");
        let net_err = |reason: String| RegistryError::Network {
            registry: ep.host.clone(),
            what: token_what.clone(),
            reason,
        };
        let resp = self
            .agent
            .run(request)
            .map_err(|e| net_err(describe_ureq(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let message = registry_message(resp);
            return Err(RegistryError::Unauthorized {
                registry: ep.host.clone(),
                what: token_what,
                status: status.as_u16(),
                message,
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let bytes =
            read_limited(resp.into_body(), SMALL_BODY_LIMIT).map_err(|e| net_err(e.to_string()))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unauthorized {
                registry: ep.host.clone(),
                what: token_what.clone(),
                status: status.as_u16(),
                message: format!("malformed token response: {e}"),
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: ep.host.clone(),
                what: token_what.clone(),
                status: status.as_u16(),
                message: "the token response has no token".into(),
            })?;
        // The spec's default lifetime is 60 seconds.
        let ttl = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(60));
        Ok((token, ttl))
    }

    /// One request, following GET/HEAD redirects by hand. Returns the response and whether
    /// it came from the endpoint's own host (only then may a 401 be answered with
    /// credentials).
    fn send_with_redirects(
        &self,
        ep: &Endpoint,
        req: &Req<'_>,
        auth: Option<&str>,
    ) -> std::result::Result<(Response<Body>, bool), SendError> {
        let mut url = url::Url::parse(&req.url).map_err(|e| {
            SendError::Fatal(RegistryError::InvalidInput {
                kind: "URL",
                value: redact_url(&req.url),
                reason: e.to_string(),
                help: "check the registry name and `registries.toml`".into(),
            })
        })?;
        let origin = (ep.scheme.clone(), ep.host.clone());
        // Once a hop leaves the origin, credentials stay off for every later hop, even one
        // that comes back (Go CVE-2024-45336).
        let mut left_origin = false;
        let mut method = req.method.clone();
        for _hop in 0..=MAX_REDIRECTS {
            let here = (url.scheme().to_string(), authority(&url));
            if here != origin {
                left_origin = true;
            }
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(url.as_str());
            for (name, value) in &req.headers {
                builder = builder.header(*name, value);
            }
            if let (Some(a), false) = (auth, left_origin) {
                builder = builder.header("authorization", a);
            }
            let body = match (&req.body, method == Method::GET || method == Method::HEAD) {
                (Some(factory), false) => factory().map_err(SendError::Fatal)?,
                _ => SendBody::none(),
            };
            let request = builder.body(body).map_err(|e| {
                SendError::Fatal(RegistryError::InvalidInput {
                    kind: "request",
                    value: redact_url(url.as_str()),
                    reason: e.to_string(),
                    help: "this is a bug in rbuild".into(),
                })
            })?;
            let resp = match self.agent.run(request).map_err(body_failure) {
                Ok(r) => r,
                Err(Ok(failure)) => return Err(SendError::Fatal(failure)),
                Err(Err(e)) => {
                    let mut reason = describe_ureq(&e);
                    let fatal = match failure_kind(&e) {
                        FailureKind::Tls => {
                            if url.scheme() == "https" {
                                reason.push_str(
                                    " (if this registry speaks plain HTTP, list it with \
                                     `insecure = true` in registries.toml)",
                                );
                            }
                            true
                        }
                        FailureKind::Permanent => true,
                        FailureKind::Transient => false,
                    };
                    return Err(if fatal {
                        SendError::Fatal(RegistryError::Network {
                            registry: ep.host.clone(),
                            what: req.what.to_string(),
                            reason,
                        })
                    } else {
                        SendError::Transient(reason)
                    });
                }
            };
            let status = resp.status();
            let follow = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
                && (req.method == Method::GET || req.method == Method::HEAD);
            if !follow {
                return Ok((resp, !left_origin));
            }
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let next = url.join(&location).map_err(|_| {
                SendError::Fatal(RegistryError::Insecure {
                    what: req.what.to_string(),
                    reason: format!("an invalid redirect location `{}`", redact_url(&location)),
                })
            })?;
            match next.scheme() {
                "https" => {}
                "http" if url.scheme() == "http" || self.config.allows_http(&authority(&next)) => {}
                other => {
                    return Err(SendError::Fatal(RegistryError::Insecure {
                        what: req.what.to_string(),
                        reason: format!("a redirect to unsupported scheme `{other}`"),
                    }));
                }
            }
            if status.as_u16() == 303 {
                method = Method::GET;
            }
            url = next;
        }
        Err(SendError::Fatal(RegistryError::Network {
            registry: ep.host.clone(),
            what: req.what.to_string(),
            reason: format!("too many redirects (more than {MAX_REDIRECTS})"),
        }))
    }

    /// Ping `/v2/` and authenticate with the stored (or given) credentials: `login`'s check.
    pub fn check_login(&self, ep: &Endpoint) -> Result<()> {
        let what = format!("log in to `{}`", ep.host);
        let req = Req {
            method: Method::GET,
            url: format!("{}/v2/", ep.base_url()),
            headers: vec![],
            body: None,
            what: &what,
        };
        let resp = self.execute(ep, "", &req)?;
        let status = resp.status();
        if status.is_success() {
            // A registry that accepted anonymous access must still accept the credentials:
            // when it never challenged, there is nothing more to check.
            Ok(())
        } else {
            Err(status_error(ep, &what, resp))
        }
    }
}

/// A request body that refused to be read because its bytes are wrong (a streamed blob whose
/// size or digest is not what it claims: `repo::VerifyingReader`) fails the request with that
/// error: the source is at fault, so it is neither a network problem nor worth a retry.
fn body_failure(e: ureq::Error) -> std::result::Result<RegistryError, ureq::Error> {
    match e {
        ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<RegistryError>()) => {
            match io
                .into_inner()
                .map(|inner| inner.downcast::<RegistryError>())
            {
                Some(Ok(failure)) => Ok(*failure),
                Some(Err(inner)) => Err(ureq::Error::Io(std::io::Error::other(inner))),
                None => Err(ureq::Error::Io(std::io::Error::other(
                    "request body failed",
                ))),
            }
        }
        other => Err(other),
    }
}

/// A failure before any HTTP status arrived.
enum SendError {
    Transient(String),
    Fatal(RegistryError),
}

/// `host[:port]` of a URL as it appears in the URL.
pub(crate) fn authority(url: &url::Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// A URL fit for an error message: no userinfo, no query (signed URLs carry secrets there).
pub(crate) fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => text
            .split(['?', '@'])
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Why a URL download attempt failed.
enum UrlFailure {
    /// Worth retrying (resets, timeouts).
    Transient(String),
    /// Not worth retrying: a message and a help line.
    Fatal(String, String),
}

/// Whether a transport failure is worth retrying.
#[derive(Debug, PartialEq, Eq)]
enum FailureKind {
    /// Connection resets, timeouts, temporary DNS failures: retried with backoff.
    Transient,
    /// The TLS handshake failed (e.g. a plain-HTTP server): retrying cannot help.
    Tls,
    /// The name does not resolve, the URL is bad: retrying cannot help.
    Permanent,
}

fn failure_kind(e: &ureq::Error) -> FailureKind {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => FailureKind::Tls,
        ureq::Error::HostNotFound | ureq::Error::BadUri(_) => FailureKind::Permanent,
        ureq::Error::Io(io) => {
            let text = io.to_string();
            if text.contains("corrupt message")
                || text.contains("InvalidContentType")
                || text.contains("invalid peer certificate")
            {
                FailureKind::Tls
            } else if text.contains("Name or service not known")
                || text.contains("No address associated with hostname")
            {
                // EAI_NONAME / EAI_NODATA; EAI_AGAIN ("Temporary failure") stays transient.
                FailureKind::Permanent
            } else {
                FailureKind::Transient
            }
        }
        _ => FailureKind::Transient,
    }
}

/// A short human description of a transport error.
pub(crate) fn describe_ureq(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            "timed out waiting for data".into()
        }
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Tls(msg) => format!("TLS failure: {msg}"),
        other => other.to_string(),
    }
}

/// Read at most `limit` bytes of a body.
pub(crate) fn read_limited(body: Body, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    body.into_reader().take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// The registry's own error text from a distribution-spec error body
/// (`{"errors":[{"code":…,"message":…}]}`), else the start of the body.
pub(crate) fn registry_message(resp: Response<Body>) -> String {
    let bytes = read_limited(resp.into_body(), 64 * 1024).unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(&bytes) {
        return parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let mut short: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        short.push('…');
    }
    short.replace(['\n', '\r'], " ")
}

/// Turn an unexpected status into an error with the registry's message.
pub(crate) fn status_error(ep: &Endpoint, what: &str, resp: Response<Body>) -> RegistryError {
    let status = resp.status().as_u16();
    let message = registry_message(resp);
    let help = match status {
        404 => "check the repository name, the tag or digest, and that the image was pushed".into(),
        429 => "the registry is rate limiting; log in with `rbuild login` or retry later".into(),
        s if s >= 500 => {
            "the registry failed; retry later or configure a mirror in `registries.toml`".into()
        }
        _ => "see the registry's message above".into(),
    };
    RegistryError::Http {
        registry: ep.host.clone(),
        what: what.to_string(),
        status,
        message,
        help,
    }
}

/// Root certificates: the system bundle (`$SSL_CERT_FILE`, else Debian's and Red Hat's
/// locations), falling back to the bundled Mozilla roots when none is readable.
fn system_roots() -> ureq::tls::RootCerts {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
        candidates.push(f.into());
    }
    candidates.push("/etc/ssl/certs/ca-certificates.crt".into());
    candidates.push("/etc/pki/tls/certs/ca-bundle.crt".into());
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::RootCerts::new_with_certs(&certs);
        }
    }
    ureq::tls::RootCerts::WebPki
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_userinfo_and_query() {
        assert_eq!(
            redact_url("https://u:p@s3.example/blob?sig=SECRET"),
            "https://s3.example/blob"
        );
        assert!(!redact_url("garbage?sig=SECRET").contains("SECRET"));
    }

    #[test]
    fn authority_keeps_ports_and_brackets() {
        let u = url::Url::parse("http://[::1]:5000/v2/").unwrap();
        assert_eq!(authority(&u), "[::1]:5000");
        let u = url::Url::parse("https://ghcr.io/v2/").unwrap();
        assert_eq!(authority(&u), "ghcr.io");
    }

    /// TLS handshakes with plain-HTTP servers and names that do not resolve are not retried;
    /// resets, timeouts and temporary DNS failures are.
    #[test]
    fn failures_are_classified_for_retry() {
        let io = |m: &str| ureq::Error::Io(std::io::Error::other(m.to_string()));
        assert_eq!(
            failure_kind(&io("received corrupt message of type InvalidContentType")),
            FailureKind::Tls
        );
        // An untrusted certificate does not become trusted by retrying.
        assert_eq!(
            failure_kind(&io("invalid peer certificate: UnknownIssuer")),
            FailureKind::Tls
        );
        assert_eq!(
            failure_kind(&io(
                "failed to lookup address information: Name or service not known"
            )),
            FailureKind::Permanent
        );
        assert_eq!(
            failure_kind(&io(
                "failed to lookup address information: Temporary failure in name resolution"
            )),
            FailureKind::Transient
        );
        assert_eq!(
            failure_kind(&ureq::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            FailureKind::Transient
        );
        assert_eq!(
            failure_kind(&ureq::Error::HostNotFound),
            FailureKind::Permanent
        );
    }
}

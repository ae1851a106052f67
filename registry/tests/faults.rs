//! Registry faults against a scriptable fake HTTP server: every failure leaves the store
//! unchanged and names what happened, with the registry's own message.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbuild_registry::{
    Client, Credential, NoProgress, Platform, RegistriesConfig, RegistryError, RemoteRef,
    StaticCredentials, pull_image,
};
use support::fake_http::{FakeHttp, Reply, Seen, reply};
use support::sha256_digest;
use support::test_store::TestStore;
use support::tree::{GZIP_LAYER, OCI_INDEX, Tree, desc, json};

/// A tiny image: config, one layer, manifest.
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new() -> Self {
        let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256_digest(&layer)
        )
        .into_bytes();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(&layer), "size": layer.len()}],
        }))
        .unwrap();
        Image {
            config,
            layer,
            manifest,
        }
    }

    /// The normal answer for a request of the fake registry.
    fn serve(&self, req: &Seen) -> Reply {
        let p = req.path.as_str();
        if p == "/v2/" {
            return reply(200, &[], "{}");
        }
        if p.starts_with("/v2/t/img/manifests/") {
            return reply(
                200,
                &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                self.manifest.clone(),
            );
        }
        if p == format!("/v2/t/img/blobs/{}", sha256_digest(&self.config)) {
            return reply(200, &[], self.config.clone());
        }
        if p == format!("/v2/t/img/blobs/{}", sha256_digest(&self.layer)) {
            return reply(200, &[("Accept-Ranges", "bytes")], self.layer.clone());
        }
        reply(
            404,
            &[],
            r#"{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}"#,
        )
    }

    fn layer_path(&self) -> String {
        format!("/v2/t/img/blobs/{}", sha256_digest(&self.layer))
    }
}

fn client(retries: u32, read_timeout: f64, creds: Vec<(String, Credential)>) -> Client {
    let mut cfg = RegistriesConfig::default();
    cfg.network.retries = retries;
    cfg.network.backoff_ms = 10;
    cfg.network.read_timeout_secs = read_timeout;
    cfg.network.connect_timeout_secs = 2.0;
    Client::with_credentials(cfg, Arc::new(StaticCredentials(creds)))
}

fn pull(
    client: &Client,
    host: &str,
    store: &TestStore,
) -> Result<rbuild_registry::PulledImage, RegistryError> {
    let r = RemoteRef::parse(&format!("{host}/t/img:1")).unwrap();
    pull_image(client, store, &r, &Platform::host(), &NoProgress)
}

fn assert_store_empty(store: &TestStore) {
    assert_eq!(
        store.blob_count(),
        0,
        "nothing may be stored after a failure"
    );
    assert!(
        store.names().is_empty(),
        "no image may be recorded after a failure"
    );
}

/// A blob whose bytes do not match its digest is an error naming both digests; nothing is stored.
#[test]
fn wrong_blob_digest_is_refused() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            let mut bad = i2.layer.clone();
            bad[10] ^= 0xff;
            return reply(200, &[], bad);
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(2, 5.0, vec![]), &server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&sha256_digest(&img.layer)), "{msg}");
    assert_store_empty(&store);
}

/// A body cut short (with an honest Content-Length) is retried, then reported as a size mismatch.
#[test]
fn truncated_body_is_a_size_mismatch() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            return Reply::Truncated(200, vec![], i2.layer.clone(), 1000);
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(2, 5.0, vec![]), &server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{msg}");
    assert!(msg.contains("expected 200000 bytes"), "{msg}");
    assert_store_empty(&store);
}

/// A 500 on the first blob request is retried and the pull succeeds.
#[test]
fn server_error_then_success() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = failed.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() && !f2.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return reply(500, &[], "boom");
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let pulled = pull(&client(3, 5.0, vec![]), &server.host(), &store).unwrap();
    assert_eq!(pulled.downloaded, 2);
    assert!(store.has(&sha256_digest(&img.layer)));
}

/// Persistent 503s end in an error that says how many attempts were made and what the registry said.
#[test]
fn persistent_server_error_reports_attempts() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path.contains("/manifests/") {
            return reply(
                503,
                &[("Retry-After", "0")],
                r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#,
            );
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(3, 5.0, vec![]), &server.host(), &store)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("503")
            && err.contains("UNAVAILABLE: try later")
            && err.contains("after 3 attempts"),
        "{err}"
    );
    assert_store_empty(&store);
}

/// A 401 without credentials is an authentication error carrying the registry's message.
#[test]
fn unauthorized_without_credentials() {
    let server = FakeHttp::start(|_, _| {
        reply(
            401,
            &[("WWW-Authenticate", r#"Basic realm="test""#)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("authentication failed"), "{msg}");
    assert_store_empty(&store);
}

/// A missing manifest is a 404 error with the registry's code and message.
#[test]
fn missing_manifest_is_404_with_registry_message() {
    let server = FakeHttp::start(|_, _| {
        reply(
            404,
            &[],
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("MANIFEST_UNKNOWN: manifest unknown"),
        "{err}"
    );
    assert_store_empty(&store);
}

/// A manifest that is not JSON is refused as invalid.
#[test]
fn malformed_manifest_json() {
    let server = FakeHttp::start(|_, _| {
        reply(
            200,
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            "{\"schemaVersion\": 2, oops",
        )
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Manifest { .. }) && msg.contains("not valid JSON"),
        "{msg}"
    );
    assert_store_empty(&store);
}

/// A blob redirect to another host is followed without the Authorization header.
#[test]
fn redirect_to_another_host_drops_credentials() {
    let img = Arc::new(Image::new());
    // The storage host sends the client back to the registry host: credentials must stay
    // off for that hop too (Go CVE-2024-45336).
    let back_to_registry = Arc::new(std::sync::Mutex::new(String::new()));
    let back = back_to_registry.clone();
    let storage = FakeHttp::start(move |_, _| {
        let loc = back.lock().unwrap().clone();
        reply(302, &[("Location", loc.as_str())], "")
    });
    let storage_host = storage.host().replace("127.0.0.1", "localhost");
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == "/final/blob" {
            return if req.header("authorization").is_some() {
                reply(400, &[], "credentials leaked back")
            } else {
                reply(200, &[], i2.layer.clone())
            };
        }
        if req.header("authorization") != Some("Basic dTpzZWNyZXQ=") {
            return reply(401, &[("WWW-Authenticate", r#"Basic realm="test""#)], "");
        }
        if req.path == i2.layer_path() {
            let loc = format!("http://{storage_host}/bucket/blob?sig=abc");
            return reply(307, &[("Location", loc.as_str())], "");
        }
        i2.serve(req)
    });
    let creds = vec![(
        server.host(),
        Credential::Basic {
            username: "u".into(),
            password: "secret".into(),
        },
    )];
    *back_to_registry.lock().unwrap() = format!("http://{}/final/blob", server.host());
    let store = TestStore::new();
    pull(&client(1, 5.0, creds), &server.host(), &store).unwrap();
    let finals: Vec<Seen> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/final/blob")
        .collect();
    assert_eq!(finals.len(), 1);
    assert!(finals[0].header("authorization").is_none());
    let seen = storage.requests();
    assert_eq!(seen.len(), 1, "the storage host was asked once");
    assert!(
        seen[0].header("authorization").is_none(),
        "credentials leaked: {:?}",
        seen[0]
    );
    assert!(store.has(&sha256_digest(&img.layer)));
}

/// A server that accepts but never answers hits the idle read timeout with a clear error.
#[test]
fn stalled_connection_times_out() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            return Reply::Stall;
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let start = Instant::now();
    let err = pull(&client(1, 1.0, vec![]), &server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Network { .. }) && msg.contains("timed out"),
        "{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert_store_empty(&store);
}

/// An interrupted download resumes with a Range request from where it stopped.
#[test]
fn interrupted_download_resumes_with_range() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            if let Some(range) = req.header("range") {
                let start: usize = range
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                let total = i2.layer.len();
                let cr = format!("bytes {start}-{}/{total}", total - 1);
                return reply(
                    206,
                    &[("Content-Range", cr.as_str())],
                    i2.layer[start..].to_vec(),
                );
            }
            return Reply::Truncated(
                200,
                vec![("Accept-Ranges".into(), "bytes".into())],
                i2.layer.clone(),
                120_000,
            );
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    pull(&client(3, 5.0, vec![]), &server.host(), &store).unwrap();
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let resumed_at: u64 = ranges[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(resumed_at > 0 && resumed_at <= 120_000, "{ranges:?}");
    assert_eq!(store.read_blob(&sha256_digest(&img.layer)), img.layer);
}

/// The Bearer flow: challenge → token endpoint with Basic credentials and the pull scope →
/// requests with the token; the token is cached for the following requests.
#[test]
fn bearer_token_flow() {
    let token_server = FakeHttp::start(|req, _| {
        if req.header("authorization") == Some("Basic dTpzZWNyZXQ=") {
            reply(
                200,
                &[("Content-Type", "application/json")],
                r#"{"token":"tok-123","expires_in":300}"#,
            )
        } else {
            reply(
                401,
                &[],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )
        }
    });
    let realm = format!("http://{}/token", token_server.host());
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.header("authorization") != Some("Bearer tok-123") {
            let challenge =
                format!(r#"Bearer realm="{realm}",service="fake",scope="repository:t/img:pull""#);
            return reply(401, &[("WWW-Authenticate", challenge.as_str())], "");
        }
        i2.serve(req)
    });
    let creds = vec![(
        server.host(),
        Credential::Basic {
            username: "u".into(),
            password: "secret".into(),
        },
    )];
    let store = TestStore::new();
    pull(&client(1, 5.0, creds), &server.host(), &store).unwrap();
    let tokens = token_server.requests();
    assert_eq!(
        tokens.len(),
        1,
        "the token is fetched once and cached: {tokens:?}"
    );
    assert!(
        tokens[0].path.contains("service=fake"),
        "{}",
        tokens[0].path
    );
    assert!(
        tokens[0].path.contains("scope=repository%3At%2Fimg%3Apull"),
        "{}",
        tokens[0].path
    );
    // Wrong credentials: the token server's refusal is reported.
    let bad = vec![(
        server.host(),
        Credential::Basic {
            username: "u".into(),
            password: "wrong".into(),
        },
    )];
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, bad), &server.host(), &store)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad credentials") && !err.contains("wrong"),
        "{err}"
    );
    assert_store_empty(&store);
}

/// A redirect to a non-HTTP scheme is refused with a clear error.
#[test]
fn redirect_to_unsupported_scheme_is_refused() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            return reply(302, &[("Location", "file:///etc/passwd")], "");
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported scheme `file`"), "{err}");
    assert_store_empty(&store);
}

/// A manifest whose `mediaType` contradicts the `Content-Type`, or that is both an index and
/// a manifest, is refused (CVE-2021-41190).
#[test]
fn ambiguous_manifest_is_refused() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path.contains("/manifests/") {
            return reply(
                200,
                &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
                i2.manifest.clone(),
            );
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs from the `Content-Type`"), "{err}");
    assert_store_empty(&store);
}

/// An identity token (docker's `identitytoken`) is exchanged with the OAuth2 refresh-token
/// POST, never sent as a password.
#[test]
fn identity_token_uses_refresh_token_post() {
    let token_server = FakeHttp::start(|req, _| {
        let body = String::from_utf8_lossy(&req.body);
        if req.method == "POST"
            && body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=rt-42")
        {
            reply(
                200,
                &[("Content-Type", "application/json")],
                r#"{"access_token":"acc-1","expires_in":120}"#,
            )
        } else {
            reply(
                400,
                &[],
                r#"{"errors":[{"code":"DENIED","message":"bad grant"}]}"#,
            )
        }
    });
    let realm = format!("http://{}/oauth", token_server.host());
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.header("authorization") != Some("Bearer acc-1") {
            let challenge = format!(r#"Bearer realm="{realm}",service="fake""#);
            return reply(401, &[("WWW-Authenticate", challenge.as_str())], "");
        }
        i2.serve(req)
    });
    let creds = vec![(server.host(), Credential::IdentityToken("rt-42".into()))];
    let store = TestStore::new();
    pull(&client(1, 5.0, creds), &server.host(), &store).unwrap();
    let calls = token_server.requests();
    assert_eq!(calls.len(), 1);
    assert!(String::from_utf8_lossy(&calls[0].body).contains("scope=repository%3At%2Fimg%3Apull"));
}

/// 429 with `Retry-After` waits as told and then succeeds.
#[test]
fn rate_limit_honours_retry_after() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, n| {
        if n == 0 {
            return reply(
                429,
                &[("Retry-After", "1")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            );
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let start = Instant::now();
    pull(&client(3, 5.0, vec![]), &server.host(), &store).unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
}

/// A mirror that is down is skipped and the registry itself serves the pull.
#[test]
fn dead_mirror_falls_through_to_the_registry() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| i2.serve(req));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut cfg = RegistriesConfig::parse(&format!(
        "[registries.\"{}\"]\nmirrors = [\"127.0.0.1:{dead_port}\"]\n",
        server.host()
    ))
    .unwrap();
    cfg.network.retries = 1;
    cfg.network.backoff_ms = 10;
    let c = Client::with_credentials(cfg, Arc::new(StaticCredentials(vec![])));
    let store = TestStore::new();
    let pulled = pull(&c, &server.host(), &store).unwrap();
    assert_eq!(pulled.served_by, server.host());
}

/// A blob longer than its descriptor stops at size+1 bytes with a size mismatch.
#[test]
fn overlong_blob_is_a_size_mismatch() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path == i2.layer_path() {
            let mut long = i2.layer.clone();
            long.push(b'!');
            return reply(200, &[], long);
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::SizeMismatch {
                expected: 200_000,
                actual: 200_001,
                ..
            }
        ),
        "{err}"
    );
    assert_store_empty(&store);
}

/// A tag whose `Docker-Content-Digest` header lies about the manifest bytes is refused.
#[test]
fn lying_manifest_digest_header_is_refused() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| {
        if req.path.contains("/manifests/") {
            let lie = format!("sha256:{}", "1".repeat(64));
            return reply(
                200,
                &[
                    ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    ("Docker-Content-Digest", lie.as_str()),
                ],
                i2.manifest.clone(),
            );
        }
        i2.serve(req)
    });
    let store = TestStore::new();
    let err = pull(&client(1, 5.0, vec![]), &server.host(), &store).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert_store_empty(&store);
}

fn pull_all(host: &str, store: &TestStore) -> Result<rbuild_registry::PulledIndex, RegistryError> {
    let r = RemoteRef::parse(&format!("{host}/t/multi:1")).unwrap();
    rbuild_registry::pull_all_platforms(&client(1, 5.0, vec![]), store, &r, &NoProgress)
}

/// `pull --all-platforms`: every manifest (the attestation too) and every blob is stored, a
/// layer both platforms share is downloaded once, and the name points at the index.
#[test]
fn all_platforms_fetches_every_blob_once() {
    let tree = Arc::new(Tree::new());
    let t2 = tree.clone();
    let server = FakeHttp::start(move |req, _| t2.serve(req));
    let store = TestStore::new();
    let name = format!("{}/t/multi:1", server.host());
    // One platform first, named as usual: its manifest.
    let amd64: Platform = "linux/amd64".parse().unwrap();
    let r = RemoteRef::parse(&name).unwrap();
    pull_image(&client(1, 5.0, vec![]), &store, &r, &amd64, &NoProgress).unwrap();
    assert!(!store.resolve_target(&name).unwrap().is_index());
    let pulled = pull_all(&server.host(), &store).unwrap();
    assert_eq!(pulled.digest.to_string(), sha256_digest(&tree.index));
    assert_eq!(pulled.manifests.len(), 3);
    // Two image configs, the attestation's empty config, the shared layer, one layer of each
    // platform and the in-toto statement: seven blobs, three of them (amd64's) stored before.
    assert_eq!(pulled.downloaded, 4);
    let gets = |path: &str| {
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "GET" && s.path == path)
            .count()
    };
    assert_eq!(gets(&Tree::blob_path(&tree.shared_layer)), 1);
    assert!(
        store.has(&tree.attestation_layer),
        "attestation blobs are stored"
    );
    assert!(store.has(&tree.arm_layer));
    let target = store.resolve_target(&name).unwrap();
    assert!(target.is_index());
    assert_eq!(target.digest().to_string(), sha256_digest(&tree.index));
    let platforms: Vec<String> = target.images().iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // Listed once: the platform images have no entries of their own.
    assert_eq!(store.names(), [format!("{}/t/multi:1", server.host())]);
    assert_eq!(store.store.list_images().unwrap().len(), 1);
    // The stored index is complete: it can be pushed whole.
    let local = rbuild_registry::store_impl::local_target(&store.store, &target, &name).unwrap();
    let rbuild_registry::LocalTarget::Index(local) = local else {
        panic!("an index")
    };
    assert_eq!(local.index, tree.index, "the index is stored byte for byte");
    assert_eq!(local.children.len(), 3);

    // A later single-platform pull of the same index leaves the name on the index.
    let arm64: Platform = "linux/arm64".parse().unwrap();
    pull_image(&client(1, 5.0, vec![]), &store, &r, &arm64, &NoProgress).unwrap();
    assert_eq!(
        store.resolve_target(&name).unwrap().digest().to_string(),
        sha256_digest(&tree.index)
    );
    assert_eq!(store.store.list_images().unwrap().len(), 1);

    // By digest: the index is pinned as `name@digest`.
    let pinned = TestStore::new();
    let by_digest = RemoteRef::parse(&format!(
        "{}/t/multi@{}",
        server.host(),
        sha256_digest(&tree.index)
    ))
    .unwrap();
    rbuild_registry::pull_all_platforms(&client(1, 5.0, vec![]), &pinned, &by_digest, &NoProgress)
        .unwrap();
    assert_eq!(pinned.names(), [by_digest.to_string()]);
    assert!(
        pinned
            .resolve_target(&by_digest.to_string())
            .unwrap()
            .is_index()
    );
}

/// A platform manifest that is gone (404) fails the whole pull: nothing is stored or named.
#[test]
fn all_platforms_missing_platform_manifest_stores_nothing() {
    let tree = Arc::new(Tree::new());
    let t2 = tree.clone();
    let arm = format!("/v2/t/multi/manifests/{}", tree.arm_manifest);
    let server = FakeHttp::start(move |req, _| {
        if req.path == arm {
            return reply(
                404,
                &[],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            );
        }
        t2.serve(req)
    });
    let store = TestStore::new();
    let err = pull_all(&server.host(), &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("404") && msg.contains(&tree.arm_manifest),
        "{msg}"
    );
    assert_store_empty(&store);
}

/// A corrupt layer of one platform fails the pull after the other blobs downloaded: none is
/// committed and nothing is named.
#[test]
fn all_platforms_corrupt_layer_stores_nothing() {
    let tree = Arc::new(Tree::new());
    let t2 = tree.clone();
    let arm_layer = Tree::blob_path(&tree.arm_layer);
    let server = FakeHttp::start(move |req, _| {
        if req.path == arm_layer {
            return reply(200, &[], b"not the arm64 layer".repeat(10));
        }
        t2.serve(req)
    });
    let store = TestStore::new();
    let err = pull_all(&server.host(), &store).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. }
        ),
        "{err}"
    );
    assert_store_empty(&store);
}

/// Indexes nested three deep, and index entries that are neither manifests nor indexes, are
/// refused before any blob is fetched.
#[test]
fn all_platforms_bounds_on_index_shape() {
    let tree = Tree::new();
    // index → index → index → manifests: one level too many.
    let mut objects = tree.objects.clone();
    let mut inner = tree.index.clone();
    for _ in 0..2 {
        objects.insert(
            format!("manifests/{}", sha256_digest(&inner)),
            (OCI_INDEX.to_string(), inner.clone()),
        );
        inner = json(serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_INDEX, &inner)],
        }));
    }
    objects.insert("manifests/1".into(), (OCI_INDEX.to_string(), inner));
    let deep = Arc::new(Tree { objects, ..tree });
    let d2 = deep.clone();
    let server = FakeHttp::start(move |req, _| d2.serve(req));
    let store = TestStore::new();
    let err = pull_all(&server.host(), &store).unwrap_err().to_string();
    assert!(err.contains("nested more than two levels"), "{err}");
    assert_store_empty(&store);
    assert!(
        !server
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path.contains("/blobs/")),
        "no blob is fetched for a refused tree"
    );

    // An entry naming a layer instead of a manifest.
    let odd = json(serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(GZIP_LAYER, b"x")],
    }));
    let server = FakeHttp::start(move |req, _| {
        if req.path == "/v2/t/multi/manifests/1" {
            return reply(200, &[("Content-Type", OCI_INDEX)], odd.clone());
        }
        reply(200, &[], "{}")
    });
    let err = pull_all(&server.host(), &store).unwrap_err().to_string();
    assert!(err.contains("neither a manifest nor an index"), "{err}");
    assert_store_empty(&store);
}

/// `--all-platforms` of a single-platform image pulls that image, resolving it once.
#[test]
fn all_platforms_of_a_single_image_pulls_it() {
    let img = Arc::new(Image::new());
    let i2 = img.clone();
    let server = FakeHttp::start(move |req, _| i2.serve(req));
    let store = TestStore::new();
    let r = RemoteRef::parse(&format!("{}/t/img:1", server.host())).unwrap();
    let pulled =
        rbuild_registry::pull_all_platforms(&client(1, 5.0, vec![]), &store, &r, &NoProgress)
            .unwrap();
    assert_eq!(pulled.digest.to_string(), sha256_digest(&img.manifest));
    assert!(pulled.manifests.is_empty());
    assert_eq!(pulled.downloaded, 2);
    assert_eq!(store.names(), [r.to_string()]);
    let manifest_gets = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 1);
}

/// The push side of an image built on a base whose layer was never downloaded: the layer is
/// remote in `t/base` on the registry pushed to, the config is local.
struct LazyBuilt {
    config: Vec<u8>,
    layer: String,
    base: RemoteRef,
}

impl rbuild_registry::PushSource for LazyBuilt {
    fn open_blob(
        &self,
        digest: &rbuild_registry::Digest,
    ) -> Result<Box<dyn std::io::Read + Send>, RegistryError> {
        assert_eq!(
            digest.as_str(),
            sha256_digest(&self.config),
            "only the config is local"
        );
        Ok(Box::new(std::io::Cursor::new(self.config.clone())))
    }
    fn compressed_digest(
        &self,
        _: &rbuild_registry::Digest,
        _: &str,
    ) -> Option<(rbuild_registry::Digest, u64)> {
        None
    }
    fn remote_blob(&self, digest: &rbuild_registry::Digest) -> Option<RemoteRef> {
        (digest.as_str() == self.layer).then(|| self.base.clone())
    }
    fn remember_compressed(
        &self,
        _: &rbuild_registry::Digest,
        _: &str,
        _: &rbuild_registry::Digest,
        _: u64,
    ) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// Push the lazily built image to `t/app` on a fake registry whose answer to the mount of the
/// base layer is `mount`; the config is there already (HEAD 200). Returns the push and every
/// request it made.
fn push_lazy(mount: u16) -> (rbuild_registry::PushedImage, Vec<Seen>) {
    let img = Image::new();
    let layer = sha256_digest(&img.layer);
    let config_path = format!("/v2/t/app/blobs/{}", sha256_digest(&img.config));
    let layer_path = format!("/v2/t/app/blobs/{layer}");
    let server = FakeHttp::start(move |req, _| {
        let p = req.path.as_str();
        match req.method.as_str() {
            "POST" if p.starts_with("/v2/t/app/blobs/uploads/?mount=") => match mount {
                202 => reply(202, &[("Location", "/v2/t/app/blobs/uploads/s1")], ""),
                status => reply(status, &[], ""),
            },
            "DELETE" if p == "/v2/t/app/blobs/uploads/s1" => reply(204, &[], ""),
            "HEAD" if p == config_path || p == layer_path => {
                reply(200, &[("Content-Length", "10")], "")
            }
            "PUT" if p == "/v2/t/app/manifests/1" => reply(201, &[], ""),
            _ => reply(404, &[], ""),
        }
    });
    let host = format!("127.0.0.1:{}", server.port);
    let source = LazyBuilt {
        config: img.config.clone(),
        layer: layer.clone(),
        base: RemoteRef::parse(&format!("{host}/t/base")).unwrap(),
    };
    let local = rbuild_registry::LocalImage {
        manifest: img.manifest.clone(),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        layers: vec![rbuild_registry::LocalLayer {
            diff_id: rbuild_registry::Digest::parse(&layer).unwrap(),
            digest: rbuild_registry::Digest::parse(&layer).unwrap(),
            size: img.layer.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }],
    };
    let tmp = tempfile::tempdir().unwrap();
    let opts = rbuild_registry::PushOptions {
        compression: rbuild_registry::Compression::Gzip,
        compress_threads: 1,
        mount_from: Vec::new(),
        tmp_dir: tmp.path().to_path_buf(),
    };
    let target = RemoteRef::parse(&format!("{host}/t/app:1")).unwrap();
    let pushed = rbuild_registry::push_image(
        &client(1, 5.0, vec![]),
        &source,
        &local,
        &target,
        &opts,
        &NoProgress,
    )
    .unwrap();
    (pushed, server.requests())
}

/// A base layer that lives in a repository of the registry pushed to costs one request: the
/// cross-repository mount, asked straight away (no HEAD first: a registry answers 201 whether
/// it mounted the blob or had it already). Refused, the push goes on as usual (the opened
/// upload session cancelled, then HEAD, which finds it here).
#[test]
fn remote_base_layer_is_mounted_in_one_request() {
    let (pushed, seen) = push_lazy(201);
    let layer = sha256_digest(&Image::new().layer);
    let about_layer: Vec<String> = seen
        .iter()
        .filter(|r| r.path.contains(&layer))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(about_layer.len(), 1, "{about_layer:?}");
    assert!(
        about_layer[0].starts_with("POST /v2/t/app/blobs/uploads/?mount=")
            && about_layer[0].ends_with("&from=t%2Fbase"),
        "{about_layer:?}"
    );
    // The mount, the config's HEAD, the manifest: nothing else.
    assert_eq!(
        seen.len(),
        3,
        "{:?}",
        seen.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!((pushed.mounted, pushed.skipped, pushed.uploaded), (1, 1, 0));

    let (pushed, seen) = push_lazy(202);
    let calls: Vec<String> = seen
        .iter()
        .filter(|r| r.path.contains(&layer) || r.path.ends_with("/s1"))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(calls, ["POST", "DELETE", "HEAD"]);
    assert_eq!((pushed.mounted, pushed.skipped, pushed.uploaded), (0, 2, 0));
}

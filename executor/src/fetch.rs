//! Downloads for `ADD <url>`: requested through the registry crate's transport (system CA
//! store and `SSL_CERT_FILE`, proxies, timeouts, retries — what pull and push use), streamed
//! to a temporary file in the store, hashed while reading, bounded in size, verified against
//! `--checksum`, with the mtime from `Last-Modified`. HTTPS sources never follow redirects to
//! plain HTTP; credentials in the URL are never printed.

use std::io::{Read, Write};

use rbuild_solver::inputs::{FetchedUrl, redact};
use rbuild_store::Store;
use rbuild_store::digest::Hasher;
use sha2::Digest as _;

/// Largest body `ADD` downloads (override with `RBUILD_MAX_DOWNLOAD`, in bytes).
const DEFAULT_MAX_DOWNLOAD: u64 = 16 << 30;

fn max_download() -> u64 {
    std::env::var("RBUILD_MAX_DOWNLOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_DOWNLOAD)
}

/// Download `url` into the store's temporary area through `client`'s transport.
pub fn fetch_url(
    store: &Store,
    client: &rbuild_registry::Client,
    url: &str,
    checksum: Option<&str>,
) -> Result<FetchedUrl, (String, Option<String>)> {
    let shown = redact(url);
    let response = client.get_url(url).map_err(|(message, help)| {
        (
            scrub(&message, url, &shown),
            Some(scrub(&help, url, &shown)),
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err((
            format!(
                "the server answered {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            Some("check the URL; ADD only downloads what answers 200".into()),
        ));
    }
    let modified = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
        .map(|zoned| zoned.timestamp().as_second());
    let name = file_name(url);
    let tmp_dir = store.layout().tmp();
    let mut file = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| {
        (
            format!("cannot create a file in `{}`: {e}", tmp_dir.display()),
            None,
        )
    })?;
    let limit = max_download();
    let mut reader = response.into_body().into_reader().take(limit + 1);
    let mut hasher = Hasher::new();
    // `--checksum` may name sha384 or sha512; the body is keyed by sha256 either way.
    let mut other = OtherDigests::for_checksum(checksum);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            (
                format!("download interrupted after {size} bytes: {e}"),
                Some("retry the build; the server or network failed mid-transfer".into()),
            )
        })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            return Err((
                format!("the body is larger than {limit} bytes"),
                Some("raise the limit with RBUILD_MAX_DOWNLOAD=<bytes> if this is expected".into()),
            ));
        }
        hasher.update(&buf[..n]);
        other.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| (format!("cannot write the download: {e}"), None))?;
    }
    let digest = hasher.finish();
    if let Some(expected) = checksum {
        let got = match expected.split_once(':').map(|(alg, _)| alg) {
            Some("sha384") => format!("sha384:{}", hex::encode(other.sha384.finalize())),
            Some("sha512") => format!("sha512:{}", hex::encode(other.sha512.finalize())),
            _ => digest.to_string(),
        };
        if !expected.eq_ignore_ascii_case(&got) {
            return Err((
                "the downloaded content does not match --checksum".into(),
                Some(format!(
                    "expected {expected}\ngot      {got}\nthe content at this URL changed; \
                     update --checksum if the new content is trusted"
                )),
            ));
        }
    }
    let file = file.into_temp_path();
    Ok(FetchedUrl {
        url: url.to_string(),
        path: file.to_path_buf(),
        file: std::sync::Arc::new(file),
        digest,
        size,
        modified,
        name,
    })
}

/// The digests `--checksum` may ask for besides sha256, computed only when it does.
struct OtherDigests {
    sha384: sha2::Sha384,
    sha512: sha2::Sha512,
    wanted: bool,
}

impl OtherDigests {
    fn for_checksum(checksum: Option<&str>) -> OtherDigests {
        OtherDigests {
            sha384: sha2::Sha384::new(),
            sha512: sha2::Sha512::new(),
            wanted: checksum.is_some_and(|c| c.starts_with("sha384:") || c.starts_with("sha512:")),
        }
    }

    fn update(&mut self, data: &[u8]) {
        if self.wanted {
            self.sha384.update(data);
            self.sha512.update(data);
        }
    }
}

/// The last path segment, as BuildKit names downloaded files (`__unnamed__` when none).
fn file_name(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest)
        .split_once('/')
        .map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Replace the raw URL (which may hold a password) in an error text.
fn scrub(text: &str, url: &str, shown: &str) -> String {
    text.replace(url, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name("https://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(file_name("https://h/"), "__unnamed__");
        assert_eq!(file_name("https://h"), "__unnamed__");
        assert_eq!(file_name("http://h/dir/"), "__unnamed__");
    }
}

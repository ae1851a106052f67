//! Image references with Docker's grammar and normalisation: `nginx` means
//! `docker.io/library/nginx:latest`; `host:port/repo:tag`, `repo@sha256:...` and tag+digest
//! forms; the familiar short form for display. Hand-written rather than oci-spec's single regex
//! so every rejection says exactly what is wrong and where.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise a reference; a reference with neither tag nor digest gets `latest`.
    pub fn parse(input: &str) -> Result<Reference> {
        let mut r = Reference::parse_name_only(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parse without adding the default tag (for patterns like `rbuild images nginx`).
    pub fn parse_name_only(input: &str) -> Result<Reference> {
        let err = |start: usize, end: usize, reason: &str, label: &str, help: &str| {
            Error::InvalidReference {
                input: input.to_string(),
                span: (start, end.max(start + 1).min(input.len().max(1)) - start).into(),
                reason: reason.to_string(),
                label: label.to_string(),
                help: help.to_string(),
            }
        };
        const HELP: &str = "a reference looks like `[HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]`, \
                            e.g. `nginx`, `user/app:1.0` or `localhost:5000/app@sha256:...`";
        if input.is_empty() {
            return Err(err(0, 0, "the reference is empty", "here", HELP));
        }
        if let Some(pos) = input.find(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(err(
                pos,
                pos + 1,
                "it contains whitespace",
                "whitespace here",
                HELP,
            ));
        }

        // name[:tag][@digest]
        let (name_tag, digest) = match input.find('@') {
            Some(at) => {
                let d = &input[at + 1..];
                let digest = Digest::parse(d).map_err(|e| {
                    let reason = match &e {
                        Error::InvalidDigest { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    err(
                        at + 1,
                        input.len(),
                        &format!("invalid digest: {reason}"),
                        "this digest",
                        HELP,
                    )
                })?;
                (&input[..at], Some(digest))
            }
            None => (input, None),
        };
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => (
                &name_tag[..colon],
                Some((&name_tag[colon + 1..], colon + 1)),
            ),
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(err(
                0,
                1,
                "the repository name is empty",
                "name expected here",
                HELP,
            ));
        }
        if let Some((tag, at)) = tag {
            validate_tag(tag).map_err(|reason| {
                err(
                    at,
                    at + tag.len(),
                    &reason,
                    "this tag",
                    "a tag is 1-128 of `A-Za-z0-9_.-` and does not start with `.` or `-`",
                )
            })?;
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err(
                0,
                name.len(),
                &format!("the repository name is longer than {NAME_TOTAL_LENGTH_MAX} characters"),
                "too long",
                HELP,
            ));
        }

        // Domain: the first component when it looks like a host (has `.` or `:`, is
        // `localhost`, or has uppercase letters, which a repository path cannot).
        let (domain, remainder, rem_start) = match name.find('/') {
            Some(i) => {
                let first = &name[..i];
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first
                {
                    (first.to_string(), &name[i + 1..], i + 1)
                } else {
                    (DEFAULT_DOMAIN.to_string(), name, 0)
                }
            }
            None => (DEFAULT_DOMAIN.to_string(), name, 0),
        };
        if domain != DEFAULT_DOMAIN || rem_start > 0 {
            validate_domain(&domain).map_err(|reason| {
                err(
                    0,
                    domain.len(),
                    &reason,
                    "this registry host",
                    "a registry host is a DNS name or IP, optionally with `:PORT`",
                )
            })?;
        }
        if remainder.len() == 64
            && crate::digest::is_lower_hex(remainder)
            && tag.is_none()
            && rem_start == 0
        {
            return Err(err(
                0,
                name.len(),
                "a 64-character hexadecimal string is an image ID, not a repository name",
                "image ID",
                "refer to an image by ID with `sha256:<hex>` or its short 12-digit form",
            ));
        }
        let mut offset = rem_start;
        for component in remainder.split('/') {
            validate_component(component).map_err(|(reason, rel)| {
                err(
                    offset + rel,
                    offset + component.len().max(rel + 1),
                    &reason,
                    "in this path component",
                    "repository path components are lowercase letters and digits, separated \
                     by `.`, `_`, `__` or dashes",
                )
            })?;
            offset += component.len() + 1;
        }
        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{remainder}")
        } else {
            remainder.to_string()
        };
        Ok(Reference {
            domain,
            path,
            tag: tag.map(|(t, _)| t.to_string()),
            digest,
        })
    }

    /// The registry host (`docker.io` for Docker Hub).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        validate_tag(tag)
            .map_err(|reason| Error::usage(format!("invalid tag `{tag}`: {reason}"), ""))?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to a digest, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The repository without tag or digest.
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The short name Docker shows: `nginx`, `user/app`, `ghcr.io/o/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The familiar form with tag/digest: `nginx:latest`, `app@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, e.g. `docker.io/library/nginx:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        return Err("the tag after `:` is empty".to_string());
    }
    if tag.len() > 128 {
        return Err(format!(
            "the tag is {} characters long, the maximum is 128",
            tag.len()
        ));
    }
    let first = tag.chars().next().unwrap_or(' ');
    if !word(first) {
        return Err(format!("a tag cannot start with `{first}`"));
    }
    if let Some(bad) = tag.chars().find(|&c| !(word(c) || c == '.' || c == '-')) {
        return Err(format!("a tag cannot contain `{bad}`"));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or("an IPv6 host is missing its closing `]`")?;
        let host = &rest[..end];
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("`[{host}]` is not an IPv6 address"));
        }
        let after = &rest[end + 1..];
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(format!("unexpected `{after}` after the IPv6 host"));
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the registry host is empty".to_string());
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("`{label}` is not a valid host name label"));
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("the port `{port}` is not a number"));
    }
    Ok(())
}

/// Check one path component; on failure return the reason and the offset of the culprit.
fn validate_component(c: &str) -> std::result::Result<(), (String, usize)> {
    if c.is_empty() {
        return Err((
            "a path component is empty (`//` or a trailing `/`)".to_string(),
            0,
        ));
    }
    if let Some((i, ch)) = c.char_indices().find(|(_, ch)| ch.is_ascii_uppercase()) {
        return Err((
            format!("repository name must be lowercase (found `{ch}`)"),
            i,
        ));
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) {
        return Err((
            format!("a path component cannot start with `{}`", bytes[0] as char),
            0,
        ));
    }
    if !alnum(bytes[bytes.len() - 1]) {
        return Err((
            format!(
                "a path component cannot end with `{}`",
                bytes[bytes.len() - 1] as char
            ),
            bytes.len() - 1,
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err((
                if sep.chars().all(|ch| "._-".contains(ch)) {
                    format!("`{sep}` is not a valid separator (use `.`, `_`, `__` or dashes)")
                } else {
                    format!(
                        "`{}` is not allowed in a repository name",
                        sep.chars().next().unwrap_or(' ')
                    )
                },
                start,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("user/repo"), "docker.io/user/repo:latest");
        assert_eq!(norm("index.docker.io/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:v1.2"), "localhost:5000/a/b:v1.2");
        assert_eq!(norm("ghcr.io/o/app:x_y-z"), "ghcr.io/o/app:x_y-z");
        assert_eq!(norm("[::1]:5000/app"), "[::1]:5000/app:latest");
        let d = crate::digest::EMPTY_JSON_DIGEST;
        assert_eq!(
            norm(&format!("nginx@{d}")),
            format!("docker.io/library/nginx@{d}")
        );
        assert_eq!(
            norm(&format!("nginx:1@{d}")),
            format!("docker.io/library/nginx:1@{d}")
        );
        assert_eq!(
            norm("a__b-c---d/e.f_g"),
            "docker.io/a__b-c---d/e.f_g:latest"
        );
    }

    #[test]
    fn familiar_form_strips_defaults() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/nginx"), "nginx:latest");
        assert_eq!(f("docker.io/user/app:1"), "user/app:1");
        assert_eq!(f("docker.io/library/a/b:1"), "library/a/b:1");
        assert_eq!(f("quay.io/x/y:2"), "quay.io/x/y:2");
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "tag after `:` is empty"),
            ("nginx:-x", "cannot start with `-`"),
            ("nginx:a/b", "port `a` is not a number"),
            ("nginx/Foo", "must be lowercase"),
            ("ng!nx", "`!` is not allowed"),
            ("a//b", "empty"),
            ("a/b/", "empty"),
            ("a..b", "not a valid separator"),
            ("-a", "cannot start with `-`"),
            ("nginx@sha256:abc", "64 hex digits"),
            ("nginx@md5:abc", "not supported"),
            ("host.com:port/x", "is not a number"),
            ("bad_host.com/x", "not a valid host name label"),
            ("with space", "whitespace"),
        ];
        for (input, needle) in cases {
            let e = Reference::parse(input).expect_err(input);
            let text = match &e {
                Error::InvalidReference { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            assert!(
                text.contains(needle),
                "{input:?}: {text:?} lacks {needle:?}"
            );
        }
        let hex = "a".repeat(64);
        assert!(Reference::parse(&hex).is_err());
        assert!(Reference::parse(&format!("{}:1", "a".repeat(256))).is_err());
        assert!(Reference::parse(&format!("x:{}", "a".repeat(129))).is_err());
    }

    #[test]
    fn name_only_keeps_missing_tag() {
        let r = Reference::parse_name_only("nginx").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.familiar(), "nginx");
    }
}

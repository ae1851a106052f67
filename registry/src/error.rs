//! The registry crate's error type: every failure says which registry, which object and what
//! the registry itself answered, and never contains a credential. Codes are
//! `rbuild::registry::*`; the class is `ErrorClass::Registry` (exit 3), except that a wrapped
//! store error keeps `Store` and a push refused before anything was sent (an incomplete
//! index) is `Input`. The registry's own `errors[].code: message` is carried along;
//! URLs lose userinfo and query strings, and `Credential`'s Debug redacts secrets.

use miette::Diagnostic;
use thiserror::Error;

/// What went wrong talking to a registry. Codes are `rbuild::registry::*`; the class is
/// [`rbuild_store::ErrorClass::Registry`] (exit code 3) except for store errors passed through.
#[derive(Debug, Error, Diagnostic)]
pub enum RegistryError {
    /// The registry answered with an HTTP error status.
    #[error("{what}: registry `{registry}` answered {status}{}", registry_message(.message))]
    #[diagnostic(code(rbuild::registry::http), help("{help}"))]
    Http {
        registry: String,
        what: String,
        status: u16,
        message: String,
        help: String,
    },

    /// 401/403 after authentication was attempted (or no credentials exist).
    #[error("{what}: authentication failed for registry `{registry}` ({status}){}", registry_message(.message))]
    #[diagnostic(
        code(rbuild::registry::unauthorized),
        help("run `rbuild login {registry}` or check that the account may access this repository")
    )]
    Unauthorized {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },

    /// Connection refused, reset, DNS failure, TLS failure, timeout.
    #[error("{what}: cannot reach registry `{registry}`: {reason}")]
    #[diagnostic(
        code(rbuild::registry::network),
        help("check the registry address, the network, or `registries.toml` mirrors and timeouts")
    )]
    Network {
        registry: String,
        what: String,
        reason: String,
    },

    /// A blob or manifest whose bytes do not hash to the digest that names them.
    #[error("digest mismatch for `{expected}`: got `{actual}` from registry `{registry}`")]
    #[diagnostic(
        code(rbuild::registry::digest_mismatch),
        help("the registry served corrupted or substituted content; nothing was stored")
    )]
    DigestMismatch {
        registry: String,
        expected: String,
        actual: String,
    },

    /// A blob whose length differs from its descriptor.
    #[error(
        "size mismatch for `{digest}` from registry `{registry}`: expected {expected} bytes, got {actual}"
    )]
    #[diagnostic(
        code(rbuild::registry::size_mismatch),
        help(
            "the download was truncated or the registry served different content; nothing was stored"
        )
    )]
    SizeMismatch {
        registry: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// A manifest or index that cannot be used.
    #[error("invalid manifest for `{reference}`: {reason}")]
    #[diagnostic(
        code(rbuild::registry::manifest),
        help("the registry served a manifest rbuild cannot use; nothing was stored")
    )]
    Manifest { reference: String, reason: String },

    /// An image index without an entry for the wanted platform.
    #[error("no matching manifest for {platform} in the manifest list entries of `{reference}`")]
    #[diagnostic(
        code(rbuild::registry::no_platform),
        help("available platforms: {available}; choose one with `--platform`")
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    /// A multi-platform image to push whose index lists manifests the store does not hold
    /// (one platform of it was pulled). Nothing was sent.
    #[error("cannot push `{image}`: its index lists {missing}, which the store does not hold")]
    #[diagnostic(
        code(rbuild::registry::incomplete_index),
        help(
            "fetch every platform with `rbuild pull --all-platforms {image}`, or push one platform with `rbuild push --platform {have} {image}`"
        )
    )]
    IncompleteIndex {
        image: String,
        /// What is missing: platforms and digests, comma-separated.
        missing: String,
        /// A platform that is stored (for the help line).
        have: String,
    },

    /// A reference, platform or digest string that does not parse.
    #[error("invalid {kind} `{value}`: {reason}")]
    #[diagnostic(code(rbuild::registry::invalid_input), help("{help}"))]
    InvalidInput {
        kind: &'static str,
        value: String,
        reason: String,
        help: String,
    },

    /// `registries.toml` is unreadable or malformed.
    #[error("invalid registry configuration `{path}`: {reason}")]
    #[diagnostic(
        code(rbuild::registry::config),
        help("see the `registries.toml` format in ARCHITECTURE.md (section Registry)")
    )]
    Config { path: String, reason: String },

    /// docker config.json or a credential helper failed.
    #[error("credentials for `{registry}`: {reason}")]
    #[diagnostic(
        code(rbuild::registry::credentials),
        help("check `~/.docker/config.json` (or `$DOCKER_CONFIG`) and its credential helpers")
    )]
    Credentials { registry: String, reason: String },

    /// Refused to use plain HTTP or an unsupported redirect.
    #[error("{what}: refusing {reason}")]
    #[diagnostic(
        code(rbuild::registry::insecure),
        help(
            "plain HTTP is only used for localhost or registries listed with `insecure = true` in `registries.toml`"
        )
    )]
    Insecure { what: String, reason: String },

    /// A local I/O failure while staging or compressing data.
    #[error("{what}: {source}")]
    #[diagnostic(
        code(rbuild::registry::io),
        help("check free space and permissions of the store root")
    )]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// An error from the local store, passed through with its own code.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(Box<dyn Diagnostic + Send + Sync + 'static>),
}

fn registry_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl RegistryError {
    /// A registry failure ([`ErrorClass::Registry`](rbuild_store::ErrorClass)), the local
    /// store's error passed through ([`ErrorClass::Store`](rbuild_store::ErrorClass)), or, for
    /// an incomplete index asked to be pushed, bad input (nothing was sent).
    pub fn class(&self) -> rbuild_store::ErrorClass {
        match self {
            RegistryError::Store(_) => rbuild_store::ErrorClass::Store,
            RegistryError::IncompleteIndex { .. } => rbuild_store::ErrorClass::Input,
            _ => rbuild_store::ErrorClass::Registry,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io {
            what: what.into(),
            source,
        }
    }

    /// True for failures worth retrying against the next mirror endpoint.
    pub(crate) fn is_endpoint_failure(&self) -> bool {
        match self {
            RegistryError::Network { .. } => true,
            RegistryError::Http { status, .. } => {
                *status == 404 || *status >= 500 || *status == 429
            }
            _ => false,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The store's errors pass through with their own codes, spans and help, except a digest or
/// platform given to a registry command, which stays this crate's invalid input (exit class
/// "registry", as before the types moved to the store).
impl From<rbuild_store::Error> for RegistryError {
    fn from(e: rbuild_store::Error) -> Self {
        match e {
            rbuild_store::Error::InvalidDigest { input, reason } => RegistryError::InvalidInput {
                kind: "digest",
                value: input,
                reason,
                help: "digests look like `sha256:` followed by 64 lowercase hex digits".into(),
            },
            rbuild_store::Error::InvalidPlatform { input, reason } => RegistryError::InvalidInput {
                kind: "platform",
                value: input,
                reason,
                help: "platforms look like `linux/amd64`, `linux/arm64` or `linux/arm/v7`".into(),
            },
            other => RegistryError::Store(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    #[test]
    fn store_input_errors_keep_the_registry_class() {
        let code = |e: RegistryError| e.code().map(|c| c.to_string()).unwrap_or_default();
        let platform = "linux//x".parse::<rbuild_store::Platform>().unwrap_err();
        let e = RegistryError::from(platform);
        assert!(e.to_string().contains("invalid platform `linux//x`"), "{e}");
        assert_eq!(code(e), "rbuild::registry::invalid_input");
        let digest = rbuild_store::Digest::parse("sha256:ABC").unwrap_err();
        assert_eq!(code(digest.into()), "rbuild::registry::invalid_input");
        let reference = rbuild_store::Reference::parse("a b").unwrap_err();
        assert_eq!(code(reference.into()), "rbuild::reference::invalid");
    }
}

//! Which variables the rules treat as defined without a declaration, and how to find the
//! undefined ones a word references (with BuildKit's lexer, so `${A:-$B}` counts `B`).

use crate::shell;

/// Environment variables assumed to come from any base image.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "HOSTNAME", "TERM", "PWD", "SHELL", "USER", "LANG", "LC_ALL",
];

/// Build args every stage may use without declaring them.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Platform args defined in the global scope automatically.
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Names referenced by `word` that `defined` does not contain.
pub fn undefined_in(word: &str, escape: char, defined: &dyn Fn(&str) -> bool) -> Vec<String> {
    // Every name the lexer can look up is among the candidates; when all are defined, no
    // reference can be unset and the expansion is not needed.
    if !word.contains('$') || shell::candidate_names(word).all(defined) {
        return Vec::new();
    }
    let env = |name: &str| defined(name).then(String::new);
    match shell::expand_word(word, &env, escape) {
        Ok(r) => r.unset.into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

//! Bounds on untrusted input (layers, archives, JSON documents). Every reader of content that
//! came from outside the store takes its limits from here, so one place documents them.

use crate::error::{Error, Result};

/// Limits applied to untrusted content. `Limits::default()` suits real images; tests shrink
/// them to exercise the failure paths cheaply.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most bytes one layer may expand to once decompressed (decompression-bomb guard).
    /// Environment override: `RBUILD_MAX_LAYER_SIZE` (bytes, or with a k/M/G/T suffix).
    pub max_layer_bytes: u64,
    /// Largest PAX extended header / GNU long name or link record (Go's CVE-2022-2879 fix).
    pub max_tar_header_bytes: u64,
    /// Most entries in one layer.
    pub max_layer_entries: u64,
    /// Longest path inside a layer, in bytes.
    pub max_path_bytes: usize,
    /// Largest manifest, index or config document.
    pub max_json_bytes: u64,
    /// Largest zstd window (log2 of bytes) a layer may declare.
    pub zstd_window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_layer_bytes: 64 << 30,
            max_tar_header_bytes: 1 << 20,
            max_layer_entries: 4_000_000,
            max_path_bytes: 4096,
            max_json_bytes: 8 << 20,
            zstd_window_log_max: 27,
        }
    }
}

impl Limits {
    /// The defaults, with `RBUILD_MAX_LAYER_SIZE` applied when set.
    pub fn from_env() -> Result<Limits> {
        let mut limits = Limits::default();
        if let Ok(v) = std::env::var("RBUILD_MAX_LAYER_SIZE") {
            limits.max_layer_bytes =
                crate::size::parse(&v, crate::size::Base::Binary).map_err(|e| {
                    Error::usage(
                        format!("RBUILD_MAX_LAYER_SIZE: {e}"),
                        crate::size::help(crate::size::Base::Binary),
                    )
                })?;
        }
        Ok(limits)
    }

    /// The error for a layer that expands past `max_layer_bytes`.
    pub(crate) fn layer_too_big(&self, layer: &str) -> Error {
        Error::Limit {
            what: format!("layer {layer} once decompressed"),
            limit: format!("{} bytes", self.max_layer_bytes),
            help: "a layer this large is probably a decompression bomb; if it is genuine, raise \
                   the limit with RBUILD_MAX_LAYER_SIZE (e.g. `RBUILD_MAX_LAYER_SIZE=200G`)"
                .to_string(),
        }
    }
}

/// Parse `123`, `4k`, `5M`, `6G`, `7T`, `1.5GiB` (powers of 1024): [`crate::size::parse`] with
/// the binary base.
pub fn parse_size(s: &str) -> Option<u64> {
    crate::size::parse(s, crate::size::Base::Binary).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("3T"), Some(3 << 40));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
    }
}

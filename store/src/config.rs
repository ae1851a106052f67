//! The image configuration (OCI `config.json` / Docker image JSON): our own serde types with
//! every Docker extension (Healthcheck, OnBuild, Shell, ArgsEscaped) and a flattened `extra`
//! map on each object so fields we do not model survive a parse/serialize round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json;

/// The whole image configuration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// RFC 3339 creation time, kept as the exact string the image carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we do not model (`container`, `container_config`, `docker_version`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The runtime defaults of containers started from the image (`config` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        rename = "ArgsEscaped",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub args_escaped: Option<bool>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// HEALTHCHECK settings (durations in nanoseconds, as Docker stores them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Healthcheck {
    #[serde(rename = "Test", default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(rename = "Interval", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(rename = "Timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(
        rename = "StartPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_period: Option<i64>,
    #[serde(
        rename = "StartInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_interval: Option<i64>,
    #[serde(rename = "Retries", default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the layer stack by uncompressed digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// One `history` entry (one Dockerfile instruction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ImageConfig {
    /// Parse untrusted config bytes (strict JSON), and check `rootfs.type` (config.md: MUST
    /// error on unknown values).
    pub fn parse(bytes: &[u8], max: u64, what: &str) -> Result<ImageConfig> {
        let config: ImageConfig = json::parse_strict(bytes, max, what)?;
        if config.rootfs.kind != "layers" {
            return Err(Error::json(
                what,
                format!(
                    "rootfs.type is `{}`, only `layers` is defined",
                    config.rootfs.kind
                ),
            ));
        }
        Ok(config)
    }

    /// Deterministic bytes of this config (sorted keys): what `commit_image` stores.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        json::to_canonical_vec(self)
    }

    /// The creation time, if present and valid.
    pub fn created_time(&self) -> Option<jiff::Timestamp> {
        self.created.as_deref()?.parse().ok()
    }

    /// History entries that produced a layer, in order (they pair with `rootfs.diff_ids`).
    pub fn layer_history(&self) -> impl Iterator<Item = &History> {
        self.history.iter().filter(|h| !h.empty_layer)
    }

    /// A fresh config for the host platform with no layers.
    pub fn new_for_host() -> ImageConfig {
        ImageConfig {
            architecture: crate::manifest::host_arch().to_string(),
            os: "linux".to_string(),
            ..ImageConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_fields_and_unknown_fields_round_trip() {
        let src = r#"{
          "architecture":"amd64","os":"linux","docker_version":"24.0.0",
          "config":{"Cmd":["sh"],"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true,
                    "Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,"Zz":1},
                    "Hostname":"abc","Labels":{"b":"2","a":"1"}},
          "rootfs":{"type":"layers","diff_ids":[]},
          "history":[{"created_by":"x","empty_layer":true}]
        }"#;
        let c = ImageConfig::parse(src.as_bytes(), 1 << 20, "config").unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.on_build.as_deref(), Some(&["RUN x".to_string()][..]));
        assert_eq!(cc.args_escaped, Some(true));
        assert_eq!(
            cc.healthcheck.as_ref().unwrap().interval,
            Some(30_000_000_000)
        );
        let out = String::from_utf8(c.to_bytes().unwrap()).unwrap();
        for needle in [
            "\"docker_version\"",
            "\"Hostname\":\"abc\"",
            "\"Zz\":1",
            "\"Shell\"",
        ] {
            assert!(out.contains(needle), "{needle} lost: {out}");
        }
        assert!(out.contains(r#""Labels":{"a":"1","b":"2"}"#), "{out}");
        assert_eq!(c.to_bytes().unwrap(), c.clone().to_bytes().unwrap());
    }

    #[test]
    fn unknown_rootfs_type_is_an_error() {
        let src = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"foo","diff_ids":[]}}"#;
        assert!(ImageConfig::parse(src.as_bytes(), 1 << 20, "config").is_err());
    }
}

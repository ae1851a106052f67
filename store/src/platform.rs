//! Platforms (`os/arch[/variant]`): the one `Platform` type of rbuild (index entries, image
//! configs, `--platform`, the solver's target), its parsing and normalisation, the host's
//! platform, and the rules for matching an index entry against a wanted platform.
//!
//! Normalisation follows containerd's `platforms.Normalize` (which BuildKit uses): `x86_64` →
//! `amd64`, `aarch64` → `arm64`, arm64's `v8` is the default and so is dropped (`linux/arm64/v8`
//! ≡ `linux/arm64`), plain `arm` means `arm/v7`. The host is therefore `linux/arm64` (no
//! variant) on a 64-bit ARM machine, as BuildKit's `TARGETPLATFORM` and image configs say.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::Descriptor;

/// A platform, as an index entry's `platform` object (unknown fields kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
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
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Hash for Platform {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.architecture.hash(state);
        self.os.hash(state);
        self.os_version.hash(state);
        self.os_features.hash(state);
        self.variant.hash(state);
        // `Value` is not `Hash`; its JSON text is (the map is sorted, so it is stable).
        for (k, v) in &self.extra {
            k.hash(state);
            v.to_string().hash(state);
        }
    }
}

/// GOARCH-style name of the host CPU architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// containerd's architecture/variant normalisation (lowercased; `None` = no variant).
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase).unwrap_or_default();
    let (arch, variant) = match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".to_string(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".to_string(),
                _ => variant,
            };
            ("arm64".to_string(), v)
        }
        "armhf" => ("arm".to_string(), "v7".to_string()),
        "armel" => ("arm".to_string(), "v6".to_string()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".to_string(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".to_string(), v)
        }
        "i386" | "i686" | "386" => ("386".to_string(), String::new()),
        _ => (arch, variant),
    };
    (arch, (!variant.is_empty()).then_some(variant))
}

impl Platform {
    /// `os/arch[/variant]` with nothing else set (not normalised: see [`Platform::normalized`]).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// The platform this rbuild runs on, normalised (`linux/arm64` on any 64-bit ARM CPU,
    /// `linux/arm/v7` on 32-bit ARM).
    pub fn host() -> Platform {
        let (architecture, variant) = normalize_arch(host_arch(), None);
        Platform {
            architecture,
            os: "linux".to_string(),
            variant,
            ..Platform::default()
        }
    }

    /// The same platform with os lowercased and architecture/variant normalised.
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, self.variant.as_deref());
        Platform {
            architecture,
            os: self.os.to_ascii_lowercase(),
            variant,
            ..self.clone()
        }
    }

    /// How well an image for `entry` runs on `self` (the wanted platform): `None` = not at
    /// all, higher is better. An exact os/arch/variant match scores 10; a wanted platform
    /// without a variant (amd64, …) also takes an entry that has one (score 5); an arm vN
    /// platform runs older arm variants (v7 > v6 > v5, scored by their number).
    pub fn score(&self, entry: &Platform) -> Option<u32> {
        let want = self.normalized();
        let have = entry.normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return None;
        }
        if want.variant == have.variant {
            return Some(10);
        }
        // arm and arm64 variants are never empty after normalisation where they matter:
        // arm always has one, arm64 has one only beyond v8.
        match (&want.variant, &have.variant) {
            (None, Some(_)) if want.architecture != "arm64" => Some(5),
            (Some(w), Some(h)) if want.architecture == "arm" => {
                let num = |v: &str| v.trim_start_matches('v').parse::<u32>().ok();
                match (num(w), num(h)) {
                    (Some(w), Some(h)) if h < w => Some(h),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether an image for `entry` runs on `self`.
    pub fn matches(&self, entry: &Platform) -> bool {
        self.score(entry).is_some()
    }

    /// The index entry that best runs on `self` (entries without a platform are skipped);
    /// ties keep index order (image-index.md: the first match wins).
    pub fn select<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Descriptor>,
    ) -> Option<&'a Descriptor> {
        let mut best: Option<(&Descriptor, u32)> = None;
        for d in entries {
            let Some(p) = &d.platform else { continue };
            if let Some(score) = self.score(p)
                && best.is_none_or(|(_, s)| score > s)
            {
                best = Some((d, score));
            }
        }
        best.map(|(d, _)| d)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parse `os/arch[/variant]` (or a bare architecture, meaning linux) and normalise it.
    fn from_str(s: &str) -> Result<Platform> {
        let bad = |reason: &str| Error::InvalidPlatform {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty component"));
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            [arch] if *arch != "linux" => ("linux", *arch, None),
            _ => return Err(bad("expected `os/arch[/variant]`")),
        };
        Ok(Platform::new(os, arch, variant).normalized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_normalises_like_containerd() {
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("LINUX/AMD64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/8").to_string(), "linux/arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        for bad in ["linux//v7", "a/b/c/d", "", "linux"] {
            let e = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(e.contains("invalid platform"), "{bad}: {e}");
        }
    }

    #[test]
    fn host_is_normalised() {
        let host = Platform::host();
        assert_eq!(host, host.normalized());
        assert_eq!(host.architecture, host_arch());
        assert_ne!(host.variant.as_deref(), Some("v8"));
    }

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(
            crate::media::OCI_MANIFEST,
            crate::digest::Digest::of(format!("{arch}{variant:?}").as_bytes()),
            1,
        );
        d.platform = Some(Platform::new("linux", arch, variant));
        d
    }

    /// The registry's index selection (moved here with the type).
    #[test]
    fn variant_rules() {
        let entries = vec![
            entry("amd64", None),
            entry("arm", Some("v6")),
            entry("arm", Some("v7")),
            entry("arm64", Some("v8")),
        ];
        let pick = |s: &str| p(s).select(&entries).map(|d| d.platform.clone().unwrap());
        assert_eq!(pick("linux/arm64").unwrap().architecture, "arm64");
        assert_eq!(pick("linux/arm/v7").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick("linux/arm").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick("linux/arm/v8").unwrap().variant.as_deref(), Some("v7"));
        assert!(pick("linux/arm/v5").is_none());
        assert!(pick("linux/s390x").is_none());
        assert_eq!(pick("linux/amd64").unwrap().architecture, "amd64");
        // arm64 without a variant in the index still matches an arm64/v8 request.
        let plain = vec![entry("arm64", None)];
        assert!(p("linux/arm64/v8").select(&plain).is_some());
        // Entries without a platform are skipped; ties keep index order.
        let mut bare = entry("amd64", None);
        bare.platform = None;
        let two = vec![bare, entry("amd64", None), entry("amd64", None)];
        assert!(std::ptr::eq(
            p("linux/amd64").select(&two).unwrap(),
            &two[1]
        ));
    }

    #[test]
    fn scores() {
        let entry = |a: &str, v: Option<&str>| Platform::new("linux", a, v);
        assert_eq!(
            p("linux/arm64").score(&entry("arm64", Some("v8"))),
            Some(10)
        );
        assert_eq!(p("linux/arm64/v8").score(&entry("arm64", None)), Some(10));
        assert_eq!(p("linux/arm/v7").score(&entry("arm", Some("v6"))), Some(6));
        assert_eq!(p("linux/arm/v6").score(&entry("arm", Some("v7"))), None);
        assert_eq!(p("linux/amd64").score(&entry("amd64", Some("v3"))), Some(5));
        assert_eq!(p("linux/amd64").score(&entry("amd64", None)), Some(10));
        assert_eq!(p("linux/amd64").score(&entry("arm64", None)), None);
        assert_eq!(p("linux/arm64").score(&entry("arm64", Some("v9"))), None);
        assert!(!p("windows/amd64").matches(&entry("amd64", None)));
    }
}

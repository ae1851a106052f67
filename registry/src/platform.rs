//! Platforms (`os/arch[/variant]`): parsing `--platform`, the host's default, and choosing
//! the best entry of an image index with containerd's variant rules (arm64 ≡ arm64/v8, an
//! armv7 host also runs v6 and v5 images).

use std::fmt;
use std::str::FromStr;

use crate::error::RegistryError;
use crate::manifest::Descriptor;

/// A target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    /// Empty when unspecified.
    pub variant: String,
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant),
        "aarch64" | "arm64" => (
            "arm64".into(),
            if variant == "8" { "v8".into() } else { variant },
        ),
        "armhf" | "armel" | "arm" => {
            let v = match (arch.as_str(), variant.as_str()) {
                ("armhf", "") => "v7".into(),
                ("armel", "") => "v6".into(),
                (_, v) if v.len() == 1 && v.chars().all(|c| c.is_ascii_digit()) => format!("v{v}"),
                (_, v) => v.into(),
            };
            ("arm".into(), v)
        }
        "i386" | "i686" | "386" => ("386".into(), variant),
        _ => (arch, variant),
    }
}

impl FromStr for PlatformSpec {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = |reason: &str| RegistryError::InvalidInput {
            kind: "platform",
            value: s.to_string(),
            reason: reason.to_string(),
            help: "platforms look like `linux/amd64`, `linux/arm64` or `linux/arm/v7`".into(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty component"));
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, ""),
            [os, arch, variant] => (*os, *arch, *variant),
            [arch] if *arch != "linux" => ("linux", *arch, ""),
            _ => return Err(bad("expected `os/arch[/variant]`")),
        };
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(PlatformSpec {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        })
    }
}

impl PlatformSpec {
    /// The platform this process runs on.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            other => (other, ""),
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.into(),
        }
    }

    /// How well an index entry fits: `None` = not runnable here, higher is better.
    pub fn score(&self, entry: &crate::manifest::Platform) -> Option<u32> {
        if !entry.os.eq_ignore_ascii_case(&self.os) {
            return None;
        }
        let (arch, variant) =
            normalize_arch(&entry.architecture, entry.variant.as_deref().unwrap_or(""));
        if arch != self.architecture {
            return None;
        }
        let effective = |a: &str, v: &str| -> String {
            match (a, v) {
                ("arm64", "") => "v8".into(),
                ("arm", "") => "v7".into(),
                _ => v.to_string(),
            }
        };
        let want = effective(&self.architecture, &self.variant);
        let have = effective(&arch, &variant);
        if self.variant.is_empty() && self.architecture != "arm" && self.architecture != "arm64" {
            // No variant asked (e.g. amd64): prefer the plain entry, accept any other.
            return Some(if variant.is_empty() { 10 } else { 5 });
        }
        if want == have {
            return Some(10);
        }
        // An arm vN host runs older arm variants: v7 > v6 > v5.
        if arch == "arm" {
            let num = |v: &str| v.trim_start_matches('v').parse::<u32>().ok();
            if let (Some(w), Some(h)) = (num(&want), num(&have))
                && h < w
            {
                return Some(h);
            }
        }
        None
    }

    /// The best matching entry of an index; ties keep index order.
    pub fn select<'a>(&self, entries: &'a [Descriptor]) -> Option<&'a Descriptor> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Platform;

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: crate::manifest::media::OCI_MANIFEST.into(),
            digest: format!("sha256:{:0>64}", arch.len() + variant.map_or(0, str::len)),
            size: 1,
            urls: None,
            annotations: None,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
                os_version: None,
                os_features: None,
                extra: Default::default(),
            }),
            artifact_type: None,
        }
    }

    #[test]
    fn parse_and_display() {
        let p: PlatformSpec = "linux/arm/7".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        let p: PlatformSpec = "linux/x86_64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert!("linux//v7".parse::<PlatformSpec>().is_err());
        assert!("a/b/c/d".parse::<PlatformSpec>().is_err());
    }

    #[test]
    fn variant_rules() {
        let entries = vec![
            entry("amd64", None),
            entry("arm", Some("v6")),
            entry("arm", Some("v7")),
            entry("arm64", Some("v8")),
        ];
        let pick = |p: &str| {
            let p: PlatformSpec = p.parse().unwrap();
            p.select(&entries).map(|d| d.platform.clone().unwrap())
        };
        assert_eq!(pick("linux/arm64").unwrap().architecture, "arm64");
        assert_eq!(pick("linux/arm/v7").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick("linux/arm").unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(pick("linux/arm/v8").unwrap().variant.as_deref(), Some("v7"));
        assert!(pick("linux/arm/v5").is_none());
        assert!(pick("linux/s390x").is_none());
        assert_eq!(pick("linux/amd64").unwrap().architecture, "amd64");
        // arm64 without a variant in the index still matches an arm64/v8 request.
        let plain = vec![entry("arm64", None)];
        let p: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert!(p.select(&plain).is_some());
    }
}

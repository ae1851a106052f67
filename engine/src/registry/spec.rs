//! `--cache-from` / `--cache-to` values, in BuildKit's syntax: comma-separated `key=value`
//! fields (`type=registry,ref=REF,mode=max,compression=zstd,ignore-error=true`), or a bare
//! reference meaning `type=registry,ref=REF`. `type=local,dest=DIR` (export) and
//! `type=local,src=DIR` (import) name an OCI image layout directory instead.

use std::path::PathBuf;

use rbuild_registry::{Compression, RemoteRef};

/// The cache types that exist, as the error for another one lists them.
pub const CACHE_TYPES: &str = "`registry` (ref=REGISTRY/REPO:TAG) and `local` (dest=DIR for --cache-to, src=DIR for --cache-from)";

/// Where a cache lives.
#[derive(Debug, Clone)]
pub enum CacheLocation {
    /// A cache artifact in an OCI registry.
    Registry(RemoteRef),
    /// An OCI image layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => write!(f, "{r}"),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Which steps an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the final image's stage chain (BuildKit's default).
    Min,
    /// Every step of every stage the build ran.
    Max,
}

/// One parsed `--cache-from` / `--cache-to`.
#[derive(Debug, Clone)]
pub struct CacheSpec {
    pub location: CacheLocation,
    pub mode: CacheMode,
    /// `None`: the build's `--compression`.
    pub compression: Option<Compression>,
    /// `--cache-to` only: a failed export is a warning instead of an error.
    pub ignore_error: bool,
}

fn usage(flag: &str, raw: &str, problem: String) -> miette::Report {
    miette::miette!(
        code = "rbuild::usage::cache",
        help = format!(
            "write `{flag} type=registry,ref=REGISTRY/REPO:TAG{}` or `{flag} type=local,{}=DIR{}`",
            if flag == "--cache-to" {
                "[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]"
            } else {
                ""
            },
            if flag == "--cache-to" { "dest" } else { "src" },
            if flag == "--cache-to" {
                "[,mode=min|max][,compression=gzip|zstd]"
            } else {
                ""
            }
        ),
        "invalid `{flag} {raw}`: {problem}"
    )
}

/// Parse one value of `flag` (`--cache-from` or `--cache-to`).
pub fn parse(flag: &str, raw: &str) -> miette::Result<CacheSpec> {
    let export = flag == "--cache-to";
    let mut local = false;
    let mut dir: Option<String> = None;
    let mut reference = None;
    let mut mode = CacheMode::Min;
    let mut compression = None;
    let mut ignore_error = false;
    if !raw.contains('=') {
        reference = Some(raw.to_string());
    } else {
        for field in raw.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                return Err(usage(flag, raw, format!("`{field}` is not `key=value`")));
            };
            match key {
                "type" if value == "registry" => local = false,
                "type" if value == "local" => local = true,
                "type" => {
                    return Err(usage(
                        flag,
                        raw,
                        format!("cache type `{value}` does not exist; the types are {CACHE_TYPES}"),
                    ));
                }
                "ref" => reference = Some(value.to_string()),
                "dest" if export => dir = Some(value.to_string()),
                "src" if !export => dir = Some(value.to_string()),
                "mode" if export => {
                    mode = match value {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => {
                            return Err(usage(
                                flag,
                                raw,
                                format!("mode `{value}` is neither `min` nor `max`"),
                            ));
                        }
                    }
                }
                "compression" if export => {
                    compression = Some(
                        value
                            .parse::<Compression>()
                            .map_err(|e| usage(flag, raw, super::describe(&e)))?,
                    );
                }
                "ignore-error" if export => {
                    ignore_error = match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(usage(
                                flag,
                                raw,
                                format!("ignore-error `{value}` is neither `true` nor `false`"),
                            ));
                        }
                    }
                }
                _ => return Err(usage(flag, raw, format!("unknown field `{key}`"))),
            }
        }
    }
    let location = if local {
        let key = if export { "dest" } else { "src" };
        if reference.is_some() {
            return Err(usage(
                flag,
                raw,
                format!("`type=local` takes `{key}`, not `ref`"),
            ));
        }
        let Some(dir) = dir.filter(|d| !d.is_empty()) else {
            return Err(usage(flag, raw, format!("it names no `{key}` directory")));
        };
        CacheLocation::Local(PathBuf::from(dir))
    } else {
        if dir.is_some() {
            return Err(usage(
                flag,
                raw,
                "`src`/`dest` need `type=local` (a registry cache takes `ref`)".into(),
            ));
        }
        let Some(reference) = reference.filter(|r| !r.is_empty()) else {
            return Err(usage(flag, raw, "it names no `ref`".into()));
        };
        let bare = !raw.contains('=');
        let reference = RemoteRef::parse(&reference).map_err(|e| {
            let mut problem = super::describe(&e);
            if bare {
                problem.push_str(&format!(
                    "; a bare value is a registry reference, the cache types are {CACHE_TYPES}"
                ));
            }
            usage(flag, raw, problem)
        })?;
        CacheLocation::Registry(reference)
    };
    Ok(CacheSpec {
        location,
        mode,
        compression,
        ignore_error,
    })
}

/// Parse every value of `flag`.
pub fn parse_all(flag: &str, values: &[String]) -> miette::Result<Vec<CacheSpec>> {
    values.iter().map(|raw| parse(flag, raw)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BuildKit forms parse; bare references are registry caches; defaults are min/none.
    #[test]
    fn cache_specs_parse() {
        let s = parse(
            "--cache-to",
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max,compression=zstd,ignore-error=true",
        )
        .unwrap();
        assert_eq!(s.location.to_string(), "127.0.0.1:5000/app:cache");
        assert_eq!(s.mode, CacheMode::Max);
        assert_eq!(s.compression, Some(Compression::Zstd));
        assert!(s.ignore_error);
        let s = parse("--cache-from", "127.0.0.1:5000/app:cache").unwrap();
        assert_eq!(s.mode, CacheMode::Min);
        assert_eq!(s.compression, None);
        let s = parse("--cache-to", "type=local,dest=/tmp/c,mode=max").unwrap();
        assert!(
            matches!(&s.location, CacheLocation::Local(d) if d == std::path::Path::new("/tmp/c"))
        );
        assert_eq!(s.mode, CacheMode::Max);
        let s = parse("--cache-from", "type=local,src=/tmp/c").unwrap();
        assert!(
            matches!(&s.location, CacheLocation::Local(d) if d == std::path::Path::new("/tmp/c"))
        );
    }

    /// Unsupported types, unknown fields, export-only fields on import and missing refs fail
    /// with the flag and the offending field named.
    #[test]
    fn bad_cache_specs_are_usage_errors() {
        for (flag, raw, needle) in [
            (
                "--cache-from",
                "type=gha,scope=x",
                "the types are `registry`",
            ),
            ("--cache-from", "./some dir", "the cache types are"),
            (
                "--cache-from",
                "type=local,dest=/tmp/x",
                "unknown field `dest`",
            ),
            ("--cache-to", "type=local,src=/tmp/x", "unknown field `src`"),
            ("--cache-to", "type=local", "no `dest`"),
            ("--cache-to", "dest=/tmp/x", "need `type=local`"),
            (
                "--cache-to",
                "type=registry,ref=r/a:c,mode=all",
                "mode `all`",
            ),
            (
                "--cache-from",
                "type=registry,ref=r/a:c,mode=max",
                "unknown field `mode`",
            ),
            ("--cache-to", "type=registry", "no `ref`"),
            (
                "--cache-to",
                "type=registry,ref=r/a:c,compression=lz4",
                "lz4",
            ),
            ("--cache-to", "type=registry,ref=not a ref", "not a ref"),
        ] {
            let err = parse(flag, raw).unwrap_err();
            let text = format!("{err}");
            assert!(
                text.contains(flag) && text.contains(needle),
                "{raw}: {text}"
            );
        }
    }
}

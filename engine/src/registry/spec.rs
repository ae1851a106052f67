//! `--cache-from` / `--cache-to` values, in BuildKit's syntax: comma-separated `key=value`
//! fields (`type=registry,ref=REF,mode=max,compression=zstd,ignore-error=true`), or a bare
//! reference meaning `type=registry,ref=REF`. `type=local,dest=DIR` (export) and
//! `type=local,src=DIR` (import) name an OCI image layout directory instead. `type=inline`
//! (export only, `mode=min` only, as BuildKit) embeds the cache in the built image's config;
//! it is read back by naming the image as a registry cache (`--cache-from REF`).

use std::path::PathBuf;

use rbuild_registry::{Compression, RemoteRef};

/// The cache types that exist, as every error about a cache spec lists them.
pub const CACHE_TYPES: &str = "`registry` (ref=REGISTRY/REPO:TAG), `local` (dest=DIR for --cache-to, \
    src=DIR for --cache-from) and `inline` (--cache-to type=inline embeds the cache in the image; \
    --cache-from REGISTRY/REPO:TAG of that image reads it)";

/// Where a cache lives.
#[derive(Debug, Clone)]
pub enum CacheLocation {
    /// A cache artifact in an OCI registry.
    Registry(RemoteRef),
    /// An OCI image layout directory.
    Local(PathBuf),
    /// `--cache-to type=inline`: in the config of the image the build commits (and pushes).
    Inline,
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => write!(f, "{r}"),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
            CacheLocation::Inline => write!(f, "the image config (inline)"),
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
    let forms = if flag == "--cache-to" {
        "`--cache-to type=registry,ref=REGISTRY/REPO:TAG[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]`, \
         `--cache-to type=local,dest=DIR[,mode=min|max][,compression=gzip|zstd][,ignore-error=true]` \
         or `--cache-to type=inline`"
    } else {
        "`--cache-from type=registry,ref=REGISTRY/REPO:TAG` (a cache artifact, or an image built \
         with `--cache-to type=inline`), `--cache-from REGISTRY/REPO:TAG` or \
         `--cache-from type=local,src=DIR`"
    };
    miette::miette!(
        code = "rbuild::usage::cache",
        help = format!("write {forms}; the cache types are {CACHE_TYPES}"),
        "invalid `{flag} {raw}`: {problem}"
    )
}

/// Parse one value of `flag` (`--cache-from` or `--cache-to`).
pub fn parse(flag: &str, raw: &str) -> miette::Result<CacheSpec> {
    let export = flag == "--cache-to";
    let mut kind = "registry";
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
                "type" if value == "registry" || value == "local" => kind = value,
                "type" if value == "inline" && export => kind = value,
                "type" if value == "inline" => {
                    return Err(usage(
                        flag,
                        raw,
                        "an inline cache is read from the image that carries it: name the \
                         image, `--cache-from type=registry,ref=IMAGE` or `--cache-from IMAGE`"
                            .into(),
                    ));
                }
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
    let location = if kind == "inline" {
        // BuildKit's inline exporter takes no options: the layers are the image's, and only
        // entries whose layers the image holds can be described (its `min` mode).
        if reference.is_some() || dir.is_some() || compression.is_some() {
            return Err(usage(
                flag,
                raw,
                "`type=inline` takes no `ref`, `dest` or `compression`: the cache goes into \
                 the built image and uses its layers"
                    .into(),
            ));
        }
        if mode == CacheMode::Max {
            return Err(usage(
                flag,
                raw,
                "`type=inline` supports only `mode=min` (as BuildKit): an inline cache can only \
                 name layers of the image itself; use `type=registry` or `type=local` for \
                 `mode=max`"
                    .into(),
            ));
        }
        CacheLocation::Inline
    } else if kind == "local" {
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
        if bare && std::path::Path::new(&reference).is_dir() {
            // `ci-cache` is also a valid image name; the directory is what was meant.
            return Err(usage(
                flag,
                raw,
                format!(
                    "`{reference}` is a directory; a bare value names a registry cache or image \
                     (write `type=local,{}={reference}` for the directory, or \
                     `type=registry,ref={reference}` for the image)",
                    if export { "dest" } else { "src" }
                ),
            ));
        }
        let reference = RemoteRef::parse(&reference).map_err(|e| {
            let mut problem = super::describe(&e);
            if bare {
                problem.push_str(
                    "; a bare value names a registry cache or image (REGISTRY/REPO:TAG), a \
                     directory needs `type=local`",
                );
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

    /// Unsupported types, unknown fields, export-only fields on import, missing refs and
    /// directories, and bare values that are not registry references fail with the flag and the
    /// offending field named, and every one of them lists the cache types that exist.
    #[test]
    fn bad_cache_specs_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().to_str().unwrap().to_string();
        for (flag, raw, needle) in [
            ("--cache-from", "type=gha,scope=x", "`gha` does not exist"),
            ("--cache-to", "type=s3,bucket=x", "`s3` does not exist"),
            (
                "--cache-from",
                "./some dir",
                "a bare value names a registry",
            ),
            (
                "--cache-from",
                "/var/cache/ci",
                "a bare value names a registry",
            ),
            ("--cache-from", dir_s.as_str(), "is a directory"),
            ("--cache-to", dir_s.as_str(), "is a directory"),
            (
                "--cache-from",
                "type=local,dest=/tmp/x",
                "unknown field `dest`",
            ),
            ("--cache-to", "type=local,src=/tmp/x", "unknown field `src`"),
            ("--cache-to", "type=local", "no `dest`"),
            ("--cache-from", "type=local", "no `src`"),
            ("--cache-from", "type=local,src=", "no `src`"),
            ("--cache-from", "type=local,ref=r/a:c", "not `ref`"),
            ("--cache-to", "dest=/tmp/x", "need `type=local`"),
            ("--cache-from", "src=/tmp/x", "need `type=local`"),
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
            ("--cache-from", "type=registry", "no `ref`"),
            ("--cache-from", "type=registry,ref=", "no `ref`"),
            (
                "--cache-to",
                "type=registry,ref=r/a:c,compression=lz4",
                "lz4",
            ),
            ("--cache-to", "type=registry,ref=not a ref", "not a ref"),
            ("--cache-from", "type=registry,ref=Bad/Ref", "Bad/Ref"),
            ("--cache-from", "type=inline", "name the image"),
            ("--cache-to", "type=inline,mode=max", "only `mode=min`"),
            ("--cache-to", "type=inline,ref=r/a:c", "takes no `ref`"),
            (
                "--cache-to",
                "type=inline,compression=zstd",
                "takes no `ref`, `dest` or `compression`",
            ),
            ("--cache-to", "type=local,dest=/x,bogus", "not `key=value`"),
        ] {
            let err = parse(flag, raw).unwrap_err();
            let text = format!("{err}");
            assert!(
                text.contains(flag) && text.contains(needle),
                "{raw}: {text}"
            );
            let help = err.help().map(|h| h.to_string()).unwrap_or_default();
            for kind in ["`registry`", "`local`", "`inline`"] {
                assert!(help.contains(kind), "{raw}: help lacks {kind}: {help}");
            }
        }
    }

    /// `--cache-to type=inline` (and its `mode=min`, `ignore-error`) parses.
    #[test]
    fn inline_cache_spec_parses() {
        for raw in [
            "type=inline",
            "type=inline,mode=min",
            "type=inline,ignore-error=true",
        ] {
            let s = parse("--cache-to", raw).unwrap();
            assert!(matches!(s.location, CacheLocation::Inline), "{raw}");
            assert_eq!(s.mode, CacheMode::Min);
        }
    }
}

//! `RUN --mount=...`: the CSV option list parsed into a typed [`Mount`] with BuildKit's
//! validation (types, keys per type, sharing modes, octal modes, ids) and "did you mean" help.
//! Values holding `$` are left for the solver, which re-parses with [`parse_mount_with`].

use std::borrow::Cow;

use serde::Serialize;

use crate::diagnostics::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    /// The flag value as written.
    pub raw: String,
    /// The whole `--mount=...` text.
    pub span: crate::Span,
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Option<MountSharing>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret mounts: expose the secret as this environment variable.
    pub env: Option<String>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Some values contain variables: the solver must expand and re-parse `raw`.
    pub deferred: bool,
}

/// Why a mount is invalid, with the byte range of the offending field within the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MountError {
    pub message: String,
    pub help: Option<String>,
    pub start: usize,
    pub end: usize,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
    "size",
];
const TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARING: &[&str] = &["shared", "private", "locked"];

/// Split a CSV record like Go's `encoding/csv` (one line, `"` quoting with `""` escapes).
fn split_csv(value: &str) -> Result<Vec<(Cow<'_, str>, usize, usize)>, MountError> {
    let mut fields = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        let field: Cow<'_, str> = if bytes.get(i) == Some(&b'"') {
            let mut field = String::new();
            i += 1;
            loop {
                match value[i..].find('"') {
                    None => {
                        return Err(MountError {
                            message: "extraneous or missing \" in quoted field".into(),
                            help: None,
                            start,
                            end: value.len(),
                        });
                    }
                    Some(q) => {
                        field.push_str(&value[i..i + q]);
                        i += q + 1;
                        if bytes.get(i) == Some(&b'"') {
                            field.push('"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            if i < bytes.len() && bytes[i] != b',' {
                return Err(MountError {
                    message: "extraneous or missing \" in quoted field".into(),
                    help: None,
                    start,
                    end: i,
                });
            }
            field.into()
        } else {
            let end = value[i..].find(',').map(|p| i + p).unwrap_or(value.len());
            let field = &value[i..end];
            if field.contains('"') {
                return Err(MountError {
                    message: "bare \" in non-quoted field".into(),
                    help: None,
                    start,
                    end,
                });
            }
            i = end;
            field.into()
        };
        fields.push((field, start, i));
        if i >= bytes.len() {
            return Ok(fields);
        }
        i += 1; // the comma
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Sizes like `64m`, `1g`, `1024` (binary multiples, as Docker's `RAMInBytes`). The same
/// meaning as `rbuild_store::size::parse` with the binary base; kept local because the parser
/// depends on no other rbuild crate.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let num_len = v.len()
        - v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .len();
    let num: f64 = v[..num_len].parse().ok()?;
    let unit = v[num_len..].to_ascii_lowercase();
    let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "p" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((num * mult) as u64)
}

/// Parse a mount without expanding anything: values holding `$` are kept raw, unvalidated,
/// and the result is marked `deferred`.
pub fn parse_mount(value: &str) -> Result<Mount, MountError> {
    parse_inner(value, None)
}

/// Parse a mount, passing every value through `expand` first (the solver's second pass).
pub fn parse_mount_with(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, MountError> {
    parse_inner(value, Some(expand))
}

/// The solver's expansion of one mount value.
type Expand<'a> = &'a mut dyn FnMut(&str) -> Result<String, String>;

/// Parse with `expand` (the solver's pass), or without it: values holding `$` are deferred.
fn parse_inner(value: &str, mut expand: Option<Expand<'_>>) -> Result<Mount, MountError> {
    let defer_vars = expand.is_none();
    let mut m = Mount {
        raw: value.to_string(),
        span: crate::Span::default(),
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        env: None,
        size: None,
        deferred: false,
    };
    let mut ro_auto = true;
    for (field, start, end) in split_csv(value)? {
        let err = |message: String, help: Option<String>| MountError {
            message,
            help,
            start,
            end,
        };
        let (key_raw, val) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field.as_ref(), None),
        };
        let key: Cow<'_, str> = if key_raw.bytes().any(|b| b.is_ascii_uppercase()) {
            key_raw.to_ascii_lowercase().into()
        } else {
            key_raw.into()
        };
        let Some(val) = val else {
            match key.as_ref() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(err(
                        format!(
                            "unexpected key `required` for mount type `{}`",
                            m.kind.as_str()
                        ),
                        Some("`required` applies to secret and ssh mounts".into()),
                    ));
                }
                _ => {
                    return Err(err(
                        format!("invalid field `{field}` must be a key=value pair"),
                        None,
                    ));
                }
            }
            continue;
        };
        if !KEYS.contains(&key.as_ref()) {
            return Err(err(
                format!("unexpected key `{key}` in `{field}`"),
                suggest(&key, KEYS).map(|s| format!("did you mean {s}?")),
            ));
        }
        if key == "from" && val.contains('$') && val.len() > 1 {
            return Err(err(
                "`from` doesn't support variable expansion, define alias stage instead".into(),
                Some("add `FROM <image> AS <name>` and use `from=<name>`".into()),
            ));
        }
        if defer_vars && val.contains('$') {
            m.deferred = true;
            continue;
        }
        let val: Cow<'_, str> = match expand.as_mut() {
            Some(expand) => expand(val).map_err(|e| err(e, None))?.into(),
            None => val.into(),
        };
        let bad = |what: &str| err(format!("invalid value `{val}` for `{what}`"), None);
        match key.as_ref() {
            "type" => {
                let kinds = [
                    ("bind", MountType::Bind),
                    ("cache", MountType::Cache),
                    ("tmpfs", MountType::Tmpfs),
                    ("secret", MountType::Secret),
                    ("ssh", MountType::Ssh),
                ];
                m.kind = match kinds.iter().find(|(n, _)| n.eq_ignore_ascii_case(&val)) {
                    Some((_, kind)) => *kind,
                    None => {
                        return Err(err(
                            format!("unsupported mount type `{val}`"),
                            Some(match suggest(&val, TYPES) {
                                Some(s) => format!("did you mean {s}?"),
                                None => format!("mount types are {}", TYPES.join(", ")),
                            }),
                        ));
                    }
                }
            }
            "from" => m.from = Some(val.into_owned()),
            "source" | "src" => m.source = Some(val.into_owned()),
            "target" | "dst" | "destination" => m.target = Some(val.into_owned()),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&val).ok_or_else(|| bad(&key))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&val).ok_or_else(|| bad(&key))?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(err(
                        format!(
                            "unexpected key `required` for mount type `{}`",
                            m.kind.as_str()
                        ),
                        Some("`required` applies to secret and ssh mounts".into()),
                    ));
                }
                m.required = parse_bool(&val).ok_or_else(|| bad(&key))?;
            }
            "id" => m.id = Some(val.into_owned()),
            "sharing" => {
                let modes = [
                    ("shared", MountSharing::Shared),
                    ("private", MountSharing::Private),
                    ("locked", MountSharing::Locked),
                ];
                m.sharing = Some(
                    match modes.iter().find(|(n, _)| n.eq_ignore_ascii_case(&val)) {
                        Some((_, mode)) => *mode,
                        None => {
                            return Err(err(
                                format!("unsupported sharing value `{val}`"),
                                Some(match suggest(&val, SHARING) {
                                    Some(s) => format!("did you mean {s}?"),
                                    None => "use shared, private or locked".into(),
                                }),
                            ));
                        }
                    },
                )
            }
            "mode" => {
                m.mode = Some(u32::from_str_radix(&val, 8).map_err(|_| {
                    err(
                        format!("invalid value `{val}` for mode"),
                        Some("mode is an octal number such as 0755".into()),
                    )
                })?)
            }
            "uid" => m.uid = Some(val.parse().map_err(|_| bad("uid"))?),
            "gid" => m.gid = Some(val.parse().map_err(|_| bad("gid"))?),
            "env" => m.env = Some(val.into_owned()),
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(err(
                        format!("unexpected key `size` for mount type `{}`", m.kind.as_str()),
                        Some("`size` applies to tmpfs mounts".into()),
                    ));
                }
                m.size = Some(parse_size(&val).ok_or_else(|| bad("size"))?);
            }
            _ => {}
        }
    }
    let whole = |message: String| MountError {
        message,
        help: None,
        start: 0,
        end: value.len(),
    };
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    for (set, what) in [
        (m.mode.is_some(), "mode"),
        (m.uid.is_some(), "uid"),
        (m.gid.is_some(), "gid"),
    ] {
        if set && !file_info {
            return Err(whole(format!(
                "{what} not allowed for `{}` type mounts",
                m.kind.as_str()
            )));
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(whole(format!(
            "invalid cache sharing set for `{}` mount",
            m.kind.as_str()
        )));
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(whole("secret mount should not have a from".into()));
        }
        if m.source.is_none()
            && m.target.is_none()
            && m.id.is_none()
            && m.env.is_none()
            && !m.deferred
        {
            return Err(whole(
                "invalid secret mount: one of source, target, id or env required".into(),
            ));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(whole("both source and id can't be set".into()));
        }
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(whole(format!(
            "unexpected key `env` for mount type `{}`",
            m.kind.as_str()
        )));
    }
    if matches!(
        m.kind,
        MountType::Bind | MountType::Cache | MountType::Tmpfs
    ) && m.target.is_none()
        && !m.deferred
    {
        return Err(MountError {
            message: format!("`target` is required for `{}` mounts", m.kind.as_str()),
            help: Some("add `target=/path/in/container`".into()),
            start: 0,
            end: value.len(),
        });
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_with_options() {
        let m =
            parse_mount("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.sharing, Some(MountSharing::Locked));
        assert_eq!(m.mode, Some(0o700));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_is_default_and_readonly() {
        let m = parse_mount("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
    }

    #[test]
    fn errors_point_at_the_field() {
        let e = parse_mount("type=cache,targte=/x").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean target?"));
        assert_eq!((e.start, e.end), (11, 20));
        assert!(parse_mount("type=nosuch,target=/x").is_err());
        assert!(parse_mount("type=cache,target=/x,sharing=maybe").is_err());
        assert!(parse_mount("type=bind,target=/x,mode=0755").is_err());
        assert!(parse_mount("type=secret").is_err());
        assert!(parse_mount("type=secret,id=a,from=x").is_err());
    }

    #[test]
    fn variables_are_deferred() {
        let m = parse_mount("type=cache,target=$DIR").unwrap();
        assert!(m.deferred);
        let m = parse_mount_with("type=cache,target=$DIR", &mut |v| {
            Ok(v.replace("$DIR", "/d"))
        })
        .unwrap();
        assert_eq!(m.target.as_deref(), Some("/d"));
    }
}

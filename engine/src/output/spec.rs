//! Parsing `--output` / `-o`: docker's `type=TYPE,dest=PATH[,key=value...]` syntax (CSV
//! quoting as buildx) and the short forms `-o DIR` and `-o -`, into checked [`OutputSpec`]s
//! before anything runs: the destination's form is decided against what exists on disk, and
//! the outputs are checked together (one stdout, distinct destinations).

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{LabeledSpan, Report};
use rbuild_store::Reference;

use super::file::absolute;

/// What an output produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// Names in the store (what `-t` does).
    Image,
    /// The final root filesystem, written into a directory.
    Local,
    /// The final root filesystem as a tar stream.
    Tar,
    /// An OCI image layout (archive or directory).
    Oci,
    /// A docker-archive (also an OCI layout), what `docker load` reads.
    Docker,
}

impl OutputType {
    fn name(self) -> &'static str {
        match self {
            OutputType::Image => "image",
            OutputType::Local => "local",
            OutputType::Tar => "tar",
            OutputType::Oci => "oci",
            OutputType::Docker => "docker",
        }
    }

    /// The keys this type accepts besides `type`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            OutputType::Image => &["name", "push"],
            OutputType::Local => &["dest", "platform-split"],
            OutputType::Tar => &["dest", "platform-split"],
            OutputType::Oci | OutputType::Docker => &["dest", "tar", "name"],
        }
    }
}

const TYPES: &[&str] = &["image", "local", "tar", "oci", "docker"];

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    Path(PathBuf),
}

/// One checked `--output`.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The flag value as typed, for messages.
    pub raw: String,
    pub kind: OutputType,
    /// `None` only for `type=image`.
    pub dest: Option<Dest>,
    /// `image`: extra names to tag; `oci`/`docker`: the names recorded in the archive
    /// (default: the `-t` names).
    pub names: Vec<Reference>,
    /// `oci`/`docker`: write a layout directory instead of a tar archive.
    pub directory: bool,
    /// `local`/`tar`, `platform-split=`: one directory per platform of a multi-platform build
    /// (`None`: the default, split).
    pub platform_split: Option<bool>,
}

/// A field of the flag value: its unquoted text and where it is in the value.
struct Field {
    text: String,
    span: Range<usize>,
    quoted: bool,
}

/// Split at commas with CSV quoting (`"name=a,b"`), as buildx reads the flag with Go's
/// `encoding/csv`. Written by hand because the error labels need each field's byte range,
/// which the csv crate does not report.
fn split_fields(raw: &str) -> Result<Vec<Field>, (String, Range<usize>)> {
    let bytes = raw.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        if bytes.get(i) == Some(&b'"') {
            let mut text = String::new();
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                let c = raw[i..].chars().next().expect("in bounds");
                if c == '"' {
                    if bytes.get(i + 1) == Some(&b'"') {
                        text.push('"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    closed = true;
                    break;
                }
                text.push(c);
                i += c.len_utf8();
            }
            if !closed {
                return Err(("this quote is never closed".into(), start..start + 1));
            }
            if i < bytes.len() && bytes[i] != b',' {
                return Err((
                    "a quoted field must end at its closing quote".into(),
                    i..i + 1,
                ));
            }
            fields.push(Field {
                text,
                span: start..i,
                quoted: true,
            });
        } else {
            let end = raw[i..].find(',').map_or(raw.len(), |n| i + n);
            if let Some(q) = raw[i..end].find('"') {
                return Err((
                    "a `\"` may only open a quoted field".into(),
                    i + q..i + q + 1,
                ));
            }
            fields.push(Field {
                text: raw[i..end].to_string(),
                span: i..end,
                quoted: false,
            });
            i = end;
        }
        if i >= bytes.len() {
            break;
        }
        i += 1; // the comma
        if i == bytes.len() {
            fields.push(Field {
                text: String::new(),
                span: i..i,
                quoted: false,
            });
            break;
        }
    }
    Ok(fields)
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

const FLAG: &str = "--output ";

/// An error about `raw`, labelled at `span` (a byte range of `raw`) in the flag text.
fn flag_error(
    raw: &str,
    span: Range<usize>,
    label: String,
    message: String,
    help: String,
) -> Report {
    let at = FLAG.len() + span.start..FLAG.len() + span.end.max(span.start);
    miette::miette!(
        code = "rbuild::usage::output",
        help = help,
        labels = vec![LabeledSpan::at(at, label)],
        "{message}"
    )
    .with_source_code(format!("{FLAG}{raw}"))
}

const SYNTAX_HELP: &str = "write `--output type=TYPE,dest=PATH` with TYPE one of image, local, \
                           tar, oci, docker (or `-o DIR` for type=local, `-o -` for a tar on stdout)";

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_names(raw: &str, value: &str, span: Range<usize>) -> miette::Result<Vec<Reference>> {
    value
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            Reference::parse(n).map_err(|e| {
                flag_error(
                    raw,
                    span.clone(),
                    "not an image name".into(),
                    format!("invalid image name `{n}` in `--output {raw}`: {e}"),
                    "write `name=myapp:1.0` (several: `\"name=a:1,b:2\"`)".into(),
                )
            })
        })
        .collect()
}

/// Parse one `--output` value.
pub fn parse_one(raw: &str, stdout_is_terminal: bool) -> miette::Result<OutputSpec> {
    let fields = split_fields(raw).map_err(|(label, span)| {
        flag_error(
            raw,
            span,
            label,
            format!("cannot parse `--output {raw}`"),
            SYNTAX_HELP.into(),
        )
    })?;
    // Short forms: a bare path is a local directory, `-` is a tar on stdout.
    if fields.len() == 1 && !fields[0].quoted && !raw.contains('=') {
        if raw.is_empty() {
            return Err(flag_error(
                raw,
                0..0,
                "empty".into(),
                "`--output` needs a value".into(),
                SYNTAX_HELP.into(),
            ));
        }
        let (kind, dest) = if raw == "-" {
            (OutputType::Tar, Dest::Stdout)
        } else {
            (OutputType::Local, Dest::Path(PathBuf::from(raw)))
        };
        return finish_spec(raw, kind, Some((dest, 0..raw.len())), Vec::new(), None);
    }
    let mut kind: Option<(OutputType, Range<usize>)> = None;
    let mut pairs: Vec<(String, String, Range<usize>, Range<usize>)> = Vec::new();
    for f in &fields {
        let Some((key, value)) = f.text.split_once('=') else {
            return Err(flag_error(
                raw,
                f.span.clone(),
                "expected `key=value`".into(),
                format!("`{}` in `--output {raw}` is not `key=value`", f.text),
                SYNTAX_HELP.into(),
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        let (key_span, value_span) = if f.quoted {
            (f.span.clone(), f.span.clone())
        } else {
            let eq = f.span.start + f.text.find('=').expect("has =");
            (f.span.start..eq, eq + 1..f.span.end)
        };
        if pairs.iter().any(|(k, ..)| *k == key) {
            return Err(flag_error(
                raw,
                key_span,
                "given again here".into(),
                format!("`{key}` appears twice in `--output {raw}`"),
                "give each key once; repeat `--output` for several outputs".into(),
            ));
        }
        if key == "type" {
            let t = match value {
                "image" => OutputType::Image,
                "local" => OutputType::Local,
                "tar" => OutputType::Tar,
                "oci" => OutputType::Oci,
                "docker" => OutputType::Docker,
                "registry" => {
                    return Err(flag_error(
                        raw,
                        value_span,
                        "not supported here".into(),
                        "`--output type=registry` is not supported".into(),
                        "tag the image with `-t registry.example.com/name:tag` and push it with \
                         `rbuild push registry.example.com/name:tag`"
                            .into(),
                    ));
                }
                other => {
                    let label = match suggest(other, TYPES) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "unknown type".into(),
                    };
                    return Err(flag_error(
                        raw,
                        value_span,
                        label,
                        format!("unknown output type `{other}` in `--output {raw}`"),
                        format!("output types: {}", TYPES.join(", ")),
                    ));
                }
            };
            kind = Some((t, value_span.clone()));
        }
        pairs.push((key, value.to_string(), key_span, value_span));
    }
    let Some((kind, _)) = kind else {
        return Err(flag_error(
            raw,
            0..raw.len(),
            "no `type=`".into(),
            format!("`--output {raw}` does not say which type of output"),
            SYNTAX_HELP.into(),
        ));
    };
    let mut dest = None;
    let mut names = Vec::new();
    let mut tar = None;
    let mut platform_split = None;
    for (key, value, key_span, value_span) in pairs {
        if key == "type" {
            continue;
        }
        if !kind.keys().contains(&key.as_str()) {
            let mut known: Vec<&str> = kind.keys().to_vec();
            known.push("type");
            let label = match suggest(&key, &known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "unknown key".into(),
            };
            return Err(flag_error(
                raw,
                key_span,
                label,
                format!(
                    "`type={}` has no option `{key}` (in `--output {raw}`)",
                    kind.name()
                ),
                format!(
                    "options of `type={}`: {}",
                    kind.name(),
                    kind.keys().join(", ")
                ),
            ));
        }
        match key.as_str() {
            "dest" => {
                if value.is_empty() {
                    return Err(flag_error(
                        raw,
                        value_span,
                        "empty".into(),
                        format!("`dest` is empty in `--output {raw}`"),
                        "give a path, or `dest=-` for stdout".into(),
                    ));
                }
                let d = if value == "-" {
                    Dest::Stdout
                } else {
                    Dest::Path(PathBuf::from(&value))
                };
                dest = Some((d, value_span));
            }
            "name" => names = parse_names(raw, &value, value_span)?,
            "tar" | "push" | "platform-split" => {
                let Some(b) = parse_bool(&value) else {
                    return Err(flag_error(
                        raw,
                        value_span,
                        "expected true or false".into(),
                        format!("`{key}={value}` is not a boolean in `--output {raw}`"),
                        format!("write `{key}=true` or `{key}=false`"),
                    ));
                };
                if key == "push" && b {
                    return Err(flag_error(
                        raw,
                        value_span,
                        "not supported here".into(),
                        "pushing from `--output` is not supported".into(),
                        "push the tagged image afterwards with `rbuild push NAME`".into(),
                    ));
                }
                match key.as_str() {
                    "tar" => tar = Some(b),
                    "platform-split" => platform_split = Some(b),
                    _ => {}
                }
            }
            _ => unreachable!("keys are checked against the type's list"),
        }
    }
    let dest = match (kind, dest) {
        (OutputType::Image, _) => None,
        (_, Some(d)) => Some(d),
        (OutputType::Local, None) => {
            return Err(flag_error(
                raw,
                0..raw.len(),
                "no `dest=`".into(),
                format!("`--output {raw}` needs a destination directory"),
                "write `--output type=local,dest=DIR`".into(),
            ));
        }
        // buildx writes archives without `dest` to stdout when it is not a terminal.
        (_, None) => {
            if stdout_is_terminal {
                return Err(flag_error(
                    raw,
                    0..raw.len(),
                    "no `dest=`".into(),
                    format!(
                        "`--output {raw}` has no destination and stdout is a terminal: refusing to \
                         write an archive to it"
                    ),
                    format!(
                        "write `--output type={},dest=FILE`, or redirect stdout",
                        kind.name()
                    ),
                ));
            }
            Some((Dest::Stdout, 0..raw.len()))
        }
    };
    let mut spec = finish_spec(raw, kind, dest, names, tar)?;
    spec.platform_split = platform_split;
    Ok(spec)
}

/// Decide the form of the destination and check it against what exists on disk.
fn finish_spec(
    raw: &str,
    kind: OutputType,
    dest: Option<(Dest, Range<usize>)>,
    names: Vec<Reference>,
    tar: Option<bool>,
) -> miette::Result<OutputSpec> {
    let Some((dest, span)) = dest else {
        return Ok(OutputSpec {
            raw: raw.to_string(),
            kind,
            dest: None,
            names,
            directory: false,
            platform_split: None,
        });
    };
    let directory = match (&dest, kind) {
        (_, OutputType::Local) => true,
        (_, OutputType::Tar | OutputType::Image) => false,
        (Dest::Stdout, _) => false,
        (Dest::Path(p), _) => match tar {
            Some(t) => !t,
            // An existing directory stays one; otherwise `.tar` names (or an existing file)
            // mean an archive, anything else a layout directory.
            None => {
                p.is_dir()
                    || !(p.extension().is_some_and(|e| e == "tar")
                        || p.symlink_metadata().is_ok_and(|m| !m.is_dir()))
            }
        },
    };
    let what = if directory { "directory" } else { "file" };
    match (&dest, kind) {
        (Dest::Stdout, OutputType::Local) => {
            return Err(flag_error(
                raw,
                span,
                "a directory is needed".into(),
                format!("`type=local` writes a directory, not stdout (`--output {raw}`)"),
                "use `--output type=tar,dest=-` (or `-o -`) for the root filesystem on stdout"
                    .into(),
            ));
        }
        (Dest::Stdout, _) if directory => {
            return Err(flag_error(
                raw,
                span,
                "stdout cannot hold a directory".into(),
                format!("`tar=false` needs a directory destination (`--output {raw}`)"),
                "give `dest=DIR`".into(),
            ));
        }
        (Dest::Path(p), _) => {
            if let Ok(meta) = std::fs::metadata(p) {
                if directory && !meta.is_dir() {
                    return Err(flag_error(
                        raw,
                        span,
                        "not a directory".into(),
                        format!(
                            "`{}` exists and is not a directory, but `type={}` writes a directory here",
                            p.display(),
                            kind.name()
                        ),
                        "choose another `dest`, or remove the file".into(),
                    ));
                }
                if !directory && meta.is_dir() {
                    let help = if matches!(kind, OutputType::Oci | OutputType::Docker) {
                        "name a file (`dest=image.tar`), or add `tar=false` for a layout directory"
                    } else {
                        "name a file, e.g. `dest=rootfs.tar`"
                    };
                    return Err(flag_error(
                        raw,
                        span,
                        "a directory".into(),
                        format!(
                            "`{}` is a directory, but `type={}` writes a {what} here",
                            p.display(),
                            kind.name()
                        ),
                        help.into(),
                    ));
                }
                if directory && kind != OutputType::Local && !replaceable_layout(p) {
                    return Err(flag_error(
                        raw,
                        span,
                        "not empty".into(),
                        format!(
                            "refusing to replace `{}`: it is neither empty nor an OCI image layout",
                            p.display()
                        ),
                        "choose a new or empty directory; an existing layout written earlier is \
                         replaced as a whole"
                            .into(),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(OutputSpec {
        raw: raw.to_string(),
        kind,
        dest: Some(dest),
        names,
        directory,
        platform_split: None,
    })
}

/// An empty directory or an OCI image layout (which a new layout may replace).
fn replaceable_layout(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none() || dir.join("oci-layout").is_file(),
        Err(_) => false,
    }
}

/// Parse every `--output` and check them together (one stdout, distinct destinations).
pub fn parse_all(raw: &[String], quiet: bool) -> miette::Result<Vec<OutputSpec>> {
    let terminal = std::io::stdout().is_terminal();
    let specs: Vec<OutputSpec> = raw
        .iter()
        .map(|r| parse_one(r, terminal))
        .collect::<miette::Result<_>>()?;
    let mut seen: Vec<(&Dest, &str)> = Vec::new();
    for s in &specs {
        let Some(dest) = &s.dest else { continue };
        if let Some((_, earlier)) = seen.iter().find(|(d, _)| same_dest(d, dest)) {
            let what = match dest {
                Dest::Stdout => "stdout".to_string(),
                Dest::Path(p) => format!("`{}`", p.display()),
            };
            return Err(miette::miette!(
                code = "rbuild::usage::output",
                help = "give every output its own destination",
                "`--output {}` and `--output {earlier}` both write to {what}",
                s.raw
            ));
        }
        if quiet && *dest == Dest::Stdout {
            return Err(miette::miette!(
                code = "rbuild::usage::output",
                help = "drop `-q`, or write the output to a file",
                "`-q` prints the image ID on stdout, where `--output {}` writes its archive",
                s.raw
            ));
        }
        seen.push((dest, &s.raw));
    }
    Ok(specs)
}

fn same_dest(a: &Dest, b: &Dest) -> bool {
    match (a, b) {
        (Dest::Stdout, Dest::Stdout) => true,
        (Dest::Path(a), Dest::Path(b)) => absolute(a) == absolute(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> miette::Result<OutputSpec> {
        parse_one(raw, false)
    }

    fn message(raw: &str) -> String {
        let err = parse(raw).unwrap_err();
        let labels: Vec<String> = err
            .labels()
            .into_iter()
            .flatten()
            .map(|l| {
                let text = format!("{FLAG}{raw}");
                format!(
                    "{}@{}",
                    l.label().unwrap_or(""),
                    &text[l.offset()..l.offset() + l.len()]
                )
            })
            .collect();
        format!("{err} [{}]", labels.join("; "))
    }

    #[test]
    fn short_forms() {
        let s = parse("out").unwrap();
        assert_eq!(s.kind, OutputType::Local);
        assert_eq!(s.dest, Some(Dest::Path("out".into())));
        let s = parse("-").unwrap();
        assert_eq!(s.kind, OutputType::Tar);
        assert_eq!(s.dest, Some(Dest::Stdout));
    }

    #[test]
    fn full_forms() {
        let s = parse("type=oci,dest=x.tar").unwrap();
        assert_eq!((s.kind, s.directory), (OutputType::Oci, false));
        let s = parse("type=oci,dest=layout").unwrap();
        assert_eq!((s.kind, s.directory), (OutputType::Oci, true));
        let s = parse("type=oci,dest=x.tar,tar=false").unwrap();
        assert!(s.directory);
        let s = parse("type=docker,dest=img").unwrap();
        assert!(s.directory);
        let s = parse("TYPE=docker,Dest=img,tar=true").unwrap();
        assert!(!s.directory);
        let s = parse("type=tar").unwrap();
        assert_eq!(s.dest, Some(Dest::Stdout));
        let s = parse(r#"type=image,"name=a:1,b:2",push=false"#).unwrap();
        let names: Vec<String> = s.names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["docker.io/library/a:1", "docker.io/library/b:2"]);
        assert_eq!(s.dest, None);
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        assert_eq!(
            message("type=lcoal,dest=x"),
            "unknown output type `lcoal` in `--output type=lcoal,dest=x` \
             [did you mean `local`?@lcoal]"
        );
        assert_eq!(
            message("type=local,dets=x"),
            "`type=local` has no option `dets` (in `--output type=local,dets=x`) \
             [did you mean `dest`?@dets]"
        );
        assert_eq!(
            message("dest=x"),
            "`--output dest=x` does not say which type of output [no `type=`@dest=x]"
        );
        assert_eq!(
            message("type=local"),
            "`--output type=local` needs a destination directory [no `dest=`@type=local]"
        );
        assert_eq!(
            message("type=tar,dest=a,dest=b"),
            "`dest` appears twice in `--output type=tar,dest=a,dest=b` [given again here@dest]"
        );
        assert_eq!(
            message("type=oci,tar=maybe,dest=x"),
            "`tar=maybe` is not a boolean in `--output type=oci,tar=maybe,dest=x` \
             [expected true or false@maybe]"
        );
        assert_eq!(
            message("type=local,dest=-"),
            "`type=local` writes a directory, not stdout (`--output type=local,dest=-`) \
             [a directory is needed@-]"
        );
        assert_eq!(
            message(r#"type=image,"name=a"#),
            r#"cannot parse `--output type=image,"name=a` [this quote is never closed@"]"#
        );
        assert!(message("type=registry").contains("not supported"));
        assert!(message("type=image,push=true").contains("pushing"));
        assert!(message("type=tar,dest=").contains("`dest` is empty"));
        assert!(message("type=tar,dest=x,").contains("is not `key=value`"));
    }

    #[test]
    fn archives_to_a_terminal_are_refused() {
        let err = parse_one("type=oci", true).unwrap_err();
        assert!(err.to_string().contains("stdout is a terminal"), "{err}");
    }

    #[test]
    fn destinations_are_checked_against_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let d = dir.path().display();
        let err = parse(&format!("type=local,dest={}", file.display())).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = parse(&format!("type=tar,dest={d}")).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        // A non-empty directory that is not a layout is not replaced; an existing file is an
        // archive destination whatever its name.
        let err = parse(&format!("type=oci,dest={d},tar=false")).unwrap_err();
        assert!(err.to_string().contains("refusing to replace"), "{err}");
        assert!(
            !parse(&format!("type=oci,dest={}", file.display()))
                .unwrap()
                .directory
        );
        // Local outputs write into existing directories.
        assert!(parse(&format!("type=local,dest={d}")).is_ok());
    }

    #[test]
    fn outputs_are_checked_together() {
        let err = parse_all(
            &["type=tar,dest=a".into(), "type=oci,dest=./a".into()],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("both write to"), "{err}");
    }

    #[test]
    fn fields_split_like_csv() {
        let f = split_fields(r#"a=1,"b=2,3","c=""q""",d="#).unwrap();
        let t: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(t, ["a=1", "b=2,3", r#"c="q""#, "d="]);
        assert!(split_fields(r#"a="b""#).is_err());
        assert!(split_fields(r#""a"b"#).is_err());
    }
}

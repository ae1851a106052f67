//! `.dockerignore` with Docker's exact semantics: moby's `ignorefile.ReadAll` preprocessing,
//! `patternmatcher.MatchesOrParentMatches` (last matching rule wins, parents count) and the
//! archiver's rule for descending into an excluded directory. Each rule keeps its line and span.
//!
//! Which file: `<Dockerfile>.dockerignore` next to the Dockerfile wins over
//! `<context>/.dockerignore`; a symlinked context `.dockerignore` is resolved inside the context,
//! and one that leaves it is an error. Both are capped at [`MAX_IGNORE_FILE`] (4 MiB).
//!
//! Lines as in `ReadAll`: a UTF-8 BOM is dropped, `#` starts a comment only in column 1, lines
//! are trimmed, a leading `!` makes an exception, patterns are `filepath.Clean`ed and lose a
//! leading `/`, and `.` matches nothing. moby's fast paths are kept because they differ from the
//! regex (`**foo` is a suffix match). The walk prunes an excluded directory unless an exception
//! pattern, followed by `/`, starts with the directory path plus `/` (so `!**/keep` does not
//! re-include under an excluded directory); such a directory is recorded only when something
//! below it is included, as fsutil does. Bad patterns (a bare `!`, an unterminated `[`, a
//! trailing `\`) are errors labelled at the exact bytes of their line. Excluded files, the
//! Dockerfile and `.dockerignore` included, cannot be copied.
//!
//! Deliberate deviations from moby: inside a `[...]` class we follow `filepath.Match` (moby
//! sends `*` and `?` there through its regex translation), and `\d`, `\w` and similar escapes are
//! the literal letter (moby hands them to Go's regexp as classes).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::SourceSpan;

use super::error::{ContextError, ExcludedHere, Source, source};
use super::glob::MobyPattern;
use super::pathutil;

/// One `.dockerignore` line that is a pattern.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The pattern as written on its line (trimmed), for messages.
    pub written: String,
    /// The cleaned pattern without `!` (what moby matches against).
    pub cleaned: Vec<u8>,
    /// A `!` exception (re-includes what it matches).
    pub exception: bool,
    /// 1-based line number.
    pub line: usize,
    /// Byte span of the trimmed line inside the ignore file's (lossy UTF-8) text.
    pub span: SourceSpan,
    matcher: MobyPattern,
}

impl Rule {
    /// Whether this rule matches `path` or one of its parents.
    pub fn matches(&self, path: &[u8]) -> bool {
        self.matcher.matches_or_parent(path)
    }
}

/// The parsed ignore file (possibly empty) of a build context.
#[derive(Debug, Clone)]
pub struct DockerIgnore {
    name: String,
    text: Arc<str>,
    rules: Vec<Rule>,
}

impl Default for DockerIgnore {
    fn default() -> Self {
        Self::empty()
    }
}

impl DockerIgnore {
    /// No ignore file: nothing is excluded.
    pub fn empty() -> Self {
        DockerIgnore {
            name: ".dockerignore".into(),
            text: Arc::from(""),
            rules: Vec::new(),
        }
    }

    /// Parses ignore-file bytes named `name` (used in messages, e.g. `.dockerignore`).
    ///
    /// Preprocessing as moby's `ignorefile.ReadAll`: a UTF-8 BOM on line 1 is dropped; lines
    /// are split on `\n` with a trailing `\r` removed; a line whose first byte is `#` is a
    /// comment; the rest is whitespace-trimmed, empty lines skipped; a leading `!` marks an
    /// exception (trimmed again after it); the pattern is `filepath.Clean`ed and a leading `/`
    /// dropped. The pattern `.` matches nothing (the context root is never matched). A bare `!`
    /// and patterns `filepath.Match` rejects are errors labelled at the line.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, ContextError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut text = String::with_capacity(bytes.len());
        let mut lines = Vec::new();
        for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_start = text.len();
            text.push_str(&String::from_utf8_lossy(raw));
            text.push('\n');
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            lines.push((idx + 1, line_start, raw));
        }
        let text: Arc<str> = Arc::from(text);
        let mut rules = Vec::new();
        for (line, line_start, raw) in lines {
            if raw.first() == Some(&b'#') {
                continue;
            }
            let (lead, trimmed) = trim_space(raw);
            if trimmed.is_empty() {
                continue;
            }
            // Offsets in the lossy text: convert the raw prefix lengths.
            let off = line_start + String::from_utf8_lossy(&raw[..lead]).len();
            let span: SourceSpan = (off, String::from_utf8_lossy(trimmed).len()).into();
            let err = |reason: String, at: usize, len: usize| {
                let start = off + String::from_utf8_lossy(&trimmed[..at.min(trimmed.len())]).len();
                ContextError::BadIgnorePattern {
                    file: name.to_string(),
                    line,
                    reason,
                    src: source(name, text.clone()),
                    span: (start, len.max(1)).into(),
                }
            };
            let mut pat = trimmed;
            let exception = pat[0] == b'!';
            let mut pat_off = 0;
            if exception {
                let (l, t) = trim_space(&pat[1..]);
                pat_off = 1 + l;
                pat = t;
                if pat.is_empty() {
                    return Err(err(
                        "illegal exclusion pattern `!`: it names nothing".into(),
                        0,
                        trimmed.len(),
                    ));
                }
            }
            let mut cleaned = pathutil::clean(pat);
            if cleaned.len() > 1 && cleaned[0] == b'/' {
                cleaned.remove(0);
            }
            if exception && cleaned == b"/" {
                // moby cleans `!/` to `!` again and rejects it.
                return Err(err(
                    "illegal exclusion pattern `!`: it names nothing".into(),
                    0,
                    trimmed.len(),
                ));
            }
            // Error offsets inside the cleaned pattern map onto the written one when cleaning
            // did not change it; otherwise label the whole pattern.
            let matcher = MobyPattern::new(&cleaned).map_err(|e| {
                if cleaned == pat {
                    err(e.reason, pat_off + e.offset, e.len)
                } else {
                    err(e.reason, pat_off, pat.len())
                }
            })?;
            rules.push(Rule {
                written: String::from_utf8_lossy(trimmed).into_owned(),
                cleaned,
                exception,
                line,
                span,
                matcher,
            });
        }
        Ok(DockerIgnore {
            name: name.to_string(),
            text,
            rules,
        })
    }

    /// Finds and parses the ignore file for a build: `<Dockerfile>.dockerignore` next to the
    /// Dockerfile wins over `<context>/.dockerignore` (BuildKit's order). A context
    /// `.dockerignore` that is a symlink is resolved inside the context; one that leaves it is
    /// an error. Returns [`DockerIgnore::empty`] when neither exists.
    pub fn load(context: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        if let Some(df) = dockerfile {
            let mut specific = df.as_os_str().to_owned();
            specific.push(".dockerignore");
            let specific = PathBuf::from(specific);
            match read_capped(&specific) {
                Ok(bytes) => {
                    let name = specific
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| ".dockerignore".into());
                    return Self::parse(&name, &bytes);
                }
                Err(Some(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(Some(e)) => return Err(ContextError::io(specific.display(), e)),
                Err(None) => return Err(too_large(&specific)),
            }
        }
        let mut rel = b".dockerignore".to_vec();
        for _ in 0..40 {
            let abs = context.join(pathutil::from_bytes(&rel));
            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
                Err(e) => return Err(ContextError::io(abs.display(), e)),
            };
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&abs).map_err(|e| ContextError::io(abs.display(), e))?;
                let t = target.as_os_str().as_bytes();
                let joined = pathutil::join(pathutil::parent(&rel), t);
                if t.starts_with(b"/") || pathutil::climbs_out(&joined) {
                    return Err(ContextError::IgnoreFileEscapes {
                        target: target.display().to_string(),
                    });
                }
                rel = pathutil::clean(&joined);
                continue;
            }
            let bytes = read_capped(&abs).map_err(|e| match e {
                Some(e) => ContextError::io(abs.display(), e),
                None => too_large(&abs),
            })?;
            return Self::parse(".dockerignore", &bytes);
        }
        Err(ContextError::io(
            context.join(".dockerignore").display(),
            std::io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error()),
        ))
    }
}

/// The largest ignore file read (`/dev/zero` behind a symlink must not read forever).
pub const MAX_IGNORE_FILE: u64 = 4 << 20;

/// Read an ignore file, at most [`MAX_IGNORE_FILE`] bytes (`Err(None)` when it is larger).
/// It must be a regular file: a FIFO or device would block or never end.
fn read_capped(path: &Path) -> Result<Vec<u8>, Option<std::io::Error>> {
    use std::io::Read;
    // Checked before opening: opening a FIFO blocks until someone writes to it.
    if !std::fs::metadata(path).map_err(Some)?.is_file() {
        return Err(Some(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let file = std::fs::File::open(path).map_err(Some)?;
    let mut bytes = Vec::new();
    file.take(MAX_IGNORE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(Some)?;
    if bytes.len() as u64 > MAX_IGNORE_FILE {
        return Err(None);
    }
    Ok(bytes)
}

fn too_large(path: &Path) -> ContextError {
    ContextError::IgnoreFileTooLarge {
        path: path.display().to_string(),
        limit: MAX_IGNORE_FILE >> 20,
    }
}

impl DockerIgnore {
    /// Builds a rule set from patterns written elsewhere (COPY `--exclude` values), each with
    /// its span in that other source. Patterns are trimmed and cleaned as moby's
    /// `patternmatcher.New` does. On error returns the index of the bad pattern, the error's
    /// offset inside it and the reason.
    pub fn from_patterns(
        patterns: &[(&str, SourceSpan)],
    ) -> Result<Self, (usize, super::glob::GlobError)> {
        let mut rules = Vec::new();
        for (i, (written, span)) in patterns.iter().enumerate() {
            let (_, t) = trim_space(written.as_bytes());
            if t.is_empty() {
                continue;
            }
            let (exception, body) = match t.strip_prefix(b"!") {
                Some(rest) => (true, trim_space(rest).1),
                None => (false, t),
            };
            if body.is_empty() {
                return Err((
                    i,
                    super::glob::GlobError {
                        offset: 0,
                        len: t.len(),
                        reason: "illegal exclusion pattern `!`: it names nothing".into(),
                    },
                ));
            }
            let mut cleaned = pathutil::clean(body);
            if cleaned.len() > 1 && cleaned[0] == b'/' {
                cleaned.remove(0);
            }
            let matcher = MobyPattern::new(&cleaned).map_err(|e| (i, e))?;
            rules.push(Rule {
                written: String::from_utf8_lossy(t).into_owned(),
                cleaned,
                exception,
                line: 0,
                span: *span,
                matcher,
            });
        }
        Ok(DockerIgnore {
            name: "--exclude".into(),
            text: Arc::from(""),
            rules,
        })
    }

    /// The file name used in messages (`.dockerignore` or `Dockerfile.dockerignore`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when the file has `!` exceptions.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// moby's `MatchesOrParentMatches`: the rule that decides that `path` (context-relative,
    /// `/`-separated) is excluded, or `None` when it is included. Rules are evaluated in order,
    /// an exception is only tried once something matched and an exclusion only while nothing
    /// has; the last rule that matches the path or one of its parents wins.
    pub fn excluded_by(&self, path: &[u8]) -> Option<&Rule> {
        if path.is_empty() || path == b"." {
            return None;
        }
        let mut decided: Option<&Rule> = None;
        for rule in &self.rules {
            if rule.exception != decided.is_some() {
                continue;
            }
            if rule.matches(path) {
                decided = if rule.exception { None } else { Some(rule) };
            }
        }
        decided
    }

    /// Whether `path` is excluded.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        self.excluded_by(path).is_some()
    }

    /// For an excluded directory: whether the walk must still descend into it. moby's archiver
    /// (and this walk) only does so when some exception pattern, with `/` appended, starts with
    /// the directory's path plus `/` — so `!node_modules/keep` re-includes under an excluded
    /// `node_modules`, but a wildcard exception like `!**/keep` does not.
    pub fn must_descend(&self, dir: &[u8]) -> bool {
        let mut dir_slash = dir.to_vec();
        dir_slash.push(b'/');
        self.rules.iter().filter(|r| r.exception).any(|r| {
            let mut p = r.cleaned.clone();
            p.push(b'/');
            p.starts_with(&dir_slash)
        })
    }

    /// A related diagnostic pointing at `rule`'s line, for a report about `path`.
    pub fn excluded_here(&self, rule: &Rule, path: &[u8]) -> ExcludedHere {
        ExcludedHere {
            file: self.name.clone(),
            line: rule.line,
            path: pathutil::display(path),
            src: self.source(),
            span: rule.span,
        }
    }

    /// The ignore file's text as a diagnostic source.
    pub fn source(&self) -> Source {
        source(&self.name, self.text.clone())
    }
}

/// Go's `strings.TrimSpace` on bytes (ASCII whitespace plus U+0085 and U+00A0 are rare enough
/// in ignore files that only ASCII space, tab, CR, LF, VT and FF are trimmed here). Returns the
/// number of bytes trimmed at the front and the trimmed slice.
fn trim_space(b: &[u8]) -> (usize, &[u8]) {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !is_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |e| e + 1);
    (start, &b[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn di(text: &str) -> DockerIgnore {
        DockerIgnore::parse(".dockerignore", text.as_bytes()).unwrap()
    }

    /// Docker's documented behaviour, one row per rule: (ignore file, path, excluded?).
    #[test]
    fn docker_semantics_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Anchored at the root: `*.log` is top-level only.
            ("*.log", "a.log", true),
            ("*.log", "dir/a.log", false),
            ("**/*.log", "dir/sub/a.log", true),
            // A parent directory match excludes everything below it.
            ("foo", "foo/bar/baz", true),
            ("foo/*", "foo/bar/baz", true),
            // Trailing `/` is cleaned away: matches files too.
            ("foo/", "foo", true),
            // Leading `/` and `./` and `..` are cleaned.
            ("/foo", "foo", true),
            ("./foo", "foo", true),
            ("a/../foo", "foo", true),
            // Last matching rule wins; exceptions re-include, even under an excluded dir.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            (
                "node_modules\n!node_modules/keep",
                "node_modules/keep",
                false,
            ),
            (
                "node_modules\n!node_modules/keep",
                "node_modules/other",
                true,
            ),
            // Comments only in column 1; whitespace trimmed.
            ("# comment\nfoo", "# comment", false),
            (" # not a comment", "# not a comment", true),
            ("   foo   ", "foo", true),
            ("*\n! foo", "foo", false),
            // `.` is ignored (the root is never excluded).
            (".", "anything", false),
            // `[^a]` negates; `!` inside a class is literal.
            ("[^a]bc", "xbc", true),
            ("[!a]bc", "!bc", true),
            ("[!a]bc", "xbc", false),
            // `**` inside a segment crosses `/`.
            ("a**b", "a/x/y/b", true),
            // CRLF line endings.
            ("foo\r\nbar\r\n", "bar", true),
        ];
        for (file, path, want) in cases {
            assert_eq!(
                di(file).is_excluded(path.as_bytes()),
                *want,
                "{file:?} on {path:?}"
            );
        }
    }

    /// A UTF-8 BOM on the first line is dropped, so the first pattern still works.
    #[test]
    fn bom_is_stripped() {
        let d = DockerIgnore::parse(".dockerignore", b"\xEF\xBB\xBF*.tmp\n").unwrap();
        assert!(d.is_excluded(b"x.tmp"));
        assert_eq!(d.rules()[0].line, 1);
    }

    /// Each rule knows its line and the span of its text, for "excluded by .dockerignore:3".
    #[test]
    fn rules_keep_line_and_span() {
        let text = "# header\n\n  *.txt  \n!keep.txt\n";
        let d = di(text);
        let r = d.excluded_by(b"a.txt").unwrap();
        assert_eq!(r.line, 3);
        assert_eq!(r.written, "*.txt");
        assert_eq!(
            &text[r.span.offset()..r.span.offset() + r.span.len()],
            "*.txt"
        );
        assert!(d.excluded_by(b"keep.txt").is_none());
    }

    /// A bare `!` is an error labelled at its line.
    #[test]
    fn bare_bang_is_an_error_at_its_line() {
        let e = DockerIgnore::parse(".dockerignore", b"ok\n  !  \n").unwrap_err();
        match e {
            ContextError::BadIgnorePattern { line, span, .. } => {
                assert_eq!(line, 2);
                assert_eq!(span.offset(), 5);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An unterminated class is labelled at the `[` on its own line.
    #[test]
    fn bad_class_is_labelled_at_the_bracket() {
        let text = "a\nsrc/*.[ch\n";
        let e = DockerIgnore::parse(".dockerignore", text.as_bytes()).unwrap_err();
        match e {
            ContextError::BadIgnorePattern { line, span, .. } => {
                assert_eq!(line, 2);
                assert_eq!(&text[span.offset()..span.offset() + 1], "[");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The archiver's pruning rule: descend into an excluded dir only for literal exceptions.
    #[test]
    fn descend_only_for_literal_exception_prefixes() {
        let d = di("node_modules\n!node_modules/keep\n");
        assert!(d.must_descend(b"node_modules"));
        assert!(!d.must_descend(b"node"));
        let d = di("node_modules\n!**/keep\n");
        assert!(!d.must_descend(b"node_modules"));
        let d = di("node_modules\n");
        assert!(!d.must_descend(b"node_modules"));
    }

    /// Non-UTF-8 names and patterns match byte-exactly.
    #[test]
    fn non_utf8_patterns_and_names() {
        let d = DockerIgnore::parse(".dockerignore", b"caf\xe9\n*.\xff\n").unwrap();
        assert!(d.is_excluded(b"caf\xe9"));
        assert!(!d.is_excluded(b"cafe"));
        assert!(d.is_excluded(b"x.\xff"));
    }

    /// Where `.dockerignore` differs from gitignore, measured against the `ignore` crate.
    #[test]
    fn differs_from_gitignore_where_documented() {
        use ignore::gitignore::GitignoreBuilder;
        let git = |lines: &[&str], path: &str, is_dir: bool| {
            let mut b = GitignoreBuilder::new("/ctx");
            for l in lines {
                b.add_line(None, l).unwrap();
            }
            let g = b.build().unwrap();
            g.matched_path_or_any_parents(Path::new("/ctx").join(path), is_dir)
                .is_ignore()
        };
        let docker =
            |lines: &[&str], path: &str| di(&lines.join("\n")).is_excluded(path.as_bytes());

        // (patterns, path, is_dir, docker excludes?, gitignore ignores?)
        let rows: &[(&[&str], &str, bool, bool, bool)] = &[
            // Unanchored in git, anchored in Docker.
            (&["*.log"], "sub/a.log", false, false, true),
            // Trailing `/` means "directories only" in git; cleaned away in Docker.
            (&["build/"], "build", false, true, false),
            // `a**b` crosses directories in Docker; it is `a*b` in git.
            (&["a**b"], "a/x/b", false, true, false),
            // `[!x]` negates in git; `!` is literal in Docker.
            (&["[!x]y"], "zy", false, false, true),
            // Both agree on a plain anchored name.
            (&["/foo"], "foo", false, true, true),
        ];
        for (lines, path, is_dir, want_docker, want_git) in rows {
            assert_eq!(docker(lines, path), *want_docker, "docker {lines:?} {path}");
            assert_eq!(git(lines, path, *is_dir), *want_git, "git {lines:?} {path}");
        }

        // Re-including under an excluded directory works in Docker only: a gitignore walk
        // prunes `node_modules` and never sees `keep`.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("node_modules")).unwrap();
        std::fs::write(t.path().join("node_modules/keep"), "").unwrap();
        std::fs::write(t.path().join("node_modules/other"), "").unwrap();
        let rules = "node_modules\n!node_modules/keep\n";
        std::fs::write(t.path().join(".rules"), rules).unwrap();
        let git_seen: Vec<String> = ignore::WalkBuilder::new(t.path())
            .standard_filters(false)
            .add_custom_ignore_filename(".rules")
            .build()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(t.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|p| p.starts_with("node_modules"))
            .collect();
        assert!(git_seen.is_empty(), "{git_seen:?}");
        let d = di(rules);
        let walked = crate::context::walk::walk(t.path(), &d).unwrap();
        let docker_seen: Vec<String> = walked
            .entries
            .iter()
            .map(|e| e.path.display().to_string())
            .filter(|p| p.starts_with("node_modules"))
            .collect();
        assert_eq!(docker_seen, ["node_modules", "node_modules/keep"]);
    }
}

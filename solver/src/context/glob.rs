//! Go glob syntax compiled to regexes: `filepath.Match` (COPY source wildcards) and moby's
//! `patternmatcher` dialect with `**` (`.dockerignore`, `--exclude`), including its exact,
//! prefix and suffix fast paths, whose answers differ from the regex in corner cases.
//!
//! Hand-written because no crate implements Go's grammar: `globset` accepts `[!a]`, treats
//! `a**b` as `a*b` and has no per-character error positions for diagnostics.

use regex::Regex;

/// A syntax error in a pattern, with the byte range inside the pattern that is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// Byte offset of the offending part inside the pattern.
    pub offset: usize,
    /// Length in bytes of the offending part.
    pub len: usize,
    /// What is wrong, lowercase.
    pub reason: String,
}

/// One parsed character class `[...]`.
#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

/// Decodes one character at `i`: a valid UTF-8 scalar, or U+FFFD for one invalid byte (as Go
/// does). Returns the char and the number of bytes consumed.
fn decode(p: &[u8], i: usize) -> (char, usize) {
    let end = (i + 4).min(p.len());
    for n in 1..=end - i {
        if let Ok(s) = std::str::from_utf8(&p[i..i + n])
            && let Some(c) = s.chars().next()
        {
            return (c, n);
        }
    }
    ('\u{FFFD}', 1)
}

/// Parses a class starting at `p[start] == '['`, following Go's `matchChunk`/`getEsc` rules.
/// Returns the class and the index just past its closing `]`.
fn parse_class(p: &[u8], start: usize) -> Result<(Class, usize), GlobError> {
    let err = |at: usize, reason: &str| GlobError {
        offset: start,
        len: (at + 1).min(p.len()).saturating_sub(start).max(1),
        reason: reason.to_string(),
    };
    let mut i = start + 1;
    let mut negated = false;
    if p.get(i) == Some(&b'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if p.get(i) == Some(&b']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(p, i).map_err(|(at, r)| err(at, r))?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&b'-') {
            let (h, next) = class_char(p, i + 1).map_err(|(at, r)| err(at, r))?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// Go's `getEsc`: one (possibly escaped) class character; errors on `-`, `]`, end of pattern,
/// invalid UTF-8, or a class that is not terminated.
fn class_char(p: &[u8], mut i: usize) -> Result<(char, usize), (usize, &'static str)> {
    match p.get(i) {
        None => return Err((p.len(), "unterminated character class `[`")),
        Some(b'-') => return Err((i, "character class has a `-` with no start of range")),
        Some(b']') => return Err((i, "empty character class")),
        Some(b'\\') => {
            i += 1;
            if i >= p.len() {
                return Err((i, "unterminated character class `[`"));
            }
        }
        _ => {}
    }
    let (c, n) = decode(p, i);
    if c == '\u{FFFD}' && n == 1 {
        return Err((i, "invalid UTF-8 inside a character class"));
    }
    let next = i + n;
    if next >= p.len() {
        return Err((p.len(), "unterminated character class `[`"));
    }
    Ok((c, next))
}

/// Checks a pattern against Go's `filepath.Match` grammar (what moby validates every
/// `.dockerignore` line with): character classes and a trailing `\`.
pub fn validate(p: &[u8]) -> Result<(), GlobError> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => {
                if i + 1 >= p.len() {
                    return Err(GlobError {
                        offset: i,
                        len: 1,
                        reason: "trailing `\\` escapes nothing".into(),
                    });
                }
                i += 1 + decode(p, i + 1).1;
            }
            b'[' => i = parse_class(p, i)?.1,
            _ => i += decode(p, i).1,
        }
    }
    Ok(())
}

fn push_literal(re: &mut String, c: char) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

fn push_class(re: &mut String, class: &Class) {
    re.push('[');
    if class.negated {
        re.push('^');
    }
    for &(lo, hi) in &class.ranges {
        if lo > hi {
            // Go accepts a reversed range and it matches nothing; the regex crate rejects it.
            continue;
        }
        push_class_char(re, lo);
        if hi != lo {
            re.push('-');
            push_class_char(re, hi);
        }
    }
    if class.ranges.iter().all(|&(lo, hi)| lo > hi) {
        // Every range was empty: `[...]` matches nothing, `[^...]` matches any char.
        re.truncate(re.len() - 1 - usize::from(class.negated));
        re.push_str(if class.negated {
            "(?s:.)"
        } else {
            "[^\\x00-\\x{10FFFF}]"
        });
        return;
    }
    re.push(']');
}

fn push_class_char(re: &mut String, c: char) {
    // Escape everything that is not alphanumeric; the regex crate allows escaping any ASCII
    // punctuation inside a class, and class set operators (`&&`, `--`, `~~`) must stay inert.
    if c.is_ascii_punctuation() {
        re.push('\\');
        re.push(c);
    } else {
        push_literal(re, c);
    }
}

/// Compiles a Go `filepath.Match` pattern (no `**`) to an anchored regex over one lossy-UTF-8
/// name. `*` and `?` never match `/`.
pub fn compile_match(p: &[u8]) -> Result<Regex, GlobError> {
    validate(p)?;
    let mut re = String::from("^");
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                re.push_str("[^/]*");
                i += 1;
            }
            b'?' => {
                re.push_str("[^/]");
                i += 1;
            }
            b'\\' => {
                let (c, n) = decode(p, i + 1);
                push_literal(&mut re, c);
                i += 1 + n;
            }
            b'[' => {
                let (class, next) = parse_class(p, i)?;
                push_class(&mut re, &class);
                i = next;
            }
            _ => {
                let (c, n) = decode(p, i);
                push_literal(&mut re, c);
                i += n;
            }
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| GlobError {
        offset: 0,
        len: p.len().max(1),
        reason: format!("pattern does not compile: {e}"),
    })
}

/// True when a pattern contains Go glob metacharacters (`*`, `?`, `[`, or `\`).
pub fn has_meta(p: &[u8]) -> bool {
    p.iter().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// How a moby pattern is evaluated; mirrors `patternmatcher`'s `matchType`.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// The pattern ends in `**`: the path starts with everything before it.
    Prefix,
    /// The pattern starts with `**` and has no other metacharacters.
    Suffix,
    Regex(Regex),
}

/// A compiled moby pattern (`.dockerignore` line or `--exclude` value), already cleaned.
#[derive(Debug, Clone)]
pub struct MobyPattern {
    cleaned: Vec<u8>,
    kind: Kind,
}

impl MobyPattern {
    /// Compiles a cleaned pattern. Follows `patternmatcher.(*Pattern).compile` token by token:
    /// `*` → `[^/]*`, `?` → `[^/]`, `**` → `(.*/)?` (a `/` after it is eaten), a trailing `**`
    /// → prefix match, a leading `**` with nothing else special → suffix match. Character classes
    /// follow `filepath.Match` (moby passes them to Go's regexp, which agrees on all valid
    /// classes); `\x` is the literal `x`.
    pub fn new(cleaned: &[u8]) -> Result<Self, GlobError> {
        validate(cleaned)?;
        let p = cleaned;
        let mut re = String::from("^");
        // moby's detectedType: 0 exact, 1 prefix, 2 suffix, 3 regexp.
        let mut kind = 0u8;
        let mut i = 0;
        while i < p.len() {
            let at_start = i == 0;
            match p[i] {
                b'*' if p.get(i + 1) == Some(&b'*') => {
                    i += 2;
                    if p.get(i) == Some(&b'/') {
                        i += 1;
                    }
                    if i >= p.len() {
                        if kind == 0 {
                            kind = 1;
                        } else {
                            re.push_str(".*");
                            kind = 3;
                        }
                    } else {
                        re.push_str("(?:.*/)?");
                        kind = 3;
                    }
                    if at_start {
                        kind = 2;
                    }
                }
                b'*' => {
                    re.push_str("[^/]*");
                    kind = 3;
                    i += 1;
                }
                b'?' => {
                    re.push_str("[^/]");
                    kind = 3;
                    i += 1;
                }
                b'\\' => {
                    let (c, n) = decode(p, i + 1);
                    push_literal(&mut re, c);
                    kind = 3;
                    i += 1 + n;
                }
                b'[' => {
                    let (class, next) = parse_class(p, i)?;
                    push_class(&mut re, &class);
                    kind = 3;
                    i = next;
                }
                b']' => {
                    re.push_str("\\]");
                    kind = 3;
                    i += 1;
                }
                _ => {
                    let (c, n) = decode(p, i);
                    push_literal(&mut re, c);
                    i += n;
                }
            }
        }
        let kind = match kind {
            0 => Kind::Exact,
            1 => Kind::Prefix,
            2 => Kind::Suffix,
            _ => {
                re.push('$');
                Kind::Regex(Regex::new(&re).map_err(|e| GlobError {
                    offset: 0,
                    len: p.len().max(1),
                    reason: format!("pattern does not compile: {e}"),
                })?)
            }
        };
        Ok(MobyPattern {
            cleaned: cleaned.to_vec(),
            kind,
        })
    }

    /// Whether this pattern matches exactly `path` (a `/`-separated relative path).
    pub fn matches(&self, path: &[u8]) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned.as_slice(),
            Kind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Kind::Regex(re) => re.is_match(&String::from_utf8_lossy(path)),
        }
    }

    /// Whether this pattern matches `path` or one of its parent directories
    /// (moby's `MatchesOrParentMatches` for a single pattern).
    pub fn matches_or_parent(&self, path: &[u8]) -> bool {
        if self.matches(path) {
            return true;
        }
        path.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .any(|(i, _)| self.matches(&path[..i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, path: &str) -> bool {
        MobyPattern::new(pat.as_bytes())
            .unwrap()
            .matches(path.as_bytes())
    }

    fn fm(pat: &str, name: &str) -> bool {
        compile_match(pat.as_bytes()).unwrap().is_match(name)
    }

    /// Go's `filepath.Match` test table: answers and bad patterns agree.
    #[test]
    fn filepath_match_table() {
        let ok: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("*x", "xxx", true),
            ("[z-a]", "m", false),
            ("a[&&b]", "a&", true),
        ];
        for (pat, name, want) in ok {
            assert_eq!(fm(pat, name), *want, "Match({pat:?}, {name:?})");
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "a\\", "[]",
            "[\\",
        ] {
            assert!(
                validate(bad.as_bytes()).is_err(),
                "{bad:?} must be a bad pattern"
            );
        }
    }

    /// The error position points at the class that is broken, not at the start of the line.
    #[test]
    fn errors_point_at_the_offending_class() {
        let e = validate(b"src/*.[ch").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.reason.contains("unterminated"), "{}", e.reason);
        let e = validate(b"ab\\").unwrap_err();
        assert_eq!((e.offset, e.len), (2, 1));
    }

    /// moby's `patternmatcher` fast paths and regexes, including the quirks of `**`.
    #[test]
    fn moby_pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", false), // parents are handled by the caller
            ("*.log", "a.log", true),
            ("*.log", "d/a.log", false),
            ("**/*.log", "a.log", true),
            ("**/*.log", "d/e/a.log", true),
            ("**", "anything/at/all", true),
            ("foo/**", "foo/x/y", true),
            ("foo/**", "foo", false),
            ("foo**", "foobar/x", true),
            ("**/foo", "foo", true),
            ("**/foo", "a/b/foo", true),
            ("**/foo", "a/barfoo", false),
            // Suffix fast path: `**foo` is HasSuffix("foo"), unlike the regex `(.*/)?foo`.
            ("**foo", "a/barfoo", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a**b", "a/x/b", true),
            ("a*/**", "ab/c", true),
            ("dir/?", "dir/a", true),
            ("dir/?", "dir/ab", false),
            ("[^a]bc", "/bc", true),
            ("a.b", "axb", false),
            ("a+(b)", "a+(b)", true),
            ("x]", "x]", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
        ];
        for (pat, path, want) in cases {
            assert_eq!(m(pat, path), *want, "{pat:?} vs {path:?}");
        }
    }

    /// `**` in Go's regexp does not cross a newline inside a name; neither does ours.
    #[test]
    fn double_star_does_not_cross_newlines_like_go() {
        assert!(!m("a/**/z", "a/x\ny/z"));
        assert!(m("a/*/z", "a/x\ny/z"));
    }

    /// Non-UTF-8 names match `*` and `?` (each invalid byte is one character, as in Go) and
    /// exact patterns compare raw bytes.
    #[test]
    fn non_utf8_names_match() {
        let p = MobyPattern::new(b"*.bin").unwrap();
        assert!(p.matches(b"\xff\xfe.bin"));
        let p = MobyPattern::new(b"?.bin").unwrap();
        assert!(p.matches(b"\xff.bin"));
        assert!(!p.matches(b"\xff\xfe.bin"));
        let p = MobyPattern::new(b"\xffname").unwrap();
        assert!(p.matches(b"\xffname"));
        assert!(!p.matches(b"\xfename"));
    }
}

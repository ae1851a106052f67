//! Byte-level path helpers shared by the context modules: Go's `filepath.Clean` (lexical, on
//! `/`-separated bytes, so non-UTF-8 names survive) and conversions between relative paths and
//! the byte strings the matchers work on.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Go's `path/filepath.Clean` on Unix, applied to raw bytes: collapses repeated `/`, drops `.`
/// elements, resolves `..` against the previous element (at the root `..` is dropped), removes
/// a trailing `/`, and returns `.` for an empty result. Written by hand because Rust's `Path`
/// normalisation keeps `..` and has no byte-exact equivalent.
pub fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    // Number of leading `..` elements that cannot be cancelled (only for relative paths).
    let mut leading_dotdots = 0usize;
    for elem in path.split(|&b| b == b'/') {
        match elem {
            b"" | b"." => {}
            b".." => {
                if parts.len() > leading_dotdots {
                    parts.pop();
                } else if !rooted {
                    parts.push(b"..");
                    leading_dotdots += 1;
                }
            }
            other => parts.push(other),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if rooted {
        out.push(b'/');
    }
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Cleans a COPY source (or any path "inside the context") into a context-relative path the way
/// BuildKit does (`path.Join("/", src)` then cleaned): leading `/` and `..` that would climb
/// above the root are dropped. The context root itself is the empty string.
pub fn clean_in_root(path: &[u8]) -> Vec<u8> {
    let mut rooted = Vec::with_capacity(path.len() + 1);
    rooted.push(b'/');
    rooted.extend_from_slice(path);
    let cleaned = clean(&rooted);
    cleaned[1..].to_vec()
}

/// True when a cleaned relative path climbs out of its base (`..` or `../x`).
pub fn climbs_out(path: &[u8]) -> bool {
    let cleaned = clean(path);
    cleaned == b".." || cleaned.starts_with(b"../") || cleaned.starts_with(b"/")
}

/// The bytes of a path.
pub fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// A path from raw bytes.
pub fn from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Displays a path for messages: lossy UTF-8, `.` for the context root.
pub fn display(b: &[u8]) -> String {
    if b.is_empty() {
        ".".to_string()
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

/// Joins two relative byte paths with `/` (either may be empty).
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => {
            let mut out = Vec::with_capacity(a.len() + 1 + b.len());
            out.extend_from_slice(a);
            out.push(b'/');
            out.extend_from_slice(b);
            out
        }
    }
}

/// The parent of a relative byte path (`""` for a top-level name).
pub fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b"",
    }
}

/// The last element of a relative byte path.
pub fn file_name(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// `p` relative to `base` when `p` is `base` itself or lies under it.
pub fn strip_prefix<'a>(p: &'a [u8], base: &[u8]) -> Option<&'a [u8]> {
    if base.is_empty() {
        return Some(p);
    }
    if p == base {
        return Some(b"");
    }
    if p.len() > base.len() && p.starts_with(base) && p[base.len()] == b'/' {
        return Some(&p[base.len() + 1..]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own `filepath.Clean` test table (the Unix rows) gives the same answers.
    #[test]
    fn clean_matches_go_filepath_clean() {
        let cases: &[(&str, &str)] = &[
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "clean({input:?})");
        }
    }

    /// COPY sources are clamped into the context root like BuildKit's `path.Join("/", src)`.
    #[test]
    fn clean_in_root_clamps_to_the_context() {
        assert_eq!(clean_in_root(b"../x"), b"x");
        assert_eq!(clean_in_root(b"/etc/passwd"), b"etc/passwd");
        assert_eq!(clean_in_root(b"a/../../b/"), b"b");
        assert_eq!(clean_in_root(b"."), b"");
        assert_eq!(clean_in_root(b"/"), b"");
        assert!(climbs_out(b"../x"));
        assert!(!climbs_out(b"a/../x"));
    }

    /// Prefix stripping respects component boundaries.
    #[test]
    fn strip_prefix_respects_components() {
        assert_eq!(strip_prefix(b"src/a", b"src"), Some(&b"a"[..]));
        assert_eq!(strip_prefix(b"src", b"src"), Some(&b""[..]));
        assert_eq!(strip_prefix(b"srcx/a", b"src"), None);
        assert_eq!(strip_prefix(b"a", b""), Some(&b"a"[..]));
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(file_name(b"a/b/c"), b"c");
        assert_eq!(join(b"", b"x"), b"x");
    }
}

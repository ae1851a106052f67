//! Interpreting entry names of a layer: cleaning them into root-relative component lists,
//! rejecting `..`, and recognising whiteouts (`.wh.NAME`, `.wh..wh..opq`) per layer.md.

use crate::error::{Error, Result};

pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// A cleaned, root-relative path: components without `.`/`..`/empty, joined by `/`.
/// The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(pub Vec<u8>);

impl RelPath {
    pub fn root() -> RelPath {
        RelPath(Vec::new())
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }
    /// (parent, final component); the root has no parent.
    pub fn split_last(&self) -> Option<(RelPath, &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => Some((RelPath(self.0[..i].to_vec()), &self.0[i + 1..])),
            None => Some((RelPath::root(), &self.0[..])),
        }
    }
    pub fn join(&self, name: &[u8]) -> RelPath {
        if self.0.is_empty() {
            RelPath(name.to_vec())
        } else {
            let mut v = self.0.clone();
            v.push(b'/');
            v.extend_from_slice(name);
            RelPath(v)
        }
    }
    /// Every proper ancestor, nearest first (not including the root).
    pub fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = &self.0;
        bytes
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'/')
            .map(move |(i, _)| &bytes[..i])
    }
    pub fn display(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.0))
    }
    /// Is `self` equal to `other` or inside it?
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.get(other.0.len()) == Some(&b'/'))
    }
}

/// How an absolute entry name is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsolutePaths {
    /// Strip the leading `/` (what Docker and containerd do).
    Strip,
    /// Refuse the entry (strict validation of loaded/imported layers).
    Reject,
}

/// Clean an entry name. `..` components are refused: no layer tool writes them and they are
/// the classic traversal vector.
pub fn clean(raw: &[u8], absolute: AbsolutePaths) -> std::result::Result<RelPath, String> {
    if raw.contains(&0) {
        return Err("contains a NUL byte".to_string());
    }
    if raw.first() == Some(&b'/') && absolute == AbsolutePaths::Reject {
        return Err("is an absolute path (layer entries are relative to the root)".to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("contains a `..` component".to_string()),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(RelPath(out))
}

/// What an entry means for the layer stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A normal entry at this path.
    Add(RelPath),
    /// Delete the lower-layer path (`dir/.wh.NAME`).
    Whiteout(RelPath),
    /// Hide the lower-layer contents of this directory (`dir/.wh..wh..opq`).
    Opaque(RelPath),
    /// AUFS bookkeeping (`.wh..wh.plnk` ...): ignored, as Docker does.
    Ignore,
}

/// Classify a cleaned path.
pub fn meaning(path: RelPath) -> std::result::Result<Meaning, String> {
    let Some((parent, base)) = path.split_last() else {
        return Ok(Meaning::Add(path));
    };
    if !base.starts_with(WHITEOUT_PREFIX) {
        return Ok(Meaning::Add(path));
    }
    if base == OPAQUE_MARKER {
        return Ok(Meaning::Opaque(parent));
    }
    if base.starts_with(b".wh..wh.") {
        return Ok(Meaning::Ignore);
    }
    let name = &base[WHITEOUT_PREFIX.len()..];
    if name.is_empty() || name == b"." || name == b".." {
        return Err(format!(
            "invalid whiteout entry `{}` (names no file)",
            String::from_utf8_lossy(base)
        ));
    }
    Ok(Meaning::Whiteout(parent.join(name)))
}

/// Clean and classify in one step, producing a layer error naming the entry.
pub fn interpret(raw: &[u8], absolute: AbsolutePaths, layer: &str) -> Result<Meaning> {
    let shown = String::from_utf8_lossy(raw);
    let path =
        clean(raw, absolute).map_err(|m| Error::layer(layer, format!("entry `{shown}` {m}")))?;
    meaning(path).map_err(|m| Error::layer(layer, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> std::result::Result<String, String> {
        clean(s.as_bytes(), AbsolutePaths::Strip).map(|p| String::from_utf8(p.0).unwrap())
    }

    #[test]
    fn cleaning() {
        assert_eq!(c("./etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(c("/etc//x/./y/").unwrap(), "etc/x/y");
        assert_eq!(c("./").unwrap(), "");
        assert_eq!(c("/.").unwrap(), "");
        assert!(c("../etc").is_err());
        assert!(c("a/../../etc").is_err());
        assert!(c("/..").is_err());
        assert!(clean(b"/etc", AbsolutePaths::Reject).is_err());
    }

    #[test]
    fn whiteouts() {
        let m = |s: &str| meaning(clean(s.as_bytes(), AbsolutePaths::Strip).unwrap());
        assert_eq!(
            m("a/.wh.b").unwrap(),
            Meaning::Whiteout(RelPath(b"a/b".to_vec()))
        );
        assert_eq!(
            m("a/.wh..wh..opq").unwrap(),
            Meaning::Opaque(RelPath(b"a".to_vec()))
        );
        assert_eq!(m(".wh..wh..opq").unwrap(), Meaning::Opaque(RelPath::root()));
        assert_eq!(m(".wh..wh.plnk").unwrap(), Meaning::Ignore);
        assert_eq!(
            m(".wh.etc/file").unwrap(),
            Meaning::Add(RelPath(b".wh.etc/file".to_vec()))
        );
        for bad in [".wh..", "etc/.wh..", ".wh.", "x/.wh."] {
            assert!(m(bad).is_err(), "{bad}");
        }
        // `.wh...` names `..`: refused as well (containerd WhiteoutRootParent).
        assert!(m(".wh...").is_err());
    }

    #[test]
    fn relpath_helpers() {
        let p = RelPath(b"a/b/c".to_vec());
        assert_eq!(
            p.ancestors().collect::<Vec<_>>(),
            vec![&b"a/b"[..], &b"a"[..]]
        );
        assert!(p.starts_with(&RelPath(b"a/b".to_vec())));
        assert!(!p.starts_with(&RelPath(b"a/bc".to_vec())));
        assert_eq!(p.split_last().unwrap().1, b"c");
    }
}

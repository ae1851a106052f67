//! Cache keys: a blake3 digest over an explicit, versioned encoding of a step's preimage.
//!
//! | input                                   | in the key | note |
//! |-----------------------------------------|------------|------|
//! | key version ([`CACHE_KEY_VERSION`])      | yes        | bump it when the encoding or a rule below changes |
//! | platform (`linux/amd64`)                | yes        | |
//! | parent: the content of the layers the step runs on ([`chain_id`] of their diff_ids) | yes | metadata-only steps (ENV, LABEL, ...) add no layer; a base image counts by content, not by name or manifest |
//! | instruction, canonical and expanded     | yes        | e.g. `RUN ["/bin/sh","-c","make"]`; comments, blank lines and line numbers are not |
//! | ARG/ENV values the step uses            | yes        | RUN: every variable in its environment (a shell script can read any of them); COPY/ADD/WORKDIR: those referenced by its words |
//! | other inputs (workdir, user, network, mount specs, source-stage keys) | yes | named, sorted |
//! | files: digest of per-file records (path, type, mode, uid, gid, size, symlink target, content hash) | yes | after --chown/--chmod; never mtime |
//! | secrets, cache-mount contents, proxy ARGs not declared | no | never enter keys |
//! | display text, Dockerfile line, parent's display | no | kept beside the key for `explain` |
//!
//! The parent enters by content, not by its key: a rebuilt parent that yields identical
//! layers keeps its children cached, so lookups go on after a miss. Metadata-only
//! instructions add no layer and are nobody's parent, so changing a LABEL does not rebuild the
//! RUN after it.
//!
//! The encoding is hand-written (tag, length, bytes) — never `Debug`, serde or `std::hash`,
//! whose output may change between compiler or crate versions.

use std::collections::BTreeMap;

use rbuild_store::Digest;
use serde::{Deserialize, Serialize};

/// Bump when anything about what enters a key changes; old cache entries then simply miss.
/// 2: COPY/ADD follow BuildKit's merge-root, parent-mode, empty-wildcard and symlink-destination
/// rules, so layers cached under 1 may differ from what the same key builds now.
pub const CACHE_KEY_VERSION: u32 = 2;

/// A cache key: lowercase hex of a blake3 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the step's parent was, for explanations (the key only holds the parent's content).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ParentNote {
    #[default]
    Scratch,
    /// The stage's base image.
    Image {
        reference: String,
        manifest_digest: String,
    },
    /// An earlier step (of this stage, or the last step of the base stage).
    Step { display: String, line: usize },
}

/// The identity of a root filesystem built from layers: blake3 over the ordered diff_ids
/// (empty string for scratch). Rebuilding a parent that yields identical layers keeps it, so
/// lookups continue after a miss. Each diff_id enters as its `sha256:<hex>` text.
pub fn chain_id(diff_ids: &[Digest]) -> String {
    if diff_ids.is_empty() {
        return String::new();
    }
    let mut hasher = blake3::Hasher::new();
    for diff_id in diff_ids {
        let text = diff_id.as_str();
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// The files a COPY/ADD (or a bind mount) reads: their records' digest and size summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesInput {
    /// Hex digest of the ordered per-file records.
    pub digest: String,
    pub count: u64,
    pub bytes: u64,
}

/// Everything a step's key is computed from, plus notes for explanations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    pub version: u32,
    pub platform: String,
    /// [`chain_id`] of the layers the step runs on.
    pub parent: String,
    pub instruction: String,
    /// Variables the step uses, with their values (`None`: referenced but unset).
    pub vars: BTreeMap<String, Option<String>>,
    /// Other named inputs (`workdir`, `user`, `network`, `mount:/target`, `stage:name`, ...).
    pub inputs: BTreeMap<String, String>,
    /// Named file sets (`context`, `stage:builder`, `mount:/src`, ...).
    pub files: BTreeMap<String, FilesInput>,
    /// Not part of the key: where the step is and what its parent was, for explanations.
    #[serde(default)]
    pub note: Note,
}

/// Informational fields stored with a preimage but excluded from the key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Note {
    pub display: String,
    pub line: usize,
    pub stage: String,
    pub parent: ParentNote,
}

impl Preimage {
    pub fn new(platform: String, parent: String, instruction: String) -> Preimage {
        Preimage {
            version: CACHE_KEY_VERSION,
            platform,
            parent,
            instruction,
            vars: BTreeMap::new(),
            inputs: BTreeMap::new(),
            files: BTreeMap::new(),
            note: Note::default(),
        }
    }

    /// The key: blake3 over the explicit encoding of every key field.
    pub fn key(&self) -> CacheKey {
        let mut enc = Encoder::default();
        enc.u64(b'V', u64::from(self.version));
        enc.str(b'P', &self.platform);
        enc.str(b'p', &self.parent);
        enc.str(b'I', &self.instruction);
        enc.u64(b'v', self.vars.len() as u64);
        for (name, value) in &self.vars {
            enc.str(b'n', name);
            match value {
                Some(value) => enc.str(b'=', value),
                None => enc.str(b'-', ""),
            }
        }
        enc.u64(b'i', self.inputs.len() as u64);
        for (name, value) in &self.inputs {
            enc.str(b'n', name);
            enc.str(b'=', value);
        }
        enc.u64(b'f', self.files.len() as u64);
        for (name, files) in &self.files {
            enc.str(b'n', name);
            enc.str(b'h', &files.digest);
            enc.u64(b'c', files.count);
            enc.u64(b'b', files.bytes);
        }
        CacheKey(enc.finish())
    }
}

/// Tag-length-value encoding into blake3.
#[derive(Default)]
struct Encoder {
    hasher: blake3::Hasher,
}

impl Encoder {
    fn str(&mut self, tag: u8, value: &str) {
        self.hasher.update(&[tag]);
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value.as_bytes());
    }

    fn u64(&mut self, tag: u8, value: u64) {
        self.hasher.update(&[tag]);
        self.hasher.update(&value.to_le_bytes());
    }

    fn finish(self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Preimage {
        let mut p = Preimage::new(
            "linux/amd64".into(),
            chain_id(&[Digest::of(b"aa")]),
            r#"RUN ["/bin/sh","-c","make"]"#.into(),
        );
        p.vars.insert("VERSION".into(), Some("1.2".into()));
        p.inputs.insert("workdir".into(), "/app".into());
        p
    }

    /// Keys are stable hex digests and notes do not change them.
    #[test]
    fn notes_are_not_in_the_key() {
        let a = base();
        let mut b = base();
        b.note.line = 42;
        b.note.display = "RUN make".into();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().0.len(), 64);
    }

    /// Every key field changes the key.
    #[test]
    fn every_field_changes_the_key() {
        let k = base().key();
        let mut variants = Vec::new();
        let mut p = base();
        p.platform = "linux/arm64".into();
        variants.push(p);
        let mut p = base();
        p.parent = String::new();
        variants.push(p);
        let mut p = base();
        p.instruction.push(' ');
        variants.push(p);
        let mut p = base();
        p.vars.insert("VERSION".into(), Some("1.3".into()));
        variants.push(p);
        let mut p = base();
        p.vars.insert("VERSION".into(), None);
        variants.push(p);
        let mut p = base();
        p.inputs.insert("user".into(), "app".into());
        variants.push(p);
        let mut p = base();
        p.files.insert(
            "context".into(),
            FilesInput {
                digest: "00".into(),
                count: 1,
                bytes: 1,
            },
        );
        variants.push(p);
        let mut p = base();
        p.version += 1;
        variants.push(p);
        for v in &variants {
            assert_ne!(v.key(), k, "{v:?}");
        }
    }

    /// Field boundaries are unambiguous: moving bytes between a name and a value changes the key.
    #[test]
    fn encoding_is_unambiguous() {
        let mut a = base();
        a.vars.clear();
        a.vars.insert("AB".into(), Some("C".into()));
        let mut b = base();
        b.vars.clear();
        b.vars.insert("A".into(), Some("BC".into()));
        assert_ne!(a.key(), b.key());
    }

    /// Chain ids depend on every layer and their order.
    #[test]
    fn chain_ids() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        assert_eq!(chain_id(&[]), "");
        assert_ne!(
            chain_id(&[a.clone(), b.clone()]),
            chain_id(&[b.clone(), a.clone()])
        );
        assert_ne!(chain_id(std::slice::from_ref(&a)), chain_id(&[a, b]));
    }

    /// A preimage survives a JSON round trip with the same key (entries are stored as JSON).
    #[test]
    fn json_round_trip_keeps_key() {
        let p = base();
        let json = serde_json::to_string(&p).unwrap();
        let back: Preimage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.key(), p.key());
    }
}

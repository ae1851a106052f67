//! The build cache as a portable document — the config blob of a registry cache artifact (or,
//! base64-encoded, the inline cache in an image config): the entries one build used, the
//! file-record lists their preimages name (so `explain` works on the importing machine), and
//! where each step sits in its Dockerfile. [`merge`] brings such a
//! document into a local [`CacheIndex`], trusting only what it can recompute.
//!
//! Format `rbuild.cache.index` version 1 (JSON, keys sorted, entries sorted by key):
//!
//! ```json
//! { "format": "rbuild.cache.index", "version": 1,
//!   "entries": [ { "key": "<blake3 hex>", "site": "<stage label>#<step index>",
//!                  "preimage": { ...as in entries/<key>.json... },
//!                  "result": { "diff_id": "sha256:…" | null, "size": 123 },
//!                  "created": 1700000000, "build_ms": 42 } ],
//!   "files": { "<records digest>": "<base64 of the binary record list>" } }
//! ```
//!
//! Trust rules on import: an entry is used only if `preimage.key()` recomputed here equals its
//! key (a mismatch is reported, never stored); entries of another key version are ignored;
//! layer digests must be well-formed sha256 digests the importer can actually obtain; strings
//! with control characters are refused (they would reach the terminal through `explain`); a
//! record list is stored only if its blake3 digest matches its name. A local entry whose layer
//! is still stored is never overwritten; one whose layer is gone is replaced. Anyone who can
//! push to the cache reference decides which layer a key maps to (as with BuildKit): a cache
//! is as trusted as the registry repository it lives in.
//!
//! [`merge`] seeds the imported keys into the site history of the *importing* build's
//! Dockerfile, after the local keys, so `explain` on another machine compares with the
//! exporter's builds although the Dockerfile paths differ.

use std::collections::BTreeMap;

use base64::Engine;
use rbuild_store::Digest;
use serde::{Deserialize, Serialize};

use crate::cache::{CacheEntry, CacheError, CacheIndex, CachedResult};
use crate::cache_key::{CACHE_KEY_VERSION, CacheKey, Preimage};

/// The `format` field of an exported index.
pub const FORMAT: &str = "rbuild.cache.index";
/// The version of the document layout (not of the keys: see [`CACHE_KEY_VERSION`]).
pub const FORMAT_VERSION: u32 = 1;
/// More entries than this is not a cache index but an attack on memory.
const MAX_ENTRIES: usize = 200_000;
/// Longest accepted site suffix (stage label + `#` + index).
const MAX_SITE_LEN: usize = 1024;

/// An exported cache index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedIndex {
    pub format: String,
    pub version: u32,
    pub entries: Vec<ExportedEntry>,
    /// Record lists by digest, base64 of their binary encoding (`context::encode`).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// One exported cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEntry {
    pub key: CacheKey,
    /// The step's place in its Dockerfile, `<stage label>#<step index>` (see [`site_suffix`]):
    /// the importer re-anchors it to its own Dockerfile path for explanations.
    pub site: String,
    pub preimage: Preimage,
    pub result: ExportedResult,
    /// Unix seconds the step was built (kept, so the imported image gets the same `created`).
    pub created: i64,
    #[serde(default)]
    pub build_ms: u64,
    /// The entry's position in its chain (prune order), see [`CacheEntry::depth`].
    #[serde(default)]
    pub depth: usize,
}

/// What an exported step produced, as the document carries it: the layer digest stays text
/// until [`merge`] checks it (a malformed one refuses that entry, not the whole document).
/// Serialises exactly as [`CachedResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedResult {
    /// `sha256:<hex>` of the layer, `None` when the step changed no files.
    pub diff_id: Option<String>,
    /// Uncompressed layer size in bytes.
    pub size: u64,
}

impl From<CachedResult> for ExportedResult {
    fn from(r: CachedResult) -> ExportedResult {
        ExportedResult {
            diff_id: r.diff_id.map(String::from),
            size: r.size,
        }
    }
}

/// The part of a step site after the Dockerfile: `<stage label>#<step index>`.
pub fn site_suffix(stage_label: &str, step_index: usize) -> String {
    format!("{stage_label}#{step_index}")
}

/// Collect the entries of `steps` (site suffix, key) and the record lists they name. Keys
/// without an entry (pruned meanwhile) are left out.
pub fn export(
    cache: &CacheIndex,
    steps: &[(String, CacheKey)],
) -> Result<ExportedIndex, CacheError> {
    let mut entries: BTreeMap<CacheKey, ExportedEntry> = BTreeMap::new();
    for (site, key) in steps {
        if entries.contains_key(key) {
            continue;
        }
        let Some(entry) = cache.get(key)? else {
            continue;
        };
        entries.insert(
            key.clone(),
            ExportedEntry {
                key: entry.key,
                site: site.clone(),
                preimage: entry.preimage,
                result: entry.result.into(),
                created: entry.created,
                build_ms: entry.build_ms,
                depth: entry.depth,
            },
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut files = BTreeMap::new();
    for entry in entries.values() {
        for set in entry.preimage.files.values() {
            if files.contains_key(&set.digest) {
                continue;
            }
            if let Some(bytes) = cache.get_files(&set.digest)? {
                files.insert(set.digest.clone(), b64.encode(bytes));
            }
        }
    }
    Ok(ExportedIndex {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        entries: entries.into_values().collect(),
        files,
    })
}

impl ExportedIndex {
    /// The document's bytes: deterministic for the same content, so an unchanged cache
    /// exports the same config blob (which the registry then already has).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an exported index serialises")
    }

    /// Every layer (diff_id) the entries produced, sorted and unique (a malformed digest, which
    /// [`export`] never writes, is left out).
    pub fn layers(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .entries
            .iter()
            .filter_map(|e| Digest::parse(e.result.diff_id.as_deref()?).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Why an imported document was refused as a whole.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("the cache index is not an `rbuild.cache.index` document: {reason}")]
    #[diagnostic(
        code(rbuild::cache::import_malformed),
        help(
            "the cache reference points at something else; export a cache there with `--cache-to`"
        )
    )]
    Malformed { reason: String },
    #[error(
        "the cache index has format version {found}; this rbuild reads version {FORMAT_VERSION}"
    )]
    #[diagnostic(
        code(rbuild::cache::import_version),
        help("the cache was exported by another rbuild version; export it again with this one")
    )]
    Version { found: u32 },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] CacheError),
}

impl ImportError {
    pub fn class(&self) -> rbuild_store::ErrorClass {
        match self {
            ImportError::Cache(e) => e.class(),
            _ => rbuild_store::ErrorClass::Input,
        }
    }
}

/// An entry that was refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The key as claimed by the document.
    pub key: String,
    pub reason: String,
}

/// What [`merge`] did.
#[derive(Debug, Default, Clone)]
pub struct MergeReport {
    /// Entries written into the local index.
    pub imported: usize,
    /// Of those, how many replaced a local entry whose layer was gone.
    pub replaced: usize,
    /// Entries the local index already had (kept as they were).
    pub present: usize,
    /// Entries of another cache-key version (ignored: their keys can never match).
    pub other_version: usize,
    /// Entries whose layer neither the store nor the cache artifact has.
    pub no_layer: usize,
    /// Entries refused because they failed a check.
    pub rejected: Vec<Rejected>,
    /// Record lists refused (digest mismatch or bad encoding).
    pub bad_files: usize,
    /// Usable entries (imported or already present): key and the layer the local index now
    /// associates with it.
    pub usable: Vec<(CacheKey, Option<Digest>)>,
}

/// How [`merge`] learns about layers.
pub struct LayerAvailability<'a> {
    /// The layer is in the local store.
    pub local: &'a dyn Fn(&Digest) -> bool,
    /// The layer can be fetched (the cache artifact lists it).
    pub remote: &'a dyn Fn(&Digest) -> bool,
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Every string of a preimage that may be printed, checked for control characters.
fn preimage_has_control(p: &Preimage) -> bool {
    let note = &p.note;
    let parent = match &note.parent {
        crate::cache_key::ParentNote::Scratch => false,
        crate::cache_key::ParentNote::Image {
            reference,
            manifest_digest,
        } => has_control(reference) || has_control(manifest_digest),
        crate::cache_key::ParentNote::Step { display, .. } => has_control(display),
    };
    parent
        || has_control(&p.platform)
        || has_control(&p.parent)
        || has_control(&p.instruction)
        || has_control(&note.display)
        || has_control(&note.stage)
        || p.vars
            .iter()
            .any(|(k, v)| has_control(k) || v.as_deref().is_some_and(has_control))
        || p.inputs
            .iter()
            .any(|(k, v)| has_control(k) || has_control(v))
        || p.files
            .iter()
            .any(|(k, f)| has_control(k) || !is_hex(&f.digest, 64))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check one entry and parse its layer digest; `Err(reason)` refuses it.
fn check(entry: &ExportedEntry) -> Result<Option<Digest>, String> {
    let recomputed = entry.preimage.key();
    if recomputed != entry.key {
        return Err(format!(
            "its key does not match its preimage (recomputed {})",
            recomputed.short()
        ));
    }
    let diff_id = match &entry.result.diff_id {
        Some(d) => Some(
            Digest::parse(d).map_err(|_| "its layer digest is not a sha256 digest".to_string())?,
        ),
        None => None,
    };
    if entry.site.len() > MAX_SITE_LEN || has_control(&entry.site) || !entry.site.contains('#') {
        return Err("its step site is malformed".into());
    }
    if preimage_has_control(&entry.preimage) {
        return Err("its preimage holds control characters or malformed digests".into());
    }
    Ok(diff_id)
}

/// Merge an exported index into `cache`. Imported entries are seeded into the site history of
/// `site_prefix` (the importing build's Dockerfile), after the local keys, so explanations can
/// compare with them. `now` becomes their last use.
pub fn merge(
    cache: &CacheIndex,
    bytes: &[u8],
    site_prefix: &str,
    now: i64,
    layers: &LayerAvailability<'_>,
) -> Result<MergeReport, ImportError> {
    // The version is read first so a future layout is reported as such, not as garbage.
    #[derive(Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| ImportError::Malformed {
        reason: e.to_string(),
    })?;
    if head.format != FORMAT {
        return Err(ImportError::Malformed {
            reason: format!("its format is `{}`", head.format.escape_debug()),
        });
    }
    if head.version != FORMAT_VERSION {
        return Err(ImportError::Version {
            found: head.version,
        });
    }
    let doc: ExportedIndex = serde_json::from_slice(bytes).map_err(|e| ImportError::Malformed {
        reason: e.to_string(),
    })?;
    if doc.entries.len() > MAX_ENTRIES {
        return Err(ImportError::Malformed {
            reason: format!("it lists {} entries", doc.entries.len()),
        });
    }
    let mut report = MergeReport::default();
    let mut wanted_files: BTreeMap<String, ()> = BTreeMap::new();
    for entry in doc.entries {
        if entry.preimage.version != CACHE_KEY_VERSION {
            report.other_version += 1;
            continue;
        }
        let diff_id = match check(&entry) {
            Ok(diff_id) => diff_id,
            Err(reason) => {
                report.rejected.push(Rejected {
                    key: entry
                        .key
                        .0
                        .chars()
                        .take(64)
                        .collect::<String>()
                        .escape_debug()
                        .to_string(),
                    reason,
                });
                continue;
            }
        };
        let result = CachedResult {
            diff_id,
            size: entry.result.size,
        };
        if let Some(d) = &result.diff_id
            && !(layers.local)(d)
            && !(layers.remote)(d)
        {
            report.no_layer += 1;
            continue;
        }
        let local = cache.get(&entry.key)?;
        let local_usable = local
            .as_ref()
            .is_some_and(|l| l.result.diff_id.as_ref().is_none_or(|d| (layers.local)(d)));
        if local_usable {
            let local = local.expect("checked above");
            report.present += 1;
            report.usable.push((local.key, local.result.diff_id));
        } else {
            if local.is_some() {
                report.replaced += 1;
            }
            for set in entry.preimage.files.values() {
                wanted_files.insert(set.digest.clone(), ());
            }
            cache.put(&CacheEntry {
                key: entry.key.clone(),
                preimage: entry.preimage,
                result: result.clone(),
                created: entry.created,
                last_used: now,
                build_ms: entry.build_ms,
                depth: entry.depth,
            })?;
            report.imported += 1;
            report.usable.push((entry.key.clone(), result.diff_id));
        }
        cache.seed_site(&format!("{site_prefix}#{}", entry.site), &entry.key)?;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for (digest, encoded) in &doc.files {
        if !wanted_files.contains_key(digest) {
            continue;
        }
        let Ok(bytes) = b64.decode(encoded) else {
            report.bad_files += 1;
            continue;
        };
        if blake3::hash(&bytes).to_hex().as_str() != digest.as_str() {
            report.bad_files += 1;
            continue;
        }
        cache.put_files(digest, &bytes)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::FilesInput;

    const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn entry(cache: &CacheIndex, n: u8, diff_id: Option<&str>) -> CacheEntry {
        let records = vec![n; 10];
        let digest = blake3::hash(&records).to_hex().to_string();
        cache.put_files(&digest, &records).unwrap();
        let mut preimage = Preimage::new("linux/amd64".into(), String::new(), format!("RUN {n}"));
        preimage.files.insert(
            "context".into(),
            FilesInput {
                digest,
                count: 1,
                bytes: 10,
            },
        );
        preimage.note.display = format!("RUN {n}");
        let e = CacheEntry {
            key: preimage.key(),
            preimage,
            result: CachedResult {
                diff_id: diff_id.map(|d| Digest::parse(d).unwrap()),
                size: 5,
            },
            created: 1000 + i64::from(n),
            last_used: 2000,
            build_ms: 7,
            depth: 0,
        };
        cache.put(&e).unwrap();
        e
    }

    fn open() -> (tempfile::TempDir, CacheIndex) {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheIndex::open(dir.path()).unwrap();
        (dir, cache)
    }

    fn avail<'a>(
        local: &'a dyn Fn(&Digest) -> bool,
        remote: &'a dyn Fn(&Digest) -> bool,
    ) -> LayerAvailability<'a> {
        LayerAvailability { local, remote }
    }

    /// Export then merge into an empty index: the entries, their record lists and the site
    /// history of the importing Dockerfile arrive; the document is deterministic.
    #[test]
    fn export_merge_round_trip() {
        let (_a, src) = open();
        let e1 = entry(&src, 1, Some(LAYER));
        let e2 = entry(&src, 2, None);
        let steps = vec![
            ("0#1".to_string(), e1.key.clone()),
            ("0#2".to_string(), e2.key.clone()),
        ];
        let doc = export(&src, &steps).unwrap();
        assert_eq!(doc.to_bytes(), export(&src, &steps).unwrap().to_bytes());
        assert_eq!(doc.layers(), vec![LAYER.to_string()]);
        assert_eq!(doc.files.len(), 2);

        let (_b, dst) = open();
        let no = |_: &Digest| false;
        let yes = |_: &Digest| true;
        let report = merge(
            &dst,
            &doc.to_bytes(),
            "/other/Dockerfile",
            5000,
            &avail(&no, &yes),
        )
        .unwrap();
        assert_eq!(report.imported, 2);
        assert!(report.rejected.is_empty());
        let got = dst.get(&e1.key).unwrap().unwrap();
        assert_eq!(got.created, e1.created);
        assert_eq!(got.last_used, 5000);
        assert_eq!(got.result, e1.result);
        let files = &e1.preimage.files["context"].digest;
        assert_eq!(dst.get_files(files).unwrap(), src.get_files(files).unwrap());
        let history = dst.site_history("/other/Dockerfile#0#1").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].key, e1.key);
    }

    /// A tampered key, a bad layer digest, control characters and a forged record list are
    /// refused; entries of another key version are ignored; nothing of them is stored.
    #[test]
    fn untrusted_entries_are_refused() {
        let (_a, src) = open();
        let good = entry(&src, 1, Some(LAYER));
        let doc = export(&src, &[("0#1".into(), good.key.clone())]).unwrap();
        let mut tampered = doc.clone();
        tampered.entries[0].key = CacheKey("0".repeat(64));
        let mut bad_layer = doc.clone();
        bad_layer.entries[0].result.diff_id = Some("sha256:../../etc".into());
        let mut escape = doc.clone();
        escape.entries[0].preimage.note.display = "RUN \u{1b}[2J".into();
        let mut old = doc.clone();
        old.entries[0].preimage.version = CACHE_KEY_VERSION + 1;
        let mut forged_files = doc.clone();
        let digest = good.preimage.files["context"].digest.clone();
        forged_files.files.insert(
            digest.clone(),
            base64::engine::general_purpose::STANDARD.encode(b"other"),
        );

        let yes = |_: &Digest| true;
        for (doc, rejected, other) in [
            (&tampered, 1, 0),
            (&bad_layer, 1, 0),
            (&escape, 1, 0),
            (&old, 0, 1),
        ] {
            let (_b, dst) = open();
            let r = merge(&dst, &doc.to_bytes(), "D", 1, &avail(&yes, &yes)).unwrap();
            assert_eq!(
                (r.rejected.len(), r.other_version, r.imported),
                (rejected, other, 0)
            );
            assert!(dst.entries().unwrap().is_empty());
        }
        let (_b, dst) = open();
        let r = merge(&dst, &forged_files.to_bytes(), "D", 1, &avail(&yes, &yes)).unwrap();
        assert_eq!((r.imported, r.bad_files), (1, 1));
        assert_eq!(dst.get_files(&digest).unwrap(), None);
    }

    /// A local entry whose layer is stored is kept; one whose layer is gone is replaced; an
    /// entry whose layer nobody has is skipped.
    #[test]
    fn local_entries_win_while_their_layer_exists() {
        let (_a, src) = open();
        let e = entry(&src, 1, Some(LAYER));
        let doc = export(&src, &[("0#1".into(), e.key.clone())]).unwrap();
        let (_b, dst) = open();
        let mut local = e.clone();
        local.result.diff_id = Some(Digest::from_hex(&"2".repeat(64)).unwrap());
        dst.put(&local).unwrap();
        let yes = |_: &Digest| true;
        let no = |_: &Digest| false;
        let r = merge(&dst, &doc.to_bytes(), "D", 1, &avail(&yes, &yes)).unwrap();
        assert_eq!((r.present, r.imported), (1, 0));
        assert_eq!(dst.get(&e.key).unwrap().unwrap().result, local.result);
        let r = merge(&dst, &doc.to_bytes(), "D", 1, &avail(&no, &yes)).unwrap();
        assert_eq!((r.imported, r.replaced), (1, 1));
        assert_eq!(dst.get(&e.key).unwrap().unwrap().result, e.result);
        let (_c, empty) = open();
        let r = merge(&empty, &doc.to_bytes(), "D", 1, &avail(&no, &no)).unwrap();
        assert_eq!((r.imported, r.no_layer), (0, 1));
    }

    /// Foreign documents and future versions are refused as a whole, with what they are.
    #[test]
    fn foreign_documents_are_refused() {
        let (_a, dst) = open();
        let yes = |_: &Digest| true;
        let a = avail(&yes, &yes);
        assert!(matches!(
            merge(&dst, b"{}", "D", 1, &a),
            Err(ImportError::Malformed { .. })
        ));
        assert!(matches!(
            merge(&dst, br#"{"format":"other","version":1}"#, "D", 1, &a),
            Err(ImportError::Malformed { .. })
        ));
        assert!(matches!(
            merge(
                &dst,
                br#"{"format":"rbuild.cache.index","version":9,"entries":[]}"#,
                "D",
                1,
                &a
            ),
            Err(ImportError::Version { found: 9 })
        ));
    }
}

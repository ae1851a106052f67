//! Reproducibility: `SOURCE_DATE_EPOCH` as a cache-key input (a layer written under another
//! epoch has other mtimes, so it must not be reused), and `build --verify-reproducible`'s
//! comparison of two builds of one Dockerfile: the image digests, and when they differ, which
//! config fields, layers and files (content, mode, owner, type, symlink target, mtime, xattrs)
//! differ between the two flattened images.

use std::collections::BTreeSet;

use miette::Report;
use rbuild_solver::op::{Op, Plan};
use rbuild_store::layer::{FlatTree, PathDiff, diff_trees, flatten_image};
use rbuild_store::{ImageRecord, Store};
use serde_json::Value;

/// The `SOURCE_DATE_EPOCH` `--verify-reproducible` uses when none is given.
pub const DEFAULT_EPOCH: i64 = 0;

/// The cache-key input naming the epoch of file-changing steps.
const EPOCH_INPUT: &str = "source-date-epoch";

/// Make `epoch` part of every file-changing step's cache key.
pub fn key_epoch(plan: &mut Plan, epoch: i64) {
    for stage in &mut plan.stages {
        for step in &mut stage.steps {
            if !matches!(step.op, Op::Meta) {
                step.key
                    .inputs
                    .insert(EPOCH_INPUT.to_string(), epoch.to_string());
            }
        }
    }
}

/// Everything that differs between two images.
#[derive(Debug, Default)]
pub struct Differences {
    /// Config fields: `` `config.Env[1]`: "A=1" → "A=2" ``.
    pub config: Vec<String>,
    /// Layers by position: `layer 2: sha256:… → sha256:…`.
    pub layers: Vec<String>,
    /// Files of the flattened images.
    pub files: Vec<PathDiff>,
    /// When the flattened images agree but layers do not: the differing layers' own entries.
    pub layer_files: Vec<(usize, Vec<PathDiff>)>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty() && self.layers.is_empty() && self.files.is_empty()
    }
}

fn clip(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

/// Leaf-by-leaf differences of two JSON documents, as `` `path`: old → new ``.
fn json_diff(a: Option<&Value>, b: Option<&Value>, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_diff(x.get(k), y.get(k), &sub, out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                json_diff(x.get(i), y.get(i), &format!("{path}[{i}]"), out);
            }
        }
        (Some(x), Some(y)) if x == y => {}
        (x, y) => {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), clip);
            out.push(format!("`{path}`: {} → {}", show(x), show(y)));
        }
    }
}

fn config_json(store: &Store, image: &ImageRecord) -> miette::Result<Value> {
    let bytes = store.read_blob(&image.config_digest).map_err(Report::new)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        miette::Report::new(rbuild_store::Error::corrupt(format!(
            "the config of image {} is not JSON: {e}",
            image.id()
        )))
    })
}

fn flatten_one(store: &Store, image: &ImageRecord, index: usize) -> miette::Result<FlatTree> {
    let layer = &image.layers[index];
    let mut tree = FlatTree::new();
    let r = store.open_layer(&layer.descriptor).map_err(Report::new)?;
    tree.apply_layer(r, store.limits(), layer.descriptor.digest.as_str())
        .map_err(Report::new)?;
    Ok(tree)
}

/// Compare two stored images.
pub fn compare(store: &Store, a: &ImageRecord, b: &ImageRecord) -> miette::Result<Differences> {
    let mut d = Differences::default();
    if a.manifest_digest == b.manifest_digest {
        return Ok(d);
    }
    let (mut ca, mut cb) = (config_json(store, a)?, config_json(store, b)?);
    // Layers are compared one by one below.
    for c in [&mut ca, &mut cb] {
        if let Some(rootfs) = c.get_mut("rootfs").and_then(Value::as_object_mut) {
            rootfs.remove("diff_ids");
        }
    }
    json_diff(Some(&ca), Some(&cb), "", &mut d.config);
    let (la, lb) = (&a.config.rootfs.diff_ids, &b.config.rootfs.diff_ids);
    let mut differing = Vec::new();
    for i in 0..la.len().max(lb.len()) {
        let show = |l: Option<&rbuild_store::Digest>| l.map_or("(none)".into(), |d| d.to_string());
        if la.get(i) != lb.get(i) {
            d.layers.push(format!(
                "layer {}: {} → {}",
                i + 1,
                show(la.get(i)),
                show(lb.get(i))
            ));
            if i < la.len() && i < lb.len() {
                differing.push(i);
            }
        }
    }
    if !d.layers.is_empty() {
        let (ta, tb) = (
            flatten_image(store, a).map_err(Report::new)?,
            flatten_image(store, b).map_err(Report::new)?,
        );
        d.files = diff_trees(&ta, &tb);
        if d.files.is_empty() {
            for i in differing {
                let diffs = diff_trees(&flatten_one(store, a, i)?, &flatten_one(store, b, i)?);
                d.layer_files.push((i, diffs));
            }
        }
    }
    // Same config and layers but another manifest (annotations, media types): say so.
    if d.is_empty() {
        d.config.push(format!(
            "the manifests differ ({} → {}) while config and layers agree",
            a.manifest_digest, b.manifest_digest
        ));
    }
    Ok(d)
}

/// Most file differences listed in a report.
const MAX_LISTED: usize = 50;

/// The report lines for `--verify-reproducible` when the builds differ.
pub fn report_lines(a: &ImageRecord, b: &ImageRecord, d: &Differences) -> Vec<String> {
    let mut out = vec![format!(
        "not reproducible: the first build gave {} (image {}), the second {} (image {})",
        a.manifest_digest,
        a.id().short(),
        b.manifest_digest,
        b.id().short()
    )];
    if !d.files.is_empty() {
        out.push(format!(
            "{} file{} differ{}:",
            d.files.len(),
            if d.files.len() == 1 { "" } else { "s" },
            if d.files.len() == 1 { "s" } else { "" }
        ));
        for f in d.files.iter().take(MAX_LISTED) {
            out.push(format!("  {f}"));
        }
        if d.files.len() > MAX_LISTED {
            out.push(format!("  … and {} more", d.files.len() - MAX_LISTED));
        }
    }
    for (i, diffs) in &d.layer_files {
        if diffs.is_empty() {
            out.push(format!(
                "layer {}: the same files, written differently (entry order or tar encoding)",
                i + 1
            ));
        } else {
            out.push(format!(
                "layer {} holds the same final files but differs in its own entries:",
                i + 1
            ));
            for f in diffs.iter().take(MAX_LISTED) {
                out.push(format!("  {f}"));
            }
        }
    }
    if !d.config.is_empty() {
        out.push("config fields that differ:".into());
        for c in &d.config {
            out.push(format!("  {c}"));
        }
    }
    if !d.layers.is_empty() {
        out.push("layers that differ:".into());
        for l in &d.layers {
            out.push(format!("  {l}"));
        }
    }
    out
}

/// The error `--verify-reproducible` ends with when the builds differ.
pub fn not_reproducible(d: &Differences) -> Report {
    let first = d
        .files
        .first()
        .map(|f| format!("first difference: {f}"))
        .or_else(|| d.config.first().map(|c| format!("first difference: {c}")))
        .unwrap_or_else(|| "the layers differ".into());
    miette::miette!(
        code = "rbuild::build::not_reproducible",
        help = "the listed files depend on when or where the build ran; pin them (e.g. no \
                timestamps or random data in RUN output), then verify again; nothing was tagged \
                and no output was written",
        "the build is not reproducible ({first})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_differences_name_the_field() {
        let a: Value = serde_json::json!({"created": "1970", "config": {"Env": ["A=1", "B=2"]}});
        let b: Value =
            serde_json::json!({"created": "1971", "config": {"Env": ["A=1"], "User": "x"}});
        let mut out = Vec::new();
        json_diff(Some(&a), Some(&b), "", &mut out);
        assert_eq!(
            out,
            [
                "`config.Env[1]`: \"B=2\" → (absent)",
                "`config.User`: (absent) → \"x\"",
                "`created`: \"1970\" → \"1971\"",
            ]
        );
    }
}

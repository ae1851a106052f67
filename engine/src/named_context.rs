//! `--build-context NAME=VALUE`: named contexts, as buildx parses them and BuildKit's
//! Dockerfile frontend uses them. A name is normalised like an image reference (its familiar
//! form without `:latest`, so `alpine`, `alpine:latest` and `docker.io/library/alpine` are one
//! name), and a context of that name takes precedence over a stage and an image of the same
//! name in `FROM`, `COPY --from` and `RUN --mount from=` (the stage is then not built; the
//! planner asks [`Contexts::names`] through `ImageSource::replaces_stage`).
//!
//! Every context becomes an image in the store, which the planner then uses like any base
//! image (its manifest digest enters the keys):
//!
//! - `docker-image://REF`: that image, resolved (and pulled) as `FROM REF` would be;
//!   `docker-image://scratch` is an empty image.
//! - `oci-layout://DIR[:TAG|@DIGEST]`: the image the layout's `index.json` names with that
//!   tag (`org.opencontainers.image.ref.name`, default `latest`; a layout holding one image
//!   needs none) or digest, for the stage's platform when it is an index; its blobs are
//!   copied into the store, each verified against its digest.
//! - `DIR`: read like the main context (`solver::context`, honouring `DIR/.dockerignore` as
//!   BuildKit does) and made into a one-layer image of its files, owned 0:0 as buildx sends
//!   them, with an empty config for the platform (as BuildKit's empty image: `WorkingDir /`).
//!   The layer is deterministic (`executor::layer`), so unchanged files give the same image
//!   and the same keys; a changed mtime gives another layer. Its history entry is the one
//!   BuildKit's exporter adds (`local source for NAME`); BuildKit appends it after the
//!   stage's own entries, here it comes first, in layer order. Files and config match
//!   BuildKit's for COPY --from, a bind mount from and FROM of such a context (compared by
//!   hand: `conform-build` cannot pass named contexts).
//!
//! Git and HTTP URLs, `target:` and `input:` contexts are refused with a help line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_executor::diff::{Change, ChangeKind, Changeset, EntryData};
use rbuild_executor::fsmeta::{Kind, Meta};
use rbuild_solver::context::{BuildContext, EntryKind};
use rbuild_solver::op::Platform;
use rbuild_solver::plan::ResolvedImage;
use rbuild_store::manifest::parse_document;
use rbuild_store::{
    Descriptor, Digest, Document, History, ImageRecord, Layer, Reference, Store, media,
};

use crate::images::{SourceError, StoreImages, resolved_image};

/// One `--build-context` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory.
    Dir(PathBuf),
    /// `docker-image://REF`.
    Image(String),
    /// `oci-layout://DIR[:TAG|@DIGEST]`.
    OciLayout {
        dir: PathBuf,
        tag: Option<String>,
        digest: Option<Digest>,
    },
}

/// The name a context is known by: a reference's familiar form without `:latest`
/// (`docker.io/library/alpine:latest` → `alpine`); `None` when `name` is no reference name.
pub fn context_name(name: &str) -> Option<String> {
    let familiar = Reference::parse_name_only(name).ok()?.familiar();
    Some(match familiar.strip_suffix(":latest") {
        Some(short) => short.to_string(),
        None => familiar,
    })
}

fn usage(message: String, help: &str) -> miette::Report {
    miette::miette!(
        code = "rbuild::usage::build_context",
        help = help.to_string(),
        "{message}"
    )
}

const FORMS: &str = "write `--build-context NAME=DIR`, `NAME=docker-image://REF` or \
                     `NAME=oci-layout://DIR[:TAG]`";

/// Parse `--build-context` values, by normalised name.
pub fn parse(values: &[String]) -> miette::Result<BTreeMap<String, NamedContext>> {
    let mut out = BTreeMap::new();
    for raw in values {
        let Some((name, value)) = raw.split_once('=') else {
            return Err(usage(format!("`--build-context {raw}` has no `=`"), FORMS));
        };
        let Some(key) = context_name(name) else {
            return Err(usage(
                format!("`--build-context {raw}`: `{name}` is not a valid context name"),
                "a context name is a stage name or an image name (lower case), e.g. `base` or \
                 `alpine:3`",
            ));
        };
        let context = if let Some(reference) = value.strip_prefix("docker-image://") {
            if reference != "scratch" {
                Reference::parse(reference).map_err(|e| {
                    usage(
                        format!(
                            "`--build-context {raw}`: `{reference}` is not an image reference: {e}"
                        ),
                        FORMS,
                    )
                })?;
            }
            NamedContext::Image(reference.to_string())
        } else if let Some(layout) = value.strip_prefix("oci-layout://") {
            parse_layout(raw, layout)?
        } else if value.contains("://")
            || value.starts_with("git@")
            || value.contains(':') && !Path::new(value).exists()
        {
            return Err(usage(
                format!("`--build-context {raw}`: this kind of context is not supported"),
                "rbuild takes a directory, `docker-image://REF` or `oci-layout://DIR[:TAG]` \
                 (git and HTTP URLs, `target:` and `input:` are not supported)",
            ));
        } else {
            let dir = PathBuf::from(value);
            if !dir.is_dir() {
                return Err(usage(
                    format!("`--build-context {raw}`: `{value}` is not a directory"),
                    FORMS,
                ));
            }
            NamedContext::Dir(dir)
        };
        if out.insert(key.clone(), context).is_some() {
            return Err(usage(
                format!("`--build-context {key}` is given twice"),
                "give each name once",
            ));
        }
    }
    Ok(out)
}

/// `DIR[:TAG|@DIGEST]` of an `oci-layout://` value (a `:` before the last `/` is the path's).
fn parse_layout(raw: &str, layout: &str) -> miette::Result<NamedContext> {
    let (rest, digest) = match layout.rsplit_once('@') {
        Some((path, d)) if d.contains(':') && !d.contains('/') => {
            let digest = Digest::parse(d).map_err(|e| {
                usage(
                    format!("`--build-context {raw}`: `{d}` is not a digest: {e}"),
                    "write `oci-layout://DIR@sha256:HEX`",
                )
            })?;
            (path, Some(digest))
        }
        _ => (layout, None),
    };
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (dir, tag) = match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(rest[last + i + 1..].to_string())),
        None => (rest, None),
    };
    let dir = PathBuf::from(dir);
    if !dir.join("index.json").is_file() {
        return Err(usage(
            format!(
                "`--build-context {raw}`: `{}` is not an OCI layout (no index.json)",
                dir.display()
            ),
            "name a directory in the OCI image layout format (`skopeo copy ... oci:DIR:TAG`), \
             e.g. `oci-layout://./layout:1.0`",
        ));
    }
    Ok(NamedContext::OciLayout { dir, tag, digest })
}

/// The build's named contexts, and the images made of them (once per name and platform).
#[derive(Default)]
pub struct Contexts {
    map: BTreeMap<String, NamedContext>,
    made: Mutex<BTreeMap<String, Result<ResolvedImage, SourceError>>>,
}

impl Contexts {
    pub fn new(map: &BTreeMap<String, NamedContext>) -> Contexts {
        Contexts {
            map: map.clone(),
            made: Mutex::default(),
        }
    }

    /// Whether `name` (as written in the Dockerfile) names one of the contexts.
    pub fn names(&self, name: &str) -> bool {
        !self.map.is_empty() && context_name(name).is_some_and(|n| self.map.contains_key(&n))
    }
}

/// The image of the context `reference` names, for `platform`; `None` when it names none.
pub(crate) fn resolve(
    images: &StoreImages<'_>,
    contexts: &Contexts,
    reference: &str,
    platform: &Platform,
) -> Option<Result<ResolvedImage, SourceError>> {
    if contexts.map.is_empty() {
        return None;
    }
    let name = context_name(reference)?;
    let context = contexts.map.get(&name)?;
    let memo = format!("{name} {platform}");
    if let Some(done) = contexts.made.lock().expect("contexts lock").get(&memo) {
        return Some(done.clone());
    }
    let store = images.store();
    let shown = format!("context:{name}");
    let made = match context {
        NamedContext::Image(r) if r == "scratch" => store
            .commit_image(&rbuild_solver::plan::scratch_config(platform), &[])
            .map_err(|e| (e.to_string(), None))
            .map(|record| {
                images.remember(&record);
                resolved_image(shown, &record)
            }),
        NamedContext::Image(r) => images.resolve_stored(r, platform),
        NamedContext::OciLayout { dir, tag, digest } => {
            layout_image(store, dir, tag.as_deref(), digest.as_ref(), platform).map(|record| {
                images.remember(&record);
                resolved_image(shown, &record)
            })
        }
        NamedContext::Dir(dir) => dir_image(store, &name, dir, platform).map(|record| {
            images.remember(&record);
            resolved_image(shown, &record)
        }),
    }
    .map_err(|(message, help)| (format!("build context `{name}`: {message}"), help));
    contexts
        .made
        .lock()
        .expect("contexts lock")
        .insert(memo, made.clone());
    Some(made)
}

fn store_err(e: impl std::fmt::Display) -> SourceError {
    (e.to_string(), None)
}

/// A directory context as a one-layer image: every entry its `.dockerignore` keeps, 0:0.
fn dir_image(
    store: &Store,
    name: &str,
    dir: &Path,
    platform: &Platform,
) -> Result<ImageRecord, SourceError> {
    let context = BuildContext::load(dir, None).map_err(|e| {
        (
            format!("cannot read `{}`: {e}", dir.display()),
            Some("a directory context must be readable".into()),
        )
    })?;
    let mut changes = Vec::new();
    // Entry 0 is the directory itself; devices are not copied (as from the main context).
    for e in context.entries().iter().skip(1) {
        let (kind, link_target) = match &e.kind {
            EntryKind::File => (Kind::File, None),
            EntryKind::Dir => (Kind::Dir, None),
            EntryKind::Symlink { target } => (Kind::Symlink, Some(target.clone())),
            _ => continue,
        };
        let meta = Meta {
            kind,
            mode: e.mode,
            uid: 0,
            gid: 0,
            size: if kind == Kind::File { e.size } else { 0 },
            mtime: e.mtime.sec,
            mtime_nsec: e.mtime.nsec as u32,
            rdev: 0,
            dev: e.dev,
            ino: e.ino,
            nlink: e.nlink,
            ctime: e.ctime.sec,
            ctime_nsec: e.ctime.nsec as u32,
        };
        changes.push(Change {
            path: e.path.clone(),
            kind: ChangeKind::Entry(EntryData {
                meta,
                xattrs: Vec::new(),
                link_target,
            }),
        });
    }
    let mut layers = Vec::new();
    if !changes.is_empty() {
        let changeset = Changeset {
            base: dir.to_path_buf(),
            changes,
            warnings: Vec::new(),
        };
        let mut writer = store.blob_writer().map_err(store_err)?;
        rbuild_executor::layer::write_tar(&changeset, &mut writer, &Default::default())
            .map_err(store_err)?;
        let info = writer.commit().map_err(store_err)?;
        layers.push(Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, info.digest.clone(), info.size),
            diff_id: info.digest,
        });
    }
    let mut config = rbuild_solver::plan::scratch_config(platform);
    if !layers.is_empty() {
        // The layer's history entry, as BuildKit's exporter writes one for a layer without.
        config.history.push(History {
            created_by: Some(format!("local source for {name}")),
            comment: Some("buildkit.exporter.image.v0".into()),
            ..History::default()
        });
    }
    store.commit_image(&config, &layers).map_err(store_err)
}

/// The largest `index.json` or manifest read from a layout.
const MAX_DOCUMENT: u64 = 8 << 20;
/// The annotation naming an image in a layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The image `tag` (or `digest`) names in the OCI layout `dir`, copied into the store.
fn layout_image(
    store: &Store,
    dir: &Path,
    tag: Option<&str>,
    digest: Option<&Digest>,
    platform: &Platform,
) -> Result<ImageRecord, SourceError> {
    let bytes = read_capped(&dir.join("index.json"), MAX_DOCUMENT)?;
    let index = match parse_document(&bytes, None, MAX_DOCUMENT, "index.json").map_err(store_err)? {
        Document::Index(index) => index,
        Document::Manifest(_) => return Err(("index.json is not an image index".into(), None)),
    };
    let wanted = tag.unwrap_or("latest");
    let named = |d: &&Descriptor| {
        d.annotation(REF_NAME)
            .is_some_and(|n| n == wanted || n.ends_with(&format!(":{wanted}")))
    };
    let found = match digest {
        Some(digest) => index.manifests.iter().find(|d| &d.digest == digest),
        None => index.manifests.iter().find(named).or_else(|| {
            // A layout holding one image needs no tag.
            (tag.is_none() && index.manifests.len() == 1).then(|| &index.manifests[0])
        }),
    };
    let Some(entry) = found.cloned() else {
        let names: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|d| d.annotation(REF_NAME))
            .collect();
        return Err((
            match digest {
                Some(d) => format!("the layout `{}` has no image {d}", dir.display()),
                None => format!(
                    "the layout `{}` has no image tagged `{wanted}`",
                    dir.display()
                ),
            },
            Some(if names.is_empty() {
                "its index.json names no images; use `oci-layout://DIR@sha256:...`".into()
            } else {
                format!("it names: {}", names.join(", "))
            }),
        ));
    };
    let manifest = match layout_document(store, dir, &entry)? {
        Document::Manifest(_) => entry,
        Document::Index(nested) => {
            let Some(chosen) = platform.select(&nested.manifests).cloned() else {
                return Err((
                    format!("the layout's image has no manifest for {platform}"),
                    Some("pass `--platform` to match the image".into()),
                ));
            };
            match layout_document(store, dir, &chosen)? {
                Document::Manifest(_) => chosen,
                Document::Index(_) => {
                    return Err(("nested image indexes are not supported here".into(), None));
                }
            }
        }
    };
    let Document::Manifest(m) = layout_document(store, dir, &manifest)? else {
        unreachable!("checked above");
    };
    copy_blob(store, dir, &m.config)?;
    for layer in &m.layers {
        copy_blob(store, dir, layer)?;
    }
    store.add_image(&manifest).map_err(store_err)
}

/// Copy `desc`'s blob into the store and parse it as a manifest or index.
fn layout_document(store: &Store, dir: &Path, desc: &Descriptor) -> Result<Document, SourceError> {
    copy_blob(store, dir, desc)?;
    let bytes = store.read_blob(&desc.digest).map_err(store_err)?;
    parse_document(
        &bytes,
        Some(&desc.media_type),
        MAX_DOCUMENT,
        desc.digest.as_str(),
    )
    .map_err(store_err)
}

/// The layout's blob for `desc` into the store, verified against its digest and size.
fn copy_blob(store: &Store, dir: &Path, desc: &Descriptor) -> Result<(), SourceError> {
    if store.has_blob(&desc.digest) {
        return Ok(());
    }
    // The digest was parsed (algorithm and hex only): it cannot name another path.
    let path = dir
        .join("blobs")
        .join(desc.digest.algorithm())
        .join(desc.digest.hex());
    let mut file = std::fs::File::open(&path).map_err(|e| {
        (
            format!("cannot read blob `{}`: {e}", path.display()),
            Some("the layout is incomplete".into()),
        )
    })?;
    let mut writer = store
        .blob_writer_expecting(&desc.digest, Some(desc.size), "layout blob")
        .map_err(store_err)?;
    writer.copy_from(&mut file).map_err(store_err)?;
    writer.commit().map_err(store_err)?;
    Ok(())
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, SourceError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| (format!("cannot read `{}`: {e}", path.display()), None))?;
    if bytes.len() as u64 > max {
        return Err((format!("`{}` is too large", path.display()), None));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_references() {
        for (given, name) in [
            ("alpine", "alpine"),
            ("alpine:latest", "alpine"),
            ("docker.io/library/alpine:latest", "alpine"),
            ("library/alpine", "alpine"),
            ("docker.io/library/alpine:3", "alpine:3"),
            ("base", "base"),
            ("localhost:5000/app", "localhost:5000/app"),
        ] {
            assert_eq!(context_name(given).as_deref(), Some(name), "{given}");
        }
        assert_eq!(context_name("Not Valid"), None);
    }

    #[test]
    fn values_parse_into_their_kinds() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("index.json"), "{}").unwrap();
        let dir = t.path().display().to_string();
        let got = parse(&[
            format!("src={dir}"),
            "docker.io/library/alpine=docker-image://busybox:1.35".into(),
            format!("lay=oci-layout://{dir}:v1"),
            format!("dig=oci-layout://{dir}@sha256:{}", "a".repeat(64)),
            format!("plain=oci-layout://{dir}"),
        ])
        .unwrap();
        assert_eq!(got["src"], NamedContext::Dir(t.path().into()));
        assert_eq!(got["alpine"], NamedContext::Image("busybox:1.35".into()));
        assert_eq!(
            got["lay"],
            NamedContext::OciLayout {
                dir: t.path().into(),
                tag: Some("v1".into()),
                digest: None
            }
        );
        let NamedContext::OciLayout { digest, tag, .. } = &got["dig"] else {
            panic!()
        };
        assert!(digest.is_some() && tag.is_none());
        let NamedContext::OciLayout { tag, .. } = &got["plain"] else {
            panic!()
        };
        assert!(tag.is_none());
    }

    #[test]
    fn bad_values_are_usage_errors_with_help() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().display().to_string();
        for (value, wanted) in [
            ("nothing".to_string(), "has no `=`"),
            (format!("Bad Name={dir}"), "not a valid context name"),
            ("x=/nonexistent/dir".into(), "is not a directory"),
            ("x=https://example.com/repo.git".into(), "not supported"),
            (
                "x=docker-image://Not Valid".into(),
                "not an image reference",
            ),
            (format!("x=oci-layout://{dir}"), "not an OCI layout"),
            (format!("x={dir}"), ""),
        ] {
            let result = parse(&[value.clone(), format!("x={dir}")]);
            let err = result.unwrap_err();
            let wanted = if wanted.is_empty() {
                "given twice"
            } else {
                wanted
            };
            assert!(err.to_string().contains(wanted), "{value}: {err}");
            assert!(err.help().is_some(), "{value}");
        }
    }
}

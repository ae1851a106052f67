//! `--output` / `-o`: parsing docker's `type=TYPE,dest=PATH[,key=value...]` syntax (and the
//! short forms `-o DIR` and `-o -`) into checked output specs before anything runs, and
//! writing them once the build succeeded: `image` (tags in the store), `local` (the root
//! filesystem into a directory), `tar` (the root filesystem as a tar stream), `oci` and
//! `docker` (image archives or layout directories). Files appear only complete (temp file +
//! rename); a new directory appears only complete (staging directory + rename).
//! [`write_output_file`] is the one writer of file outputs for every command (`save -o`,
//! `--iidfile`, `--metadata-file` too): character devices and FIFOs are written through, never
//! replaced; a symlink the user named is followed; nothing is written into what the store owns.
//!
//! Module map: [`spec`] (parsing) → [`file`] (the atomic writer, store refusal) → one module
//! per exporter: [`local`], [`tar`], [`archive`] (`oci` and `docker`), [`image`] (names).

pub mod archive;
pub mod file;
pub mod image;
pub mod local;
pub mod spec;
pub mod tar;

use std::collections::BTreeMap;

use miette::Report;
use rbuild_executor::export::{Rootfs, RootfsOptions};
use rbuild_store::layer::FlatKind;
use rbuild_store::{Digest, ImageRecord, Reference, Store, Target};

pub use file::{Cancelled, check_outside_store, outside_store, write_output_file};
pub use spec::{Dest, OutputSpec, OutputType, parse_all, parse_one};

/// The names an output records or tags: its own `name=`, else the `-t` names.
pub fn names_for<'a>(spec: &'a OutputSpec, tags: &'a [Reference]) -> &'a [Reference] {
    if spec.names.is_empty() {
        tags
    } else {
        &spec.names
    }
}

/// What writing one output did, for the summary line.
pub struct Written {
    pub what: String,
}

/// What every exporter gets: what the build made, the store it is in, and the build's
/// settings.
pub struct Export<'a> {
    pub store: &'a Store,
    /// One image, or the index of a multi-platform build.
    pub target: &'a Target,
    /// The `-t` names (archives record them unless the output names its own).
    pub tags: &'a [Reference],
    /// `SOURCE_DATE_EPOCH`: local and tar outputs give every file that mtime, as BuildKit does.
    pub epoch: Option<i64>,
    /// Polled while writing; nothing partial is moved into place once it says yes.
    pub cancelled: Cancelled<'a>,
}

impl Export<'_> {
    fn rootfs_options(&self) -> RootfsOptions<'_> {
        RootfsOptions {
            mtime: self.epoch,
            cancelled: self.cancelled,
        }
    }

    /// The platform images: one (a single image, unnamed) or one per platform, each with its
    /// directory name in a split output (`linux_arm64`, BuildKit's platform with `/` → `_`).
    fn parts(&self) -> Vec<(String, &ImageRecord)> {
        match self.target {
            Target::Image(image) => vec![(String::new(), image)],
            Target::Index(index) => index
                .images
                .iter()
                .map(|(p, image)| (p.to_string().replace('/', "_"), image))
                .collect(),
        }
    }
}

/// The flattened root filesystems, each computed once for all outputs that need it.
#[derive(Default)]
pub struct RootfsCache(BTreeMap<Digest, Rootfs>);

impl RootfsCache {
    fn load(&mut self, store: &Store, images: &[&ImageRecord]) -> miette::Result<()> {
        for image in images {
            if !self.0.contains_key(&image.manifest_digest) {
                let rootfs = Rootfs::load(store, image).map_err(Report::new)?;
                self.0.insert(image.manifest_digest.clone(), rootfs);
            }
        }
        Ok(())
    }

    fn get(&self, image: &ImageRecord) -> &Rootfs {
        &self.0[&image.manifest_digest]
    }
}

/// How a destination is named in messages: `stdout` or `` `path` ``.
fn shown(dest: &Dest) -> String {
    match dest {
        Dest::Stdout => "stdout".to_string(),
        Dest::Path(p) => format!("`{}`", p.display()),
    }
}

/// Outputs a multi-platform build cannot write, refused before anything runs: `type=docker`
/// (BuildKit's reason: a docker-archive holds no manifest list).
pub fn check_multi_platform(outputs: &[OutputSpec]) -> miette::Result<()> {
    for spec in outputs {
        if spec.kind == OutputType::Docker {
            return Err(miette::Report::new(
                rbuild_store::Failure::new(
                    rbuild_store::ErrorClass::Input,
                    "rbuild::usage::output",
                    format!(
                        "cannot write `--output {}`: docker exporter does not currently \
                         support exporting manifest lists",
                        spec.raw
                    ),
                )
                .with_help("build one platform for `type=docker`, or use `type=oci` for several"),
            ));
        }
    }
    Ok(())
}

/// Write one output of the built image (or images); `cache` keeps the flattened root
/// filesystems between calls. `type=image` writes nothing here (its names are tagged with the
/// `-t` ones, see [`image::names`]).
pub fn write(
    export: &Export<'_>,
    spec: &OutputSpec,
    cache: &mut RootfsCache,
) -> miette::Result<Option<Written>> {
    let Some(dest) = &spec.dest else {
        return Ok(None);
    };
    if let Dest::Path(path) = dest
        && spec.directory
    {
        outside_store(path, export.store.root(), true)?;
    }
    let what = match spec.kind {
        OutputType::Image => return Ok(None),
        OutputType::Local | OutputType::Tar => {
            let parts = export.parts();
            let images: Vec<&ImageRecord> = parts.iter().map(|(_, i)| *i).collect();
            cache.load(export.store, &images)?;
            let trees: Vec<(&str, &Rootfs)> = parts
                .iter()
                .map(|(name, image)| (name.as_str(), cache.get(image)))
                .collect();
            let split = trees.len() > 1 && spec.platform_split != Some(false);
            let trees = if trees.len() > 1 && !split {
                merged(&trees)?
            } else {
                trees
            };
            match spec.kind {
                OutputType::Local => {
                    let Dest::Path(path) = dest else {
                        unreachable!("checked when parsing")
                    };
                    local::write(export, &trees, path)?
                }
                _ => tar::write(export, &trees, dest)?,
            }
        }
        OutputType::Oci | OutputType::Docker => archive::write(export, spec, dest)?,
    };
    Ok(Some(Written { what }))
}

/// `platform-split=false`: every platform's tree into the one destination, refused (as
/// BuildKit does) when two platforms have a file at the same path.
fn merged<'a>(trees: &[(&'a str, &'a Rootfs)]) -> miette::Result<Vec<(&'a str, &'a Rootfs)>> {
    let mut seen: BTreeMap<&[u8], &str> = BTreeMap::new();
    for (name, rootfs) in trees {
        for (path, entry) in &rootfs.tree().entries {
            if matches!(entry.kind, FlatKind::Dir) {
                continue;
            }
            if let Some(first) = seen.insert(path.as_slice(), name) {
                return Err(miette::Report::new(
                    rbuild_store::Failure::new(
                        rbuild_store::ErrorClass::Input,
                        "rbuild::output::platform_split",
                        format!(
                            "cannot overwrite {} from {} with {} when split option is disabled",
                            String::from_utf8_lossy(path),
                            first.replace('_', "/"),
                            name.replace('_', "/")
                        ),
                    )
                    .with_help("remove `platform-split=false` to write one directory per platform"),
                ));
            }
        }
    }
    Ok(trees.iter().map(|(_, r)| ("", *r)).collect())
}

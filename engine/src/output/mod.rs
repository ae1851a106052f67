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

use miette::Report;
use rbuild_executor::export::{Rootfs, RootfsOptions};
use rbuild_store::{ImageRecord, Reference, Store};

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

/// What every exporter gets: the built image, the store it is in, and the build's settings.
pub struct Export<'a> {
    pub store: &'a Store,
    pub image: &'a ImageRecord,
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
}

/// The flattened root filesystem, computed once for all outputs that need it.
#[derive(Default)]
pub struct RootfsCache(Option<Rootfs>);

impl RootfsCache {
    fn get(&mut self, store: &Store, image: &ImageRecord) -> miette::Result<&Rootfs> {
        if self.0.is_none() {
            self.0 = Some(Rootfs::load(store, image).map_err(Report::new)?);
        }
        Ok(self.0.as_ref().expect("just loaded"))
    }
}

/// How a destination is named in messages: `stdout` or `` `path` ``.
fn shown(dest: &Dest) -> String {
    match dest {
        Dest::Stdout => "stdout".to_string(),
        Dest::Path(p) => format!("`{}`", p.display()),
    }
}

/// Write one output of the built image; `cache` keeps the flattened root filesystem between
/// calls. `type=image` writes nothing here (its names are tagged with the `-t` ones, see
/// [`image::names`]).
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
        OutputType::Local => {
            let Dest::Path(path) = dest else {
                unreachable!("checked when parsing")
            };
            let rootfs = cache.get(export.store, export.image)?;
            local::write(export, rootfs, path)?
        }
        OutputType::Tar => {
            let rootfs = cache.get(export.store, export.image)?;
            tar::write(export, rootfs, dest)?
        }
        OutputType::Oci | OutputType::Docker => archive::write(export, spec, dest)?,
    };
    Ok(Some(Written { what }))
}

//! `-o type=oci` and `-o type=docker`: the image as an OCI image layout or a docker-archive
//! (what `docker load` reads; also an OCI layout), as a tar archive (a file or stdout) or,
//! with `tar=false`, a layout directory. Both are the store's `save` in one of its formats. A
//! multi-platform build's index is saved whole as `oci` (the layout's index.json names the
//! index, every platform's blobs under it); `docker` takes single images only.

use miette::Report;
use rbuild_store::archive::{SaveFormat, SaveTarget};

use super::{Dest, Export, OutputSpec, OutputType, file, names_for, shown};

/// Write the image archive or layout of `spec` to `dest`; the summary of what was written.
pub fn write(export: &Export<'_>, spec: &OutputSpec, dest: &Dest) -> miette::Result<String> {
    let store = export.store;
    let format = if spec.kind == OutputType::Oci {
        SaveFormat::Oci
    } else {
        SaveFormat::Docker
    };
    if export.target.is_index() {
        // `build` refuses these before building; say the same to any other caller.
        super::check_multi_platform(std::slice::from_ref(spec))?;
    }
    let items = [SaveTarget {
        target: export.target.clone(),
        names: names_for(spec, export.tags).to_vec(),
    }];
    match dest {
        Dest::Stdout => {
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            store
                .save_targets(&items, format, out)
                .map_err(Report::new)?;
        }
        Dest::Path(path) if spec.directory => {
            file::write_dir_atomically(path, export.cancelled, |dir| {
                store
                    .save_targets_dir(&items, format, dir)
                    .map_err(Report::new)
            })?
        }
        Dest::Path(path) => {
            file::write_output_file(path, store.root(), true, export.cancelled, |file| {
                let out = store
                    .save_targets(&items, format, std::io::BufWriter::new(file))
                    .map_err(Report::new)?;
                // Flushed here so a full disk or device is an error, not lost in a drop.
                out.into_inner()
                    .map(drop)
                    .map_err(|e| file::io_error("write", path, e.into_error()))
            })?
        }
    }
    let form = match (spec.kind, spec.directory) {
        (OutputType::Oci, true) => "OCI image layout",
        (OutputType::Oci, false) => "OCI archive",
        (_, true) => "docker-archive layout",
        (_, false) => "docker-archive",
    };
    Ok(format!("{form} to {}", shown(dest)))
}

//! `store fsck`: verify the store's consistency — layout files, index.json, every image's
//! manifest, config and layers present with the recorded sizes (a layer that is missing but
//! recorded as remote with the same size is counted, not a problem; and, with `full`, every blob
//! re-hashed against its name), refs readable; report leftovers of crashed processes. With
//! `repair`, corrupt blobs move to `quarantine/` and leftovers are removed.

use std::fs;
use std::io::{self, Read};

use rayon::prelude::*;

use crate::digest::{Digest, Hasher};
use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::lease;
use crate::manifest::{self, Document};
use crate::media;
use crate::store::Store;

/// Options of `fsck`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Re-hash every blob (otherwise only documents are hashed and layers size-checked).
    pub full: bool,
    /// Quarantine corrupt blobs and remove leftovers of dead processes.
    pub repair: bool,
}

/// What fsck found.
#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    /// Inconsistencies: the store is not healthy while any are present.
    pub problems: Vec<String>,
    /// Harmless leftovers (crashed writers' temp files, expired leases).
    pub garbage: Vec<String>,
    /// What `repair` did.
    pub repaired: Vec<String>,
    pub images_checked: usize,
    pub blobs_checked: usize,
    /// Layers referenced but only in a registry (`remote.rs`): counted, not a problem.
    pub remote_layers: usize,
}

impl FsckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Check the store. Runs under the shared lock so a concurrent GC cannot race it.
    pub fn fsck(&self, opts: FsckOptions) -> Result<FsckReport> {
        let _g = if opts.repair {
            self.lock_exclusive()?
        } else {
            self.lock_shared()?
        };
        let mut r = FsckReport::default();
        match fs::read(self.layout.oci_layout()) {
            Ok(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
                Ok(v)
                    if v.get("imageLayoutVersion")
                        .and_then(|x| x.as_str())
                        .is_some() => {}
                _ => r
                    .problems
                    .push("`oci-layout` is not a valid layout marker".into()),
            },
            Err(e) => r.problems.push(format!("`oci-layout` is unreadable: {e}")),
        }
        let index = match self.read_index() {
            Ok(i) => Some(i),
            Err(e) => {
                r.problems.push(format!("index.json: {e}"));
                None
            }
        };
        for d in index.iter().flat_map(|i| i.manifests.iter()) {
            r.images_checked += 1;
            self.check_document(&d.digest, Some(&d.media_type), d.size, 0, &mut r);
        }
        for kind in self.ref_kinds()? {
            if let Err(e) = self.list_refs(&kind) {
                r.problems.push(format!("refs/{kind}: {e}"));
            }
        }

        // Every blob file: a valid name, a regular file, and (full) the right content.
        let blobs_dir = self.layout.blobs();
        let mut names = Vec::new();
        for entry in fs::read_dir(&blobs_dir).ctx("list", &blobs_dir)? {
            let entry = entry.ctx("list", &blobs_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().ctx("stat", entry.path())?;
            match Digest::from_hex(&name) {
                Ok(d) if ft.is_file() => names.push(d),
                Ok(_) => r
                    .problems
                    .push(format!("blobs/sha256/{name} is not a regular file")),
                Err(_) => r
                    .garbage
                    .push(format!("blobs/sha256/{name}: not a blob name")),
            }
        }
        r.blobs_checked = names.len();
        if opts.full {
            let bad: Vec<(Digest, String)> = names
                .par_iter()
                .filter_map(|d| match self.hash_blob(d) {
                    Ok(actual) if &actual == d => None,
                    Ok(actual) => Some((d.clone(), format!("hashes to {actual}"))),
                    Err(e) => Some((d.clone(), e.to_string())),
                })
                .collect();
            for (d, why) in bad {
                r.problems.push(format!("blob {d} is corrupt: {why}"));
                if opts.repair {
                    let q = self.layout.quarantine();
                    fs::create_dir_all(&q).ctx("create", &q)?;
                    fs::rename(self.blob_path(&d), q.join(d.hex()))
                        .ctx("quarantine", self.blob_path(&d))?;
                    r.repaired
                        .push(format!("moved corrupt blob {d} to quarantine/"));
                }
            }
        }

        // Leftovers of dead processes.
        let leases = lease::read_leases(&self.layout.leases())?;
        for p in &leases.expired {
            r.garbage.push(format!("expired lease {}", p.display()));
            if opts.repair {
                let _ = fs::remove_file(p);
            }
        }
        for dir in [self.layout.ingest(), self.layout.tmp()] {
            for entry in fs::read_dir(&dir).ctx("list", &dir)? {
                let entry = entry.ctx("list", &dir)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some((pid, start)) = fsutil::owner_of(&name)
                    && !fsutil::process_alive(pid, start)
                {
                    r.garbage.push(format!(
                        "leftover of a dead process: {}",
                        entry.path().display()
                    ));
                    if opts.repair {
                        fsutil::remove_tree(&entry.path())?;
                    }
                }
            }
        }
        if opts.repair {
            r.repaired
                .extend(r.garbage.iter().map(|g| format!("removed {g}")));
        }
        Ok(r)
    }

    fn hash_blob(&self, d: &Digest) -> Result<Digest> {
        let mut f = self.open_blob(d)?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx("read", self.blob_path(d)),
            };
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }

    fn check_size(&self, d: &Digest, size: u64, what: &str, r: &mut FsckReport) -> bool {
        match self.blob_size(d) {
            Ok(s) if s == size => true,
            Ok(s) => {
                r.problems.push(format!(
                    "{what} {d} is {s} bytes, its descriptor says {size}"
                ));
                false
            }
            Err(e) => {
                r.problems.push(format!("{what} {d}: {e}"));
                false
            }
        }
    }

    fn check_document(
        &self,
        d: &Digest,
        media_type: Option<&str>,
        size: u64,
        depth: u32,
        r: &mut FsckReport,
    ) {
        if depth > 4 || !self.check_size(d, size, "manifest", r) {
            return;
        }
        let bytes = match self.read_blob(d) {
            Ok(b) => b,
            Err(e) => return r.problems.push(format!("manifest {d}: {e}")),
        };
        match manifest::parse_document(&bytes, media_type, self.limits.max_json_bytes, d.as_str()) {
            Ok(Document::Index(i)) => {
                for c in &i.manifests {
                    if media::is_manifest(&c.media_type) || media::is_index(&c.media_type) {
                        // Children of a multi-platform index may legitimately be absent.
                        if self.has_blob(&c.digest) {
                            self.check_document(
                                &c.digest,
                                Some(&c.media_type),
                                c.size,
                                depth + 1,
                                r,
                            );
                        }
                    }
                }
            }
            Ok(Document::Manifest(m)) => {
                if !self.check_size(&m.config.digest, m.config.size, "config", r) {
                    return;
                }
                if media::is_image_config(&m.config.media_type) {
                    match self.read_blob(&m.config.digest).and_then(|b| {
                        crate::config::ImageConfig::parse(&b, self.limits.max_json_bytes, "config")
                    }) {
                        Ok(c) if c.rootfs.diff_ids.len() != m.layers.len() => {
                            r.problems.push(format!(
                                "config {} lists {} diff_ids for {} layers",
                                m.config.digest,
                                c.rootfs.diff_ids.len(),
                                m.layers.len()
                            ))
                        }
                        Ok(_) => {}
                        Err(e) => r.problems.push(format!("config {}: {e}", m.config.digest)),
                    }
                }
                for l in &m.layers {
                    // A remote layer (never downloaded, `remote.rs`) is not corruption.
                    if !self.has_blob(&l.digest) && self.has_layer_or_remote(l) {
                        r.remote_layers += 1;
                        continue;
                    }
                    self.check_size(&l.digest, l.size, "layer", r);
                }
            }
            Err(e) => r.problems.push(format!("manifest {d}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fsck_finds_missing_and_corrupt_blobs() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let b = s.put_blob(b"layer").unwrap();
        let l = crate::image::Layer {
            descriptor: crate::Descriptor::new(media::OCI_LAYER_TAR, b.digest.clone(), b.size),
            diff_id: b.digest.clone(),
        };
        let img = s
            .commit_image(&crate::ImageConfig::new_for_host(), &[l])
            .unwrap();
        assert!(
            s.fsck(FsckOptions {
                full: true,
                repair: false
            })
            .unwrap()
            .is_ok()
        );
        let p = s.blob_path(&b.digest);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"lay3r").unwrap();
        let r = s
            .fsck(FsckOptions {
                full: false,
                repair: false,
            })
            .unwrap();
        assert!(r.is_ok(), "same size: only a full check sees it");
        let r = s
            .fsck(FsckOptions {
                full: true,
                repair: true,
            })
            .unwrap();
        assert!(!r.is_ok());
        assert!(s.layout.quarantine().join(b.digest.hex()).exists());
        let r = s.fsck(FsckOptions::default()).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("not in the store")),
            "{r:?}"
        );
        fs::remove_file(s.blob_path(&img.config_digest)).unwrap();
        assert!(!s.fsck(FsckOptions::default()).unwrap().is_ok());
    }

    /// Every platform image of a stored index is checked, not only the host's.
    #[test]
    fn fsck_checks_every_platform_of_an_index() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_with(d.path(), StoreOptions::default()).unwrap();
        let image = |arch: &str| {
            let b = s.put_blob(arch.as_bytes()).unwrap();
            let l = crate::image::Layer {
                descriptor: crate::Descriptor::new(media::OCI_LAYER_TAR, b.digest.clone(), b.size),
                diff_id: b.digest.clone(),
            };
            let mut c = crate::ImageConfig::new_for_host();
            c.architecture = arch.to_string();
            (s.commit_image(&c, &[l]).unwrap(), b.digest)
        };
        let (amd, _) = image("amd64");
        let (arm, arm_layer) = image("arm64");
        s.commit_index(&[
            (crate::Platform::new("linux", "amd64", None), amd),
            (crate::Platform::new("linux", "arm64", None), arm),
        ])
        .unwrap();
        let r = s.fsck(FsckOptions::default()).unwrap();
        assert!(r.is_ok(), "{:?}", r.problems);
        assert_eq!(r.images_checked, 1, "the index is one image");
        fs::remove_file(s.blob_path(&arm_layer)).unwrap();
        let r = s.fsck(FsckOptions::default()).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains(arm_layer.as_str())),
            "{r:?}"
        );
    }
}

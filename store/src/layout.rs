//! Where things live under the store root, and creating/validating that layout. The root is an
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`); rbuild's private state sits
//! beside it in directories OCI tools ignore:
//!
//! | path | owner | content |
//! |---|---|---|
//! | `oci-layout`, `index.json`, `blobs/sha256/<hex>` | store | the OCI layout; blobs 0444 |
//! | `ingest/<pid>-<start>.<rand>` | store | blobs being written |
//! | `tmp/` | store | scratch space, entries named by owner PID |
//! | `refs/<kind>/<name>` | other crates | GC roots (`refs`) |
//! | `repo-digests.json` | store | registry names of images (`repo_digests`) |
//! | `content-sizes.json` | store | uncompressed layer sizes by diff_id (`content_size`) |
//! | `remote-layers.json` | store | where layers never downloaded can be fetched (`remote`) |
//! | `leases/<pid>-<start>-<n>.lease` | store | what a live process wrote or uses |
//! | `snapshots/v2/<chain id hex>` | executor | each layer as an overlay lowerdir on its chain |
//! | `cache/_index-v1`, `cache/context/<key>` | solver, cli | cache index, context stat caches |
//! | `cache-mounts/`, `exec/`, `containers/` | executor | RUN cache mounts, step dirs, `run` |
//! | `volumes/<name>/_data` | executor | named volumes of containers (`run -v NAME:/dir`) |
//! | `registry/compressed.json` | registry | compressed digests of local layers |
//! | `quarantine/` | fsck | corrupt blobs moved aside by `fsck --repair` |
//! | `LOCK`, `index.lock`, `rbuild-store-version` | store | locks; format version |
//!
//! The root is created `0700` (images contain setuid binaries and device nodes) and must be
//! owned by the caller and not writable by others. A root is opened only if it is a store, an
//! empty directory, or a new path; anything else is refused, and so is a newer format version.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The store format this rbuild writes. Bumped on incompatible layout changes.
pub const FORMAT_VERSION: u32 = 1;

/// The default store root: `/var/lib/rbuild` for root, `$XDG_DATA_HOME/rbuild` (or
/// `~/.local/share/rbuild`) otherwise — also rootless, as root of a user namespace
/// ([`crate::userns`]); `rbuild-single` instead of `rbuild` with `--userns=single`. `--root`
/// and `RBUILD_ROOT` override it in the CLI.
pub fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() && !crate::userns::rootless() {
        return PathBuf::from("/var/lib/rbuild");
    }
    // `--userns=single` squashes owners: its store must never be one a mapped rbuild uses.
    let name = if crate::userns::single_id() {
        "rbuild-single"
    } else {
        "rbuild"
    };
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join(name);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/share").join(name);
    }
    PathBuf::from("/var/lib/rbuild")
}

/// Every top-level name under the root that the store and the crates using it own (the table
/// above), and `registries.toml`, configuration a user may keep there. Names starting with `.`
/// are the store's temporary files.
pub const OWNED_ENTRIES: &[&str] = &[
    "oci-layout",
    "index.json",
    "blobs",
    "ingest",
    "tmp",
    "refs",
    "repo-digests.json",
    "content-sizes.json",
    "remote-layers.json",
    "leases",
    "snapshots",
    "cache",
    "cache-mounts",
    "exec",
    "containers",
    "volumes",
    "registry",
    "quarantine",
    "LOCK",
    "index.lock",
    "rbuild-store-version",
    "registries.toml",
];

/// Whether writing `path` would write into the store at `root`: the root itself, an owned
/// entry or anything inside one, or a hidden (temporary) name at the top. Both paths must be
/// resolved (absolute, symlinks followed) by the caller. Any other name directly or deeper
/// under the root is outside what the store reads, so a user's `save -o $ROOT/x.tar` does not
/// touch it.
pub fn owns(root: &std::path::Path, path: &std::path::Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    match rest.components().next() {
        None => true,
        Some(first) => {
            let name = first.as_os_str().to_string_lossy();
            name.starts_with('.') || OWNED_ENTRIES.contains(&name.as_ref())
        }
    }
}

/// Paths of everything under a store root.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn oci_layout(&self) -> PathBuf {
        self.root.join("oci-layout")
    }
    pub fn index_json(&self) -> PathBuf {
        self.root.join("index.json")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs().join(d.hex())
    }
    /// Blobs being written: `<pid>-<start>.<random>` temp files.
    pub fn ingest(&self) -> PathBuf {
        self.root.join("ingest")
    }
    /// Scratch space for multi-file operations (unpacking archives, staging).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// GC roots held by other subsystems: `refs/<kind>/<name>`.
    pub fn refs(&self) -> PathBuf {
        self.root.join("refs")
    }
    /// In-flight protection: `leases/<pid>-<start>-<n>.lease`.
    pub fn leases(&self) -> PathBuf {
        self.root.join("leases")
    }
    /// Unpacked layers for overlay mounts (owned by the executor): `snapshots/v2/<chain id
    /// hex>` (`snapshots/<hex>` entries keyed by diff_id are from earlier versions; GC removes
    /// them).
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// Build-cache state (owned by the solver; GC never touches it).
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// The solver's cache index (`cache/_index-v1`; names starting with `_` are the
    /// solver's own). Its entries' GC roots are `refs/cache/<key>` refs.
    pub fn cache_index(&self) -> PathBuf {
        self.cache().join("_index-v1")
    }
    /// The stat cache of one build context (`cache/context/<key>`, `key` naming the context
    /// directory).
    pub fn context_stat_cache(&self, key: &str) -> PathBuf {
        self.cache().join("context").join(key)
    }
    /// Containers of `rbuild run` (owned by the runner).
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// Named volumes of containers (`volumes/<name>/_data`), created on first use.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    /// Blobs found corrupt by `fsck --repair`.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// Held shared by every operation, exclusively by GC.
    pub fn lock(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// Serialises read-modify-write of `index.json`.
    pub fn index_lock(&self) -> PathBuf {
        self.root.join("index.lock")
    }
    pub fn version_file(&self) -> PathBuf {
        self.root.join("rbuild-store-version")
    }

    /// Create the layout if needed and check its format version. Safe to race with another
    /// process doing the same.
    pub fn init(&self) -> Result<()> {
        let root = &self.root;
        if let Ok(meta) = fs::symlink_metadata(root)
            && meta.file_type().is_file()
        {
            return Err(Error::usage(
                format!("store root `{}` is a file, not a directory", root.display()),
                "point --root (or RBUILD_ROOT) at a directory",
            ));
        }
        self.refuse_foreign_directory()?;
        let fresh = !root.join("index.json").exists();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .ctx("create store directory", root)?;
        if fresh {
            // The store holds setuid binaries and device nodes from images: keep it private.
            let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        }
        self.check_ownership()?;
        self.check_version()?;
        for dir in [
            self.blobs(),
            self.ingest(),
            self.tmp(),
            self.refs(),
            self.leases(),
            self.snapshots(),
            self.cache(),
            self.containers(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .ctx("create store directory", &dir)?;
        }
        fsutil::create_if_missing(&self.oci_layout(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        fsutil::create_if_missing(&self.lock(), b"")?;
        fsutil::create_if_missing(&self.index_lock(), b"")?;
        fsutil::create_if_missing(
            &self.version_file(),
            format!("{FORMAT_VERSION}\n").as_bytes(),
        )?;
        if !self.index_json().exists() {
            // Write through a temp file so a concurrent reader never sees an empty index.
            let empty = crate::manifest::Index::empty();
            let bytes = crate::json::to_canonical_vec(&empty)?;
            let tmp =
                tempfile::NamedTempFile::new_in(root).ctx("create a temporary file in", root)?;
            fs::write(tmp.path(), &bytes).ctx("write", tmp.path())?;
            tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
            // persist_noclobber: if another process won the race, keep its index.
            let _ = tmp.persist_noclobber(self.index_json());
            fsutil::fsync_dir(root)?;
        }
        Ok(())
    }

    /// An existing directory becomes a store only when it is empty, or holds nothing but what
    /// `init` creates (another process may be half-way through creating the store); a store
    /// has its version file. Anything else (a home directory, a project, an OCI layout from
    /// another tool) is refused rather than taken over and made private.
    fn refuse_foreign_directory(&self) -> Result<()> {
        let root = &self.root;
        if self.version_file().exists() {
            return Ok(());
        }
        let Ok(entries) = fs::read_dir(root) else {
            return Ok(()); // missing: created below; unreadable: the creation reports it
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !OWNED_ENTRIES.contains(&name.as_ref()) && !name.starts_with(".tmp") {
                return Err(Error::usage(
                    format!(
                        "`{}` is not an rbuild store: it is a non-empty directory (it holds \
                         `{name}`)",
                        root.display()
                    ),
                    "point --root (or RBUILD_ROOT) at an existing store, an empty directory or \
                     a new path; rbuild does not take over a directory that holds other files",
                ));
            }
        }
        Ok(())
    }

    /// The store holds image content that runs as root (setuid files, device nodes): a root
    /// directory (its symlink followed) that another user owns, or that others can write, would
    /// let them plant blobs, tags or snapshots. Refused rather than used.
    fn check_ownership(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let root = &self.root;
        let meta = fs::metadata(root).ctx("inspect store directory", root)?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(Error::usage(
                format!(
                    "store root `{}` belongs to uid {}, not to you (uid {me})",
                    root.display(),
                    meta.uid()
                ),
                "use a store of your own (--root DIR or RBUILD_ROOT); a store another user \
                 controls could hand you content they planted",
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(Error::usage(
                format!(
                    "store root `{}` can be written by other users (mode {mode:04o})",
                    root.display()
                ),
                format!(
                    "make it private (`chmod 700 {}`); others could plant blobs, tags or \
                     snapshots in it",
                    root.display()
                ),
            ));
        }
        Ok(())
    }

    fn check_version(&self) -> Result<()> {
        let path = self.version_file();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let found: u32 = text.trim().parse().map_err(|_| {
                    Error::corrupt(format!(
                        "`{}` does not hold a format version number",
                        path.display()
                    ))
                })?;
                if found > FORMAT_VERSION {
                    return Err(Error::NewerFormat {
                        root: self.root.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("read", &path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_entries_and_the_root_are_the_store_others_are_not() {
        let root = std::path::Path::new("/s/root");
        for p in [
            "/s/root",
            "/s/root/index.json",
            "/s/root/blobs/sha256/ab",
            "/s/root/.x.tmp",
            "/s/root/registry/compressed.json",
            "/s/root/exec/step-1",
        ] {
            assert!(owns(root, std::path::Path::new(p)), "{p}");
        }
        for p in [
            "/s/rootx/a",
            "/s/root/out.tar",
            "/s/root/out/dir/file",
            "/elsewhere",
        ] {
            assert!(!owns(root, std::path::Path::new(p)), "{p}");
        }
    }

    /// Processes racing to create one store (two loads and a prune started together) all
    /// succeed: none reads a file another is still writing (an empty version file once made
    /// a concurrent `prune` fail as "corrupt").
    #[test]
    fn racing_inits_of_a_new_store_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("store");
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| Layout::new(&root).init()))
                    .collect();
                for h in handles {
                    h.join().unwrap().unwrap();
                }
            });
            let version = fs::read_to_string(Layout::new(&root).version_file()).unwrap();
            assert_eq!(version.trim(), FORMAT_VERSION.to_string());
        }
    }
}

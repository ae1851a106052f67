//! RUN mounts (`RUN --mount=type=cache|bind|tmpfs|secret|ssh`), as the solver hands them over
//! (already parsed and defaulted), and their preparation for the sandbox. Nothing mounted here
//! can end up in the step's layer: mounts cover the rootfs, and their mount points come from the
//! stub layer (see `stubs`).
//!
//! - `cache`: a persistent directory `$ROOT/cache-mounts/<sha256(key)[..32]>/data` (ids never
//!   become paths) with BuildKit's sharing modes: `shared` (a shared file lock), `locked` (an
//!   exclusive lock), `private` (the directory when free, else a throwaway copy). With
//!   `from=STAGE|IMAGE,source=DIR` the cache starts as a copy of that directory and is another
//!   cache for other source content: the key hashes the id, the source's identity (its layer
//!   digests) and the subpath.
//! - `bind`: from a host tree or from layers, the source resolved inside its own root,
//!   read-only unless `rw`; `rw` writes land in a throwaway overlay upper (a file: a throwaway
//!   copy). A bind of the build context hides what `.dockerignore` excludes (an overlay with a
//!   layer of whiteouts over the context directory), so a RUN sees exactly the files its cache
//!   key covers.
//! - `tmpfs`, with an optional size.
//! - `secret`: from a file or bytes, written into a private tmpfs inside the helper's mount
//!   namespace (never on disk), 0400 by default; or exposed as an environment variable.
//! - Files made for the step (a heredoc script), bound read-only from the step's directory.
//! - `ssh`: a socket of our own forwarding to the caller's agent ([`crate::agent_proxy`]),
//!   with the mount's owner and mode, bound at the target for the step's duration; skipped
//!   when the build was not given the id, unless `required`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{ExecError, IoContext, Result};
use crate::lower::LowerView;
use crate::materialize::materialize;
use crate::sandbox::MountSource;

/// How concurrent steps share a cache mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Everyone uses the same directory at the same time (the default).
    #[default]
    Shared,
    /// A step gets the directory to itself when free; otherwise a private copy of it.
    Private,
    /// Steps take turns (an exclusive file lock).
    Locked,
}

/// `--mount=type=cache`.
#[derive(Clone, Debug)]
pub struct CacheMount {
    pub target: String,
    /// Cache identity (BuildKit's default: the target).
    pub id: String,
    pub sharing: Sharing,
    /// Mode, owner of the cache directory when it is first created.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub readonly: bool,
    /// `from=`: the cache starts as a copy of a directory of another stage or image.
    pub seed: Option<CacheSeed>,
    /// The directory of the cache that is mounted (`source=` without `from=`; `/` for all of
    /// it). Resolved inside the cache as if it were `/` (a symlink or `..` in the cache never
    /// leads out of it) and created when missing, with the mount's mode and owner.
    pub subpath: String,
}

/// The initial contents of a cache mount (`--mount=type=cache,from=STAGE,source=DIR`).
#[derive(Clone, Debug)]
pub struct CacheSeed {
    /// The source's snapshot directories, bottom first.
    pub lowers: Vec<PathBuf>,
    /// The directory inside them (resolved as if their merged view were `/`).
    pub subpath: String,
    /// What identifies the source's content (e.g. its layer digests): caches seeded from
    /// different content are different caches, as in BuildKit.
    pub identity: String,
}

impl CacheMount {
    /// A cache mount with BuildKit's defaults: id = target, shared, 0755, root.
    pub fn new(target: &str) -> Self {
        CacheMount {
            target: target.to_string(),
            id: target.to_string(),
            sharing: Sharing::Shared,
            mode: 0o755,
            uid: 0,
            gid: 0,
            readonly: false,
            seed: None,
            subpath: "/".into(),
        }
    }

    /// What names the cache directory: the id, plus the seed's identity and subpath.
    pub fn key(&self) -> String {
        match &self.seed {
            None => self.id.clone(),
            Some(seed) => format!(
                "{}\0from={}\0source={}",
                self.id, seed.identity, seed.subpath
            ),
        }
    }
}

/// Where a bind mount's files come from.
#[derive(Clone, Debug)]
pub enum BindSource {
    /// A host directory tree (the build context, or an unpacked stage); `subpath` is resolved
    /// inside `root` as if it were `/`. The `hidden` paths (relative to `root`, e.g. what
    /// `.dockerignore` excludes) do not appear in the mount.
    Dir {
        root: PathBuf,
        subpath: String,
        hidden: Vec<PathBuf>,
    },
    /// The merged view of snapshot directories (bottom first), e.g. another stage's layers.
    Layers {
        lowers: Vec<PathBuf>,
        subpath: String,
    },
}

/// `--mount=type=bind`.
#[derive(Clone, Debug)]
pub struct BindMount {
    pub target: String,
    pub source: BindSource,
    /// Writable; writes are discarded after the step.
    pub readwrite: bool,
}

/// `--mount=type=tmpfs`.
#[derive(Clone, Debug)]
pub struct TmpfsMount {
    pub target: String,
    /// Size limit in bytes (default: half of RAM, the kernel's).
    pub size: Option<u64>,
}

/// Where a secret's value comes from.
#[derive(Clone, Debug)]
pub enum SecretValue {
    /// Read from this file (`--secret id=x,src=FILE`).
    File(PathBuf),
    /// Given directly (`--secret id=x,env=VAR` after reading the variable).
    Bytes(Vec<u8>),
}

/// `--mount=type=secret`.
#[derive(Clone, Debug)]
pub struct SecretMount {
    pub id: String,
    /// `None` when the build was not given this secret.
    pub value: Option<SecretValue>,
    /// File target (default `/run/secrets/<id>` unless `env` is set).
    pub target: Option<String>,
    /// Expose the value as this environment variable.
    pub env: Option<String>,
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl SecretMount {
    /// A secret mount with BuildKit's defaults: not required, 0400, root.
    pub fn new(id: &str, value: Option<SecretValue>) -> Self {
        SecretMount {
            id: id.to_string(),
            value,
            target: None,
            env: None,
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0,
        }
    }
}

/// `--mount=type=ssh`.
#[derive(Clone, Debug)]
pub struct SshMount {
    pub id: String,
    /// The agent socket to forward; `None` when the build was not given this id.
    pub agent: Option<PathBuf>,
    pub target: String,
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A file the build makes for the step: a heredoc script that starts with a shebang (BuildKit
/// mounts it at `/dev/pipes/<name>` and runs it). It is written into the step's own directory
/// and bound read-only at `target`; unlike a secret's tmpfs, that mount allows executing it.
#[derive(Clone, Debug)]
pub struct InlineFile {
    pub target: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// A host file or directory bound into a container as it is (`rbuild run -v /host:/ctr`,
/// `--mount type=bind|volume`): writes go to the host, unless `readonly`.
#[derive(Clone, Debug)]
pub struct HostMount {
    pub target: String,
    /// An absolute host path (a file or a directory) that exists.
    pub source: PathBuf,
    pub readonly: bool,
}

/// One RUN mount.
#[derive(Clone, Debug)]
pub enum RunMount {
    Cache(CacheMount),
    Bind(BindMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
    File(InlineFile),
    /// Containers only: never made from a Dockerfile.
    Host(HostMount),
}

/// Secrets larger than this are refused (BuildKit's limit is 500 KiB).
const MAX_SECRET: u64 = 512 * 1024;

/// A mount ready for the sandbox (target not yet resolved).
pub(crate) struct PreparedMount {
    pub target: String,
    pub dir: bool,
    pub readonly: bool,
    pub source: MountSource,
}

/// Mounts ready for the sandbox, plus what must live as long as the step runs.
#[derive(Default)]
pub(crate) struct Prepared {
    pub mounts: Vec<PreparedMount>,
    /// `NAME=value` pairs for env secrets.
    pub env: Vec<String>,
    /// Cache locks held for the step's duration.
    pub guards: Vec<File>,
    /// Agent sockets of ssh mounts, served for the step's duration.
    pub agents: Vec<crate::agent_proxy::AgentSocket>,
}

/// Prepare `mounts` for a step whose private directory is `step_dir`.
pub(crate) fn prepare(root: &Path, step_dir: &Path, mounts: &[RunMount]) -> Result<Prepared> {
    let mut out = Prepared::default();
    for (i, m) in mounts.iter().enumerate() {
        let scratch = step_dir.join(format!("mount-{i}"));
        match m {
            RunMount::Cache(c) => prepare_cache(root, &scratch, c, &mut out)?,
            RunMount::Bind(b) => prepare_bind(&scratch, b, &mut out)?,
            RunMount::Tmpfs(t) => out.mounts.push(PreparedMount {
                target: t.target.clone(),
                dir: true,
                readonly: false,
                source: MountSource::Tmpfs {
                    size: t.size,
                    mode: 0o1777,
                },
            }),
            RunMount::Secret(s) => prepare_secret(s, &mut out)?,
            RunMount::Ssh(s) => prepare_ssh(s, &mut out)?,
            RunMount::File(f) => prepare_file(&scratch, f, &mut out)?,
            RunMount::Host(h) => {
                let meta = std::fs::metadata(&h.source).ctx("cannot use", &h.source)?;
                out.mounts.push(PreparedMount {
                    target: h.target.clone(),
                    dir: meta.is_dir(),
                    readonly: h.readonly,
                    source: MountSource::Bind {
                        root: h.source.clone(),
                        subpath: "/".into(),
                    },
                });
            }
        }
    }
    Ok(out)
}

/// Write an inline file into `scratch` (the step's own directory, removed with it) with its
/// mode, and bind it read-only at its target.
fn prepare_file(scratch: &Path, f: &InlineFile, out: &mut Prepared) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(scratch).ctx("cannot create", scratch)?;
    let path = scratch.join("file");
    let mut file = File::create(&path).ctx("cannot create", &path)?;
    file.write_all(&f.content).ctx("cannot write", &path)?;
    // After the write: the mode is exact, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777))
        .ctx("cannot set the mode of", &path)?;
    out.mounts.push(PreparedMount {
        target: f.target.clone(),
        dir: false,
        readonly: true,
        source: MountSource::Bind {
            root: scratch.to_path_buf(),
            subpath: "file".into(),
        },
    });
    Ok(())
}

fn mount_err(target: &str, message: impl Into<String>) -> ExecError {
    ExecError::Mount {
        target: target.to_string(),
        message: message.into(),
    }
}

/// The directory of cache `id` under the store root: a hash, so no id can name a path.
pub fn cache_dir(root: &Path, id: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    root.join("cache-mounts").join(&hash[..32])
}

/// Copy the seed's directory (contents and the directory's own attributes) into `dest`.
fn seed_cache(seed: &CacheSeed, target: &str, dest: &Path) -> Result<()> {
    let view = LowerView::new(&seed.lowers);
    let shown = || format!("cache source `{}`", seed.subpath);
    let resolved = view
        .resolve(&seed.subpath, true)
        .map_err(|e| ExecError::io("cannot resolve", PathBuf::from(shown()), e))?;
    let is_dir = resolved
        .leaf
        .as_ref()
        .is_some_and(|l| l.meta.kind == crate::fsmeta::Kind::Dir);
    if !resolved.missing.is_empty() || !is_dir {
        return Err(mount_err(
            target,
            format!(
                "{} is not a directory in the `from` stage or image",
                shown()
            ),
        ));
    }
    let sub = view
        .subview(&resolved.existing)
        .map_err(|e| ExecError::io("cannot read", PathBuf::from(shown()), e))?;
    materialize(&sub, dest)
}

fn prepare_cache(root: &Path, scratch: &Path, c: &CacheMount, out: &mut Prepared) -> Result<()> {
    let dir = cache_dir(root, &c.key());
    std::fs::create_dir_all(&dir).ctx("cannot create", &dir)?;
    let lock_path = dir.join("lock");
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .ctx("cannot open", &lock_path)?;
    let data = dir.join("data");
    if !data.is_dir() {
        // Created aside and renamed into place, without the cache lock: a concurrent user may
        // already hold it shared for its whole step.
        std::fs::write(dir.join("id"), &c.id).ctx("cannot write", &dir)?;
        let tmp = tempfile::Builder::new()
            .prefix("data.tmp-")
            .tempdir_in(&dir)
            .ctx("cannot create a directory in", &dir)?;
        match &c.seed {
            Some(seed) => seed_cache(seed, &c.target, tmp.path())?,
            None => {
                std::os::unix::fs::chown(tmp.path(), Some(c.uid), Some(c.gid))
                    .ctx("cannot chown", tmp.path())?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(c.mode))
                    .ctx("cannot chmod", tmp.path())?;
            }
        }
        // NOREPLACE: a plain rename would replace a just-created empty `data` in use.
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            tmp.path(),
            rustix::fs::CWD,
            &data,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                let _ = tmp.keep();
            }
            Err(rustix::io::Errno::EXIST) => {} // someone else won; `tmp` is removed on drop
            Err(e) => return Err(ExecError::io("cannot create", &data, e.into())),
        }
    }
    let source_dir = match c.sharing {
        Sharing::Shared => {
            lock.lock_shared().ctx("cannot lock", &lock_path)?;
            data
        }
        Sharing::Locked => {
            lock.lock().ctx("cannot lock", &lock_path)?;
            data
        }
        Sharing::Private => match lock.try_lock() {
            Ok(()) => data,
            Err(std::fs::TryLockError::WouldBlock) => {
                // In use: work on a copy that is thrown away with the step.
                std::fs::create_dir_all(scratch).ctx("cannot create", scratch)?;
                let copy = scratch.join("private");
                std::fs::create_dir(&copy).ctx("cannot create", &copy)?;
                materialize(&LowerView::new(&[data]), &copy)?;
                copy
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(ExecError::io("cannot lock", lock_path, e));
            }
        },
    };
    ensure_cache_subdir(&source_dir, c).map_err(|e| {
        mount_err(
            &c.target,
            format!("cache source `{}`: {e}", c.subpath.trim_start_matches('/')),
        )
    })?;
    out.guards.push(lock);
    // The helper resolves the subpath again, in-root from a descriptor of the cache
    // (`openat2(RESOLVE_IN_ROOT)`) and binds that descriptor: a step racing to swap a
    // component for a symlink meanwhile still cannot point the mount outside the cache.
    out.mounts.push(PreparedMount {
        target: c.target.clone(),
        dir: true,
        readonly: c.readonly,
        source: MountSource::Bind {
            root: source_dir,
            subpath: c.subpath.clone(),
        },
    });
    Ok(())
}

/// Create the missing directories of `c.subpath` inside the cache at `root`, resolving each
/// component in-root (other steps sharing the cache may have planted symlinks or be renaming
/// things right now), with the mount's mode and owner. The components must be directories.
fn ensure_cache_subdir(root: &Path, c: &CacheMount) -> std::io::Result<()> {
    use crate::sandbox::fsops::open_in_root;
    use rustix::fs::{Mode, OFlags};
    let comps: Vec<&str> = c
        .subpath
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if comps.is_empty() {
        return Ok(());
    }
    let root = crate::sandbox::fsops::open_dir(root)?;
    let mut parent = root.try_clone()?;
    for (i, comp) in comps.iter().enumerate() {
        if *comp == ".." {
            // Cleaned by the planner; a `..` from elsewhere is still clamped at the root.
            parent = open_in_root(&root, &comps[..=i].join("/"), false)?;
            continue;
        }
        let path = comps[..=i].join("/");
        match open_in_root(&root, &path, false) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // `parent` is a directory of the cache (resolved in-root); the new name is made and
        // opened relative to it, never through a path string.
        match rustix::fs::mkdirat(&parent, *comp, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let dir = rustix::fs::openat(
                    &parent,
                    *comp,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::fchown(
                    &dir,
                    Some(rustix::fs::Uid::from_raw(c.uid)),
                    Some(rustix::fs::Gid::from_raw(c.gid)),
                )?;
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(c.mode & 0o7777))?;
            }
            // Made meanwhile by a step sharing the cache: use theirs.
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        parent = open_in_root(&root, &path, false)?;
    }
    let meta = rustix::fs::fstat(&parent)?;
    if rustix::fs::FileType::from_raw_mode(meta.st_mode) != rustix::fs::FileType::Directory {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory in the cache",
        ));
    }
    Ok(())
}

fn prepare_bind(scratch: &Path, b: &BindMount, out: &mut Prepared) -> Result<()> {
    let masked;
    let source = match &b.source {
        BindSource::Dir {
            root,
            subpath,
            hidden,
        } if !hidden.is_empty() => {
            // Hide paths with an overlay: a layer of whiteouts over the directory.
            let mask = scratch.join("hidden");
            write_whiteouts(&mask, hidden)?;
            masked = BindSource::Layers {
                lowers: vec![root.clone(), mask],
                subpath: subpath.clone(),
            };
            &masked
        }
        source => source,
    };
    match source {
        BindSource::Dir { root, subpath, .. } => {
            let is_dir = source_is_dir(root, subpath).map_err(|e| {
                mount_err(
                    &b.target,
                    format!("bind source `{subpath}` in `{}`: {e}", root.display()),
                )
            })?;
            let source = if !b.readwrite {
                MountSource::Bind {
                    root: root.clone(),
                    subpath: subpath.clone(),
                }
            } else if is_dir {
                let (upper, work) = upper_work(scratch)?;
                MountSource::Discard {
                    root: root.clone(),
                    subpath: subpath.clone(),
                    upper,
                    work,
                }
            } else {
                // A writable single file: bind a throwaway copy.
                std::fs::create_dir_all(scratch).ctx("cannot create", scratch)?;
                let src = open_in(root, subpath)
                    .map_err(|e| mount_err(&b.target, format!("bind source `{subpath}`: {e}")))?;
                let copy = scratch.join("file");
                std::io::copy(
                    &mut File::from(src),
                    &mut File::create(&copy).ctx("cannot create", &copy)?,
                )
                .ctx("cannot copy bind source to", &copy)?;
                MountSource::Bind {
                    root: scratch.to_path_buf(),
                    subpath: "file".into(),
                }
            };
            out.mounts.push(PreparedMount {
                target: b.target.clone(),
                dir: is_dir,
                readonly: !b.readwrite,
                source,
            });
        }
        BindSource::Layers { lowers, subpath } => {
            let view = LowerView::new(lowers);
            let resolved = view
                .resolve(subpath, true)
                .map_err(|e| mount_err(&b.target, format!("bind source `{subpath}`: {e}")))?;
            if !resolved.missing.is_empty() {
                return Err(mount_err(
                    &b.target,
                    format!("bind source `{subpath}` does not exist in the source stage"),
                ));
            }
            let is_dir = resolved
                .leaf
                .as_ref()
                .is_some_and(|l| l.meta.kind == crate::fsmeta::Kind::Dir);
            let mut top_first: Vec<PathBuf> = lowers.iter().rev().cloned().collect();
            if top_first.len() < 2 {
                // A read-only overlay needs two lower layers.
                let empty = scratch.join("empty");
                std::fs::create_dir_all(&empty).ctx("cannot create", &empty)?;
                top_first.insert(0, empty);
            }
            let upper_work = if b.readwrite {
                Some(upper_work(scratch)?)
            } else {
                None
            };
            out.mounts.push(PreparedMount {
                target: b.target.clone(),
                dir: is_dir,
                readonly: !b.readwrite,
                source: MountSource::Layers {
                    lowers: top_first,
                    subpath: subpath.clone(),
                    upper_work,
                },
            });
        }
    }
    Ok(())
}

/// A directory holding an overlay whiteout (a 0:0 character device) at each of `paths`.
fn write_whiteouts(dir: &Path, paths: &[PathBuf]) -> Result<()> {
    for rel in paths {
        let at = dir.join(rel);
        let parent = at.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).ctx("cannot create", parent)?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &at,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(std::io::Error::from)
        .ctx("cannot create a whiteout at", &at)?;
    }
    Ok(())
}

fn upper_work(scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).ctx("cannot create", d)?;
    }
    Ok((upper, work))
}

/// Open `subpath` inside `root` (symlinks resolved as if `root` were `/`).
fn open_in(root: &Path, subpath: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = subpath.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    Ok(rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

fn source_is_dir(root: &Path, subpath: &str) -> std::io::Result<bool> {
    let fd = open_in(root, subpath)?;
    let st = rustix::fs::fstat(&fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

fn prepare_secret(s: &SecretMount, out: &mut Prepared) -> Result<()> {
    let target = s
        .target
        .clone()
        .or_else(|| s.env.is_none().then(|| format!("/run/secrets/{}", s.id)));
    let shown = target
        .clone()
        .unwrap_or_else(|| format!("env {}", s.env.clone().unwrap_or_default()));
    let data = match &s.value {
        None if s.required => {
            return Err(mount_err(
                &shown,
                format!(
                    "secret `{}` is required but was not provided (pass `--secret id={},src=FILE`)",
                    s.id, s.id
                ),
            ));
        }
        None => return Ok(()),
        Some(SecretValue::Bytes(b)) => b.clone(),
        Some(SecretValue::File(p)) => {
            let f = File::open(p).ctx("cannot read secret", p)?;
            let mut data = Vec::new();
            f.take(MAX_SECRET + 1)
                .read_to_end(&mut data)
                .ctx("cannot read secret", p)?;
            data
        }
    };
    if data.len() as u64 > MAX_SECRET {
        return Err(mount_err(
            &shown,
            format!("secret `{}` is larger than 512 KiB", s.id),
        ));
    }
    if let Some(name) = &s.env {
        let value = String::from_utf8(data.clone()).map_err(|_| {
            mount_err(
                &shown,
                format!(
                    "secret `{}` is not UTF-8 text, so it cannot be an environment variable",
                    s.id
                ),
            )
        })?;
        out.env.push(format!("{name}={value}"));
    }
    if let Some(target) = target {
        out.mounts.push(PreparedMount {
            target,
            dir: false,
            readonly: true,
            source: MountSource::Secret {
                data,
                mode: s.mode,
                uid: s.uid,
                gid: s.gid,
            },
        });
    }
    Ok(())
}

fn prepare_ssh(s: &SshMount, out: &mut Prepared) -> Result<()> {
    let Some(agent) = &s.agent else {
        if s.required {
            return Err(mount_err(
                &s.target,
                format!(
                    "no ssh agent `{}` was given to the build (pass `--ssh {}=SOCKET`)",
                    s.id, s.id
                ),
            ));
        }
        return Ok(());
    };
    let proxy = crate::agent_proxy::AgentSocket::forward(agent, s.uid, s.gid, s.mode)
        .map_err(|e| mount_err(&s.target, format!("ssh `{}`: {e}", s.id)))?;
    out.mounts.push(PreparedMount {
        target: s.target.clone(),
        dir: false,
        readonly: false,
        source: MountSource::Bind {
            root: proxy.dir().to_path_buf(),
            subpath: crate::agent_proxy::SOCKET_NAME.into(),
        },
    });
    out.agents.push(proxy);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_ids_cannot_name_paths() {
        let root = Path::new("/store");
        let d = cache_dir(root, "../../../../root");
        assert!(d.starts_with("/store/cache-mounts/"));
        assert_eq!(d.components().count(), 4);
        assert_ne!(cache_dir(root, "a"), cache_dir(root, "b"));
    }

    #[test]
    fn missing_required_secrets_are_errors_and_optional_ones_are_skipped() {
        let mut out = Prepared::default();
        let mut s = SecretMount::new("tok", None);
        prepare_secret(&s, &mut out).unwrap();
        assert!(out.mounts.is_empty());
        s.required = true;
        let err = prepare_secret(&s, &mut out).unwrap_err();
        assert!(
            err.to_string().contains("secret `tok` is required"),
            "{err}"
        );
    }

    /// An inline file (a heredoc script) is written with its exact mode, whatever the umask,
    /// into the step's directory and bound read-only at its target.
    #[test]
    fn inline_files_are_written_with_their_mode_and_bound_read_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = InlineFile {
            target: "/dev/pipes/EOF".into(),
            content: b"#!/bin/sh\necho hi\n".to_vec(),
            mode: 0o755,
        };
        let prepared = prepare(dir.path(), dir.path(), &[RunMount::File(file)]).unwrap();
        let m = &prepared.mounts[0];
        assert_eq!(m.target, "/dev/pipes/EOF");
        assert!(m.readonly && !m.dir);
        let MountSource::Bind { root, subpath } = &m.source else {
            panic!("{:?}", m.source)
        };
        let path = root.join(subpath);
        assert_eq!(std::fs::read(&path).unwrap(), b"#!/bin/sh\necho hi\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn secrets_default_to_run_secrets_and_can_be_env_only() {
        let mut out = Prepared::default();
        let s = SecretMount::new("tok", Some(SecretValue::Bytes(b"v".to_vec())));
        prepare_secret(&s, &mut out).unwrap();
        assert_eq!(out.mounts[0].target, "/run/secrets/tok");
        let mut s = SecretMount::new("tok", Some(SecretValue::Bytes(b"v".to_vec())));
        s.env = Some("TOKEN".into());
        let mut out = Prepared::default();
        prepare_secret(&s, &mut out).unwrap();
        assert!(out.mounts.is_empty());
        assert_eq!(out.env, ["TOKEN=v"]);
    }

    #[test]
    fn bind_sources_resolve_inside_their_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("ctx")).unwrap();
        std::fs::write(t.path().join("outside"), "host").unwrap();
        std::os::unix::fs::symlink("/../outside", t.path().join("ctx/esc")).unwrap();
        let err = source_is_dir(&t.path().join("ctx"), "esc").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}

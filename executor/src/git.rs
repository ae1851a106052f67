//! Git sources: a git build context (`rbuild build https://host/repo.git#ref:subdir`) and
//! `ADD <git URL> dest`, resolved and checked out into a temporary directory of the store with
//! the `git` command line, as BuildKit's git source does.
//!
//! Why the `git` command and not a library (gix): BuildKit itself drives `git`, so transports,
//! proxies, `ssh`/agent handling, shallow fetches, submodules and server quirks behave as they do
//! for BuildKit users; gix's shallow-fetch, submodule and checkout support is still partial.
//! The subprocess is not HTTP spoken by rbuild (ARCHITECTURE.md: only the registry crate speaks
//! HTTP) — it is git's own transport.
//!
//! What BuildKit does and this follows (`source/git/source.go`):
//! - the ref is resolved with `ls-remote` (a branch wins over a tag of the same name; an
//!   annotated tag is peeled to its commit; no ref is the remote's HEAD; a full commit hash is
//!   used as is), then fetched `--depth=1`; a server that refuses a commit by hash gets a full
//!   fetch;
//! - files are checked out with umask 022 (regular files 0644 or 0755, directories 0755 — here
//!   normalised after the checkout), owned by root in the result, mtime the checkout's time, or
//!   the commit's committer time with `?mtime=commit` (and, for the build context, when
//!   `SOURCE_DATE_EPOCH` is set);
//! - `.git` is kept only with `keep-git-dir` and no subdirectory: a fresh repository with the
//!   commit checked out detached, the fetched ref, `origin` set to the URL without password,
//!   no reflog and no `FETCH_HEAD`;
//! - submodules are checked out (`--recursive --depth=1`) unless `?submodules=false`;
//! - the cache key is the resolved commit (`.git#REF` added when the git directory is kept,
//!   `:SUBDIR`, `(skip-submodules)`, `(mtime=commit)`), so a cache hit needs only `ls-remote`
//!   — here the checkout still happens before the build (the step may miss).
//!
//! A fetched repository is hostile input. Every `git` runs with a cleared environment
//! (`PATH`, `HOME` for ssh's own files, the agent socket, proxy and CA variables only),
//! `GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`, `GIT_TERMINAL_PROMPT=0`,
//! `ssh -o BatchMode=yes` (no prompt ever), stdin closed, and `-c` settings: hooks off
//! (`core.hooksPath=/dev/null`), `core.fsmonitor=false`, `protocol.file.allow=never` and
//! `protocol.ext.allow=never` (a submodule cannot read the host's repositories or run
//! commands), `transfer.fsckObjects=true` (trees with `..`, `.git` or other malicious names are
//! refused on fetch). Git checks out only inside its work tree; a subdirectory must be made of
//! real directories (no symlink on the way), as BuildKit requires. Each command is bounded in
//! time (`RBUILD_GIT_TIMEOUT`, seconds, default 600) and the whole checkout in size
//! (`RBUILD_MAX_GIT_SIZE`, bytes, default 4 GiB); past either it is killed with an error
//! that names the variable.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_solver::gitref::{GitMtime, GitRef};
use rbuild_solver::inputs::redact;

const DEFAULT_TIMEOUT_SECS: u64 = 600;
const DEFAULT_MAX_SIZE: u64 = 4 << 30;

/// A failure: what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitError {
    pub message: String,
    pub help: Option<String>,
}

impl GitError {
    fn new(message: impl Into<String>, help: Option<&str>) -> GitError {
        GitError {
            message: message.into(),
            help: help.map(str::to_string),
        }
    }
}

impl From<GitError> for (String, Option<String>) {
    fn from(e: GitError) -> Self {
        (e.message, e.help)
    }
}

/// How to check a repository out (the parts a git URL does not say on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// Keep `.git` (only without a subdirectory, as BuildKit).
    pub keep_git_dir: bool,
    pub mtime: GitMtime,
}

/// A checked-out repository in a temporary directory (removed when this is dropped).
#[derive(Debug)]
pub struct Checkout {
    /// The commit checked out.
    pub commit: String,
    /// The cache-key text (see the module doc).
    pub key: String,
    /// The tree: the checkout root, or its subdirectory.
    pub root: PathBuf,
    /// Owns everything under it.
    pub dir: tempfile::TempDir,
}

/// Resolve `git`'s ref and check it out into a new directory under `tmp_parent` (a store's
/// temporary area).
pub fn checkout(
    tmp_parent: &Path,
    git: &GitRef,
    options: &CheckoutOptions,
) -> Result<Checkout, GitError> {
    let limits = Limits::from_env()?;
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(tmp_parent)
        .map_err(|e| {
            GitError::new(
                format!(
                    "cannot create a directory in `{}`: {e}",
                    tmp_parent.display()
                ),
                None,
            )
        })?;
    let run = Runner {
        remote: &git.remote,
        scratch: dir.path().to_path_buf(),
        limits,
    };
    let work = dir.path().join("checkout");
    fs::create_dir(&work)
        .map_err(|e| GitError::new(format!("cannot create the checkout: {e}"), None))?;
    let keep = options.keep_git_dir && git.subdir.is_empty();
    let git_dir = if keep {
        run.git(&["init", "--quiet"], Some(&work), None)?;
        work.join(".git")
    } else {
        let bare = dir.path().join("repo.git");
        let bare_text = path_str(&bare)?;
        run.git(
            &["init", "--quiet", "--bare", "--template=", bare_text],
            None,
            None,
        )?;
        bare
    };
    let resolved = resolve(&run, git)?;
    fetch(&run, &git_dir, git, &resolved)?;
    let gd = Some(git_dir.as_path());
    if keep {
        run.git(
            &["checkout", "--quiet", "--detach", &resolved.commit],
            Some(&work),
            gd,
        )?;
        run.git(
            &["remote", "add", "origin", &redact(&git.remote)],
            Some(&work),
            gd,
        )?;
        run.git(
            &["reflog", "expire", "--all", "--expire=now"],
            Some(&work),
            gd,
        )?;
        let _ = fs::remove_file(git_dir.join("FETCH_HEAD"));
    } else {
        run.git(
            &[
                "checkout",
                "--quiet",
                "--force",
                &resolved.commit,
                "--",
                ".",
            ],
            Some(&work),
            gd,
        )?;
    }
    let submodules = git.submodules != Some(false);
    if submodules
        && fs::symlink_metadata(work.join(".gitmodules")).is_ok_and(|m| m.file_type().is_file())
    {
        run.git(
            &["submodule", "update", "--init", "--recursive", "--depth=1"],
            Some(&work),
            gd,
        )?;
    }
    let root = subdir(&work, &git.subdir)?;
    normalize_modes(&work)?;
    if options.mtime == GitMtime::Commit {
        let out = run.git(
            &[
                "log",
                "-1",
                "--format=%ct",
                &format!("{}^{{commit}}", resolved.commit),
            ],
            Some(&work),
            gd,
        )?;
        let secs: i64 = out.trim().parse().map_err(|_| {
            GitError::new(
                format!("cannot read the commit time `{}`", out.trim()),
                None,
            )
        })?;
        set_mtimes(&work, secs)?;
    }
    let mut key = resolved.key_commit.clone();
    if keep {
        key.push_str(".git");
        if !resolved.used_ref.is_empty() {
            key.push('#');
            key.push_str(&resolved.used_ref);
        }
    }
    if !git.subdir.is_empty() {
        key.push(':');
        key.push_str(&git.subdir);
    }
    if !submodules {
        key.push_str("(skip-submodules)");
    }
    if options.mtime == GitMtime::Commit {
        key.push_str("(mtime=commit)");
    }
    Ok(Checkout {
        commit: resolved.commit,
        key,
        root,
        dir,
    })
}

/// What a ref resolved to.
#[derive(Debug)]
struct Resolved {
    /// The object the ref names (an annotated tag's own hash for a tag).
    target: String,
    /// The commit to check out (the tag peeled).
    commit: String,
    /// The commit for the key: the peeled commit unless `.git` is kept (BuildKit's rule).
    key_commit: String,
    /// The full ref name fetched (`refs/heads/main`), or the commit itself.
    used_ref: String,
}

fn resolve(run: &Runner<'_>, git: &GitRef) -> Result<Resolved, GitError> {
    let checksum_ok = |sha: &str| {
        git.checksum
            .as_deref()
            .is_none_or(|c| sha.starts_with(&c.to_ascii_lowercase()))
    };
    if let Some(c) = &git.checksum
        && !c.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(GitError::new(
            format!("invalid checksum `{c}`: expected a hex commit hash"),
            None,
        ));
    }
    let mismatch = |got: &str| {
        GitError::new(
            format!(
                "expected the commit to match checksum `{}`, got {got}",
                git.checksum.as_deref().unwrap_or_default()
            ),
            Some("update the checksum if the new commit is trusted"),
        )
    };
    if let Some(r) = git.reference.as_deref().filter(|r| GitRef::is_commit(r)) {
        let r = r.to_ascii_lowercase();
        if !checksum_ok(&r) {
            return Err(mismatch(&r));
        }
        return Ok(Resolved {
            target: r.clone(),
            commit: r.clone(),
            key_commit: r.clone(),
            used_ref: r,
        });
    }
    if git.fetch_by_commit {
        let Some(sum) = git.checksum.as_deref().filter(|c| GitRef::is_commit(c)) else {
            return Err(GitError::new(
                "fetch-by-commit needs a full commit hash as checksum",
                Some("add `?checksum=<full commit hash>` to the URL"),
            ));
        };
        let sum = sum.to_ascii_lowercase();
        return Ok(Resolved {
            target: sum.clone(),
            commit: sum.clone(),
            key_commit: sum.clone(),
            used_ref: sum,
        });
    }
    let remote = git.remote.as_str();
    let reference = match &git.reference {
        Some(r) => r.clone(),
        None => {
            let out = run.git(&["ls-remote", "--symref", "--", remote, "HEAD"], None, None)?;
            out.lines()
                .find_map(|l| {
                    l.strip_prefix("ref: ")
                        .and_then(|r| r.strip_suffix("\tHEAD"))
                        .map(str::to_string)
                })
                .ok_or_else(|| {
                    GitError::new(
                        format!("`{}` has no default branch", redact(remote)),
                        Some("name a branch, tag or commit after `#` in the URL"),
                    )
                })?
        }
    };
    let peeled = format!("{reference}^{{}}");
    let out = run.git(
        &["ls-remote", "--", remote, &reference, &peeled],
        None,
        None,
    )?;
    let bare = reference.trim_start_matches("refs/");
    let partial = format!("refs/{bare}");
    let head = format!("refs/heads/{}", reference.trim_start_matches("refs/heads/"));
    let tag = format!("refs/tags/{}", reference.trim_start_matches("refs/tags/"));
    let tag_peeled = format!("{tag}^{{}}");
    let (mut exact, mut head_sha, mut tag_sha, mut peeled_sha) = (None, None, None, None);
    for line in out.lines() {
        let Some((sha, name)) = line.split_once('\t') else {
            continue;
        };
        let sha = Some(sha.to_string());
        if name == head {
            head_sha = sha;
        } else if name == tag {
            tag_sha = sha;
        } else if name == tag_peeled {
            peeled_sha = sha;
        } else if name == partial {
            exact = sha;
        }
    }
    // A branch wins over a tag of the same name (git checkout's preference, as BuildKit).
    let (target, used_ref, peeled) = if let Some(sha) = exact {
        (sha, partial, None)
    } else if let Some(sha) = head_sha {
        (sha, head, None)
    } else if let Some(sha) = tag_sha {
        (sha, tag, peeled_sha)
    } else {
        return Err(GitError::new(
            format!(
                "the repository `{}` has no ref `{reference}`",
                redact(remote)
            ),
            Some("check the branch, tag or commit after `#` in the URL"),
        ));
    };
    if !GitRef::is_commit(&target) {
        return Err(GitError::new(
            format!("invalid commit hash `{target}`"),
            None,
        ));
    }
    if !checksum_ok(&target) && !peeled.as_deref().is_some_and(checksum_ok) {
        return Err(mismatch(&target));
    }
    let commit = peeled.clone().unwrap_or_else(|| target.clone());
    let key_commit = if git.keep_git_dir == Some(true) {
        target.clone()
    } else {
        commit.clone()
    };
    Ok(Resolved {
        target,
        commit,
        key_commit,
        used_ref,
    })
}

fn fetch(run: &Runner<'_>, git_dir: &Path, git: &GitRef, r: &Resolved) -> Result<(), GitError> {
    let remote = git.remote.as_str();
    let gd = Some(git_dir);
    if GitRef::is_commit(&r.used_ref) {
        let spec = format!("{}:refs/rbuild/fetched", r.commit);
        let shallow = run.git(
            &[
                "fetch",
                "-u",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--",
                remote,
                &spec,
            ],
            None,
            gd,
        );
        if shallow.is_err() {
            // A server that refuses a commit by hash: fetch everything, then look for it.
            run.git(
                &[
                    "fetch",
                    "-u",
                    "--quiet",
                    "--no-tags",
                    "--",
                    remote,
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                None,
                gd,
            )?;
        }
        let found = run.git(
            &["cat-file", "-e", &format!("{}^{{commit}}", r.commit)],
            None,
            gd,
        );
        if found.is_err() {
            return Err(GitError::new(
                format!(
                    "the repository `{}` has no commit {}",
                    redact(remote),
                    r.commit
                ),
                Some("check the commit hash after `#` in the URL"),
            ));
        }
        let _ = run.git(&["update-ref", "-d", "refs/rbuild/fetched"], None, gd);
        return Ok(());
    }
    let spec = format!("+{0}:{0}", r.used_ref);
    run.git(
        &[
            "fetch",
            "-u",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "--",
            remote,
            &spec,
        ],
        None,
        gd,
    )?;
    let got = run.git(&["rev-parse", "--verify", "--quiet", &r.used_ref], None, gd)?;
    if got.trim() != r.target {
        return Err(GitError::new(
            format!(
                "`{}` moved while it was fetched ({} was expected, {} came)",
                r.used_ref,
                r.target,
                got.trim()
            ),
            Some("build again"),
        ));
    }
    Ok(())
}

/// The checkout's `subdir`, every component a real directory (no symlink on the way).
fn subdir(work: &Path, subdir: &str) -> Result<PathBuf, GitError> {
    let mut at = work.to_path_buf();
    for part in subdir.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(GitError::new(
                    format!(
                        "the subdirectory `{subdir}` contains `{part}`, which is not a directory"
                    ),
                    Some("name a directory of the repository after `:` in the URL"),
                ));
            }
            Err(_) => {
                return Err(GitError::new(
                    format!("the repository has no directory `{subdir}`"),
                    Some("name a directory of the repository after `:` in the URL"),
                ));
            }
        }
    }
    Ok(at)
}

/// Modes as a checkout with umask 022 makes them (what BuildKit runs git with): regular files
/// 0644, or 0755 when git marked them executable; directories 0755. `.git` is left as git made
/// it. Symlinks are never followed.
fn normalize_modes(work: &Path) -> Result<(), GitError> {
    let walk = walkdir::WalkDir::new(work)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == ".git" && e.file_type().is_dir()));
    for entry in walk {
        let entry =
            entry.map_err(|e| GitError::new(format!("cannot read the checkout: {e}"), None))?;
        let ft = entry.file_type();
        let mode = if ft.is_dir() {
            0o755
        } else if ft.is_file() {
            let m = entry
                .metadata()
                .map_err(|e| GitError::new(format!("cannot read the checkout: {e}"), None))?
                .permissions()
                .mode();
            if m & 0o111 != 0 { 0o755 } else { 0o644 }
        } else {
            continue;
        };
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode))
            .map_err(|e| GitError::new(format!("cannot set modes in the checkout: {e}"), None))?;
    }
    Ok(())
}

/// Every entry's mtime (and atime) to `secs`, directories last (deepest first), symlinks
/// themselves.
fn set_mtimes(work: &Path, secs: i64) -> Result<(), GitError> {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    let err = |e: &dyn std::fmt::Display| GitError::new(format!("cannot set mtimes: {e}"), None);
    let mut dirs = Vec::new();
    for entry in walkdir::WalkDir::new(work).follow_links(false) {
        let entry = entry.map_err(|e| err(&e))?;
        if entry.file_type().is_dir() {
            dirs.push(entry.path().to_path_buf());
        } else {
            filetime::set_symlink_file_times(entry.path(), t, t).map_err(|e| err(&e))?;
        }
    }
    for dir in dirs.iter().rev() {
        filetime::set_symlink_file_times(dir, t, t).map_err(|e| err(&e))?;
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, GitError> {
    p.to_str().ok_or_else(|| {
        GitError::new(
            format!("the store path `{}` is not UTF-8", p.display()),
            None,
        )
    })
}

/// Time and size bounds of one checkout.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Duration,
    max_size: u64,
}

impl Limits {
    fn from_env() -> Result<Limits, GitError> {
        let read = |var: &str, default: u64| -> Result<u64, GitError> {
            match std::env::var(var) {
                Err(_) => Ok(default),
                Ok(v) => v.trim().parse().map_err(|_| {
                    GitError::new(
                        format!("{var}=`{v}` is not a number"),
                        Some("set it to a whole number (seconds for the timeout, bytes for the size)"),
                    )
                }),
            }
        };
        Ok(Limits {
            timeout: Duration::from_secs(read("RBUILD_GIT_TIMEOUT", DEFAULT_TIMEOUT_SECS)?),
            max_size: read("RBUILD_MAX_GIT_SIZE", DEFAULT_MAX_SIZE)?,
        })
    }
}

/// Runs hardened `git` commands for one remote.
struct Runner<'a> {
    remote: &'a str,
    /// The temporary directory: its size is what the size bound measures; command output
    /// goes there too.
    scratch: PathBuf,
    limits: Limits,
}

impl Runner<'_> {
    /// Run `git ARGS` (in `cwd`, with `--git-dir` when given); stdout on success, else an
    /// error with git's last stderr lines (the URL's password removed).
    fn git(
        &self,
        args: &[&str],
        cwd: Option<&Path>,
        git_dir: Option<&Path>,
    ) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.env_clear();
        for var in [
            "PATH",
            "HOME",
            "SSH_AUTH_SOCK",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "all_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("LC_ALL", "C");
        for setting in [
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "protocol.file.allow=never",
            "protocol.ext.allow=never",
            "transfer.fsckObjects=true",
            "credential.helper=",
            "init.defaultBranch=master",
            "advice.detachedHead=false",
        ] {
            cmd.arg("-c").arg(setting);
        }
        if let Some(gd) = git_dir {
            cmd.arg("--git-dir").arg(gd);
            if let Some(cwd) = cwd {
                cmd.arg("--work-tree").arg(cwd);
            }
        }
        cmd.args(args);
        cmd.current_dir(cwd.unwrap_or(&self.scratch));
        let out_path = self.scratch.join(".git-stdout");
        let err_path = self.scratch.join(".git-stderr");
        let open = |p: &Path| {
            fs::File::create(p).map_err(|e| GitError::new(format!("cannot run git: {e}"), None))
        };
        cmd.stdin(Stdio::null())
            .stdout(open(&out_path)?)
            .stderr(open(&err_path)?);
        let what = format!("git {}", args.first().copied().unwrap_or_default());
        let mut child = cmd.spawn().map_err(|e| {
            GitError::new(
                format!("cannot run `git`: {e}"),
                Some("install git (Debian: `apt-get install git`); rbuild fetches git sources with it"),
            )
        })?;
        let started = Instant::now();
        let mut last_size_check = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(GitError::new(format!("cannot wait for {what}: {e}"), None)),
            }
            if started.elapsed() > self.limits.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GitError::new(
                    format!(
                        "`{what}` did not finish within {} seconds",
                        self.limits.timeout.as_secs()
                    ),
                    Some(
                        "raise RBUILD_GIT_TIMEOUT=<seconds> if the repository is that slow to fetch",
                    ),
                ));
            }
            if last_size_check.elapsed() > Duration::from_millis(500) {
                last_size_check = Instant::now();
                let size = rbuild_store::fsutil::dir_size(&self.scratch);
                if size > self.limits.max_size {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(too_large(self.limits.max_size));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if rbuild_store::fsutil::dir_size(&self.scratch) > self.limits.max_size {
            return Err(too_large(self.limits.max_size));
        }
        let stdout = read_capped(&out_path, 1 << 20);
        let stderr = read_capped(&err_path, 64 << 10);
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        let shown = redact(self.remote);
        let scrub = |t: &str| t.replace(self.remote, &shown);
        if !status.success() {
            let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = tail[tail.len().saturating_sub(6)..].join("\n");
            return Err(GitError::new(
                format!("`{what}` failed for `{shown}`: {}", scrub(tail.trim())),
                Some("check the URL, that the server is reachable, and the ref"),
            ));
        }
        Ok(stdout)
    }
}

fn too_large(max: u64) -> GitError {
    GitError::new(
        format!("the repository is larger than {max} bytes"),
        Some("raise RBUILD_MAX_GIT_SIZE=<bytes> if this is expected"),
    )
}

fn read_capped(path: &Path, cap: u64) -> String {
    let mut out = Vec::new();
    if let Ok(f) = fs::File::open(path) {
        let _ = f.take(cap).read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let status = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .status()
            .expect("sh runs");
        assert!(status.success(), "{script}");
    }

    /// A local repository over `file://` is refused: the host's repositories are not a source.
    #[test]
    fn file_protocol_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        sh(
            dir.path(),
            "git init -q -b main repo && cd repo && echo hi > a && git add a && git commit -qm one",
        );
        let url = format!("file://{}/repo", dir.path().display());
        let git = GitRef {
            remote: url,
            reference: Some("main".into()),
            subdir: String::new(),
            checksum: None,
            keep_git_dir: None,
            submodules: None,
            mtime: None,
            fetch_by_commit: false,
            github_shorthand: false,
        };
        let tmp = tempfile::tempdir().unwrap();
        let err = checkout(
            tmp.path(),
            &git,
            &CheckoutOptions {
                keep_git_dir: false,
                mtime: GitMtime::Checkout,
            },
        )
        .expect_err("file:// is refused");
        assert!(err.message.contains("git ls-remote"), "{err:?}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn subdirs_must_be_real_directories() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        assert_eq!(subdir(dir.path(), "a/b").unwrap(), dir.path().join("a/b"));
        assert!(subdir(dir.path(), "link").is_err());
        assert!(subdir(dir.path(), "f").is_err());
        assert!(subdir(dir.path(), "missing").is_err());
    }

    #[test]
    fn modes_follow_umask_022() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/x"), "x").unwrap();
        fs::write(d.join("y"), "y").unwrap();
        fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(d.join("sub/x"), fs::Permissions::from_mode(0o775)).unwrap();
        fs::set_permissions(d.join("y"), fs::Permissions::from_mode(0o664)).unwrap();
        normalize_modes(d).unwrap();
        let mode = |p: &str| fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("sub"), 0o755);
        assert_eq!(mode("sub/x"), 0o755);
        assert_eq!(mode("y"), 0o644);
    }
}

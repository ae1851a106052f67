//! Git URLs as BuildKit reads them (`dfgitutil.ParseGitRef`, `gitutil.ParseURL`): which words
//! name a git repository — as the build context (`rbuild build https://host/repo.git#main`) or
//! as an `ADD` source — and what their fragment (`#ref:subdir`) and query
//! (`?ref=&tag=&branch=&subdir=&checksum=&keep-git-dir&submodules&mtime=`) ask for.
//!
//! A word is a git URL when it
//! - starts with `scheme://` where the scheme (any case) is `git`, `ssh`, `http` or `https`,
//!   and for `http(s)` the path ends in `.git` (`https://host/file.tar.gz` is a download);
//! - is scp-like `user@host:path` (`git@github.com:org/repo.git`);
//! - starts with `github.com/` (BuildKit's old shorthand: a git context, but for `ADD` it is
//!   still a local path, as in BuildKit).
//!
//! `./x` and `../x` are never git. Another scheme (`ftp://x.git`) is not git either. The
//! fragment's subdirectory is cleaned as a rooted path (`#main:/a/../b` is `b`); a query key
//! BuildKit does not know, a key given twice, or a ref given two different ways is an error.
//! Nothing here touches the network: fetching is `rbuild_executor::git`.

/// What a git URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The repository URL without fragment and query (what `git fetch` is given).
    pub remote: String,
    /// The ref: a branch, tag, `refs/...` name or commit; `None` is the remote's HEAD.
    pub reference: Option<String>,
    /// The directory of the repository to use (cleaned, relative; empty for the root).
    pub subdir: String,
    /// `?checksum=`/`?commit=`: the commit (or a hex prefix of it) the ref must resolve to.
    pub checksum: Option<String>,
    /// `?keep-git-dir[=bool]`.
    pub keep_git_dir: Option<bool>,
    /// `?submodules[=bool]` (submodules are checked out unless this is false).
    pub submodules: Option<bool>,
    /// `?mtime=checkout|commit`.
    pub mtime: Option<GitMtime>,
    /// `?fetch-by-commit`: fetch the checksum's commit directly, not the ref.
    pub fetch_by_commit: bool,
    /// `github.com/org/repo`: a git context, a local path for `ADD`.
    pub github_shorthand: bool,
}

/// The mtime of checked-out files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitMtime {
    /// The time of the checkout (BuildKit's default).
    Checkout,
    /// The commit's committer time.
    Commit,
}

impl GitRef {
    /// Whether the ref names a full commit (40 or 64 hex digits).
    pub fn is_commit(reference: &str) -> bool {
        matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The URL for messages: the password of `https://user:pass@host/` replaced by `xxxxx`.
    pub fn shown_remote(&self) -> String {
        crate::inputs::redact(&self.remote)
    }
}

/// Read `word` as a git URL: `Ok(None)` when it is not one, an error (a sentence) when it is
/// one whose fragment or query BuildKit refuses.
pub fn parse(word: &str) -> Result<Option<GitRef>, String> {
    if word.starts_with("./") || word.starts_with("../") {
        return Ok(None);
    }
    let (github_shorthand, url) = if word.starts_with("github.com/") {
        (true, format!("https://{word}"))
    } else {
        (false, word.to_string())
    };
    // Fragment first: a `?` after `#` belongs to the fragment.
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url.as_str(), None),
    };
    let (remote, query) = match before_fragment.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (before_fragment, None),
    };
    if let Some(scheme_end) = scheme_len(remote) {
        let scheme = remote[..scheme_end].to_ascii_lowercase();
        if !matches!(scheme.as_str(), "git" | "ssh" | "http" | "https") {
            return Ok(None);
        }
        let rest = &remote[scheme_end + 3..];
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        if rest.is_empty() {
            return Ok(None);
        }
        if matches!(scheme.as_str(), "http" | "https")
            && !path.ends_with(".git")
            && !github_shorthand
        {
            return Ok(None);
        }
    } else if !is_scp_like(remote) {
        return Ok(None);
    }
    let mut out = GitRef {
        remote: remote.to_string(),
        reference: None,
        subdir: String::new(),
        checksum: None,
        keep_git_dir: None,
        submodules: None,
        mtime: None,
        fetch_by_commit: false,
        github_shorthand,
    };
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        if !reference.is_empty() {
            out.reference = Some(reference.to_string());
        }
        out.subdir = clean_subdir(subdir);
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        load_query(&mut out, query)?;
    }
    if let Some(r) = &out.reference
        && r.starts_with('-')
    {
        return Err(format!("invalid git ref `{r}`"));
    }
    Ok(Some(out))
}

/// The length of `scheme` in `scheme://...` (letters and digits only, as BuildKit's
/// `^[a-zA-Z0-9]+://`).
fn scheme_len(s: &str) -> Option<usize> {
    let end = s.find("://")?;
    (end > 0 && s[..end].bytes().all(|b| b.is_ascii_alphanumeric())).then_some(end)
}

/// `user@host:path`: user `[A-Za-z0-9-_]+`, host `[A-Za-z0-9-.]+` (BuildKit's scp regex).
fn is_scp_like(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, _path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `path.Join("/", subdir)` without its leading `/`.
fn clean_subdir(subdir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn decode(text: &str) -> Result<String, String> {
    let spaced = text.replace('+', " ");
    let bytes = spaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid escape in the query `{text}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the query `{text}` is not UTF-8"))
}

fn flag(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None => Ok(true),
        Some(v) => match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!("invalid {key} value: `{v}`")),
        },
    }
}

fn load_query(out: &mut GitRef, query: &str) -> Result<(), String> {
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (decode(k)?, decode(v)?),
            None => (decode(pair)?, String::new()),
        };
        if seen.iter().any(|(key, _)| *key == k) {
            return Err(format!("query `{k}` has multiple values"));
        }
        let value = if v.is_empty() {
            match k.as_str() {
                "submodules" | "keep-git-dir" | "fetch-by-commit" => None,
                _ => return Err(format!("query `{k}` has no value")),
            }
        } else {
            Some(v)
        };
        seen.push((k, value));
    }
    let (mut tag, mut branch) = (None, None);
    for (key, value) in seen {
        let text = value.clone().unwrap_or_default();
        match key.as_str() {
            "ref" => set_ref(out, text)?,
            "tag" => tag = Some(text),
            "branch" => branch = Some(text),
            "subdir" => {
                let cleaned = clean_subdir(&text);
                if !out.subdir.is_empty() && out.subdir != cleaned {
                    return Err(format!("subdir conflicts: `{}` vs `{cleaned}`", out.subdir));
                }
                out.subdir = cleaned;
            }
            "checksum" | "commit" => out.checksum = Some(text),
            "keep-git-dir" => out.keep_git_dir = Some(flag(&key, value.as_deref())?),
            "submodules" => out.submodules = Some(flag(&key, value.as_deref())?),
            "fetch-by-commit" => out.fetch_by_commit = flag(&key, value.as_deref())?,
            "mtime" => {
                out.mtime = Some(match text.as_str() {
                    "checkout" => GitMtime::Checkout,
                    "commit" => GitMtime::Commit,
                    _ => {
                        return Err(format!(
                            "invalid mtime value: `{text}` (must be `checkout` or `commit`)"
                        ));
                    }
                })
            }
            other => return Err(format!("unexpected query `{other}`")),
        }
    }
    if let Some(tag) = tag {
        if branch.is_some() {
            return Err("branch conflicts with tag".into());
        }
        let full = if tag.starts_with("refs/tags/") {
            tag
        } else {
            format!("refs/tags/{tag}")
        };
        set_ref(out, full)?;
    }
    if let Some(branch) = branch {
        let full = if branch.starts_with("refs/heads/") {
            branch
        } else {
            format!("refs/heads/{branch}")
        };
        set_ref(out, full)?;
    }
    Ok(())
}

fn set_ref(out: &mut GitRef, value: String) -> Result<(), String> {
    if let Some(old) = &out.reference
        && *old != value
    {
        return Err(format!("ref conflicts: `{old}` vs `{value}`"));
    }
    out.reference = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(word: &str) -> GitRef {
        parse(word)
            .unwrap_or_else(|e| panic!("{word}: {e}"))
            .unwrap_or_else(|| panic!("{word} is git"))
    }

    #[test]
    fn what_is_git() {
        for not in [
            "https://example.com/",
            "https://example.com/foo",
            "https://example.com/foo.git/",
            "https://example.com/foo.git.bar",
            "custom.xyz/moby/buildkit.git",
            "https://github.com/moby/buildkit",
            "./.git",
            ".git",
            "../x.git",
            "ftp://example.com/x.git",
            "src/",
            "file.txt",
            "http://github.com/docker/docker.git:#branch",
        ] {
            assert_eq!(parse(not), Ok(None), "{not}");
        }
        assert_eq!(git("git://example.com/foo").remote, "git://example.com/foo");
        assert_eq!(
            git("https://foo:bar@github.com/moby/buildkit.git").remote,
            "https://foo:bar@github.com/moby/buildkit.git"
        );
        let scp = git("git@github.com:moby/buildkit");
        assert_eq!(scp.remote, "git@github.com:moby/buildkit");
        let short = git("github.com/moby/buildkit#master");
        assert!(short.github_shorthand);
        assert_eq!(short.remote, "https://github.com/moby/buildkit");
        assert_eq!(short.reference.as_deref(), Some("master"));
        assert_eq!(git("HTTP://h/x.git").remote, "HTTP://h/x.git");
    }

    #[test]
    fn fragments() {
        let g = git("https://github.com/foo/bar.git#baz/qux:quux/quuz");
        assert_eq!(g.reference.as_deref(), Some("baz/qux"));
        assert_eq!(g.subdir, "quux/quuz");
        let g = git("https://github.com/docker/docker.git#:myfolder");
        assert_eq!(g.reference, None);
        assert_eq!(g.subdir, "myfolder");
        assert_eq!(git("git://h/r#main:/a/../../b/").subdir, "b");
        assert_eq!(
            git("https://example.com/foo.git#deadbeef")
                .reference
                .as_deref(),
            Some("deadbeef")
        );
    }

    #[test]
    fn queries() {
        let g = git("https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir");
        assert_eq!(g.reference.as_deref(), Some("v1.0.0"));
        assert_eq!(g.subdir, "subdir");
        let g = git("https://github.com/moby/buildkit.git?tag=v1.0.0");
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v1.0.0"));
        let g = git("https://github.com/moby/buildkit.git?branch=v1.0");
        assert_eq!(g.reference.as_deref(), Some("refs/heads/v1.0"));
        let g = git("git@github.com:moby/buildkit.git?subdir=/subdir#v1.0.0");
        assert_eq!(g.reference.as_deref(), Some("v1.0.0"));
        assert_eq!(g.subdir, "subdir");
        let g = git("git://h/r?keep-git-dir&submodules=false&mtime=commit&checksum=abc");
        assert_eq!(g.keep_git_dir, Some(true));
        assert_eq!(g.submodules, Some(false));
        assert_eq!(g.mtime, Some(GitMtime::Commit));
        assert_eq!(g.checksum.as_deref(), Some("abc"));
        for (bad, want) in [
            ("https://h/b.git?ref=v1.0.0#v1.2.3", "ref conflicts"),
            ("https://h/b.git?ref=v1.0.0&tag=v1.2.3", "ref conflicts"),
            (
                "https://h/b.git?tag=v1.0.0&branch=v1.0",
                "branch conflicts with tag",
            ),
            ("https://h/b.git?mtime=invalid", "invalid mtime value"),
            ("https://h/b.git?invalid=123", "unexpected query `invalid`"),
            ("https://h/b.git?ref=", "has no value"),
            ("https://h/b.git?ref=a&ref=b", "multiple values"),
            ("git://h/r#-upload-pack=x", "invalid git ref"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn commits() {
        assert!(GitRef::is_commit(&"a".repeat(40)));
        assert!(GitRef::is_commit(&"0".repeat(64)));
        assert!(!GitRef::is_commit("main"));
        assert!(!GitRef::is_commit(&"g".repeat(40)));
    }
}

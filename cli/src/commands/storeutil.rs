//! Helpers shared by the image commands: opening the store, docker-style human sizes and
//! relative times, tab-aligned tables, and `--format` templates (`template`).

use std::fmt::Write as _;

use rbuild_store::{ImageRecord, Platform, Store, Target};
use serde_json::Value;

use crate::args::GlobalArgs;

/// Open the store named by `--root` / `RBUILD_ROOT`, or the default location.
pub fn open_store(global: &GlobalArgs) -> miette::Result<Store> {
    let root = global
        .root
        .clone()
        .unwrap_or_else(rbuild_store::default_root);
    Ok(Store::open(root)?)
}

/// Parse a `--platform os/arch[/variant]` flag (normalised as containerd does).
pub fn parse_platform(text: Option<&str>) -> miette::Result<Option<Platform>> {
    let Some(text) = text else { return Ok(None) };
    text.parse::<Platform>().map(Some).map_err(|e| {
        miette::miette!(
            code = "rbuild::usage::platform",
            help = "write `--platform linux/amd64` (os/arch[/variant])",
            "invalid platform `{text}`: {e}"
        )
    })
}

/// The image of `target` a command that needs one image uses: the one for `platform`
/// (`--platform`), else the image itself, or a multi-platform image's host platform's image.
/// No such platform: the store's error naming the platforms the image has.
pub fn pick_image(target: &Target, platform: Option<&Platform>) -> miette::Result<ImageRecord> {
    let image = match (target, platform) {
        (Target::Image(r), None) => r,
        (_, Some(p)) => target.image_for(p)?,
        (Target::Index(_), None) => target.image_for(&Platform::host())?,
    };
    Ok(image.clone())
}

/// Docker-style human size (`1.98MB`): the store's one formatter, [`rbuild_store::size::human`].
pub use rbuild_store::size::human as human_size;

/// Docker's `units.HumanDuration` + " ago": `Less than a second ago`, `2 hours ago`, ...
pub fn relative_time(then: Option<jiff::Timestamp>) -> String {
    let Some(then) = then else {
        return "N/A".to_string();
    };
    let now = jiff::Timestamp::now();
    let secs = (now.as_second() - then.as_second()).max(0);
    format!("{} ago", human_duration(secs))
}

pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = (seconds + 1800) / 3600; // Go rounds to the nearest hour here
    if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// Docker's table layout (Go tabwriter: min width 10, padding 3): every column but the last
/// is padded to its widest cell plus three spaces, and at least ten characters.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths = vec![0usize; cols];
    for row in
        std::iter::once(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>()).chain(rows)
    {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let w = (widths[i] + 3).max(10);
                let _ = write!(l, "{cell:<w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
    out
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    let mut out: String = chars[..max.saturating_sub(1)].iter().collect();
    out.push('…');
    out
}

/// Render a `--format` Go template over a command's JSON (see [`super::template`]).
pub fn render_template(template: &str, value: &Value) -> miette::Result<String> {
    super::template::render(template, value)
}

/// Go's `path.Match` glob: `*` and `?` do not match `/`; `[...]` classes with `^` negation.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| m(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && n[0] != '/' && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']') else {
                    return false;
                };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..close];
                let (neg, class) = match class.first() {
                    Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && m(&p[close + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Print a report's error (for commands that go on after one argument fails).
pub fn print_error(e: impl Into<miette::Report>) {
    eprintln!("{:?}", e.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(100 * 86400), "3 months");
        assert_eq!(human_duration(56 * 365 * 86400), "56 years");
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let t = table(
            &["REPOSITORY", "TAG", "SIZE"],
            &[vec!["busybox".into(), "1.35".into(), "1MB".into()]],
        );
        assert_eq!(
            t,
            "REPOSITORY   TAG       SIZE\nbusybox      1.35      1MB\n"
        );
    }

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob_match("bus*", "busybox"));
        assert!(!glob_match("*", "library/busybox"));
        assert!(glob_match("*/*", "user/app"));
        assert!(glob_match("busybox:1.3?", "busybox:1.35"));
        assert!(glob_match("[a-c]*", "busybox"));
        assert!(!glob_match("[^a-c]*", "busybox"));
    }
}

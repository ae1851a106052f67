//! `rbuild prune` (also `rbuild system prune`, `rbuild image prune`): remove dangling images
//! (with `-a` every image no container uses), build cache (all of it, or what was not used
//! within `--filter until=DURATION`), then every unreferenced blob and snapshot; print what
//! was reclaimed.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use rbuild_store::gc::PruneOptions;

use super::storeutil::{human_size, open_store};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,

    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,

    /// Keep the build cache.
    #[arg(long)]
    pub keep_cache: bool,

    /// `until=DURATION` (e.g. `24h`, `30m`): only remove build cache unused for that long.
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

fn parse_until(filters: &[String]) -> miette::Result<Option<jiff::Timestamp>> {
    let mut until = None;
    for f in filters {
        let bad = || {
            miette::miette!(
                code = "rbuild::prune::filter",
                help = "use `--filter until=24h` (units: s, m, h, d)",
                "invalid filter `{f}`"
            )
        };
        let v = f.strip_prefix("until=").ok_or_else(bad)?;
        let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
        let n: i64 = num.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" | "" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86400,
            _ => return Err(bad()),
        };
        until = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs));
    }
    Ok(until)
}

pub fn run(global: &GlobalArgs, args: PruneArgs) -> miette::Result<u8> {
    let until = parse_until(&args.filters)?;
    if !args.force && std::io::stdin().is_terminal() {
        eprint!(
            "WARNING! This will remove:\n  - {}\n{}\nAre you sure you want to continue? [y/N] ",
            if args.all {
                "all images without at least one container associated to them"
            } else {
                "all dangling images"
            },
            if args.keep_cache {
                ""
            } else {
                "  - unused build cache\n"
            }
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let store = open_store(global)?;
    let report = store.prune(&PruneOptions {
        all_images: args.all,
        build_cache: !args.keep_cache,
        cache_older_than: until,
    })?;
    let mut out = String::new();
    if !report.images.is_empty() {
        out.push_str("Deleted Images:\n");
        for img in &report.images {
            for n in &img.untagged {
                out.push_str(&format!("untagged: {}\n", n.familiar()));
            }
            if let Some(id) = &img.id {
                out.push_str(&format!("deleted: {id}\n"));
            }
        }
        out.push('\n');
    }
    if report.cache_refs > 0 || !report.gc.cache_entries.is_empty() {
        out.push_str(&format!(
            "Deleted build cache objects: {}\n\n",
            report.cache_refs.max(report.gc.cache_entries.len())
        ));
    }
    if !report.gc.blobs.is_empty() {
        out.push_str(&format!("Deleted blobs: {}\n", report.gc.blobs.len()));
    }
    if !report.gc.snapshots.is_empty() {
        out.push_str(&format!(
            "Deleted snapshots: {}\n",
            report.gc.snapshots.len()
        ));
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(report.gc.reclaimed_bytes())
    ));
    print!("{out}");
    Ok(0)
}

//! `rbuild prune` (also `rbuild system prune`, `rbuild image prune`): remove dangling images
//! (with `-a` every image no container uses), build cache (all of it, or what was not used
//! within `--filter until=DURATION`), then every unreferenced blob and snapshot; print what
//! was reclaimed.

use std::io::{BufRead, Write};

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

    /// Keep the most recently used build cache up to this size (`10GB`, `500MB`); remove the
    /// rest.
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
}

/// `--keep-storage`: [`rbuild_store::size`]'s grammar with the decimal base (`10GB`, `500MB`
/// are powers of 1000 as docker's `FromHumanSize`; `2GiB` powers of 1024; `1000` bytes).
fn parse_size(text: &str) -> miette::Result<u64> {
    use rbuild_store::size::{Base, help, parse};
    parse(text, Base::Decimal).map_err(|e| {
        miette::miette!(
            code = "rbuild::prune::size",
            help = help(Base::Decimal),
            "invalid value for --keep-storage: {e}"
        )
    })
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
    // As docker: the question is asked whether or not stdin is a terminal (`echo n | rbuild
    // prune -a` keeps everything; end of input is "no"); only `-f` skips it.
    if !args.force {
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
            eprintln!("Nothing removed.");
            return Ok(0);
        }
    }
    let keep_bytes = args.keep_storage.as_deref().map(parse_size).transpose()?;
    let store = open_store(global)?;
    // The build cache: drop index entries (and their GC roots) by age and size; an entry's
    // layer then goes with the garbage collection below unless an image still uses it.
    let mut cache_removed = 0;
    if !args.keep_cache {
        let cache = rbuild_solver::cache::CacheIndex::open(rbuild_engine::cache_dir(&store))?;
        let now = jiff::Timestamp::now().as_second();
        let max_age = match (until, keep_bytes) {
            (Some(t), _) => Some(now - t.as_second()),
            (None, Some(_)) => None,
            (None, None) => Some(-1),
        };
        for entry in cache.prune(now, max_age, keep_bytes)? {
            store.remove_ref(rbuild_store::refs::KIND_CACHE, &entry.key.0)?;
            cache_removed += 1;
        }
    }
    let report = store.prune(&PruneOptions {
        all_images: args.all,
        build_cache: false,
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
    if cache_removed > 0 {
        out.push_str(&format!("Deleted build cache objects: {cache_removed}\n\n"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("500mb").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
        // The spellings `--memory` takes mean the same here, in decimal units.
        assert_eq!(parse_size("512m").unwrap(), 512_000_000);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        let e = format!("{:?}", parse_size("5XB").unwrap_err());
        assert!(e.contains("--keep-storage") && e.contains("`5XB`"), "{e}");
    }
}

//! `rbuild images` (also `rbuild image ls`): one row per name, newest first, shaped like
//! `docker images` (REPOSITORY TAG IMAGE ID CREATED SIZE), with `--digests`, `-q`,
//! `--no-trunc`, `--format json|TEMPLATE`, a `[REPOSITORY[:TAG]]` pattern and `--filter`.
//! Also the `rbuild image ...` command group.
//!
//! SIZE is docker's: the config plus the layers uncompressed
//! ([`rbuild_store::content_size`]), so a pulled image (gzipped layers) and the same image
//! loaded from a docker-archive (plain layers) show one size. A multi-platform image is one
//! row: the index digest as IMAGE ID and the content of all its platforms, each layer counted
//! once (docker 28). `--tree` lists every platform under each image with its own ID (manifest
//! digest) and content size.

use clap::{Args, Subcommand};
use rbuild_store::content_size::ContentSizes;
use rbuild_store::{ImageSummary, Reference};
use serde_json::{Value, json};

use super::storeutil::{glob_match, human_size, open_store, relative_time, render_template, table};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images whose name matches (`busybox`, `busybox:1.35`, `bus*`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub pattern: Option<String>,

    /// Show all images. rbuild keeps no intermediate images, so this is the default list;
    /// accepted for docker compatibility.
    #[arg(short, long)]
    pub all: bool,

    /// Only print image IDs.
    #[arg(short, long)]
    pub quiet: bool,

    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,

    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,

    /// Filter: `reference=PATTERN`, `dangling=true|false`; may be repeated.
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,

    /// `json` (one object per line) or a template like `{{.Repository}}:{{.Tag}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// List each image's platforms under it, with their own IDs and sizes.
    #[arg(long, conflicts_with_all = ["quiet", "format", "digests"])]
    pub tree: bool,
}

/// `rbuild image <command>`: the image commands under one group, as in docker.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove images.
    #[command(visible_alias = "remove")]
    Rm(super::rmi::RmiArgs),
    /// Show an image's layers and the instructions that made them.
    History(super::history::HistoryArgs),
    /// Show low-level information about images as JSON.
    Inspect(super::inspect::InspectArgs),
    /// Give an image another name.
    Tag(super::tag::TagArgs),
    /// Write images to a tar archive.
    Save(super::save::SaveArgs),
    /// Load images from a tar archive.
    Load(super::load::LoadArgs),
    /// Create an image from a root filesystem tarball.
    Import(super::import::ImportArgs),
    /// Remove dangling images and unused data.
    Prune(super::prune::PruneArgs),
}

pub fn run_group(global: &GlobalArgs, cmd: ImageCommand) -> miette::Result<u8> {
    match cmd {
        ImageCommand::Ls(a) => run(global, a),
        ImageCommand::Rm(a) => super::rmi::run(global, a),
        ImageCommand::History(a) => super::history::run(global, a),
        ImageCommand::Inspect(a) => super::inspect::run(global, a),
        ImageCommand::Tag(a) => super::tag::run(global, a),
        ImageCommand::Save(a) => super::save::run(global, a),
        ImageCommand::Load(a) => super::load::run(global, a),
        ImageCommand::Import(a) => super::import::run(global, a),
        ImageCommand::Prune(a) => super::prune::run(global, a),
    }
}

/// One output row.
struct Row<'a> {
    summary: &'a ImageSummary,
    name: Option<&'a Reference>,
    /// Registry digests recorded for the image (pulls, pushes).
    remote: std::rc::Rc<Vec<Reference>>,
    /// Its content size (docker's SIZE).
    size: u64,
}

impl Row<'_> {
    fn repository(&self) -> String {
        self.name
            .map(|n| n.familiar_name())
            .unwrap_or_else(|| "<none>".into())
    }
    fn tag(&self) -> String {
        self.name
            .and_then(|n| n.tag())
            .map(str::to_string)
            .unwrap_or_else(|| "<none>".into())
    }
    fn id(&self, no_trunc: bool) -> String {
        let id = self.summary.id();
        if no_trunc {
            id.to_string()
        } else {
            id.short().to_string()
        }
    }
    /// The digest the registry knows this repository's image by (docker's DIGEST column).
    fn digest(&self) -> String {
        let Some(name) = self.name else {
            return "<none>".to_string();
        };
        if let Some(d) = name.digest() {
            return d.to_string();
        }
        self.remote
            .iter()
            .find(|r| r.repository() == name.repository())
            .and_then(|r| r.digest())
            .map_or_else(|| "<none>".to_string(), |d| d.to_string())
    }
}

fn matches_filters(args: &ImagesArgs, row: &Row<'_>) -> miette::Result<bool> {
    let mut patterns: Vec<String> = args.pattern.iter().cloned().collect();
    for f in &args.filters {
        let (k, v) = f.split_once('=').ok_or_else(|| bad_filter(f))?;
        match k {
            "reference" => patterns.push(v.to_string()),
            "dangling" => {
                let want = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad_filter(f)),
                };
                if row.summary.names.is_empty() != want {
                    return Ok(false);
                }
            }
            _ => return Err(bad_filter(f)),
        }
    }
    for p in patterns {
        let Some(n) = row.name else { return Ok(false) };
        let (repo, tag) = match p.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((r, t)) => (r.to_string(), Some(t.to_string())),
            None => (p.clone(), None),
        };
        let repo_ok = glob_match(&repo, &n.familiar_name()) || glob_match(&repo, &n.name());
        let tag_ok = tag.is_none_or(|t| n.tag().is_some_and(|nt| glob_match(&t, nt)));
        if !(repo_ok && tag_ok) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn bad_filter(f: &str) -> miette::Report {
    miette::miette!(
        code = "rbuild::images::filter",
        help = "supported filters: `reference=PATTERN`, `dangling=true|false`",
        "invalid filter `{f}`"
    )
}

pub fn run(global: &GlobalArgs, args: ImagesArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let images = store.list_images()?;
    let sizes: ContentSizes = if args.quiet {
        ContentSizes::new()
    } else {
        store.content_sizes(&images.iter().flat_map(|s| s.layers()).collect::<Vec<_>>())?
    };
    let mut rows = Vec::new();
    for s in &images {
        let size = s.content_size(&sizes);
        let remote = std::rc::Rc::new(if args.digests || args.format.is_some() {
            store.repo_digests(s.digest())?
        } else {
            Vec::new()
        });
        if s.names.is_empty() {
            rows.push(Row {
                summary: s,
                name: None,
                remote: remote.clone(),
                size,
            });
        }
        for n in &s.names {
            rows.push(Row {
                summary: s,
                name: Some(n),
                remote: remote.clone(),
                size,
            });
        }
    }
    let mut kept = Vec::new();
    for r in rows {
        if matches_filters(&args, &r)? {
            kept.push(r);
        }
    }
    let mut out = String::new();
    if args.tree {
        out = tree(&kept, args.no_trunc, &sizes);
    } else if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &kept {
            let id = r.id(args.no_trunc);
            if seen.insert(id.clone()) {
                out.push_str(&id);
                out.push('\n');
            }
        }
    } else if let Some(format) = &args.format {
        for r in &kept {
            let v = row_json(r, args.no_trunc);
            if format == "json" {
                out.push_str(&serde_json::to_string(&v).unwrap_or_default());
            } else {
                out.push_str(&render_template(format, &v)?);
            }
            out.push('\n');
        }
    } else {
        let mut header = vec!["REPOSITORY", "TAG"];
        if args.digests {
            header.push("DIGEST");
        }
        header.extend(["IMAGE ID", "CREATED", "SIZE"]);
        let body: Vec<Vec<String>> = kept
            .iter()
            .map(|r| {
                let mut cells = vec![r.repository(), r.tag()];
                if args.digests {
                    cells.push(r.digest());
                }
                cells.push(r.id(args.no_trunc));
                cells.push(relative_time(r.summary.record.config.created_time()));
                cells.push(human_size(r.size));
                cells
            })
            .collect();
        out = table(&header, &body);
    }
    print!("{out}");
    Ok(0)
}

/// `--tree`: each row (a name) with its platforms below it.
fn tree(rows: &[Row<'_>], no_trunc: bool, sizes: &ContentSizes) -> String {
    let short = |d: &rbuild_store::Digest| {
        if no_trunc {
            d.to_string()
        } else {
            d.short().to_string()
        }
    };
    let mut body = Vec::new();
    for r in rows {
        let name = match r.name {
            Some(n) => n.familiar(),
            None => "<untagged>".to_string(),
        };
        body.push(vec![
            name,
            r.id(no_trunc),
            human_size(r.size),
            relative_time(r.summary.record.config.created_time()),
        ]);
        let images = r.summary.target.images();
        for (i, (platform, image)) in images.iter().enumerate() {
            let branch = if i + 1 == images.len() {
                "└─"
            } else {
                "├─"
            };
            body.push(vec![
                format!("{branch} {platform}"),
                short(&image.manifest_digest),
                human_size(image.content_size(sizes)),
                relative_time(image.config.created_time()),
            ]);
        }
    }
    table(&["IMAGE", "ID", "SIZE", "CREATED"], &body)
}

fn row_json(r: &Row<'_>, no_trunc: bool) -> Value {
    let created = r.summary.record.config.created_time();
    let size = human_size(r.size);
    json!({
        "Containers": "N/A",
        "CreatedAt": created.map(|t| t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "CreatedSince": relative_time(created),
        "Digest": r.digest(),
        "ID": r.id(no_trunc),
        "Repository": r.repository(),
        "SharedSize": "N/A",
        "Size": size,
        "Tag": r.tag(),
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

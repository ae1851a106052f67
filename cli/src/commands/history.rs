//! `rbuild history IMAGE`: the image's history newest first, shaped like `docker history`
//! (IMAGE CREATED CREATED BY SIZE COMMENT, `<missing>` below the top row), with
//! `--no-trunc`, `-q`, `-H=false` and `--format json|TEMPLATE`. A multi-platform image shows
//! the host platform's image, or `--platform P`'s. SIZE is each layer's content uncompressed,
//! as docker shows it (`rbuild_store::content_size`), whether its blob is compressed or not;
//! a remote layer (of a base never downloaded, `rbuild_store::remote`) shows `remote` as its
//! size and, in JSON, the repository it is in as `Remote`.

use clap::{ArgAction, Args};
use serde_json::{Value, json};

use super::storeutil::{
    ellipsis, human_size, open_store, parse_platform, pick_image, relative_time, render_template,
    table,
};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image: name[:tag], name@digest, or (short) ID.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,

    /// Only print IDs.
    #[arg(short, long)]
    pub quiet: bool,

    /// Human-readable sizes and dates (`-H=false` prints bytes and RFC 3339).
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub human: bool,

    /// `json` (one object per line) or a template like `{{.CreatedBy}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Show this platform's image of a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Also show, for layers rbuild built, the Dockerfile step and the cache key that made them.
    #[arg(long)]
    pub keys: bool,
}

struct Row {
    id: String,
    created: Option<jiff::Timestamp>,
    created_raw: String,
    created_by: String,
    size: u64,
    comment: String,
    step: String,
    key: String,
    /// The repository a remote layer is in (empty when stored).
    remote: String,
}

pub fn run(global: &GlobalArgs, args: HistoryArgs) -> miette::Result<u8> {
    let store = open_store(global)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let img = pick_image(&store.resolve_target(&args.image)?, platform.as_ref())?;
    let sizes = store.content_sizes(&img.layers)?;
    let content = |l: &rbuild_store::Layer| sizes.get(&l.diff_id).copied().unwrap_or(0);
    let remote = |l: &rbuild_store::Layer| {
        store
            .remote_blob(&l.descriptor.digest)
            .map(|r| r.source)
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    let mut layers = img.layers.iter();
    if img.config.history.is_empty() {
        for l in img.layers.iter() {
            rows.push(Row {
                id: String::new(),
                created: None,
                created_raw: String::new(),
                created_by: String::new(),
                size: content(l),
                comment: String::new(),
                step: String::new(),
                key: String::new(),
                remote: remote(l),
            });
        }
    }
    for h in &img.config.history {
        let layer = if h.empty_layer { None } else { layers.next() };
        let size = layer.map(content).unwrap_or(0);
        rows.push(Row {
            id: String::new(),
            created: h.created.as_deref().and_then(|c| c.parse().ok()),
            created_raw: h.created.clone().unwrap_or_default(),
            created_by: h.created_by.clone().unwrap_or_default(),
            size,
            comment: h.comment.clone().unwrap_or_default(),
            step: extra_str(h, rbuild_solver::image::HISTORY_STEP),
            key: extra_str(h, rbuild_solver::image::HISTORY_CACHE_KEY),
            remote: layer.map(remote).unwrap_or_default(),
        });
    }
    rows.reverse();
    for (i, r) in rows.iter_mut().enumerate() {
        r.id = if i == 0 {
            if args.no_trunc {
                img.id().to_string()
            } else {
                img.id().short().to_string()
            }
        } else {
            "<missing>".to_string()
        };
    }
    let created = |r: &Row| {
        if args.human {
            relative_time(r.created)
        } else {
            r.created_raw.clone()
        }
    };
    let size = |r: &Row| {
        if !r.remote.is_empty() && args.human {
            "remote".to_string()
        } else if args.human {
            human_size(r.size)
        } else {
            r.size.to_string()
        }
    };
    let created_by = |r: &Row| {
        let s = r.created_by.replace('\t', " ");
        if args.no_trunc { s } else { ellipsis(&s, 45) }
    };
    let mut out = String::new();
    if args.quiet {
        for r in &rows {
            out.push_str(&r.id);
            out.push('\n');
        }
    } else if let Some(format) = &args.format {
        for r in &rows {
            let v: Value = json!({
                "Comment": r.comment,
                "CreatedAt": r.created_raw,
                "CreatedBy": created_by(r),
                "CreatedSince": relative_time(r.created),
                "ID": r.id,
                "Size": size(r),
                "Step": r.step,
                "CacheKey": r.key,
                "Remote": r.remote,
            });
            if format == "json" {
                out.push_str(&serde_json::to_string(&v).unwrap_or_default());
            } else {
                out.push_str(&render_template(format, &v)?);
            }
            out.push('\n');
        }
    } else {
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.id.clone(),
                    created(r),
                    created_by(r),
                    size(r),
                    r.comment.clone(),
                ];
                if args.keys {
                    row.push(r.step.clone());
                    row.push(if args.no_trunc || r.key.len() < 12 {
                        r.key.clone()
                    } else {
                        r.key[..12].to_string()
                    });
                }
                row
            })
            .collect();
        let mut headers = vec!["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"];
        if args.keys {
            headers.extend(["STEP", "CACHE KEY"]);
        }
        out = table(&headers, &body);
    }
    print!("{out}");
    Ok(0)
}

fn extra_str(h: &rbuild_store::History, key: &str) -> String {
    h.extra
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

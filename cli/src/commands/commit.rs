//! `rbuild commit [-m MSG] [-a AUTHOR] [-c INSTRUCTION]... CONTAINER [REPOSITORY[:TAG]]`: a new
//! image from a container's changes, as `docker commit` makes it — the image's layers plus one
//! layer with what the container changed (its kept upper directory, through the same differ and
//! layer writer as RUN steps), the image's config with `--change` instructions applied (the
//! same set as `import --change`), and a history entry naming the container's command with
//! `-m` as its comment. A container that changed nothing adds an empty history entry and no
//! layer. Prints the new image's ID. The container must be stopped (rbuild does not pause a
//! running one).

use clap::Args;
use rbuild_executor::Executor;
use rbuild_executor::container::Containers;
use rbuild_store::config::History;
use rbuild_store::{Layer, Reference};

use super::import_change;
use super::storeutil::open_store;
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR,
    /// VOLUME, STOPSIGNAL); may be repeated.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message (the history entry's comment).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author of the image (`Name <email>`).
    #[arg(short, long)]
    pub author: Option<String>,
    /// The container (name, id or id prefix).
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Name for the new image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
}

pub fn run(global: &GlobalArgs, args: CommitArgs) -> miette::Result<u8> {
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let mut probe = rbuild_store::ContainerConfig::default();
    for c in &args.changes {
        import_change::apply(c, &mut probe)?;
    }
    let store = open_store(global)?;
    let containers = Containers::open(store.root())?;
    let record = containers.find(&args.container)?;
    let image = store.image(&record.image_digest)?;
    let exec = Executor::new(store.root(), global.executor_options())?;
    let lowers = exec.snapshots().ensure_chain(&store, &image.layers)?;
    let captured = containers.capture_layer(&record, &lowers, &store)?;

    let mut config = image.config.clone();
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string();
    config.created = Some(now.clone());
    if args.author.is_some() {
        config.author = args.author.clone();
    }
    {
        let cc = config.config.get_or_insert_with(Default::default);
        for c in &args.changes {
            import_change::apply(c, cc)?;
        }
    }
    config.history.push(History {
        created: Some(now),
        created_by: Some(record.argv.join(" ")),
        author: args.author.clone(),
        comment: args.message.clone(),
        empty_layer: captured.is_none(),
        ..History::default()
    });
    let mut layers = image.layers.clone();
    if let Some(c) = &captured {
        layers.push(Layer {
            descriptor: rbuild_store::Descriptor::new(
                rbuild_store::media::OCI_LAYER_TAR,
                c.diff_id.clone(),
                c.size,
            ),
            diff_id: c.diff_id.clone(),
        });
        for w in &c.warnings {
            eprintln!("rbuild: warning: {w}");
        }
    }
    let new = store.commit_image(&config, &layers)?;
    if let Some(name) = &name {
        store.tag(&new, name)?;
    }
    println!("{}", new.id());
    Ok(0)
}

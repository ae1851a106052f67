//! Container commands: `ps [-a] [-q] [--no-trunc] [--format]`, `logs [-f] [--tail N]`,
//! `stop [-t N]`, `kill [-s SIG]`, `rm [-f]` and `container prune` (also as `container ls`,
//! `container stop`, ...). A container is named by its name, its full id or a unique prefix of
//! its id. Whether a container runs comes from its lock (`rbuild_executor::container`), never
//! from what a record says, so a container whose supervisor was killed shows as `Dead`, and an
//! abandoned `--rm` container is removed here, as `rbuild run` does.
//!
//! `stop` sends the image's `STOPSIGNAL` (SIGTERM without one) to the container's command, waits
//! `-t` seconds (default 10) and then sends SIGKILL; `kill` sends `-s` (default SIGKILL). `rm`
//! refuses a running container unless `-f`, which kills it first.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use rbuild_executor::ExecError;
use rbuild_executor::container::log::{LogFollower, LogRecord, read_log};
use rbuild_executor::container::procs::{SIGKILL, SIGTERM, parse_signal};
use rbuild_executor::container::{ContainerRecord, Containers, Status};
use rbuild_executor::sandbox::Stream;
use rbuild_store::Store;
use rbuild_store::refs::KIND_CONTAINER;
use serde_json::{Value, json};

use super::storeutil::{
    ellipsis, human_duration, human_size, open_store, print_error, relative_time, render_template,
    table,
};
use crate::args::GlobalArgs;

/// `rbuild container ...` (`ls` is also `ps` and `list`).
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stop running containers (STOPSIGNAL, then SIGKILL after a timeout).
    Stop(StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Remove every stopped container.
    Prune(ContainerPruneArgs),
    /// Run a command in a running container.
    Exec(super::exec::ExecArgs),
    /// Create an image from a container's changes.
    Commit(super::commit::CommitArgs),
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container (default: only running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// `json` (one object per line) or a template: `{{.ID}}`, `{{.Image}}`, `{{.Command}}`,
    /// `{{.CreatedAt}}`, `{{.RunningFor}}`, `{{.State}}`, `{{.Status}}`, `{{.Names}}`;
    /// start with `table` for a table with headers.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print only the last N lines (`all` for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all", value_parser = parse_tail)]
    pub tail: Tail,
    /// The container (name, id or id prefix).
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Tail {
    All,
    Last(usize),
}

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text == "all" {
        return Ok(Tail::All);
    }
    text.parse()
        .map(Tail::Last)
        .map_err(|_| format!("`{text}` is not a number of lines or `all`"))
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before killing the container.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub time: u64,
    /// Signal to send instead of the image's STOPSIGNAL.
    #[arg(short = 's', long, value_name = "SIGNAL", value_parser = parse_signal_arg)]
    pub signal: Option<i32>,
    /// The containers (names, ids or id prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: a name (`SIGHUP`, `HUP`) or a number.
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "KILL", value_parser = parse_signal_arg)]
    pub signal: i32,
    /// The containers (names, ids or id prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The containers (names, ids or id prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainerPruneArgs {
    /// Do not ask (rbuild never asks; accepted for docker compatibility).
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn parse_signal_arg(text: &str) -> Result<i32, String> {
    parse_signal(text).ok_or_else(|| {
        format!("`{text}` is not a signal: use a name such as SIGTERM or HUP, or a number 1-64")
    })
}

pub fn run_group(global: &GlobalArgs, cmd: ContainerCommand) -> miette::Result<u8> {
    match cmd {
        ContainerCommand::Ls(a) => ps(global, a),
        ContainerCommand::Logs(a) => logs(global, a),
        ContainerCommand::Stop(a) => stop(global, a),
        ContainerCommand::Kill(a) => kill(global, a),
        ContainerCommand::Rm(a) => rm(global, a),
        ContainerCommand::Prune(a) => prune(global, a),
        ContainerCommand::Exec(a) => super::exec::run(global, a),
        ContainerCommand::Commit(a) => super::commit::run(global, a),
    }
}

/// The store and its containers, with abandoned `--rm` containers removed.
fn open(global: &GlobalArgs) -> miette::Result<(Store, Containers)> {
    let store = open_store(global)?;
    let containers = Containers::open(store.root())?;
    containers.remove_stale(|id| {
        let _ = store.remove_ref(KIND_CONTAINER, id);
    })?;
    Ok((store, containers))
}

/// Docker's STATUS column.
fn status_text(status: &Status) -> String {
    let since = |t: &Option<jiff::Timestamp>| {
        t.map(|t| (jiff::Timestamp::now().as_second() - t.as_second()).max(0))
            .unwrap_or(0)
    };
    match status {
        Status::Created => "Created".into(),
        Status::Running { started } => format!("Up {}", human_duration(since(started))),
        Status::Exited { code, finished } => {
            format!("Exited ({code}) {}", relative_time(*finished))
        }
        Status::Dead => "Dead".into(),
    }
}

fn row(c: &ContainerRecord, status: &Status, no_trunc: bool) -> Value {
    let command = c.argv.join(" ");
    let command = if no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let created: Option<jiff::Timestamp> = c.created.parse().ok();
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.id[..12].to_string() },
        "Image": c.image,
        "Command": format!("{command:?}"),
        "CreatedAt": created
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
            .unwrap_or_default(),
        "RunningFor": relative_time(created),
        "Ports": "",
        "State": status.word(),
        "Status": status_text(status),
        "Names": c.name,
    })
}

/// Column headers of `--format table ...`, as docker names them.
fn headers() -> Value {
    json!({
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Names": "NAMES",
    })
}

pub fn ps(global: &GlobalArgs, args: PsArgs) -> miette::Result<u8> {
    let (_store, containers) = open(global)?;
    let mut list: Vec<(ContainerRecord, Status)> = containers
        .list()?
        .into_iter()
        .map(|c| {
            let s = containers.status(&c.id);
            (c, s)
        })
        .filter(|(_, s)| args.all || s.is_running())
        .collect();
    // Newest first, as docker lists them.
    list.reverse();
    let rows: Vec<Value> = list.iter().map(|(c, s)| row(c, s, args.no_trunc)).collect();
    let mut out = String::new();
    if args.quiet {
        for r in &rows {
            out.push_str(r["ID"].as_str().unwrap_or_default());
            out.push('\n');
        }
    } else if let Some(format) = &args.format {
        if format == "json" {
            for r in &rows {
                out.push_str(&r.to_string());
                out.push('\n');
            }
        } else if let Some(template) = format.strip_prefix("table") {
            let template = template.trim_start();
            let header: Vec<String> = render_template(template, &headers())?
                .split('\t')
                .map(str::to_string)
                .collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut cells = Vec::new();
            for r in &rows {
                cells.push(
                    render_template(template, r)?
                        .split('\t')
                        .map(str::to_string)
                        .collect(),
                );
            }
            out.push_str(&table(&header, &cells));
        } else {
            for r in &rows {
                out.push_str(&render_template(format, r)?);
                out.push('\n');
            }
        }
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                ["ID", "Image", "Command", "RunningFor", "Status", "Names"]
                    .iter()
                    .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect();
        out.push_str(&table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "NAMES",
            ],
            &cells,
        ));
    }
    print!("{out}");
    Ok(0)
}

fn write_records(records: &[LogRecord]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for r in records {
        match r.stream {
            Stream::Stdout => stdout.write_all(&r.data)?,
            Stream::Stderr => {
                stdout.flush()?;
                stderr.write_all(&r.data)?;
            }
        }
    }
    stdout.flush()?;
    stderr.flush()
}

fn io_error(e: std::io::Error) -> miette::Report {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // Quiet, as for every other command whose reader went away.
        std::process::exit(141);
    }
    miette::Report::new(ExecError::io(
        "cannot write",
        std::path::PathBuf::from("standard output"),
        e,
    ))
}

pub fn logs(global: &GlobalArgs, args: LogsArgs) -> miette::Result<u8> {
    let (_store, containers) = open(global)?;
    let c = containers.find(&args.container)?;
    let dir = containers.dir_of(&c.id);
    let read_err = |e| ExecError::io("cannot read", dir.join("log"), e);
    let (contents, mut follower) = if args.follow {
        let (contents, follower) = LogFollower::open(&dir).map_err(read_err)?;
        (contents, Some(follower))
    } else {
        (read_log(&dir).map_err(read_err)?, None)
    };
    if !contents.exists {
        return Err(ExecError::ContainerState {
            name: c.name.clone(),
            message:
                "has no log: it ran attached, and its output went to the terminal that started it"
                    .into(),
            help: "run it with `-d` to keep its output in a log".into(),
        }
        .into());
    }
    let mut records = contents.records;
    if let Tail::Last(n) = args.tail {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    if contents.dropped > 0 && matches!(args.tail, Tail::All) {
        eprintln!(
            "rbuild: the log of container {} was truncated: {} of earlier output were dropped to keep it bounded (--log-opt max-size)",
            c.name,
            human_size(contents.dropped)
        );
    }
    write_records(&records).map_err(io_error)?;
    if let Some(f) = follower.as_mut() {
        loop {
            // Read the status first: the records read after a stop include the last ones.
            let running = containers.status(&c.id).is_running();
            let new = f.poll().map_err(read_err)?;
            write_records(&new).map_err(io_error)?;
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

/// Resolve each argument; print each one done (as the user named it), report the others.
fn each(
    global: &GlobalArgs,
    names: &[String],
    mut act: impl FnMut(&Store, &Containers, &ContainerRecord) -> miette::Result<()>,
) -> miette::Result<u8> {
    let (store, containers) = open(global)?;
    let mut failed = false;
    for name in names {
        match containers
            .find(name)
            .map_err(miette::Report::new)
            .and_then(|c| act(&store, &containers, &c))
        {
            Ok(()) => println!("{name}"),
            Err(e) => {
                print_error(e);
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn did_not_stop(c: &ContainerRecord) -> miette::Report {
    ExecError::ContainerState {
        name: c.name.clone(),
        message: "did not stop after SIGKILL".into(),
        help: "its processes may be stuck in the kernel (uninterruptible I/O); try again".into(),
    }
    .into()
}

fn not_running(c: &ContainerRecord) -> miette::Report {
    ExecError::ContainerState {
        name: c.name.clone(),
        message: "is not running".into(),
        help: "`rbuild ps -a` shows its status; `rbuild rm` removes it".into(),
    }
    .into()
}

pub fn stop(global: &GlobalArgs, args: StopArgs) -> miette::Result<u8> {
    each(global, &args.containers, |_, containers, c| {
        if !containers.status(&c.id).is_running() {
            // Stopping a stopped container is not an error (as with docker).
            return Ok(());
        }
        let signal = args
            .signal
            .or_else(|| c.stop_signal.as_deref().and_then(parse_signal))
            .unwrap_or(SIGTERM);
        containers.signal(&c.id, signal)?;
        if containers.wait_stopped(&c.id, Duration::from_secs(args.time)) {
            return Ok(());
        }
        if containers.kill_now(&c.id)? {
            Ok(())
        } else {
            Err(ExecError::ContainerState {
                name: c.name.clone(),
                message: "did not stop after SIGKILL".into(),
                help: "its processes may be stuck in the kernel (uninterruptible I/O); try again"
                    .into(),
            }
            .into())
        }
    })
}

pub fn kill(global: &GlobalArgs, args: KillArgs) -> miette::Result<u8> {
    each(global, &args.containers, |_, containers, c| {
        if args.signal == SIGKILL {
            if !containers.status(&c.id).is_running() {
                return Err(not_running(c));
            }
            if !containers.kill_now(&c.id)? {
                return Err(did_not_stop(c));
            }
            return Ok(());
        }
        if containers.signal(&c.id, args.signal)? {
            Ok(())
        } else {
            Err(not_running(c))
        }
    })
}

/// Remove a stopped container: its directory and its reference on the image.
fn remove(store: &Store, containers: &Containers, id: &str) -> miette::Result<()> {
    containers.remove(id)?;
    store.remove_ref(KIND_CONTAINER, id)?;
    Ok(())
}

pub fn rm(global: &GlobalArgs, args: RmArgs) -> miette::Result<u8> {
    each(global, &args.containers, |store, containers, c| {
        if containers.status(&c.id).is_running() {
            if !args.force {
                return Err(ExecError::ContainerState {
                    name: c.name.clone(),
                    message: "is running: it cannot be removed".into(),
                    help: format!(
                        "stop it first (`rbuild stop {}`), or use `rbuild rm -f` to kill and remove it",
                        c.name
                    ),
                }
                .into());
            }
            if !containers.kill_now(&c.id)? {
                return Err(did_not_stop(c));
            }
        }
        remove(store, containers, &c.id)
    })
}

pub fn prune(global: &GlobalArgs, _args: ContainerPruneArgs) -> miette::Result<u8> {
    let (store, containers) = open(global)?;
    let mut removed = Vec::new();
    let mut bytes = 0;
    for c in containers.list()? {
        if containers.status(&c.id).is_running() {
            continue;
        }
        let size = rbuild_store::fsutil::dir_size(&containers.dir_of(&c.id));
        remove(&store, &containers, &c.id)?;
        bytes += size;
        removed.push(c.id);
    }
    let mut out = String::new();
    if !removed.is_empty() {
        out.push_str("Deleted Containers:\n");
        for id in &removed {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(bytes)));
    print!("{out}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_docker() {
        let now = jiff::Timestamp::now();
        let ago = |s: i64| Some(now - jiff::SignedDuration::from_secs(s));
        assert_eq!(
            status_text(&Status::Running { started: ago(3) }),
            "Up 3 seconds"
        );
        assert_eq!(
            status_text(&Status::Exited {
                code: 0,
                finished: ago(5)
            }),
            "Exited (0) 5 seconds ago"
        );
        assert_eq!(
            status_text(&Status::Exited {
                code: 137,
                finished: ago(120)
            }),
            "Exited (137) 2 minutes ago"
        );
        assert_eq!(status_text(&Status::Dead), "Dead");
    }

    #[test]
    fn tails_and_signals_parse() {
        assert!(matches!(parse_tail("all"), Ok(Tail::All)));
        assert!(matches!(parse_tail("3"), Ok(Tail::Last(3))));
        assert!(parse_tail("-1").is_err());
        assert_eq!(parse_signal_arg("SIGHUP"), Ok(1));
        assert!(
            parse_signal_arg("NOPE")
                .unwrap_err()
                .contains("not a signal")
        );
    }
}

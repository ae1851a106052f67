//! `rbuild run [--rm] [-e K=V] [-w DIR] [-u USER] [--entrypoint X] [--network host|none]
//! [--name N] IMAGE [CMD...]`: run a container from an image in the sandbox — the image's
//! layers read-only, a copy-on-write layer on top kept under `$ROOT/containers/<id>/` (dropped
//! with `--rm`), stdio attached, the command's exit code passed through.
//!
//! Steps: resolve the image, ensure its snapshots, combine Entrypoint/Cmd/Env/WorkingDir/User
//! with `--entrypoint`, the command, `-e`, `-w` and `-u` as `docker run` does
//! (`rbuild_executor::container`), record the container in `containers/<id>/container.json` and
//! as the GC root `refs/container/<id>` (so `rmi` refuses the image and `prune -a` keeps it), and
//! run it with the upper kept in `containers/<id>/upper` (in the step directory with `--rm`,
//! which also drops the record and the ref). Exit code: the command's, 128 + n after signal n,
//! 127/126 when it cannot be found or started. A `--rm` container abandoned by a killed rbuild
//! (its lock is free) is removed by the next `rbuild run`.
//!
//! `-i` passes stdin to the container (without it stdin is empty, as with docker). `-t` gives
//! it a pseudo-terminal of its own devpts (`run_tty`: raw mode here, window size and SIGWINCH
//! passed on, TERM from this environment or `xterm`); `-it` needs stdin to be a terminal.
//!
//! `-d` runs the container detached: a supervisor (this binary re-executed, see
//! `rbuild_executor::container::supervise`) owns the sandbox, keeps stdout and stderr in the
//! container's bounded log (`--log-opt max-size=SIZE` per file, two files kept; `rbuild logs`),
//! records the exit status, and outlives this process; `run -d` prints the full id. An attached
//! container records its supervisor (this process) and exit status too, so `ps`, `stop` and
//! `kill` work on both.
//!
//! Networking: containers (like builds) use the host's network or none (`--network none`);
//! there is no bridge, so `-p` is refused with a message saying so. `--restart` is not
//! supported.
//!
//! A multi-platform image runs the host platform's image, or with `--platform P` that
//! platform's (a foreign architecture runs under the QEMU user emulation registered in
//! binfmt_misc); an image without that platform is the store's error naming the platforms it
//! has.

use clap::{Args, ValueEnum};
use rbuild_executor::container::log::{DEFAULT_MAX_LOG, MIN_MAX_LOG};
use rbuild_executor::container::supervise::{DetachedRun, start_detached};
use rbuild_executor::container::volumes::ContainerMount;
use rbuild_executor::container::{Containers, ImageDefaults, Overrides, resolve_process};
use rbuild_executor::{ExecError, Executor, ExitStatus, Network, RunStep};
use rbuild_store::refs::KIND_CONTAINER;

use std::io::IsTerminal;

use super::run_tty;
use super::storeutil::{open_store, parse_platform, pick_image};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "Containers use the host's network (the default) or none \
(`--network none`): there is no bridge network, so ports need no publishing and `-p` is \
refused. `--restart` policies are not supported: a container runs once."
)]
pub struct RunArgs {
    /// Remove the container (its writable layer and record) when it exits.
    #[arg(long)]
    pub rm: bool,

    /// Run the container in the background and print its id; see its output with
    /// `rbuild logs`.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Keep stdin open and pass it to the container (without `-i` its stdin is empty).
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the container a pseudo-terminal (TERM from this environment, else xterm; the
    /// window size follows this terminal; Ctrl-C goes to the container's process).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Bind a host path or a named volume: `/host/path:/ctr[:ro]` (a missing host directory
    /// is created) or `NAME:/ctr[:ro]` (the volume is kept in the store, created on first
    /// use); may be repeated.
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:TARGET[:ro]", value_parser = ContainerMount::parse_volume)]
    pub volumes: Vec<ContainerMount>,

    /// A mount: `type=bind,source=/host,target=/ctr[,readonly]`,
    /// `type=volume,source=NAME,target=/ctr[,readonly]` or `type=tmpfs,target=/ctr[,tmpfs-size=SIZE]`.
    #[arg(long = "mount", value_name = "SPEC", value_parser = ContainerMount::parse_mount)]
    pub mounts: Vec<ContainerMount>,

    /// The container's hostname (default: the first 12 characters of its id).
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// Mount the container's root filesystem read-only (its mounts, /dev, /proc and
    /// /etc/hosts keep their own modes).
    #[arg(long)]
    pub read_only: bool,

    /// Accepted for docker compatibility: every rbuild container already runs a minimal init
    /// as PID 1 that reaps orphaned processes (zombies); `stop` and `kill` signal the command
    /// itself.
    #[arg(long)]
    pub init: bool,

    /// Log options of a detached container: `max-size=SIZE` (bytes kept per log file, two
    /// files kept; default 8m).
    #[arg(long = "log-opt", value_name = "OPT=VALUE", value_parser = parse_log_opt)]
    pub log_opt: Vec<u64>,

    /// Not supported: containers share the host's network (or have none), so there is
    /// nothing to publish. Refused with an explanation.
    #[arg(short = 'p', long = "publish", value_name = "PORTS", hide = true)]
    pub publish: Vec<String>,

    /// Set an environment variable (`KEY=VALUE`, or `KEY` to take it from this environment);
    /// may be repeated.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// Working directory inside the container (created if missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR", value_parser = absolute_dir)]
    pub workdir: Option<String>,

    /// User to run as: `name`, `uid`, `name:group` or `uid:gid`.
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Override the image's entrypoint (an empty string clears it); drops the image's Cmd.
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,

    /// Network: the host's, or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = NetworkArg::Host, value_name = "MODE")]
    pub network: NetworkArg,

    /// Name the container (default: `rbuild-<id>`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Memory limit (memory + swap) for the container, e.g. `512m`; a process the kernel
    /// kills for exceeding it is reported as out of memory.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = crate::args::parse_memory)]
    pub memory: Option<u64>,

    /// Most processes and threads the container may have at once (default 8192; -1 for no
    /// limit).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = crate::args::parse_pids_limit)]
    pub pids_limit: Option<rbuild_executor::sandbox::PidsLimit>,

    /// Run this platform's image of a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// The image to run.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The command and its arguments (default: the image's Cmd).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Host,
    Default,
    None,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> miette::Result<u8> {
    if let Some(p) = args.publish.first() {
        return Err(rbuild_store::Failure::new(
            rbuild_store::ErrorClass::Input,
            "rbuild::run::publish",
            format!(
                "cannot publish `{p}`: containers have no network of their own to publish ports from"
            ),
        )
        .with_help(
            "rbuild runs builds and containers on the host's network (the default, \
             `--network host`) or with none (`--network none`); a server in the container \
             listens on the host's ports directly, so drop `-p`",
        )
        .into());
    }
    if args.detach && (args.interactive || args.tty) {
        return Err(rbuild_store::Failure::new(
            rbuild_store::ErrorClass::Input,
            "rbuild::run::detach_tty",
            "`-d` cannot be combined with `-i` or `-t`: a detached container has no terminal to attach to",
        )
        .with_help(
            "use `rbuild run -d` and read its output with `rbuild logs -f`, or run it attached with `-it`",
        )
        .into());
    }
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        return Err(rbuild_store::Failure::new(
            rbuild_store::ErrorClass::Input,
            "rbuild::run::not_a_tty",
            "the input device is not a TTY",
        )
        .with_help("run from a terminal, or drop `-t` to pipe input into the container with `-i`")
        .into());
    }
    let store = open_store(global)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let image = pick_image(&store.resolve_target(&args.image)?, platform.as_ref())?;
    // A foreign image runs under a registered emulator, or not at all: say so before anything
    // is set up.
    let image_platform = rbuild_store::target::config_platform(&image);
    if !image_platform.architecture.is_empty() {
        rbuild_executor::emulation::check_run_platform(&image_platform)?;
    }
    let exec = Executor::new(store.root(), global.executor_options())?;
    exec.check_privileges()?;
    let containers = Containers::open(store.root())?;
    containers.remove_stale(|id| {
        let _ = store.remove_ref(KIND_CONTAINER, id);
    })?;

    // Layers of an image built on a base that was never downloaded come now.
    rbuild_engine::registry::remote_layers::ensure_local(
        &store,
        &rbuild_store::Target::Image(image.clone()),
        &super::pull::TransferProgress::new(false, false),
    )?;
    let lowers = exec.snapshots().ensure_chain(&store, &image.layers)?;
    let cfg = image.config.config.clone().unwrap_or_default();
    let defaults = ImageDefaults {
        entrypoint: cfg.entrypoint.clone(),
        cmd: cfg.cmd.clone(),
        env: cfg.env.clone().unwrap_or_default(),
        working_dir: cfg.working_dir.clone(),
        user: cfg.user.clone(),
    };
    let overrides = Overrides {
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        entrypoint: args.entrypoint.clone(),
        cmd: args.command.clone(),
    };
    let mut process = resolve_process(&defaults, &overrides, |k| std::env::var(k).ok())?;
    if args.tty && !args.env.iter().any(|e| e.split('=').next() == Some("TERM")) {
        // Docker sets TERM=xterm with -t; the caller's own terminal type is more precise.
        let term = std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "xterm".into());
        process.env.retain(|kv| !kv.starts_with("TERM="));
        process.env.push(format!("TERM={term}"));
    }

    let manifest = image.manifest_digest.clone();
    let container_mounts: Vec<ContainerMount> =
        args.volumes.iter().chain(&args.mounts).cloned().collect();
    if args.detach {
        // The supervisor checks again under the lock; this gives the error its own shape.
        if let Some(name) = &args.name {
            containers.check_name(name)?;
        }
        let options = global.executor_options();
        let id = start_detached(&DetachedRun {
            root: store.root().to_path_buf(),
            name: args.name.clone(),
            image: args.image.clone(),
            image_digest: manifest,
            remove_on_exit: args.rm,
            stop_signal: cfg.stop_signal.clone(),
            lowers,
            process,
            network: match args.network {
                NetworkArg::None => Network::None,
                NetworkArg::Host | NetworkArg::Default => Network::Host,
            },
            memory: args.memory,
            pids: args.pids_limit.unwrap_or_default(),
            log_max: args.log_opt.last().copied().unwrap_or(DEFAULT_MAX_LOG),
            mounts: container_mounts.clone(),
            hostname: args.hostname.clone(),
            read_only: args.read_only,
            backend: match options.backend {
                rbuild_executor::Backend::Overlay => "overlay",
                rbuild_executor::Backend::Copy => "copy",
                rbuild_executor::Backend::Auto => "auto",
            }
            .into(),
            legacy_overlay: options.legacy_overlay,
        })?;
        println!("{id}");
        return Ok(0);
    }
    // Checked (and volumes created) before the container exists.
    let run_mounts = container_mounts
        .iter()
        .map(|m| m.to_run_mount(store.root()))
        .collect::<Result<Vec<_>, _>>()?;
    let container = containers.create_with(
        args.name.as_deref(),
        &args.image,
        &manifest,
        &process.argv,
        args.rm,
        |r| {
            r.stop_signal = cfg.stop_signal.clone();
            r.env = process.env.clone();
            r.cwd = process.cwd.clone();
            r.user = process.user.clone();
        },
    )?;
    let id = container.record.id.clone();
    store.set_ref(KIND_CONTAINER, &id, std::slice::from_ref(&manifest))?;
    container.set_started()?;

    let mut relay = run_tty::Relay::default();
    let forward_stdin = args.interactive;
    let mut on_master = |master| relay.start(master, forward_stdin);
    let stdio = run_tty::stdio(args.tty, args.interactive, &mut on_master);
    let raw = (args.tty && args.interactive).then(run_tty::RawMode::enter);
    let mut step = RunStep::new(lowers, process.argv.clone(), stdio);
    step.env = process.env;
    step.cwd = process.cwd;
    step.user = process.user;
    step.hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    step.readonly_rootfs = args.read_only;
    step.mounts = run_mounts;
    step.network = match args.network {
        NetworkArg::None => Network::None,
        NetworkArg::Host | NetworkArg::Default => Network::Host,
    };
    step.memory = args.memory;
    step.pids = args.pids_limit.unwrap_or_default();
    if !args.rm {
        step.container_dir = Some(container.dir.clone());
    }
    let result = exec.run(step);
    relay.finish();
    drop(raw);

    let finish = |keep: bool| -> miette::Result<()> {
        if !keep {
            containers.remove(&id)?;
            store.remove_ref(KIND_CONTAINER, &id)?;
        }
        Ok(())
    };
    match result {
        Ok(outcome) => {
            let status = outcome.status.clone();
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            drop(outcome);
            let note = matches!(
                status,
                ExitStatus::OutOfMemory { .. } | ExitStatus::PidsLimit { .. }
            )
            .then(|| status.to_string());
            if let Some(note) = &note {
                eprintln!("rbuild: container {}: {note}", &id[..12]);
            }
            container.set_finished(status.code(), note)?;
            drop(container);
            finish(!args.rm)?;
            Ok(exit_code(&status))
        }
        Err(e @ ExecError::Start { .. }) => {
            // Docker's convention: 127 when the command cannot be found, 126 when it cannot
            // be run.
            let code: u8 = match &e {
                ExecError::Start { reason, .. }
                    if reason.contains("not found") || reason.contains("no such file") =>
                {
                    127
                }
                _ => 126,
            };
            container.set_finished(i32::from(code), Some(e.to_string()))?;
            drop(container);
            finish(!args.rm)?;
            eprintln!("{:?}", miette::Report::new(e));
            Ok(code)
        }
        Err(e) => {
            drop(container);
            finish(false)?;
            Err(e.into())
        }
    }
}

/// The container's exit status as this process's exit code (128 + n for a signal).
fn exit_code(status: &ExitStatus) -> u8 {
    (status.code() & 0xff) as u8
}

/// `--hostname`: letters, digits, `-` and `.`, at most 63 characters (the kernel's limit is
/// 64 bytes).
fn parse_hostname(text: &str) -> Result<String, String> {
    if text.is_empty()
        || text.len() > 63
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "`{text}` is not a valid hostname: use at most 63 letters, digits, `-` and `.`"
        ));
    }
    Ok(text.to_string())
}

/// `--log-opt max-size=SIZE` (docker's option name and size syntax).
fn parse_log_opt(text: &str) -> Result<u64, String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not `OPTION=VALUE`"));
    };
    match key {
        "max-size" => {
            let n = rbuild_store::size::parse(value, rbuild_store::size::Base::Binary)
                .map_err(|e| format!("{e} (e.g. `512k`, `10m`)"))?;
            if n < MIN_MAX_LOG {
                return Err(format!(
                    "max-size must be at least {MIN_MAX_LOG} bytes, not `{value}`"
                ));
            }
            Ok(n)
        }
        _ => Err(format!(
            "unknown log option `{key}`: rbuild keeps a container's log in its directory and takes only `max-size`"
        )),
    }
}

/// `-w` must be absolute, as docker requires.
fn absolute_dir(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        Ok(text.to_string())
    } else {
        Err(format!(
            "the working directory `{text}` is invalid: it needs to be an absolute path"
        ))
    }
}

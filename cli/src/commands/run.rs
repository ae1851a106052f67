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
//! A multi-platform image runs the host platform's image, or with `--platform P` that
//! platform's (a foreign architecture runs under the QEMU user emulation registered in
//! binfmt_misc); an image without that platform is the store's error naming the platforms it
//! has.

use clap::{Args, ValueEnum};
use rbuild_executor::container::{Containers, ImageDefaults, Overrides, resolve_process};
use rbuild_executor::{ExecError, Executor, ExitStatus, Network, RunStep, Stdio3};
use rbuild_store::refs::KIND_CONTAINER;

use super::storeutil::{open_store, parse_platform, pick_image};
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container (its writable layer and record) when it exits.
    #[arg(long)]
    pub rm: bool,

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

    let lowers = exec.snapshots().ensure_chain(&store, &image.layers)?;
    let cfg = image.config.config.clone().unwrap_or_default();
    let defaults = ImageDefaults {
        entrypoint: cfg.entrypoint,
        cmd: cfg.cmd,
        env: cfg.env.unwrap_or_default(),
        working_dir: cfg.working_dir,
        user: cfg.user,
    };
    let overrides = Overrides {
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        entrypoint: args.entrypoint.clone(),
        cmd: args.command.clone(),
    };
    let process = resolve_process(&defaults, &overrides, |k| std::env::var(k).ok())?;

    let manifest = image.manifest_digest.clone();
    let container = containers.create(
        args.name.as_deref(),
        &args.image,
        &manifest,
        &process.argv,
        args.rm,
    )?;
    let id = container.record.id.clone();
    store.set_ref(KIND_CONTAINER, &id, std::slice::from_ref(&manifest))?;

    let mut step = RunStep::new(lowers, process.argv.clone(), Stdio3::Inherit);
    step.env = process.env;
    step.cwd = process.cwd;
    step.user = process.user;
    step.hostname = id[..12].to_string();
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
            drop(outcome);
            if let ExitStatus::OutOfMemory { .. } | ExitStatus::PidsLimit { .. } = status {
                eprintln!("rbuild: container {}: {status}", &id[..12]);
            }
            drop(container);
            finish(!args.rm)?;
            Ok(exit_code(&status))
        }
        Err(e @ ExecError::Start { .. }) => {
            // Docker's convention: 127 when the command cannot be found, 126 when it cannot
            // be run.
            let code = match &e {
                ExecError::Start { reason, .. }
                    if reason.contains("not found") || reason.contains("no such file") =>
                {
                    127
                }
                _ => 126,
            };
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

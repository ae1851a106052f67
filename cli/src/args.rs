//! The command line: global options and the subcommand enum. Each subcommand's own flags live
//! in its module under `commands/`, so adding a command touches this file in one place.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::commands;

/// rbuild builds container images from Dockerfiles, without a daemon.
///
/// `rbuild -t NAME .` is the same as `rbuild build -t NAME .`.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None, max_term_width = 100)]
#[command(after_long_help = BARE_FORM_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// `--help`'s note on the bare form (the rules: `command_word`).
const BARE_FORM_HELP: &str = "\
The bare form: the first word is a command when it names one, even beside a directory of that
name (`rbuild build DIR` or `rbuild ./DIR` builds such a directory). Otherwise it starts a build
when it is an option, a path (`-t x .`, `./app`) or a git URL (`git@host:repo.git`), or names an
existing file or directory. A word
close to a command's name (`imgaes`), or a docker command rbuild does not have (`ps`), is an
error (exit 2) with a suggestion; when a directory of that name exists it is built, with a
warning.";

/// Options accepted by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory of the image store and build cache.
    ///
    /// Defaults to /var/lib/rbuild for root and $XDG_DATA_HOME/rbuild otherwise.
    #[arg(long, global = true, env = "RBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// How RUN steps and containers get their root filesystem and their changes: `overlay`
    /// (overlayfs over the layer snapshots, the upper directory is the change), `copy` (a
    /// flattened copy, changes found by walking it; works where overlay mounts are not
    /// permitted), or `auto` (overlay when the kernel allows it).
    #[arg(
        long,
        global = true,
        env = "RBUILD_SNAPSHOTTER",
        value_enum,
        value_name = "KIND"
    )]
    pub snapshotter: Option<Snapshotter>,

    /// Rootless only (a non-root caller): `subordinate` maps container ids 1.. to your ranges
    /// in /etc/subuid and /etc/subgid (through newuidmap/newgidmap); `single` maps only your own
    /// id, as root: every file is owned by root inside, another owner fails, and the store
    /// defaults to $XDG_DATA_HOME/rbuild-single.
    #[arg(
        long,
        global = true,
        env = "RBUILD_USERNS",
        value_enum,
        value_name = "MODE"
    )]
    pub userns: Option<Userns>,

    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// `--snapshotter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Snapshotter {
    Auto,
    Overlay,
    #[value(alias = "walk")]
    Copy,
}

impl GlobalArgs {
    /// The executor settings these options ask for.
    pub fn executor_options(&self) -> rbuild_executor::ExecutorOptions {
        rbuild_executor::ExecutorOptions {
            backend: match self.snapshotter {
                None | Some(Snapshotter::Auto) => rbuild_executor::Backend::Auto,
                Some(Snapshotter::Overlay) => rbuild_executor::Backend::Overlay,
                Some(Snapshotter::Copy) => rbuild_executor::Backend::Copy,
            },
            ..rbuild_executor::ExecutorOptions::default()
        }
    }
}

/// `--userns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Userns {
    Subordinate,
    Single,
}

impl GlobalArgs {
    /// The rootless user namespace these options ask for.
    pub fn userns_mode(&self) -> rbuild_executor::sandbox::userns::Mode {
        match self.userns {
            Some(Userns::Single) => rbuild_executor::sandbox::userns::Mode::Single,
            None | Some(Userns::Subordinate) => rbuild_executor::sandbox::userns::Mode::Subordinate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and a context directory.
    Build(commands::build::BuildArgs),
    /// Parse a Dockerfile and print its instructions (or BuildKit's AST dump with --dump).
    Parse(commands::parse::ParseArgs),
    /// Report every problem in a Dockerfile at once: errors and lint warnings.
    Check(commands::check::CheckArgs),
    /// Log in to a registry (credentials go to docker's config.json).
    Login(commands::login::LoginArgs),
    /// Log out from a registry.
    Logout(commands::logout::LogoutArgs),
    /// Download an image from a registry.
    Pull(commands::pull::PullArgs),
    /// Upload an image to a registry.
    Push(commands::push::PushArgs),
    /// Say which build steps would hit the cache and why the others would miss; builds nothing.
    Explain(commands::explain::ExplainArgs),
    /// Print the build graph (stages, steps, dependencies) as Graphviz dot or JSON.
    Plan(commands::plan::PlanArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Manage images: ls, rm, history, inspect, tag, save, load, import, prune.
    #[command(subcommand)]
    Image(commands::images::ImageCommand),
    /// Show an image's layers and the instructions that made them.
    History(commands::history::HistoryArgs),
    /// Show low-level information about images as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images.
    Rmi(commands::rmi::RmiArgs),
    /// Run a command in a new container from an image.
    Run(commands::run::RunArgs),
    /// Create an image from a container's changes.
    Commit(commands::commit::CommitArgs),
    /// Run a command in a running container.
    Exec(commands::exec::ExecArgs),
    /// List containers.
    Ps(commands::container::PsArgs),
    /// Print a container's output.
    Logs(commands::container::LogsArgs),
    /// Stop running containers (STOPSIGNAL, then SIGKILL after a timeout).
    Stop(commands::container::StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(commands::container::KillArgs),
    /// Remove containers.
    Rm(commands::container::RmArgs),
    /// Manage containers: ls, logs, stop, kill, rm, prune, exec, commit.
    #[command(subcommand)]
    Container(commands::container::ContainerCommand),
    /// Remove dangling images, unused build cache and unreferenced blobs.
    Prune(commands::prune::PruneArgs),
    /// Write images to a tar archive (OCI layout, or docker-archive).
    Save(commands::save::SaveArgs),
    /// Load images from a tar archive.
    Load(commands::load::LoadArgs),
    /// Create an image from a root filesystem tarball.
    Import(commands::import::ImportArgs),
    /// Show rbuild's version, store format, OCI spec and built-in features.
    Version(commands::version::VersionArgs),
    /// Show the store, snapshotter, cgroups, emulators and registries config rbuild uses here.
    Info(commands::info::InfoArgs),
    /// System-wide information and maintenance: df, prune, fsck.
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Store maintenance: fsck.
    #[command(subcommand)]
    Store(commands::system::StoreCommand),
}

/// Global options that take a value, so the bare-form detection can skip over them.
const GLOBAL_OPTS_WITH_VALUE: &[&str] = &["--root", "--color", "--snapshotter", "--userns"];

/// The command line after the bare-form rule, and a warning to print first.
#[derive(Debug)]
pub struct Implicit {
    pub argv: Vec<OsString>,
    pub warning: Option<String>,
}

/// `rbuild -t x .` means `rbuild build -t x .`: the first word after the global options is
/// read by [`crate::command_word::read`] (a command, a context, or an unknown command, which is
/// a usage error), and `build` is inserted before a context.
pub fn with_implicit_build(mut argv: Vec<OsString>) -> Result<Implicit, clap::Error> {
    let mut cmd = Cli::command();
    let commands: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
        .map(str::to_string)
        .collect();
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_string_lossy().into_owned();
        if GLOBAL_OPTS_WITH_VALUE.contains(&word.as_str()) {
            i += 2;
            continue;
        }
        if GLOBAL_OPTS_WITH_VALUE
            .iter()
            .any(|opt| word.starts_with(&format!("{opt}=")))
        {
            i += 1;
            continue;
        }
        use crate::command_word::{Reading, read, unknown_error};
        return match read(&word, &commands, |p| p.exists()) {
            Reading::Command => Ok(Implicit {
                argv,
                warning: None,
            }),
            Reading::Context { warning } => {
                argv.insert(i, OsString::from("build"));
                Ok(Implicit { argv, warning })
            }
            Reading::Unknown {
                suggestions,
                docker,
            } => Err(unknown_error(&mut cmd, &word, suggestions, docker)),
        };
    }
    Ok(Implicit {
        argv,
        warning: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(argv: &[&str]) -> Vec<String> {
        with_implicit_build(argv.iter().map(OsString::from).collect())
            .unwrap()
            .argv
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn bare_form_means_build() {
        assert_eq!(
            words(&["rbuild", "-t", "x", "."]),
            ["rbuild", "build", "-t", "x", "."]
        );
        assert_eq!(
            words(&["rbuild", "--root", "/s", "."]),
            ["rbuild", "--root", "/s", "build", "."]
        );
        assert_eq!(
            words(&["rbuild", "--root=/s", "."]),
            ["rbuild", "--root=/s", "build", "."]
        );
        assert_eq!(
            words(&["rbuild", "--snapshotter", "copy", "-t", "x", "."]),
            ["rbuild", "--snapshotter", "copy", "build", "-t", "x", "."]
        );
        assert_eq!(
            words(&["rbuild", "--snapshotter", "copy", "run", "img"]),
            ["rbuild", "--snapshotter", "copy", "run", "img"]
        );
    }

    #[test]
    fn subcommands_and_help_are_left_alone() {
        assert_eq!(words(&["rbuild", "check", "F"]), ["rbuild", "check", "F"]);
        assert_eq!(words(&["rbuild", "--help"]), ["rbuild", "--help"]);
        assert_eq!(words(&["rbuild"]), ["rbuild"]);
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// A memory size as docker's `--memory` takes it: [`rbuild_store::size`]'s grammar with the
/// binary base (`512m`, `2g`, `8mb`, `1.5GiB`; k, m, g are powers of 1024, as docker's
/// `RAMInBytes`). Docker's minimum, 6 MiB, applies. Clap prints the error after the flag and
/// its value (`invalid value '12x' for '--memory <SIZE>'`).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    use rbuild_store::size::{Base, parse};
    let bytes = parse(text, Base::Binary)
        .map_err(|e| format!("{e} (e.g. `512m`, `2g`; k, m, g are powers of 1024)"))?;
    if bytes < 6 << 20 {
        return Err(format!("`{text}` is below the minimum memory limit, 6m"));
    }
    Ok(bytes)
}

/// `--pids-limit N`: a number of tasks, or `0`/`-1` for no limit (docker's convention: any
/// value below 1 lifts the limit). The kernel refuses `pids.max` above `PID_MAX_LIMIT`.
pub fn parse_pids_limit(text: &str) -> Result<rbuild_executor::sandbox::PidsLimit, String> {
    use rbuild_executor::sandbox::{MAX_PIDS_LIMIT, MIN_PIDS_LIMIT, PidsLimit};
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of processes (or -1 for no limit)"))?;
    match n {
        ..=0 => Ok(PidsLimit::Unlimited),
        n if (n as u64) < MIN_PIDS_LIMIT => Err(format!(
            "`{text}` is below the minimum pids limit, {MIN_PIDS_LIMIT} (use -1 for no limit)"
        )),
        n if (n as u64) > MAX_PIDS_LIMIT => Err(format!(
            "`{text}` is above the kernel's largest pids limit, {MAX_PIDS_LIMIT} (use -1 for no \
             limit)"
        )),
        n => Ok(PidsLimit::Max(n as u64)),
    }
}

#[cfg(test)]
mod memory_tests {
    use super::{parse_memory, parse_pids_limit};
    use rbuild_executor::sandbox::PidsLimit;

    #[test]
    fn pids_limits_take_minus_one_for_unlimited() {
        assert_eq!(parse_pids_limit("64"), Ok(PidsLimit::Max(64)));
        assert_eq!(parse_pids_limit("-1"), Ok(PidsLimit::Unlimited));
        assert_eq!(parse_pids_limit("0"), Ok(PidsLimit::Unlimited));
        assert_eq!(parse_pids_limit("-2"), Ok(PidsLimit::Unlimited));
        assert!(parse_pids_limit("7").unwrap_err().contains("minimum"));
        assert_eq!(parse_pids_limit("4194304"), Ok(PidsLimit::Max(4194304)));
        assert!(parse_pids_limit("4194305").unwrap_err().contains("largest"));
        assert!(
            parse_pids_limit("lots")
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn memory_sizes_use_binary_units() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("8mb"), Ok(8 << 20));
        assert_eq!(parse_memory("7340032"), Ok(7 << 20));
        assert!(parse_memory("1m").unwrap_err().contains("minimum"));
        assert!(parse_memory("12x").unwrap_err().contains("unit"));
        assert!(parse_memory("m").unwrap_err().contains("not a size"));
        // The spellings `--keep-storage` takes mean the same here, in binary units.
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_memory("10 MB"), Ok(10 << 20));
        assert!(parse_memory("5XB").unwrap_err().contains("unit"));
    }
}

//! One module per subcommand; `run` dispatches to them. A command returns its exit code on
//! success (some, like `check`, fail softly) or a miette report.

pub mod build;
pub mod check;
pub mod commit;
pub mod container;
pub mod exec;
pub mod explain;
pub mod history;
pub mod images;
pub mod import;
mod import_change;
pub mod info;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logout;
pub mod parse;
pub mod plan;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
mod run_tty;
pub mod save;
mod storeutil;
pub mod system;
pub mod tag;
mod template;
pub mod version;

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> miette::Result<u8> {
    let global = &cli.global;
    // Rootless: every command that touches the store runs as root of rbuild's user namespace,
    // entered now, while the process is single-threaded (`info` reports instead of failing).
    if uses_store(&cli.command) {
        rbuild_executor::sandbox::userns::enter(global.userns_mode())?;
    }
    match cli.command {
        Command::Build(args) => build::run(global, args),
        Command::Parse(args) => parse::run(global, args),
        Command::Check(args) => check::run(global, args),
        Command::Login(args) => login::run(global, args),
        Command::Logout(args) => logout::run(global, args),
        Command::Pull(args) => pull::run(global, args),
        Command::Push(args) => push::run(global, args),
        Command::Explain(args) => explain::run(global, args),
        Command::Plan(args) => plan::run(global, args),
        Command::Images(args) => images::run(global, args),
        Command::Image(cmd) => images::run_group(global, cmd),
        Command::History(args) => history::run(global, args),
        Command::Inspect(args) => inspect::run(global, args),
        Command::Tag(args) => tag::run(global, args),
        Command::Rmi(args) => rmi::run(global, args),
        Command::Run(args) => run::run(global, args),
        Command::Exec(args) => exec::run(global, args),
        Command::Commit(args) => commit::run(global, args),
        Command::Ps(args) => container::ps(global, args),
        Command::Logs(args) => container::logs(global, args),
        Command::Stop(args) => container::stop(global, args),
        Command::Kill(args) => container::kill(global, args),
        Command::Rm(args) => container::rm(global, args),
        Command::Container(cmd) => container::run_group(global, cmd),
        Command::Prune(args) => prune::run(global, args),
        Command::Save(args) => save::run(global, args),
        Command::Load(args) => load::run(global, args),
        Command::Import(args) => import::run(global, args),
        Command::Version(args) => version::run(global, args),
        Command::Info(args) => info::run(global, args),
        Command::System(cmd) => system::run(global, cmd),
        Command::Store(cmd) => system::run_store(global, cmd),
    }
}

/// Whether `command` reads or writes the store (or runs a sandbox), and so runs in rbuild's
/// user namespace when rbuild is not root.
/// `exec` joins the user namespace of the container it enters instead (`Containers::exec`).
fn uses_store(command: &Command) -> bool {
    !matches!(
        command,
        Command::Exec(_)
            | Command::Container(container::ContainerCommand::Exec(_))
            | Command::Parse(_)
            | Command::Check(_)
            | Command::Login(_)
            | Command::Logout(_)
            | Command::Version(_)
            | Command::Info(_)
    )
}

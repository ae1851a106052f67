//! `rbuild exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND...`: run a command in a
//! running container, as `docker exec` does — in the container's mount, PID, UTS, IPC, network
//! and cgroup namespaces and its root, in its cgroups (memory, pids, devices), under the same
//! seccomp profile and capabilities as its own command. The container's environment, working
//! directory and user are the defaults; `-e`, `-w` and `-u` override them. `-i` passes stdin,
//! `-t` gives the command a terminal of the container's devpts (as `run -t`). The exit code is
//! the command's (128 + n after signal n; 127/126 when it cannot be found or run).

use std::io::IsTerminal;

use clap::Args;
use rbuild_executor::ExecError;
use rbuild_executor::container::{Containers, ExecRequest};

use super::run_tty;
use super::storeutil::open_store;
use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` from this environment).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (default: the container's).
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The container (name, id or id prefix).
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments.
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true, num_args = 1.., required = true)]
    pub command: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: ExecArgs) -> miette::Result<u8> {
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        return Err(rbuild_store::Failure::new(
            rbuild_store::ErrorClass::Input,
            "rbuild::run::not_a_tty",
            "the input device is not a TTY",
        )
        .with_help("run from a terminal, or drop `-t` to pipe input into the command with `-i`")
        .into());
    }
    let store = open_store(global)?;
    let containers = Containers::open(store.root())?;
    let record = containers.find(&args.container)?;
    let mut env = args.env.clone();
    if args.tty && !env.iter().any(|e| e.split('=').next() == Some("TERM")) {
        let term = std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "xterm".into());
        env.push(format!("TERM={term}"));
    }
    let mut relay = run_tty::Relay::default();
    let forward_stdin = args.interactive;
    let mut on_master = |master| relay.start(master, forward_stdin);
    let stdio = run_tty::stdio(args.tty, args.interactive, &mut on_master);
    let raw = (args.tty && args.interactive).then(run_tty::RawMode::enter);
    let result = containers.exec(
        &record,
        ExecRequest {
            argv: args.command.clone(),
            env,
            cwd: args.workdir.clone(),
            user: args.user.clone(),
            stdio,
        },
        |k| std::env::var(k).ok(),
    );
    relay.finish();
    drop(raw);
    match result {
        Ok(status) => Ok((status.code() & 0xff) as u8),
        Err(e @ ExecError::Start { .. }) => {
            let code = match &e {
                ExecError::Start { reason, .. }
                    if reason.contains("not found") || reason.contains("no such file") =>
                {
                    127
                }
                _ => 126,
            };
            eprintln!("{:?}", miette::Report::new(e));
            Ok(code)
        }
        Err(e) => Err(e.into()),
    }
}

//! `rbuild login`: check credentials against a registry and store them in docker's
//! `config.json` (or its credential helper), so rbuild and docker share logins.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use clap::Args;
use rbuild_registry::auth::credentials::store_login;
use rbuild_registry::config::canonical_registry;
use rbuild_registry::{Client, Credential, RegistriesConfig, StaticCredentials};

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry to log in to (`docker.io` when omitted).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,

    /// Username.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,

    /// Password or access token (prefer `--password-stdin`: this one lands in shell history).
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// Read the password or token from standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
}

/// `https://host/v1/` or `host` → the registry name.
pub fn server_name(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    canonical_registry(host).to_string()
}

fn usage(message: &str, help: &str) -> miette::Report {
    miette::miette!(
        code = "rbuild::login::usage",
        help = help.to_string(),
        "{message}"
    )
}

pub fn run(global: &GlobalArgs, args: LoginArgs) -> miette::Result<u8> {
    let server = server_name(args.server.as_deref());
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if tty && !args.password_stdin => {
            let term = console::Term::stderr();
            term.write_str("Username: ")
                .map_err(|e| miette::miette!("{e}"))?;
            term.read_line()
                .map_err(|e| miette::miette!("{e}"))?
                .trim()
                .to_string()
        }
        None => {
            return Err(usage(
                "a username is required",
                "pass `-u USER` (with `--password-stdin` for the password)",
            ));
        }
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| miette::miette!("reading the password from stdin: {e}"))?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!(
            "WARNING! Using --password via the command line is insecure. Use --password-stdin."
        );
        p
    } else if tty {
        console::Term::stderr()
            .write_str("Password: ")
            .and_then(|_| console::Term::stderr().read_secure_line())
            .map_err(|e| miette::miette!("{e}"))?
    } else {
        return Err(usage(
            "a password is required",
            "pipe it in with `--password-stdin`",
        ));
    };
    if username.is_empty() || password.is_empty() {
        return Err(usage(
            "username and password must not be empty",
            "pass `-u USER --password-stdin`",
        ));
    }
    let config = RegistriesConfig::load(global.root.as_deref())?;
    let ep = config.push_endpoint(&server);
    let cred = Credential::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let client = Client::with_credentials(
        config,
        Arc::new(StaticCredentials(vec![(ep.host.clone(), cred)])),
    );
    client.check_login(&ep)?;
    let path = store_login(&server, &username, &password)?;
    tracing::debug!(config = %path.display(), "credentials stored");
    println!("Login Succeeded");
    Ok(0)
}

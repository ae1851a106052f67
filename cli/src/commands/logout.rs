//! `rbuild logout`: forget the credentials stored for a registry (in docker's `config.json`
//! or its credential helper).

use clap::Args;
use rbuild_registry::auth::credentials::remove_login;

use crate::args::GlobalArgs;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry to log out from (`docker.io` when omitted).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub fn run(_global: &GlobalArgs, args: LogoutArgs) -> miette::Result<u8> {
    let server = super::login::server_name(args.server.as_deref());
    if remove_login(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

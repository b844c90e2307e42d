//! `ade`, the command-line client of the ADE Runs API.
//!
//! [`args`] is the command line; [`client`] talks HTTP and [`problem`] words
//! the API's errors; [`follow`] reads live event streams (over [`sse`]) and
//! [`watch`] shows them to people; [`output`] prints tables or JSON. One
//! module per command group: [`workspaces`], [`configs`] (with [`pack`]),
//! [`docs`], [`runs`], [`builds`], [`fleet`] (workers and queue) and
//! [`smoke`], the post-deploy check.

pub mod args;
pub mod builds;
pub mod client;
pub mod configs;
pub mod docs;
pub mod fleet;
pub mod follow;
pub mod output;
pub mod pack;
pub mod problem;
pub mod runs;
pub mod smoke;
pub mod sse;
pub mod watch;
pub mod workspaces;

use args::{Cli, Command};
use client::Client;

/// How `ade` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; a followed run or build succeeded; the smoke check passed.
    Ok = 0,
    /// A followed run or build did not succeed; a smoke check failed.
    Failed = 1,
    /// The command could not do its work (bad input, the API refused, no API).
    Error = 2,
    /// Ctrl-C while following.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit as u8)
    }
}

/// What every command gets: the client and the output mode.
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// `--json`: print the API's JSON.
    pub json: bool,
}

/// Runs one command line; errors are printed here, once.
pub async fn run(cli: Cli) -> Exit {
    match dispatch(cli).await {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("error: {error:#}");
            Exit::Error
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let ctx = Ctx {
        client: Client::new(&cli.global)?,
        json: cli.global.json,
    };
    match cli.command {
        Command::Workspaces(command) => workspaces::run(&ctx, command).await,
        Command::Configs(command) => configs::run(&ctx, command).await,
        Command::Docs(command) => docs::run(&ctx, command).await,
        Command::Runs(command) => runs::run(&ctx, command).await,
        Command::Builds(command) => builds::run(&ctx, command).await,
        Command::Workers => fleet::workers(&ctx).await,
        Command::Queue => fleet::queue(&ctx).await,
        Command::Smoke(args) => smoke::run(&ctx, args).await,
    }
}

//! `esprit`: the user binary. Subcommands dispatch to one module each; the work lives in the
//! library crates, this crate only parses flags, sets up logging and the runtime, and reports
//! errors with context.

mod config_cmd;
mod conn_args;
mod demo_cmd;
mod duration;
mod iam_cmd;
mod impersonate;
mod inspect_cmd;
mod logging;
mod proxy_cmd;
mod signals;
mod token_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "esprit",
    version,
    about = "An authenticating gRPC proxy compatible with Google's ESP service configs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and validate service configurations.
    Config(config_cmd::ConfigArgs),
    /// Run the proxy in front of a gRPC backend.
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// Service accounts, their keys, and the key server that publishes the public keys.
    Iam(Box<iam_cmd::IamArgs>),
    /// Mint a JWT with a service-account key file.
    Token(Box<token_cmd::TokenArgs>),
    /// Run the "Authentication Between Services" tutorial locally, in one process: key server,
    /// Bookstore and proxy on loopback ports, and calls with and without valid tokens.
    Demo(Box<demo_cmd::DemoArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(args) => config_cmd::run(args),
        Command::Proxy(args) => proxy_cmd::run(*args),
        Command::Iam(args) => iam_cmd::run(*args),
        Command::Token(args) => token_cmd::run(*args),
        Command::Demo(args) => demo_cmd::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("esprit: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `custody`: the Peruri Custody binary.
//!
//! Today it carries the operator commands over the signing core
//! (`custody keys …`); the service itself (`serve`, `devnet`) is built on the
//! same configuration and keyring.

mod cli;
mod config;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Peruri Custody: custodial keys and ERC-4337 smart accounts.
#[derive(Debug, Parser)]
#[command(name = "custody", version)]
struct Cli {
    /// Configuration file (TOML); `CUSTODY_*` environment variables override it.
    #[arg(long, global = true, env = "CUSTODY_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines (production) instead of human-readable text.
    #[arg(long, global = true, env = "CUSTODY_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list and use keys.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cli::fail(&anyhow::Error::new(e).context("starting the runtime")),
    };
    let result = runtime.block_on(async move {
        let config = config::Config::load(cli.config.as_deref())?;
        match cli.command {
            Command::Keys(cmd) => cli::keys::run(cmd, &config).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli::fail(&e),
    }
}

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_env("CUSTODY_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

//! `custody`: the Peruri Custody binary.
//!
//! `serve` runs the API, and the operator commands (`keys`, `audit`, `enroll`, `reindex`) work on the
//! same configuration and keyring. With the `dev` feature (scripts/devnet.sh), `devnet` runs everything on
//! one machine and `bench` runs the load generators; the production binary has neither.

mod api;
mod approvals;
mod audit;
mod audit_checkpoint;
mod audit_hooks;
#[cfg(feature = "dev")]
mod bench;
mod bundler;
mod chain_identity;
mod cli;
mod config;
mod connections;
mod db;
#[cfg(feature = "dev")]
mod devnet;
#[cfg(feature = "dev")]
mod devnet_auth;
mod operations;
mod owner_rotation;
mod serve;
mod shutdown;
mod tasks;
mod tls;

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
    #[arg(long, global = true, env = "CUSTODY_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list and use keys.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Run everything on this machine: SoftHSM token, keys, local chain, contracts.
    #[cfg(feature = "dev")]
    Devnet(devnet::DevnetArgs),
    /// Serve the API (configuration from --config and CUSTODY_* variables).
    Serve,
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Load generators that print figures against a same-run baseline.
    #[cfg(feature = "dev")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Enrol the users of a CSV file (resumable: run it again after an interruption).
    Enroll(cli::enroll::EnrollArgs),
    /// Rebuild the token and badge caches from the chain's events, from block 0.
    Reindex,
    /// PeruriPaymaster's EntryPoint deposits: show, top up.
    #[command(subcommand)]
    Paymaster(cli::paymaster::PaymasterCommand),
    /// Back up the database, the SoftHSM token and the deployment record to a new directory.
    Backup(cli::backup::BackupArgs),
    /// Restore a backup into the (empty) database and token this configuration names.
    Restore(cli::backup::RestoreArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The service logs each request (an access log); operator commands only problems.
    init_tracing(cli.log_json, if matches!(cli.command, Command::Serve) { "info" } else { "warn" });
    // A SoftHSM token must be in the environment before any thread starts.
    #[cfg(feature = "dev")]
    let softhsm = match match &cli.command {
        Command::Devnet(args) => devnet::prepare(args).map(Some),
        Command::Bench(_) => bench::prepare().map(Some),
        _ => Ok(None),
    } {
        Ok(token) => token,
        Err(e) => return cli::fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cli::fail(&anyhow::Error::new(e).context("starting the runtime")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "dev")]
            Command::Devnet(args) => devnet::run(args, anyhow::Context::context(softhsm, "token not prepared")?).await,
            #[cfg(feature = "dev")]
            Command::Bench(cmd) => bench::run(cmd, anyhow::Context::context(softhsm, "token not prepared")?).await,
            Command::Keys(cmd) => cli::keys::run(cmd, &config::Config::load(cli.config.as_deref())?).await,
            Command::Audit(cmd) => cli::audit::run(cmd, &config::Config::load(cli.config.as_deref())?).await,
            Command::Enroll(args) => cli::enroll::run(args, &config::Config::load(cli.config.as_deref())?).await,
            Command::Serve => serve::run(config::Config::load(cli.config.as_deref())?).await,
            Command::Reindex => serve::reindex(&config::Config::load(cli.config.as_deref())?).await,
            Command::Paymaster(cmd) => cli::paymaster::run(cmd, &config::Config::load(cli.config.as_deref())?).await,
            Command::Backup(args) => cli::backup::backup(args, &config::Config::load(cli.config.as_deref())?).await,
            Command::Restore(args) => cli::backup::restore(args, &config::Config::load(cli.config.as_deref())?).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli::fail(&e),
    }
}

fn init_tracing(json: bool, default_filter: &str) {
    let filter = EnvFilter::try_from_env("CUSTODY_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

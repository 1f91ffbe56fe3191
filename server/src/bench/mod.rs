//! `custody bench …`: load generators over a throw-away environment (fresh SoftHSM token, a fresh
//! SQLite file or a given PostgreSQL database, an ES256 token issuer) with the API in this process on a
//! loopback port. Each prints its figures next to a baseline measured in the same run.
//!
//! The per-client rate limit is off in these environments (one client sends everything).

mod activity;
mod operations;
mod paymaster;
mod wallets;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use custody_hsm_sim::SoftHsm;
use futures::StreamExt;

/// `custody bench …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Wallet creation and status over HTTP against the raw HSM key-creation rate.
    Wallets(wallets::WalletsArgs),
    /// Activities at a steady rate over HTTP, each followed until it is confirmed on a local chain.
    Activity(activity::ActivityArgs),
    /// ERC-7677 sponsorships over HTTP against the paymaster key's own signing rate.
    Paymaster(paymaster::PaymasterArgs),
    /// Sponsored PTKN transfers of custodial wallets at a steady rate on a local chain, against the
    /// bundler alone with operations signed outside the service.
    Operations(operations::OperationsArgs),
}

/// A fresh token for the run, made before the runtime starts (SoftHSM reads
/// its configuration from the environment).
pub(crate) fn prepare() -> anyhow::Result<SoftHsm> {
    let hsm = SoftHsm::fresh("bench").context("creating a SoftHSM token for the benchmark")?;
    hsm.activate();
    Ok(hsm)
}

pub(crate) async fn run(cmd: BenchCommand, softhsm: SoftHsm) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Wallets(args) => wallets::run(args, softhsm).await,
        BenchCommand::Activity(args) => activity::run(args, softhsm).await,
        BenchCommand::Paymaster(args) => paymaster::run(args, softhsm).await,
        BenchCommand::Operations(args) => operations::run(args, softhsm).await,
    }
}

/// A throw-away environment with a chain: a temporary directory, the database (a fresh SQLite file
/// there unless `database_url` is given), the keyring on the bench token, a local chain with a block
/// every `block_time`, and the contracts deployed for the HSM keys (as the devnet does), recorded in
/// `deployment_file`.
struct ChainEnv {
    dir: tempfile::TempDir,
    db_url: String,
    keyring: custody_signer::Keyring,
    chain: custody_contracts::test_utils::LocalChain,
    deployment: custody_contracts::Deployment,
    deployment_file: std::path::PathBuf,
}

impl ChainEnv {
    async fn start(softhsm: &SoftHsm, database_url: Option<&str>, block_time: Duration) -> anyhow::Result<Self> {
        use custody_signer::{Backend, Hsm, KeyStore, Keyring, Pkcs11Config};
        let dir = tempfile::tempdir().context("temporary directory")?;
        let db_url =
            database_url.map_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()), str::to_owned);
        let hsm =
            Hsm::connect(Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())).await?;
        let keyring = Keyring::open(Backend::Pkcs11(hsm), KeyStore::connect(&db_url).await?).await?;
        let chain_config =
            custody_contracts::test_utils::LocalChainConfig { block_time: Some(block_time), ..Default::default() };
        let (chain, deployment, _) = crate::devnet::provision(&keyring, chain_config).await?;
        let deployment_file = dir.path().join("deployment.json");
        std::fs::write(&deployment_file, serde_json::to_string(&deployment)?)?;
        Ok(Self { dir, db_url, keyring, chain, deployment, deployment_file })
    }

    /// The devnet's API configuration over this environment (its chain, database and deployment), with a
    /// new ES256 token issuer; the issuer's private key signs the load generator's tokens.
    fn api_config(&self, softhsm: &SoftHsm) -> anyhow::Result<(crate::config::Config, String)> {
        let (jwt_private, jwt_public) = crate::devnet_auth::key_pair(self.dir.path())?;
        let config = crate::devnet::api_config(
            softhsm,
            &self.db_url,
            Some(self.chain.rpc_url()),
            &self.deployment_file,
            jwt_public,
            "127.0.0.1:0".parse()?,
        );
        Ok((config, jwt_private))
    }
}

/// Latency samples and the wall time they took.
struct Sample {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i]
    }

    fn line(&mut self, what: &str, unit: &str) -> String {
        let (p50, p95, p99) = (self.percentile(0.50), self.percentile(0.95), self.percentile(0.99));
        format!(
            "{what:<34} {:>9.0} {unit}  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
            self.rate(),
            ms(p50),
            ms(p95),
            ms(p99)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `count` operations, `concurrency` at once, timing each; any failure aborts.
async fn measure<F, Fut>(count: usize, concurrency: usize, op: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let mut stream = futures::stream::iter(0..count)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut latencies = Vec::with_capacity(count);
    while let Some(latency) = stream.next().await {
        latencies.push(latency?);
    }
    Ok(Sample { latencies, wall: started.elapsed() })
}

/// Serves `config` in this process on a loopback port, with the per-client rate limit off, and waits
/// until it answers; returns its URL, a client keeping `idle` connections per host, and the server task
/// (abort it when done).
async fn start_api(
    mut config: crate::config::Config,
    idle: usize,
) -> anyhow::Result<(String, reqwest::Client, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    config.server.rate_limit = crate::config::RateLimitConfig { per_second: 0, burst: 0 };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let api = tokio::spawn(crate::serve::serve_on(listener, config));
    let http = reqwest::Client::builder().pool_max_idle_per_host(idle).build()?;
    wait_healthy(&http, &url).await?;
    Ok((url, http, api))
}

async fn wait_healthy(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the API did not come up within 30 s")
}

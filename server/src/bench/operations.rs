//! `custody bench operations`: sponsored PTKN transfers of custodial wallets at a steady rate.
//!
//! A local chain with a block every `--block-time` seconds, the contracts deployed for HSM keys (as the
//! devnet does), and `custody serve` with the bundler and the paymaster in this process. `--wallets`
//! custodial wallets are created and their accounts deployed by a first operation each, and as many
//! accounts owned by keys in this process too (not measured). Then, in the same run:
//!
//! 1. the baseline: the bundler alone: operations of those local accounts (k256 owner keys, no
//!    paymaster), built and signed here and sent with `eth_sendUserOperation` at `--rate` for
//!    `--baseline-seconds`;
//! 2. the service: at `--rate` for `--seconds`, one wallet after the other prepares a PTKN transfer
//!    (`POST …/operations/prepare`: the bundler's estimate, the paymaster's sponsorship signed in the
//!    HSM) and submits it (`POST …/operations`: signed by the owner key in the HSM, handed to the
//!    bundler).
//!
//! Each operation is followed until the bundler records it included (its `updated_at`, same clock), and
//! the report gives the accepted rate, the prepare and submit latencies and send → included in seconds
//! and blocks, for both. Every measured operation is a plain call of a deployed account (a fresh nonce
//! key each).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::{SignerSync, local::PrivateKeySigner};
use anyhow::{Context, bail};
use custody_contracts::{EntryPointVersion, account};
use custody_hsm_sim::SoftHsm;
use serde_json::{Value, json};
use sqlx::Row;

use super::{Sample, start_api};

/// Options of `custody bench operations`.
#[derive(Debug, clap::Args)]
pub(crate) struct OperationsArgs {
    /// Custodial wallets the transfers come from (one after the other).
    #[arg(long, default_value_t = 1000)]
    wallets: usize,
    /// Operations per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Seconds of load through the service.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Seconds of load for the baseline (the bundler alone).
    #[arg(long, default_value_t = 10)]
    baseline_seconds: u32,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 2)]
    block_time: u64,
    /// How long to follow operations after the last one is sent, in seconds.
    #[arg(long, default_value_t = 60)]
    follow: u64,
    /// Database URL (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

/// The EntryPoint the operations go through (the service prepares v0.7 operations).
const VERSION: EntryPointVersion = EntryPointVersion::V07;

/// What one sent operation left for the report.
struct Sent {
    hash: B256,
    /// Unix milliseconds when the client started sending it.
    at: i64,
    /// The prepare call (service only) and the send / submit call.
    prepare: Option<Duration>,
    send: Duration,
}

#[expect(clippy::print_stdout, reason = "a load generator prints its figures")]
pub(super) async fn run(args: OperationsArgs, softhsm: SoftHsm) -> anyhow::Result<()> {
    if [
        args.wallets,
        args.rate as usize,
        args.seconds as usize,
        args.baseline_seconds as usize,
        args.block_time as usize,
    ]
    .contains(&0)
    {
        bail!("--wallets, --rate, --seconds, --baseline-seconds and --block-time must be at least 1");
    }
    let block_time = Duration::from_secs(args.block_time);
    let env = super::ChainEnv::start(&softhsm, args.database_url.as_deref(), block_time).await?;
    let (mut config, jwt_private) = env.api_config(&softhsm)?;
    let super::ChainEnv { dir: _dir, db_url, keyring, chain, deployment, .. } = env;
    drop(keyring);
    config.paymaster = Some(crate::devnet::paymaster_config());
    let (url, http, api) = start_api(config, 64).await?;
    let app = crate::devnet_auth::token(&jwt_private, "bench-app", &["app"])?;

    // The wallets (not measured).
    let bar = indicatif::ProgressBar::new(args.wallets as u64).with_message("wallets created");
    let mut addresses = Vec::with_capacity(args.wallets);
    for i in 0..args.wallets {
        let body = json!({"user_id": format!("bench-user-{i}")});
        let answer = post(&http, &format!("{url}/v1/wallets"), &app, Some(&format!("w-{i}")), &body).await?;
        addresses.push(answer["address"].as_str().context("no address")?.parse::<Address>()?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ptkn = deployment.contracts.peruri_token;
    let contracts = deployment.contracts;
    let (rpc, chain_id) = (format!("{url}/rpc"), deployment.chain_id);
    let transfer = |to: Address| account::execute(ptkn, U256::ZERO, crate::operations::ptkn_transfer(to, U256::ZERO));

    // Warm-up (not measured): every wallet's first operation deploys its account; local accounts too.
    let owners: Vec<PrivateKeySigner> = (0..BASELINE_ACCOUNTS).map(|_| PrivateKeySigner::random()).collect();
    let local = |owner: &PrivateKeySigner| {
        let (factory, implementation) = (contracts.account_factory(VERSION), contracts.account_implementation(VERSION));
        account::account_address(factory, implementation, owner.address(), U256::ZERO)
    };
    let mut warm = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let (sender, call) = (local(owner), transfer(addresses[i % addresses.len()]));
        let op = custody_contracts::test_utils::user_op(
            &deployment,
            VERSION,
            sender,
            U256::ZERO,
            Some(owner.address()),
            call,
        );
        warm.push(send_signed(&http, &rpc, op, owner, chain_id).await?);
    }
    let bar = indicatif::ProgressBar::new(args.wallets as u64).with_message("accounts deployed");
    for (i, address) in addresses.iter().enumerate() {
        let body = json!({"calls": [{"to": ptkn, "data": crate::operations::ptkn_transfer(*address, U256::ZERO)}]});
        let path = format!("{url}/v1/wallets/bench-user-{i}/operations");
        let sent = post(&http, &path, &app, Some(&format!("d-{i}")), &body).await?;
        warm.push(sent["userOpHash"].as_str().context("no userOpHash")?.parse()?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let pool = custody_db::connect_pool(&db_url).await?;
    let included = follow(&pool, &warm, Duration::from_secs(args.follow)).await?;
    if included.len() < warm.len() {
        bail!("warm-up: {} of {} deploying operations included", included.len(), warm.len());
    }

    // 1. Baseline: the bundler alone, operations signed here.
    let n = args.rate as usize * args.baseline_seconds as usize;
    let baseline = at_rate(args.rate, n, |i| {
        let (http, rpc) = (http.clone(), rpc.clone());
        let owner = owners[i % owners.len()].clone();
        let nonce = U256::from_be_slice(&rand::random::<[u8; 24]>()) << 64;
        let op = custody_contracts::test_utils::user_op(
            &deployment,
            VERSION,
            local(&owner),
            nonce,
            None,
            transfer(addresses[i % addresses.len()]),
        );
        async move {
            let at = custody_db::now_millis();
            let t = Instant::now();
            let hash = send_signed(&http, &rpc, op, &owner, chain_id).await?;
            Ok(Sent { hash, at, prepare: None, send: t.elapsed() })
        }
    })
    .await?;

    // 2. The service: prepare, then submit, one wallet after the other.
    let n = args.rate as usize * args.seconds as usize;
    let service = at_rate(args.rate, n, |i| {
        let (http, url, app) = (http.clone(), url.clone(), app.clone());
        let (user, to) = (format!("bench-user-{}", i % addresses.len()), addresses[(i + 1) % addresses.len()]);
        let data = crate::operations::ptkn_transfer(to, U256::ZERO);
        async move {
            let at = custody_db::now_millis();
            let t = Instant::now();
            let calls = json!({"calls": [{"to": ptkn, "data": data}]});
            let prepared =
                post(&http, &format!("{url}/v1/wallets/{user}/operations/prepare"), &app, None, &calls).await?;
            let prepare = t.elapsed();
            let t = Instant::now();
            let body = json!({"prepared": prepared["id"]});
            let sent =
                post(&http, &format!("{url}/v1/wallets/{user}/operations"), &app, Some(&format!("o-{i}")), &body)
                    .await?;
            let hash = sent["userOpHash"].as_str().context("no userOpHash")?.parse()?;
            Ok(Sent { hash, at, prepare: Some(prepare), send: t.elapsed() })
        }
    })
    .await?;

    // Follow both until included (or the window closes).
    let hashes: Vec<B256> = baseline.0.iter().chain(&service.0).map(|s| s.hash).collect();
    let included = follow(&pool, &hashes, Duration::from_secs(args.follow)).await?;

    let engine = if db_url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    let cores = std::thread::available_parallelism()?.get();
    println!(
        "custody bench operations: SoftHSM2, {engine}, local chain with {}s blocks, {} wallets, {cores} cores",
        args.block_time, args.wallets
    );
    let base = report("baseline: bundler alone", args.rate, &baseline, &included, block_time, None)?;
    report("service: prepare + submit", args.rate, &service, &included, block_time, Some(base))?;
    api.abort();
    drop(chain);
    Ok(())
}

/// Local accounts the baseline's operations come from.
const BASELINE_ACCOUNTS: usize = 100;

/// Signs `op` with `owner` and sends it with `eth_sendUserOperation`; its hash.
async fn send_signed(
    http: &reqwest::Client,
    rpc: &str,
    mut op: custody_contracts::UserOperation,
    owner: &PrivateKeySigner,
    chain_id: u64,
) -> anyhow::Result<B256> {
    let hash = op.hash(VERSION, VERSION.address(), chain_id)?;
    op.signature =
        owner.sign_hash_sync(&custody_contracts::userop::signing_digest(VERSION, hash))?.as_bytes().to_vec().into();
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation", "params": [op, VERSION.address()]});
    let answer: Value = http.post(rpc).json(&request).send().await?.json().await?;
    if let Some(error) = answer.get("error") {
        bail!("eth_sendUserOperation: {error}");
    }
    Ok(hash)
}

/// When the bundler recorded each of `hashes` included (its `updated_at`, Unix milliseconds), polling
/// until all are or `window` passed.
async fn follow(pool: &sqlx::AnyPool, hashes: &[B256], window: Duration) -> anyhow::Result<HashMap<B256, i64>> {
    let deadline = Instant::now() + window;
    loop {
        let rows = sqlx::query("SELECT hash, updated_at FROM bundler_user_ops WHERE status = 'included'")
            .fetch_all(pool)
            .await?;
        let mut included = HashMap::with_capacity(rows.len());
        for row in &rows {
            included.insert(row.try_get::<String, _>("hash")?.parse::<B256>()?, row.try_get::<i64, _>("updated_at")?);
        }
        if hashes.iter().all(|h| included.contains_key(h)) || Instant::now() > deadline {
            return Ok(included);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What one load phase left: the operations sent, the requests that failed (their errors), the wall time.
type Phase = (Vec<Sent>, Vec<String>, Duration);

/// Starts `make(i)` for `i` in `0..n` at `rate` per second; what was sent, what failed, the wall time.
async fn at_rate<F, Fut>(rate: u32, n: usize, mut make: F) -> anyhow::Result<Phase>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Sent>> + Send + 'static,
{
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let bar = indicatif::ProgressBar::new(n as u64).with_message("operations sent");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        ticker.tick().await;
        tasks.spawn(make(i));
        bar.inc(1);
    }
    let (mut sent, mut failed) = (Vec::with_capacity(n), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result? {
            Ok(one) => sent.push(one),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    bar.finish_and_clear();
    Ok((sent, failed, started.elapsed()))
}

/// Prints one run's lines; its send → included p99 in seconds.
#[expect(clippy::print_stdout, reason = "a load generator prints its figures")]
fn report(
    what: &str,
    rate: u32,
    (sent, failed, wall): &Phase,
    included: &HashMap<B256, i64>,
    block_time: Duration,
    baseline_p99: Option<f64>,
) -> anyhow::Result<f64> {
    let sample = |latencies: Vec<Duration>| Sample { latencies, wall: *wall };
    println!("{what} at {rate}/s: {} operations accepted, {} requests failed", sent.len(), failed.len());
    if let Some(first) = failed.first() {
        println!("  first failure: {first}");
    }
    if sent.iter().any(|s| s.prepare.is_some()) {
        let mut prepare = sample(sent.iter().filter_map(|s| s.prepare).collect());
        println!("  {}", prepare.line("prepare", "op/s"));
    }
    println!("  {}", sample(sent.iter().map(|s| s.send).collect()).line("send (accepted)", "op/s"));
    let latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|s| included.get(&s.hash).map(|at| Duration::from_millis(u64::try_from(at - s.at).unwrap_or(0))))
        .collect();
    if latencies.is_empty() {
        bail!("{what}: no operation was included");
    }
    let count = latencies.len();
    let mut landed = sample(latencies);
    let (p50, p99) = (landed.percentile(0.50).as_secs_f64(), landed.percentile(0.99).as_secs_f64());
    let blocks = |s: f64| s / block_time.as_secs_f64();
    println!(
        "  first call → included: p50 {p50:.2} s  p99 {p99:.2} s ({:.2} blocks)  max {:.2} s; included {count} of {}",
        blocks(p99),
        landed.percentile(1.0).as_secs_f64(),
        sent.len() + failed.len()
    );
    if let Some(base) = baseline_p99 {
        println!("  p99 ratio to the baseline's p99: {:.2}x", p99 / base);
    }
    Ok(p99)
}

/// POSTs `body` with the app token (and `key`); the JSON answer of a 2xx, else an error with the body.
async fn post(http: &reqwest::Client, url: &str, app: &str, key: Option<&str>, body: &Value) -> anyhow::Result<Value> {
    let mut request = http.post(url).bearer_auth(app).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} answered {status}: {answer}");
    }
    Ok(answer)
}

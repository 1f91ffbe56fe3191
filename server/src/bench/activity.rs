//! `custody bench activity`: end-to-end latency of the activity mirror.
//!
//! A local chain with a block every `--block-time` seconds, the contracts deployed for HSM keys (as the
//! devnet does), and `custody serve` with the mirror worker in this process. Activities are posted at a
//! steady `--rate` for `--seconds`; each is then followed until it is confirmed (anchored and its
//! tokens and badges mined), and the report gives:
//!
//! 1. the baseline: a plain transaction's send → receipt latency on the same chain, same run;
//! 2. intake: `POST /activity/track` latency at that rate;
//! 3. activity → confirmed: from the client sending the activity to the mirror recording its batch as
//!    confirmed (the database's `updated_at`, same clock), in seconds and in blocks, with the share
//!    confirmed within the follow-up window;
//! 4. gas per issued PTKN, anchors included.

use std::time::{Duration, Instant};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::U256,
    providers::Provider,
    rpc::types::TransactionRequest,
};
use anyhow::{Context, bail};
use custody_hsm_sim::SoftHsm;
use custody_signer::KeyClass;
use serde_json::json;

use super::{Sample, start_api};

/// Options of `custody bench activity`.
#[derive(Debug, clap::Args)]
pub(crate) struct ActivityArgs {
    /// Activities per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Distinct users the activities belong to (each gets a wallet on first use).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 2)]
    block_time: u64,
    /// How long to follow activities after the last one is sent, in seconds.
    #[arg(long, default_value_t = 60)]
    follow: u64,
    /// Database URL (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

/// Plain transactions timed for the baseline.
const BASELINE_TXS: usize = 10;

#[expect(clippy::print_stdout, reason = "a load generator prints its figures")]
pub(super) async fn run(args: ActivityArgs, softhsm: SoftHsm) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 || args.users == 0 || args.block_time == 0 {
        bail!("--rate, --seconds, --users and --block-time must be at least 1");
    }
    let block_time = Duration::from_secs(args.block_time);
    let env = super::ChainEnv::start(&softhsm, args.database_url.as_deref(), block_time).await?;
    let (mut config, jwt_private) = env.api_config(&softhsm)?;
    let super::ChainEnv { dir: _dir, db_url, keyring, chain, .. } = env;

    // 1. Baseline: plain transactions from the HSM admin key, send → receipt.
    let admin = keyring.signer(KeyClass::Infra, "admin").await?;
    let from = admin.address();
    let provider = chain.provider_with(EthereumWallet::from(admin));
    let mut baseline = Vec::with_capacity(BASELINE_TXS);
    let baseline_started = Instant::now();
    for i in 0..BASELINE_TXS {
        // Spread the sends over the block interval.
        tokio::time::sleep(Duration::from_millis(137 * i as u64 % 1000)).await;
        let t = Instant::now();
        let request = TransactionRequest::default().with_to(from).with_value(U256::ZERO);
        let hash = *provider.send_transaction(request).await.context("baseline transaction")?.tx_hash();
        while provider.get_transaction_receipt(hash).await?.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        baseline.push(t.elapsed());
    }
    let mut baseline = Sample { latencies: baseline, wall: baseline_started.elapsed() };
    drop(keyring);

    // The API with the mirror worker, in this process.
    config.bundler = None;
    let (url, http, api) = start_api(config, 256).await?;
    let app = crate::devnet_auth::token(&jwt_private, "bench-app", &["app"])?;

    // 2. A steady rate of activities.
    let n = args.rate as usize * args.seconds as usize;
    let bar = indicatif::ProgressBar::new(n as u64).with_message("activities sent");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        ticker.tick().await;
        let (http, url, app) = (http.clone(), url.clone(), app.clone());
        let user = format!("bench-user-{}", i % args.users);
        sends.spawn(async move {
            let sent_at = custody_db::now_millis();
            let t = Instant::now();
            let body = json!({"user_id": user, "type": "attendance", "occurred_at": "2026-01-05T08:00:00Z"});
            let resp = http
                .post(format!("{url}/activity/track"))
                .bearer_auth(&app)
                .header("Idempotency-Key", format!("bench-{i}"))
                .json(&body)
                .send()
                .await?;
            if resp.status() != 202 {
                bail!("POST /activity/track answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
            }
            let answer: serde_json::Value = resp.json().await?;
            let id = answer["id"].as_str().context("no id in the answer")?.to_owned();
            Ok((id, sent_at, t.elapsed()))
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut sent = std::collections::HashMap::with_capacity(n);
    let mut intake = Vec::with_capacity(n);
    while let Some(result) = sends.join_next().await {
        let (id, sent_at, latency) = result??;
        sent.insert(id, sent_at);
        intake.push(latency);
    }
    let mut intake = Sample { latencies: intake, wall: started.elapsed() };

    // 3. Follow every activity until confirmed (or the window closes).
    let pool = custody_db::connect_pool(&db_url).await?;
    // Read only here: the policy is the API's business.
    let issuance = custody_issuance::Issuance::open(pool, custody_issuance::PolicyConfig::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(args.follow);
    let (confirmed, failed) = loop {
        let mut confirmed = Vec::new();
        let mut failed = 0;
        for activity in issuance.statuses().await? {
            let Some(sent_at) = sent.get(&activity.id) else { continue };
            match activity.status.as_str() {
                "confirmed" => {
                    let at = activity.updated_at;
                    confirmed.push(Duration::from_millis(u64::try_from(at - sent_at).unwrap_or(0)));
                }
                "failed" => failed += 1,
                _ => {}
            }
        }
        if confirmed.len() + failed == n || Instant::now() > deadline {
            break (confirmed, failed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // 4. Gas per issued PTKN (every mined mirror transaction, anchors included).
    let totals = issuance.totals().await?;
    let (gas, minted, batches) = (totals.gas_used, totals.token_items_sent, totals.batches);

    let engine = if db_url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    let cores = std::thread::available_parallelism()?.get();
    println!("custody bench activity: SoftHSM2, {engine}, local chain with {}s blocks, {cores} cores", args.block_time);
    println!("{}", baseline.line("plain transaction send → receipt", "tx/s"));
    println!("{}", intake.line(&format!("POST /activity/track at {}/s", args.rate), "act/s"));
    let share = confirmed.len() as f64 / n as f64 * 100.0;
    let mut confirmed = Sample { latencies: confirmed, wall: started.elapsed() };
    if confirmed.latencies.is_empty() {
        bail!("no activity was confirmed within {} s of the last one ({failed} failed)", args.follow);
    }
    let secs = |d: Duration| d.as_secs_f64();
    let blocks = |d: Duration| d.as_secs_f64() / block_time.as_secs_f64();
    let (p50, p95, p99) = (confirmed.percentile(0.50), confirmed.percentile(0.95), confirmed.percentile(0.99));
    let max = confirmed.percentile(1.0);
    println!(
        "{:<34} p50 {:.2} s  p95 {:.2} s  p99 {:.2} s ({:.2} blocks)  max {:.2} s",
        "activity → confirmed",
        secs(p50),
        secs(p95),
        secs(p99),
        blocks(p99),
        secs(max)
    );
    println!("  p99 ratio to the plain transaction's p99: {:.2}x", secs(p99) / secs(baseline.percentile(0.99)));
    println!("  confirmed {} of {n} ({share:.2}%), failed {failed}, in {batches} batches", confirmed.latencies.len());
    if minted > 0 {
        println!(
            "  mirror gas per issued PTKN (anchors and badges included): {:.0} ({minted} mints)",
            gas as f64 / minted as f64
        );
    }
    api.abort();
    drop(chain);
    Ok(())
}

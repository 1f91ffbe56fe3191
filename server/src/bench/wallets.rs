//! `custody bench wallets`: wallet creation and status over HTTP against the raw HSM key-creation rate.
//!
//! It builds a throw-away environment (fresh SoftHSM token, SQLite file or a
//! given PostgreSQL URL, an ES256 token issuer, the deterministic contract
//! addresses) and the API in this process on a loopback port, then measures in
//! one run:
//!
//! 1. the baseline: the signing core's raw key creation (generate + wrap in the
//!    HSM, no database) at the same concurrency;
//! 2. `POST /v1/wallets` over HTTP: rate, latency percentiles, ratio to (1);
//! 3. `GET /wallet/status` over HTTP with user tokens: rate and percentiles;
//! 4. optionally, bulk enrolment (`custody enroll`'s code path) of more users.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use custody_hsm_sim::SoftHsm;
use custody_signer::{Backend, Hsm, KeyStore, Keyring, Pkcs11Config};
use serde_json::json;

use super::{measure, start_api};
use crate::config::Config;

/// Options of `custody bench wallets`.
#[derive(Debug, clap::Args)]
pub(crate) struct WalletsArgs {
    /// Wallets to create over HTTP.
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Requests in flight at once for creation and for the baseline.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// `GET /wallet/status` requests to send.
    #[arg(long, default_value_t = 20_000)]
    status_requests: usize,
    /// Requests in flight at once for status.
    #[arg(long, default_value_t = 16)]
    status_concurrency: usize,
    /// Users to enrol afterwards through `custody enroll`'s code path (0: skip).
    #[arg(long, default_value_t = 0)]
    enroll: usize,
    /// Database URL (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

#[expect(clippy::print_stdout, reason = "a load generator prints its figures")]
pub(super) async fn run(args: WalletsArgs, softhsm: SoftHsm) -> anyhow::Result<()> {
    if args.n == 0 || args.concurrency == 0 || args.status_concurrency == 0 {
        bail!("--n, --concurrency and --status-concurrency must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let db_url =
        args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let hsm = Hsm::connect(Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())).await?;

    // 1. Baseline: the signing core's raw key creation (HSM generate + wrap, no database).
    let keyring = Keyring::open(Backend::Pkcs11(hsm.clone()), KeyStore::connect(&db_url).await?).await?;
    let kek = format!("kek-v{}", keyring.current_kek().await?);
    let raw_n = args.n.min(2000);
    let mut raw = measure(raw_n, args.concurrency, |i| {
        let (hsm, kek) = (hsm.clone(), kek.clone());
        async move {
            hsm.create_wrapped_key(&format!("bench-raw-{i}"), &kek).await?;
            Ok(())
        }
    })
    .await?;
    drop(keyring);

    // The API in this process.
    let (jwt_private, jwt_public) = crate::devnet_auth::key_pair(dir.path())?;
    let deployment_file = dir.path().join("deployment.json");
    let contracts =
        custody_contracts::DeployConfig::single_operator(alloy::primitives::Address::repeat_byte(1)).addresses();
    let deployment = custody_contracts::Deployment { chain_id: 1337, block: 0, contracts };
    std::fs::write(&deployment_file, serde_json::to_string(&deployment)?)?;
    let mut config =
        crate::devnet::api_config(&softhsm, &db_url, None, &deployment_file, jwt_public, "127.0.0.1:0".parse()?);
    config.bundler = None;
    let (url, http, api) = start_api(config, 64).await?;

    // 2. Wallet creation over HTTP.
    let app = Arc::new(crate::devnet_auth::token(&jwt_private, "bench-app", &["app"])?);
    let mut create = measure(args.n, args.concurrency, |i| {
        let (http, url, app) = (http.clone(), url.clone(), app.clone());
        async move {
            let resp = http
                .post(format!("{url}/v1/wallets"))
                .bearer_auth(app.as_str())
                .header("Idempotency-Key", format!("bench-{i}"))
                .json(&json!({"user_id": format!("bench-user-{i}")}))
                .send()
                .await?;
            if resp.status() != 201 {
                bail!("POST /v1/wallets answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
            }
            Ok(())
        }
    })
    .await?;

    // 3. Status, as the users themselves (tokens minted before timing).
    let users = args.n.min(1000);
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..users)
            .map(|i| crate::devnet_auth::token(&jwt_private, &format!("bench-user-{i}"), &["user"]))
            .collect::<anyhow::Result<_>>()?,
    );
    let mut status = measure(args.status_requests, args.status_concurrency, |i| {
        let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
        async move {
            let resp = http.get(format!("{url}/wallet/status")).bearer_auth(&tokens[i % tokens.len()]).send().await?;
            let body: serde_json::Value = resp.json().await?;
            if body["ready"] != true {
                bail!("GET /wallet/status: {body}");
            }
            Ok(())
        }
    })
    .await?;

    let engine = if db_url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    println!("custody bench wallets: SoftHSM2, {engine}, {} cores", std::thread::available_parallelism()?.get());
    println!("{}", raw.line(&format!("raw key creation (c={})", args.concurrency), "key/s"));
    println!("{}", create.line(&format!("POST /v1/wallets (c={}, n={})", args.concurrency, args.n), "wal/s"));
    println!("  ratio to raw key creation: {:.2}x", create.rate() / raw.rate());
    println!("{}", status.line(&format!("GET /wallet/status (c={})", args.status_concurrency), "req/s"));

    // 4. Bulk enrolment through the CLI's code path, on the same service database.
    if args.enroll > 0 {
        let pool = custody_db::connect_pool(&db_url).await?;
        let keyring = Keyring::open(Backend::Pkcs11(hsm.clone()), KeyStore::from_pool(pool.clone())).await?;
        let wallets = crate::serve::wallets(&Config::default(), &deployment_file, &keyring, &pool).await?;
        let audit = crate::audit::Audit::new(pool);
        let ids: Vec<(u64, String)> = (0..args.enroll).map(|i| (i as u64 + 1, format!("enrol-{i}"))).collect();
        let bar = indicatif::ProgressBar::hidden();
        let started = Instant::now();
        let summary = crate::cli::enroll::enroll(&wallets, &audit, &ids, args.concurrency, &bar).await;
        let secs = started.elapsed().as_secs_f64();
        if !summary.failed.is_empty() {
            bail!("enrolment failed for {} users: {:?}", summary.failed.len(), summary.failed.first());
        }
        println!(
            "{:<34} {:>9.0} wal/s  {} users in {secs:.1} s ({:.1} min per 100,000)",
            format!("enrolment (c={})", args.concurrency),
            args.enroll as f64 / secs,
            args.enroll,
            secs / args.enroll as f64 * 100_000.0 / 60.0
        );
    }
    api.abort();
    Ok(())
}

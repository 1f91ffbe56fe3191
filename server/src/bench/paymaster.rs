//! `custody bench paymaster`: ERC-7677 `pm_getPaymasterData` over HTTP (policy check, budget reserved
//! in the database, the sponsorship signed in the HSM) against the paymaster key's own signing rate,
//! measured in the same run at the same concurrency.

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use anyhow::{Context, bail};
use custody_hsm_sim::SoftHsm;
use custody_signer::{Backend, Hsm, KeyClass, KeyStore, Keyring, Pkcs11Config};
use serde_json::json;

use super::{measure, start_api};

/// Options of `custody bench paymaster`.
#[derive(Debug, clap::Args)]
pub(crate) struct PaymasterArgs {
    /// Sponsorships to request.
    #[arg(long, default_value_t = 5000)]
    n: usize,
    /// Requests in flight at once (and signatures, for the baseline).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Database URL (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
    /// Give the policy counted budgets (a global and a per-sender operation limit, daily), so every
    /// sponsorship counts them under the policy's lock.
    #[arg(long)]
    counted: bool,
}

#[expect(clippy::print_stdout, reason = "a load generator prints its figures")]
pub(super) async fn run(args: PaymasterArgs, softhsm: SoftHsm) -> anyhow::Result<()> {
    if args.n == 0 || args.concurrency == 0 {
        bail!("--n and --concurrency must be at least 1");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    let db_url =
        args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let hsm = Hsm::connect(Pkcs11Config::new(softhsm.module(), softhsm.label(), softhsm.user_pin().clone())).await?;
    let keyring = Keyring::open(Backend::Pkcs11(hsm), KeyStore::connect(&db_url).await?).await?;
    keyring.create_infra("paymaster").await?;
    let key = keyring.signer(KeyClass::Infra, "paymaster").await?;

    // 1. Baseline: the paymaster key signing digests in the HSM (checked against its key), no database.
    let mut raw = measure(args.n, args.concurrency, |i| {
        let key = key.clone();
        async move {
            key.sign_digest(&B256::from(alloy::primitives::U256::from(i))).await?;
            Ok(())
        }
    })
    .await?;
    drop(keyring);

    // The API with the paymaster, in this process (addresses of the deterministic deployment, no chain).
    let (jwt_private, jwt_public) = crate::devnet_auth::key_pair(dir.path())?;
    let deployment_file = dir.path().join("deployment.json");
    let contracts = custody_contracts::DeployConfig::single_operator(key.address()).addresses();
    let deployment = custody_contracts::Deployment { chain_id: 1337, block: 0, contracts };
    std::fs::write(&deployment_file, serde_json::to_string(&deployment)?)?;
    let mut config =
        crate::devnet::api_config(&softhsm, &db_url, None, &deployment_file, jwt_public, "127.0.0.1:0".parse()?);
    config.bundler = None;
    let limit = |scope, max| custody_paymaster::Limit {
        scope,
        max_gas: None,
        max_ops: Some(max),
        reset: custody_paymaster::Reset::Daily,
    };
    let limits = if args.counted {
        vec![limit(custody_paymaster::Scope::Global, args.n as u64 + 1), limit(custody_paymaster::Scope::Sender, 10)]
    } else {
        Vec::new()
    };
    let policy = custody_paymaster::PolicyConfig { id: "bench".to_owned(), limits, ..Default::default() };
    config.paymaster = Some(custody_paymaster::PaymasterConfig {
        default_policy: policy.id.clone(),
        policies: vec![policy],
        ..Default::default()
    });
    let (url, http, api) = start_api(config, 64).await?;
    let app = Arc::new(crate::devnet_auth::token(&jwt_private, "bench-app", &["app"])?);
    let entry_point = custody_contracts::EntryPointVersion::V08.address();

    // 2. Sponsorships over HTTP, one sender each.
    let mut sponsor = measure(args.n, args.concurrency, |i| {
        let (http, url, app) = (http.clone(), url.clone(), app.clone());
        let sender = Address::from_word(B256::from(alloy::primitives::U256::from(i + 1)));
        let op = json!({"sender": sender, "nonce": "0x0", "callData": "0x", "callGasLimit": "0x10000",
            "verificationGasLimit": "0x20000", "preVerificationGas": "0xc000", "maxFeePerGas": "0x0",
            "maxPriorityFeePerGas": "0x0", "signature": "0x"});
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "pm_getPaymasterData",
            "params": [op, entry_point, "0x539", {}]});
        async move {
            let answer: serde_json::Value = http
                .post(format!("{url}/paymaster"))
                .bearer_auth(app.as_str())
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            if !answer["result"]["paymasterData"].is_string() {
                bail!("pm_getPaymasterData: {answer}");
            }
            Ok(())
        }
    })
    .await?;
    api.abort();

    let engine = if db_url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    let budgets = if args.counted { "counted budgets" } else { "no counted budgets" };
    println!(
        "custody bench paymaster: SoftHSM2, {engine}, {budgets}, {} cores",
        std::thread::available_parallelism()?.get()
    );
    println!("{}", raw.line(&format!("paymaster key signing (c={})", args.concurrency), "sig/s"));
    println!("{}", sponsor.line(&format!("pm_getPaymasterData (c={}, n={})", args.concurrency, args.n), "op/s"));
    println!("  ratio to the key's signing rate: {:.2}x", sponsor.rate() / raw.rate());
    Ok(())
}

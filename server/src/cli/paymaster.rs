//! `custody paymaster deposit`: PeruriPaymaster's EntryPoint deposits, and a top-up sent from an
//! infrastructure key through the transaction sender (recorded before it is broadcast; audited).

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use anyhow::{Context, bail};
use clap::Subcommand;
use custody_contracts::EntryPointVersion;
use custody_contracts::bindings::peruri_paymaster::PeruriPaymaster;
use custody_sender::{Call, Outcome, Sender, SenderConfig};
use serde_json::json;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum PaymasterCommand {
    /// Show each PeruriPaymaster's EntryPoint deposit; with --top-up, add to one first.
    Deposit {
        /// Wei to add to the deposit (sent as `deposit()` with that value).
        #[arg(long)]
        top_up: Option<u128>,
        /// The EntryPoint whose paymaster gets the top-up (`v0.7` or `v0.8`).
        #[arg(long, default_value = "v0.8", value_parser = parse_version)]
        entry_point: EntryPointVersion,
        /// The infrastructure key that pays the top-up.
        #[arg(long, default_value = "admin")]
        from: String,
    },
}

fn parse_version(text: &str) -> Result<EntryPointVersion, String> {
    EntryPointVersion::ALL.into_iter().find(|v| v.as_str() == text).ok_or_else(|| format!("{text}: v0.7 or v0.8"))
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
pub(crate) async fn run(cmd: PaymasterCommand, config: &Config) -> anyhow::Result<()> {
    let PaymasterCommand::Deposit { top_up, entry_point, from } = cmd;
    let url = config.chain.rpc_url.as_deref().context("needs [chain] rpc_url")?;
    let path = config.chain.deployment_file.as_deref().context("needs [chain] deployment_file")?;
    let deployment: custody_contracts::Deployment = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let provider = crate::serve::provider(url)?;
    if let Some(wei) = top_up {
        if wei == 0 {
            bail!("--top-up must be more than 0 wei");
        }
        let pool = custody_db::connect_pool(&config.database.url).await?;
        crate::db::migrate(&pool).await?;
        let keyring = super::keyring_on(config, custody_signer::KeyStore::from_pool(pool.clone())).await?;
        let key =
            keyring.signer(custody_signer::KeyClass::Infra, &from).await.with_context(|| format!("key {from}"))?;
        let paymaster = deployment.contracts.paymaster(entry_point);
        let trail = crate::audit::Audit::new(pool.clone());
        let details =
            json!({"amount_wei": wei.to_string(), "from": key.address(), "entry_point": entry_point.as_str()});
        let target = format!("paymaster:{paymaster}");
        super::audit(&trail, "paymaster.deposit", &target, "requested", &details).await?;
        let sender = Sender::open(pool, provider.clone(), SenderConfig::default()).await?;
        let call = Call {
            to: paymaster,
            input: PeruriPaymaster::depositCall {}.abi_encode().into(),
            value: U256::from(wei),
            gas_limit: None,
        };
        let id = format!("paymaster-deposit:{}:{}", entry_point.as_str(), custody_db::now_millis());
        let sent = sender.send(&id, &key, call, "").await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let outcome = loop {
            if let Some(settled) = sender.track(&key, "paymaster-deposit:").await?.into_iter().find(|s| s.id == id) {
                sender.finish(&id).await?;
                break settled.outcome;
            }
            if Instant::now() > deadline {
                bail!("the top-up {} (nonce {}) is not mined after 120 s; it stays tracked", sent.hash, sent.nonce);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        match outcome {
            Outcome::Included(receipt) if receipt.status() => {
                let details = json!({"amount_wei": wei.to_string(), "tx": receipt.transaction_hash});
                super::audit(&trail, "paymaster.deposit", &target, "deposited", &details).await?;
                println!(
                    "topped up {paymaster} ({}) by {wei} wei in {}",
                    entry_point.as_str(),
                    receipt.transaction_hash
                );
            }
            other => {
                super::audit(&trail, "paymaster.deposit", &target, "failed", &json!({"outcome": other.as_str()}))
                    .await?;
                bail!("the top-up did not take effect: {}", other.as_str());
            }
        }
    }
    for version in EntryPointVersion::ALL {
        let paymaster = deployment.contracts.paymaster(version);
        let deposit = PeruriPaymaster::new(paymaster, provider.clone()).getDeposit().call().await?;
        println!("{}  {paymaster}  deposit {deposit} wei", version.as_str());
    }
    Ok(())
}

//! The settler: reads the EntryPoints' UserOperationEvents whose paymaster is PeruriPaymaster and
//! settles their sponsorships at the gas used; then releases reservations whose signatures expired
//! before the last block read; and watches PeruriPaymaster's EntryPoint deposits.

use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use custody_contracts::bindings::peruri_paymaster::PeruriPaymaster;
use custody_contracts::{EntryPointVersion, IEntryPoint};
use tracing::{info, warn};

use crate::{Budget, Error, Paymaster, sponsorship_id};

/// Most blocks read in one step.
const MAX_RANGE: u64 = 2_000;

/// Follows the chain for one paymaster's sponsorships.
#[derive(Clone, Debug)]
pub struct Settler {
    budget: Budget,
    provider: DynProvider,
    paymasters: Vec<(EntryPointVersion, Address)>,
    min_deposit: u128,
    deposit_low: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Settler {
    /// The settler of `paymaster`'s sponsorships on `provider`'s chain.
    pub fn new(paymaster: &Paymaster, provider: DynProvider) -> Self {
        let paymasters = EntryPointVersion::ALL.iter().map(|v| (*v, paymaster.paymaster(*v))).collect();
        Self {
            budget: paymaster.budget().clone(),
            provider,
            paymasters,
            min_deposit: paymaster.config().min_deposit_wei,
            deposit_low: paymaster.deposit_low.clone(),
        }
    }

    /// Reads up to 2,000 blocks: settles what they include, releases what expired before the
    /// last of them. Returns the number of blocks read.
    pub async fn step(&self) -> Result<u64, Error> {
        self.budget.report_usage().await?;
        let latest = self.provider.get_block_number().await.map_err(Error::rpc("eth_blockNumber"))?;
        let from = match self.budget.cursor().await? {
            0 => latest, // first start: no sponsorship is older than the service
            n => n,
        };
        if from > latest {
            return Ok(0);
        }
        let to = latest.min(from + MAX_RANGE - 1);
        let filter = Filter::new()
            .address(EntryPointVersion::ALL.map(EntryPointVersion::address).to_vec())
            .event_signature(IEntryPoint::UserOperationEvent::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(Error::rpc("eth_getLogs"))?;
        for log in logs {
            let Some(version) = EntryPointVersion::from_address(log.address()) else { continue };
            let Ok(event) = IEntryPoint::UserOperationEvent::decode_log_data(log.data()) else { continue };
            if !self.paymasters.contains(&(version, event.paymaster)) {
                continue;
            }
            let id = sponsorship_id(version, event.sender, event.nonce);
            let gas = u64::try_from(event.actualGasUsed).unwrap_or(u64::MAX);
            let tx = log.transaction_hash.unwrap_or_default();
            if self.budget.settle(&id, gas, event.userOpHash, tx).await? {
                metrics::counter!("custody_paymaster_settled_total").increment(1);
            }
        }
        self.budget.set_cursor(to + 1).await?;
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(to))
            .await
            .map_err(Error::rpc("eth_getBlockByNumber"))?;
        if let Some(block) = block {
            let released = self.budget.release_expired(block.header.timestamp).await?;
            if released > 0 {
                metrics::counter!("custody_paymaster_released_total").increment(released);
                info!(released, "expired sponsorships released");
            }
        }
        self.watch_deposits().await?;
        Ok(to + 1 - from)
    }

    /// Reads each PeruriPaymaster's EntryPoint deposit into `custody_paymaster_deposit_wei` and the
    /// paymaster's readiness (low below `min_deposit_wei`).
    async fn watch_deposits(&self) -> Result<(), Error> {
        let mut low = false;
        for (version, address) in &self.paymasters {
            let deposit = PeruriPaymaster::new(*address, self.provider.clone())
                .getDeposit()
                .call()
                .await
                .map_err(Error::rpc("getDeposit"))?;
            let wei: u128 = deposit.saturating_to();
            metrics::gauge!("custody_paymaster_deposit_wei", "entry_point" => version.as_str()).set(wei as f64);
            low |= wei < self.min_deposit;
        }
        self.deposit_low.store(low, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Steps every `interval` until `stop` completes; a failed step is logged and retried.
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let pause = match self.step().await {
                Ok(n) if n >= MAX_RANGE => Duration::ZERO,
                Ok(_) => interval,
                Err(e) => {
                    warn!(error = %e, "paymaster settler step failed; retrying");
                    interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

//! The bundler inside `custody serve`: ERC-7769 JSON-RPC at `POST /rpc`, validation
//! in revm with ERC-7562 (the simulator), and one bundle builder per bundler key.
//!
//! Peruri's paymasters get the full rules: they are staked at deployment, which
//! lets them read their signer set (ERC-7562 STO-031). Peruri's account factories
//! are trusted in validation: their clone deployment reads the factory's balance
//! (OP-080), which an unstaked factory may not. Both are exempt from reputation
//! and mempool counts (`trusted_entities`), so bulk enrolment is not throttled.

use std::sync::Arc;

use alloy::providers::{Provider, ProviderBuilder};
use anyhow::Context;
use custody_bundler::{
    Bundler, BundlerConfig, EstimateGas,
    sim::{SimConfig, Simulator},
    validation::Validate,
};
use custody_contracts::{Deployment, EntryPointVersion};
use custody_signer::Keyring;
use sqlx::AnyPool;

use crate::tasks::Tasks;

/// Builds the bundler over the service's keyring and database, and starts its
/// builders as the supervised task `bundle-builders`.
pub(crate) async fn start(
    config: &BundlerConfig,
    deployment: &Deployment,
    rpc_url: &str,
    keyring: &Keyring,
    pool: &AnyPool,
    tasks: &mut Tasks,
) -> anyhow::Result<Arc<Bundler>> {
    let provider = ProviderBuilder::new().connect_http(rpc_url.parse().context("chain.rpc_url")?).erased();
    let contracts = &deployment.contracts;
    let ours: Vec<_> = EntryPointVersion::ALL
        .into_iter()
        .flat_map(|v| [contracts.account_factory(v), contracts.paymaster(v)])
        .collect();
    let mut sim = SimConfig::new(deployment.chain_id);
    sim.trusted.factories.extend(EntryPointVersion::ALL.map(|v| contracts.account_factory(v)));
    sim.trusted.factories.extend(config.trusted_entities.iter().copied());
    sim.trusted.paymasters.extend(config.trusted_entities.iter().copied());
    (sim.min_stake, sim.min_unstake_delay, sim.hardfork) =
        (config.min_stake_wei, config.min_unstake_delay_secs, config.hardfork);
    let simulator = Arc::new(Simulator::new(provider.clone(), sim));

    let mut config = config.clone();
    if config.require_sponsorship {
        config.sponsors.extend(EntryPointVersion::ALL.map(|v| contracts.paymaster(v)));
    }
    config.trusted_entities.extend(ours);
    let signers = Bundler::signers_from_keyring(keyring, &config).await.context("bundler keys")?;
    let validator: Arc<dyn Validate> = simulator.clone();
    let estimator: Arc<dyn EstimateGas> = simulator;
    let bundler = Bundler::new(config, pool.clone(), signers, provider, validator, Some(estimator))
        .await
        .context("starting the bundler")?;
    let (builders, stopping) = (bundler.clone(), tasks.stopping());
    tasks.spawn("bundle-builders", async move {
        if let Err(e) = builders.run(stopping).await {
            tracing::error!(error = %e, "bundle builders stopped");
        }
    });
    Ok(bundler)
}

/// The bundler's gas estimation, for the paymaster's `pm_sponsorUserOperation`.
#[derive(Debug)]
pub(crate) struct Estimator(pub(crate) Arc<Bundler>);

#[async_trait::async_trait]
impl custody_paymaster::Estimate for Estimator {
    async fn estimate(
        &self,
        op: &custody_contracts::UserOperation,
        version: EntryPointVersion,
    ) -> Result<custody_paymaster::GasLimits, String> {
        match self.0.estimate_user_operation_gas(op, version.address(), None).await {
            Ok(Some(gas)) => Ok(custody_paymaster::GasLimits {
                pre_verification_gas: gas.pre_verification_gas,
                verification_gas_limit: gas.verification_gas_limit,
                call_gas_limit: gas.call_gas_limit,
                paymaster_verification_gas_limit: gas.paymaster_verification_gas_limit,
            }),
            Ok(None) => Err("the bundler has no gas estimator".to_owned()),
            Err(e) => Err(e.message),
        }
    }
}

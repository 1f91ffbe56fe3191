//! In-process validation: `simulateValidation` of EntryPoint v0.7/v0.8 in revm over the node's state,
//! with an ERC-7562 inspector, and gas estimation.
//!
//! ```text
//!  Simulator::validate(op) ─► StateCache::refresh (latest block; new block ⇒ cache dropped)
//!        │ spawn_blocking
//!        ▼
//!  revm: EntryPointSimulations code at the EntryPoint ── RpcDb (lazy eth_getBalance/Code/StorageAt,
//!        │  simulateValidation(op)     + Tracer             cached per block)
//!        ▼
//!  outcome: ValidationResult | FailedOp(AAxx) ─► signature, time range, stake, ERC-7562 rules ─► ValidatedOp
//! ```
//!
//! Public surface: [`Simulator`] (`new`, `connect`, [`crate::validation::Validate`],
//! [`crate::EstimateGas`] / `estimate_gas`, `check_code_hashes`, `simulate_bare`), [`SimConfig`],
//! [`Trusted`], [`pre_verification_gas`].

mod db;
mod estimate;
mod evm;
mod outcome;
mod rules;
mod tracer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::state::StateOverride;
use alloy::sol_types::SolCall;
use custody_contracts::entry_point::IEntryPointSimulations::{ValidationResult, simulateValidationCall};
use custody_contracts::{EntryPointVersion, PackedUserOperation};
use revm::bytecode::Bytecode;
use revm::context_interface::result::ExecutionResult;
use tokio::runtime::Handle;

pub use self::db::BlockInfo;
use self::db::StateCache;
pub use self::estimate::pre_verification_gas;
use self::evm::{EvmError, SimCall, SimRun};
use self::outcome::{SIG_FAILED, ValidationData, revert_error};
use self::tracer::{Parties, Tracer};
use crate::config::Hardfork;
use crate::validation::{Entity, RpcErrorCode, StakeInfo, Validate, ValidatedOp, ValidationError};

/// Entities whose validation skips the ERC-7562 rule checks (signature, nonce, prefund and time range
/// are still checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trusted {
    pub senders: HashSet<Address>,
    pub factories: HashSet<Address>,
    pub paymasters: HashSet<Address>,
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub chain_id: u64,
    pub trusted: Trusted,
    /// Minimum stake (wei) for an entity to count as staked (ERC-7562 `MIN_STAKE_VALUE`).
    pub min_stake: U256,
    /// Minimum unstake delay (seconds) for an entity to count as staked (`MIN_UNSTAKE_DELAY`).
    pub min_unstake_delay: u64,
    /// An operation must stay valid at least this long after validation (seconds), else -32503.
    pub min_valid_for: u64,
    /// Gas limit of simulation calls.
    pub sim_gas_limit: u64,
    /// How long a pinned block is used before the node is asked for the latest one again
    /// (zero: before every simulation).
    pub block_max_age: Duration,
    /// The chain's hardfork: the EVM rules simulations run under.
    pub hardfork: Hardfork,
}

impl SimConfig {
    /// Defaults for `chain_id`: no trusted entities, ERC-7562's reference minimums (1 ETH, 1 day),
    /// 30 s of validity, 20 M gas per simulation, the latest block checked before every simulation,
    /// Cancun.
    pub fn new(chain_id: u64) -> Self {
        Self {
            chain_id,
            trusted: Trusted::default(),
            min_stake: U256::from(10u64.pow(18)),
            min_unstake_delay: 86_400,
            min_valid_for: 30,
            sim_gas_limit: 20_000_000,
            block_max_age: Duration::ZERO,
            hardfork: Hardfork::Cancun,
        }
    }
}

/// Validates and estimates UserOperations in revm over the node's state.
#[derive(Clone, Debug)]
pub struct Simulator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: DynProvider,
    cache: StateCache,
    config: SimConfig,
    simulation_code: HashMap<EntryPointVersion, Bytecode>,
}

/// What one simulateValidation run produced, before the rules.
#[derive(Debug)]
struct Simulated {
    block: BlockInfo,
    result: ValidationResult,
    run: SimRun,
    parties: Parties,
}

impl Simulator {
    /// A simulator reading the chain through `provider`.
    pub fn new(provider: DynProvider, config: SimConfig) -> Self {
        let simulation_code = EntryPointVersion::ALL
            .into_iter()
            .map(|v| (v, Bytecode::new_raw(v.simulations_artifact().deployed_bytecode.clone())))
            .collect();
        let cache = StateCache::new(provider.clone());
        Self { inner: Arc::new(Inner { provider, cache, config, simulation_code }) }
    }

    /// A simulator reading the chain at `rpc_url` (plain HTTP JSON-RPC).
    pub fn connect(rpc_url: &str, config: SimConfig) -> Result<Self, ValidationError> {
        let url = rpc_url
            .parse()
            .map_err(|e| ValidationError::new(RpcErrorCode::Internal, format!("bad node URL {rpc_url}: {e}")))?;
        Ok(Self::new(ProviderBuilder::new().connect_http(url).erased(), config))
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Runs `simulateValidation` in bare revm (no inspector, no rules) and returns the gas it used:
    /// the baseline of the validation benchmark.
    pub async fn simulate_bare(
        &self,
        op: &PackedUserOperation,
        version: EntryPointVersion,
    ) -> Result<u64, ValidationError> {
        let sim = self.simulate(op, version, false).await?.0;
        Ok(sim.run.result.tx_gas_used())
    }

    /// Checks that every contract validation touched still has the code it had then (ERC-7562
    /// COD-010); the builder does this through [`Validate::recheck`] before bundling.
    pub async fn check_code_hashes(&self, op: &ValidatedOp) -> Result<(), ValidationError> {
        match self.recheck(&[op]).await?.pop().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The current code hash of each of `addresses` (empty code: `KECCAK_EMPTY`), read concurrently.
    async fn code_hashes(&self, addresses: HashSet<Address>) -> Result<HashMap<Address, B256>, ValidationError> {
        let mut reads = tokio::task::JoinSet::new();
        for address in addresses {
            let provider = self.inner.provider.clone();
            reads.spawn(async move { (address, provider.get_code_at(address).await) });
        }
        let mut out = HashMap::new();
        while let Some(read) = reads.join_next().await {
            let (address, code) = read.map_err(|e| internal(format!("eth_getCode task: {e}")))?;
            let code = code.map_err(|e| internal(format!("eth_getCode {address}: {e}")))?;
            out.insert(address, if code.is_empty() { revm::primitives::KECCAK_EMPTY } else { keccak256(&code) });
        }
        Ok(out)
    }

    fn parties(op: &PackedUserOperation, version: EntryPointVersion) -> Parties {
        let entry_point = version.address();
        Parties {
            entry_point,
            sender_creator: entry_point.create(1),
            sender: op.sender,
            factory: op.initCode.get(..20).map(Address::from_slice),
            paymaster: op.paymasterAndData.get(..20).map(Address::from_slice),
        }
    }

    /// Runs `simulateValidation` (traced or bare) at the latest block and decodes its result.
    async fn simulate(
        &self,
        op: &PackedUserOperation,
        version: EntryPointVersion,
        traced: bool,
    ) -> Result<(Simulated, Option<Tracer>), ValidationError> {
        let data: Bytes = simulateValidationCall { userOp: op.clone() }.abi_encode().into();
        let parties = Self::parties(op, version);
        let (block, run, tracer) = self
            .run(
                version,
                data,
                StateOverride::default(),
                traced.then(|| Tracer::new(parties, self.inner.config.hardfork)),
            )
            .await?;
        covers_base_fee(op, &block)?;
        let result = match &run.result {
            ExecutionResult::Success { output, .. } => simulateValidationCall::abi_decode_returns(output.data())
                .map_err(|e| internal(format!("undecodable ValidationResult: {e}")))?,
            ExecutionResult::Revert { output, .. } => return Err(revert_error(output, parties.paymaster)),
            ExecutionResult::Halt { reason, .. } => {
                return Err(ValidationError::new(
                    RpcErrorCode::EntryPointRejected,
                    format!("simulateValidation halted: {reason:?} (are the gas limits too high for the simulation?)"),
                ));
            }
        };
        Ok((Simulated { block, result, run, parties }, tracer))
    }

    /// Runs one call into the EntryPoint (simulation code in place) at the latest block.
    async fn run(
        &self,
        version: EntryPointVersion,
        data: Bytes,
        overrides: StateOverride,
        tracer: Option<Tracer>,
    ) -> Result<(BlockInfo, SimRun, Option<Tracer>), ValidationError> {
        let block =
            self.inner.cache.refresh(self.inner.config.block_max_age).await.map_err(|e| internal(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        let handle = Handle::current();
        let (run, tracer) = tokio::task::spawn_blocking(move || {
            let code = inner.simulation_code.get(&version).ok_or_else(|| EvmError::Evm("no code".to_owned()))?;
            let call = SimCall {
                chain_id: inner.config.chain_id,
                hardfork: inner.config.hardfork,
                block,
                entry_point: version.address(),
                simulation_code: code,
                data,
                gas_limit: inner.config.sim_gas_limit,
                overrides: &overrides,
            };
            let db = inner.cache.at(block, handle);
            match tracer {
                Some(t) => evm::run_traced(&call, db, t).map(|(run, t)| (run, Some(t))),
                None => evm::run_bare(&call, db).map(|run| (run, None)),
            }
        })
        .await
        .map_err(|e| internal(format!("simulation task failed: {e}")))?
        .map_err(|e| internal(e.to_string()))?;
        Ok((block, run, tracer))
    }

    fn is_staked(&self, info: &custody_contracts::entry_point::IEntryPointSimulations::StakeInfo) -> bool {
        let c = &self.inner.config;
        info.stake >= c.min_stake && info.unstakeDelaySec >= U256::from(c.min_unstake_delay)
    }

    /// ERC-7769's data for -32505: the entity's address and the stake it would need.
    fn with_minimums(&self, mut e: ValidationError, parties: &Parties) -> ValidationError {
        if e.code != RpcErrorCode::StakeTooLow {
            return e;
        }
        let c = &self.inner.config;
        let mut data = e.data.take().unwrap_or_else(|| serde_json::json!({}));
        let entity: Option<Entity> = serde_json::from_value(data["entity"].clone()).ok();
        let address = match entity {
            Some(Entity::Sender) => Some(parties.sender),
            Some(Entity::Factory) => parties.factory,
            Some(Entity::Paymaster) => parties.paymaster,
            Some(Entity::Aggregator) | None => None,
        };
        if let (Some(entity), Some(address)) = (entity, address) {
            data[format!("{entity:?}").to_lowercase()] = serde_json::json!(address);
        }
        data["minimumStake"] = serde_json::json!(c.min_stake);
        data["minimumUnstakeDelay"] = serde_json::json!(U256::from(c.min_unstake_delay));
        e.with_data(data)
    }

    fn is_trusted(&self, parties: &Parties, entity: Entity) -> bool {
        let t = &self.inner.config.trusted;
        match entity {
            Entity::Sender => t.senders.contains(&parties.sender),
            Entity::Factory => parties.factory.is_some_and(|f| t.factories.contains(&f)),
            Entity::Paymaster => parties.paymaster.is_some_and(|p| t.paymasters.contains(&p)),
            Entity::Aggregator => false,
        }
    }

    /// Signature, time range, stake and ERC-7562 checks on a simulation; builds the [`ValidatedOp`].
    fn judge(
        &self,
        op: &PackedUserOperation,
        version: EntryPointVersion,
        sim: &Simulated,
        tracer: &Tracer,
    ) -> Result<ValidatedOp, ValidationError> {
        let r = &sim.result;
        let account = ValidationData::parse(r.returnInfo.accountValidationData);
        let paymaster = ValidationData::parse(r.returnInfo.paymasterValidationData);
        if account.aggregator == SIG_FAILED {
            return Err(ValidationError::new(
                RpcErrorCode::InvalidSignature,
                "invalid account signature: validateUserOp returned SIG_VALIDATION_FAILED (check the signer and the userOpHash for this EntryPoint and chain)",
            ));
        }
        if account.aggregator != Address::ZERO {
            return Err(ValidationError::new(
                RpcErrorCode::UnsupportedAggregator,
                format!("aggregator {} is not supported", account.aggregator),
            ));
        }
        if paymaster.aggregator != Address::ZERO {
            return Err(ValidationError::new(
                RpcErrorCode::InvalidSignature,
                "invalid paymaster signature: validatePaymasterUserOp returned SIG_VALIDATION_FAILED",
            ));
        }
        let valid_after = account.valid_after.max(paymaster.valid_after);
        let valid_until = account.valid_until.min(paymaster.valid_until);
        let now = sim.block.timestamp;
        let min_until = now.saturating_add(self.inner.config.min_valid_for);
        if valid_until <= min_until {
            return Err(ValidationError::new(
                RpcErrorCode::ShortDeadline,
                format!(
                    "validUntil {valid_until} is expired or too close: the operation must be valid until at least {min_until} (block time {now} + {} s)",
                    self.inner.config.min_valid_for
                ),
            )
            .with_data(serde_json::json!({ "validAfter": valid_after, "validUntil": valid_until })));
        }
        if valid_after > now {
            return Err(ValidationError::new(
                RpcErrorCode::ShortDeadline,
                format!("validAfter {valid_after} is in the future (block time {now})"),
            )
            .with_data(serde_json::json!({ "validAfter": valid_after, "validUntil": valid_until })));
        }

        let parties = sim.parties;
        let stake_of = |entity: Entity| match entity {
            Entity::Sender => self.is_staked(&r.senderInfo),
            Entity::Factory => self.is_staked(&r.factoryInfo),
            Entity::Paymaster => self.is_staked(&r.paymasterInfo),
            Entity::Aggregator => false,
        };
        let trusted = |entity: Entity| self.is_trusted(&parties, entity);
        let has_code = |address: Address| {
            sim.run.state.get(&address).is_some_and(|a| a.info.code_hash != revm::primitives::KECCAK_EMPTY)
        };
        let facts = rules::EntityFacts {
            parties: &parties,
            sender_exists: op.initCode.is_empty(),
            staked: &stake_of,
            has_code: &has_code,
            trusted: &trusted,
            paymaster_context: parties.paymaster.is_some() && !r.returnInfo.paymasterContext.is_empty(),
        };
        let accessed_addresses = rules::check(tracer, &facts).map_err(|e| self.with_minimums(e, &parties))?;

        let mut code_hashes = tracer.code_hashes.clone();
        for address in tracer.ext_code_targets.keys() {
            if let Some(account) = sim.run.state.get(address) {
                code_hashes.insert(*address, account.info.code_hash);
            }
        }
        code_hashes.retain(|a, _| *a != parties.entry_point && !tracer.created.contains(a));

        let info =
            |address: Address, s: &custody_contracts::entry_point::IEntryPointSimulations::StakeInfo| StakeInfo {
                address,
                stake: s.stake,
                unstake_delay_sec: u64::try_from(s.unstakeDelaySec).unwrap_or(u64::MAX),
            };
        let mut staked = vec![(Entity::Sender, stake_of(Entity::Sender))];
        if parties.factory.is_some() {
            staked.push((Entity::Factory, stake_of(Entity::Factory)));
        }
        if parties.paymaster.is_some() {
            staked.push((Entity::Paymaster, stake_of(Entity::Paymaster)));
        }
        let pre_op_gas = u64::try_from(r.returnInfo.preOpGas).unwrap_or(u64::MAX);
        let pvg = u64::try_from(op.preVerificationGas).unwrap_or(u64::MAX);
        Ok(ValidatedOp {
            user_op_hash: op.hash(version, version.address(), self.inner.config.chain_id),
            entry_point: version,
            block_number: sim.block.number,
            prefund: r.returnInfo.prefund,
            valid_after,
            valid_until,
            sender: info(op.sender, &r.senderInfo),
            factory: parties.factory.map(|f| info(f, &r.factoryInfo)),
            paymaster: parties.paymaster.map(|p| info(p, &r.paymasterInfo)),
            aggregator: None,
            staked,
            code_hashes: code_hashes.into_iter().collect::<Vec<(Address, B256)>>(),
            accessed_addresses,
            validation_gas_used: pre_op_gas.saturating_sub(pvg),
        })
    }
}

fn internal(message: String) -> ValidationError {
    tracing::warn!(%message, "simulation failed");
    ValidationError::new(RpcErrorCode::Internal, message)
}

#[async_trait::async_trait]
impl Validate for Simulator {
    async fn validate(
        &self,
        op: &PackedUserOperation,
        entry_point: EntryPointVersion,
    ) -> Result<ValidatedOp, ValidationError> {
        let (sim, tracer) = self.simulate(op, entry_point, true).await?;
        let tracer = tracer.ok_or_else(|| internal("traced simulation returned no trace".to_owned()))?;
        self.judge(op, entry_point, &sim, &tracer)
    }

    async fn recheck(&self, ops: &[&ValidatedOp]) -> Result<Vec<Option<ValidationError>>, ValidationError> {
        let addresses = ops.iter().flat_map(|o| o.code_hashes.iter().map(|(a, _)| *a)).collect();
        let current = self.code_hashes(addresses).await?;
        Ok(ops
            .iter()
            .map(|op| {
                let changed = op.code_hashes.iter().find(|(a, h)| current.get(a) != Some(h))?.0;
                Some(
                    ValidationError::new(
                        RpcErrorCode::BannedOpcode,
                        format!("code of {changed} changed since validation (ERC-7562 COD-010)"),
                    )
                    .with_data(serde_json::json!({ "address": changed, "rule": "COD-010" })),
                )
            })
            .collect())
    }
}

/// ERC-4337: an operation's maxFeePerGas must at least cover the base fee of the block it is validated at
/// (always true on a zero-fee chain).
fn covers_base_fee(op: &PackedUserOperation, block: &BlockInfo) -> Result<(), ValidationError> {
    let (_, max_fee) = custody_contracts::userop::unpack_u128s(op.gasFees);
    let base_fee = u128::from(block.base_fee);
    if max_fee >= base_fee {
        return Ok(());
    }
    Err(ValidationError::new(
        RpcErrorCode::InvalidParams,
        format!("maxFeePerGas {max_fee} is below the current base fee {base_fee}: raise it to at least the base fee"),
    )
    .with_data(serde_json::json!({ "maxFeePerGas": max_fee.to_string(), "baseFee": base_fee.to_string() })))
}

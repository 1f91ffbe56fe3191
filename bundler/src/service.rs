//! The bundler service: admission (`eth_sendUserOperation`), lookups, debug controls, and the
//! builder tasks ([`Bundler::run`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::state::StateOverride;
use custody_contracts::{EntryPointVersion, IEntryPoint, UserOperation};
use custody_signer::{EthSigner, KeyClass, Keyring};
use sqlx::AnyPool;
use tokio::sync::Mutex;
use tracing::{error, info};

use crate::config::{BundlerConfig, BundlingMode};
use crate::error::BundlerError;
use crate::estimate::{EstimateGas, GasEstimate};
use crate::metrics;
use crate::pool::{Mempool, Precheck};
use crate::receipts::ReceiptCache;
use crate::reputation::{Reputation, ReputationBook, ReputationStatus};
use crate::store::{OpStatus, Store, StoredOp};
use crate::validation::{RpcErrorCode, Validate, ValidatedOp, ValidationError};

/// One bundler key: its signer and the state of the task that sends with it.
pub(crate) struct KeySlot {
    pub(crate) signer: EthSigner,
    pub(crate) state: Mutex<KeyState>,
}

impl std::fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlot").field("address", &self.signer.address()).finish_non_exhaustive()
    }
}

/// What a key's task remembers between blocks.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    /// Last block a bundle was sent in, per entry point (one bundle per block).
    pub(crate) last_bundle_block: HashMap<EntryPointVersion, u64>,
    /// When the last bundle was sent, per entry point (for `min_bundle_interval_ms`).
    pub(crate) last_bundle_at: HashMap<EntryPointVersion, Instant>,
}

/// The bundler: mempool, reputation, builders and receipts over one database and one node.
pub struct Bundler {
    pub(crate) config: BundlerConfig,
    pub(crate) chain_id: u64,
    pub(crate) store: Store,
    pub(crate) mempool: Mempool,
    pub(crate) reputation: ReputationBook,
    pub(crate) provider: DynProvider,
    /// Sends the bundles: nonces, records before broadcast, bumps and cancellations, receipts.
    pub(crate) sender: custody_sender::Sender,
    pub(crate) validator: Arc<dyn Validate>,
    pub(crate) estimator: Option<Arc<dyn EstimateGas>>,
    pub(crate) keys: Vec<Arc<KeySlot>>,
    pub(crate) mode: std::sync::RwLock<BundlingMode>,
    /// Held from bundle selection until its operations are marked submitted, so two keys never take
    /// the same operations.
    pub(crate) selection: HashMap<EntryPointVersion, Mutex<()>>,
    /// Receipts of recently mined bundles, shared by their operations' receipt lookups.
    pub(crate) receipts: ReceiptCache,
}

impl std::fmt::Debug for Bundler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundler")
            .field("chain_id", &self.chain_id)
            .field("entry_points", &self.config.entry_points)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// An operation as `eth_getUserOperationByHash` and `debug_bundler_dumpMempool` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpView {
    pub hash: B256,
    pub entry_point: Address,
    pub op: UserOperation,
    pub status: OpStatus,
    pub reason: Option<String>,
    pub tx_hash: Option<B256>,
    pub block_number: Option<u64>,
    pub block_hash: Option<B256>,
}

impl OpView {
    fn from_stored(s: StoredOp) -> Self {
        Self {
            hash: s.hash,
            entry_point: s.entry_point.address(),
            op: s.op,
            status: s.status,
            reason: s.reason,
            tx_hash: s.tx_hash,
            block_number: s.block_number,
            block_hash: s.block_hash,
        }
    }
}

impl Bundler {
    /// A bundler over `pool` (its migrations are applied here), sending with `signers` through
    /// `provider`. `estimator` may be `None` until the simulator provides one.
    pub async fn new(
        config: BundlerConfig,
        pool: AnyPool,
        signers: Vec<EthSigner>,
        provider: DynProvider,
        validator: Arc<dyn Validate>,
        estimator: Option<Arc<dyn EstimateGas>>,
    ) -> Result<Arc<Self>, BundlerError> {
        config.validate()?;
        if signers.is_empty() {
            return Err(BundlerError::Config("no bundler signer".to_owned()));
        }
        let chain_id = provider.get_chain_id().await.map_err(|e| BundlerError::node("eth_chainId", e))?;
        let sender_config = custody_sender::SenderConfig {
            stuck_after_blocks: config.stuck_after_blocks,
            // Stuck is counted in blocks only, as `stuck_after_blocks` says.
            stuck_after: Duration::MAX,
            max_bumps: config.max_bumps,
        };
        let sender = custody_sender::Sender::open(pool.clone(), provider.clone(), sender_config).await?;
        let store = Store::open(pool).await?;
        let reputation = ReputationBook::new(store.clone());
        let keys = signers
            .into_iter()
            .map(|signer| Arc::new(KeySlot { signer, state: Mutex::new(KeyState::default()) }))
            .collect();
        let selection = config.entry_points.iter().map(|v| (*v, Mutex::new(()))).collect();
        info!(chain_id, entry_points = ?config.entry_points, "bundler ready");
        Ok(Arc::new(Self {
            mode: std::sync::RwLock::new(config.bundling_mode),
            mempool: Mempool::new(store.clone(), reputation.clone(), config.trusted_entities.clone()),
            config,
            chain_id,
            store,
            reputation,
            provider,
            sender,
            validator,
            estimator,
            keys,
            selection,
            receipts: ReceiptCache::default(),
        }))
    }

    /// The signers of the configured bundler keys (`keys`, class infra) from `keyring`.
    pub async fn signers_from_keyring(
        keyring: &Keyring,
        config: &BundlerConfig,
    ) -> Result<Vec<EthSigner>, BundlerError> {
        let mut out = Vec::new();
        for name in &config.keys {
            out.push(keyring.signer(KeyClass::Infra, name).await?);
        }
        Ok(out)
    }

    /// The configuration.
    pub fn config(&self) -> &BundlerConfig {
        &self.config
    }

    /// The chain id of the node.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Addresses of the bundler keys.
    pub fn key_addresses(&self) -> Vec<Address> {
        self.keys.iter().map(|k| k.signer.address()).collect()
    }

    /// The served entry point at `address`, or -32602.
    pub fn entry_point(&self, address: Address) -> Result<EntryPointVersion, ValidationError> {
        EntryPointVersion::from_address(address).filter(|v| self.config.entry_points.contains(v)).ok_or_else(|| {
            ValidationError::new(
                RpcErrorCode::InvalidParams,
                format!(
                    "entry point {address} is not supported; use one of {}",
                    self.supported_entry_points().iter().map(|a| a.to_checksum(None)).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// `eth_supportedEntryPoints`.
    pub fn supported_entry_points(&self) -> Vec<Address> {
        self.config.entry_points.iter().map(|v| v.address()).collect()
    }

    /// `eth_sendUserOperation`: validates and admits `op`, returning its userOpHash.
    pub async fn send_user_operation(&self, op: UserOperation, entry_point: Address) -> Result<B256, ValidationError> {
        let version = self.entry_point(entry_point)?;
        metrics::op_received(version);
        let result = self.admit(op, version).await;
        match &result {
            Ok(_) => metrics::op_accepted(version),
            Err(e) => {
                let rule = e.data.as_ref().and_then(|d| d.get("rule")).and_then(|r| r.as_str());
                metrics::op_rejected(version, e.code, rule);
            }
        }
        result
    }

    /// `debug_bundler_addUserOps`: puts `ops` in `entry_point`'s mempool (the first one served when
    /// `None`) as if they had passed validation: hashed and prechecked (known ones and replacements as
    /// `eth_sendUserOperation` treats them), entity limits and roles checked, not simulated, no entity
    /// staked (ERC-7769's debug method, for tests that build a mempool by hand). Their hashes, in order.
    pub async fn add_user_ops(
        &self,
        ops: Vec<UserOperation>,
        entry_point: Option<Address>,
    ) -> Result<Vec<B256>, ValidationError> {
        let version = match entry_point {
            Some(address) => self.entry_point(address)?,
            None => *self.config.entry_points.first().ok_or_else(|| {
                ValidationError::new(RpcErrorCode::InvalidParams, "this bundler serves no entry point")
            })?,
        };
        let mut hashes = Vec::with_capacity(ops.len());
        for op in ops {
            let packed = op.pack().map_err(|e| {
                ValidationError::new(RpcErrorCode::InvalidParams, format!("invalid UserOperation: {e}"))
            })?;
            if packed.is_eip7702() {
                return Err(self.eip7702_refusal());
            }
            let hash = packed.hash(version, version.address(), self.chain_id);
            let replaces = match self.mempool.precheck(version, hash, &op).await? {
                Precheck::Known => {
                    hashes.push(hash);
                    continue;
                }
                Precheck::New => None,
                Precheck::Replaces(old) => Some(old),
            };
            let assumed = ValidatedOp::assumed(hash, version, &op);
            self.mempool.admit(version, hash, op, assumed, replaces, None).await?;
            hashes.push(hash);
        }
        metrics::mempool_size(version, self.store.pending_count(version).await?);
        Ok(hashes)
    }

    /// The refusal of an EIP-7702 operation (an `eip7702Auth`, or the `0x7702` initCode marker): this
    /// bundler does not carry authorizations, and on a chain without EIP-7702 (by `hardfork`) such an
    /// operation cannot be valid at all. Its hash would differ too (the delegate's code goes into it).
    pub fn eip7702_refusal(&self) -> ValidationError {
        let hardfork = self.config.hardfork;
        let why = if hardfork.has_eip7702() {
            format!("this bundler does not carry EIP-7702 authorizations yet (the chain is on {})", hardfork.as_str())
        } else {
            format!("the chain's hardfork ({}, bundler.hardfork) has no EIP-7702 delegations", hardfork.as_str())
        };
        ValidationError::new(RpcErrorCode::InvalidParams, format!("EIP-7702 operations are not accepted: {why}"))
    }

    async fn admit(&self, op: UserOperation, version: EntryPointVersion) -> Result<B256, ValidationError> {
        if !self.config.sponsors.is_empty() && !op.paymaster.is_some_and(|p| self.config.sponsors.contains(&p)) {
            return Err(ValidationError::new(
                RpcErrorCode::PaymasterRejected,
                "this bundler carries only operations sponsored by its paymaster (pm_getPaymasterData)",
            )
            .with_data(serde_json::json!({ "paymaster": op.paymaster.unwrap_or_default() })));
        }
        let packed = op
            .pack()
            .map_err(|e| ValidationError::new(RpcErrorCode::InvalidParams, format!("invalid UserOperation: {e}")))?;
        if packed.is_eip7702() {
            return Err(self.eip7702_refusal());
        }
        if op.max_gas() > self.config.max_bundle_gas {
            return Err(ValidationError::new(
                RpcErrorCode::InvalidParams,
                format!(
                    "the operation's gas limits add up to {}, over max_bundle_gas {}: it could never be bundled",
                    op.max_gas(),
                    self.config.max_bundle_gas
                ),
            ));
        }
        let hash = packed.hash(version, version.address(), self.chain_id);
        let replaces = match self.mempool.precheck(version, hash, &op).await? {
            Precheck::Known => return Ok(hash),
            Precheck::New => None,
            Precheck::Replaces(old) => Some(old),
        };
        let started = Instant::now();
        let validated = self.validator.validate(&packed, version).await;
        metrics::validation_time(version, started.elapsed());
        let validated = validated?;
        if validated.user_op_hash != hash {
            error!(%hash, validated = %validated.user_op_hash, "validator hashed the operation differently");
            return Err(ValidationError::new(RpcErrorCode::Internal, "internal error"));
        }
        let deposit = match op.paymaster {
            Some(paymaster) => Some(self.deposit_of(version, paymaster).await?),
            None => None,
        };
        self.mempool.admit(version, hash, op, validated, replaces, deposit).await?;
        metrics::mempool_size(version, self.store.pending_count(version).await?);
        Ok(hash)
    }

    async fn deposit_of(&self, version: EntryPointVersion, account: Address) -> Result<U256, BundlerError> {
        IEntryPoint::new(version.address(), self.provider.clone())
            .balanceOf(account)
            .call()
            .await
            .map_err(|e| BundlerError::node("EntryPoint.balanceOf", e))
    }

    /// `eth_estimateUserOperationGas`; -32601 when no estimator is configured.
    pub async fn estimate_user_operation_gas(
        &self,
        op: &UserOperation,
        entry_point: Address,
        state_override: Option<&StateOverride>,
    ) -> Result<Option<GasEstimate>, ValidationError> {
        let version = self.entry_point(entry_point)?;
        match &self.estimator {
            Some(estimator) => estimator.estimate(op, version, state_override).await.map(Some),
            None => Ok(None),
        }
    }

    /// An operation this bundler has seen, whatever became of it.
    /// A submitted operation shows its bundle's latest transaction (the first or a fee bump).
    pub async fn user_operation(&self, hash: B256) -> Result<Option<OpView>, ValidationError> {
        let Some(mut view) = self.store.op(hash).await?.map(OpView::from_stored) else { return Ok(None) };
        if let (OpStatus::Submitted, Some(tx)) = (view.status, view.tx_hash) {
            view.tx_hash = Some(self.sender.latest_attempt(tx).await.map_err(BundlerError::from)?.unwrap_or(tx));
        }
        Ok(Some(view))
    }

    /// `debug_bundler_dumpMempool`: pending operations of `entry_point`, oldest first.
    pub async fn dump_mempool(&self, entry_point: Address) -> Result<Vec<OpView>, ValidationError> {
        let version = self.entry_point(entry_point)?;
        let ops = self.store.ops_in(Some(version), OpStatus::Pending, 10_000).await?;
        Ok(ops.into_iter().map(OpView::from_stored).collect())
    }

    /// `debug_bundler_clearState`: drops pending operations and forgets reputation.
    pub async fn clear_state(&self) -> Result<(), ValidationError> {
        let dropped = self.store.drop_pending().await?;
        self.reputation.clear().await?;
        info!(dropped, "bundler state cleared");
        Ok(())
    }

    /// `debug_bundler_setBundlingMode`.
    pub fn set_bundling_mode(&self, mode: BundlingMode) {
        *self.mode.write().unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    pub(crate) fn bundling_mode(&self) -> BundlingMode {
        *self.mode.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `debug_bundler_setReputation`; a banned entity's pending operations leave the mempool.
    pub async fn set_reputation(&self, address: Address, rep: Reputation) -> Result<(), ValidationError> {
        self.reputation.set(address, rep).await?;
        if rep.status() == ReputationStatus::Banned {
            self.mempool.drop_entity(address).await?;
        }
        Ok(())
    }

    /// `debug_bundler_dumpReputation`.
    pub async fn dump_reputation(&self) -> Result<Vec<(Address, Reputation)>, ValidationError> {
        Ok(self.reputation.all().await?)
    }

    /// Runs one builder task per bundler key until `shutdown` completes. A task that fails logs and
    /// retries at the next block; none exits silently.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) -> Result<(), BundlerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for key in &self.keys {
            let bundler = self.clone();
            let key = key.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let poll = Duration::from_millis(bundler.config.poll_interval_ms);
                info!(key = %key.signer.address(), "bundle builder started");
                loop {
                    if let Err(e) = bundler.tick(&key, false).await {
                        error!(key = %key.signer.address(), error = %e, "bundle builder step failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => break,
                    }
                }
                info!(key = %key.signer.address(), "bundle builder stopped");
            });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                error!(error = %e, "bundle builder task panicked");
            }
        }
        Ok(())
    }
}

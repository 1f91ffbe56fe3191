//! Bundle building and tracking, per bundler key:
//!
//! ```text
//! each poll: the transaction sender follows this key's bundles (receipts; stuck N blocks → bump fees,
//!            re-broadcast at 0 fee, then cancel) and hands back the settled ones:
//!              included → ops with a UserOperationEvent included (reputation, latency), the rest pending
//!              cancelled, dropped (nonce taken), refused → ops back to pending
//!            if a new block (or min_bundle_interval_ms since the last bundle, or sendBundleNow):
//!            select (not senders with unmined ops) → re-check code hashes (COD-010) → eth_call handleOps
//!            at the bundle's gas limit (its ops' limits + overheads; the node's estimate only after AA95)
//!            ── FailedOp(i) → drop op i (reason kept), retry → ops submitted and the bundle recorded
//!            with the sender in one write (signed in the HSM) → broadcast; a bundle that hit its gas or count limit is followed
//!            at once by the next, so the bundler keeps up with a mempool filling faster than one bundle
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::{SolCall, SolEvent};
use custody_contracts::{EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation};
use custody_sender::{Call, Outcome};
use tracing::{info, warn};

use crate::error::BundlerError;
use crate::metrics;
use crate::pool::entities;
use crate::reputation::{ReputationStatus, THROTTLED_ENTITY_BUNDLE_COUNT, THROTTLED_ENTITY_LIVE_BLOCKS};
use crate::service::{Bundler, KeySlot};
use crate::store::{OpStatus, StoredOp, bundle_context, now_millis, parse_bundle_context};
use crate::validation::ValidationError;

/// Most pending operations considered for one bundle.
const SELECTION_WINDOW: i64 = 1_000;
/// An operation whose `validUntil` is this close is not bundled any more.
const VALID_UNTIL_MARGIN_SECS: u64 = 10;
/// Most bundles a key sends per entry point in one step (when each fills its gas or count limit).
const MAX_BUNDLES_PER_TICK: usize = 8;

/// A sender id for a new bundle of `from`'s: unique across restarts and processes (time, a counter and
/// the operations), so an operation bundled again after its bundle was dropped gets a new send.
fn bundle_id(from: Address, ops: &[B256]) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut seed = format!("{from}:{}:{seq}", now_millis()).into_bytes();
    ops.iter().for_each(|o| seed.extend_from_slice(o.as_slice()));
    format!("bundle:{}", keccak256(seed))
}

/// The gas an operation may use (its limits summed), for the bundle budget.
fn op_gas(op: &StoredOp) -> u64 {
    op.op.max_gas()
}

/// Gas of the bundle transaction beyond its operations' limits: the intrinsic 21,000 and handleOps' own
/// work (the beneficiary payment, the loops).
const BUNDLE_OVERHEAD_GAS: u64 = 50_000;

/// The EntryPoint's work per operation outside the operation's limits (copying it to memory, hashing it,
/// its events; v0.7's `INNER_GAS_OVERHEAD` is 10,000 of it).
const OP_OVERHEAD_GAS: u64 = 20_000;

/// The gas limit a bundle is simulated and sent with: every operation's limits plus the EntryPoint's
/// overheads, with the 1/64 a call must leave behind (EIP-150) on top, so that no operation can run out
/// of gas because of the bundle (the EntryPoint's AA95). The bundle is checked with one eth_call at this
/// limit rather than with the node's gas estimation, whose binary search costs the node a simulation of
/// the whole bundle per step (0.6–2.5 s for 45–64 operations on the local chain).
fn bundle_gas_limit(ops: &[StoredOp]) -> u64 {
    let ops_gas = ops.iter().map(|o| op_gas(o).saturating_add(OP_OVERHEAD_GAS)).fold(0u64, u64::saturating_add);
    BUNDLE_OVERHEAD_GAS.saturating_add(ops_gas.saturating_add(ops_gas / 63))
}

/// The entity an EntryPoint `FailedOp` reason blames: the factory for `AA1x` (except AA10 "sender
/// already constructed", which another bundle causes), the paymaster for `AA3x`; senders are not
/// subject to reputation here.
fn culprit(op: &UserOperation, reason: &str) -> Option<Address> {
    if reason.starts_with("AA1") && !reason.starts_with("AA10") {
        op.factory
    } else if reason.starts_with("AA3") {
        op.paymaster
    } else {
        None
    }
}

impl Bundler {
    /// One builder step for `key`: track its transactions, then (auto mode and a new block, or
    /// `force`) send a bundle per entry point. Returns the hashes of the transactions sent.
    pub(crate) async fn tick(&self, key: &KeySlot, force: bool) -> Result<Vec<B256>, BundlerError> {
        let mut state = key.state.lock().await;
        let block = self.provider.get_block_number().await.map_err(|e| BundlerError::node("eth_blockNumber", e))?;
        self.track(key).await?;
        let mut sent = Vec::new();
        if !force && self.bundling_mode() == crate::BundlingMode::Manual {
            return Ok(sent);
        }
        let interval = Duration::from_millis(self.config.min_bundle_interval_ms);
        for version in self.config.entry_points.clone() {
            let same_block = state.last_bundle_block.get(&version).is_some_and(|b| *b >= block);
            let recent = state.last_bundle_at.get(&version).is_none_or(|t| t.elapsed() < interval);
            if !force && same_block && (interval.is_zero() || recent) {
                continue;
            }
            // A bundle that left operations out for its limits is followed at once by the next.
            for _ in 0..MAX_BUNDLES_PER_TICK {
                let Some((hash, full)) = self.build_and_send(key, version, block).await? else { break };
                state.last_bundle_block.insert(version, block);
                state.last_bundle_at.insert(version, Instant::now());
                sent.push(hash);
                if !full {
                    break;
                }
            }
        }
        Ok(sent)
    }

    /// `debug_bundler_sendBundleNow`: bundles now with the first key (whatever the mode) and waits
    /// for the transactions to be mined. Returns the last transaction hash, if a bundle was sent.
    pub async fn send_bundle_now(&self) -> Result<Option<B256>, ValidationError> {
        let Some(key) = self.keys.first() else { return Ok(None) };
        let sent = self.tick(key, true).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.sender.in_flight(key.signer.address()).await.map_err(BundlerError::from)? > 0 {
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _state = key.state.lock().await;
            self.track(key).await?;
        }
        Ok(sent.last().copied())
    }

    /// Picks operations for a bundle: best priority fee first, one per sender (none for a sender in
    /// `in_flight`), no operation whose accessed storage belongs to another's sender, throttled
    /// entities at most `THROTTLED_ENTITY_BUNDLE_COUNT`, within the gas and count limits. Expired
    /// operations fail; those of a throttled entity validated more than `THROTTLED_ENTITY_LIVE_BLOCKS`
    /// before `block` are dropped. Also says whether the gas or count limit left operations out.
    async fn select(
        &self,
        mut candidates: Vec<StoredOp>,
        in_flight: HashSet<Address>,
        block: u64,
    ) -> Result<(Vec<StoredOp>, bool), BundlerError> {
        candidates.sort_by_key(|o| std::cmp::Reverse(o.op.max_priority_fee_per_gas));
        let now = u64::try_from(now_millis() / 1000).unwrap_or_default();
        // A sender with an unmined bundle waits for it: its next operation is simulated on its outcome.
        let mut senders = in_flight;
        let mut accessed: HashSet<Address> = HashSet::new();
        let mut per_entity: HashMap<Address, usize> = HashMap::new();
        let mut gas = 0u64;
        let mut selected = Vec::new();
        let mut full = false;
        for op in candidates {
            if selected.len() >= self.config.max_bundle_ops {
                full = true;
                break;
            }
            if op.validated.valid_until <= now.saturating_add(VALID_UNTIL_MARGIN_SECS) {
                self.store
                    .set_status(
                        &[op.hash],
                        &[OpStatus::Pending],
                        OpStatus::Failed,
                        Some("expired: validUntil passed"),
                        None,
                    )
                    .await?;
                continue;
            }
            if op.validated.valid_after > now
                || senders.contains(&op.op.sender)
                || accessed.contains(&op.op.sender)
                || op.validated.accessed_addresses.iter().any(|a| senders.contains(a))
            {
                continue;
            }
            let (mut allowed, mut stale) = (true, false);
            for (_, address) in entities(&op.op).into_iter().skip(1) {
                if self.config.trusted_entities.contains(&address) {
                    continue;
                }
                match self.reputation.get(address).await?.status() {
                    ReputationStatus::Ok => {}
                    ReputationStatus::Throttled => {
                        allowed &= per_entity.get(&address).copied().unwrap_or(0) < THROTTLED_ENTITY_BUNDLE_COUNT;
                        stale |= block.saturating_sub(op.validated.block_number) > THROTTLED_ENTITY_LIVE_BLOCKS;
                    }
                    ReputationStatus::Banned => allowed = false,
                }
            }
            if stale && allowed {
                // Not bundled within THROTTLED_ENTITY_LIVE_BLOCKS of admission: evicted.
                let reason = format!("throttled entity: not bundled within {THROTTLED_ENTITY_LIVE_BLOCKS} blocks");
                self.store.set_status(&[op.hash], &[OpStatus::Pending], OpStatus::Dropped, Some(&reason), None).await?;
                continue;
            }
            let op_gas = op_gas(&op);
            if !allowed {
                continue;
            }
            if gas.saturating_add(op_gas) > self.config.max_bundle_gas {
                full = true;
                continue;
            }
            gas += op_gas;
            for (_, address) in entities(&op.op).into_iter().skip(1) {
                *per_entity.entry(address).or_default() += 1;
            }
            senders.insert(op.op.sender);
            accessed.extend(op.validated.accessed_addresses.iter().copied());
            selected.push(op);
        }
        Ok((selected, full))
    }

    /// Builds, signs, records and broadcasts one bundle; returns its hash and whether the bundle's gas
    /// or count limit left pending operations out.
    async fn build_and_send(
        &self,
        key: &KeySlot,
        version: EntryPointVersion,
        block: u64,
    ) -> Result<Option<(B256, bool)>, BundlerError> {
        let Some(lock) = self.selection.get(&version) else { return Ok(None) };
        let _selecting = lock.lock().await;
        let candidates = self.store.ops_in(Some(version), OpStatus::Pending, SELECTION_WINDOW).await?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let in_flight = self.store.ops_in(Some(version), OpStatus::Submitted, SELECTION_WINDOW).await?;
        let (mut ops, full) = self.select(candidates, in_flight.iter().map(|o| o.op.sender).collect(), block).await?;
        self.drop_changed_code(&mut ops, version).await?;
        let from = key.signer.address();
        let beneficiary = self.config.beneficiary.unwrap_or(from);
        let entry_point = IEntryPoint::new(version.address(), self.provider.clone());
        // Re-simulate the whole bundle with one eth_call at the gas limit it will be sent with; drop what
        // the EntryPoint refuses, with its reason. At the latest block, not the pending one: the senders of
        // unmined bundles are left out by `select`, and a node simulates "pending" by executing every
        // transaction in its pool first.
        let (packed, gas_limit) = loop {
            if ops.is_empty() {
                return Ok(None);
            }
            let packed = ops
                .iter()
                .map(|o| o.op.pack())
                .collect::<Result<Vec<PackedUserOperation>, _>>()
                .map_err(|e| BundlerError::corrupt("operation", e))?;
            let gas_limit = bundle_gas_limit(&ops);
            let handle_ops = entry_point.handleOps(packed.clone(), beneficiary).from(from);
            let failure = match handle_ops.clone().gas(gas_limit).block(BlockId::latest()).call().await {
                Ok(_) => break (packed, gas_limit),
                Err(e) => {
                    if let Some(f) = e.as_decoded_error::<IEntryPoint::FailedOp>() {
                        (f.opIndex, f.reason)
                    } else if let Some(f) = e.as_decoded_error::<IEntryPoint::FailedOpWithRevert>() {
                        (f.opIndex, format!("{} (inner revert {})", f.reason, f.inner))
                    } else {
                        return Err(BundlerError::node("simulate handleOps", e));
                    }
                }
            };
            let (index, reason) = failure;
            let index = usize::try_from(index).unwrap_or(usize::MAX);
            if index >= ops.len() {
                return Err(BundlerError::Config(format!(
                    "EntryPoint reported FailedOp for op {index} of {}",
                    ops.len()
                )));
            }
            if reason.starts_with("AA95") {
                // The bundle's gas limit, not the operation: fall back to the node's estimate.
                let gas = handle_ops.estimate_gas().await.map_err(|e| BundlerError::node("estimate handleOps", e))?;
                warn!(computed = gas_limit, estimated = gas, "bundle gas limit below the node's estimate; using it");
                break (packed, gas + gas / 5);
            }
            let failed = ops.remove(index);
            warn!(op = %failed.hash, %reason, "operation failed bundle simulation; removed");
            metrics::op_dropped_in_bundle(version);
            self.store.set_status(&[failed.hash], &[OpStatus::Pending], OpStatus::Failed, Some(&reason), None).await?;
            if let Some(banned) = self.penalize(&failed, &reason).await? {
                ops.retain(|o| !entities(&o.op).iter().any(|(_, a)| *a == banned));
            }
        };
        let calldata = Bytes::from(IEntryPoint::handleOpsCall { ops: packed, beneficiary }.abi_encode());
        let call = Call { to: version.address(), input: calldata, value: U256::ZERO, gas_limit: Some(gas_limit) };
        let prepared = self.sender.prepare(from, call).await?;
        let hashes: Vec<B256> = ops.iter().map(|o| o.hash).collect();
        let id = bundle_id(from, &hashes);
        // The operations are claimed and the bundle recorded in one write, before it is broadcast.
        let mut write = self.sender.begin().await?;
        if !self.store.claim_ops(&mut write.db, &hashes).await? {
            warn!("bundle operations were taken by another builder; not sent");
            return Ok(None);
        }
        let sent =
            self.sender.record(&mut write, &id, &key.signer, prepared, &bundle_context(version, &hashes)).await?;
        self.store.set_ops_tx(&mut write.db, &hashes, sent.hash).await?;
        write.commit().await?;
        self.sender.broadcast(&id, &key.signer).await?;
        metrics::bundle_sent(version, ops.len(), gas_limit);
        info!(tx = %sent.hash, ops = ops.len(), nonce = sent.nonce, key = %from, entry_point = %version, "bundle sent");
        Ok(Some((sent.hash, full)))
    }

    /// GREP-040: the entity blamed by [`culprit`] for `op` failing at bundle time is banned and its
    /// pending operations leave the mempool; returns it. Trusted entities are not penalized.
    async fn penalize(&self, op: &StoredOp, reason: &str) -> Result<Option<Address>, BundlerError> {
        let Some(address) = culprit(&op.op, reason).filter(|a| !self.config.trusted_entities.contains(a)) else {
            return Ok(None);
        };
        warn!(entity = %address, %reason, "entity failed an operation at bundle time; banned (GREP-040)");
        self.reputation.failed_bundle(address).await?;
        self.mempool.drop_entity(address).await?;
        Ok(Some(address))
    }

    /// Drops (as failed) the operations whose validation-time code changed since (ERC-7562 COD-010).
    async fn drop_changed_code(&self, ops: &mut Vec<StoredOp>, version: EntryPointVersion) -> Result<(), BundlerError> {
        let validated: Vec<_> = ops.iter().map(|o| &o.validated).collect();
        let verdicts = match self.validator.recheck(&validated).await {
            Ok(v) if v.len() == ops.len() => v,
            Ok(_) => return Err(BundlerError::Config("validator rechecked a different number of operations".into())),
            Err(e) => {
                // The check could not run: bundle nothing this round rather than skip the rule.
                warn!(error = %e, "code hash re-check failed; not bundling this round");
                ops.clear();
                return Ok(());
            }
        };
        let mut kept = Vec::with_capacity(ops.len());
        for (op, verdict) in ops.drain(..).zip(verdicts) {
            match verdict {
                None => kept.push(op),
                Some(e) => {
                    warn!(op = %op.hash, reason = %e, "operation's code changed since validation; removed");
                    metrics::op_dropped_in_bundle(version);
                    self.store
                        .set_status(&[op.hash], &[OpStatus::Pending], OpStatus::Failed, Some(&e.message), None)
                        .await?;
                }
            }
        }
        *ops = kept;
        Ok(())
    }

    /// Takes the sender's settled bundles of `key`: a mined one includes its operations that have a
    /// UserOperationEvent; every operation still submitted goes back to the mempool.
    async fn track(&self, key: &KeySlot) -> Result<(), BundlerError> {
        for settled in self.sender.track(&key.signer, "bundle:").await? {
            let (entry_point, ops) = parse_bundle_context(&settled.context)?;
            match &settled.outcome {
                Outcome::Included(receipt) => {
                    // Cached first: clients polling for the bundle's operations find it once they are included.
                    let receipt = Arc::new(TransactionReceipt::clone(receipt));
                    self.receipts.put(receipt.clone());
                    self.on_mined(entry_point, &ops, &receipt).await?;
                }
                other => warn!(
                    id = %settled.id, nonce = settled.nonce, outcome = other.as_str(),
                    "bundle not executed; operations back to the mempool"
                ),
            }
            self.store.set_status(&ops, &[OpStatus::Submitted], OpStatus::Pending, None, None).await?;
            self.sender.finish(&settled.id).await?;
        }
        Ok(())
    }

    /// A mined bundle: its operations with a UserOperationEvent are included (in one database
    /// transaction, so receipts show up together); then reputation (one update per entity) and latency.
    async fn on_mined(
        &self,
        entry_point: EntryPointVersion,
        ops: &[B256],
        receipt: &TransactionReceipt,
    ) -> Result<(), BundlerError> {
        let block_number = receipt.block_number.unwrap_or_default();
        let block_hash = receipt.block_hash.unwrap_or_default();
        let tx_hash = receipt.transaction_hash;
        let ours: HashSet<B256> = ops.iter().copied().collect();
        let events: Vec<B256> = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == entry_point.address())
            .filter_map(|log| IEntryPoint::UserOperationEvent::decode_log_data(log.data()).ok())
            .map(|event| event.userOpHash)
            .filter(|hash| ours.contains(hash))
            .collect();
        let included = self.store.set_included(&events, tx_hash, block_number, block_hash).await?;
        let mut per_entity: HashMap<Address, u64> = HashMap::new();
        for hash in &included {
            if let Some(op) = self.store.op(*hash).await? {
                for (_, address) in crate::pool::reputation_entities(&op) {
                    *per_entity.entry(address).or_default() += 1;
                }
                let waited = now_millis().saturating_sub(op.received_at);
                metrics::inclusion_latency(entry_point, Duration::from_millis(u64::try_from(waited).unwrap_or(0)));
            }
        }
        for (address, count) in per_entity {
            self.reputation.included(address, count).await?;
        }
        info!(tx = %tx_hash, block = block_number, included = included.len(), status = receipt.status(), "bundle mined");
        metrics::mempool_size(entry_point, self.store.pending_count(entry_point).await?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_op_reasons_blame_factory_or_paymaster() {
        let (factory, paymaster) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let op = UserOperation { factory: Some(factory), paymaster: Some(paymaster), ..Default::default() };
        assert_eq!(culprit(&op, "AA13 initCode failed or OOG"), Some(factory));
        assert_eq!(culprit(&op, "AA10 sender already constructed"), None);
        assert_eq!(culprit(&op, "AA33 reverted"), Some(paymaster));
        assert_eq!(culprit(&op, "AA25 invalid account nonce"), None);
        assert_eq!(culprit(&UserOperation::default(), "AA13 initCode failed or OOG"), None);
    }
}

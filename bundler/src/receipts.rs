//! ERC-7769 receipts and lookups from `UserOperationEvent` logs: the operation's event, the
//! transaction receipt, and the logs the operation emitted (those after the previous operation's
//! `UserOperationEvent`, or after `BeforeExecution`, up to its own event).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log, TransactionReceipt};
use alloy::sol_types::{SolCall, SolEvent};
use custody_contracts::{EntryPointVersion, IEntryPoint, UserOperation};
use lru::LruCache;
use serde::Serialize;

use crate::error::BundlerError;
use crate::service::{Bundler, OpView};
use crate::store::OpStatus;
use crate::validation::ValidationError;

/// `eth_getUserOperationReceipt` result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOperationReceipt {
    pub user_op_hash: B256,
    pub entry_point: Address,
    pub sender: Address,
    pub nonce: U256,
    /// Zero address when the operation had no paymaster.
    pub paymaster: Address,
    pub actual_gas_cost: U256,
    pub actual_gas_used: U256,
    pub success: bool,
    /// The revert reason of the execution (`UserOperationRevertReason`), if it reverted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Bytes>,
    pub logs: Vec<Log>,
    pub receipt: TransactionReceipt,
}

/// `eth_getUserOperationByHash` result (ERC-7769): the block fields are `null` while the operation is
/// pending or in an unmined bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOperationByHash {
    pub user_operation: UserOperation,
    pub entry_point: Address,
    pub block_number: Option<U256>,
    pub block_hash: Option<B256>,
    pub transaction_hash: Option<B256>,
}

impl UserOperationByHash {
    /// The answer for an operation this bundler holds: `None` once it failed, was dropped or replaced
    /// (it will never be mined as sent).
    fn of(v: OpView) -> Option<Self> {
        let included = v.status == OpStatus::Included;
        matches!(v.status, OpStatus::Pending | OpStatus::Submitted | OpStatus::Included).then(|| Self {
            user_operation: v.op,
            entry_point: v.entry_point,
            block_number: v.block_number.filter(|_| included).map(U256::from),
            block_hash: v.block_hash.filter(|_| included),
            transaction_hash: v.tx_hash.filter(|_| included),
        })
    }
}

/// `rundler_getUserOperationStatus` result, in rundler's shape: `status` is `unknown`, `pending`,
/// `pendingBundle` or `mined`; `removed` (this bundler's addition) says why an operation it held will
/// not be mined (`failed`, `dropped` or `replaced`, with the reason).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOperationStatus {
    pub status: &'static str,
    pub receipt: Option<UserOperationReceipt>,
    pub user_operation: Option<UserOperation>,
    pub pending_bundle: Option<PendingBundle>,
    pub removed: Option<Removed>,
}

/// The bundle transaction an operation is in, not mined yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingBundle {
    pub tx_hash: B256,
}

/// Why an operation left the mempool without being mined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub status: OpStatus,
    pub reason: Option<String>,
}

/// The receipts of the bundles mined last, by transaction hash: every operation of a bundle shares one,
/// so clients polling for each of their operations cost one node request per bundle, not one each. A
/// cached receipt serves only when its block hash is the one the operation was recorded in.
#[derive(Debug)]
pub(crate) struct ReceiptCache {
    recent: Mutex<LruCache<B256, Arc<TransactionReceipt>>>,
}

impl Default for ReceiptCache {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(Self::CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Self { recent: Mutex::new(LruCache::new(capacity)) }
    }
}

impl ReceiptCache {
    /// How many receipts are kept (the least recently used leave first).
    const CAPACITY: usize = 256;

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<B256, Arc<TransactionReceipt>>> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, tx_hash: B256, block_hash: Option<B256>) -> Option<Arc<TransactionReceipt>> {
        self.lock().get(&tx_hash).filter(|r| block_hash.is_some() && r.block_hash == block_hash).cloned()
    }

    pub(crate) fn put(&self, receipt: Arc<TransactionReceipt>) {
        self.lock().put(receipt.transaction_hash, receipt);
    }
}

/// The receipt of `hash` from a mined transaction's receipt, if the transaction carries its event.
pub fn receipt_from(hash: B256, entry_point: Address, receipt: TransactionReceipt) -> Option<UserOperationReceipt> {
    let logs = receipt.inner.logs();
    let mut start = 0;
    for (i, log) in logs.iter().enumerate() {
        if log.address() != entry_point {
            continue;
        }
        let topic0 = log.topics().first().copied();
        if topic0 == Some(IEntryPoint::BeforeExecution::SIGNATURE_HASH) {
            start = i + 1;
            continue;
        }
        let Ok(event) = IEntryPoint::UserOperationEvent::decode_log_data(log.data()) else { continue };
        if event.userOpHash != hash {
            start = i + 1;
            continue;
        }
        let own: Vec<Log> = logs[start..i].to_vec();
        let reason = own.iter().filter(|l| l.address() == entry_point).find_map(|l| {
            IEntryPoint::UserOperationRevertReason::decode_log_data(l.data())
                .ok()
                .filter(|r| r.userOpHash == hash)
                .map(|r| r.revertReason)
        });
        return Some(UserOperationReceipt {
            user_op_hash: hash,
            entry_point,
            sender: event.sender,
            nonce: event.nonce,
            paymaster: event.paymaster,
            actual_gas_cost: event.actualGasCost,
            actual_gas_used: event.actualGasUsed,
            success: event.success,
            reason,
            logs: own,
            receipt,
        });
    }
    None
}

impl Bundler {
    /// `eth_getUserOperationReceipt`: `None` until the operation is mined.
    pub async fn user_operation_receipt(&self, hash: B256) -> Result<Option<UserOperationReceipt>, ValidationError> {
        let (entry_point, tx_hash, block_hash) = match self.store.op(hash).await? {
            Some(op) if op.status == OpStatus::Included => match op.tx_hash {
                Some(tx) => (op.entry_point.address(), tx, op.block_hash),
                None => return Ok(None),
            },
            Some(_) => return Ok(None),
            None => match self.find_event(hash).await? {
                Some(log) => match log.transaction_hash {
                    Some(tx) => (log.address(), tx, log.block_hash),
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
        };
        let receipt = match self.receipts.get(tx_hash, block_hash) {
            Some(receipt) => Some(receipt),
            None => {
                let fetched = self
                    .provider
                    .get_transaction_receipt(tx_hash)
                    .await
                    .map_err(|e| BundlerError::node("eth_getTransactionReceipt", e))?
                    .map(Arc::new);
                if let Some(receipt) = &fetched {
                    self.receipts.put(receipt.clone());
                }
                fetched
            }
        };
        Ok(receipt.and_then(|r| receipt_from(hash, entry_point, Arc::unwrap_or_clone(r))))
    }

    /// `eth_getUserOperationByHash`: from the mempool, or for operations other bundlers sent, from
    /// the chain (the handleOps transaction's input).
    pub async fn user_operation_by_hash(&self, hash: B256) -> Result<Option<UserOperationByHash>, ValidationError> {
        if let Some(answer) = self.user_operation(hash).await?.and_then(UserOperationByHash::of) {
            return Ok(Some(answer));
        }
        let Some(log) = self.find_event(hash).await? else { return Ok(None) };
        let (Some(tx_hash), Some(version)) = (log.transaction_hash, EntryPointVersion::from_address(log.address()))
        else {
            return Ok(None);
        };
        let tx = self
            .provider
            .get_transaction_by_hash(tx_hash)
            .await
            .map_err(|e| BundlerError::node("eth_getTransactionByHash", e))?;
        let Some(tx) = tx else { return Ok(None) };
        let input = alloy::consensus::Transaction::input(&tx);
        let Ok(call) = IEntryPoint::handleOpsCall::abi_decode(input) else { return Ok(None) };
        let found = call.ops.iter().find(|op| op.hash(version, version.address(), self.chain_id) == hash);
        let Some(op) = found.and_then(|op| UserOperation::try_from(op).ok()) else { return Ok(None) };
        Ok(Some(UserOperationByHash {
            user_operation: op,
            entry_point: version.address(),
            block_number: log.block_number.map(U256::from),
            block_hash: log.block_hash,
            transaction_hash: Some(tx_hash),
        }))
    }

    /// `rundler_getUserOperationStatus`: where the operation is, with its receipt once mined.
    pub async fn user_operation_status(&self, hash: B256) -> Result<UserOperationStatus, ValidationError> {
        let view = self.user_operation(hash).await?;
        let receipt = match view.as_ref().map(|v| v.status) {
            None | Some(OpStatus::Included) => self.user_operation_receipt(hash).await?,
            Some(_) => None,
        };
        let mut answer = UserOperationStatus {
            status: "unknown",
            receipt: None,
            user_operation: None,
            pending_bundle: None,
            removed: None,
        };
        if let Some(receipt) = receipt {
            answer.status = "mined";
            answer.user_operation = match &view {
                Some(v) => Some(v.op.clone()),
                None => self.user_operation_by_hash(hash).await?.map(|found| found.user_operation),
            };
            answer.receipt = Some(receipt);
            return Ok(answer);
        }
        let Some(view) = view else { return Ok(answer) };
        match view.status {
            OpStatus::Pending => answer.status = "pending",
            OpStatus::Submitted => {
                answer.status = "pendingBundle";
                answer.pending_bundle = view.tx_hash.map(|tx_hash| PendingBundle { tx_hash });
            }
            // Included, but the receipt is not found (reorged away): pending again soon.
            OpStatus::Included => answer.status = "pending",
            status => answer.removed = Some(Removed { status, reason: view.reason.clone() }),
        }
        answer.user_operation = Some(view.op);
        Ok(answer)
    }

    /// The `UserOperationEvent` of `hash` within the look-back window, on a served entry point.
    async fn find_event(&self, hash: B256) -> Result<Option<Log>, BundlerError> {
        let latest = self.provider.get_block_number().await.map_err(|e| BundlerError::node("eth_blockNumber", e))?;
        let filter = Filter::new()
            .address(self.supported_entry_points())
            .event_signature(IEntryPoint::UserOperationEvent::SIGNATURE_HASH)
            .topic1(hash)
            .from_block(latest.saturating_sub(self.config.receipt_lookback_blocks));
        let logs = self.provider.get_logs(&filter).await.map_err(|e| BundlerError::node("eth_getLogs", e))?;
        Ok(logs.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(tx: u64, block: u8) -> Arc<TransactionReceipt> {
        let json = serde_json::json!({
            "transactionHash": B256::from(U256::from(tx)), "transactionIndex": "0x0",
            "blockHash": B256::repeat_byte(block), "blockNumber": "0x1",
            "from": Address::ZERO, "to": Address::ZERO, "gasUsed": "0x0", "contractAddress": null,
            "cumulativeGasUsed": "0x0", "effectiveGasPrice": "0x0", "logs": [], "status": "0x1", "type": "0x2",
            "logsBloom": format!("0x{}", "00".repeat(256)),
        });
        Arc::new(serde_json::from_value(json).expect("a receipt"))
    }

    #[test]
    fn serves_only_the_block_it_was_mined_in_and_keeps_the_newest() {
        let cache = ReceiptCache::default();
        let first = B256::from(U256::from(1));
        cache.put(receipt(1, 10));
        assert!(cache.get(first, Some(B256::repeat_byte(10))).is_some());
        assert!(cache.get(first, Some(B256::repeat_byte(11))).is_none(), "reorged away");
        assert!(cache.get(first, None).is_none());
        for tx in 2..=(ReceiptCache::CAPACITY as u64 + 1) {
            cache.put(receipt(tx, 10));
        }
        assert!(cache.get(first, Some(B256::repeat_byte(10))).is_none(), "the oldest left");
        assert_eq!(cache.lock().len(), ReceiptCache::CAPACITY);
    }
}

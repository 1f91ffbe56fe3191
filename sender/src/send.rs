//! Preparing, recording and broadcasting a send.

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::{BlockNumberOrTag, eip2718::Encodable2718},
    network::TxSigner,
    primitives::{Address, Bytes, TxKind},
    providers::Provider,
    rpc::types::TransactionRequest,
};
use custody_signer::EthSigner;
use sqlx::{Any, Transaction};
use tokio::sync::OwnedMutexGuard;
use tracing::{debug, error, warn};

use crate::{
    Call, Error, Sender, Sent,
    record::{self, Attempt, Kind, SendRow},
};

/// Gas limit when estimation fails (the call is expected to revert; its receipt decides).
const FALLBACK_GAS: u64 = 5_000_000;
/// Gas of the cancelling self-transfer.
pub(crate) const CANCEL_GAS: u64 = 21_000;

/// A call with what the node said about it: ready to be recorded.
#[derive(Clone, Debug)]
pub struct Prepared {
    call: Call,
    from: Address,
    gas_limit: u64,
    max_fee: u128,
    priority_fee: u128,
    chain_id: u64,
    chain_nonce: u64,
}

impl Prepared {
    /// The gas limit it will be sent with.
    pub fn gas_limit(&self) -> u64 {
        self.gas_limit
    }
}

/// A write in progress: the write gate's turn (SQLite) and a database transaction the caller adds
/// its own writes to; nothing is kept unless it commits.
#[derive(Debug)]
pub struct Write {
    /// The database transaction (declared first: dropped, it starts its rollback before the turn ends).
    pub db: Transaction<'static, Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Write {
    /// Keeps everything written.
    pub async fn commit(self) -> Result<(), Error> {
        self.db.commit().await.map_err(Error::db("commit"))
    }
}

/// What a node's refusal of a raw transaction means.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// It has it, or has mined its nonce, or wants a higher fee for a replacement: `track` decides.
    Known,
    /// Busy, or an earlier nonce not there yet (a node that queues no gaps): sent again at the next track.
    Transient,
    /// For good (too little gas, over the block gas limit, unaffordable, malformed...).
    Permanent,
}

fn refusal(message: &str) -> Refusal {
    let text = message.to_lowercase().replace('_', " ");
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if any(&["already known", "known transaction", "already imported", "nonce too low", "replacement", "underpriced"]) {
        Refusal::Known
    } else if any(&["nonce too high", "pool is full", "txpool full", "rate limit", "try again", "busy", "timeout"]) {
        Refusal::Transient
    } else {
        Refusal::Permanent
    }
}

impl Sender {
    /// Asks the node what `call` from `from` needs: the gas limit (unless given), the fees and the
    /// key's pending nonce.
    pub async fn prepare(&self, from: Address, call: Call) -> Result<Prepared, Error> {
        let chain_id = *self
            .chain_id
            .get_or_try_init(|| async { self.provider.get_chain_id().await.map_err(Error::rpc("eth_chainId")) })
            .await?;
        let gas_limit = match call.gas_limit {
            Some(gas) => gas,
            None => {
                let request = TransactionRequest::default()
                    .from(from)
                    .to(call.to)
                    .value(call.value)
                    .input(call.input.clone().into());
                match self.provider.estimate_gas(request).await {
                    Ok(gas) => gas.saturating_mul(5) / 4 + 20_000,
                    Err(e) if e.is_error_resp() => {
                        warn!(to = %call.to, error = %e, "gas estimation refused; sending with the fallback limit");
                        FALLBACK_GAS
                    }
                    Err(e) => return Err(Error::rpc("eth_estimateGas")(e)),
                }
            }
        };
        let (max_fee, priority_fee) = self.fees().await?;
        let chain_nonce =
            self.provider.get_transaction_count(from).pending().await.map_err(Error::rpc("eth_getTransactionCount"))?;
        Ok(Prepared { call, from, gas_limit, max_fee, priority_fee, chain_id, chain_nonce })
    }

    /// Current fees: zero on a zero-base-fee chain (the production one), else the node's EIP-1559 estimate.
    pub async fn fees(&self) -> Result<(u128, u128), Error> {
        let latest = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(Error::rpc("eth_getBlockByNumber"))?;
        if latest.and_then(|b| b.header.base_fee_per_gas).unwrap_or(0) == 0 {
            return Ok((0, 0));
        }
        let fees = self.provider.estimate_eip1559_fees().await.map_err(Error::rpc("eth_feeHistory"))?;
        Ok((fees.max_fee_per_gas, fees.max_priority_fee_per_gas))
    }

    /// Begins a write: the caller records sends in it beside its own writes, then commits.
    pub async fn begin(&self) -> Result<Write, Error> {
        let turn = self.gate.turn().await;
        Ok(Write { db: self.gate.begin(&self.pool).await.map_err(Error::db("begin"))?, _turn: turn })
    }

    /// Records `prepared` under `id` in `write`: the key's next nonce, the transaction signed by `key`
    /// and its raw bytes. A second record of `id` changes nothing and returns the first.
    pub async fn record(
        &self,
        write: &mut Write,
        id: &str,
        key: &EthSigner,
        prepared: Prepared,
        context: &str,
    ) -> Result<Sent, Error> {
        let from = key.address();
        if prepared.from != from {
            return Err(Error::OtherKey(id.to_owned()));
        }
        if let Some((send, hash)) = record::find(&mut write.db, id).await? {
            if send.from != from {
                return Err(Error::OtherKey(id.to_owned()));
            }
            return Ok(Sent { id: send.id, from, nonce: send.nonce, hash, new: false });
        }
        let nonce = record::take_nonce(&mut write.db, from, prepared.chain_nonce).await?;
        let Prepared { call, gas_limit, max_fee, priority_fee, chain_id, .. } = prepared;
        let send = SendRow {
            id: id.to_owned(),
            from,
            nonce,
            to: call.to,
            value: call.value,
            input: call.input,
            gas_limit,
            context: context.to_owned(),
            status: "pending".to_owned(),
            error: None,
            mined_hash: None,
            created_at: 0,
        };
        let attempt = sign(key, chain_id, &send, Kind::Call, max_fee, priority_fee).await?;
        record::insert_send(&mut write.db, &send).await?;
        record::insert_attempt(&mut *write.db, id, &attempt).await?;
        debug!(id, nonce, hash = %attempt.hash, "transaction recorded");
        Ok(Sent { id: id.to_owned(), from, nonce, hash: attempt.hash, new: true })
    }

    /// Prepares, records (alone in its write) and broadcasts `call` from `key` under `id`.
    pub async fn send(&self, id: &str, key: &EthSigner, call: Call, context: &str) -> Result<Sent, Error> {
        let prepared = self.prepare(key.address(), call).await?;
        let mut write = self.begin().await?;
        let sent = self.record(&mut write, id, key, prepared, context).await?;
        write.commit().await?;
        self.broadcast(id, key).await?;
        Ok(sent)
    }

    /// Broadcasts the attempts of `id` not broadcast yet (the latest, and any before it). A refusal for
    /// good forgets that attempt, and a call left without any broadcast attempt gets a cancellation at
    /// its nonce, so the key's later nonces are not wedged behind it.
    pub async fn broadcast(&self, id: &str, key: &EthSigner) -> Result<(), Error> {
        let Some(send) = record::send(&self.pool, id).await? else { return Ok(()) };
        if send.status != "pending" {
            return Ok(());
        }
        let block = self.provider.get_block_number().await.map_err(Error::rpc("eth_blockNumber"))?;
        for attempt in record::attempts(&self.pool, id).await?.into_iter().filter(|a| a.sent.is_none()) {
            self.push(&send, &attempt, block, key).await?;
        }
        Ok(())
    }

    /// Sends one attempt's bytes and records the result.
    pub(crate) async fn push(
        &self,
        send: &SendRow,
        attempt: &Attempt,
        block: u64,
        key: &EthSigner,
    ) -> Result<(), Error> {
        if attempt.sent.is_none() {
            let cancel = attempt.kind == Kind::Cancel;
            let signed = crate::journal::Signed {
                id: &send.id,
                context: &send.context,
                from: send.from,
                to: if cancel { send.from } else { send.to },
                nonce: send.nonce,
                hash: attempt.hash,
                cancel,
            };
            crate::journal::tell(signed).await?;
        }
        let message = match self.provider.send_raw_transaction(&attempt.raw).await {
            Ok(_) => None,
            Err(e) if e.is_error_resp() => Some(e.to_string()),
            Err(e) => {
                warn!(id = %send.id, tx = %attempt.hash, error = %e, "broadcast failed; sent again at the next track");
                return Ok(());
            }
        };
        // A node may answer with an error for a transaction it mined anyway (Hardhat reports a revert).
        let mined = message.is_some()
            && self
                .provider
                .get_transaction_receipt(attempt.hash)
                .await
                .map_err(Error::rpc("eth_getTransactionReceipt"))?
                .is_some();
        let refused = if mined { None } else { message.as_deref().map(refusal) };
        metrics::counter!("custody_tx_broadcasts_total", "result" => match refused {
            None => "accepted",
            Some(Refusal::Known) => "known",
            Some(Refusal::Transient) => "transient",
            Some(Refusal::Permanent) => "refused",
        })
        .increment(1);
        match (refused, message) {
            (Some(Refusal::Permanent), Some(message)) => self.refused(send, attempt, &message, block, key).await,
            (Some(Refusal::Transient), Some(message)) => {
                debug!(id = %send.id, tx = %attempt.hash, error = %message, "node not taking it yet; sent again next track");
                Ok(())
            }
            _ => {
                let _turn = self.gate.turn().await;
                record::mark_sent(&self.pool, attempt.hash, block).await
            }
        }
    }

    /// The node refused `attempt` for good: it is forgotten; if no attempt of the send is left, its nonce
    /// is filled by a cancellation.
    async fn refused(
        &self,
        send: &SendRow,
        attempt: &Attempt,
        message: &str,
        block: u64,
        key: &EthSigner,
    ) -> Result<(), Error> {
        error!(id = %send.id, tx = %attempt.hash, nonce = send.nonce, error = %message, "node refused the transaction");
        {
            let _turn = self.gate.turn().await;
            record::refuse(&self.pool, &send.id, attempt.hash, message).await?;
        }
        let left = record::attempts(&self.pool, &send.id).await?;
        if left.iter().any(|a| a.sent.is_some()) || attempt.kind == Kind::Cancel {
            return Ok(()); // an earlier attempt is out there; or the cancellation itself: `track` retries
        }
        let (max_fee, priority_fee) = self.fees().await?;
        let chain_id = *self.chain_id.get().ok_or(Error::Corrupt("chain id unknown"))?;
        let cancel = sign(key, chain_id, send, Kind::Cancel, max_fee, priority_fee).await?;
        {
            let _turn = self.gate.turn().await;
            record::insert_attempt(&self.pool, &send.id, &cancel).await?;
        }
        warn!(id = %send.id, nonce = send.nonce, "filling the refused transaction's nonce with a self-transfer");
        Box::pin(self.push(send, &cancel, block, key)).await
    }

    /// Recreates a call attempt of `send` with other fees, or its cancellation.
    pub(crate) async fn resign(
        &self,
        key: &EthSigner,
        send: &SendRow,
        kind: Kind,
        fees: (u128, u128),
    ) -> Result<Attempt, Error> {
        let chain_id = *self
            .chain_id
            .get_or_try_init(|| async { self.provider.get_chain_id().await.map_err(Error::rpc("eth_chainId")) })
            .await?;
        let attempt = sign(key, chain_id, send, kind, fees.0, fees.1).await?;
        let _turn = self.gate.turn().await;
        record::insert_attempt(&self.pool, &send.id, &attempt).await?;
        Ok(attempt)
    }
}

/// Signs `send` at its nonce: the call itself, or a zero-value self-transfer that cancels it.
async fn sign(
    key: &EthSigner,
    chain_id: u64,
    send: &SendRow,
    kind: Kind,
    max_fee: u128,
    priority_fee: u128,
) -> Result<Attempt, Error> {
    let (to, value, input, gas_limit) = match kind {
        Kind::Call => (send.to, send.value, send.input.clone(), send.gas_limit),
        Kind::Cancel => (key.address(), Default::default(), Bytes::new(), CANCEL_GAS),
    };
    let mut tx = TxEip1559 {
        chain_id,
        nonce: send.nonce,
        gas_limit,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: priority_fee,
        to: TxKind::Call(to),
        value,
        input,
        access_list: Default::default(),
    };
    let signature = key.sign_transaction(&mut tx).await.map_err(Error::Sign)?;
    let envelope = TxEnvelope::from(tx.into_signed(signature));
    Ok(Attempt {
        hash: *envelope.tx_hash(),
        kind,
        raw: Bytes::from(envelope.encoded_2718()),
        max_fee,
        priority_fee,
        sent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::{Refusal, refusal};

    #[test]
    fn node_refusals_are_told_apart() {
        assert_eq!(refusal("already known"), Refusal::Known);
        assert_eq!(refusal("Nonce too low. Expected nonce to be 3 but got 2."), Refusal::Known);
        assert_eq!(refusal("NONCE_TOO_LOW"), Refusal::Known);
        assert_eq!(refusal("replacement transaction underpriced"), Refusal::Known);
        assert_eq!(refusal("txpool is full"), Refusal::Transient);
        assert_eq!(refusal("Nonce too high. Expected nonce to be 2 but got 3."), Refusal::Transient);
        assert_eq!(refusal("intrinsic gas too low"), Refusal::Permanent);
        assert_eq!(refusal("Transaction gas limit is 100 and exceeds block gas limit of 30000000"), Refusal::Permanent);
    }
}

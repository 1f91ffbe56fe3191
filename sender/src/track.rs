//! Following a key's sends to their outcomes.

use std::time::Duration;

use alloy::{primitives::B256, providers::Provider, rpc::types::TransactionReceipt};
use custody_db::now_millis;
use custody_signer::EthSigner;
use tracing::{info, warn};

use crate::{
    Error, Outcome, Sender, Settled,
    record::{self, Attempt, Kind, SendRow},
};

/// Fees raised enough for a node to accept a replacement (+20%); zero stays zero.
fn bump(fee: u128) -> u128 {
    if fee == 0 { 0 } else { fee + fee / 5 + 1 }
}

impl Sender {
    /// Follows `key`'s unsettled sends (receipts, taken nonces, stuck transactions), then returns the
    /// settled sends of `key` whose id starts with `prefix` (the caller's own, where several share a
    /// key) and whose outcome the caller has not [`finish`](Self::finish)ed.
    pub async fn track(&self, key: &EthSigner, prefix: &str) -> Result<Vec<Settled>, Error> {
        let from = key.address();
        let open = record::open(&self.pool, from).await?;
        if !open.is_empty() {
            let chain_nonce = self
                .provider
                .get_transaction_count(from)
                .latest()
                .await
                .map_err(Error::rpc("eth_getTransactionCount"))?;
            let block = self.provider.get_block_number().await.map_err(Error::rpc("eth_blockNumber"))?;
            metrics::gauge!("custody_tx_open", "key" => from.to_string()).set(open.len() as f64);
            for send in open {
                self.follow(key, &send, chain_nonce, block).await?;
            }
        }
        let mut settled = Vec::new();
        for send in record::unfinished(&self.pool, from).await?.into_iter().filter(|s| s.id.starts_with(prefix)) {
            settled.push(self.settled(send).await?);
        }
        Ok(settled)
    }

    /// The outcome of `id` has been taken by its caller: [`track`](Self::track) stops returning it.
    pub async fn finish(&self, id: &str) -> Result<(), Error> {
        let _turn = self.gate.turn().await;
        record::finish(&self.pool, id).await
    }

    /// One unsettled send: mined, its nonce taken, never broadcast, or stuck.
    async fn follow(&self, key: &EthSigner, send: &SendRow, chain_nonce: u64, block: u64) -> Result<(), Error> {
        let attempts = record::attempts(&self.pool, &send.id).await?;
        for attempt in &attempts {
            if let Some(receipt) = self.receipt(attempt.hash).await? {
                let outcome = match (attempt.kind, &send.error) {
                    (Kind::Call, _) => Outcome::Included(Box::new(receipt)),
                    (Kind::Cancel, Some(error)) => Outcome::Rejected(error.clone()),
                    (Kind::Cancel, None) => Outcome::Cancelled(Box::new(receipt)),
                };
                return self.close(send, &outcome, Some(attempt.hash)).await;
            }
        }
        if chain_nonce > send.nonce {
            warn!(id = %send.id, nonce = send.nonce, key = %send.from, "nonce taken by another transaction");
            return self.close(send, &Outcome::Dropped, None).await;
        }
        if attempts.iter().any(|a| a.sent.is_none()) {
            // Recorded, never broadcast (its sender died first, or the node was down).
            for attempt in attempts.iter().filter(|a| a.sent.is_none()) {
                self.push(send, attempt, block, key).await?;
            }
            return Ok(());
        }
        let Some(last) = attempts.last() else {
            // Every attempt refused: fill the nonce.
            let cancel = self.resign(key, send, Kind::Cancel, self.fees().await?).await?;
            return self.push(send, &cancel, block, key).await;
        };
        let (sent_block, sent_at) = last.sent.unwrap_or_default();
        let waited = Duration::from_millis(u64::try_from(now_millis() - sent_at).unwrap_or(0));
        if block.saturating_sub(sent_block) < self.config.stuck_after_blocks && waited < self.config.stuck_after {
            return Ok(());
        }
        self.unstick(key, send, &attempts, last, block).await
    }

    /// A stuck send: the same bytes again at zero fees; else the fees bumped, and after `max_bumps`
    /// bumps a cancellation (with bumped fees).
    async fn unstick(
        &self,
        key: &EthSigner,
        send: &SendRow,
        attempts: &[Attempt],
        last: &Attempt,
        block: u64,
    ) -> Result<(), Error> {
        let fees = (bump(last.max_fee), bump(last.priority_fee));
        let kind = if fees.0 == 0 {
            warn!(id = %send.id, tx = %last.hash, "transaction stuck at zero fees; re-broadcasting");
            metrics::counter!("custody_tx_unstuck_total", "action" => "rebroadcast").increment(1);
            return self.push(send, last, block, key).await;
        } else if attempts.len() > self.config.max_bumps as usize || last.kind == Kind::Cancel {
            warn!(id = %send.id, tx = %last.hash, "transaction stuck; cancelling");
            metrics::counter!("custody_tx_unstuck_total", "action" => "cancel").increment(1);
            Kind::Cancel
        } else {
            warn!(id = %send.id, tx = %last.hash, max_fee = fees.0, "transaction stuck; bumping fees");
            metrics::counter!("custody_tx_unstuck_total", "action" => "bump").increment(1);
            Kind::Call
        };
        let attempt = self.resign(key, send, kind, fees).await?;
        self.push(send, &attempt, block, key).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, Error> {
        self.provider.get_transaction_receipt(hash).await.map_err(Error::rpc("eth_getTransactionReceipt"))
    }

    /// Settles `send` with `outcome`.
    async fn close(&self, send: &SendRow, outcome: &Outcome, mined: Option<B256>) -> Result<(), Error> {
        let closed = {
            let _turn = self.gate.turn().await;
            record::settle(&self.pool, &send.id, outcome.as_str(), mined).await?
        };
        if closed {
            let seconds = (now_millis() - send.created_at).max(0) as f64 / 1000.0;
            metrics::counter!("custody_tx_settled_total", "outcome" => outcome.as_str()).increment(1);
            metrics::histogram!("custody_tx_settle_seconds", "outcome" => outcome.as_str()).record(seconds);
            info!(id = %send.id, nonce = send.nonce, outcome = outcome.as_str(), tx = ?mined, "transaction settled");
        }
        Ok(())
    }

    /// A settled row with its outcome (the receipt fetched again for a mined one).
    async fn settled(&self, send: SendRow) -> Result<Settled, Error> {
        let receipt = match send.mined_hash {
            Some(hash) => Some(Box::new(self.receipt(hash).await?.ok_or(Error::Rpc {
                call: "eth_getTransactionReceipt",
                message: format!("the receipt of mined transaction {hash} is gone (reorg?)"),
            })?)),
            None => None,
        };
        let error = || send.error.clone().unwrap_or_default();
        let outcome = match (send.status.as_str(), receipt) {
            ("included", Some(r)) => Outcome::Included(r),
            ("cancelled", Some(r)) => Outcome::Cancelled(r),
            ("rejected", _) => Outcome::Rejected(error()),
            ("dropped", _) => Outcome::Dropped,
            _ => return Err(Error::Corrupt("sender_txs.status")),
        };
        Ok(Settled { id: send.id, nonce: send.nonce, context: send.context, outcome })
    }
}

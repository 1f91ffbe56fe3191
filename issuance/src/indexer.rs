//! The indexer: follows PTKN `Transfer` and PBADGE `TransferSingle`/`TransferBatch` logs from a stored
//! cursor into `token_balance_cache` and `badge_index`, from what the chain says, never from what the
//! worker believes it sent. The cursor block's hash is kept; when the chain's hash at that height
//! differs (a reorg), the caches are rebuilt from block 0.

use std::future::Future;
use std::time::Duration;

use alloy::{
    eips::BlockNumberOrTag,
    primitives::B256,
    providers::{DynProvider, Provider},
    rpc::types::{Filter, Log},
    sol_types::SolEvent,
};
use custody_contracts::bindings::{peruri_badge::PeruriBadge, peruri_token::PeruriToken};
use tracing::{info, warn};

use crate::{
    Error, Issuance,
    plan::IssuanceContracts,
    store::{Store, Transfer},
};

/// Most blocks per `eth_getLogs` range.
const RANGE: u64 = 2_000;

/// Follows the token and badge contracts' events into the caches.
#[derive(Clone, Debug)]
pub struct Indexer {
    store: Store,
    provider: DynProvider,
    contracts: IssuanceContracts,
}

impl Indexer {
    /// An indexer over `issuance`'s database.
    pub fn new(issuance: &Issuance, provider: DynProvider, contracts: IssuanceContracts) -> Self {
        Self { store: issuance.store.clone(), provider, contracts }
    }

    /// Indexes until `shutdown` completes.
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.step().await {
                Ok(0) => interval,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    warn!(error = %e, "indexer step failed; retrying");
                    interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Drops the caches and the cursor: the next steps rebuild them from block 0.
    pub async fn reset(&self) -> Result<(), Error> {
        self.store.reset_index().await
    }

    /// Indexes up to `RANGE` new blocks; returns how many it applied (0: up to date).
    pub async fn step(&self) -> Result<u64, Error> {
        let head = self.provider.get_block_number().await.map_err(Error::rpc("eth_blockNumber"))?;
        let from = match self.store.index_cursor().await? {
            Some((number, hash)) => {
                if self.block_hash(number).await?.map(|h| h.to_string()) != Some(hash) {
                    warn!(block = number, "the indexed block is no longer on the chain; rebuilding the caches");
                    self.reset().await?;
                    0
                } else {
                    number + 1
                }
            }
            None => 0,
        };
        if from > head {
            return Ok(0);
        }
        let to = head.min(from + RANGE - 1);
        let hash = self.block_hash(to).await?.ok_or(Error::CorruptRow("block vanished"))?;
        let filter = Filter::new()
            .address(vec![self.contracts.token, self.contracts.badge])
            .event_signature(vec![
                PeruriToken::Transfer::SIGNATURE_HASH,
                PeruriBadge::TransferSingle::SIGNATURE_HASH,
                PeruriBadge::TransferBatch::SIGNATURE_HASH,
            ])
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(Error::rpc("eth_getLogs"))?;
        let transfers = logs.iter().map(|log| self.transfers(log)).collect::<Result<Vec<_>, _>>()?;
        self.store.index(to, hash, &transfers.concat()).await?;
        if !logs.is_empty() {
            info!(from, to, logs = logs.len(), "indexed");
        }
        Ok(to - from + 1)
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>, Error> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(Error::rpc("eth_getBlockByNumber"))?;
        Ok(block.map(|b| b.header.hash))
    }

    /// The transfers `log` reports.
    fn transfers(&self, log: &Log) -> Result<Vec<Transfer>, Error> {
        let bad = |_| Error::CorruptRow("undecodable event log");
        Ok(if log.address() == self.contracts.token {
            let e = PeruriToken::Transfer::decode_log(&log.inner).map_err(bad)?;
            vec![Transfer { from: e.from, to: e.to, badge: None, value: e.value }]
        } else if let Ok(e) = PeruriBadge::TransferSingle::decode_log(&log.inner) {
            vec![Transfer { from: e.from, to: e.to, badge: Some(e.id), value: e.value }]
        } else {
            let e = PeruriBadge::TransferBatch::decode_log(&log.inner).map_err(bad)?;
            e.ids
                .iter()
                .zip(&e.values)
                .map(|(id, value)| Transfer { from: e.from, to: e.to, badge: Some(*id), value: *value })
                .collect()
        })
    }
}

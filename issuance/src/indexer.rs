//! The indexer: follows PTKN `Transfer` and PBADGE `TransferSingle`/`TransferBatch` logs from a stored
//! cursor into `token_balance_cache` and `badge_index`, from what the chain says, never from what the
//! worker believes it sent. The cursor block's hash is kept; when the chain's hash at that height
//! differs (a reorg), the caches are rebuilt from block 0.

use std::future::Future;
use std::time::Duration;

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::{Filter, Log},
    sol_types::SolEvent,
};
use custody_contracts::bindings::{peruri_badge::PeruriBadge, peruri_token::PeruriToken};
use custody_db::{decode_u256, encode_address, encode_b256, encode_u256};
use sqlx::{Any, Row, Transaction};
use tracing::{info, warn};

use crate::{Error, Issuance, plan::IssuanceContracts, store::Store};

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
        let (_turn, mut tx) = self.store.begin_write("begin reset").await?;
        for table in ["issuance_indexed_blocks", "token_balance_cache", "badge_index"] {
            sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await.map_err(Error::db("reset"))?;
        }
        tx.commit().await.map_err(Error::db("commit reset"))
    }

    /// Indexes up to `RANGE` new blocks; returns how many it applied (0: up to date).
    pub async fn step(&self) -> Result<u64, Error> {
        let head = self.provider.get_block_number().await.map_err(Error::rpc("eth_blockNumber"))?;
        let cursor = sqlx::query("SELECT number, hash FROM issuance_indexed_blocks ORDER BY number DESC LIMIT 1")
            .fetch_optional(&self.store.pool)
            .await
            .map_err(Error::db("select cursor"))?;
        let from = match cursor {
            Some(row) => {
                let number: i64 = row.try_get("number").map_err(Error::db("decode cursor"))?;
                let hash: String = row.try_get("hash").map_err(Error::db("decode cursor"))?;
                let number = u64::try_from(number).map_err(|_| Error::CorruptRow("issuance_indexed_blocks.number"))?;
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
        let (_turn, mut tx) = self.store.begin_write("begin index").await?;
        // A write first (SQLite write lock at once).
        sqlx::query("INSERT INTO issuance_indexed_blocks (number, hash) VALUES ($1, $2)")
            .bind(to as i64)
            .bind(encode_b256(hash))
            .execute(&mut *tx)
            .await
            .map_err(Error::db("advance cursor"))?;
        sqlx::query("DELETE FROM issuance_indexed_blocks WHERE number < $1")
            .bind(to as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("trim cursor"))?;
        for log in &logs {
            self.apply(&mut tx, log).await?;
        }
        tx.commit().await.map_err(Error::db("commit index"))?;
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

    async fn apply(&self, tx: &mut Transaction<'_, Any>, log: &Log) -> Result<(), Error> {
        let bad = |_| Error::CorruptRow("undecodable event log");
        if log.address() == self.contracts.token {
            let e = PeruriToken::Transfer::decode_log(&log.inner).map_err(bad)?;
            add_balance(tx, e.from, e.value, false).await?;
            add_balance(tx, e.to, e.value, true).await?;
        } else if let Ok(e) = PeruriBadge::TransferSingle::decode_log(&log.inner) {
            add_badge(tx, e.from, e.id, e.value, false).await?;
            add_badge(tx, e.to, e.id, e.value, true).await?;
        } else {
            let e = PeruriBadge::TransferBatch::decode_log(&log.inner).map_err(bad)?;
            for (id, value) in e.ids.iter().zip(&e.values) {
                add_badge(tx, e.from, *id, *value, false).await?;
                add_badge(tx, e.to, *id, *value, true).await?;
            }
        }
        Ok(())
    }
}

fn apply_delta(current: Option<String>, value: U256, credit: bool) -> Result<U256, Error> {
    let current: U256 =
        current.map_or(Ok(U256::ZERO), |c| decode_u256(&c)).map_err(|_| Error::CorruptRow("cached amount"))?;
    Ok(if credit { current.saturating_add(value) } else { current.saturating_sub(value) })
}

async fn add_balance(tx: &mut Transaction<'_, Any>, account: Address, value: U256, credit: bool) -> Result<(), Error> {
    if account == Address::ZERO {
        return Ok(());
    }
    let current = sqlx::query("SELECT balance FROM token_balance_cache WHERE account = $1")
        .bind(encode_address(account))
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("select balance"))?
        .map(|r| r.try_get::<String, _>("balance"))
        .transpose()
        .map_err(Error::db("decode balance"))?;
    let next = apply_delta(current, value, credit)?;
    sqlx::query(
        "INSERT INTO token_balance_cache (account, balance) VALUES ($1, $2) \
         ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
    )
    .bind(encode_address(account))
    .bind(encode_u256(next))
    .execute(&mut **tx)
    .await
    .map_err(Error::db("upsert balance"))?;
    Ok(())
}

async fn add_badge(
    tx: &mut Transaction<'_, Any>,
    account: Address,
    id: U256,
    value: U256,
    credit: bool,
) -> Result<(), Error> {
    if account == Address::ZERO {
        return Ok(());
    }
    let current = sqlx::query("SELECT amount FROM badge_index WHERE account = $1 AND badge_id = $2")
        .bind(encode_address(account))
        .bind(encode_u256(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("select badge"))?
        .map(|r| r.try_get::<String, _>("amount"))
        .transpose()
        .map_err(Error::db("decode badge"))?;
    let next = apply_delta(current, value, credit)?;
    sqlx::query(
        "INSERT INTO badge_index (account, badge_id, amount) VALUES ($1, $2, $3) \
         ON CONFLICT (account, badge_id) DO UPDATE SET amount = excluded.amount",
    )
    .bind(encode_address(account))
    .bind(encode_u256(id))
    .bind(encode_u256(next))
    .execute(&mut **tx)
    .await
    .map_err(Error::db("upsert badge"))?;
    Ok(())
}

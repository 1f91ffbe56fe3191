//! The one transaction sender: "send this call from HSM key K, exactly once, across crashes". The
//! bundler's builder and the issuance worker send through it, and so does every later feature that
//! sends a transaction.
//!
//! ```text
//!  prepare(key, call)        gas (estimated unless given), EIP-1559 fees (zero on a zero-base-fee
//!      │                     chain), the chain's pending nonce: the RPC work, outside any transaction
//!  begin() ─► record(id)     in the caller's database transaction, beside its own writes: the key's
//!      │                     next nonce (never behind the chain's), signed in the HSM, the raw
//!      │                     transaction stored; a second record of `id` returns the first
//!  commit ─► broadcast(id)   the stored bytes; a node that knows them already counts as sent;
//!      │                     one that refuses them for good gets a cancellation at that nonce
//!  track(key)                receipts of every attempt ─► included | cancelled
//!      │                     nonce taken by a transaction not ours ─► dropped
//!      │                     stuck (blocks or time) ─► re-broadcast at zero fees, else bump the fees
//!      │                                           (+20%), after max_bumps cancel (self-transfer)
//!      └─► Settled { id, context, outcome } until the caller calls finish(id)
//! ```
//!
//! A nonce is taken in the same database transaction that stores the signed bytes, so a crash leaves
//! either nothing (the nonce is given back by the rollback) or a transaction that `track` broadcasts.
//! Several senders of one key (threads, processes on one PostgreSQL) take nonces from one row. The
//! outcome of a send is delivered until the caller has taken it (`finish`), so a caller that dies
//! between the two sees it again; callers' handlers are idempotent. Every signed transaction is told
//! to the process's [`Journal`] (the service's audit trail) before its first broadcast.

mod error;
mod journal;
mod record;
mod send;
mod track;

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::DynProvider,
    rpc::types::TransactionReceipt,
};
use custody_db::WriteGate;
use sqlx::AnyPool;
use tokio::sync::OnceCell;

pub use error::Error;
pub use journal::{Journal, Signed, set_journal};
pub use send::{Prepared, Write};

/// When a sent transaction counts as stuck, and what is done about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Blocks without a receipt after which a transaction is stuck.
    pub stuck_after_blocks: u64,
    /// Time without a receipt after which a transaction is stuck (on a chain that makes blocks only
    /// for transactions, no blocks pass).
    pub stuck_after: Duration,
    /// Fee bumps before a stuck transaction is cancelled by a zero-value self-transfer at its nonce.
    pub max_bumps: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self { stuck_after_blocks: 5, stuck_after: Duration::from_secs(30), max_bumps: 3 }
    }
}

/// A call to send: the target, its data and value, and its gas limit (estimated by the node if `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Call {
    /// The contract or account called.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
    /// Wei sent along.
    pub value: U256,
    /// Gas limit; `None`: the node's estimate plus a quarter (a fixed fallback if the call reverts).
    pub gas_limit: Option<u64>,
}

/// A recorded send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The caller's id.
    pub id: String,
    /// The sending key.
    pub from: Address,
    /// Its nonce.
    pub nonce: u64,
    /// The hash of the first signed transaction.
    pub hash: B256,
    /// Whether this call recorded it (false: it was recorded before, by this or another sender).
    pub new: bool,
}

/// How a send ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// One of the call's transactions was mined (successfully or reverted: see the receipt's status).
    Included(Box<TransactionReceipt>),
    /// The cancelling self-transfer was mined: the call was not executed.
    Cancelled(Box<TransactionReceipt>),
    /// Another transaction of the key (not this sender's) took the nonce: the call was not executed.
    Dropped,
    /// The node refused the call for good (the reason); its nonce was filled by a self-transfer.
    Rejected(String),
}

impl Outcome {
    /// The label of this outcome in the database and the metrics.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Included(_) => "included",
            Self::Cancelled(_) => "cancelled",
            Self::Dropped => "dropped",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// A send with its outcome, delivered by [`Sender::track`] until [`Sender::finish`].
#[derive(Clone, Debug)]
pub struct Settled {
    /// The caller's id.
    pub id: String,
    /// The nonce it was sent at.
    pub nonce: u64,
    /// What the caller recorded with it.
    pub context: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// The sender over one database and one node. Cheap to clone; as many as you like over one database.
#[derive(Clone, Debug)]
pub struct Sender {
    pool: AnyPool,
    gate: WriteGate,
    provider: DynProvider,
    config: SenderConfig,
    chain_id: Arc<OnceCell<u64>>,
}

impl Sender {
    /// A sender over `pool` (its tables migrated here) and the node behind `provider`.
    pub async fn open(pool: AnyPool, provider: DynProvider, config: SenderConfig) -> Result<Self, Error> {
        Self::migrate(&pool).await?;
        Ok(Self::new(pool, provider, config))
    }

    /// A sender over `pool`, whose tables [`migrate`](Self::migrate) made.
    pub fn new(pool: AnyPool, provider: DynProvider, config: SenderConfig) -> Self {
        Self { gate: WriteGate::of(&pool), pool, provider, config, chain_id: Arc::default() }
    }

    /// Creates or upgrades the sender's tables in `pool`'s database.
    pub async fn migrate(pool: &AnyPool) -> Result<(), Error> {
        // One SQL for both dialects.
        custody_db::migrate(pool, sqlx::migrate!("./migrations"), sqlx::migrate!("./migrations"))
            .await
            .map_err(Error::Migrate)
    }

    /// How many sends of `from` are not settled yet.
    pub async fn in_flight(&self, from: Address) -> Result<usize, Error> {
        Ok(record::open(&self.pool, from).await?.len())
    }

    /// The latest transaction of the call (the first or a fee bump; not a cancellation) of the send that
    /// transaction `hash` belongs to.
    pub async fn latest_attempt(&self, hash: B256) -> Result<Option<B256>, Error> {
        record::latest_attempt(&self.pool, hash).await
    }

    /// The node this sender talks to.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }
}

//! The mirror worker: outbox → merkle batch → planned calls → recorded with the transaction sender
//! (signed, kept before sending) → submitted → mined → activities confirmed with their proofs.
//!
//! Every step is a durable transition in the database, so a worker stopped at any point is resumed by
//! another over the same database: a planned call is recorded once (the sender stores its nonce and raw
//! transaction in the transaction that marks the call signed), a recorded one is re-sent as the same
//! bytes (the chain mines a nonce once), and every batch call carries a batch id the contracts refuse
//! twice. Several workers may run at once: the outbox is claimed with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL (SQLite has one writer), and nonces come from the sender's row per key.
//!
//! The steps, each in its module, over the store's queries: `batch` (outbox → batch and planned calls),
//! `send` (sign: recorded with the sender; submit: broadcast), `confirm` (the sender's outcomes on the
//! calls, then batches settled).

mod batch;
mod confirm;
mod send;

use std::{future::Future, time::Duration};

use alloy::providers::DynProvider;
use custody_accounts::Wallets;
use custody_sender::Sender;
use custody_signer::EthSigner;
use tracing::warn;

use crate::{Error, Issuance, config::WorkerConfig, plan::IssuanceContracts, store::Store};

/// How often [`Worker::run`] looks for receipts and signs and sends planned calls.
const POLL: Duration = Duration::from_millis(100);

/// What one [`Worker::tick`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Activities put into a batch.
    pub batched: usize,
    /// Transactions signed.
    pub signed: usize,
    /// Transactions submitted.
    pub submitted: usize,
    /// Transactions with a receipt.
    pub mined: usize,
}

impl Progress {
    /// Whether anything moved.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// The mirror worker. Cheap to clone; run as many as you like over one database.
#[derive(Clone, Debug)]
pub struct Worker {
    store: Store,
    wallets: Wallets,
    issuer: EthSigner,
    anchorer: EthSigner,
    sender: Sender,
    contracts: IssuanceContracts,
    config: WorkerConfig,
}

impl Worker {
    /// A worker over `issuance`'s database; `issuer` signs PTKN and PBADGE calls, `anchorer` PLOG calls
    /// (the deployment's ISSUER_ROLE and ANCHOR_ROLE holders), sent through the transaction sender on
    /// `provider`'s node; recipients are the users' smart accounts.
    pub fn new(
        issuance: &Issuance,
        wallets: Wallets,
        issuer: EthSigner,
        anchorer: EthSigner,
        provider: DynProvider,
        contracts: IssuanceContracts,
        config: WorkerConfig,
    ) -> Self {
        Self {
            store: issuance.store.clone(),
            wallets,
            issuer,
            anchorer,
            sender: Sender::new(issuance.store.pool.clone(), provider, config.sender),
            contracts,
            config,
        }
    }

    /// Runs the steps until `shutdown` completes: a batch at most every `interval` (at once again after a
    /// full one), signing, sending and receipts every 100 ms; pauses when the chain is unreachable.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_batch = tokio::time::Instant::now();
        loop {
            let due = tokio::time::Instant::now() >= next_batch;
            let pause = match self.step(due).await {
                Ok(progress) => {
                    if due {
                        let full = progress.batched >= self.config.batch_size.max(1);
                        next_batch =
                            tokio::time::Instant::now() + if full { Duration::ZERO } else { self.config.interval };
                    }
                    let busy = progress.signed + progress.submitted + progress.mined > 0;
                    if busy { Duration::ZERO } else { POLL.min(next_batch - tokio::time::Instant::now()) }
                }
                Err(e) => {
                    metrics::counter!("custody_issuance_step_failures_total", "reason" => e.reason()).increment(1);
                    warn!(error = %e, "mirror worker tick failed; retrying");
                    self.config.interval.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass of every step: batch, sign, submit, confirm.
    pub async fn tick(&self) -> Result<Progress, Error> {
        self.step(true).await
    }

    /// Batches (if `batch`), then signs, submits and follows receipts.
    async fn step(&self, batch: bool) -> Result<Progress, Error> {
        let batched = if batch { self.batch().await? } else { 0 };
        if batch {
            self.measure_outbox().await?;
        }
        let signed = self.sign().await?;
        let submitted = self.submit().await?;
        let mined = self.confirm().await?;
        Ok(Progress { batched, signed, submitted, mined })
    }

    /// Sets the outbox gauges after this pass's batch: the activities stored and not yet batched, and
    /// how long the oldest of them has waited (0 when there is none).
    async fn measure_outbox(&self) -> Result<(), Error> {
        let depth = self.store.outbox_depth().await?;
        metrics::gauge!("custody_issuance_outbox_depth").set(depth as f64);
        let waited =
            self.store.outbox_oldest().await?.map_or(0, |at| custody_db::now_millis().saturating_sub(at).max(0));
        metrics::gauge!("custody_issuance_outbox_age_seconds").set(waited as f64 / 1000.0);
        Ok(())
    }
}

/// Sender ids of issuance calls: `issuance:<call id>#<attempt>`, a new send (and nonce) per attempt.
const SEND_PREFIX: &str = "issuance:";

fn send_id(call: &str, attempt: i64) -> String {
    format!("{SEND_PREFIX}{call}#{attempt}")
}

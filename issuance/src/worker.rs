//! The mirror worker: outbox → merkle batch → planned calls → recorded with the transaction sender
//! (signed, kept before sending) → submitted → mined → activities confirmed with their proofs.
//!
//! Every step is a durable transition in the database, so a worker stopped at any point is resumed by
//! another over the same database: a planned call is recorded once (the sender stores its nonce and raw
//! transaction in the transaction that marks the call signed), a recorded one is re-sent as the same
//! bytes (the chain mines a nonce once), and every batch call carries a batch id the contracts refuse
//! twice. Several workers may run at once: the outbox is claimed with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL (SQLite has one writer), and nonces come from the sender's row per key.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::DynProvider,
};
use custody_accounts::Wallets;
use custody_db::{decode_address, decode_u256, encode_address, encode_b256};
use custody_sender::{Outcome, Sender, Settled};
use custody_signer::EthSigner;
use futures::{StreamExt, TryStreamExt};
use sqlx::{Any, Row, Transaction};
use tracing::{debug, info, warn};

use crate::{
    Error, Issuance,
    config::WorkerConfig,
    failpoint,
    merkle::{MerkleTree, activity_leaf},
    plan::{self, IssuanceContracts, Item, What},
    store::{Store, now_millis},
};

/// Wallets created at once for users a batch meets for the first time.
const WALLET_CONCURRENCY: usize = 4;
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

/// Sender ids of issuance calls: `issuance:<call id>#<attempt>`, a new send (and nonce) per attempt.
const SEND_PREFIX: &str = "issuance:";

fn send_id(call: &str, attempt: i64) -> String {
    format!("{SEND_PREFIX}{call}#{attempt}")
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

    /// Sets the outbox depth gauge: activities stored and not yet batched, after this pass's batch.
    async fn measure_outbox(&self) -> Result<(), Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM issuance_outbox")
            .fetch_one(&self.store.pool)
            .await
            .map_err(Error::db("count outbox"))?;
        let depth: i64 = row.try_get("n").map_err(Error::db("decode outbox count"))?;
        metrics::gauge!("custody_issuance_outbox_depth").set(depth as f64);
        Ok(())
    }

    /// Claims up to `batch_size` outbox entries and records their merkle batch and planned calls.
    /// Returns how many activities it batched.
    pub async fn batch(&self) -> Result<usize, Error> {
        let pool = &self.store.pool;
        let rows = sqlx::query(
            "SELECT o.seq, a.user_id FROM issuance_outbox o JOIN issuance_activities a ON a.id = o.activity_id \
             ORDER BY o.seq LIMIT $1",
        )
        .bind(self.limit())
        .fetch_all(pool)
        .await
        .map_err(Error::db("peek outbox"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        failpoint::hit("stored").await;
        // Recipients first, outside the claiming transaction (wallet creation writes to the database);
        // then only the entries peeked here are claimed, so every claimed activity has its recipient.
        let mut peeked = Vec::with_capacity(rows.len());
        let mut users = HashSet::new();
        for row in rows {
            peeked.push(row.try_get::<i64, _>("seq").map_err(Error::db("decode outbox"))?);
            users.insert(row.try_get::<String, _>("user_id").map_err(Error::db("decode outbox"))?);
        }
        // A user's first activity creates their wallet (an HSM key): a few at once.
        let recipients: HashMap<String, Address> = futures::stream::iter(users)
            .map(|user| async move {
                let (wallet, _) = self.wallets.create(&user).await.map_err(Error::Wallets)?;
                Ok::<_, Error>((user, wallet.address))
            })
            .buffer_unordered(WALLET_CONCURRENCY)
            .try_collect()
            .await?;

        let (_turn, mut tx) = self.store.begin_write("begin batch").await?;
        let skip_locked = if self.store.postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let seqs = (1..=peeked.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "DELETE FROM issuance_outbox WHERE seq IN \
             (SELECT seq FROM issuance_outbox WHERE seq IN ({seqs}){skip_locked}) RETURNING activity_id"
        );
        let claimed = peeked
            .iter()
            .fold(sqlx::query(&sql), |q, seq| q.bind(*seq))
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::db("claim outbox"))?;
        let ids: Vec<String> = claimed
            .iter()
            .map(|r| r.try_get("activity_id"))
            .collect::<Result<_, _>>()
            .map_err(Error::db("decode claim"))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let placeholders = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql =
            format!("SELECT id, user_id, kind, occurred_at FROM issuance_activities WHERE id IN ({placeholders})");
        let activities =
            bind_all(sqlx::query(&sql), &ids).fetch_all(&mut *tx).await.map_err(Error::db("load batch"))?;
        let sql = format!(
            "SELECT i.id, i.activity_id, i.kind, i.amount, i.badge_id, a.user_id FROM issuance_items i \
             JOIN issuance_activities a ON a.id = i.activity_id WHERE i.activity_id IN ({placeholders})"
        );
        let item_rows = bind_all(sqlx::query(&sql), &ids).fetch_all(&mut *tx).await.map_err(Error::db("load items"))?;

        let mut leaves = Vec::with_capacity(activities.len());
        for row in &activities {
            let id: String = row.try_get("id").map_err(Error::db("decode activity"))?;
            let kind: String = row.try_get("kind").map_err(Error::db("decode activity"))?;
            let at: i64 = row.try_get("occurred_at").map_err(Error::db("decode activity"))?;
            let key: B256 = id.parse().map_err(|_| Error::CorruptRow("issuance_activities.id"))?;
            leaves.push((id, activity_leaf(key, &kind, u64::try_from(at).unwrap_or(0))));
        }
        let hashes: Vec<B256> = leaves.iter().map(|(_, l)| *l).collect();
        let tree = MerkleTree::new(&hashes).ok_or(Error::CorruptRow("empty batch"))?;
        let root = tree.root();
        let batch_id = encode_b256(plan::chain_batch_id(root, "PLOG", 0));

        let mut items = Vec::new();
        let mut log_items = Vec::new();
        for row in &item_rows {
            let get = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(Error::db("decode item"));
            let id: i64 = row.try_get("id").map_err(Error::db("decode item"))?;
            let user = get("user_id")?.unwrap_or_default();
            let recipient = *recipients.get(&user).ok_or(Error::CorruptRow("recipient not resolved"))?;
            let number = |v: Option<String>| -> Result<U256, Error> {
                v.and_then(|s| decode_u256(&s).ok()).ok_or(Error::CorruptRow("issuance_items amount or badge"))
            };
            let what = match get("kind")?.as_deref() {
                Some("token") => What::Mint(number(get("amount")?)?),
                Some("burn") => What::Burn(number(get("amount")?)?),
                Some("badge") => What::Badge(number(get("badge_id")?)?),
                _ => {
                    log_items.push(id);
                    continue;
                }
            };
            items.push(Item { id, recipient, what });
        }
        let uri = format!("{}{batch_id}", self.config.batch_uri);
        let calls = plan::plan(self.contracts, root, leaves.len() as u64, &uri, &items, self.config.max_mints_per_tx);

        let now = now_millis();
        sqlx::query(
            "INSERT INTO issuance_batches (id, root, leaf_count, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $4)",
        )
        .bind(&batch_id)
        .bind(encode_b256(root))
        .bind(leaves.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert batch"))?;
        for (ordinal, call) in calls.iter().enumerate() {
            let tx_id = format!("{batch_id}:{ordinal}");
            sqlx::query(
                "INSERT INTO issuance_txs (id, batch_id, ordinal, target, calldata, status, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'planned', $6)",
            )
            .bind(&tx_id)
            .bind(&batch_id)
            .bind(ordinal as i64)
            .bind(encode_address(call.target))
            .bind(call.calldata.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert tx"))?;
            let carried = if ordinal == 0 { &log_items } else { &call.items };
            for item in carried {
                set_item_tx(&mut tx, *item, &tx_id).await?;
            }
        }
        for (id, leaf) in &leaves {
            let proof = tree.proof(*leaf).unwrap_or_default();
            let proof = serde_json::to_string(&proof.iter().map(B256::to_string).collect::<Vec<_>>())
                .map_err(|_| Error::CorruptRow("proof"))?;
            sqlx::query(
                "UPDATE issuance_activities SET status = 'batched', batch_id = $1, leaf = $2, proof = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(&batch_id)
            .bind(encode_b256(*leaf))
            .bind(proof)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("mark batched"))?;
        }
        tx.commit().await.map_err(Error::db("commit batch"))?;
        failpoint::hit("batched").await;
        info!(batch_id, leaves = leaves.len(), calls = calls.len(), "batch planned");
        Ok(leaves.len())
    }

    /// Records every planned call with the transaction sender: its nonce, signature and raw bytes are
    /// stored in the same database transaction that marks the call signed.
    pub async fn sign(&self) -> Result<usize, Error> {
        let mut signed = 0;
        loop {
            let row = sqlx::query(
                "SELECT id, target, calldata, attempts FROM issuance_txs WHERE status = 'planned' \
                 ORDER BY updated_at, id LIMIT 1",
            )
            .fetch_optional(&self.store.pool)
            .await
            .map_err(Error::db("next planned"))?;
            let Some(row) = row else { return Ok(signed) };
            let id: String = row.try_get("id").map_err(Error::db("decode planned"))?;
            let attempts: i64 = row.try_get("attempts").map_err(Error::db("decode planned"))?;
            let target = decode_address(&row.try_get::<String, _>("target").map_err(Error::db("decode planned"))?)
                .map_err(|_| Error::CorruptRow("issuance_txs.target"))?;
            let input: Bytes = parse(&row, "calldata")?;
            let signer = if target == self.contracts.log { &self.anchorer } else { &self.issuer };
            let call = custody_sender::Call { to: target, input, ..Default::default() };
            let prepared = self.sender.prepare(signer.address(), call).await?;
            let mut write = self.sender.begin().await?;
            // Claimed first, so a second worker waits here for the first's commit and then finds it taken.
            let claimed = sqlx::query(
                "UPDATE issuance_txs SET status = 'signed', sender = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'planned' AND attempts = $4",
            )
            .bind(encode_address(signer.address()))
            .bind(now_millis())
            .bind(&id)
            .bind(attempts)
            .execute(&mut *write.db)
            .await
            .map_err(Error::db("claim planned"))?
            .rows_affected();
            if claimed == 0 {
                continue; // another worker signed it first
            }
            let sent = self.sender.record(&mut write, &send_id(&id, attempts), signer, prepared, &id).await?;
            sqlx::query("UPDATE issuance_txs SET nonce = $1, tx_hash = $2 WHERE id = $3")
                .bind(sent.nonce as i64)
                .bind(encode_b256(sent.hash))
                .bind(&id)
                .execute(&mut *write.db)
                .await
                .map_err(Error::db("store signed"))?;
            write.commit().await?;
            failpoint::hit("signed").await;
            debug!(tx = %id, hash = %sent.hash, nonce = sent.nonce, "signed");
            signed += 1;
        }
    }

    /// Broadcasts every signed call (the stored bytes; a node that already has them counts as sent).
    pub async fn submit(&self) -> Result<usize, Error> {
        let rows = sqlx::query(
            "SELECT id, batch_id, sender, attempts FROM issuance_txs WHERE status = 'signed' ORDER BY sender, nonce",
        )
        .fetch_all(&self.store.pool)
        .await
        .map_err(Error::db("select signed"))?;
        let mut submitted = 0;
        for row in rows {
            let get = |c: &'static str| row.try_get::<String, _>(c).map_err(Error::db("decode signed"));
            let (id, batch_id) = (get("id")?, get("batch_id")?);
            let attempts: i64 = row.try_get("attempts").map_err(Error::db("decode signed"))?;
            let from = decode_address(&get("sender")?).map_err(|_| Error::CorruptRow("issuance_txs.sender"))?;
            let key = if from == self.anchorer.address() { &self.anchorer } else { &self.issuer };
            self.sender.broadcast(&send_id(&id, attempts), key).await?;
            failpoint::hit("submitted").await;
            self.mark_submitted(&id, &batch_id).await?;
            submitted += 1;
        }
        Ok(submitted)
    }

    async fn mark_submitted(&self, id: &str, batch_id: &str) -> Result<(), Error> {
        let now = now_millis();
        let (_turn, mut tx) = self.store.begin_write("begin submitted").await?;
        sqlx::query(
            "UPDATE issuance_txs SET status = 'submitted', updated_at = $1 WHERE id = $2 AND status = 'signed'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("mark tx submitted"))?;
        sqlx::query(
            "UPDATE issuance_activities SET status = 'submitted', updated_at = $1 WHERE batch_id = $2 \
             AND status = 'batched'",
        )
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("mark activities submitted"))?;
        tx.commit().await.map_err(Error::db("commit submitted"))
    }

    /// Takes the sender's outcomes: a mined call is recorded; one that reverted, or was cancelled,
    /// dropped or refused, is planned again (same batch id, new nonce) up to `max_attempts`; a batch whose
    /// calls are all mined confirms its activities.
    pub async fn confirm(&self) -> Result<usize, Error> {
        let mut mined = 0;
        for key in [&self.issuer, &self.anchorer] {
            for settled in self.sender.track(key).await? {
                failpoint::hit("mined").await;
                mined += self.record_outcome(&settled).await?;
                self.sender.finish(&settled.id).await?;
            }
        }
        // Every batch with all its receipts in: those just recorded, and any a worker recorded before it
        // died (or failed) without settling it.
        for batch in self.unsettled().await? {
            failpoint::hit("recorded").await;
            self.settle(&batch).await?;
        }
        Ok(mined)
    }

    /// Records one call's outcome on its row (once: the row must still be at that attempt). Returns 1 if
    /// it was recorded.
    async fn record_outcome(&self, settled: &Settled) -> Result<usize, Error> {
        let Some((id, attempt)) = settled.id.strip_prefix(SEND_PREFIX).and_then(|rest| rest.rsplit_once('#')) else {
            return Err(Error::CorruptRow("sender id of an issuance call"));
        };
        let attempt: i64 = attempt.parse().map_err(|_| Error::CorruptRow("sender id attempt"))?;
        let (receipt, failure) = match &settled.outcome {
            Outcome::Included(receipt) if receipt.status() => (Some(receipt), None),
            Outcome::Included(receipt) => (Some(receipt), Some("reverted".to_owned())),
            Outcome::Cancelled(receipt) => (Some(receipt), Some("cancelled when stuck".to_owned())),
            Outcome::Dropped => (None, Some("its nonce was taken by another transaction".to_owned())),
            Outcome::Rejected(reason) => (None, Some(format!("refused by the node: {reason}"))),
        };
        let (status, error) = match failure {
            None => ("mined", None),
            Some(why) if attempt + 1 < i64::from(self.config.max_attempts) => {
                warn!(tx = %id, %why, "transaction did not take effect; planning it again");
                ("planned", Some(format!("attempt {} {why}", attempt + 1)))
            }
            Some(why) => {
                warn!(tx = %id, %why, "transaction did not take effect; giving up");
                ("failed", Some(format!("transaction {why} after {} attempts", attempt + 1)))
            }
        };
        let attempts = if status == "mined" { attempt } else { attempt + 1 };
        let mined = receipt.filter(|_| status == "mined");
        let done = sqlx::query(
            "UPDATE issuance_txs SET status = $1, error = $2, attempts = $3, block_number = $4, gas_used = $5, \
             tx_hash = COALESCE($6, tx_hash), updated_at = $7 \
             WHERE id = $8 AND attempts = $9 AND status IN ('signed', 'submitted')",
        )
        .bind(status)
        .bind(error)
        .bind(attempts)
        .bind(mined.and_then(|r| r.block_number).map(|b| b as i64))
        .bind(mined.map(|r| r.gas_used as i64))
        .bind(mined.map(|r| encode_b256(r.transaction_hash)))
        .bind(now_millis())
        .bind(id)
        .bind(attempt)
        .execute(&self.store.pool)
        .await
        .map_err(Error::db("record receipt"))?;
        Ok(usize::from(done.rows_affected() == 1))
    }

    /// Pending batches with no transaction left in flight (every receipt recorded, the batch not settled).
    async fn unsettled(&self) -> Result<Vec<String>, Error> {
        sqlx::query(
            "SELECT b.id FROM issuance_batches b WHERE b.status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM issuance_txs t WHERE t.batch_id = b.id AND t.status NOT IN ('mined', 'failed'))",
        )
        .fetch_all(&self.store.pool)
        .await
        .map_err(Error::db("unsettled batches"))?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()
        .map_err(Error::db("decode unsettled"))
    }

    /// Confirms (or fails) a batch's activities once all its calls are mined (or one has failed for good).
    async fn settle(&self, batch: &str) -> Result<(), Error> {
        let statuses: Vec<String> = sqlx::query("SELECT status FROM issuance_txs WHERE batch_id = $1")
            .bind(batch)
            .fetch_all(&self.store.pool)
            .await
            .map_err(Error::db("batch statuses"))?
            .iter()
            .map(|r| r.try_get("status"))
            .collect::<Result<_, _>>()
            .map_err(Error::db("decode statuses"))?;
        let outcome = if statuses.iter().all(|s| s == "mined") {
            ("confirmed", "confirmed", None)
        } else if statuses.iter().any(|s| s == "failed") && statuses.iter().all(|s| s == "mined" || s == "failed") {
            ("failed", "failed", Some(format!("a transaction of batch {batch} reverted")))
        } else {
            return Ok(());
        };
        let now = now_millis();
        let (_turn, mut tx) = self.store.begin_write("begin settle").await?;
        sqlx::query("UPDATE issuance_batches SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(outcome.0)
            .bind(now)
            .bind(batch)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("settle batch"))?;
        sqlx::query(
            "UPDATE issuance_activities SET status = $1, error = $2, updated_at = $3 WHERE batch_id = $4 \
             AND status IN ('batched', 'submitted')",
        )
        .bind(outcome.1)
        .bind(outcome.2)
        .bind(now)
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("settle activities"))?;
        tx.commit().await.map_err(Error::db("commit settle"))?;
        let created: Option<i64> = sqlx::query("SELECT created_at FROM issuance_batches WHERE id = $1")
            .bind(batch)
            .fetch_optional(&self.store.pool)
            .await
            .map_err(Error::db("batch created_at"))?
            .map(|row| row.try_get("created_at"))
            .transpose()
            .map_err(Error::db("decode created_at"))?;
        if let Some(created) = created {
            let seconds = (now - created).max(0) as f64 / 1000.0;
            metrics::histogram!("custody_issuance_batch_settle_seconds", "outcome" => outcome.0).record(seconds);
        }
        metrics::counter!("custody_issuance_batches_total", "outcome" => outcome.0).increment(1);
        info!(batch_id = batch, outcome = outcome.0, "batch settled");
        Ok(())
    }

    fn limit(&self) -> i64 {
        i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX)
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [String],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for v in values {
        query = query.bind(v);
    }
    query
}

async fn set_item_tx(tx: &mut Transaction<'_, Any>, item: i64, tx_id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE issuance_items SET tx_id = $1 WHERE id = $2")
        .bind(tx_id)
        .bind(item)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("assign item"))?;
    Ok(())
}

fn parse<T: std::str::FromStr>(row: &sqlx::any::AnyRow, column: &'static str) -> Result<T, Error> {
    let text: String = row.try_get(column).map_err(Error::db("decode column"))?;
    text.parse().map_err(|_| Error::CorruptRow(column))
}

//! The mirror worker: outbox → merkle batch → planned calls → signed raw transactions (kept before
//! sending) → submitted → mined → activities confirmed with their proofs.
//!
//! Every step is a durable transition in the database, so a worker stopped at any point is resumed by
//! another over the same database: a planned call is signed once (the nonce and the raw transaction are
//! stored in one database transaction), a signed one is re-sent as the same bytes (the chain mines a
//! nonce once), and every batch call carries a batch id the contracts refuse twice. Several workers may
//! run at once: the outbox is claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one
//! writer), and signing is serialised by the sender's nonce row.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    time::Duration,
};

use alloy::{
    consensus::{SignableTransaction, TxEnvelope, TxLegacy},
    eips::eip2718::Encodable2718,
    network::TxSigner,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
};
use custody_accounts::Wallets;
use custody_db::{decode_address, decode_b256, decode_u256, encode_address, encode_b256};
use custody_signer::EthSigner;
use futures::{StreamExt, TryStreamExt};
use sqlx::{Any, Row, Transaction};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use crate::{
    Error, Issuance,
    config::WorkerConfig,
    failpoint,
    merkle::{MerkleTree, activity_leaf},
    plan::{self, IssuanceContracts, Item, What},
    store::{Store, now_millis},
};

/// A submitted transaction without a receipt is re-sent (same bytes) after this long.
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Wallets created at once for users a batch meets for the first time.
const WALLET_CONCURRENCY: usize = 4;
/// How often [`Worker::run`] looks for receipts and signs and sends planned calls.
const POLL: Duration = Duration::from_millis(100);
/// Gas limit when estimation fails (the call is expected to revert; its receipt decides).
const FALLBACK_GAS: u64 = 5_000_000;

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
    provider: DynProvider,
    contracts: IssuanceContracts,
    config: WorkerConfig,
    chain_id: std::sync::Arc<OnceCell<u64>>,
}

/// A signed row to send.
struct Signed {
    id: String,
    batch_id: String,
    raw: Bytes,
    hash: B256,
}

impl Signed {
    /// From an `issuance_txs` row with `id, batch_id, raw, tx_hash`.
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, Error> {
        Ok(Self {
            id: row.try_get("id").map_err(Error::db("decode tx"))?,
            batch_id: row.try_get("batch_id").map_err(Error::db("decode tx"))?,
            raw: parse(row, "raw")?,
            hash: decode_b256(&row.try_get::<String, _>("tx_hash").map_err(Error::db("decode tx"))?)
                .map_err(|_| Error::CorruptRow("issuance_txs.tx_hash"))?,
        })
    }
}

impl Worker {
    /// A worker over `issuance`'s database; `issuer` signs PTKN and PBADGE calls, `anchorer` PLOG calls
    /// (the deployment's ISSUER_ROLE and ANCHOR_ROLE holders); recipients are the users' smart accounts.
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
            provider,
            contracts,
            config,
            chain_id: Default::default(),
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
        if batch {
            self.measure_outbox().await?;
        }
        let batched = if batch { self.batch().await? } else { 0 };
        let signed = self.sign().await?;
        let submitted = self.submit().await?;
        let mined = self.confirm().await?;
        Ok(Progress { batched, signed, submitted, mined })
    }

    /// Sets the outbox depth gauge: activities stored and not yet batched.
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

    /// Signs every planned call: nonce, signature and raw bytes are stored in one database transaction.
    pub async fn sign(&self) -> Result<usize, Error> {
        let pool = &self.store.pool;
        let chain_id = *self
            .chain_id
            .get_or_try_init(|| async { self.provider.get_chain_id().await.map_err(Error::rpc("eth_chainId")) })
            .await?;
        let mut signed = 0;
        loop {
            let row = sqlx::query(
                "SELECT id, target, calldata FROM issuance_txs WHERE status = 'planned' ORDER BY updated_at, id LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .map_err(Error::db("next planned"))?;
            let Some(row) = row else { return Ok(signed) };
            let id: String = row.try_get("id").map_err(Error::db("decode planned"))?;
            let target = decode_address(&row.try_get::<String, _>("target").map_err(Error::db("decode planned"))?)
                .map_err(|_| Error::CorruptRow("issuance_txs.target"))?;
            let input: Bytes = parse(&row, "calldata")?;
            let signer = if target == self.contracts.log { &self.anchorer } else { &self.issuer };
            let from = signer.address();
            let request = TransactionRequest::default().from(from).to(target).input(input.clone().into());
            let gas_limit = match self.provider.estimate_gas(request).await {
                Ok(gas) => gas.saturating_mul(5) / 4 + 20_000,
                Err(e) if e.is_error_resp() => {
                    warn!(tx = %id, error = %e, "gas estimation refused; sending with the fallback limit");
                    FALLBACK_GAS
                }
                Err(e) => return Err(Error::rpc("eth_estimateGas")(e)),
            };
            let gas_price = self.provider.get_gas_price().await.map_err(Error::rpc("eth_gasPrice"))?;
            self.ensure_nonce(from).await?;

            let (_turn, mut db) = self.store.begin_write("begin sign").await?;
            let next: i64 = sqlx::query(
                "UPDATE issuance_nonces SET next_nonce = next_nonce + 1 WHERE sender = $1 RETURNING next_nonce",
            )
            .bind(encode_address(from))
            .fetch_one(&mut *db)
            .await
            .map_err(Error::db("take nonce"))?
            .try_get("next_nonce")
            .map_err(Error::db("decode nonce"))?;
            let nonce = u64::try_from(next - 1).map_err(|_| Error::CorruptRow("issuance_nonces.next_nonce"))?;
            let mut legacy = TxLegacy {
                chain_id: Some(chain_id),
                nonce,
                gas_price,
                gas_limit,
                to: TxKind::Call(target),
                value: U256::ZERO,
                input,
            };
            let signature = signer.sign_transaction(&mut legacy).await.map_err(Error::Sign)?;
            let envelope = TxEnvelope::from(legacy.into_signed(signature));
            let hash = *envelope.tx_hash();
            let raw = Bytes::from(envelope.encoded_2718());
            let updated = sqlx::query(
                "UPDATE issuance_txs SET status = 'signed', sender = $1, nonce = $2, raw = $3, tx_hash = $4, \
                 updated_at = $5 WHERE id = $6 AND status = 'planned'",
            )
            .bind(encode_address(from))
            .bind(nonce as i64)
            .bind(raw.to_string())
            .bind(encode_b256(hash))
            .bind(now_millis())
            .bind(&id)
            .execute(&mut *db)
            .await
            .map_err(Error::db("store signed"))?
            .rows_affected();
            if updated == 0 {
                continue; // another worker signed it first; the nonce is given back by the rollback
            }
            db.commit().await.map_err(Error::db("commit signed"))?;
            failpoint::hit("signed").await;
            debug!(tx = %id, %hash, nonce, "signed");
            signed += 1;
        }
    }

    /// Sends every signed transaction (the stored bytes). A node that already has it, or has mined it,
    /// counts as sent.
    pub async fn submit(&self) -> Result<usize, Error> {
        let rows = sqlx::query(
            "SELECT id, batch_id, raw, tx_hash FROM issuance_txs WHERE status = 'signed' ORDER BY sender, nonce",
        )
        .fetch_all(&self.store.pool)
        .await
        .map_err(Error::db("select signed"))?;
        let mut submitted = 0;
        for row in rows {
            let signed = Signed::from_row(&row)?;
            if self.send(&signed).await? {
                failpoint::hit("submitted").await;
                self.mark_submitted(&signed).await?;
                submitted += 1;
            }
        }
        Ok(submitted)
    }

    /// Sends one raw transaction; `Ok(false)` if the node refused it for a reason other than knowing it.
    async fn send(&self, signed: &Signed) -> Result<bool, Error> {
        match self.provider.send_raw_transaction(&signed.raw).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_error_resp() => {
                let text = e.to_string().to_lowercase();
                let known = text.contains("already known") || text.contains("known transaction");
                let mined = self
                    .provider
                    .get_transaction_receipt(signed.hash)
                    .await
                    .map_err(Error::rpc("eth_getTransactionReceipt"))?
                    .is_some();
                if !(known || mined) {
                    warn!(tx = %signed.id, error = %e, "node refused the transaction; will retry");
                }
                Ok(known || mined)
            }
            Err(e) => Err(Error::rpc("eth_sendRawTransaction")(e)),
        }
    }

    async fn mark_submitted(&self, signed: &Signed) -> Result<(), Error> {
        let now = now_millis();
        let (_turn, mut tx) = self.store.begin_write("begin submitted").await?;
        sqlx::query(
            "UPDATE issuance_txs SET status = 'submitted', updated_at = $1 WHERE id = $2 AND status = 'signed'",
        )
        .bind(now)
        .bind(&signed.id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("mark tx submitted"))?;
        sqlx::query(
            "UPDATE issuance_activities SET status = 'submitted', updated_at = $1 WHERE batch_id = $2 \
             AND status = 'batched'",
        )
        .bind(now)
        .bind(&signed.batch_id)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("mark activities submitted"))?;
        tx.commit().await.map_err(Error::db("commit submitted"))
    }

    /// Follows receipts: mined calls are recorded; reverted ones are planned again (same batch id, new
    /// nonce) up to `max_attempts`; a batch whose calls are all mined confirms its activities.
    pub async fn confirm(&self) -> Result<usize, Error> {
        let rows = sqlx::query(
            "SELECT id, batch_id, raw, tx_hash, attempts, updated_at FROM issuance_txs WHERE status = 'submitted'",
        )
        .fetch_all(&self.store.pool)
        .await
        .map_err(Error::db("select submitted"))?;
        let mut mined = 0;
        for row in rows {
            let signed = Signed::from_row(&row)?;
            let attempts: i64 = row.try_get("attempts").map_err(Error::db("decode submitted"))?;
            let updated_at: i64 = row.try_get("updated_at").map_err(Error::db("decode submitted"))?;
            let receipt = self
                .provider
                .get_transaction_receipt(signed.hash)
                .await
                .map_err(Error::rpc("eth_getTransactionReceipt"))?;
            let Some(receipt) = receipt else {
                if now_millis() - updated_at > RESEND_AFTER.as_millis() as i64 {
                    self.send(&signed).await?;
                    sqlx::query("UPDATE issuance_txs SET updated_at = $1 WHERE id = $2")
                        .bind(now_millis())
                        .bind(&signed.id)
                        .execute(&self.store.pool)
                        .await
                        .map_err(Error::db("touch submitted"))?;
                }
                continue;
            };
            failpoint::hit("mined").await;
            let block = receipt.block_number.map(|b| b as i64);
            let (status, error) = if receipt.status() {
                ("mined", None)
            } else if attempts + 1 < i64::from(self.config.max_attempts) {
                warn!(tx = %signed.id, hash = %signed.hash, "transaction reverted; planning it again");
                ("planned", Some(format!("attempt {} reverted", attempts + 1)))
            } else {
                warn!(tx = %signed.id, hash = %signed.hash, "transaction reverted; giving up");
                ("failed", Some(format!("transaction reverted after {} attempts", attempts + 1)))
            };
            let attempts = if receipt.status() { attempts } else { attempts + 1 };
            sqlx::query(
                "UPDATE issuance_txs SET status = $1, error = $2, attempts = $3, block_number = $4, gas_used = $5, \
                 updated_at = $6 WHERE id = $7 AND status = 'submitted'",
            )
            .bind(status)
            .bind(error)
            .bind(attempts)
            .bind(block)
            .bind(receipt.gas_used as i64)
            .bind(now_millis())
            .bind(&signed.id)
            .execute(&self.store.pool)
            .await
            .map_err(Error::db("record receipt"))?;
            mined += 1;
        }
        // Every batch with all its receipts in: those just recorded, and any a worker recorded before it
        // died (or failed) without settling it.
        for batch in self.unsettled().await? {
            failpoint::hit("recorded").await;
            self.settle(&batch).await?;
        }
        Ok(mined)
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

    /// Makes sure the sender has a nonce row, starting at the chain's pending count.
    async fn ensure_nonce(&self, sender: Address) -> Result<(), Error> {
        let known = sqlx::query("SELECT next_nonce FROM issuance_nonces WHERE sender = $1")
            .bind(encode_address(sender))
            .fetch_optional(&self.store.pool)
            .await
            .map_err(Error::db("select nonce"))?;
        if known.is_some() {
            return Ok(());
        }
        let count = self
            .provider
            .get_transaction_count(sender)
            .pending()
            .await
            .map_err(Error::rpc("eth_getTransactionCount"))?;
        sqlx::query("INSERT INTO issuance_nonces (sender, next_nonce) VALUES ($1, $2) ON CONFLICT (sender) DO NOTHING")
            .bind(encode_address(sender))
            .bind(count as i64)
            .execute(&self.store.pool)
            .await
            .map_err(Error::db("insert nonce"))?;
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

//! Batches: outbox entries claimed into a merkle batch with its planned calls, and batches settled once
//! all their calls have an outcome.

use std::{collections::HashMap, time::Duration};

use alloy::primitives::{Address, B256};
use custody_db::{encode_address, encode_b256};
use sqlx::{
    Any, AnyConnection, Row, Transaction,
    any::{AnyArguments, AnyRow},
    query::Query,
};
use tokio::sync::OwnedMutexGuard;

use super::{Store, now_millis, placeholders};
use crate::{
    Error,
    item::ItemKind,
    merkle::{MerkleTree, activity_leaf},
    plan,
};

/// Outbox entries claimed, in a write not yet committed: [`Claim::record`] stores their batch, dropping
/// it gives them back.
#[derive(Debug)]
pub(crate) struct Claim {
    _turn: Option<OwnedMutexGuard<()>>,
    tx: Transaction<'static, Any>,
    /// The claimed activities' ids and merkle leaves.
    pub(crate) leaves: Vec<(String, B256)>,
    /// Their items, each with its recipient.
    pub(crate) items: Vec<plan::Item>,
}

impl Store {
    /// How many activities are stored and not yet batched.
    pub(crate) async fn outbox_depth(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM issuance_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(Error::db("count outbox"))?;
        row.try_get("n").map_err(Error::db("decode outbox count"))
    }

    /// When the oldest activity still in the outbox was received (Unix milliseconds), if any is.
    pub(crate) async fn outbox_oldest(&self) -> Result<Option<i64>, Error> {
        sqlx::query_scalar(
            "SELECT MIN(a.created_at) FROM issuance_outbox o JOIN issuance_activities a ON a.id = o.activity_id",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(Error::db("oldest outbox entry"))
    }

    /// The first `limit` outbox entries (sequence number and user), without claiming them.
    pub(crate) async fn peek_outbox(&self, limit: i64) -> Result<Vec<(i64, String)>, Error> {
        let rows = sqlx::query(
            "SELECT o.seq, a.user_id FROM issuance_outbox o JOIN issuance_activities a ON a.id = o.activity_id \
             ORDER BY o.seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("peek outbox"))?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("user_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::db("decode outbox"))
    }

    /// Claims those of the entries `seqs` still in the outbox (on PostgreSQL skipping any another worker
    /// holds) with their activities' leaves and their items, each item sent to its user's wallet in
    /// `recipients`; `None` if none is left.
    pub(crate) async fn claim_outbox(
        &self,
        seqs: &[i64],
        recipients: &HashMap<String, Address>,
    ) -> Result<Option<Claim>, Error> {
        let (turn, mut tx) = self.begin_write("begin batch").await?;
        let skip_locked = if self.postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "DELETE FROM issuance_outbox WHERE seq IN \
             (SELECT seq FROM issuance_outbox WHERE seq IN ({}){skip_locked}) RETURNING activity_id",
            placeholders(seqs.len())
        );
        let claimed = seqs
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
            return Ok(None);
        }
        let list = placeholders(ids.len());
        let sql = format!("SELECT id, user_id, kind, occurred_at FROM issuance_activities WHERE id IN ({list})");
        let rows = fetch_in(&mut tx, &sql, &ids, "load batch").await?;
        let mut leaves = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id").map_err(Error::db("decode activity"))?;
            let kind: String = row.try_get("kind").map_err(Error::db("decode activity"))?;
            let at: i64 = row.try_get("occurred_at").map_err(Error::db("decode activity"))?;
            let key: B256 = id.parse().map_err(|_| Error::CorruptRow("issuance_activities.id"))?;
            let leaf = activity_leaf(key, &kind, u64::try_from(at).unwrap_or(0));
            leaves.push((id, leaf));
        }
        let sql = format!(
            "SELECT i.id, i.kind, i.amount, i.badge_id, a.user_id FROM issuance_items i \
             JOIN issuance_activities a ON a.id = i.activity_id WHERE i.activity_id IN ({list})"
        );
        let rows = fetch_in(&mut tx, &sql, &ids, "load items").await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(Error::db("decode item"));
            let id: i64 = row.try_get("id").map_err(Error::db("decode item"))?;
            let user = get("user_id")?.unwrap_or_default();
            let recipient = *recipients.get(&user).ok_or(Error::CorruptRow("recipient not resolved"))?;
            let kind = get("kind")?.unwrap_or_default();
            let kind = ItemKind::from_row(&kind, get("amount")?.as_deref(), get("badge_id")?.as_deref())?;
            items.push(plan::Item { id, recipient, kind });
        }
        Ok(Some(Claim { _turn: turn, tx, leaves, items }))
    }

    /// Pending batches with no call left in flight (every outcome recorded, the batch not settled).
    pub(crate) async fn unsettled_batches(&self) -> Result<Vec<String>, Error> {
        let query = sqlx::query(
            "SELECT b.id FROM issuance_batches b WHERE b.status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM issuance_txs t WHERE t.batch_id = b.id AND t.status NOT IN ('mined', 'failed'))",
        );
        self.texts(query, "id", "unsettled batches").await
    }

    /// The statuses of `batch`'s calls.
    pub(crate) async fn call_statuses(&self, batch: &str) -> Result<Vec<String>, Error> {
        let query = sqlx::query("SELECT status FROM issuance_txs WHERE batch_id = $1").bind(batch);
        self.texts(query, "status", "batch statuses").await
    }

    /// The text column `column` of every row of `query`.
    async fn texts<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
        column: &'static str,
        op: &'static str,
    ) -> Result<Vec<String>, Error> {
        let rows = query.fetch_all(&self.pool).await.map_err(Error::db(op))?;
        rows.iter().map(|r| r.try_get(column)).collect::<Result<_, _>>().map_err(Error::db(op))
    }

    /// Settles `batch` as `status` (`confirmed` or `failed`) with its batched and submitted activities
    /// (and their `error`). Returns how long ago the batch was planned.
    pub(crate) async fn settle_batch(
        &self,
        batch: &str,
        status: &str,
        error: Option<String>,
    ) -> Result<Option<Duration>, Error> {
        let now = now_millis();
        let activities = "UPDATE issuance_activities SET status = $1, error = $2, updated_at = $3 WHERE batch_id = $4 \
                          AND status IN ('batched', 'submitted')";
        self.write_all(
            "settle",
            [
                (
                    sqlx::query("UPDATE issuance_batches SET status = $1, updated_at = $2 WHERE id = $3")
                        .bind(status)
                        .bind(now)
                        .bind(batch),
                    "settle batch",
                ),
                (sqlx::query(activities).bind(status).bind(error).bind(now).bind(batch), "settle activities"),
            ],
        )
        .await?;
        let created: Option<i64> = sqlx::query("SELECT created_at FROM issuance_batches WHERE id = $1")
            .bind(batch)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("batch created_at"))?
            .map(|row| row.try_get("created_at"))
            .transpose()
            .map_err(Error::db("decode created_at"))?;
        Ok(created.map(|created| Duration::from_millis(u64::try_from(now - created).unwrap_or(0))))
    }
}

impl Claim {
    /// Stores the batch `id` over `tree` (of [`Claim::leaves`]), its `calls` as planned (anchor first, each
    /// call's items assigned to it) and its activities as batched with their leaves and proofs, and commits
    /// with the claim.
    pub(crate) async fn record(mut self, id: &str, tree: &MerkleTree, calls: &[plan::Call]) -> Result<(), Error> {
        let tx = &mut self.tx;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO issuance_batches (id, root, leaf_count, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $4)",
        )
        .bind(id)
        .bind(encode_b256(tree.root()))
        .bind(self.leaves.len() as i64)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(Error::db("insert batch"))?;
        for (ordinal, call) in calls.iter().enumerate() {
            let tx_id = format!("{id}:{ordinal}");
            sqlx::query(
                "INSERT INTO issuance_txs (id, batch_id, ordinal, target, calldata, status, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'planned', $6)",
            )
            .bind(&tx_id)
            .bind(id)
            .bind(ordinal as i64)
            .bind(encode_address(call.target))
            .bind(call.calldata.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("insert tx"))?;
            for item in &call.items {
                sqlx::query("UPDATE issuance_items SET tx_id = $1 WHERE id = $2")
                    .bind(&tx_id)
                    .bind(*item)
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::db("assign item"))?;
            }
        }
        for (activity, leaf) in &self.leaves {
            let proof = tree.proof(*leaf).unwrap_or_default();
            let proof = serde_json::to_string(&proof.iter().map(B256::to_string).collect::<Vec<_>>())
                .map_err(|_| Error::CorruptRow("proof"))?;
            sqlx::query(
                "UPDATE issuance_activities SET status = 'batched', batch_id = $1, leaf = $2, proof = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(id)
            .bind(encode_b256(*leaf))
            .bind(proof)
            .bind(now)
            .bind(activity)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("mark batched"))?;
        }
        self.tx.commit().await.map_err(Error::db("commit batch"))
    }
}

/// The rows of `sql` with `ids` bound to its `IN` list.
async fn fetch_in(conn: &mut AnyConnection, sql: &str, ids: &[String], op: &'static str) -> Result<Vec<AnyRow>, Error> {
    ids.iter().fold(sqlx::query(sql), |q, id| q.bind(id)).fetch_all(conn).await.map_err(Error::db(op))
}

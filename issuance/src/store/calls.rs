//! A batch's contract calls (`issuance_txs`): planned → signed (recorded with the transaction sender, in
//! the sender's write) → submitted → mined, or planned again after a failed attempt, or failed for good.

use alloy::{
    primitives::{Address, B256, Bytes},
    rpc::types::TransactionReceipt,
};
use custody_db::{decode_address, encode_address, encode_b256};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Store, now_millis};
use crate::Error;

/// A batch call as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredCall {
    /// `<batch id>:<ordinal>`.
    pub(crate) id: String,
    /// The PLOG batch id of its batch.
    pub(crate) batch_id: String,
    /// The contract called.
    pub(crate) target: Address,
    /// The call's input.
    pub(crate) calldata: Bytes,
    /// The key that signed it, once signed.
    pub(crate) sender: Option<Address>,
    /// Attempts that did not take effect.
    pub(crate) attempts: i64,
}

/// What became of a call's attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallOutcome<'a> {
    /// `mined`, `planned` (again) or `failed`.
    pub(crate) status: &'static str,
    /// Why it did not take effect.
    pub(crate) error: Option<&'a str>,
    /// The attempts the row counts from now on.
    pub(crate) attempts: i64,
    /// The receipt, when mined.
    pub(crate) mined: Option<&'a TransactionReceipt>,
}

impl Store {
    /// The planned call waiting longest.
    pub(crate) async fn next_planned(&self) -> Result<Option<StoredCall>, Error> {
        Ok(self.calls("status = 'planned' ORDER BY updated_at, id LIMIT 1", "next planned").await?.pop())
    }

    /// The signed calls, by key and nonce.
    pub(crate) async fn signed_calls(&self) -> Result<Vec<StoredCall>, Error> {
        self.calls("status = 'signed' ORDER BY sender, nonce", "select signed").await
    }

    /// The calls `WHERE filter`.
    async fn calls(&self, filter: &str, op: &'static str) -> Result<Vec<StoredCall>, Error> {
        let sql = format!("SELECT id, batch_id, target, calldata, sender, attempts FROM issuance_txs WHERE {filter}");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(Error::db(op))?;
        rows.iter().map(stored_call).collect()
    }

    /// Marks the planned call `id` at `attempts` signed by `sender`, in `db` (the sender's write, so that a
    /// second worker waits for this one's commit and then finds it taken). Returns whether it was still
    /// planned.
    pub(crate) async fn claim_planned(
        db: &mut AnyConnection,
        id: &str,
        attempts: i64,
        sender: Address,
    ) -> Result<bool, Error> {
        let claimed = sqlx::query(
            "UPDATE issuance_txs SET status = 'signed', sender = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'planned' AND attempts = $4",
        )
        .bind(encode_address(sender))
        .bind(now_millis())
        .bind(id)
        .bind(attempts)
        .execute(db)
        .await
        .map_err(Error::db("claim planned"))?
        .rows_affected();
        Ok(claimed > 0)
    }

    /// Stores the nonce and hash the sender recorded for the call `id`, in `db` (the sender's write).
    pub(crate) async fn store_signed(db: &mut AnyConnection, id: &str, nonce: u64, hash: B256) -> Result<(), Error> {
        sqlx::query("UPDATE issuance_txs SET nonce = $1, tx_hash = $2 WHERE id = $3")
            .bind(nonce as i64)
            .bind(encode_b256(hash))
            .bind(id)
            .execute(db)
            .await
            .map_err(Error::db("store signed"))?;
        Ok(())
    }

    /// Marks the call `id` submitted, with its batch's batched activities.
    pub(crate) async fn mark_submitted(&self, id: &str, batch_id: &str) -> Result<(), Error> {
        let now = now_millis();
        let call = "UPDATE issuance_txs SET status = 'submitted', updated_at = $1 WHERE id = $2 AND status = 'signed'";
        let activities = "UPDATE issuance_activities SET status = 'submitted', updated_at = $1 WHERE batch_id = $2 \
                          AND status = 'batched'";
        self.write_all(
            "submitted",
            [
                (sqlx::query(call).bind(now).bind(id), "mark tx submitted"),
                (sqlx::query(activities).bind(now).bind(batch_id), "mark activities submitted"),
            ],
        )
        .await
    }

    /// Records the outcome of the call `id`'s attempt `attempt`, once: only while the row is still signed or
    /// submitted at that attempt. Returns whether it was recorded.
    pub(crate) async fn record_outcome(&self, id: &str, attempt: i64, outcome: CallOutcome<'_>) -> Result<bool, Error> {
        let mined = outcome.mined;
        let done = sqlx::query(
            "UPDATE issuance_txs SET status = $1, error = $2, attempts = $3, block_number = $4, gas_used = $5, \
             tx_hash = COALESCE($6, tx_hash), updated_at = $7 \
             WHERE id = $8 AND attempts = $9 AND status IN ('signed', 'submitted')",
        )
        .bind(outcome.status)
        .bind(outcome.error)
        .bind(outcome.attempts)
        .bind(mined.and_then(|r| r.block_number).map(|b| b as i64))
        .bind(mined.map(|r| r.gas_used as i64))
        .bind(mined.map(|r| encode_b256(r.transaction_hash)))
        .bind(now_millis())
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(Error::db("record receipt"))?;
        Ok(done.rows_affected() == 1)
    }
}

fn stored_call(row: &AnyRow) -> Result<StoredCall, Error> {
    let text = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(Error::db("decode call"));
    let address = |c: &'static str, what: &'static str| -> Result<Option<Address>, Error> {
        text(c)?.map(|a| decode_address(&a).map_err(|_| Error::CorruptRow(what))).transpose()
    };
    Ok(StoredCall {
        id: text("id")?.unwrap_or_default(),
        batch_id: text("batch_id")?.unwrap_or_default(),
        target: address("target", "issuance_txs.target")?.ok_or(Error::CorruptRow("issuance_txs.target"))?,
        calldata: text("calldata")?.unwrap_or_default().parse().map_err(|_| Error::CorruptRow("calldata"))?,
        sender: address("sender", "issuance_txs.sender")?,
        attempts: row.try_get("attempts").map_err(Error::db("decode call"))?,
    })
}

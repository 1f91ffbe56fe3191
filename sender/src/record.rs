//! The sender's rows: nonces, sends and their attempts.

use alloy::primitives::{Address, B256, Bytes, U256};
use custody_db::{decode_address, decode_b256, encode_address, encode_b256, now_millis};
use sqlx::{Any, AnyPool, Row, Transaction, any::AnyRow};

use crate::Error;

/// Whether an attempt is the call (first or a fee bump) or the cancelling self-transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Call,
    Cancel,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Cancel => "cancel",
        }
    }
}

/// A `sender_txs` row.
#[derive(Clone, Debug)]
pub(crate) struct SendRow {
    pub(crate) id: String,
    pub(crate) from: Address,
    pub(crate) nonce: u64,
    pub(crate) to: Address,
    pub(crate) value: U256,
    pub(crate) input: Bytes,
    pub(crate) gas_limit: u64,
    pub(crate) context: String,
    pub(crate) status: String,
    pub(crate) error: Option<String>,
    pub(crate) mined_hash: Option<B256>,
    pub(crate) created_at: i64,
}

/// A `sender_attempts` row.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub(crate) hash: B256,
    pub(crate) kind: Kind,
    pub(crate) raw: Bytes,
    pub(crate) max_fee: u128,
    pub(crate) priority_fee: u128,
    /// Block and time of the last broadcast; `None` until broadcast.
    pub(crate) sent: Option<(u64, i64)>,
}

const SEND_COLUMNS: &str =
    "id, sender, nonce, target, value, calldata, gas_limit, context, status, error, mined_hash, created_at";

fn text(row: &AnyRow, column: &'static str) -> Result<String, Error> {
    row.try_get(column).map_err(|_| Error::Corrupt(column))
}

fn parse<T: std::str::FromStr>(row: &AnyRow, column: &'static str) -> Result<T, Error> {
    text(row, column)?.parse().map_err(|_| Error::Corrupt(column))
}

fn int(row: &AnyRow, column: &'static str) -> Result<u64, Error> {
    let v: i64 = row.try_get(column).map_err(|_| Error::Corrupt(column))?;
    u64::try_from(v).map_err(|_| Error::Corrupt(column))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn send_from_row(row: &AnyRow) -> Result<SendRow, Error> {
    let opt = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(|_| Error::Corrupt(c));
    Ok(SendRow {
        id: text(row, "id")?,
        from: decode_address(&text(row, "sender")?).map_err(|_| Error::Corrupt("sender"))?,
        nonce: int(row, "nonce")?,
        to: decode_address(&text(row, "target")?).map_err(|_| Error::Corrupt("target"))?,
        value: parse(row, "value")?,
        input: parse(row, "calldata")?,
        gas_limit: int(row, "gas_limit")?,
        context: text(row, "context")?,
        status: text(row, "status")?,
        error: opt("error")?,
        mined_hash: opt("mined_hash")?
            .map(|h| decode_b256(&h))
            .transpose()
            .map_err(|_| Error::Corrupt("mined_hash"))?,
        created_at: row.try_get("created_at").map_err(|_| Error::Corrupt("created_at"))?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<Attempt, Error> {
    let block: Option<i64> = row.try_get("sent_block").map_err(|_| Error::Corrupt("sent_block"))?;
    let at: Option<i64> = row.try_get("sent_at").map_err(|_| Error::Corrupt("sent_at"))?;
    Ok(Attempt {
        hash: decode_b256(&text(row, "tx_hash")?).map_err(|_| Error::Corrupt("tx_hash"))?,
        kind: if text(row, "kind")? == "cancel" { Kind::Cancel } else { Kind::Call },
        raw: parse(row, "raw")?,
        max_fee: parse(row, "max_fee")?,
        priority_fee: parse(row, "priority_fee")?,
        sent: block.zip(at).map(|(b, t)| (u64::try_from(b).unwrap_or(0), t)),
    })
}

/// Raises `from`'s stored next nonce to `chain` if it is behind, then takes the next one.
pub(crate) async fn take_nonce(db: &mut Transaction<'static, Any>, from: Address, chain: u64) -> Result<u64, Error> {
    sqlx::query(
        "INSERT INTO sender_nonces (sender, next_nonce) VALUES ($1, $2) ON CONFLICT (sender) DO UPDATE SET \
         next_nonce = CASE WHEN sender_nonces.next_nonce < excluded.next_nonce THEN excluded.next_nonce \
         ELSE sender_nonces.next_nonce END",
    )
    .bind(encode_address(from))
    .bind(to_i64(chain))
    .execute(&mut **db)
    .await
    .map_err(Error::db("sync nonce"))?;
    let next: i64 =
        sqlx::query("UPDATE sender_nonces SET next_nonce = next_nonce + 1 WHERE sender = $1 RETURNING next_nonce")
            .bind(encode_address(from))
            .fetch_one(&mut **db)
            .await
            .map_err(Error::db("take nonce"))?
            .try_get("next_nonce")
            .map_err(Error::db("decode nonce"))?;
    u64::try_from(next - 1).map_err(|_| Error::Corrupt("next_nonce"))
}

/// The send recorded under `id`, with the hash of its first attempt.
pub(crate) async fn find(db: &mut Transaction<'static, Any>, id: &str) -> Result<Option<(SendRow, B256)>, Error> {
    let sql = format!("SELECT {SEND_COLUMNS} FROM sender_txs WHERE id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut **db).await.map_err(Error::db("find send"))? else {
        return Ok(None);
    };
    let send = send_from_row(&row)?;
    let first = sqlx::query("SELECT tx_hash FROM sender_attempts WHERE send_id = $1 ORDER BY created_at LIMIT 1")
        .bind(id)
        .fetch_optional(&mut **db)
        .await
        .map_err(Error::db("first attempt"))?
        .map(|r| text(&r, "tx_hash"))
        .transpose()?
        .map(|h| decode_b256(&h).map_err(|_| Error::Corrupt("tx_hash")))
        .transpose()?
        .unwrap_or_default();
    Ok(Some((send, first)))
}

/// Stores a new send.
pub(crate) async fn insert_send(db: &mut Transaction<'static, Any>, send: &SendRow) -> Result<(), Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO sender_txs (id, sender, nonce, target, value, calldata, gas_limit, context, status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9)",
    )
    .bind(&send.id)
    .bind(encode_address(send.from))
    .bind(to_i64(send.nonce))
    .bind(encode_address(send.to))
    .bind(send.value.to_string())
    .bind(send.input.to_string())
    .bind(to_i64(send.gas_limit))
    .bind(&send.context)
    .bind(now)
    .execute(&mut **db)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Concurrent(send.id.clone()),
        _ => Error::db("insert send")(e),
    })?;
    Ok(())
}

/// Stores a signed attempt of send `id` (not yet broadcast).
pub(crate) async fn insert_attempt(
    executor: impl sqlx::Executor<'_, Database = Any>,
    id: &str,
    attempt: &Attempt,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sender_attempts (tx_hash, send_id, kind, raw, max_fee, priority_fee, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(encode_b256(attempt.hash))
    .bind(id)
    .bind(attempt.kind.as_str())
    .bind(attempt.raw.to_string())
    .bind(attempt.max_fee.to_string())
    .bind(attempt.priority_fee.to_string())
    .bind(now_millis())
    .execute(executor)
    .await
    .map_err(Error::db("insert attempt"))?;
    Ok(())
}

/// The unsettled sends of `from`, lowest nonce first.
pub(crate) async fn open(pool: &AnyPool, from: Address) -> Result<Vec<SendRow>, Error> {
    let sql = format!("SELECT {SEND_COLUMNS} FROM sender_txs WHERE sender = $1 AND status = 'pending' ORDER BY nonce");
    let rows = sqlx::query(&sql).bind(encode_address(from)).fetch_all(pool).await.map_err(Error::db("open sends"))?;
    rows.iter().map(send_from_row).collect()
}

/// The settled sends of `from` whose outcome the caller has not taken yet, lowest nonce first.
pub(crate) async fn unfinished(pool: &AnyPool, from: Address) -> Result<Vec<SendRow>, Error> {
    let sql = format!(
        "SELECT {SEND_COLUMNS} FROM sender_txs WHERE sender = $1 AND status <> 'pending' AND finished_at IS NULL \
         ORDER BY nonce"
    );
    let rows = sqlx::query(&sql).bind(encode_address(from)).fetch_all(pool).await.map_err(Error::db("settled"))?;
    rows.iter().map(send_from_row).collect()
}

/// The send recorded under `id`.
pub(crate) async fn send(pool: &AnyPool, id: &str) -> Result<Option<SendRow>, Error> {
    let sql = format!("SELECT {SEND_COLUMNS} FROM sender_txs WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(Error::db("send"))?
        .map(|r| send_from_row(&r))
        .transpose()
}

/// The attempts of send `id`, oldest first.
pub(crate) async fn attempts(pool: &AnyPool, id: &str) -> Result<Vec<Attempt>, Error> {
    let rows = sqlx::query(
        "SELECT tx_hash, kind, raw, max_fee, priority_fee, sent_block, sent_at FROM sender_attempts \
         WHERE send_id = $1 ORDER BY created_at, tx_hash",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(Error::db("attempts"))?;
    rows.iter().map(attempt_from_row).collect()
}

/// Records that attempt `hash` was broadcast at `block`.
pub(crate) async fn mark_sent(pool: &AnyPool, hash: B256, block: u64) -> Result<(), Error> {
    sqlx::query("UPDATE sender_attempts SET sent_block = $1, sent_at = $2 WHERE tx_hash = $3")
        .bind(to_i64(block))
        .bind(now_millis())
        .bind(encode_b256(hash))
        .execute(pool)
        .await
        .map_err(Error::db("mark sent"))?;
    Ok(())
}

/// Forgets attempt `hash`, which the node refused (it never entered a pool), and notes why on its send.
pub(crate) async fn refuse(pool: &AnyPool, id: &str, hash: B256, error: &str) -> Result<(), Error> {
    let mut db = pool.begin().await.map_err(Error::db("begin refuse"))?;
    sqlx::query("DELETE FROM sender_attempts WHERE tx_hash = $1")
        .bind(encode_b256(hash))
        .execute(&mut *db)
        .await
        .map_err(Error::db("forget attempt"))?;
    sqlx::query("UPDATE sender_txs SET error = $1, updated_at = $2 WHERE id = $3")
        .bind(error)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *db)
        .await
        .map_err(Error::db("note refusal"))?;
    db.commit().await.map_err(Error::db("commit refuse"))
}

/// Settles a pending send with `status` (and the mined transaction's hash).
pub(crate) async fn settle(pool: &AnyPool, id: &str, status: &str, mined: Option<B256>) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE sender_txs SET status = $1, mined_hash = $2, updated_at = $3 WHERE id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(mined.map(encode_b256))
    .bind(now_millis())
    .bind(id)
    .execute(pool)
    .await
    .map_err(Error::db("settle"))?;
    Ok(done.rows_affected() == 1)
}

/// Marks the outcome of `id` as taken by the caller.
pub(crate) async fn finish(pool: &AnyPool, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE sender_txs SET finished_at = $1 WHERE id = $2 AND status <> 'pending'")
        .bind(now_millis())
        .bind(id)
        .execute(pool)
        .await
        .map_err(Error::db("finish"))?;
    Ok(())
}

/// The latest call attempt (not a cancellation) of the send that attempt `hash` belongs to.
pub(crate) async fn latest_attempt(pool: &AnyPool, hash: B256) -> Result<Option<B256>, Error> {
    let row = sqlx::query(
        "SELECT b.tx_hash FROM sender_attempts a JOIN sender_attempts b ON b.send_id = a.send_id \
         WHERE a.tx_hash = $1 AND b.kind = 'call' ORDER BY b.created_at DESC, b.tx_hash DESC LIMIT 1",
    )
    .bind(encode_b256(hash))
    .fetch_optional(pool)
    .await
    .map_err(Error::db("latest attempt"))?;
    row.map(|r| decode_b256(&text(&r, "tx_hash")?).map_err(|_| Error::Corrupt("tx_hash"))).transpose()
}

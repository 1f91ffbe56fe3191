//! The bundler's tables (SQLite or PostgreSQL through sqlx `Any`): operations, reputation, bundle
//! transactions and key nonces. Addresses and hashes are stored as lowercase `0x` hex (the
//! `custody_db` codecs, as every crate stores them), nonces as 64-digit hex so that text order is
//! numeric order.

use alloy::primitives::{Address, B256, U256};
use custody_contracts::{EntryPointVersion, UserOperation};
use custody_db::{WriteGate, decode_address, decode_b256, encode_address, encode_b256};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::error::BundlerError;
use crate::validation::ValidatedOp;

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpStatus {
    /// In the mempool, waiting for a bundle.
    Pending,
    /// In a bundle transaction not yet mined.
    Submitted,
    /// Mined (its UserOperationEvent is on chain).
    Included,
    /// Removed: failed validation in a bundle, expired; `reason` says why.
    Failed,
    /// Replaced by an operation with the same sender and nonce and higher fees.
    Replaced,
    /// Removed by `debug_bundler_clearState` or because an entity was banned.
    Dropped,
}

impl OpStatus {
    const ALL: [Self; 6] =
        [Self::Pending, Self::Submitted, Self::Included, Self::Failed, Self::Replaced, Self::Dropped];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Submitted => "submitted",
            Self::Included => "included",
            Self::Failed => "failed",
            Self::Replaced => "replaced",
            Self::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One operation as the mempool keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredOp {
    pub hash: B256,
    pub entry_point: EntryPointVersion,
    pub op: UserOperation,
    pub validated: ValidatedOp,
    pub status: OpStatus,
    pub reason: Option<String>,
    pub tx_hash: Option<B256>,
    pub block_number: Option<u64>,
    pub block_hash: Option<B256>,
    /// Unix milliseconds.
    pub received_at: i64,
}

/// A reputation row (decay applied by [`crate::reputation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RepRow {
    pub address: Address,
    pub ops_seen: u64,
    pub ops_included: u64,
    pub decayed_hour: i64,
}

/// A nonce as stored: 64 hex digits, so that text order is numeric order (the one U256 column the
/// bundler orders by; amounts elsewhere use [`custody_db::encode_u256`]).
fn hex_nonce(n: U256) -> String {
    format!("0x{n:064x}")
}

fn ep_str(v: EntryPointVersion) -> &'static str {
    v.as_str()
}

fn parse_ep(s: &str) -> Result<EntryPointVersion, BundlerError> {
    EntryPointVersion::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| corrupt_text("entry point", s))
}

fn corrupt_text(what: &'static str, value: &str) -> BundlerError {
    BundlerError::corrupt(what, std::io::Error::new(std::io::ErrorKind::InvalidData, value.to_owned()))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

pub(crate) use custody_db::now_millis;

const OP_COLUMNS: &str = "hash, entry_point, op_json, validated_json, status, reason, tx_hash, block_number, \
                          block_hash, received_at";

/// The bundler's persistence.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: AnyPool,
    /// The database's write gate, taken by every write.
    gate: WriteGate,
}

impl Store {
    /// A store on `pool`, its migrations applied.
    pub(crate) async fn open(pool: AnyPool) -> Result<Self, BundlerError> {
        // The two folders hold the same SQL today; they are kept apart so either can diverge.
        // One SQL for both dialects.
        custody_db::migrate(&pool, sqlx::migrate!("./migrations"), sqlx::migrate!("./migrations")).await?;
        Ok(Self { gate: WriteGate::of(&pool), pool })
    }

    fn op_from_row(row: &AnyRow) -> Result<StoredOp, BundlerError> {
        let text = |c: &str| row.try_get::<String, _>(c);
        let opt = |c: &str| row.try_get::<Option<String>, _>(c);
        Ok(StoredOp {
            hash: decode_b256(&text("hash")?).map_err(|e| BundlerError::corrupt("op hash", e))?,
            entry_point: parse_ep(&text("entry_point")?)?,
            op: serde_json::from_str(&text("op_json")?).map_err(|e| BundlerError::corrupt("operation", e))?,
            validated: serde_json::from_str(&text("validated_json")?)
                .map_err(|e| BundlerError::corrupt("validation result", e))?,
            status: {
                let s = text("status")?;
                OpStatus::parse(&s).ok_or_else(|| corrupt_text("status", &s))?
            },
            reason: opt("reason")?,
            tx_hash: opt("tx_hash")?
                .map(|s| decode_b256(&s).map_err(|e| BundlerError::corrupt("tx hash", e)))
                .transpose()?,
            block_number: row.try_get::<Option<i64>, _>("block_number")?.map(to_u64),
            block_hash: opt("block_hash")?
                .map(|s| decode_b256(&s).map_err(|e| BundlerError::corrupt("block hash", e)))
                .transpose()?,
            received_at: row.try_get("received_at")?,
        })
    }

    /// Inserts a new pending operation; if `replaces` is set, that operation becomes `replaced` in the
    /// same transaction. An operation sent again after it failed, was dropped or was replaced takes its
    /// old row back (its fate cleared). `Ok(false)` when another live operation already holds the sender
    /// and nonce, or the hash is live or included.
    pub(crate) async fn insert_op(&self, op: &StoredOp, replaces: Option<B256>) -> Result<bool, BundlerError> {
        let _turn = self.gate.turn().await;
        let mut tx = self.pool.begin().await?;
        let now = now_millis();
        if let Some(old) = replaces {
            let done = sqlx::query(
                "UPDATE bundler_user_ops SET status = 'replaced', reason = $1, updated_at = $2 \
                 WHERE hash = $3 AND status = 'pending'",
            )
            .bind(format!("replaced by {:#x}", op.hash))
            .bind(now)
            .bind(encode_b256(old))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        let result = sqlx::query(
            "INSERT INTO bundler_user_ops (hash, entry_point, sender, nonce, factory, paymaster, op_json, \
             validated_json, status, received_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9) \
             ON CONFLICT (hash) DO UPDATE SET status = 'pending', validated_json = excluded.validated_json, \
             reason = NULL, tx_hash = NULL, block_number = NULL, block_hash = NULL, \
             received_at = excluded.received_at, updated_at = excluded.updated_at \
             WHERE bundler_user_ops.status IN ('failed', 'replaced', 'dropped')",
        )
        .bind(encode_b256(op.hash))
        .bind(ep_str(op.entry_point))
        .bind(encode_address(op.op.sender))
        .bind(hex_nonce(op.op.nonce))
        .bind(op.op.factory.map(encode_address))
        .bind(op.op.paymaster.map(encode_address))
        .bind(serde_json::to_string(&op.op).map_err(|e| BundlerError::corrupt("operation", e))?)
        .bind(serde_json::to_string(&op.validated).map_err(|e| BundlerError::corrupt("validation result", e))?)
        .bind(op.received_at)
        .execute(&mut *tx)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
            // The hash is held by a live or included row (the conflict's WHERE kept it).
            Ok(done) if done.rows_affected() == 0 => return Ok(false),
            other => {
                other?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// An operation by hash.
    pub(crate) async fn op(&self, hash: B256) -> Result<Option<StoredOp>, BundlerError> {
        let sql = format!("SELECT {OP_COLUMNS} FROM bundler_user_ops WHERE hash = $1");
        let row = sqlx::query(&sql).bind(encode_b256(hash)).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::op_from_row).transpose()
    }

    /// The live (pending or submitted) operation of `sender` at `nonce`.
    pub(crate) async fn live_op(
        &self,
        entry_point: EntryPointVersion,
        sender: Address,
        nonce: U256,
    ) -> Result<Option<StoredOp>, BundlerError> {
        let sql = format!(
            "SELECT {OP_COLUMNS} FROM bundler_user_ops WHERE entry_point = $1 AND sender = $2 AND nonce = $3 \
             AND status IN ('pending', 'submitted')"
        );
        let row = sqlx::query(&sql)
            .bind(ep_str(entry_point))
            .bind(encode_address(sender))
            .bind(hex_nonce(nonce))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::op_from_row).transpose()
    }

    /// Live operations (any entry point) naming `address` as sender, factory or paymaster.
    pub(crate) async fn live_ops_of(
        &self,
        column: EntityColumn,
        address: Address,
    ) -> Result<Vec<StoredOp>, BundlerError> {
        let sql = format!(
            "SELECT {OP_COLUMNS} FROM bundler_user_ops WHERE {} = $1 AND status IN ('pending', 'submitted')",
            column.as_str()
        );
        let rows = sqlx::query(&sql).bind(encode_address(address)).fetch_all(&self.pool).await?;
        rows.iter().map(Self::op_from_row).collect()
    }

    /// Operations of `entry_point` in `status`, oldest first, at most `limit`.
    pub(crate) async fn ops_in(
        &self,
        entry_point: Option<EntryPointVersion>,
        status: OpStatus,
        limit: i64,
    ) -> Result<Vec<StoredOp>, BundlerError> {
        let rows = match entry_point {
            Some(ep) => {
                let sql = format!(
                    "SELECT {OP_COLUMNS} FROM bundler_user_ops WHERE entry_point = $1 AND status = $2 \
                     ORDER BY received_at, hash LIMIT $3"
                );
                sqlx::query(&sql).bind(ep_str(ep)).bind(status.as_str()).bind(limit).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!(
                    "SELECT {OP_COLUMNS} FROM bundler_user_ops WHERE status = $1 ORDER BY received_at, hash LIMIT $2"
                );
                sqlx::query(&sql).bind(status.as_str()).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(Self::op_from_row).collect()
    }

    /// Number of pending operations per entry point.
    pub(crate) async fn pending_count(&self, entry_point: EntryPointVersion) -> Result<u64, BundlerError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM bundler_user_ops WHERE entry_point = $1 AND status = 'pending'")
                .bind(ep_str(entry_point))
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(row.try_get("n")?))
    }

    /// Moves operations from `from` to `to` (with a reason and transaction where given). Returns how
    /// many moved.
    pub(crate) async fn set_status(
        &self,
        hashes: &[B256],
        from: &[OpStatus],
        to: OpStatus,
        reason: Option<&str>,
        tx_hash: Option<B256>,
    ) -> Result<u64, BundlerError> {
        let _turn = self.gate.turn().await;
        let from_list = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "UPDATE bundler_user_ops SET status = $1, reason = COALESCE($2, reason), tx_hash = COALESCE($3, tx_hash), \
             updated_at = $4 WHERE hash = $5 AND status IN ({from_list})"
        );
        let mut tx = self.pool.begin().await?;
        let mut moved = 0;
        for hash in hashes {
            moved += sqlx::query(&sql)
                .bind(to.as_str())
                .bind(reason)
                .bind(tx_hash.map(encode_b256))
                .bind(now_millis())
                .bind(encode_b256(*hash))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Marks operations included in `tx_hash` at a block, in one database transaction. Returns those
    /// that were pending or submitted (the others were already final).
    pub(crate) async fn set_included(
        &self,
        hashes: &[B256],
        tx_hash: B256,
        block_number: u64,
        block_hash: B256,
    ) -> Result<Vec<B256>, BundlerError> {
        let _turn = self.gate.turn().await;
        let mut tx = self.pool.begin().await?;
        let mut moved = Vec::new();
        for hash in hashes {
            let done = sqlx::query(
                "UPDATE bundler_user_ops SET status = 'included', reason = NULL, tx_hash = $1, block_number = $2, \
                 block_hash = $3, updated_at = $4 WHERE hash = $5 AND status IN ('pending', 'submitted')",
            )
            .bind(encode_b256(tx_hash))
            .bind(to_i64(block_number))
            .bind(encode_b256(block_hash))
            .bind(now_millis())
            .bind(encode_b256(*hash))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                moved.push(*hash);
            }
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Drops every pending operation (debug_bundler_clearState).
    pub(crate) async fn drop_pending(&self) -> Result<u64, BundlerError> {
        let _turn = self.gate.turn().await;
        let done = sqlx::query(
            "UPDATE bundler_user_ops SET status = 'dropped', reason = 'mempool cleared', updated_at = $1 \
             WHERE status = 'pending'",
        )
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    // --- reputation ---

    pub(crate) async fn reputation(&self, address: Address) -> Result<Option<RepRow>, BundlerError> {
        let row = sqlx::query(
            "SELECT address, ops_seen, ops_included, decayed_hour FROM bundler_reputation WHERE address = $1",
        )
        .bind(encode_address(address))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rep_from_row).transpose()
    }

    pub(crate) async fn all_reputation(&self) -> Result<Vec<RepRow>, BundlerError> {
        let rows = sqlx::query(
            "SELECT address, ops_seen, ops_included, decayed_hour FROM bundler_reputation ORDER BY address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rep_from_row).collect()
    }

    pub(crate) async fn put_reputation(&self, r: &RepRow) -> Result<(), BundlerError> {
        let _turn = self.gate.turn().await;
        sqlx::query(
            "INSERT INTO bundler_reputation (address, ops_seen, ops_included, decayed_hour) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (address) DO UPDATE SET ops_seen = excluded.ops_seen, \
             ops_included = excluded.ops_included, decayed_hour = excluded.decayed_hour",
        )
        .bind(encode_address(r.address))
        .bind(to_i64(r.ops_seen))
        .bind(to_i64(r.ops_included))
        .bind(r.decayed_hour)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds to an entity's counters atomically (decay is applied on read).
    pub(crate) async fn bump_reputation(
        &self,
        address: Address,
        seen: u64,
        included: u64,
        hour: i64,
    ) -> Result<(), BundlerError> {
        let _turn = self.gate.turn().await;
        sqlx::query(
            "INSERT INTO bundler_reputation (address, ops_seen, ops_included, decayed_hour) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (address) DO UPDATE SET ops_seen = bundler_reputation.ops_seen + excluded.ops_seen, \
             ops_included = bundler_reputation.ops_included + excluded.ops_included",
        )
        .bind(encode_address(address))
        .bind(to_i64(seen))
        .bind(to_i64(included))
        .bind(hour)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn clear_reputation(&self) -> Result<(), BundlerError> {
        let _turn = self.gate.turn().await;
        sqlx::query("DELETE FROM bundler_reputation").execute(&self.pool).await?;
        Ok(())
    }

    // --- bundles (their transactions are the transaction sender's) ---

    /// Moves a bundle's operations from `pending` to `submitted` in the sender's write `db`, before the
    /// bundle is recorded there; `Ok(false)` if one was no longer pending (the write is then dropped).
    pub(crate) async fn claim_ops(
        &self,
        db: &mut Transaction<'static, Any>,
        ops: &[B256],
    ) -> Result<bool, BundlerError> {
        let now = now_millis();
        for hash in ops {
            let done = sqlx::query(
                "UPDATE bundler_user_ops SET status = 'submitted', updated_at = $1 WHERE hash = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(encode_b256(*hash))
            .execute(&mut **db)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Notes the bundle transaction `tx_hash` on its operations (in the same write).
    pub(crate) async fn set_ops_tx(
        &self,
        db: &mut Transaction<'static, Any>,
        ops: &[B256],
        tx_hash: B256,
    ) -> Result<(), BundlerError> {
        for hash in ops {
            sqlx::query("UPDATE bundler_user_ops SET tx_hash = $1 WHERE hash = $2")
                .bind(encode_b256(tx_hash))
                .bind(encode_b256(*hash))
                .execute(&mut **db)
                .await?;
        }
        Ok(())
    }
}

/// What a bundle's send carries for when it settles: its entry point and operations.
pub(crate) fn bundle_context(entry_point: EntryPointVersion, ops: &[B256]) -> String {
    serde_json::json!({ "entry_point": ep_str(entry_point), "ops": ops }).to_string()
}

/// The entry point and operations of a bundle's send.
pub(crate) fn parse_bundle_context(context: &str) -> Result<(EntryPointVersion, Vec<B256>), BundlerError> {
    #[derive(serde::Deserialize)]
    struct Context {
        entry_point: String,
        ops: Vec<B256>,
    }
    let c: Context = serde_json::from_str(context).map_err(|e| BundlerError::corrupt("bundle context", e))?;
    Ok((parse_ep(&c.entry_point)?, c.ops))
}

fn rep_from_row(row: &AnyRow) -> Result<RepRow, BundlerError> {
    Ok(RepRow {
        address: decode_address(&row.try_get::<String, _>("address")?)
            .map_err(|e| BundlerError::corrupt("address", e))?,
        ops_seen: to_u64(row.try_get("ops_seen")?),
        ops_included: to_u64(row.try_get("ops_included")?),
        decayed_hour: row.try_get("decayed_hour")?,
    })
}

/// The columns naming an entity of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntityColumn {
    Sender,
    Factory,
    Paymaster,
}

impl EntityColumn {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::Factory => "factory",
            Self::Paymaster => "paymaster",
        }
    }
}

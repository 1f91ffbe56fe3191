//! The indexer's caches: `token_balance_cache` and `badge_index`, with the cursor block
//! (`issuance_indexed_blocks`) they are indexed up to.

use alloy::primitives::{Address, B256, U256};
use custody_db::{decode_u256, encode_address, encode_b256, encode_u256};
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::Error;

/// A PTKN (`badge: None`) or PBADGE transfer of `value` as a log reports it; the zero address is a
/// mint's side and is not cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) from: Address,
    pub(crate) to: Address,
    /// The PBADGE id, for a badge transfer.
    pub(crate) badge: Option<U256>,
    pub(crate) value: U256,
}

impl Store {
    /// The PTKN balance of `account` (base units), as last indexed.
    pub(crate) async fn token_balance(&self, account: Address) -> Result<U256, Error> {
        let mut conn = self.pool.acquire().await.map_err(Error::db("connect"))?;
        Ok(cached(&mut conn, account, None).await?.unwrap_or(U256::ZERO))
    }

    /// The badges `account` holds (`(badge id, amount)`, amount > 0), as last indexed.
    pub(crate) async fn badges(&self, account: Address) -> Result<Vec<(U256, U256)>, Error> {
        let rows = sqlx::query("SELECT badge_id, amount FROM badge_index WHERE account = $1")
            .bind(encode_address(account))
            .fetch_all(&self.pool)
            .await
            .map_err(Error::db("select badges"))?;
        let mut badges = Vec::new();
        for row in rows {
            let get = |c: &'static str| -> Result<U256, Error> {
                let text: String = row.try_get(c).map_err(Error::db("decode badge"))?;
                decode_u256(&text).map_err(|_| Error::CorruptRow("badge_index"))
            };
            let (id, amount) = (get("badge_id")?, get("amount")?);
            if !amount.is_zero() {
                badges.push((id, amount));
            }
        }
        badges.sort();
        Ok(badges)
    }

    /// The block the caches are indexed up to: its number and hash as stored.
    pub(crate) async fn index_cursor(&self) -> Result<Option<(u64, String)>, Error> {
        let row = sqlx::query("SELECT number, hash FROM issuance_indexed_blocks ORDER BY number DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("select cursor"))?;
        let Some(row) = row else { return Ok(None) };
        let number: i64 = row.try_get("number").map_err(Error::db("decode cursor"))?;
        let hash: String = row.try_get("hash").map_err(Error::db("decode cursor"))?;
        let number = u64::try_from(number).map_err(|_| Error::CorruptRow("issuance_indexed_blocks.number"))?;
        Ok(Some((number, hash)))
    }

    /// Drops the caches and the cursor.
    pub(crate) async fn reset_index(&self) -> Result<(), Error> {
        let deletes =
            ["DELETE FROM issuance_indexed_blocks", "DELETE FROM token_balance_cache", "DELETE FROM badge_index"];
        self.write_all("reset", deletes.map(|sql| (sqlx::query(sql), "reset"))).await
    }

    /// Applies `transfers` (in order) to the caches and moves the cursor to block `to` with `hash`, in one
    /// transaction.
    pub(crate) async fn index(&self, to: u64, hash: B256, transfers: &[Transfer]) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write("begin index").await?;
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
        for t in transfers {
            add(&mut tx, t.from, t.badge, t.value, false).await?;
            add(&mut tx, t.to, t.badge, t.value, true).await?;
        }
        tx.commit().await.map_err(Error::db("commit index"))
    }
}

/// `account`'s cached PTKN balance (`badge: None`) or amount of a badge, if it has a row.
async fn cached(conn: &mut AnyConnection, account: Address, badge: Option<U256>) -> Result<Option<U256>, Error> {
    let sql = match badge {
        None => "SELECT balance AS amount FROM token_balance_cache WHERE account = $1",
        Some(_) => "SELECT amount FROM badge_index WHERE account = $1 AND badge_id = $2",
    };
    let query = sqlx::query(sql).bind(encode_address(account));
    let query = match badge {
        Some(id) => query.bind(encode_u256(id)),
        None => query,
    };
    let row = query.fetch_optional(conn).await.map_err(Error::db("select cached amount"))?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("amount").map_err(Error::db("decode cached amount"))?;
    decode_u256(&text).map(Some).map_err(|_| Error::CorruptRow("cached amount"))
}

/// Credits (or debits) `account`'s cached PTKN balance or badge by `value`; the zero address is skipped.
async fn add(
    conn: &mut AnyConnection,
    account: Address,
    badge: Option<U256>,
    value: U256,
    credit: bool,
) -> Result<(), Error> {
    if account == Address::ZERO {
        return Ok(());
    }
    let current = cached(conn, account, badge).await?.unwrap_or(U256::ZERO);
    let next = if credit { current.saturating_add(value) } else { current.saturating_sub(value) };
    let sql = match badge {
        None => {
            "INSERT INTO token_balance_cache (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = excluded.balance"
        }
        Some(_) => {
            "INSERT INTO badge_index (account, amount, badge_id) VALUES ($1, $2, $3) \
             ON CONFLICT (account, badge_id) DO UPDATE SET amount = excluded.amount"
        }
    };
    let query = sqlx::query(sql).bind(encode_address(account)).bind(encode_u256(next));
    let query = match badge {
        Some(id) => query.bind(encode_u256(id)),
        None => query,
    };
    query.execute(conn).await.map_err(Error::db("upsert cached amount"))?;
    Ok(())
}

//! The `identity_map` table, in SQLite or PostgreSQL through the key store's sqlx `Any` pool.
//! Addresses are stored as lowercase hex ([`custody_db::encode_address`]).

use alloy::primitives::Address;
use custody_db::{decode_address, encode_address};
use sqlx::{AnyPool, Row, any::AnyRow};

use crate::{Custody, Did, Error, Wallet};

const COLUMNS: &str = "user_id, did, state, address, owner, owner_key_id, owner_key_version, custody, \
                       deployed, deactivated, claim, claimed_at, created_at";

/// A row as read.
#[derive(Debug)]
pub(crate) enum Entry {
    /// Its creator is making the owner key.
    Pending {
        /// The creator's claim token.
        claim: String,
        /// When it was claimed, Unix milliseconds.
        claimed_at: i64,
    },
    /// A wallet.
    Ready(Wallet),
}

/// The columns a completed row gets.
#[derive(Debug)]
pub(crate) struct Completion<'a> {
    pub(crate) address: Address,
    pub(crate) owner: Address,
    pub(crate) owner_key_id: &'a str,
    pub(crate) owner_key_version: i64,
    pub(crate) created_at: i64,
}

/// The identity map table.
#[derive(Clone, Debug)]
pub(crate) struct IdentityMap {
    pool: AnyPool,
}

impl IdentityMap {
    pub(crate) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Applies this crate's migrations; other crates' entries in `_sqlx_migrations` are left alone.
    pub(crate) async fn migrate(&self) -> Result<(), Error> {
        custody_db::migrate(&self.pool, sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
            .await?;
        Ok(())
    }

    /// The row of `user_id`, pending or ready.
    pub(crate) async fn by_user(&self, user_id: &str) -> Result<Option<Entry>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM identity_map WHERE user_id = $1");
        let row =
            sqlx::query(&sql).bind(user_id).fetch_optional(&self.pool).await.map_err(Error::db("select by user"))?;
        row.as_ref().map(entry).transpose()
    }

    /// The ready wallet of `did`.
    pub(crate) async fn by_did(&self, did: &Did) -> Result<Option<Wallet>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM identity_map WHERE did = $1 AND state = 'ready'");
        let row = sqlx::query(&sql)
            .bind(did.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("select by DID"))?;
        row.as_ref().map(wallet).transpose()
    }

    /// The ready wallet whose smart account is `address`.
    pub(crate) async fn by_address(&self, address: Address) -> Result<Option<Wallet>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM identity_map WHERE address = $1 AND state = 'ready'");
        let row = sqlx::query(&sql)
            .bind(encode_address(address))
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("select by address"))?;
        row.as_ref().map(wallet).transpose()
    }

    /// Inserts a pending row for `user_id` unless it has one: `true` if this call inserted it. Any unique
    /// key counts (the DID derives from the user id): PostgreSQL reports a concurrent insert of the same
    /// user on the DID index when only `user_id` is named as the conflict target.
    pub(crate) async fn claim(&self, user_id: &str, did: &Did, claim: &str, now: i64) -> Result<bool, Error> {
        let result = sqlx::query(
            "INSERT INTO identity_map (user_id, did, state, claim, claimed_at, created_at) \
             VALUES ($1, $2, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(did.as_str())
        .bind(claim)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(Error::db("insert pending row"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Takes over a pending row still held by claim `old`: `true` if this call did.
    pub(crate) async fn take_over(&self, user_id: &str, old: &str, claim: &str, now: i64) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE identity_map SET claim = $1, claimed_at = $2 \
             WHERE user_id = $3 AND state = 'pending' AND claim = $4",
        )
        .bind(claim)
        .bind(now)
        .bind(user_id)
        .bind(old)
        .execute(&self.pool)
        .await
        .map_err(Error::db("take over pending row"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Completes a pending row still held by `claim`: `true` if this call did.
    pub(crate) async fn complete(&self, user_id: &str, claim: &str, done: &Completion<'_>) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE identity_map SET state = 'ready', address = $1, owner = $2, owner_key_id = $3, \
             owner_key_version = $4, created_at = $5, claim = NULL, claimed_at = NULL \
             WHERE user_id = $6 AND state = 'pending' AND claim = $7",
        )
        .bind(encode_address(done.address))
        .bind(encode_address(done.owner))
        .bind(done.owner_key_id)
        .bind(done.owner_key_version)
        .bind(done.created_at)
        .bind(user_id)
        .bind(claim)
        .execute(&self.pool)
        .await
        .map_err(Error::db("complete row"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Removes a pending row still held by `claim` (its creator failed), so that the next call retries.
    pub(crate) async fn release(&self, user_id: &str, claim: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM identity_map WHERE user_id = $1 AND state = 'pending' AND claim = $2")
            .bind(user_id)
            .bind(claim)
            .execute(&self.pool)
            .await
            .map_err(Error::db("release pending row"))?;
        Ok(())
    }

    /// Points `user_id`'s wallet at its new owner `owner` (key `key_id`, version `version`) if it still
    /// names key `from`: `true` if this call changed it.
    pub(crate) async fn change_owner(
        &self,
        user_id: &str,
        from: &str,
        (owner, key_id, version): (Address, &str, i64),
    ) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE identity_map SET owner = $1, owner_key_id = $2, owner_key_version = $3, deployed = 1 \
             WHERE user_id = $4 AND state = 'ready' AND owner_key_id = $5",
        )
        .bind(encode_address(owner))
        .bind(key_id)
        .bind(version)
        .bind(user_id)
        .bind(from)
        .execute(&self.pool)
        .await
        .map_err(Error::db("change owner"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Records that the account at `address` has code on chain: `true` if a wallet has that address.
    pub(crate) async fn mark_deployed(&self, address: Address) -> Result<bool, Error> {
        let result = sqlx::query("UPDATE identity_map SET deployed = 1 WHERE address = $1 AND state = 'ready'")
            .bind(encode_address(address))
            .execute(&self.pool)
            .await
            .map_err(Error::db("mark deployed"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Marks the DID of `user_id` deactivated: `false` if no ready wallet has that user id.
    pub(crate) async fn deactivate(&self, user_id: &str) -> Result<bool, Error> {
        let result = sqlx::query("UPDATE identity_map SET deactivated = 1 WHERE user_id = $1 AND state = 'ready'")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(Error::db("deactivate"))?;
        Ok(result.rows_affected() == 1)
    }
}

fn entry(row: &AnyRow) -> Result<Entry, Error> {
    let state: String = row.try_get("state").map_err(Error::db("decode state"))?;
    if state == "pending" {
        let did: String = row.try_get("did").map_err(Error::db("decode did"))?;
        let claim: Option<String> = row.try_get("claim").map_err(Error::db("decode claim"))?;
        let claimed_at: Option<i64> = row.try_get("claimed_at").map_err(Error::db("decode claimed_at"))?;
        return match (claim, claimed_at) {
            (Some(claim), Some(claimed_at)) => Ok(Entry::Pending { claim, claimed_at }),
            _ => Err(Error::CorruptRow { did, column: "claim" }),
        };
    }
    wallet(row).map(Entry::Ready)
}

fn wallet(row: &AnyRow) -> Result<Wallet, Error> {
    let get = |column| row.try_get::<Option<String>, _>(column).map_err(Error::db("decode text"));
    let did_text = get("did")?.unwrap_or_default();
    let corrupt = |column| Error::CorruptRow { did: did_text.clone(), column };
    let address = |column| -> Result<Address, Error> {
        get(column)?.and_then(|text| decode_address(&text).ok()).ok_or_else(|| corrupt(column))
    };
    let flag = |column| match row.try_get::<i64, _>(column).map_err(Error::db("decode flag"))? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt(column)),
    };
    let state = get("state")?;
    if state.as_deref() != Some("ready") {
        return Err(corrupt("state"));
    }
    Ok(Wallet {
        did: did_text.parse().map_err(|_| corrupt("did"))?,
        user_id: get("user_id")?.ok_or_else(|| corrupt("user_id"))?,
        address: address("address")?,
        owner: address("owner")?,
        owner_key_id: get("owner_key_id")?.ok_or_else(|| corrupt("owner_key_id"))?,
        owner_key_version: row
            .try_get::<Option<i64>, _>("owner_key_version")
            .map_err(Error::db("decode owner_key_version"))?
            .ok_or_else(|| corrupt("owner_key_version"))?,
        custody: get("custody")?.and_then(|text| text.parse().ok()).ok_or_else(|| corrupt("custody"))?,
        deployed: flag("deployed")?,
        deactivated: flag("deactivated")?,
        created_at: row.try_get("created_at").map_err(Error::db("decode created_at"))?,
    })
}

impl std::str::FromStr for Custody {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "custodial" => Ok(Self::Custodial),
            "self" => Ok(Self::SelfCustody),
            _ => Err(()),
        }
    }
}

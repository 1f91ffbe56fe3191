//! Budgets: a sponsorship is reserved against its policy's global and per-sender limits when it is
//! signed, in one write that first locks the policy (a row lock on PostgreSQL, the write gate on
//! SQLite), so concurrent requests never overspend. It is settled from the operation's
//! UserOperationEvent (its gas used) or released once its signature expired unused.

use alloy::primitives::{Address, B256, U256};
use custody_contracts::EntryPointVersion;
use custody_db::{Dialect, WriteGate, encode_address, encode_b256, now_millis};
use sqlx::{AnyPool, Row};

use crate::{
    Error,
    config::{PolicyConfig, Scope},
    policy::Denial,
};

/// The budget book over the service database.
#[derive(Clone, Debug)]
pub struct Budget {
    pool: AnyPool,
    gate: WriteGate,
    postgres: bool,
}

/// One sponsorship as officers list it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SponsorshipRow {
    /// `<entry point>:<sender>:<nonce>`.
    pub id: String,
    /// The policy it counts against.
    pub policy: String,
    /// The account.
    pub sender: Address,
    /// Reserved gas (the operation's limits).
    pub max_gas: u64,
    /// Gas used, once settled.
    pub gas_used: Option<u64>,
    /// `reserved`, `settled` or `released`.
    pub status: String,
    /// Last second the signature is valid.
    pub valid_until: u64,
    /// The bundle transaction, once settled.
    pub tx_hash: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A sponsorship's id: one per operation (entry point, sender, nonce); a second request for the same
/// operation replaces its reservation instead of adding one.
pub fn sponsorship_id(version: EntryPointVersion, sender: Address, nonce: U256) -> String {
    format!("{}:{}:{nonce:#x}", version.as_str(), encode_address(sender))
}

impl Budget {
    /// The book over `pool` (its tables migrated here); `policies` get their lock rows.
    pub async fn open(pool: AnyPool, policies: &[PolicyConfig]) -> Result<Self, Error> {
        custody_db::migrate(&pool, sqlx::migrate!("migrations/postgres"), sqlx::migrate!("migrations/sqlite")).await?;
        for policy in policies {
            sqlx::query("INSERT INTO paymaster_policies (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
                .bind(&policy.id)
                .execute(&pool)
                .await
                .map_err(Error::db("policy row"))?;
        }
        Ok(Self { gate: WriteGate::of(&pool), postgres: Dialect::of(&pool).is_postgres(), pool })
    }

    /// Reserves `gas` for sponsorship `id` of `sender` under `policy`, valid until `valid_until`; a
    /// denial names the limit it would break.
    pub async fn reserve(
        &self,
        policy: &PolicyConfig,
        key: (&str, EntryPointVersion, Address, U256),
        gas: u64,
        valid_until: u64,
    ) -> Result<Result<(), Denial>, Error> {
        self.book(policy, key, gas, Some(valid_until)).await
    }

    /// Whether `gas` for sponsorship `id` would fit `policy`'s budgets now (nothing reserved).
    pub async fn check(
        &self,
        policy: &PolicyConfig,
        key: (&str, EntryPointVersion, Address, U256),
        gas: u64,
    ) -> Result<Result<(), Denial>, Error> {
        self.book(policy, key, gas, None).await
    }

    /// Counts `policy`'s budgets and, with `reserve` (the signature's `validUntil`), reserves `gas`.
    async fn book(
        &self,
        policy: &PolicyConfig,
        (id, version, sender, nonce): (&str, EntryPointVersion, Address, U256),
        gas: u64,
        reserve: Option<u64>,
    ) -> Result<Result<(), Denial>, Error> {
        let _turn = self.gate.turn().await;
        let mut db = self.pool.begin().await.map_err(Error::db("begin reserve"))?;
        // Counted limits need the policy's lock, so two requests never both take the last of a budget;
        // a policy without any has nothing to overspend.
        let counted = policy.limits.iter().any(|l| l.scope != Scope::Operation);
        if self.postgres && counted {
            sqlx::query("SELECT id FROM paymaster_policies WHERE id = $1 FOR UPDATE")
                .bind(&policy.id)
                .fetch_optional(&mut *db)
                .await
                .map_err(Error::db("lock policy"))?;
        }
        let now = now_millis();
        let now_secs = u64::try_from(now / 1000).unwrap_or(0);
        for limit in policy.limits.iter().filter(|l| l.scope != Scope::Operation) {
            let since = i64::try_from(limit.reset.period_start(now_secs) * 1000).unwrap_or(i64::MAX);
            let per_sender = if limit.scope == Scope::Sender { " AND sender = $4" } else { "" };
            let sql = format!(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(CASE WHEN status = 'settled' THEN gas_used ELSE max_gas END), 0) \
                 AS BIGINT) AS gas FROM paymaster_sponsorships WHERE policy = $1 AND status IN ('reserved', 'settled') \
                 AND created_at >= $2 AND id <> $3{per_sender}"
            );
            let row = sqlx::query(&sql)
                .bind(&policy.id)
                .bind(since)
                .bind(id)
                .bind(encode_address(sender))
                .fetch_one(&mut *db)
                .await
                .map_err(Error::db("count budget"))?;
            let count = u64::try_from(row.try_get::<i64, _>("n").map_err(Error::db("decode count"))?).unwrap_or(0);
            let used = u64::try_from(row.try_get::<i64, _>("gas").map_err(Error::db("decode gas"))?).unwrap_or(0);
            let whose = if limit.scope == Scope::Sender { "sender" } else { "global" };
            if let Some(max) = limit.max_ops
                && count + 1 > max
            {
                let rule = if limit.scope == Scope::Sender { "sender_ops" } else { "global_ops" };
                let message = format!("the {whose} budget of {max} operations ({:?} reset) is used up", limit.reset);
                return Ok(Err(Denial::new(&policy.id, rule, message)));
            }
            if let Some(max) = limit.max_gas
                && used.saturating_add(gas) > max
            {
                let rule = if limit.scope == Scope::Sender { "sender_gas" } else { "global_gas" };
                let message = format!("{gas} more gas would pass the {whose} budget: {used} of {max} used");
                return Ok(Err(Denial::new(&policy.id, rule, message)));
            }
        }
        let Some(valid_until) = reserve else { return Ok(Ok(())) };
        let stored = sqlx::query(
            "INSERT INTO paymaster_sponsorships (id, policy, entry_point, sender, nonce, max_gas, status, valid_until, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, $8, $8) \
             ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, max_gas = excluded.max_gas, \
             status = 'reserved', valid_until = excluded.valid_until, created_at = excluded.created_at, \
             updated_at = excluded.updated_at WHERE paymaster_sponsorships.status <> 'settled'",
        )
        .bind(id)
        .bind(&policy.id)
        .bind(version.as_str())
        .bind(encode_address(sender))
        .bind(format!("{nonce:#x}"))
        .bind(i64::try_from(gas).unwrap_or(i64::MAX))
        .bind(i64::try_from(valid_until).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&mut *db)
        .await
        .map_err(Error::db("reserve"))?;
        if stored.rows_affected() == 0 {
            return Ok(Err(Denial::new(&policy.id, "already_included", "this operation was sponsored and included")));
        }
        db.commit().await.map_err(Error::db("commit reserve"))?;
        Ok(Ok(()))
    }

    /// Settles sponsorship `id` with the gas its operation used (also one released before its late
    /// inclusion). Returns whether a row changed.
    pub async fn settle(&self, id: &str, gas_used: u64, user_op_hash: B256, tx_hash: B256) -> Result<bool, Error> {
        let _turn = self.gate.turn().await;
        let done = sqlx::query(
            "UPDATE paymaster_sponsorships SET status = 'settled', gas_used = $1, user_op_hash = $2, tx_hash = $3, \
             updated_at = $4 WHERE id = $5 AND status IN ('reserved', 'released')",
        )
        .bind(i64::try_from(gas_used).unwrap_or(i64::MAX))
        .bind(encode_b256(user_op_hash))
        .bind(encode_b256(tx_hash))
        .bind(now_millis())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(Error::db("settle"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the reservations whose signatures expired before `before` (unix seconds). Returns how many.
    pub async fn release_expired(&self, before: u64) -> Result<u64, Error> {
        let _turn = self.gate.turn().await;
        let done = sqlx::query(
            "UPDATE paymaster_sponsorships SET status = 'released', updated_at = $1 \
             WHERE status = 'reserved' AND valid_until < $2",
        )
        .bind(now_millis())
        .bind(i64::try_from(before).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(Error::db("release"))?;
        Ok(done.rows_affected())
    }

    /// Sponsorships of `policy`, newest first, at most `limit`.
    pub async fn list(&self, policy: &str, limit: u32) -> Result<Vec<SponsorshipRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, policy, sender, max_gas, gas_used, status, valid_until, tx_hash, created_at \
             FROM paymaster_sponsorships WHERE policy = $1 ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(policy)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("list"))?;
        rows.iter()
            .map(|r| {
                let int = |c: &'static str| r.try_get::<i64, _>(c).map_err(|_| Error::Corrupt(c));
                let gas_used: Option<i64> = r.try_get("gas_used").map_err(|_| Error::Corrupt("gas_used"))?;
                Ok(SponsorshipRow {
                    id: r.try_get("id").map_err(|_| Error::Corrupt("id"))?,
                    policy: r.try_get("policy").map_err(|_| Error::Corrupt("policy"))?,
                    sender: custody_db::decode_address(
                        &r.try_get::<String, _>("sender").map_err(|_| Error::Corrupt("sender"))?,
                    )
                    .map_err(|_| Error::Corrupt("sender"))?,
                    max_gas: u64::try_from(int("max_gas")?).unwrap_or(0),
                    gas_used: gas_used.map(|g| u64::try_from(g).unwrap_or(0)),
                    status: r.try_get("status").map_err(|_| Error::Corrupt("status"))?,
                    valid_until: u64::try_from(int("valid_until")?).unwrap_or(0),
                    tx_hash: r.try_get("tx_hash").map_err(|_| Error::Corrupt("tx_hash"))?,
                    created_at: int("created_at")?,
                })
            })
            .collect()
    }

    /// The block the settler reads from next (0 at first).
    pub(crate) async fn cursor(&self) -> Result<u64, Error> {
        let row = sqlx::query("SELECT next_block FROM paymaster_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("cursor"))?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("next_block"))
            .transpose()
            .map_err(Error::db("decode cursor"))?
            .map_or(0, |b| u64::try_from(b).unwrap_or(0)))
    }

    /// Moves the settler's cursor to `next`.
    pub(crate) async fn set_cursor(&self, next: u64) -> Result<(), Error> {
        let _turn = self.gate.turn().await;
        sqlx::query(
            "INSERT INTO paymaster_cursor (id, next_block) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET next_block = excluded.next_block",
        )
        .bind(i64::try_from(next).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(Error::db("set cursor"))?;
        Ok(())
    }
}

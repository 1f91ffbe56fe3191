//! Budgets: a sponsorship is reserved against its policy's global and per-sender limits when it is
//! signed, in one write that first locks the policy (a row lock on PostgreSQL, the write gate on
//! SQLite), so concurrent requests never overspend. It is settled from the operation's
//! UserOperationEvent (its gas used) or released once its signature expired unused. Each change moves
//! the running counters (`usage.rs`, table `paymaster_usage`) in the same write, so a reservation reads them in constant
//! time however many sponsorships its period holds.

use alloy::primitives::{Address, B256, U256};
use custody_contracts::{EntryPointVersion, UserOperation};
use custody_db::{Dialect, WriteGate, encode_address, encode_b256, now_millis};
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{
    Error,
    config::{PolicyConfig, Scope},
    policies::{self, PolicyRecord},
    policy::{self, Denial},
    usage::Counter,
};

/// The budget book over the service database.
#[derive(Clone, Debug)]
pub struct Budget {
    pool: AnyPool,
    gate: WriteGate,
    postgres: bool,
    /// Policies whose last read had counted limits: on PostgreSQL they are read under their row lock
    /// at once (one round trip instead of two).
    counted: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// A stored sponsorship, as a change of the counters needs it.
struct Reserved {
    policy: String,
    sender: Address,
    status: String,
    max_gas: i64,
    /// Unix seconds.
    created: u64,
    /// The counters it was counted in.
    counters: Vec<Counter>,
}

/// A policy change made against a version that is no longer the stored one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The stored version (0: no such policy).
    pub current: u64,
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
    /// The book over `pool` (its tables migrated here), with the configuration's `policies` applied
    /// ([`crate::policies`]).
    pub async fn open(pool: AnyPool, policies: &[PolicyConfig]) -> Result<Self, Error> {
        // One SQL for both dialects.
        custody_db::migrate(&pool, sqlx::migrate!("./migrations"), sqlx::migrate!("./migrations")).await?;
        let budget = Self {
            gate: WriteGate::of(&pool),
            postgres: Dialect::of(&pool).is_postgres(),
            pool,
            counted: std::sync::Arc::default(),
        };
        for policy in policies {
            // No base version: never stale.
            budget.change(policy, policies::CONFIG, None).await?.map_err(|_| Error::Config("stale".to_owned()))?;
        }
        Ok(budget)
    }

    /// Every policy, by id.
    pub async fn policies(&self) -> Result<Vec<PolicyRecord>, Error> {
        policies::all(&self.pool).await
    }

    /// Policy `id`.
    pub async fn policy(&self, id: &str) -> Result<Option<PolicyRecord>, Error> {
        let mut db = self.pool.begin().await.map_err(Error::db("begin read policy"))?;
        policies::load(&mut db, id, false).await
    }

    /// Stores `policy` (validated) as changed by `by`, if its stored version is still `base` (0: it
    /// does not exist yet; `None`: whatever it is). A counted limit it adds counts what its current
    /// period already sponsored, in the same write.
    pub async fn put_policy(
        &self,
        policy: &PolicyConfig,
        by: &str,
        base: Option<u64>,
    ) -> Result<Result<PolicyRecord, Stale>, Error> {
        if by == policies::CONFIG {
            return Err(Error::Config(format!("{by:?} names the configuration, not an officer")));
        }
        self.change(policy, by, base).await
    }

    /// [`Self::put_policy`]; by [`policies::CONFIG`], only when the configuration's body is not the one
    /// last applied from it.
    async fn change(
        &self,
        policy: &PolicyConfig,
        by: &str,
        base: Option<u64>,
    ) -> Result<Result<PolicyRecord, Stale>, Error> {
        policy.validate()?;
        let _turn = self.gate.turn().await;
        let mut db = self.gate.begin(&self.pool).await.map_err(Error::db("begin policy change"))?;
        let old = policies::load(&mut db, &policy.id, self.postgres).await?;
        let current = old.as_ref().map_or(0, |o| o.version);
        if base.is_some_and(|b| b != current) {
            return Ok(Err(Stale { current }));
        }
        if by == policies::CONFIG
            && let Some(old) = &old
            && policies::config_body(&mut db, &policy.id).await?.as_deref() == Some(policies::body(policy)?.as_str())
        {
            if old.policy != *policy {
                tracing::info!(policy = %policy.id, "an officer changed this policy since the configuration's version");
            }
            return Ok(Ok(old.clone()));
        }
        if by == policies::CONFIG {
            tracing::info!(policy = %policy.id, version = current + 1, "the configuration's version of the policy applies");
        }
        let before = old.as_ref().map(|o| Counter::of(&o.policy)).unwrap_or_default();
        let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
        for counter in Counter::of(policy).into_iter().filter(|c| !before.contains(c)) {
            counter.recount(&mut db, &policy.id, now_secs).await?;
        }
        let record = policies::store(&mut db, policy, current + 1, by).await?;
        db.commit().await.map_err(Error::db("commit policy change"))?;
        Ok(Ok(record))
    }

    /// Reserves `gas` for operation `op` (sponsorship `key`) under policy `policy`, valid until
    /// `valid_until`, after the policy's rules at `now` (unix seconds); a denial names the rule or the
    /// limit it would break.
    pub async fn reserve(
        &self,
        (policy, op, now): (&str, &UserOperation, u64),
        key: (&str, EntryPointVersion, Address, U256),
        gas: u64,
        valid_until: u64,
    ) -> Result<Result<String, Denial>, Error> {
        self.book((policy, op, now), key, gas, Some(valid_until)).await
    }

    /// Whether `op` passes `policy`'s rules at `now` and `gas` fits its budgets (nothing reserved).
    pub async fn check(
        &self,
        (policy, op, now): (&str, &UserOperation, u64),
        key: (&str, EntryPointVersion, Address, U256),
        gas: u64,
    ) -> Result<Result<String, Denial>, Error> {
        self.book((policy, op, now), key, gas, None).await
    }

    /// Checks the stored policy's rules and budgets and, with `reserve` (the signature's `validUntil`),
    /// reserves `gas`. Answers the policy's id.
    async fn book(
        &self,
        (id_wanted, op, at): (&str, &UserOperation, u64),
        (id, version, sender, nonce): (&str, EntryPointVersion, Address, U256),
        gas: u64,
        reserve: Option<u64>,
    ) -> Result<Result<String, Denial>, Error> {
        let _turn = self.gate.turn().await;
        let mut db = self.gate.begin(&self.pool).await.map_err(Error::db("begin reserve"))?;
        let unknown = || Denial::new(id_wanted, "unknown_policy", format!("no policy {id_wanted:?}"));
        // Counted limits need the policy's lock on PostgreSQL, so two requests never both take the last
        // of a budget (the policy read under it is the version the write is made against); a policy
        // without any has nothing to overspend. A policy counted at its last read is locked at once.
        let counted = |r: &PolicyRecord| r.policy.limits.iter().any(|l| l.scope != Scope::Operation);
        let lock_first = self.postgres && self.counted.lock().is_ok_and(|c| c.contains(id_wanted));
        let Some(mut record) = policies::load(&mut db, id_wanted, lock_first).await? else {
            return Ok(Err(unknown()));
        };
        if self.postgres && !lock_first && counted(&record) {
            let Some(locked) = policies::load(&mut db, id_wanted, true).await? else { return Ok(Err(unknown())) };
            record = locked;
        }
        if self.postgres
            && let Ok(mut known) = self.counted.lock()
        {
            if counted(&record) {
                if !known.contains(&record.policy.id) {
                    known.insert(record.policy.id.clone());
                }
            } else {
                known.remove(&record.policy.id);
            }
        }
        let policy = &record.policy;
        if let Err(denial) = policy::check(policy, op, at) {
            return Ok(Err(denial));
        }
        let now = now_millis();
        let now_secs = u64::try_from(now / 1000).unwrap_or(0);
        let earlier = reserved(&mut db, id).await?;
        if earlier.as_ref().is_some_and(|e| e.status == "settled") {
            return Ok(Err(Denial::new(&policy.id, "already_included", "this operation was sponsored and included")));
        }
        // The operation's own earlier reservation is replaced, not added to.
        let replaced = earlier.filter(|e| e.status == "reserved");
        for limit in policy.limits.iter().filter(|l| l.scope != Scope::Operation) {
            let counter = Counter { scope: limit.scope, reset: limit.reset };
            let (mut count, mut used) = counter.read(&mut db, &policy.id, sender, now_secs).await?;
            if let Some(e) = &replaced
                && e.policy == policy.id
                && e.sender == sender
                && e.counters.contains(&counter)
                && limit.reset.period_start(e.created) == limit.reset.period_start(now_secs)
            {
                count -= 1;
                used -= e.max_gas;
            }
            let (count, used) = (u64::try_from(count).unwrap_or(0), u64::try_from(used).unwrap_or(0));
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
        let Some(valid_until) = reserve else { return Ok(Ok(policy.id.clone())) };
        let stored = sqlx::query(
            "INSERT INTO paymaster_sponsorships (id, policy, entry_point, sender, nonce, max_gas, status, valid_until, \
             created_at, updated_at, counters) VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, $8, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, max_gas = excluded.max_gas, \
             status = 'reserved', valid_until = excluded.valid_until, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, counters = excluded.counters \
             WHERE paymaster_sponsorships.status <> 'settled'",
        )
        .bind(id)
        .bind(&policy.id)
        .bind(version.as_str())
        .bind(encode_address(sender))
        .bind(format!("{nonce:#x}"))
        .bind(i64::try_from(gas).unwrap_or(i64::MAX))
        .bind(i64::try_from(valid_until).unwrap_or(i64::MAX))
        .bind(now)
        .bind(Counter::list(&Counter::of(policy)))
        .execute(&mut *db)
        .await
        .map_err(Error::db("reserve"))?;
        if stored.rows_affected() == 0 {
            return Ok(Err(Denial::new(&policy.id, "already_included", "this operation was sponsored and included")));
        }
        if let Some(e) = &replaced {
            self.count(&mut db, e, (-1, -e.max_gas)).await?;
        }
        let gas = i64::try_from(gas).unwrap_or(i64::MAX);
        for counter in Counter::of(policy) {
            counter.add(&mut db, &policy.id, sender, now_secs, (1, gas)).await?;
        }
        db.commit().await.map_err(Error::db("commit reserve"))?;
        Ok(Ok(policy.id.clone()))
    }

    /// Settles sponsorship `id` with the gas its operation used (also one released before its late
    /// inclusion). Returns whether a row changed.
    pub async fn settle(&self, id: &str, gas_used: u64, user_op_hash: B256, tx_hash: B256) -> Result<bool, Error> {
        let _turn = self.gate.turn().await;
        let mut db = self.gate.begin(&self.pool).await.map_err(Error::db("begin settle"))?;
        let Some(row) = reserved(&mut db, id).await?.filter(|r| r.status != "settled") else { return Ok(false) };
        let gas_used = i64::try_from(gas_used).unwrap_or(i64::MAX);
        // A reserved one counted its limits; a released one counted nothing any more.
        let delta = if row.status == "reserved" { (0, gas_used - row.max_gas) } else { (1, gas_used) };
        self.count(&mut db, &row, delta).await?;
        sqlx::query(
            "UPDATE paymaster_sponsorships SET status = 'settled', gas_used = $1, user_op_hash = $2, tx_hash = $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(gas_used)
        .bind(encode_b256(user_op_hash))
        .bind(encode_b256(tx_hash))
        .bind(now_millis())
        .bind(id)
        .execute(&mut *db)
        .await
        .map_err(Error::db("settle"))?;
        db.commit().await.map_err(Error::db("commit settle"))?;
        Ok(true)
    }

    /// Adds `delta` (operations, gas) to the counters `row` was counted in (its policy's, in the period
    /// of its reservation).
    async fn count(&self, db: &mut Transaction<'static, Any>, row: &Reserved, delta: (i64, i64)) -> Result<(), Error> {
        for counter in &row.counters {
            counter.add(db, &row.policy, row.sender, row.created, delta).await?;
        }
        Ok(())
    }

    /// Releases the reservations whose signatures expired before `before` (unix seconds). Returns how many.
    pub async fn release_expired(&self, before: u64) -> Result<u64, Error> {
        let _turn = self.gate.turn().await;
        let mut db = self.gate.begin(&self.pool).await.map_err(Error::db("begin release"))?;
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM paymaster_sponsorships WHERE status = 'reserved' AND valid_until < $1")
                .bind(i64::try_from(before).unwrap_or(i64::MAX))
                .fetch_all(&mut *db)
                .await
                .map_err(Error::db("expired"))?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()
                .map_err(Error::db("decode expired"))?;
        for id in &ids {
            let Some(row) = reserved(&mut db, id).await? else { continue };
            self.count(&mut db, &row, (-1, -row.max_gas)).await?;
            sqlx::query("UPDATE paymaster_sponsorships SET status = 'released', updated_at = $1 WHERE id = $2")
                .bind(now_millis())
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(Error::db("release"))?;
        }
        db.commit().await.map_err(Error::db("commit release"))?;
        Ok(ids.len() as u64)
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

    /// Sets `custody_paymaster_budget_used_ratio` (the share used of each global limit in its current
    /// period, from the running counters) for every policy; the settler calls it at each step, so a
    /// reset shows without waiting for the next sponsorship.
    pub(crate) async fn report_usage(&self) -> Result<(), Error> {
        let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
        let mut db = self.pool.begin().await.map_err(Error::db("begin usage report"))?;
        for record in policies::all(&self.pool).await? {
            for limit in record.policy.limits.iter().filter(|l| l.scope == Scope::Global) {
                let counter = Counter { scope: limit.scope, reset: limit.reset };
                let (ops, gas) = counter.read(&mut db, &record.policy.id, Address::ZERO, now_secs).await?;
                let share = |n: i64, max: u64| if max == 0 { 1.0 } else { n.max(0) as f64 / max as f64 };
                for (measure, used, max) in [("operations", ops, limit.max_ops), ("gas", gas, limit.max_gas)] {
                    let Some(max) = max else { continue };
                    let labels = [
                        ("policy", record.policy.id.clone()),
                        ("reset", counter.reset_name().to_owned()),
                        ("measure", measure.to_owned()),
                    ];
                    metrics::gauge!("custody_paymaster_budget_used_ratio", &labels).set(share(used, max));
                }
            }
        }
        Ok(())
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

/// The sponsorship `id` as the counters need it.
async fn reserved(db: &mut Transaction<'static, Any>, id: &str) -> Result<Option<Reserved>, Error> {
    let row = sqlx::query(
        "SELECT policy, sender, status, max_gas, created_at, counters FROM paymaster_sponsorships WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **db)
    .await
    .map_err(Error::db("sponsorship"))?;
    let Some(row) = row else { return Ok(None) };
    let text = |c: &'static str| row.try_get::<String, _>(c).map_err(|_| Error::Corrupt(c));
    let created: i64 = row.try_get("created_at").map_err(|_| Error::Corrupt("created_at"))?;
    Ok(Some(Reserved {
        policy: text("policy")?,
        sender: custody_db::decode_address(&text("sender")?).map_err(|_| Error::Corrupt("sender"))?,
        status: text("status")?,
        max_gas: row.try_get("max_gas").map_err(|_| Error::Corrupt("max_gas"))?,
        created: u64::try_from(created / 1000).unwrap_or(0),
        counters: Counter::parse_list(&text("counters")?),
    }))
}

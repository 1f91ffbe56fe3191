//! Running budget counters (`paymaster_usage`): operations and gas per policy, scope (global or one
//! sender), reset and period, changed in the same write as the sponsorship they count.

use alloy::primitives::Address;
use custody_db::encode_address;
use sqlx::{Any, Row, Transaction};

use crate::{
    Error,
    config::{PolicyConfig, Reset, Scope},
};

/// One counter: whose operations (`scope` and `subject`) over which `reset` period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) scope: Scope,
    pub(crate) reset: Reset,
}

impl Counter {
    /// The counters `policy`'s counted limits read (one per scope and reset).
    pub(crate) fn of(policy: &PolicyConfig) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        for limit in policy.limits.iter().filter(|l| l.scope != Scope::Operation) {
            let counter = Self { scope: limit.scope, reset: limit.reset };
            if !out.contains(&counter) {
                out.push(counter);
            }
        }
        out
    }

    const RESETS: [(Reset, &'static str); 4] =
        [(Reset::Never, "never"), (Reset::Daily, "daily"), (Reset::Weekly, "weekly"), (Reset::Monthly, "monthly")];

    fn names(self, sender: Address) -> (&'static str, String, &'static str) {
        let (scope, subject) = match self.scope {
            Scope::Sender => ("sender", encode_address(sender)),
            _ => ("global", String::new()),
        };
        let reset = Self::RESETS.iter().find(|(r, _)| *r == self.reset).map_or("never", |(_, name)| name);
        (scope, subject, reset)
    }

    /// The reset's name (`never`, `daily`, `weekly`, `monthly`).
    pub(crate) fn reset_name(self) -> &'static str {
        self.names(Address::ZERO).2
    }

    /// `scope:reset`, as a sponsorship's `counters` lists it.
    pub(crate) fn tag(self) -> String {
        let (scope, _, reset) = self.names(Address::ZERO);
        format!("{scope}:{reset}")
    }

    /// The counters a sponsorship's `counters` column lists (`,global:daily,sender:never,`).
    pub(crate) fn parse_list(list: &str) -> Vec<Self> {
        let parse = |tag: &str| {
            let (scope, reset) = tag.split_once(':')?;
            let scope = match scope {
                "global" => Scope::Global,
                "sender" => Scope::Sender,
                _ => return None,
            };
            let reset = Self::RESETS.iter().find(|(_, name)| *name == reset)?.0;
            Some(Self { scope, reset })
        };
        list.split(',').filter_map(parse).collect()
    }

    /// `counters` as a sponsorship's column lists them.
    pub(crate) fn list(counters: &[Self]) -> String {
        counters.iter().fold(",".to_owned(), |list, c| format!("{list}{},", c.tag()))
    }

    /// Sets this counter's period holding `at` to what `policy`'s sponsorships of that period add up to
    /// (reserved at their limits, settled at their gas used), and lists it on each of them: a limit an
    /// officer adds counts what its period already sponsored.
    pub(crate) async fn recount(self, db: &mut Transaction<'static, Any>, policy: &str, at: u64) -> Result<(), Error> {
        let (scope, _, reset) = self.names(Address::ZERO);
        let start = period(self.reset, at);
        let since = start.saturating_mul(1000);
        let rows = sqlx::query(
            "SELECT sender, status, max_gas, gas_used FROM paymaster_sponsorships \
             WHERE policy = $1 AND status <> 'released' AND created_at >= $2",
        )
        .bind(policy)
        .bind(since)
        .fetch_all(&mut **db)
        .await
        .map_err(Error::db("recount"))?;
        let mut sums: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for row in &rows {
            let sender: String = row.try_get("sender").map_err(|_| Error::Corrupt("sender"))?;
            let settled = row.try_get::<String, _>("status").map_err(|_| Error::Corrupt("status"))? == "settled";
            let used: Option<i64> = row.try_get("gas_used").map_err(|_| Error::Corrupt("gas_used"))?;
            let max: i64 = row.try_get("max_gas").map_err(|_| Error::Corrupt("max_gas"))?;
            let gas = if settled { used.unwrap_or(max) } else { max };
            let subject = if self.scope == Scope::Sender { sender } else { String::new() };
            let sum = sums.entry(subject).or_default();
            *sum = (sum.0 + 1, sum.1 + gas);
        }
        sqlx::query("DELETE FROM paymaster_usage WHERE policy = $1 AND scope = $2 AND reset = $3 AND period = $4")
            .bind(policy)
            .bind(scope)
            .bind(reset)
            .bind(start)
            .execute(&mut **db)
            .await
            .map_err(Error::db("recount"))?;
        for (subject, (ops, gas)) in sums {
            sqlx::query(
                "INSERT INTO paymaster_usage (policy, scope, subject, reset, period, ops, gas) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(policy)
            .bind(scope)
            .bind(subject)
            .bind(reset)
            .bind(start)
            .bind(ops)
            .bind(gas)
            .execute(&mut **db)
            .await
            .map_err(Error::db("recount"))?;
        }
        let tag = self.tag();
        sqlx::query(
            "UPDATE paymaster_sponsorships SET counters = counters || $1 || ',' WHERE policy = $2 \
             AND status <> 'released' AND created_at >= $3 AND counters NOT LIKE '%,' || $1 || ',%'",
        )
        .bind(&tag)
        .bind(policy)
        .bind(since)
        .execute(&mut **db)
        .await
        .map_err(Error::db("recount"))?;
        Ok(())
    }

    /// Operations and gas counted for `sender` in the period holding `at` (unix seconds).
    pub(crate) async fn read(
        self,
        db: &mut Transaction<'static, Any>,
        policy: &str,
        sender: Address,
        at: u64,
    ) -> Result<(i64, i64), Error> {
        let (scope, subject, reset) = self.names(sender);
        let row = sqlx::query(
            "SELECT ops, gas FROM paymaster_usage WHERE policy = $1 AND scope = $2 AND subject = $3 \
             AND reset = $4 AND period = $5",
        )
        .bind(policy)
        .bind(scope)
        .bind(subject)
        .bind(reset)
        .bind(period(self.reset, at))
        .fetch_optional(&mut **db)
        .await
        .map_err(Error::db("read usage"))?;
        let Some(row) = row else { return Ok((0, 0)) };
        let get = |c: &'static str| row.try_get::<i64, _>(c).map_err(|_| Error::Corrupt("paymaster_usage"));
        Ok((get("ops")?, get("gas")?))
    }

    /// Adds `ops` and `gas` (either may be negative) to `sender`'s counter of the period holding `at`.
    pub(crate) async fn add(
        self,
        db: &mut Transaction<'static, Any>,
        policy: &str,
        sender: Address,
        at: u64,
        (ops, gas): (i64, i64),
    ) -> Result<(), Error> {
        let (scope, subject, reset) = self.names(sender);
        sqlx::query(
            "INSERT INTO paymaster_usage (policy, scope, subject, reset, period, ops, gas) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (policy, scope, subject, reset, period) \
             DO UPDATE SET ops = paymaster_usage.ops + excluded.ops, gas = paymaster_usage.gas + excluded.gas",
        )
        .bind(policy)
        .bind(scope)
        .bind(subject)
        .bind(reset)
        .bind(period(self.reset, at))
        .bind(ops)
        .bind(gas)
        .execute(&mut **db)
        .await
        .map_err(Error::db("count usage"))?;
        Ok(())
    }
}

fn period(reset: Reset, at: u64) -> i64 {
    i64::try_from(reset.period_start(at)).unwrap_or(i64::MAX)
}

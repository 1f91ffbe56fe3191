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

    fn names(self, sender: Address) -> (&'static str, String, &'static str) {
        let (scope, subject) = match self.scope {
            Scope::Sender => ("sender", encode_address(sender)),
            _ => ("global", String::new()),
        };
        let reset = match self.reset {
            Reset::Never => "never",
            Reset::Daily => "daily",
            Reset::Weekly => "weekly",
            Reset::Monthly => "monthly",
        };
        (scope, subject, reset)
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

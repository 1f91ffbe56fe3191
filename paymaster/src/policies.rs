//! Policies in the database (`paymaster_policies`): seeded from the configuration, changed by officers
//! over the API, read inside each reservation's write, so every instance sponsors under the same
//! version and a lowered limit binds the next request.
//!
//! The configuration's version of a policy is applied when it differs from the one last applied from
//! the configuration (an operator edited the file); an officer's later change survives restarts.

use custody_db::now_millis;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{
    Error,
    config::{Limit, PolicyConfig, Reset, Scope},
};

/// A stored policy and who last changed it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    /// Counts every change from 1.
    pub version: u64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// `config`, or the officers (`approval:<requester>+<approver>` for a dual-control change).
    pub updated_by: String,
    /// The policy.
    pub policy: PolicyConfig,
}

/// The body last applied from the configuration for policy `id`, if any.
pub(crate) async fn config_body(db: &mut Transaction<'static, Any>, id: &str) -> Result<Option<String>, Error> {
    let row = sqlx::query("SELECT config_body FROM paymaster_policies WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **db)
        .await
        .map_err(Error::db("policy config"))?;
    row.map(|r| r.try_get::<Option<String>, _>("config_body"))
        .transpose()
        .map(Option::flatten)
        .map_err(Error::db("policy config"))
}

/// A policy's body as stored (and compared with the configuration's).
pub(crate) fn body(policy: &PolicyConfig) -> Result<String, Error> {
    serde_json::to_string(policy).map_err(|e| Error::Config(e.to_string()))
}

const COLUMNS: &str = "id, body, version, updated_at, updated_by";

/// Policy `id` as stored, locked for the rest of the write on PostgreSQL with `lock`.
pub(crate) async fn load(
    db: &mut Transaction<'static, Any>,
    id: &str,
    lock: bool,
) -> Result<Option<PolicyRecord>, Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM paymaster_policies WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **db).await.map_err(Error::db("policy"))?;
    row.as_ref().map(record).transpose().map(Option::flatten)
}

/// Every stored policy, by id.
pub(crate) async fn all(pool: &AnyPool) -> Result<Vec<PolicyRecord>, Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM paymaster_policies ORDER BY id"))
        .fetch_all(pool)
        .await
        .map_err(Error::db("policies"))?;
    Ok(rows.iter().map(record).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}

/// Writes `policy` as version `version`, changed by `by` (`config`: the configuration's version, also
/// remembered as the one last applied from it).
pub(crate) async fn store(
    db: &mut Transaction<'static, Any>,
    policy: &PolicyConfig,
    version: u64,
    by: &str,
) -> Result<PolicyRecord, Error> {
    let body = body(policy)?;
    let now = now_millis();
    let from_config = (by == CONFIG).then_some(body.as_str());
    sqlx::query(
        "INSERT INTO paymaster_policies (id, body, config_body, version, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET body = excluded.body, \
         config_body = COALESCE(excluded.config_body, paymaster_policies.config_body), version = excluded.version, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(&policy.id)
    .bind(&body)
    .bind(from_config)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(now)
    .bind(by)
    .execute(&mut **db)
    .await
    .map_err(Error::db("store policy"))?;
    Ok(PolicyRecord { version, updated_at: now, updated_by: by.to_owned(), policy: policy.clone() })
}

/// `updated_by` of a policy the configuration set.
pub(crate) const CONFIG: &str = "config";

/// A row with a body (one without is a lock row the configuration no longer names).
fn record(row: &sqlx::any::AnyRow) -> Result<Option<PolicyRecord>, Error> {
    let Some(body) = row.try_get::<Option<String>, _>("body").map_err(|_| Error::Corrupt("policy body"))? else {
        return Ok(None);
    };
    let policy = serde_json::from_str(&body).map_err(|_| Error::Corrupt("policy body"))?;
    let version: i64 = row.try_get("version").map_err(|_| Error::Corrupt("policy version"))?;
    Ok(Some(PolicyRecord {
        version: u64::try_from(version).unwrap_or(0),
        updated_at: row.try_get("updated_at").map_err(|_| Error::Corrupt("policy updated_at"))?,
        updated_by: row.try_get("updated_by").map_err(|_| Error::Corrupt("policy updated_by"))?,
        policy,
    }))
}

/// What `new` lets the policy sponsor beyond `old`, one line per limit raised or lifted (a new policy
/// is one): the changes that need a second officer. Other changes (lower limits, lists, the time
/// window) do not.
pub fn raises(old: Option<&PolicyConfig>, new: &PolicyConfig) -> Vec<String> {
    let Some(old) = old else { return vec![format!("a new policy {}", new.id)] };
    // The tightest cap of each (scope, reset) and measure; an operation limit has no reset.
    type Key = (Scope, Reset, &'static str);
    let caps = |limits: &[Limit]| {
        let mut caps: Vec<(Key, u64)> = Vec::new();
        for l in limits {
            let reset = if l.scope == Scope::Operation { Reset::Never } else { l.reset };
            for (measure, max) in [("gas", l.max_gas), ("operations", l.max_ops)] {
                let Some(max) = max else { continue };
                let key = (l.scope, reset, measure);
                match caps.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, cap)) => *cap = (*cap).min(max),
                    None => caps.push((key, max)),
                }
            }
        }
        caps
    };
    let after = caps(&new.limits);
    caps(&old.limits)
        .into_iter()
        .filter_map(|(key @ (scope, reset, measure), before)| {
            let now = after.iter().find(|(k, _)| *k == key).map(|(_, cap)| *cap);
            let shown = now.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
            (now.is_none_or(|n| n > before))
                .then(|| format!("{scope:?} {measure} ({reset:?} reset): {before} → {shown}").to_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(scope: Scope, max_gas: Option<u64>, max_ops: Option<u64>, reset: Reset) -> Limit {
        Limit { scope, max_gas, max_ops, reset }
    }

    #[test]
    fn raising_or_lifting_a_limit_is_a_raise_lowering_is_not() {
        let base = PolicyConfig {
            id: "p".into(),
            limits: vec![
                limit(Scope::Sender, None, Some(10), Reset::Daily),
                limit(Scope::Global, Some(1_000_000), None, Reset::Monthly),
            ],
            ..Default::default()
        };
        assert_eq!(raises(None, &base), ["a new policy p"]);
        assert!(raises(Some(&base), &base).is_empty());
        let mut lower = base.clone();
        lower.limits[0].max_ops = Some(5);
        lower.limits.push(limit(Scope::Operation, Some(500_000), None, Reset::Never));
        lower.senders_block.push(alloy::primitives::Address::repeat_byte(1));
        assert!(raises(Some(&base), &lower).is_empty(), "lower, a new limit, a blocked sender");
        let mut higher = base.clone();
        higher.limits[0].max_ops = Some(11);
        assert_eq!(raises(Some(&base), &higher), ["sender operations (daily reset): 10 → 11"]);
        let mut lifted = base.clone();
        lifted.limits.remove(1);
        assert_eq!(raises(Some(&base), &lifted), ["global gas (monthly reset): 1000000 → unlimited"]);
        let mut longer = base.clone();
        longer.limits[0].reset = Reset::Weekly;
        assert_eq!(raises(Some(&base), &longer).len(), 1, "a daily cap made weekly lets more through");
        let ten = limit(Scope::Sender, None, Some(10), Reset::Daily);
        let twenty = limit(Scope::Sender, None, Some(20), Reset::Daily);
        let two = PolicyConfig { limits: vec![ten, twenty], ..base };
        assert!(raises(Some(&two), &two).is_empty());
        let loosest = PolicyConfig { limits: vec![twenty], ..two.clone() };
        assert_eq!(raises(Some(&two), &loosest).len(), 1, "the tightest cap is the one that counts");
    }
}

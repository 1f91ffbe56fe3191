//! Dual control: a sensitive operation is requested by one officer, approved by another, then executed.
//!
//! ```text
//! request (officer A) ─► pending ─► approve (officer B ≠ A, before expires_at) ─► approved ─► executed | failed
//!                           └── past expires_at: expired (never approvable)
//! ```
//!
//! One row per request in `approvals`. Approval is one conditional UPDATE (`state = 'pending'`, another
//! officer, not expired), so two officers approving at once give one approval and one refusal. The
//! operation then runs in the background; an approved row not yet finished (the service stopped midway)
//! runs again at the next start, which every action here tolerates (KEK rotation resumes; a policy
//! change already stored is recognised).

use std::sync::Arc;

use custody_signer::Keyring;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AnyPool, Row};

use crate::audit::{Audit, Entry, now_millis};

/// How long a request waits for its second officer.
pub(crate) const EXPIRES_AFTER_MILLIS: i64 = 24 * 3600 * 1000;

/// What can be asked for under dual control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// A new KEK version, every wrapped key re-wrapped under it inside the HSM.
    KekRotate,
    /// A paymaster policy change that raises or lifts a limit (payload: the policy and the version it
    /// replaces).
    PolicyChange,
}

impl Action {
    const ALL: [Self; 2] = [Self::KekRotate, Self::PolicyChange];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::KekRotate => "kek.rotate",
            Self::PolicyChange => "policy.change",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// What approved operations run with.
#[derive(Clone, Debug)]
pub(crate) struct Executor {
    pub(crate) pool: AnyPool,
    pub(crate) keyring: Keyring,
    pub(crate) audit: Audit,
    pub(crate) paymaster: Option<Arc<custody_paymaster::Paymaster>>,
}

impl Executor {
    pub(crate) fn of(state: &crate::api::AppState) -> Self {
        Self {
            pool: state.pool.clone(),
            keyring: state.keyring.clone(),
            audit: state.audit.clone(),
            paymaster: state.paymaster.clone(),
        }
    }
}

/// A request and where it is.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Approval {
    pub(crate) id: String,
    /// `kek.rotate` or `policy.change`.
    pub(crate) action: String,
    /// What it acts on (`kek`, `policy:<id>`).
    pub(crate) target: String,
    /// What is asked for beyond the action (`policy.change`: `{policy, baseVersion, raises}`), for
    /// the approving officer to read.
    #[schema(value_type = Option<Object>)]
    pub(crate) payload: Option<Value>,
    /// `pending`, `expired`, `approved` (running), `executed` or `failed`.
    pub(crate) state: String,
    /// The requesting officer (`sub`).
    pub(crate) requested_by: String,
    /// Unix milliseconds.
    pub(crate) requested_at: i64,
    /// A pending request past this (Unix milliseconds) can no longer be approved.
    pub(crate) expires_at: i64,
    pub(crate) approved_by: Option<String>,
    pub(crate) approved_at: Option<i64>,
    /// What the operation did (executed) or why it failed.
    #[schema(value_type = Option<Object>)]
    pub(crate) result: Option<Value>,
    pub(crate) finished_at: Option<i64>,
}

/// Why an approval was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("no such approval request")]
    NotFound,
    #[error("the officer who requested an operation cannot approve it: a second officer must")]
    SelfApproval,
    #[error("the request was already {0}")]
    Decided(String),
    #[error("the request expired unapproved; request the operation again")]
    Expired,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, action, target, payload, state, requested_by, requested_at, expires_at, approved_by, \
                       approved_at, result, finished_at";

/// Records a request of `action` on `target` (with `payload`) by officer `by`.
pub(crate) async fn request(
    pool: &AnyPool,
    (action, target, payload): (Action, &str, Option<Value>),
    by: &str,
) -> Result<Approval, sqlx::Error> {
    let now = now_millis();
    let approval = Approval {
        id: hex::encode(rand::random::<[u8; 16]>()),
        action: action.as_str().to_owned(),
        target: target.to_owned(),
        payload,
        state: "pending".to_owned(),
        requested_by: by.to_owned(),
        requested_at: now,
        expires_at: now + EXPIRES_AFTER_MILLIS,
        approved_by: None,
        approved_at: None,
        result: None,
        finished_at: None,
    };
    sqlx::query(
        "INSERT INTO approvals (id, action, target, payload, state, requested_by, requested_at, expires_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
    )
    .bind(&approval.id)
    .bind(&approval.action)
    .bind(target)
    .bind(approval.payload.as_ref().map(Value::to_string))
    .bind(by)
    .bind(now)
    .bind(approval.expires_at)
    .execute(pool)
    .await?;
    Ok(approval)
}

/// One request, with `expired` for a pending one past its time.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Approval>, sqlx::Error> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1")).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// The latest requests first, at most `limit`, only those in `state` when given (`expired`: pending rows
/// past their time; `pending`: those still within it).
pub(crate) async fn list(pool: &AnyPool, state: Option<&str>, limit: i64) -> Result<Vec<Approval>, sqlx::Error> {
    let select = |condition: &str| {
        format!("SELECT {COLUMNS} FROM approvals WHERE {condition} ORDER BY requested_at DESC LIMIT $2")
    };
    let rows = match state {
        None => sqlx::query(&select("requested_at > $1")).bind(i64::MIN).bind(limit).fetch_all(pool).await?,
        Some(window @ ("pending" | "expired")) => {
            let condition = if window == "pending" { "expires_at >= $1" } else { "expires_at < $1" };
            let sql = select(&format!("state = 'pending' AND {condition}"));
            sqlx::query(&sql).bind(now_millis()).bind(limit).fetch_all(pool).await?
        }
        Some(other) => sqlx::query(&select("state = $1")).bind(other.to_owned()).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(from_row).collect()
}

/// Officer `by` approves request `id`: refused for the requester, a decided or an expired request.
pub(crate) async fn approve(pool: &AnyPool, id: &str, by: &str) -> Result<Approval, Refusal> {
    let now = now_millis();
    let done = sqlx::query(
        "UPDATE approvals SET state = 'approved', approved_by = $1, approved_at = $2 \
         WHERE id = $3 AND state = 'pending' AND requested_by <> $1 AND expires_at >= $2",
    )
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    let found = get(pool, id).await?.ok_or(Refusal::NotFound)?;
    if done.rows_affected() == 1 {
        return Ok(found);
    }
    Err(match found.state.as_str() {
        "expired" => Refusal::Expired,
        "pending" if found.requested_by == by => Refusal::SelfApproval,
        other => Refusal::Decided(other.to_owned()),
    })
}

/// Runs an approved request and records its outcome (in `approvals` and the audit trail).
pub(crate) async fn execute(run: Executor, approval: Approval) {
    let Executor { pool, keyring, audit, paymaster } = run;
    let actor = format!("approval:{}+{}", approval.requested_by, approval.approved_by.as_deref().unwrap_or("?"));
    let outcome = match Action::parse(&approval.action) {
        Some(Action::KekRotate) => keyring
            .rotate_kek()
            .await
            .map(|(version, rewrapped)| json!({"kekVersion": version, "rewrapped": rewrapped}))
            .map_err(|e| e.to_string()),
        Some(Action::PolicyChange) => change_policy(paymaster.as_deref(), approval.payload.as_ref(), &actor).await,
        None => Err(format!("unknown action {:?}", approval.action)),
    };
    let (state, result) = match &outcome {
        Ok(done) => ("executed", done.clone()),
        Err(why) => ("failed", json!({"error": why})),
    };
    let mut details = result.clone();
    details["approvalId"] = json!(approval.id);
    let details = details.to_string();
    let entry = Entry {
        actor: &actor,
        action: &approval.action,
        target: &approval.target,
        request_id: &approval.id,
        outcome: state,
        details: &details,
    };
    if let Err(e) = audit.append(&entry).await {
        tracing::error!(approval = %approval.id, error = %e, "the outcome of an approved operation was not audited");
    }
    let finished = sqlx::query("UPDATE approvals SET state = $1, result = $2, finished_at = $3 WHERE id = $4")
        .bind(state)
        .bind(result.to_string())
        .bind(now_millis())
        .bind(&approval.id)
        .execute(&pool)
        .await;
    match (finished, outcome) {
        (Err(e), _) => tracing::error!(approval = %approval.id, error = %e, "recording an approved operation's end"),
        (Ok(_), Err(why)) => tracing::error!(approval = %approval.id, error = %why, "an approved operation failed"),
        (Ok(_), Ok(_)) => tracing::info!(approval = %approval.id, action = %approval.action, "approved operation done"),
    }
}

/// Stores the approved policy if the policy is still at the version the request was made against (or
/// was already stored by this approval, before a restart).
async fn change_policy(
    paymaster: Option<&custody_paymaster::Paymaster>,
    payload: Option<&Value>,
    actor: &str,
) -> Result<Value, String> {
    let paymaster = paymaster.ok_or("no [paymaster] here")?;
    let payload = payload.ok_or("the request carries no policy")?;
    let policy: custody_paymaster::PolicyConfig =
        serde_json::from_value(payload["policy"].clone()).map_err(|e| format!("the requested policy: {e}"))?;
    let base = payload["baseVersion"].as_u64().ok_or("the request carries no baseVersion")?;
    let budget = paymaster.budget();
    match budget.put_policy(&policy, actor, Some(base)).await.map_err(|e| e.to_string())? {
        Ok(record) => Ok(json!({"policy": policy.id, "version": record.version})),
        Err(stale) => match budget.policy(&policy.id).await.map_err(|e| e.to_string())? {
            Some(stored) if stored.policy == policy && stored.updated_by == actor && stored.version == base + 1 => {
                Ok(json!({"policy": policy.id, "version": stored.version}))
            }
            _ => Err(format!(
                "the policy changed since the request (version {base}, now {}): request the change again",
                stale.current
            )),
        },
    }
}

/// Approved requests whose run did not finish (the service stopped midway): run them again.
pub(crate) async fn unfinished(pool: &AnyPool) -> Result<Vec<Approval>, sqlx::Error> {
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE state = 'approved'")).fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Approval, sqlx::Error> {
    let stored: String = row.try_get("state")?;
    let expires_at: i64 = row.try_get("expires_at")?;
    let state = if stored == "pending" && now_millis() > expires_at { "expired".to_owned() } else { stored };
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    let result: Option<String> = row.try_get("result")?;
    let payload: Option<String> = row.try_get("payload")?;
    Ok(Approval {
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        payload: json(payload),
        state,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
        expires_at,
        approved_by: row.try_get("approved_by")?,
        approved_at: row.try_get("approved_at")?,
        result: json(result),
        finished_at: row.try_get("finished_at")?,
    })
}

//! Intake: an activity, what the policy issues for it (`issuance_items`, the period counters) and its
//! outbox entry, stored in one transaction; idempotent per `(caller, key)`.

use std::sync::Arc;

use alloy::primitives::keccak256;
use custody_db::WriteGate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, AnyPool, Row, Transaction, any::AnyArguments, query::Query};
use tokio::sync::{mpsc, oneshot};

use super::{Store, now_millis};
use crate::{
    Error,
    item::ItemKind,
    policy::{MINT, Policy},
};

/// What the app backend reports (or asks for, with a direct mint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewActivity {
    /// The app's user id (kept in the database; never on-chain, never in a leaf).
    pub user_id: String,
    /// The activity type (`attendance`, `training_completed`, `milestone`, or anything else).
    pub kind: String,
    /// Free-form details (kept in the database only).
    pub payload: Value,
    /// When it happened, Unix seconds.
    pub occurred_at: i64,
}

/// An activity as the app sends it, over HTTP (`POST /activity/track`) or the activity stream.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackRequest {
    /// The app's user id.
    #[schema(value_type = custody_accounts::UserId)]
    pub user_id: String,
    /// The activity type (`attendance`, `training_completed`, `milestone`, or anything else).
    #[serde(rename = "type")]
    #[schema(
        pattern = "^[A-Za-z0-9.-][A-Za-z0-9_.-]{0,63}$",
        examples("attendance", "training_completed", "milestone")
    )]
    pub kind: String,
    /// Free-form details (kept in the database only, never on-chain).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Value,
    /// RFC 3339, e.g. `2026-01-05T08:00:00Z`; the time of receipt when absent.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
}

impl TrackRequest {
    /// The activity, `occurred_at` defaulting to `received_at` (Unix seconds), with the fingerprint of what
    /// was sent (the default time is not part of it, so a retry later replays). `None` if `occurred_at` is
    /// not an RFC 3339 time.
    pub(crate) fn into_activity(self, received_at: i64) -> Option<(NewActivity, String)> {
        let sent = self.occurred_at.as_deref().map(crate::time::parse_rfc3339);
        let occurred_at = match sent {
            None => received_at,
            Some(parsed) => parsed?,
        };
        let activity = NewActivity { user_id: self.user_id, kind: self.kind, payload: self.payload, occurred_at };
        let fingerprint = fingerprint(&activity, sent.flatten(), None);
        Some((activity, fingerprint))
    }
}

/// The answer of an intake call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The activity id (`0x` and 64 hex digits).
    pub id: String,
    /// `false` when the idempotency key was seen before with the same parameters (a replay).
    pub created: bool,
}

impl Store {
    /// Stores the activity, what the policy issues for it and its outbox entry, in one transaction (on
    /// SQLite, the intake writer's; on PostgreSQL, one statement's). The same `(caller, key)` with the same
    /// parameters returns the first activity; with others, a conflict.
    pub(crate) async fn track(&self, request: Intake) -> Result<Tracked, Error> {
        if let Some(writer) = &self.intake {
            let (reply, answer) = oneshot::channel();
            if writer.send((request, reply)).await.is_ok()
                && let Ok(tracked) = answer.await
            {
                return tracked;
            }
            return Err(Error::IntakeStopped);
        }
        if self.postgres {
            insert_postgres(&self.pool, &request).await
        } else {
            insert_alone(&self.pool, &request).await
        }
    }
}

/// An activity to store, with the policy that decides what it issues.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) policy: Arc<Policy>,
    pub(crate) caller: String,
    pub(crate) key: String,
    pub(crate) activity: NewActivity,
    /// A direct mint (`/mintToken`) instead of the policy's items.
    pub(crate) direct: Option<ItemKind>,
    /// The fingerprint of what the caller sent ([`fingerprint`]): the same key with another is a conflict.
    pub(crate) request_hash: String,
}

/// An activity waiting for the SQLite intake writer, with where its answer goes.
pub(super) type Queued = (Intake, oneshot::Sender<Result<Tracked, Error>>);

/// Activities the SQLite intake writer commits in one transaction at most.
pub(super) const MAX_GROUP: usize = 128;

/// The SQLite intake writer: whatever has queued is stored in one transaction (see [`insert_group`]: one
/// refused activity does not undo the others), after waiting its turn at the write gate. SQLite
/// has one writer; one transaction per activity made requests queue in its busy handler.
pub(super) async fn intake_writer(pool: AnyPool, gate: WriteGate, mut queue: mpsc::Receiver<Queued>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = queue.try_recv()
        {
            group.push(next);
        }
        let turn = gate.turn().await;
        match insert_group(&pool, &group).await {
            Ok(results) => {
                drop(turn);
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // The group's transaction failed as a whole: each activity on its own, for its own answer.
                tracing::warn!(error = %e, activities = group.len(), "intake group not committed; storing one by one");
                for (request, reply) in group {
                    let _ = reply.send(insert_alone(&pool, &request).await);
                }
                drop(turn);
            }
        }
    }
}

/// One activity in its own transaction.
async fn insert_alone(pool: &AnyPool, request: &Intake) -> Result<Tracked, Error> {
    let mut tx = pool.begin().await.map_err(Error::db("begin"))?;
    let tracked = insert(&mut tx, request).await?;
    tx.commit().await.map_err(Error::db("commit activity"))?;
    Ok(tracked)
}

/// The group in one transaction: first without savepoints (two statements fewer per activity); if an
/// activity fails there, other than by an idempotency conflict (which writes nothing), everything is rolled
/// back and written again with a savepoint per activity.
async fn insert_group(pool: &AnyPool, group: &[Queued]) -> Result<Vec<Result<Tracked, Error>>, Error> {
    if let Some(results) = insert_group_unguarded(pool, group).await? {
        return Ok(results);
    }
    let mut tx = pool.begin().await.map_err(Error::db("begin"))?;
    let mut results = Vec::with_capacity(group.len());
    for (request, _) in group {
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await.map_err(Error::db("savepoint"))?;
        match insert(&mut savepoint, request).await {
            Ok(tracked) => {
                savepoint.commit().await.map_err(Error::db("release savepoint"))?;
                results.push(Ok(tracked));
            }
            Err(e) => {
                savepoint.rollback().await.map_err(Error::db("rollback savepoint"))?;
                results.push(Err(e));
            }
        }
    }
    tx.commit().await.map_err(Error::db("commit activities"))?;
    Ok(results)
}

/// The group without savepoints; `None`, rolled back, as soon as an activity fails other than by an
/// idempotency conflict.
async fn insert_group_unguarded(
    pool: &AnyPool,
    group: &[Queued],
) -> Result<Option<Vec<Result<Tracked, Error>>>, Error> {
    let mut tx = pool.begin().await.map_err(Error::db("begin"))?;
    let mut results = Vec::with_capacity(group.len());
    for (request, _) in group {
        match insert(&mut tx, request).await {
            Ok(tracked) => results.push(Ok(tracked)),
            Err(Error::IdempotencyConflict) => results.push(Err(Error::IdempotencyConflict)),
            Err(e) => {
                tracing::debug!(error = %e, "an activity failed in its group; writing the group with savepoints");
                return Ok(None); // the transaction rolls back as it drops
            }
        }
    }
    tx.commit().await.map_err(Error::db("commit activities"))?;
    Ok(Some(results))
}

/// A row of `issuance_items` an activity writes if the period count after it reaches `from_count`.
#[derive(Debug, Serialize)]
struct Item {
    kind: &'static str,
    amount: Option<String>,
    badge_id: Option<String>,
    /// A badge's user and id: the unique key that keeps it to one per user.
    once_key: Option<String>,
    from_count: i64,
}

/// The period counter `r` advances (none for direct mints).
fn period(r: &Intake) -> Option<String> {
    r.direct.is_none().then(|| Policy::counter(&r.activity.kind, r.activity.occurred_at)).flatten()
}

/// What `r` may issue (a direct mint, or the policy's items).
fn items(r: &Intake) -> Vec<Item> {
    let awards = match &r.direct {
        Some(direct) => vec![(direct.clone(), 0)],
        None => r.policy.awards(&r.activity.kind, &r.activity.payload, r.activity.occurred_at),
    };
    let item = |(kind, from): (ItemKind, u64)| {
        let once_key = match &kind {
            ItemKind::Badge(b) => Some(keccak256(format!("{}\0{b}", r.activity.user_id)).to_string()),
            _ => None,
        };
        let (amount, badge_id) = kind.columns();
        Item { kind: kind.as_str(), amount, badge_id, once_key, from_count: i64::try_from(from).unwrap_or(i64::MAX) }
    };
    awards.into_iter().map(item).collect()
}

/// The activity's row, `$1`–`$9` as [`bind_activity`] binds them; a replayed key writes nothing.
macro_rules! insert_activity {
    () => {
        "INSERT INTO issuance_activities (id, caller, idempotency_key, request_hash, user_id, kind, payload, \
         occurred_at, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9) \
         ON CONFLICT (caller, idempotency_key) DO NOTHING"
    };
}

/// Binds `$1`–`$9` of `insert_activity!`: the activity `r` under the new `id`.
fn bind_activity<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    r: &'q Intake,
    id: String,
    request_hash: &'q str,
) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(id)
        .bind(&r.caller)
        .bind(&r.key)
        .bind(request_hash)
        .bind(&r.activity.user_id)
        .bind(&r.activity.kind)
        .bind(r.activity.payload.to_string())
        .bind(r.activity.occurred_at)
        .bind(now_millis())
}

/// Writes one activity (or finds its replay) inside `conn`'s transaction.
async fn insert(conn: &mut Transaction<'_, Any>, r: &Intake) -> Result<Tracked, Error> {
    let conn = &mut **conn;
    let request_hash = r.request_hash.as_str();
    let id = new_id();
    // A write first, so that SQLite takes the write lock at once (no read-then-upgrade deadlock).
    let inserted = bind_activity(sqlx::query(insert_activity!()), r, id.clone(), request_hash)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("insert activity"))?
        .rows_affected();
    if inserted == 0 {
        return replay(&mut *conn, r, request_hash).await;
    }
    let mut count = 0;
    if let Some(period) = period(r) {
        let row = sqlx::query(
            "INSERT INTO issuance_counters (user_id, period, count) VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, period) DO UPDATE SET count = issuance_counters.count + 1 \
             RETURNING count",
        )
        .bind(&r.activity.user_id)
        .bind(&period)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("count"))?;
        count = row.try_get::<i64, _>("count").map_err(Error::db("decode count"))?;
    }
    for item in items(r).into_iter().filter(|i| count >= i.from_count) {
        sqlx::query(
            "INSERT INTO issuance_items (activity_id, kind, amount, badge_id, once_key) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (once_key) DO NOTHING",
        )
        .bind(&id)
        .bind(item.kind)
        .bind(item.amount)
        .bind(item.badge_id)
        .bind(item.once_key)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("insert item"))?;
    }
    sqlx::query("INSERT INTO issuance_outbox (activity_id) VALUES ($1)")
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map_err(Error::db("insert outbox"))?;
    Ok(Tracked { id, created: true })
}

/// PostgreSQL: [`insert`] as one statement, so one round trip and no transaction block. Its data-modifying
/// `WITH` parts run in one snapshot and commit together; the items are filtered by the counter's
/// `RETURNING` value, as [`insert`] filters them by its own.
async fn insert_postgres(pool: &AnyPool, r: &Intake) -> Result<Tracked, Error> {
    let request_hash = r.request_hash.as_str();
    let items = serde_json::to_string(&items(r)).map_err(|_| Error::CorruptRow("issuance_items"))?;
    let sql = concat!(
        "WITH activity AS (",
        insert_activity!(),
        " RETURNING id \
         ), counter AS ( \
           INSERT INTO issuance_counters (user_id, period, count) SELECT $5, $10::text, 1 FROM activity \
           WHERE $10::text IS NOT NULL \
           ON CONFLICT (user_id, period) DO UPDATE SET count = issuance_counters.count + 1 RETURNING count \
         ), items AS ( \
           INSERT INTO issuance_items (activity_id, kind, amount, badge_id, once_key) \
           SELECT activity.id, x.kind, x.amount, x.badge_id, x.once_key FROM activity, ROWS FROM ( \
             json_to_recordset($11::json) AS (kind text, amount text, badge_id text, once_key text, from_count bigint) \
           ) WITH ORDINALITY AS x (kind, amount, badge_id, once_key, from_count, n) \
           WHERE x.from_count <= COALESCE((SELECT count FROM counter), 0) ORDER BY x.n \
           ON CONFLICT (once_key) DO NOTHING \
         ), outbox AS ( \
           INSERT INTO issuance_outbox (activity_id) SELECT id FROM activity \
         ) SELECT id FROM activity"
    );
    let row = bind_activity(sqlx::query(sql), r, new_id(), request_hash)
        .bind(period(r))
        .bind(items)
        .fetch_optional(pool)
        .await
        .map_err(Error::db("insert activity"))?;
    match row {
        Some(row) => Ok(Tracked { id: row.try_get("id").map_err(Error::db("decode activity"))?, created: true }),
        None => replay(&mut *pool.acquire().await.map_err(Error::db("connect"))?, r, request_hash).await,
    }
}

/// The activity already stored under `r`'s key: the same one if its parameters match, else a conflict.
async fn replay(conn: &mut sqlx::AnyConnection, r: &Intake, request_hash: &str) -> Result<Tracked, Error> {
    let row =
        sqlx::query("SELECT id, request_hash FROM issuance_activities WHERE caller = $1 AND idempotency_key = $2")
            .bind(&r.caller)
            .bind(&r.key)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("select replay"))?;
    let stored: String = row.try_get("request_hash").map_err(Error::db("decode replay"))?;
    if stored != request_hash {
        return Err(Error::IdempotencyConflict);
    }
    Ok(Tracked { id: row.try_get("id").map_err(Error::db("decode replay"))?, created: false })
}

/// A new activity id: 32 random bytes, hex.
fn new_id() -> String {
    format!("0x{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The fingerprint of an intake call: what the caller sent and nothing else (`occurred_at` only when the
/// caller gave it, never a server clock), so the same key and body replays at any later time.
pub(crate) fn fingerprint(activity: &NewActivity, occurred_at_sent: Option<i64>, direct: Option<&ItemKind>) -> String {
    let canonical = serde_json::json!({
        "user_id": activity.user_id,
        "type": activity.kind,
        "payload": activity.payload,
        "occurred_at": occurred_at_sent,
        "direct": direct.map(ItemKind::fingerprint),
    });
    keccak256(canonical.to_string()).to_string()
}

/// Whether `kind` may come through intake (the internal mint type may not, nor any `_` type).
pub(crate) fn intake_kind_ok(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && !kind.starts_with('_')
        && kind != MINT
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

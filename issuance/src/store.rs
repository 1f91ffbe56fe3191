//! Intake and reads over the issuance tables (SQLite or PostgreSQL through sqlx `Any`).

use std::sync::Arc;

use alloy::primitives::keccak256;
use custody_db::{Dialect, WriteGate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, AnyPool, Row, Transaction, any::AnyArguments, query::Query};
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};

use crate::{
    Error,
    policy::{Award, BURN, MINT, Policy},
};

/// What the app backend reports (or asks for, with a direct mint or burn).
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

/// One issued item as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedItem {
    /// `token`, `badge`, `burn` or `log`.
    pub kind: String,
    /// PTKN base units (10^-18), for `token` and `burn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The PBADGE id, for `badge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge_id: Option<String>,
    /// The transaction that carries it, once signed.
    pub tx_hash: Option<String>,
}

/// An activity as `GET /activity/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityView {
    /// The activity id.
    pub id: String,
    /// `queued`, `batched`, `submitted`, `confirmed` or `failed`.
    pub status: String,
    /// The activity type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The transaction that carries its items (the anchor if it issues nothing), once submitted.
    pub tx_hash: Option<String>,
    /// That transaction's block, once mined.
    pub block_number: Option<u64>,
    /// The PLOG batch id.
    pub batch_id: Option<String>,
    /// The batch's merkle root.
    pub merkle_root: Option<String>,
    /// The activity's leaf.
    pub leaf: Option<String>,
    /// The leaf's merkle proof.
    pub proof: Option<Vec<String>>,
    /// What it issues.
    pub issued: Vec<IssuedItem>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One activity in a user's history (`GET /v1/wallets/{user_id}/activities`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySummary {
    /// The activity id (`GET /activity/{id}` has the proof and the items).
    pub id: String,
    /// The activity type (`_mint` and `_burn` for direct mints and burns).
    #[serde(rename = "type")]
    pub kind: String,
    /// `queued`, `batched`, `submitted`, `confirmed` or `failed`.
    pub status: String,
    /// When it happened (RFC 3339, UTC).
    pub occurred_at: String,
    /// The transaction that carries it, once submitted.
    pub tx_hash: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Which of a user's activities to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Only this type.
    pub kind: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Continue after this cursor (a page's `next_cursor`).
    pub after: Option<ActivityCursor>,
    /// Most activities on the page.
    pub limit: u32,
}

/// Where a page of a user's activities ended: the last activity's creation time and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityCursor {
    created_at: i64,
    id: String,
}

impl std::str::FromStr for ActivityCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = Error::Invalid("cursor is not one this API gave");
        let (created_at, id) = s.split_once('.').ok_or(Error::Invalid("cursor is not one this API gave"))?;
        let id_ok = custody_db::is_hex32(id);
        match created_at.parse() {
            Ok(created_at) if id_ok => Ok(Self { created_at, id: id.to_owned() }),
            _ => Err(invalid),
        }
    }
}

impl std::fmt::Display for ActivityCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

/// The transaction that carries an activity (its items', else its batch's anchor), as SQL over `a`.
const CARRIER_SQL: &str = "COALESCE(\
     (SELECT t.tx_hash FROM issuance_items i JOIN issuance_txs t ON t.id = i.tx_id \
      WHERE i.activity_id = a.id AND t.status IN ('submitted', 'mined') ORDER BY i.id LIMIT 1), \
     (SELECT t.tx_hash FROM issuance_txs t WHERE t.batch_id = a.batch_id AND t.ordinal = 0 \
      AND t.status IN ('submitted', 'mined')))";

/// The issuance tables.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) postgres: bool,
    /// The database's write gate.
    write_gate: WriteGate,
    /// SQLite: the intake writer's queue (see [`intake_writer`]).
    intake: Option<mpsc::Sender<Queued>>,
}

pub(crate) use custody_db::now_millis;

/// PTKN base units of `whole` tokens (18 decimals), as stored (decimal text).
pub(crate) fn base_units(whole: u64) -> String {
    use alloy::primitives::U256;
    custody_db::encode_u256(U256::from(whole) * U256::from(10u64).pow(U256::from(18)))
}

impl Store {
    /// Opens the store on `pool` and applies this crate's migrations (others' are left alone).
    pub(crate) async fn open(pool: AnyPool) -> Result<Self, Error> {
        let postgres = Dialect::of(&pool).is_postgres();
        custody_db::migrate(&pool, sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
            .await?;
        let write_gate = WriteGate::of(&pool);
        let intake = write_gate.takes_turns().then(|| {
            let (queue, requests) = mpsc::channel(4 * MAX_GROUP);
            tokio::spawn(intake_writer(pool.clone(), write_gate.clone(), requests));
            queue
        });
        Ok(Self { pool, postgres, write_gate, intake })
    }

    /// Begins a write transaction, on SQLite after waiting its turn at the write gate (the guard
    /// returned with the transaction; keep it until the commit).
    pub(crate) async fn begin_write(
        &self,
        what: &'static str,
    ) -> Result<(Option<OwnedMutexGuard<()>>, Transaction<'static, Any>), Error> {
        let turn = self.write_gate.turn().await;
        Ok((turn, self.pool.begin().await.map_err(Error::db(what))?))
    }

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

    /// A page of `user_id`'s activities, newest first, and the cursor of the next page (if there may be one).
    pub(crate) async fn activities_of(
        &self,
        user_id: &str,
        query: &ActivityQuery,
    ) -> Result<(Vec<ActivitySummary>, Option<ActivityCursor>), Error> {
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        let mut filters = String::new();
        if query.kind.is_some() {
            filters.push_str(&format!(" AND a.kind = ${}", next()));
        }
        if query.status.is_some() {
            filters.push_str(&format!(" AND a.status = ${}", next()));
        }
        if query.after.is_some() {
            let (created, id) = (next(), next());
            filters
                .push_str(&format!(" AND (a.created_at < ${created} OR (a.created_at = ${created} AND a.id < ${id}))"));
        }
        let sql = format!(
            "SELECT a.id, a.kind, a.status, a.occurred_at, a.error, a.created_at, {CARRIER_SQL} AS tx_hash \
             FROM issuance_activities a WHERE a.user_id = $1{filters} ORDER BY a.created_at DESC, a.id DESC LIMIT ${}",
            next()
        );
        let mut q = sqlx::query(&sql).bind(user_id);
        for value in [&query.kind, &query.status].into_iter().flatten() {
            q = q.bind(value);
        }
        if let Some(after) = &query.after {
            q = q.bind(after.created_at).bind(&after.id);
        }
        let rows = q.bind(i64::from(query.limit)).fetch_all(&self.pool).await.map_err(Error::db("list activities"))?;
        let mut page = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in &rows {
            let text = |col: &'static str| row.try_get::<Option<String>, _>(col).map_err(Error::db("decode activity"));
            let int = |col: &'static str| row.try_get::<i64, _>(col).map_err(Error::db("decode activity"));
            let id = text("id")?.unwrap_or_default();
            last = Some(ActivityCursor { created_at: int("created_at")?, id: id.clone() });
            page.push(ActivitySummary {
                id,
                kind: text("kind")?.unwrap_or_default(),
                status: text("status")?.unwrap_or_default(),
                occurred_at: crate::time::format_rfc3339(int("occurred_at")?),
                tx_hash: text("tx_hash")?,
                error: text("error")?,
            });
        }
        let full = u32::try_from(page.len()).is_ok_and(|len| len == query.limit);
        Ok((page, last.filter(|_| full)))
    }

    /// The activity `id` as the API shows it.
    pub(crate) async fn view(&self, id: &str) -> Result<Option<ActivityView>, Error> {
        let row = sqlx::query(
            "SELECT a.id, a.status, a.kind, a.batch_id, a.leaf, a.proof, a.error, b.root FROM issuance_activities a \
             LEFT JOIN issuance_batches b ON b.id = a.batch_id WHERE a.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::db("select activity"))?;
        let Some(row) = row else { return Ok(None) };
        let text = |col: &'static str| row.try_get::<Option<String>, _>(col).map_err(Error::db("decode activity"));
        let proof = text("proof")?
            .map(|p| {
                serde_json::from_str::<Vec<String>>(&p).map_err(|_| Error::CorruptRow("issuance_activities.proof"))
            })
            .transpose()?;
        let items = sqlx::query(
            "SELECT i.kind, i.amount, i.badge_id, t.tx_hash, t.status, t.block_number FROM issuance_items i \
             LEFT JOIN issuance_txs t ON t.id = i.tx_id WHERE i.activity_id = $1 ORDER BY i.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::db("select items"))?;
        let mut issued = Vec::new();
        let mut carrier: Option<(Option<String>, Option<i64>)> = None;
        for item in &items {
            let get = |col: &'static str| item.try_get::<Option<String>, _>(col).map_err(Error::db("decode item"));
            let status = get("status")?;
            let sent = matches!(status.as_deref(), Some("submitted" | "mined"));
            let tx_hash = get("tx_hash")?.filter(|_| sent);
            let block: Option<i64> = item.try_get("block_number").map_err(Error::db("decode item"))?;
            if carrier.is_none() && tx_hash.is_some() {
                carrier = Some((tx_hash.clone(), block));
            }
            issued.push(IssuedItem {
                kind: get("kind")?.unwrap_or_default(),
                amount: get("amount")?,
                badge_id: get("badge_id")?,
                tx_hash,
            });
        }
        let batch_id = text("batch_id")?;
        if carrier.is_none()
            && let Some(batch) = &batch_id
        {
            let anchor = sqlx::query(
                "SELECT tx_hash, block_number FROM issuance_txs WHERE batch_id = $1 AND ordinal = 0 \
                 AND status IN ('submitted', 'mined')",
            )
            .bind(batch)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::db("select anchor"))?;
            if let Some(anchor) = anchor {
                carrier = Some((
                    anchor.try_get("tx_hash").map_err(Error::db("decode anchor"))?,
                    anchor.try_get("block_number").map_err(Error::db("decode anchor"))?,
                ));
            }
        }
        let (tx_hash, block) = carrier.unwrap_or_default();
        Ok(Some(ActivityView {
            id: text("id")?.unwrap_or_default(),
            status: text("status")?.unwrap_or_default(),
            kind: text("kind")?.unwrap_or_default(),
            tx_hash,
            block_number: block.and_then(|b| u64::try_from(b).ok()),
            batch_id,
            merkle_root: text("root")?,
            leaf: text("leaf")?,
            proof,
            issued,
            error: text("error")?,
        }))
    }
}

/// An activity to store, with the policy that decides what it issues.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) policy: Arc<Policy>,
    pub(crate) caller: String,
    pub(crate) key: String,
    pub(crate) activity: NewActivity,
    /// A direct award (`/mintToken`, burns) instead of the policy's.
    pub(crate) direct: Option<Award>,
    /// The fingerprint of what the caller sent ([`fingerprint`]): the same key with another is a conflict.
    pub(crate) request_hash: String,
}

/// An activity waiting for the SQLite intake writer, with where its answer goes.
type Queued = (Intake, oneshot::Sender<Result<Tracked, Error>>);

/// Activities the SQLite intake writer commits in one transaction at most.
const MAX_GROUP: usize = 128;

/// The SQLite intake writer: whatever has queued is stored in one transaction (see [`insert_group`]: one
/// refused activity does not undo the others), after waiting its turn at the write gate. SQLite
/// has one writer; one transaction per activity made requests queue in its busy handler.
async fn intake_writer(pool: AnyPool, gate: WriteGate, mut queue: mpsc::Receiver<Queued>) {
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

/// The period counter `r` advances (none for direct awards).
fn period(r: &Intake) -> Option<String> {
    r.direct.is_none().then(|| Policy::counter(&r.activity.kind, r.activity.occurred_at)).flatten()
}

/// What `r` may issue (a direct award, or the policy's).
fn items(r: &Intake) -> Vec<Item> {
    let awards = match &r.direct {
        Some(award) => vec![(award.clone(), 0)],
        None => r.policy.awards(&r.activity.kind, &r.activity.payload, r.activity.occurred_at),
    };
    let item = |(award, from): (Award, u64)| {
        let (kind, amount, badge_id, once_key) = match award {
            Award::Token(n) => ("token", Some(base_units(n)), None, None),
            Award::Burn(n) => ("burn", Some(base_units(n)), None, None),
            Award::Badge(b) => {
                let once = keccak256(format!("{}\0{b}", r.activity.user_id)).to_string();
                ("badge", None, Some(b.to_string()), Some(once))
            }
            Award::Log => ("log", None, None, None),
        };
        Item { kind, amount, badge_id, once_key, from_count: i64::try_from(from).unwrap_or(i64::MAX) }
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
pub(crate) fn fingerprint(activity: &NewActivity, occurred_at_sent: Option<i64>, direct: Option<&Award>) -> String {
    let canonical = serde_json::json!({
        "user_id": activity.user_id,
        "type": activity.kind,
        "payload": activity.payload,
        "occurred_at": occurred_at_sent,
        "direct": direct.map(|d| format!("{d:?}")),
    });
    keccak256(canonical.to_string()).to_string()
}

/// Whether `kind` may come through intake (the internal mint and burn types may not).
pub(crate) fn intake_kind_ok(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && !kind.starts_with('_')
        && kind != MINT
        && kind != BURN
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

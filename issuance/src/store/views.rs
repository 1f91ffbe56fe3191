//! Reads of activities as the API shows them (one activity with its proof and items, a user's history)
//! and the mirror's totals for the benchmarks.

use serde::Serialize;
use sqlx::Row;

use super::Store;
use crate::{Error, item::ItemKind};

/// One issued item as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedItem {
    /// `token`, `badge` or `log`.
    pub kind: String,
    /// PTKN base units (10^-18), for `token`.
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
    /// When it happened, Unix seconds: the integer its leaf commits to. On-chain,
    /// `PLOG.verifyActivity(batchId, proof, id, type, occurredAt)` checks the activity from its values.
    pub occurred_at: u64,
}

/// One activity in a user's history (`GET /v1/wallets/{user_id}/activities`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySummary {
    /// The activity id (`GET /activity/{id}` has the proof and the items).
    pub id: String,
    /// The activity type (`_mint` for direct mints).
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

/// An activity's status and when it last changed (`custody bench activity` follows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityStatus {
    /// The activity id.
    pub id: String,
    /// `queued`, `batched`, `submitted`, `confirmed` or `failed`.
    pub status: String,
    /// When the status last changed, Unix milliseconds (the database's clock).
    pub updated_at: i64,
}

/// What the mirror has planned and sent, for the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorTotals {
    /// Merkle batches planned.
    pub batches: u64,
    /// Calls mined (anchors included).
    pub mined_calls: u64,
    /// Gas used by the mined calls.
    pub gas_used: u64,
    /// PTKN mints assigned to a call.
    pub token_items_sent: u64,
}

impl Store {
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
            "SELECT a.id, a.status, a.kind, a.occurred_at, a.batch_id, a.leaf, a.proof, a.error, b.root \
             FROM issuance_activities a \
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
            let kind = get("kind")?.unwrap_or_default();
            let kind = ItemKind::from_row(&kind, get("amount")?.as_deref(), get("badge_id")?.as_deref())?;
            let (amount, badge_id) = kind.columns();
            issued.push(IssuedItem { kind: kind.as_str().to_owned(), amount, badge_id, tx_hash });
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
            occurred_at: row
                .try_get::<i64, _>("occurred_at")
                .map_err(Error::db("decode activity"))?
                .try_into()
                .unwrap_or(0),
            leaf: text("leaf")?,
            proof,
            issued,
            error: text("error")?,
        }))
    }

    /// Every activity's status.
    pub(crate) async fn statuses(&self) -> Result<Vec<ActivityStatus>, Error> {
        let rows = sqlx::query("SELECT id, status, updated_at FROM issuance_activities")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::db("select statuses"))?;
        rows.iter()
            .map(|row| {
                Ok(ActivityStatus {
                    id: row.try_get("id")?,
                    status: row.try_get("status")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::db("decode statuses"))
    }

    /// The mirror's totals.
    pub(crate) async fn totals(&self) -> Result<MirrorTotals, Error> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM issuance_batches) AS batches, \
             (SELECT COUNT(*) FROM issuance_txs WHERE status = 'mined') AS mined_calls, \
             (SELECT CAST(COALESCE(SUM(gas_used), 0) AS BIGINT) FROM issuance_txs WHERE status = 'mined') AS gas, \
             (SELECT COUNT(*) FROM issuance_items WHERE kind = 'token' AND tx_id IS NOT NULL) AS tokens",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(Error::db("select totals"))?;
        let count = |col: &'static str| -> Result<u64, Error> {
            let n: i64 = row.try_get(col).map_err(Error::db("decode totals"))?;
            u64::try_from(n).map_err(|_| Error::CorruptRow("issuance totals"))
        };
        Ok(MirrorTotals {
            batches: count("batches")?,
            mined_calls: count("mined_calls")?,
            gas_used: count("gas")?,
            token_items_sent: count("tokens")?,
        })
    }
}

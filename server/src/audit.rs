//! The audit trail: an append-only, hash-chained table.
//!
//! ```text
//! entry n: hash_n = SHA-256(hash_{n-1} ‖ JSON[seq, at, actor, action, target, request_id, outcome(, details)])
//! ```
//! (`details`, the JSON of an amount, an activity id or a refusal code, is hashed when it is not empty;
//! entries from before it existed verify unchanged). The table is append-only: triggers refuse UPDATE and
//! DELETE.
//!
//! Editing, deleting or reordering any entry breaks the chain at that entry,
//! which [`Audit::verify`] names. Appends go through one writer task per
//! process, which commits whatever has queued up in one transaction (group
//! commit); writers in other processes or replicas race on the sequence number
//! (the primary key), and the loser retries its whole batch.

use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry, as the caller describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Entry<'a> {
    /// Who: the authenticated subject and role, or `cli`.
    pub(crate) actor: &'a str,
    /// What: e.g. `wallet.create`, `key.create`.
    pub(crate) action: &'a str,
    /// On what: a key id, DID or address (never a raw user id).
    pub(crate) target: &'a str,
    /// The request id.
    pub(crate) request_id: &'a str,
    /// `ok`, `denied`, `error`, …
    pub(crate) outcome: &'a str,
    /// JSON about the entry (amount, activity id, refusal code), or empty.
    pub(crate) details: &'a str,
}

/// A stored entry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Stored {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) request_id: String,
    pub(crate) outcome: String,
    /// The entry's details (amount, activity id, refusal code), if any.
    #[schema(value_type = Option<Object>)]
    pub(crate) details: Option<serde_json::Value>,
    /// The details as stored (what the hash covers).
    #[serde(skip)]
    pub(crate) details_text: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Which entries a page holds (every field optional; all given must match).
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) target: Option<String>,
    /// At or after this time (Unix milliseconds).
    pub(crate) since: Option<i64>,
    /// Before this time (Unix milliseconds).
    pub(crate) until: Option<i64>,
}

/// Why the chain does not verify.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    /// The database failed.
    #[error("audit log: {0}")]
    Db(#[from] sqlx::Error),
    /// The chain is broken at `seq`.
    #[error("audit chain broken at entry {seq}: {reason}")]
    Broken {
        /// The first entry that does not verify.
        seq: i64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Appends kept colliding.
    #[error("audit log: could not append after {0} attempts")]
    Contention(u32),
    /// The batch this entry was in was not written.
    #[error("audit log: {0}")]
    NotWritten(String),
}

/// Entries one transaction takes at most.
const MAX_BATCH: usize = 256;

/// Attempts at a batch that collides with another writer.
const ATTEMPTS: u32 = 32;

/// Actions whose completion calls for a checkpoint at once (not at the next interval): what changes who
/// holds or can use a key, a DID or a policy.
const SENSITIVE: [&str; 6] = ["did.", "key.", "kek.", "owner.", "export.", "policy."];

/// Whether `action` ending in `outcome` is a sensitive operation done (asked for or refused is not).
fn is_sensitive(action: &str, outcome: &str) -> bool {
    SENSITIVE.iter().any(|prefix| action.starts_with(prefix)) && !matches!(outcome, "requested" | "refused")
}

/// The audit trail on the service database.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pool: AnyPool,
    writer: mpsc::Sender<Pending>,
    /// Notified after a sensitive operation is recorded (the checkpointer waits on it).
    sensitive: std::sync::Arc<tokio::sync::Notify>,
}

/// An entry waiting for the writer, and where its sequence number goes.
#[derive(Debug)]
struct Pending {
    entry: [String; 6],
    reply: oneshot::Sender<Result<i64, AuditError>>,
}

pub(crate) fn entry_hash(prev: &str, seq: i64, at: i64, e: &Entry<'_>) -> String {
    let mut body = serde_json::json!([seq, at, e.actor, e.action, e.target, e.request_id, e.outcome]);
    if !e.details.is_empty()
        && let Some(fields) = body.as_array_mut()
    {
        fields.push(serde_json::Value::from(e.details));
    }
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(body.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

impl Audit {
    /// The trail on `pool`, with its writer task (it ends when the last clone is dropped).
    pub(crate) fn new(pool: AnyPool) -> Self {
        let (writer, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(pool.clone(), queue));
        Self { pool, writer, sensitive: std::sync::Arc::default() }
    }

    /// Notified once a sensitive operation (a DID, key, KEK, owner, export or policy change) is recorded.
    pub(crate) fn sensitive(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.sensitive.clone()
    }

    /// Appends an entry; an error means it was not written (and the caller must refuse the operation).
    pub(crate) async fn append(&self, entry: &Entry<'_>) -> Result<i64, AuditError> {
        let owned = [entry.actor, entry.action, entry.target, entry.request_id, entry.outcome, entry.details]
            .map(str::to_owned);
        let (reply, answer) = oneshot::channel();
        let gone = || AuditError::NotWritten("the audit writer stopped".to_owned());
        self.writer.send(Pending { entry: owned, reply }).await.map_err(|_| gone())?;
        let seq = answer.await.map_err(|_| gone())??;
        if is_sensitive(entry.action, entry.outcome) {
            self.sensitive.notify_one();
        }
        Ok(seq)
    }

    /// Recomputes the whole chain; the number of entries, or the first broken one.
    pub(crate) async fn verify(&self) -> Result<i64, AuditError> {
        let mut prev = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut after = 0i64;
        loop {
            let page = self.page(&Filter::default(), after, 1000).await?;
            if page.is_empty() {
                return Ok(expected_seq - 1);
            }
            for row in page {
                let broken = |reason| AuditError::Broken { seq: row.seq, reason };
                if row.seq != expected_seq {
                    return Err(AuditError::Broken { seq: expected_seq, reason: "entry missing" });
                }
                if row.prev_hash != prev {
                    return Err(broken("previous hash does not match"));
                }
                let entry = Entry {
                    actor: &row.actor,
                    action: &row.action,
                    target: &row.target,
                    request_id: &row.request_id,
                    outcome: &row.outcome,
                    details: &row.details_text,
                };
                if entry_hash(&prev, row.seq, row.at, &entry) != row.hash {
                    return Err(broken("contents do not match the hash"));
                }
                prev = row.hash;
                expected_seq += 1;
                after = row.seq;
            }
        }
    }

    /// Up to `limit` entries matching `filter` after sequence number `after`, oldest first.
    pub(crate) async fn page(&self, filter: &Filter, after: i64, limit: i64) -> Result<Vec<Stored>, AuditError> {
        let mut sql = "SELECT seq, at, actor, action, target, request_id, outcome, details, prev_hash, hash \
                       FROM audit_log WHERE seq > $1"
            .to_owned();
        let mut n = 1;
        let texts = [("actor", &filter.actor), ("action", &filter.action), ("target", &filter.target)];
        for (column, value) in texts {
            if value.is_some() {
                n += 1;
                sql.push_str(&format!(" AND {column} = ${n}"));
            }
        }
        for (op, value) in [(">=", filter.since), ("<", filter.until)] {
            if value.is_some() {
                n += 1;
                sql.push_str(&format!(" AND at {op} ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql).bind(after);
        for value in texts.into_iter().filter_map(|(_, v)| v.as_deref()) {
            query = query.bind(value);
        }
        for value in [filter.since, filter.until].into_iter().flatten() {
            query = query.bind(value);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(Stored {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    request_id: r.try_get("request_id")?,
                    outcome: r.try_get("outcome")?,
                    // A non-JSON text (only an edit could put one there) shows as a string.
                    details: (!details.is_empty()).then(|| {
                        serde_json::from_str(&details).unwrap_or_else(|_| serde_json::Value::String(details.clone()))
                    }),
                    details_text: details,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AuditError::from)
    }
}

pub(crate) use custody_db::now_millis;

/// Takes whatever has queued up (at most [`MAX_BATCH`]) and commits it in one transaction.
async fn write_loop(pool: AnyPool, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("custody_audit_batch_entries").record(batch.len() as f64);
        match write_batch(&pool, &batch).await {
            Ok(seqs) => {
                for (pending, seq) in batch.drain(..).zip(seqs) {
                    let _ = pending.reply.send(Ok(seq));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(AuditError::NotWritten(message.clone())));
                }
            }
        }
    }
}

/// Writes `batch` after the current last entry, in one transaction; retried whole when another
/// writer took a sequence number first (or the database was busy).
async fn write_batch(pool: &AnyPool, batch: &[Pending]) -> Result<Vec<i64>, AuditError> {
    for attempt in 0..ATTEMPTS {
        match try_write_batch(pool, batch).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() || is_busy(e.code().as_deref()) => {
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt.min(10)))).await;
            }
            result => return result.map_err(AuditError::Db),
        }
    }
    Err(AuditError::Contention(ATTEMPTS))
}

/// SQLite busy or locked (plain and extended codes), PostgreSQL serialization failure.
fn is_busy(code: Option<&str>) -> bool {
    matches!(code, Some("5" | "6" | "261" | "262" | "517" | "40001"))
}

async fn try_write_batch(pool: &AnyPool, batch: &[Pending]) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let last =
        sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx).await?;
    let (mut seq, mut prev) = match last {
        Some(row) => (row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?),
        None => (0, GENESIS.to_owned()),
    };
    let at = now_millis();
    let mut rows = Vec::with_capacity(batch.len());
    for pending in batch {
        let [actor, action, target, request_id, outcome, details] = &pending.entry;
        seq += 1;
        let hash = entry_hash(&prev, seq, at, &Entry { actor, action, target, request_id, outcome, details });
        rows.push((seq, &pending.entry, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    // One INSERT per power-of-two chunk: few round trips, and few distinct statements to prepare.
    // (sqlx's QueryBuilder writes `?` placeholders for `Any`, which PostgreSQL refuses: `$n` here.)
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 << rest.len().ilog2());
        let values: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", (1..=10).map(|c| format!("${}", r * 10 + c)).collect::<Vec<_>>().join(", ")))
            .collect();
        let sql = format!(
            "INSERT INTO audit_log (seq, at, actor, action, target, request_id, outcome, details, prev_hash, hash) \
             VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for (seq, entry, prev, hash) in chunk {
            insert = insert.bind(*seq).bind(at);
            for field in entry.iter() {
                insert = insert.bind(field.as_str());
            }
            insert = insert.bind(prev.as_str()).bind(hash.as_str());
        }
        insert.execute(&mut *tx).await?;
        rest = tail;
    }
    let seqs = rows.iter().map(|(seq, ..)| *seq).collect();
    tx.commit().await?;
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use custody_db::test_utils::{Engine, TestDb};

    use super::*;

    /// Two writers (as two replicas would be) on one database, many appends each at once: every
    /// entry lands once, in one unbroken chain.
    async fn concurrent_writers_keep_one_chain(engine: Engine) {
        let db = TestDb::new(engine).await;
        let pool = custody_db::connect_pool(&db.url).await.expect("pool");
        crate::db::migrate(&pool).await.expect("migrations");
        let (a, b) = (Audit::new(pool.clone()), Audit::new(custody_db::connect_pool(&db.url).await.expect("pool")));
        let appends = (0..400).map(|i| {
            let audit = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let target = format!("t{i}");
                let e = Entry {
                    actor: "test",
                    action: "append",
                    target: &target,
                    request_id: "-",
                    outcome: "ok",
                    details: "",
                };
                audit.append(&e).await
            })
        });
        let mut seqs = Vec::new();
        for task in appends.collect::<Vec<_>>() {
            seqs.push(task.await.expect("task").expect("appended"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<i64>>(), "each append got its own sequence number");
        assert_eq!(a.verify().await.expect("intact"), 400);
        let page = a.page(&Filter::default(), 0, 400).await.expect("page");
        let mut targets: Vec<String> = page.into_iter().map(|e| e.target).collect();
        targets.sort_unstable();
        let mut expected: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();
        expected.sort_unstable();
        assert_eq!(targets, expected, "every entry stored with its own fields");
    }

    custody_db::on_each_engine!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] concurrent_writers_keep_one_chain: sqlite_concurrent_writers_keep_one_chain, postgres_concurrent_writers_keep_one_chain);

    #[test]
    fn sensitive_operations_are_those_done_on_dids_keys_and_policies() {
        assert!(is_sensitive("did.deactivate", "deactivated"));
        assert!(is_sensitive("key.rotate", "rotated") && is_sensitive("kek.rotate", "rotated"));
        assert!(!is_sensitive("did.deactivate", "requested") && !is_sensitive("key.rotate", "refused"));
        assert!(!is_sensitive("token.mint", "submitted") && !is_sensitive("wallet.sign", "signed"));
    }

    #[test]
    fn hash_depends_on_every_field_and_the_previous_hash() {
        let e = Entry { actor: "a", action: "b", target: "c", request_id: "d", outcome: "ok", details: "" };
        let base = entry_hash(GENESIS, 1, 5, &e);
        assert_eq!(base.len(), 64);
        assert_ne!(base, entry_hash(&base, 1, 5, &e));
        assert_ne!(base, entry_hash(GENESIS, 2, 5, &e));
        assert_ne!(base, entry_hash(GENESIS, 1, 6, &e));
        assert_ne!(base, entry_hash(GENESIS, 1, 5, &Entry { outcome: "error", ..e.clone() }));
        assert_ne!(base, entry_hash(GENESIS, 1, 5, &Entry { actor: "a\",\"b", ..e.clone() }));
        assert_ne!(base, entry_hash(GENESIS, 1, 5, &Entry { details: r#"{"amount":"5"}"#, ..e.clone() }));
    }
}

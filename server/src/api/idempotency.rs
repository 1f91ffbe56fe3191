//! Idempotency keys for creating calls: the key is claimed before the work, the
//! first answer is stored and replayed for the same key and body (at any later
//! time, and to a concurrent twin, which waits for it); the same key with other
//! parameters is a 422, never a second effect.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use super::error::ApiError;

/// The header a creating call must carry.
pub(crate) const HEADER: &str = "idempotency-key";

/// A stored first answer.
struct Replay {
    status: StatusCode,
    body: serde_json::Value,
}

/// The `status` of a claimed key whose answer is not stored yet.
const PENDING: i64 = 0;

/// The answer to a key reused with other parameters: 422, nothing done.
pub(crate) fn conflict() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with other parameters",
    )
}

/// The request's idempotency key (required; 1–128 printable ASCII characters).
pub(crate) fn key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(HEADER).ok_or_else(|| {
        ApiError::bad_request("idempotency_key_required", "this call needs an Idempotency-Key header")
    })?;
    let key = value.to_str().ok().filter(|k| (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(str::to_owned).ok_or_else(|| {
        ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 128 printable ASCII characters")
    })
}

/// The fingerprint of what was asked: operation and canonical parameters.
pub(crate) fn fingerprint(operation: &str, params: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(format!("{operation}\n{params}").as_bytes()))
}

/// A pending claim older than this was left by a request that died (a crash, a dropped connection); a
/// retry takes it over. Longer than any request may run.
const STALE_CLAIM_MILLIS: i64 = 60_000;

/// How long a request waits for a twin that holds the key before answering 409.
const WAIT_FOR_TWIN: Duration = Duration::from_secs(8);

/// Runs `work` at most once per `(caller, key)`: the key is claimed first (a pending row), so a
/// concurrent twin waits for and replays the first answer; a later retry with the same fingerprint
/// replays it at any time; another fingerprint is a 422. A failed `work` (an error, no effect to
/// remember) releases the key, so a retry runs again.
pub(crate) async fn once<F, Fut>(
    pool: &AnyPool,
    caller: &str,
    key: &str,
    fp: &str,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    if let Some(replay) = claim(pool, caller, key, fp).await? {
        return Ok((replay.status, Json(replay.body)).into_response());
    }
    match work().await {
        Ok((status, body)) => {
            finish(pool, caller, key, status, &body).await?;
            Ok((status, Json(body)).into_response())
        }
        Err(e) => {
            release(pool, caller, key).await?;
            Err(e)
        }
    }
}

/// Claims `(caller, key)`: `None` when this request holds it now, else the first answer to replay.
async fn claim(pool: &AnyPool, caller: &str, key: &str, fp: &str) -> Result<Option<Replay>, ApiError> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_TWIN;
    loop {
        let now = crate::audit::now_millis();
        let inserted = sqlx::query(
            "INSERT INTO idempotency (caller, key, request_hash, status, body, created_at) \
             VALUES ($1, $2, $3, $4, '', $5) ON CONFLICT (caller, key) DO NOTHING",
        )
        .bind(caller)
        .bind(key)
        .bind(fp)
        .bind(PENDING)
        .bind(now)
        .execute(pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT request_hash, status, body, created_at FROM idempotency WHERE caller = $1 AND key = $2",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
        // Released between the two statements: claim again.
        let Some(row) = row else { continue };
        let get = |col| row.try_get::<i64, _>(col).map_err(|e| ApiError::internal(&e));
        let stored: String = row.try_get("request_hash").map_err(|e| ApiError::internal(&e))?;
        if stored != fp {
            return Err(conflict());
        }
        let (status, created_at) = (get("status")?, get("created_at")?);
        if status != PENDING {
            let body: String = row.try_get("body").map_err(|e| ApiError::internal(&e))?;
            return Ok(Some(Replay {
                status: u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK),
                body: serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?,
            }));
        }
        if now - created_at > STALE_CLAIM_MILLIS && take_over(pool, caller, key, created_at, now).await? {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still in progress; retry later for its answer",
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Takes over a stale pending claim (one retry wins if several race).
async fn take_over(pool: &AnyPool, caller: &str, key: &str, seen: i64, now: i64) -> Result<bool, ApiError> {
    let taken = sqlx::query(
        "UPDATE idempotency SET created_at = $1 WHERE caller = $2 AND key = $3 AND status = $4 AND created_at = $5",
    )
    .bind(now)
    .bind(caller)
    .bind(key)
    .bind(PENDING)
    .bind(seen)
    .execute(pool)
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(taken.rows_affected() == 1)
}

/// Stores the first answer under the claim.
async fn finish(
    pool: &AnyPool,
    caller: &str,
    key: &str,
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE idempotency SET status = $1, body = $2 WHERE caller = $3 AND key = $4")
        .bind(i64::from(status.as_u16()))
        .bind(body.to_string())
        .bind(caller)
        .bind(key)
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| ApiError::internal(&e))
}

/// Releases a claim whose work failed.
async fn release(pool: &AnyPool, caller: &str, key: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM idempotency WHERE caller = $1 AND key = $2 AND status = $3")
        .bind(caller)
        .bind(key)
        .bind(PENDING)
        .execute(pool)
        .await
        .map(drop)
        .map_err(|e| ApiError::internal(&e))
}

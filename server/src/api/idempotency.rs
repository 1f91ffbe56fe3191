//! Idempotency keys for creating calls: the first answer is stored and replayed
//! for the same key; the same key with other parameters is a 422, never a second
//! effect.

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use super::error::ApiError;

/// The header a creating call must carry.
pub(crate) const HEADER: &str = "idempotency-key";

/// A stored first answer.
pub(crate) struct Replay {
    pub(crate) status: StatusCode,
    pub(crate) body: serde_json::Value,
}

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

/// The stored answer for `(caller, key)`, if any; a 422 if it was for other parameters.
pub(crate) async fn lookup(pool: &AnyPool, caller: &str, key: &str, fp: &str) -> Result<Option<Replay>, ApiError> {
    let row = sqlx::query("SELECT request_hash, status, body FROM idempotency WHERE caller = $1 AND key = $2")
        .bind(caller)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get("request_hash").map_err(|e| ApiError::internal(&e))?;
    if stored != fp {
        return Err(conflict());
    }
    let status: i64 = row.try_get("status").map_err(|e| ApiError::internal(&e))?;
    let body: String = row.try_get("body").map_err(|e| ApiError::internal(&e))?;
    Ok(Some(Replay {
        status: u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK),
        body: serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?,
    }))
}

/// Stores the first answer (a concurrent twin that stored first wins; both answers are equal).
pub(crate) async fn store(
    pool: &AnyPool,
    caller: &str,
    key: &str,
    fp: &str,
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<(), ApiError> {
    let result = sqlx::query(
        "INSERT INTO idempotency (caller, key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(caller)
    .bind(key)
    .bind(fp)
    .bind(i64::from(status.as_u16()))
    .bind(body.to_string())
    .bind(crate::audit::now_millis())
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(()),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

//! Activities and issuance (`shared/DESIGN.md` §7).
//!
//! `POST /activity/track` (app, Idempotency-Key) · `GET /activity/{id}` (app) ·
//! `POST /mintToken` (app, Idempotency-Key) · `POST /v1/tokens/burn` (app, Idempotency-Key).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use custody_issuance::{Error as IssuanceError, TrackRequest, Tracked};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState, audit,
    auth::{Caller, Role},
    error::ApiError,
    idempotency,
    wallets::accounts_error,
};

/// How long `/mintToken` and `/v1/tokens/burn` wait for the transaction to be submitted.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Amount {
    user_id: String,
    /// Whole PTKN.
    amount: u64,
    #[serde(default)]
    reason: String,
}

fn issuance_error(e: IssuanceError) -> ApiError {
    match e {
        IssuanceError::Invalid(why) => ApiError::bad_request("invalid_activity", why),
        IssuanceError::IdempotencyConflict => idempotency::conflict(),
        other => ApiError::internal(&other),
    }
}

/// `POST /activity/track`: 202 `{"id","status":"queued"}`; the activity and its outbox entry are stored
/// in one transaction. A replayed key answers the same.
pub(super) async fn track(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<TrackRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let activity = req.into_activity().ok_or_else(|| {
        ApiError::bad_request("invalid_occurred_at", "occurred_at must be an RFC 3339 time, e.g. 2026-01-05T08:00:00Z")
    })?;
    audit(&state, &caller, "activity.track", "activity", &headers, "accepted").await?;
    let tracked = state.issuance.track(&caller.sub, &key, activity).await.map_err(issuance_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": tracked.id, "status": "queued"}))).into_response())
}

/// `GET /activity/{id}`.
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    let not_found = || ApiError::not_found("activity_not_found", "no such activity");
    if !(id.len() == 66 && id.starts_with("0x") && id[2..].bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(not_found());
    }
    let view = state.issuance.activity(&id).await.map_err(issuance_error)?.ok_or_else(not_found)?;
    Ok(Json(serde_json::to_value(&view).map_err(|e| ApiError::internal(&e))?))
}

/// `POST /mintToken`: `{"txHash"}` once the mint is in a submitted transaction (202 `{"id","status"}`
/// if that takes longer than a few seconds; `GET /activity/{id}` follows it).
pub(super) async fn mint(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Amount>, JsonRejection>,
) -> Result<Response, ApiError> {
    direct(state, caller, headers, body, "token.mint").await
}

/// `POST /v1/tokens/burn`: as `/mintToken`, burning PTKN from the user's account.
pub(super) async fn burn(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Amount>, JsonRejection>,
) -> Result<Response, ApiError> {
    direct(state, caller, headers, body, "token.burn").await
}

async fn direct(
    state: Arc<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Amount>, JsonRejection>,
    action: &str,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    audit(&state, &caller, action, "ptkn", &headers, "accepted").await?;
    let issuance = &state.issuance;
    let tracked: Tracked = if action == "token.burn" {
        issuance.burn(&caller.sub, &key, &req.user_id, req.amount, &req.reason).await
    } else {
        issuance.mint(&caller.sub, &key, &req.user_id, req.amount, &req.reason).await
    }
    .map_err(issuance_error)?;
    let deadline = tokio::time::Instant::now() + SUBMIT_WAIT;
    loop {
        let view = issuance.activity(&tracked.id).await.map_err(issuance_error)?;
        let view = view.ok_or_else(|| ApiError::internal(&"a tracked activity vanished"))?;
        if let Some(hash) = view.issued.iter().find_map(|i| i.tx_hash.clone()) {
            return Ok(Json(json!({"txHash": hash, "id": tracked.id})).into_response());
        }
        if view.status == "failed" || tokio::time::Instant::now() >= deadline {
            let body = json!({"id": tracked.id, "status": view.status, "error": view.error});
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The smart account of `user_id` (404 without a wallet).
async fn account_of(state: &AppState, user_id: &str) -> Result<alloy::primitives::Address, ApiError> {
    let wallet = state.wallets()?.get(user_id).await.map_err(accounts_error)?;
    Ok(wallet.ok_or_else(|| ApiError::not_found("wallet_not_found", "no wallet for this user"))?.address)
}

/// `GET /v1/wallets/{user_id}/tokens`: the PTKN balance from `token_balance_cache` (chain events).
pub(super) async fn tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    let account = account_of(&state, &user_id).await?;
    let balance = state.issuance.token_balance(account).await.map_err(issuance_error)?;
    Ok(Json(
        json!({"address": account.to_checksum(None), "symbol": "PTKN", "decimals": 18, "balance": balance.to_string()}),
    ))
}

/// `GET /v1/wallets/{user_id}/badges`: the PBADGE ids held, from `badge_index` (chain events).
pub(super) async fn badges(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    let account = account_of(&state, &user_id).await?;
    let badges = state.issuance.badges(account).await.map_err(issuance_error)?;
    let badges: Vec<Value> = badges
        .into_iter()
        .map(|(id, amount)| json!({"badgeId": id.to_string(), "amount": amount.to_string()}))
        .collect();
    Ok(Json(json!({"address": account.to_checksum(None), "badges": badges})))
}

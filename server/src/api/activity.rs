//! Activities and issuance (`shared/DESIGN.md` §7).
//!
//! `POST /activity/track` (app, Idempotency-Key) · `GET /activity/{id}` (app) ·
//! `POST /mintToken` (app, Idempotency-Key) · `POST /v1/tokens/burn` (app, Idempotency-Key) ·
//! `GET /v1/wallets/{user_id}/{tokens,badges,activities}` (app) · `GET /wallet/{tokens,badges,activities}`
//! (user, about `sub`).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use custody_issuance::{ActivityCursor, ActivityQuery, Error as IssuanceError, TrackRequest, Tracked};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    AppState, amount, audit,
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
    /// Whole PTKN: a decimal string or an integer ([`amount::whole`]).
    amount: Value,
    #[serde(default)]
    reason: String,
}

fn issuance_error(e: IssuanceError) -> ApiError {
    match e {
        IssuanceError::Invalid(why) => ApiError::bad_request("invalid_activity", why),
        IssuanceError::InvalidOccurredAt => ApiError::bad_request("invalid_occurred_at", e.to_string()),
        IssuanceError::IdempotencyConflict => idempotency::conflict(),
        other => ApiError::internal(&other),
    }
}

/// `POST /activity/track`: 202 `{"id","status":"queued"}`; the activity and its outbox entry are stored
/// in one transaction. `occurred_at` defaults to the time of receipt. A replayed key answers the same.
pub(super) async fn track(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<TrackRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    audit(&state, &caller, "activity.track", "activity", &headers, "accepted").await?;
    let tracked = state.issuance.track_request(&caller.sub, &key, req).await.map_err(issuance_error)?;
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
    let amount = amount::whole("amount", &req.amount, state.max_amount)?;
    audit(&state, &caller, action, "ptkn", &headers, "accepted").await?;
    let issuance = &state.issuance;
    let tracked: Tracked = if action == "token.burn" {
        issuance.burn(&caller.sub, &key, &req.user_id, amount, &req.reason).await
    } else {
        issuance.mint(&caller.sub, &key, &req.user_id, amount, &req.reason).await
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

/// `GET /v1/wallets/{user_id}/tokens` (app): the PTKN balance from `token_balance_cache` (chain events).
pub(super) async fn tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    token_balance(&state, &user_id).await
}

/// `GET /wallet/tokens` (user): the caller's own PTKN balance.
pub(super) async fn own_tokens(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::User)?;
    token_balance(&state, &caller.sub).await
}

async fn token_balance(state: &AppState, user_id: &str) -> Result<Json<Value>, ApiError> {
    let account = account_of(state, user_id).await?;
    let balance = state.issuance.token_balance(account).await.map_err(issuance_error)?;
    Ok(Json(
        json!({"address": account.to_checksum(None), "symbol": "PTKN", "decimals": 18, "balance": balance.to_string()}),
    ))
}

/// `GET /v1/wallets/{user_id}/badges` (app): the PBADGE ids held, from `badge_index` (chain events).
pub(super) async fn badges(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    badges_held(&state, &user_id).await
}

/// `GET /wallet/badges` (user): the caller's own badges.
pub(super) async fn own_badges(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::User)?;
    badges_held(&state, &caller.sub).await
}

async fn badges_held(state: &AppState, user_id: &str) -> Result<Json<Value>, ApiError> {
    let account = account_of(state, user_id).await?;
    let badges = state.issuance.badges(account).await.map_err(issuance_error)?;
    let badges: Vec<Value> = badges
        .into_iter()
        .map(|(id, amount)| json!({"badgeId": id.to_string(), "amount": amount.to_string()}))
        .collect();
    Ok(Json(json!({"address": account.to_checksum(None), "badges": badges})))
}

/// The query of an activity history page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Only this activity type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only this status.
    status: Option<String>,
    /// The previous page's `nextCursor`.
    cursor: Option<String>,
    /// Activities per page (1 to 100; 20 by default).
    limit: Option<u32>,
}

/// The statuses an activity can have.
const STATUSES: [&str; 5] = ["queued", "batched", "submitted", "confirmed", "failed"];

/// `GET /v1/wallets/{user_id}/activities` (app): the user's activities, newest first, a page at a time.
pub(super) async fn activities(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::App)?;
    history(&state, &user_id, query).await
}

/// `GET /wallet/activities` (user): the caller's own activities.
pub(super) async fn own_activities(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::User)?;
    history(&state, &caller.sub, query).await
}

async fn history(
    state: &AppState,
    user_id: &str,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 100"));
    }
    if q.status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::bad_request("invalid_query", format!("status must be one of {}", STATUSES.join(", "))));
    }
    if q.kind.as_deref().is_some_and(|k| k.is_empty() || k.len() > 64) {
        return Err(ApiError::bad_request("invalid_query", "type must be 1 to 64 characters"));
    }
    let after = q.cursor.as_deref().map(str::parse::<ActivityCursor>).transpose();
    let after = after.map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API gave"))?;
    let query = ActivityQuery { kind: q.kind, status: q.status, after, limit };
    let (page, next) = state.issuance.activities_of(user_id, &query).await.map_err(issuance_error)?;
    Ok(Json(json!({"activities": page, "nextCursor": next.map(|c| c.to_string())})))
}

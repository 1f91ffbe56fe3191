//! Activities and issuance (`shared/DESIGN.md` §7).
//!
//! `POST /activity/track` (app, Idempotency-Key) · `GET /activity/{id}` (app) ·
//! `POST /mintToken` (app, Idempotency-Key) ·
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
use custody_accounts::{AddressText, UserId};
use custody_issuance::{
    ActivityCursor, ActivityQuery, ActivitySummary, ActivityView, Error as IssuanceError, TrackRequest, Tracked,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    AppState, amount, audit_with,
    auth::{Caller, Role},
    doc::{IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
    wallets::accounts_error,
};

/// How long `/mintToken` waits for the transaction to be submitted.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

/// The body of `/mintToken` and `/v1/tokens/burn`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Amount {
    #[schema(value_type = UserId)]
    pub(super) user_id: String,
    /// Whole PTKN: a decimal string or an integer ([`amount::whole`]).
    #[schema(value_type = amount::Amount)]
    pub(super) amount: Value,
    /// Why (kept in the database for a mint, in the audit trail for a burn).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub(super) reason: String,
}

/// An intake's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Queued {
    #[schema(pattern = "^0x[0-9a-f]{64}$")]
    id: String,
    /// `queued`.
    status: String,
}

/// A mint in a submitted transaction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Submitted {
    tx_hash: String,
    id: String,
}

/// A mint not yet submitted (or failed); `GET /activity/{id}` follows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Pending {
    id: String,
    status: String,
    error: Option<String>,
}

/// A PTKN balance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TokenBalance {
    #[schema(value_type = AddressText)]
    address: String,
    /// `PTKN`.
    symbol: &'static str,
    /// 18.
    decimals: u8,
    /// Base units (10^-18 PTKN), decimal.
    balance: String,
}

/// The PBADGE badges an account holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BadgesHeld {
    #[schema(value_type = AddressText)]
    address: String,
    badges: Vec<Badge>,
}

/// One PBADGE id held.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Badge {
    badge_id: String,
    amount: String,
}

/// A page of activity history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActivityPage {
    activities: Vec<ActivitySummary>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

fn issuance_error(e: IssuanceError) -> ApiError {
    match e {
        IssuanceError::Invalid(why) => ApiError::bad_request("invalid_activity", why),
        IssuanceError::OutOfRange(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", why),
        IssuanceError::InvalidOccurredAt => ApiError::bad_request("invalid_occurred_at", e.to_string()),
        IssuanceError::IdempotencyConflict => idempotency::conflict(),
        other => ApiError::internal(&other),
    }
}

/// `POST /activity/track`: 202 `{"id","status":"queued"}`; the activity and its outbox entry are stored
/// in one transaction. `occurred_at` defaults to the time of receipt. A replayed key answers the same.
#[utoipa::path(
    post, path = "/activity/track", tag = "activity", security(("bearer" = [])), description = "Role app.",
    params(IdempotencyKey), request_body = TrackRequest,
    responses((status = 202, description = "Stored; the mirror worker batches and anchors it.", body = Queued), Writes),
)]
pub(super) async fn track(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<TrackRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let kind = req.kind.clone();
    // Recorded after the intake (one entry on the hot path), with what happened: the activity, or why not.
    match state.issuance.track_request(&caller.sub, &key, req).await.map_err(issuance_error) {
        Ok(tracked) => {
            let details = json!({"type": kind, "replay": !tracked.created});
            audit_with(&state, &caller, ("activity.track", &tracked.id, "queued"), &headers, Some(&details)).await?;
            Ok((StatusCode::ACCEPTED, Json(Queued { id: tracked.id, status: "queued".into() })).into_response())
        }
        Err(e) => {
            let details = json!({"type": kind, "code": e.code()});
            audit_with(&state, &caller, ("activity.track", "activity", "refused"), &headers, Some(&details)).await?;
            Err(e)
        }
    }
}

/// `GET /activity/{id}`.
#[utoipa::path(
    get, path = "/activity/{id}", tag = "activity", security(("bearer" = [])), description = "Role app.",
    params(("id" = String, Path, pattern = "^0x[0-9a-fA-F]{64}$")),
    responses((status = 200, description = "Status, transaction, batch, merkle root, leaf and proof.", body = ActivityView), Reads),
)]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ActivityView>, ApiError> {
    caller.require(Role::App)?;
    let not_found = || ApiError::not_found("activity_not_found", "no such activity");
    if !custody_db::is_hex32(&id) {
        return Err(not_found());
    }
    Ok(Json(state.issuance.activity(&id).await.map_err(issuance_error)?.ok_or_else(not_found)?))
}

/// `POST /mintToken`: `{"txHash"}` once the mint is in a submitted transaction (202 `{"id","status"}`
/// if that takes longer than a few seconds; `GET /activity/{id}` follows it).
#[utoipa::path(
    post, path = "/mintToken", tag = "activity", security(("bearer" = [])),
    description = "Role app. Mints PTKN to the user's account through the mirror worker.",
    params(IdempotencyKey), request_body = Amount,
    responses(
        (status = 200, description = "In a submitted transaction.", body = Submitted),
        (status = 202, description = "Not submitted within 5 s (or failed); follow GET /activity/{id}.", body = Pending),
        Writes,
    ),
)]
pub(super) async fn mint(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Amount>, JsonRejection>,
) -> Result<Response, ApiError> {
    let action = "token.mint";
    caller.require(Role::App)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let amount = amount::whole("amount", &req.amount, state.max_amount)?;
    // On whom: the user's DID (the user id stays out of the trail).
    let target = match &state.wallets {
        Some(wallets) => wallets.did_of(&req.user_id).await.map_err(accounts_error)?.to_string(),
        None => "ptkn".to_owned(),
    };
    let requested = json!({"amount": amount.to_string(), "reason": req.reason});
    audit_with(&state, &caller, (action, &target, "requested"), &headers, Some(&requested)).await?;
    let issuance = &state.issuance;
    let tracked: Result<Tracked, ApiError> =
        issuance.mint(&caller.sub, &key, &req.user_id, amount, &req.reason).await.map_err(issuance_error);
    let (outcome, details) = match &tracked {
        Ok(t) => ("queued", json!({"amount": amount.to_string(), "activity": t.id, "replay": !t.created})),
        Err(e) => ("refused", json!({"amount": amount.to_string(), "code": e.code()})),
    };
    audit_with(&state, &caller, (action, &target, outcome), &headers, Some(&details)).await?;
    let tracked = tracked?;
    let deadline = tokio::time::Instant::now() + SUBMIT_WAIT;
    loop {
        let view = issuance.activity(&tracked.id).await.map_err(issuance_error)?;
        let view = view.ok_or_else(|| ApiError::internal(&"a tracked activity vanished"))?;
        if let Some(hash) = view.issued.iter().find_map(|i| i.tx_hash.clone()) {
            return Ok(Json(Submitted { tx_hash: hash, id: tracked.id }).into_response());
        }
        if view.status == "failed" || tokio::time::Instant::now() >= deadline {
            let body = Pending { id: tracked.id, status: view.status, error: view.error };
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
#[utoipa::path(
    get, path = "/v1/wallets/{user_id}/tokens", tag = "wallets", security(("bearer" = [])),
    description = "Role app. The PTKN balance, from the chain's Transfer events.",
    params(("user_id" = UserId, Path)),
    responses((status = 200, description = "Balance.", body = TokenBalance), Reads),
)]
pub(super) async fn tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<TokenBalance>, ApiError> {
    caller.require(Role::App)?;
    token_balance(&state, &user_id).await
}

/// `GET /wallet/tokens` (user): the caller's own PTKN balance.
#[utoipa::path(
    get, path = "/wallet/tokens", tag = "user", security(("bearer" = [])),
    description = "Role user: the calling user's own PTKN balance (404 without a wallet).",
    responses((status = 200, description = "Balance.", body = TokenBalance), Reads),
)]
pub(super) async fn own_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<TokenBalance>, ApiError> {
    caller.require(Role::User)?;
    token_balance(&state, &caller.sub).await
}

async fn token_balance(state: &AppState, user_id: &str) -> Result<Json<TokenBalance>, ApiError> {
    let account = account_of(state, user_id).await?;
    let balance = state.issuance.token_balance(account).await.map_err(issuance_error)?;
    let address = account.to_checksum(None);
    Ok(Json(TokenBalance { address, symbol: "PTKN", decimals: 18, balance: balance.to_string() }))
}

/// `GET /v1/wallets/{user_id}/badges` (app): the PBADGE ids held, from `badge_index` (chain events).
#[utoipa::path(
    get, path = "/v1/wallets/{user_id}/badges", tag = "wallets", security(("bearer" = [])),
    description = "Role app. The PBADGE badges held, from the chain's TransferSingle and TransferBatch events.",
    params(("user_id" = UserId, Path)),
    responses((status = 200, description = "Badges.", body = BadgesHeld), Reads),
)]
pub(super) async fn badges(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<BadgesHeld>, ApiError> {
    caller.require(Role::App)?;
    badges_held(&state, &user_id).await
}

/// `GET /wallet/badges` (user): the caller's own badges.
#[utoipa::path(
    get, path = "/wallet/badges", tag = "user", security(("bearer" = [])),
    description = "Role user: the calling user's own badges (404 without a wallet).",
    responses((status = 200, description = "Badges.", body = BadgesHeld), Reads),
)]
pub(super) async fn own_badges(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<BadgesHeld>, ApiError> {
    caller.require(Role::User)?;
    badges_held(&state, &caller.sub).await
}

async fn badges_held(state: &AppState, user_id: &str) -> Result<Json<BadgesHeld>, ApiError> {
    let account = account_of(state, user_id).await?;
    let badges = state.issuance.badges(account).await.map_err(issuance_error)?;
    let badges =
        badges.into_iter().map(|(id, amount)| Badge { badge_id: id.to_string(), amount: amount.to_string() }).collect();
    Ok(Json(BadgesHeld { address: account.to_checksum(None), badges }))
}

/// The query of an activity history page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Only this activity type.
    #[serde(rename = "type")]
    #[param(rename = "type", min_length = 1, max_length = 64)]
    kind: Option<String>,
    /// Only this status.
    #[param(inline)]
    status: Option<ActivityStatus>,
    /// The previous page's `nextCursor`.
    #[param(pattern = "^(0|[1-9][0-9]{0,17})\\.0x[0-9a-fA-F]{64}$")]
    cursor: Option<String>,
    /// Activities per page (1 to 100; 20 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The statuses an activity can have.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ActivityStatus {
    Queued,
    Batched,
    Submitted,
    Confirmed,
    Failed,
}

impl ActivityStatus {
    /// As stored.
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Batched => "batched",
            Self::Submitted => "submitted",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }
}

/// `GET /v1/wallets/{user_id}/activities` (app): the user's activities, newest first, a page at a time.
#[utoipa::path(
    get, path = "/v1/wallets/{user_id}/activities", tag = "wallets", security(("bearer" = [])),
    description = "Role app. The user's activities, newest first, a page at a time.",
    params(("user_id" = UserId, Path), HistoryQuery),
    responses((status = 200, description = "A page.", body = ActivityPage), Reads),
)]
pub(super) async fn activities(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<ActivityPage>, ApiError> {
    caller.require(Role::App)?;
    history(&state, &user_id, query).await
}

/// `GET /wallet/activities` (user): the caller's own activities.
#[utoipa::path(
    get, path = "/wallet/activities", tag = "user", security(("bearer" = [])),
    description = "Role user: the calling user's own activities, newest first, a page at a time.",
    params(HistoryQuery),
    responses((status = 200, description = "A page.", body = ActivityPage), Reads),
)]
pub(super) async fn own_activities(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<ActivityPage>, ApiError> {
    caller.require(Role::User)?;
    history(&state, &caller.sub, query).await
}

async fn history(
    state: &AppState,
    user_id: &str,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<ActivityPage>, ApiError> {
    custody_accounts::validate_user_id(user_id).map_err(accounts_error)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 100"));
    }
    if q.kind.as_deref().is_some_and(|k| k.is_empty() || k.len() > 64) {
        return Err(ApiError::bad_request("invalid_query", "type must be 1 to 64 characters"));
    }
    let after = q.cursor.as_deref().map(str::parse::<ActivityCursor>).transpose();
    let after = after.map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API gave"))?;
    let query = ActivityQuery { kind: q.kind, status: q.status.map(|s| s.as_str().to_owned()), after, limit };
    let (page, next) = state.issuance.activities_of(user_id, &query).await.map_err(issuance_error)?;
    Ok(Json(ActivityPage { activities: page, next_cursor: next.map(|c| c.to_string()) }))
}

//! Owner-key rotation over HTTP (role `officer`; audited): `POST /v1/admin/wallets/{user_id}/rotate-owner`
//! starts one (202, followed to its end by the `owner-rotations` task), `POST
//! /v1/admin/wallets/rotate-owner` starts one for each of a list of users, `GET
//! /v1/admin/wallets/{user_id}/owner-rotations` (officer, auditor) shows where each is.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use custody_accounts::UserId;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState,
    approvals::officer_or_auditor,
    audit_with,
    auth::{Caller, Role},
    doc::{IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
    wallets::custodial,
};
use crate::owner_rotation::{self, Rotation};

/// `POST /v1/admin/wallets/{user_id}/rotate-owner`.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// The paymaster policy that sponsors the owner change (the default one when absent); it must
    /// allow the account's own `changeOwner` (`self_selectors`, or no target restriction).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    policy: Option<String>,
}

/// The most users one `POST /v1/admin/wallets/rotate-owner` rotates.
const MAX_BATCH: usize = 50;

/// How many of a batch's rotations are prepared and sent at once.
const BATCH_CONCURRENCY: usize = 8;

/// `POST /v1/admin/wallets/rotate-owner`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateManyRequest {
    /// The users whose wallets rotate (1 to 50, no repeats).
    #[schema(value_type = Vec<UserId>, min_items = 1, max_items = 50)]
    user_ids: Vec<String>,
    /// As for one user.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    policy: Option<String>,
}

/// One user's outcome in a batch: the rotation started, or why not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RotateOutcome {
    #[schema(value_type = UserId)]
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation: Option<Rotation>,
    /// `{code, message}` as the one-user route would answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    error: Option<serde_json::Value>,
}

/// A batch's outcomes, in the request's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RotateManyAnswer {
    outcomes: Vec<RotateOutcome>,
}

/// A wallet's rotations, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RotationsPage {
    rotations: Vec<Rotation>,
}

/// `POST /v1/admin/wallets/{user_id}/rotate-owner` (officer).
#[utoipa::path(
    post, path = "/v1/admin/wallets/{user_id}/rotate-owner", tag = "officers", security(("bearer" = [])),
    description = "Role officer. Rotates the wallet's owner key: a successor key in the HSM, and the account's owner \
        changed on-chain by a sponsored UserOperation the current key signs (deploying the account first if it is \
        counterfactual). Address, tokens and badges stay. Once the operation's receipt shows OwnerChanged, the \
        successor signs and the old key is retired (follow GET …/owner-rotations). Meanwhile the wallet's signing \
        routes answer 409 owner_rotation_pending. 409 for a wallet not in custody or one already rotating; 403 \
        sponsorship_denied when the policy refuses the owner change.",
    params(("user_id" = UserId, Path), IdempotencyKey), request_body = RotateRequest,
    responses((status = 202, description = "The owner change is with the bundler.", body = Rotation), Writes),
)]
pub(super) async fn rotate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Result<Json<RotateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let fp = idempotency::fingerprint(
        "POST /v1/admin/wallets/{user_id}/rotate-owner",
        &json!({"user": user_id, "req": req}),
    );
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let rotation = rotate_one(&state, &caller, &headers, &user_id, req.policy.as_deref()).await?;
        Ok((StatusCode::ACCEPTED, serde_json::to_value(&rotation).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// `POST /v1/admin/wallets/rotate-owner` (officer).
#[utoipa::path(
    post, path = "/v1/admin/wallets/rotate-owner", tag = "officers", security(("bearer" = [])),
    description = "Role officer. Rotates the owner keys of up to 50 wallets as the one-wallet route does, 8 at a \
        time; answers each user's rotation or refusal in the request's order (200 even when some are refused).",
    params(IdempotencyKey), request_body = RotateManyRequest,
    responses((status = 200, description = "Each user's outcome.", body = RotateManyAnswer), Writes),
)]
pub(super) async fn rotate_many(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<RotateManyRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    let Json(req) = body?;
    let mut unique = req.user_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    if req.user_ids.is_empty() || req.user_ids.len() > MAX_BATCH || unique.len() != req.user_ids.len() {
        let why = format!("user_ids must list 1 to {MAX_BATCH} users, each once");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_users", why));
    }
    let fp = idempotency::fingerprint("POST /v1/admin/wallets/rotate-owner", &json!(req));
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let (state, caller, headers, policy) = (&state, &caller, &headers, req.policy.as_deref());
        let outcomes: Vec<RotateOutcome> = futures::stream::iter(req.user_ids.clone())
            .map(|user_id| async move {
                let started = rotate_one(state, caller, headers, &user_id, policy).await;
                let (rotation, error) = match started {
                    Ok(rotation) => (Some(rotation), None),
                    // The trail refused the entry: the whole batch stops, as one rotation would.
                    Err(e) if e.code == "unavailable" => return Err(e),
                    Err(e) => (None, Some(json!({"code": e.code, "message": e.message}))),
                };
                Ok(RotateOutcome { user_id, rotation, error })
            })
            .buffered(BATCH_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let answer = RotateManyAnswer { outcomes };
        Ok((StatusCode::OK, serde_json::to_value(&answer).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// Starts the rotation of `user_id`'s wallet (custodial) and audits the request or its refusal.
async fn rotate_one(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    user_id: &str,
    policy: Option<&str>,
) -> Result<Rotation, ApiError> {
    let wallet = custodial(state, user_id).await?;
    let target = wallet.did.to_string();
    let started = owner_rotation::start(state, &wallet, &caller.sub, policy).await;
    let details = match &started {
        Ok(r) => json!({"rotationId": r.id, "newOwner": r.new_owner, "userOpHash": r.user_op_hash}),
        Err(e) => json!({"code": e.code, "message": e.message}),
    };
    let outcome = if started.is_ok() { "requested" } else { "refused" };
    audit_with(state, caller, ("owner.rotate", &target, outcome), headers, Some(&details)).await?;
    started
}

/// `GET /v1/admin/wallets/{user_id}/owner-rotations` (officer, auditor).
#[utoipa::path(
    get, path = "/v1/admin/wallets/{user_id}/owner-rotations", tag = "officers", security(("bearer" = [])),
    description = "Role officer or auditor. The wallet's owner rotations, newest first: old and new owner, the \
        operation, pending / confirmed / failed and why.",
    params(("user_id" = UserId, Path)),
    responses((status = 200, description = "The rotations.", body = RotationsPage), Reads),
)]
pub(super) async fn rotations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<RotationsPage>, ApiError> {
    officer_or_auditor(&caller)?;
    let wallet = state.wallets()?.get(&user_id).await.map_err(super::wallets::accounts_error)?;
    wallet.ok_or_else(|| ApiError::not_found("wallet_not_found", "no wallet for this user"))?;
    Ok(Json(RotationsPage { rotations: owner_rotation::list(&state.pool, &user_id).await? }))
}

//! Owner-key rotation over HTTP (role `officer`; audited): `POST /v1/admin/wallets/{user_id}/rotate-owner`
//! starts one (202, followed to its end by the `owner-rotations` task), `GET
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
        let wallet = custodial(&state, &user_id).await?;
        let target = wallet.did.to_string();
        let started = owner_rotation::start(&state, &wallet, &caller.sub, req.policy.as_deref()).await;
        let details = match &started {
            Ok(r) => json!({"rotationId": r.id, "newOwner": r.new_owner, "userOpHash": r.user_op_hash}),
            Err(e) => json!({"code": e.code, "message": e.message}),
        };
        let outcome = if started.is_ok() { "requested" } else { "refused" };
        audit_with(&state, &caller, ("owner.rotate", &target, outcome), &headers, Some(&details)).await?;
        let rotation = started?;
        Ok((StatusCode::ACCEPTED, serde_json::to_value(&rotation).map_err(|e| ApiError::internal(&e))?))
    })
    .await
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

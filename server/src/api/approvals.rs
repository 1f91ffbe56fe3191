//! Dual control over HTTP (role `officer`; every step audited): `POST /v1/admin/kek/rotate` asks for a
//! KEK rotation (202 `{id, state: "pending"}`), another officer approves it with `POST
//! /v1/admin/approvals/{id}/approve`, then it runs; `GET /v1/admin/approvals[/{id}]` (officer or
//! auditor) shows where each request is.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState, audit_with,
    auth::{Caller, Role},
    doc::{ErrorBody, IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
};
use crate::approvals::{self, Action, Approval, Refusal};

/// `GET /v1/admin/approvals` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ApprovalsQuery {
    /// Only requests in this state.
    #[param(inline)]
    state: Option<StateFilter>,
    /// Most requests to answer (1 to 1000; 100 by default), latest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A request's state.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum StateFilter {
    Pending,
    Expired,
    Approved,
    Executed,
    Failed,
}

/// Requests, latest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ApprovalsPage {
    approvals: Vec<Approval>,
}

/// `POST /v1/admin/kek/rotate` (officer): asks for a KEK rotation, which a second officer approves.
#[utoipa::path(
    post, path = "/v1/admin/kek/rotate", tag = "officers", security(("bearer" = [])),
    description = "Role officer. Requests a KEK rotation under dual control: a new KEK version in the HSM and every \
        wrapped key re-wrapped under it (resumable; signing keeps working). It runs once a different officer \
        approves it (POST /v1/admin/approvals/{id}/approve) within 24 hours. 409 on a KMS signer (no KEK).",
    params(IdempotencyKey),
    responses((status = 202, description = "Requested; awaiting a second officer.", body = Approval), Writes),
)]
pub(super) async fn rotate_kek(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    if !matches!(state.keyring.backend(), custody_signer::Backend::Pkcs11(_)) {
        let why = "the signer is AWS KMS: its keys are not wrapped under a KEK";
        return Err(ApiError::new(StatusCode::CONFLICT, "kek_rotation_unsupported", why));
    }
    let fp = idempotency::fingerprint("POST /v1/admin/kek/rotate", &json!({}));
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let approval =
            approvals::request(&state.pool, (Action::KekRotate, "kek", None), &caller.sub).await.map_err(database)?;
        let details = json!({"approvalId": approval.id, "action": approval.action});
        audit_with(&state, &caller, ("approval.request", "kek", "requested"), &headers, Some(&details)).await?;
        Ok((StatusCode::ACCEPTED, serde_json::to_value(&approval).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// `POST /v1/admin/approvals/{id}/approve` (officer): a second officer approves; the operation runs.
#[utoipa::path(
    post, path = "/v1/admin/approvals/{id}/approve", tag = "officers", security(("bearer" = [])),
    description = "Role officer, not the one who requested it. Approves a pending request, which then runs in the \
        background (follow GET /v1/admin/approvals/{id}). 403 self_approval, 409 already decided, 410 expired.",
    params(("id" = String, Path, pattern = "^[0-9a-f]{32}$"), IdempotencyKey),
    responses(
        (status = 202, description = "Approved; running.", body = Approval),
        (status = 410, description = "The request expired; request the operation again.", body = ErrorBody),
        Writes,
    ),
)]
pub(super) async fn approve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    let fp = idempotency::fingerprint("POST /v1/admin/approvals/{id}/approve", &json!({"id": id}));
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let target = format!("approval:{id}");
        let approved = approvals::approve(&state.pool, &id, &caller.sub).await;
        let outcome = match &approved {
            Ok(_) => "approved",
            Err(Refusal::NotFound) => "not_found",
            Err(_) => "refused",
        };
        let details = approved.as_ref().err().map(|e| json!({"reason": e.to_string()}));
        audit_with(&state, &caller, ("approval.approve", &target, outcome), &headers, details.as_ref()).await?;
        let approval = approved.map_err(refusal)?;
        tokio::spawn(approvals::execute(approvals::Executor::of(&state), approval.clone()));
        Ok((StatusCode::ACCEPTED, serde_json::to_value(&approval).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

/// `GET /v1/admin/approvals` (officer, auditor).
#[utoipa::path(
    get, path = "/v1/admin/approvals", tag = "officers", security(("bearer" = [])),
    description = "Role officer or auditor. Dual-control requests, latest first.",
    params(ApprovalsQuery),
    responses((status = 200, description = "Requests.", body = ApprovalsPage), Reads),
)]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<ApprovalsPage>, ApiError> {
    officer_or_auditor(&caller)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 1000"));
    }
    let wanted = q.state.map(|s| match s {
        StateFilter::Pending => "pending",
        StateFilter::Expired => "expired",
        StateFilter::Approved => "approved",
        StateFilter::Executed => "executed",
        StateFilter::Failed => "failed",
    });
    let approvals = approvals::list(&state.pool, wanted, i64::from(limit)).await.map_err(database)?;
    Ok(Json(ApprovalsPage { approvals }))
}

/// `GET /v1/admin/approvals/{id}` (officer, auditor).
#[utoipa::path(
    get, path = "/v1/admin/approvals/{id}", tag = "officers", security(("bearer" = [])),
    description = "Role officer or auditor. One dual-control request: who asked, who approved, what it did.",
    params(("id" = String, Path, pattern = "^[0-9a-f]{32}$")),
    responses((status = 200, description = "The request.", body = Approval), Reads),
)]
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    officer_or_auditor(&caller)?;
    let found = approvals::get(&state.pool, &id).await.map_err(database)?;
    found.map(Json).ok_or_else(|| refusal(Refusal::NotFound))
}

pub(super) fn officer_or_auditor(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Role::Officer).or_else(|_| caller.require(Role::Auditor))
}

fn refusal(e: Refusal) -> ApiError {
    let message = e.to_string();
    match e {
        Refusal::NotFound => ApiError::not_found("approval_not_found", message),
        Refusal::SelfApproval => ApiError::new(StatusCode::FORBIDDEN, "self_approval", message),
        Refusal::Decided(_) => ApiError::new(StatusCode::CONFLICT, "already_decided", message),
        Refusal::Expired => ApiError::new(StatusCode::GONE, "approval_expired", message),
        Refusal::Database(e) => database(e),
    }
}

pub(super) fn database(e: sqlx::Error) -> ApiError {
    ApiError::unavailable(&e)
}

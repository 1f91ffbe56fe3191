//! `POST /paymaster` (role app): ERC-7677 JSON-RPC, authenticated by a bearer token or, as hosted
//! paymasters take it, the same token in the URL's `apikey` query parameter (viem's
//! `createPaymasterClient({ transport: http(url) })` has no other place for it). And
//! `GET /v1/admin/paymaster/policies/{policy}/sponsorships` (role officer), and the policies officers
//! read and change (`GET`/`PUT /v1/admin/paymaster/policies[/{policy}]`; raising a limit under dual
//! control).

use std::sync::Arc;

use axum::{
    Json,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    AppState,
    approvals::{database, officer_or_auditor},
    audit_with,
    auth::{Caller, Role},
    doc::{IdempotencyKey, Reads, Writes},
    error::ApiError,
    idempotency,
};
use crate::approvals::{self, Action, Approval};

/// The query of `POST /paymaster`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ApiKey {
    apikey: Option<String>,
}

fn paymaster(state: &AppState) -> Result<&custody_paymaster::Paymaster, ApiError> {
    state.paymaster.as_deref().ok_or_else(|| ApiError::not_found("paymaster_unconfigured", "no [paymaster] here"))
}

/// `POST /paymaster`: the paymaster's JSON-RPC.
pub(super) async fn rpc(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    Query(key): Query<ApiKey>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = match (caller, key.apikey) {
        (Ok(caller), _) => caller,
        (Err(_), Some(token)) => state.auth.verify(token.trim())?,
        (Err(e), None) => return Err(e),
    };
    caller.require(Role::App)?;
    let paymaster = paymaster(&state)?;
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let error = serde_json::json!({"code": -32700, "message": format!("parse error: {e}")});
            return Ok(Json(serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error})).into_response());
        }
    };
    Ok(match custody_paymaster::rpc::handle(paymaster, request).await {
        Some(answer) => Json(answer).into_response(),
        None => axum::http::StatusCode::NO_CONTENT.into_response(),
    })
}

/// A page query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SponsorshipsQuery {
    /// Most rows (1 to 1000; 100 by default), newest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/admin/paymaster/policies/{policy}/sponsorships`.
#[utoipa::path(
    get, path = "/v1/admin/paymaster/policies/{policy}/sponsorships", tag = "officers", security(("bearer" = [])),
    description = "Role officer. The policy's sponsorships, newest first: sender, reserved gas, gas used once \
        settled, reserved / settled / released, validity and the bundle transaction.",
    params(("policy" = String, Path, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$", description = "The policy id."), SponsorshipsQuery),
    responses((status = 200, description = "The sponsorships.", body = Object), Reads),
)]
pub(super) async fn sponsorships(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(policy): Path<String>,
    query: Result<Query<SponsorshipsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Officer)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 1000"));
    }
    let paymaster = paymaster(&state)?;
    if stored(paymaster, &policy).await?.is_none() {
        return Err(unknown(&policy));
    }
    let rows = paymaster.budget().list(&policy, limit).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(serde_json::json!({ "policy": policy, "sponsorships": rows })))
}

/// Every paymaster policy.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct PoliciesPage {
    policies: Vec<custody_paymaster::PolicyRecord>,
}

/// `GET /v1/admin/paymaster/policies` (officer, auditor).
#[utoipa::path(
    get, path = "/v1/admin/paymaster/policies", tag = "officers", security(("bearer" = [])),
    description = "Role officer or auditor. Every sponsorship policy as the paymaster applies it now: its rules, \
        limits, version and who changed it last (`config`, `officer:<sub>`, or `approval:<requester>+<approver>`).",
    responses((status = 200, description = "The policies, by id.", body = PoliciesPage), Reads),
)]
pub(super) async fn policies(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<PoliciesPage>, ApiError> {
    officer_or_auditor(&caller)?;
    let policies = paymaster(&state)?.budget().policies().await.map_err(|e| ApiError::unavailable(&e))?;
    Ok(Json(PoliciesPage { policies }))
}

/// `GET /v1/admin/paymaster/policies/{policy}` (officer, auditor).
#[utoipa::path(
    get, path = "/v1/admin/paymaster/policies/{policy}", tag = "officers", security(("bearer" = [])),
    description = "Role officer or auditor. One sponsorship policy, its version and who changed it last.",
    params(("policy" = String, Path, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$", description = "The policy id.")),
    responses((status = 200, description = "The policy.", body = custody_paymaster::PolicyRecord), Reads),
)]
pub(super) async fn policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<custody_paymaster::PolicyRecord>, ApiError> {
    officer_or_auditor(&caller)?;
    stored(paymaster(&state)?, &id).await?.map(Json).ok_or_else(|| unknown(&id))
}

/// `PUT /v1/admin/paymaster/policies/{policy}` (officer): creates or replaces a policy. A change that
/// raises or lifts a limit (or a new policy) waits for a second officer; any other applies at once.
#[utoipa::path(
    put, path = "/v1/admin/paymaster/policies/{policy}", tag = "officers", security(("bearer" = [])),
    description = "Role officer. Creates or replaces the policy (the whole of it; `id` may be left out). A change \
        that only tightens it (a lower limit, a new limit, a blocked sender, other targets or times) applies at once \
        (200, the new version). A new policy, or a change that raises or lifts a limit, is a dual-control request \
        (202 with the approval; payload.raises says what it raises) that runs once a different officer approves \
        it, and fails if the policy changed meanwhile. A limit added counts what its current period already \
        sponsored. 422 invalid_policy when it cannot be enforced as written (a limit without a maximum, an empty \
        time window); 409 policy_changed when another change landed while this one was made.",
    params(
        ("policy" = String, Path, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$", description = "The policy id."),
        IdempotencyKey,
    ),
    request_body = custody_paymaster::PolicyConfig,
    responses(
        (status = 200, description = "Applied.", body = custody_paymaster::PolicyRecord),
        (status = 202, description = "Requested; awaiting a second officer.", body = Approval),
        Writes,
    ),
)]
pub(super) async fn put_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<custody_paymaster::PolicyConfig>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Officer)?;
    let key = idempotency::key(&headers)?;
    let Json(mut policy) = body?;
    if policy.id.is_empty() {
        policy.id.clone_from(&id);
    }
    // Well-formed but not enforceable as written: 422.
    let invalid = |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", why);
    if policy.id != id {
        return Err(invalid("the body's id is not the path's".to_owned()));
    }
    policy.validate().map_err(|e| invalid(e.to_string()))?;
    let paymaster = paymaster(&state)?;
    let fp = idempotency::fingerprint("PUT /v1/admin/paymaster/policies/{policy}", &json!({"policy": policy}));
    let target = format!("policy:{id}");
    idempotency::once(&state.pool, &caller.sub, &key, &fp, || async {
        let current = stored(paymaster, &id).await?;
        let base = current.as_ref().map_or(0, |c| c.version);
        let raises = custody_paymaster::raises(current.as_ref().map(|c| &c.policy), &policy);
        if !raises.is_empty() {
            let payload = json!({"policy": policy, "baseVersion": base, "raises": raises});
            let asked = (Action::PolicyChange, target.as_str(), Some(payload));
            let approval = approvals::request(&state.pool, asked, &caller.sub).await.map_err(database)?;
            let details = json!({"approvalId": approval.id, "action": approval.action, "raises": raises});
            audit_with(&state, &caller, ("approval.request", &target, "requested"), &headers, Some(&details)).await?;
            return Ok((StatusCode::ACCEPTED, serde_json::to_value(&approval).map_err(|e| ApiError::internal(&e))?));
        }
        let stored = paymaster.budget().put_policy(&policy, &format!("officer:{}", caller.sub), Some(base)).await;
        let record = match stored.map_err(|e| ApiError::unavailable(&e))? {
            Ok(record) => record,
            Err(stale) => {
                let why = format!("the policy changed meanwhile (now version {}); read it and retry", stale.current);
                return Err(ApiError::new(StatusCode::CONFLICT, "policy_changed", why));
            }
        };
        let details = json!({"version": record.version, "from": base});
        audit_with(&state, &caller, ("policy.change", &target, "changed"), &headers, Some(&details)).await?;
        Ok((StatusCode::OK, serde_json::to_value(&record).map_err(|e| ApiError::internal(&e))?))
    })
    .await
}

async fn stored(
    paymaster: &custody_paymaster::Paymaster,
    id: &str,
) -> Result<Option<custody_paymaster::PolicyRecord>, ApiError> {
    paymaster.budget().policy(id).await.map_err(|e| ApiError::unavailable(&e))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found("unknown_policy", format!("no policy {id:?}"))
}

//! `POST /paymaster` (role app): ERC-7677 JSON-RPC, authenticated by a bearer token or, as hosted
//! paymasters take it, the same token in the URL's `apikey` query parameter (viem's
//! `createPaymasterClient({ transport: http(url) })` has no other place for it). And
//! `GET /v1/admin/paymaster/policies/{policy}/sponsorships` (role officer).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    AppState,
    auth::{Caller, Role},
    doc::Reads,
    error::ApiError,
};

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
    params(("policy" = String, Path, max_length = 64, description = "The policy id."), SponsorshipsQuery),
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
    if paymaster.config().policy(&policy).is_none() {
        return Err(ApiError::not_found("unknown_policy", format!("no policy {policy:?}")));
    }
    let rows = paymaster.budget().list(&policy, limit).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(serde_json::json!({ "policy": policy, "sponsorships": rows })))
}

//! The HTTP API: router, shared state, and the cross-cutting layers.
//!
//! ```text
//! request ─► request id ─► trace ─► timeout ─► body limit ─► handler ─► ApiError | JSON
//!                                                              │
//!                                      Caller (JWT, roles) ◄───┘ ─► audit trail
//! ```

pub(crate) mod auth;
pub(crate) mod error;
mod health;
mod idempotency;
mod wallets;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderName, Request, StatusCode},
    routing::get,
};
use custody_signer::Keyring;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use sqlx::AnyPool;
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::audit::Audit;
use auth::{Auth, Caller, Role};
use error::ApiError;

/// The request id header, set when the caller did not send one.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) keyring: Keyring,
    pub(crate) pool: AnyPool,
    pub(crate) audit: Audit,
    pub(crate) auth: Auth,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// The chain's JSON-RPC URL, for readiness.
    pub(crate) rpc_url: Option<String>,
    /// Wallets, when a deployment is configured.
    pub(crate) wallets: Option<custody_accounts::Wallets>,
}

impl AppState {
    /// The wallet service, or a 503 when no deployment is configured.
    pub(crate) fn wallets(&self) -> Result<&custody_accounts::Wallets, ApiError> {
        self.wallets.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "wallets_unconfigured",
                "wallets need [chain] deployment_file in the service configuration",
            )
        })
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) body_bytes: usize,
    pub(crate) timeout: Duration,
}

/// The whole API.
pub(crate) fn router(state: Arc<AppState>, limits: Limits) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/admin/audit", get(audit_page))
        .route("/v1/wallets", axum::routing::post(wallets::create))
        .route("/v1/wallets/{user_id}", get(wallets::get))
        .route("/wallet/status", get(wallets::status))
        .route("/1.0/identifiers/{did}", get(wallets::resolve))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // The path only: query strings may carry identifiers.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.timeout)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes))
}

/// 128-bit random request ids.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        axum::http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

/// `GET /v1/admin/audit?after=SEQ&limit=N` (role `auditor`): a page of the trail and whether it verifies.
async fn audit_page(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Auditor)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if !(1..=1000).contains(&q.limit) || q.after < 0 {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1..=1000 and after ≥ 0"));
    }
    let entries = state.audit.page(q.after, q.limit).await.map_err(|e| ApiError::internal(&e))?;
    let next = entries.last().map(|e| e.seq);
    Ok(Json(serde_json::json!({ "entries": entries, "next_after": next })))
}

//! The HTTP API: router, shared state, and the cross-cutting layers.
//!
//! ```text
//! request ─► request id ─► trace ─► timeout ─► body limit ─► handler ─► ApiError | JSON
//!                                                              │
//!                                      Caller (JWT, roles) ◄───┘ ─► audit trail
//! ```

mod activity;
mod amount;
pub(crate) mod auth;
pub(crate) mod error;
mod health;
mod idempotency;
pub(crate) mod rate_limit;
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
    LatencyUnit,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
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
    /// The activity mirror (intake and reads; its worker runs beside the API).
    pub(crate) issuance: custody_issuance::Issuance,
    /// The most whole PTKN one mint or burn request may move (`[issuance] max_amount`).
    pub(crate) max_amount: u64,
    /// The bundler (ERC-7769 at `POST /rpc`), when `[bundler]` is configured.
    pub(crate) bundler: Option<Arc<custody_bundler::Bundler>>,
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

/// Appends to the audit trail; a failure refuses the operation (503).
pub(crate) async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    headers: &axum::http::HeaderMap,
    outcome: &str,
) -> Result<(), ApiError> {
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let entry = crate::audit::Entry { actor: &caller.actor(), action, target, request_id, outcome };
    state.audit.append(&entry).await.map(drop).map_err(|e| ApiError::unavailable(&e))
}

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) body_bytes: usize,
    pub(crate) timeout: Duration,
    /// Per-client rate limit; `None` when off.
    pub(crate) rate: Option<Arc<rate_limit::RateLimiter>>,
}

/// The whole API.
pub(crate) fn router(state: Arc<AppState>, limits: Limits) -> Router {
    // ERC-7769 JSON-RPC: public like any bundler's (an operation is authorised by its account's
    // signature and, for sponsorship, the paymaster's); debug methods only when configured.
    let rpc = state.bundler.clone().map_or_else(Router::new, custody_bundler::rpc::router);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/admin/audit", get(audit_page))
        .route("/v1/wallets", axum::routing::post(wallets::create))
        .route("/v1/wallets/{user_id}", get(wallets::get))
        .route("/v1/wallets/{user_id}/deactivate", axum::routing::post(wallets::deactivate))
        .route("/wallet/status", get(wallets::status))
        .route("/1.0/identifiers/{did}", get(wallets::resolve))
        .route("/activity/track", axum::routing::post(activity::track))
        .route("/activity/{id}", get(activity::get))
        .route("/mintToken", axum::routing::post(activity::mint))
        .route("/v1/tokens/burn", axum::routing::post(activity::burn))
        .route("/v1/wallets/{user_id}/tokens", get(activity::tokens))
        .route("/v1/wallets/{user_id}/badges", get(activity::badges))
        .route("/v1/wallets/{user_id}/activities", get(activity::activities))
        .route("/wallet/tokens", get(activity::own_tokens))
        .route("/wallet/badges", get(activity::own_badges))
        .route("/wallet/activities", get(activity::own_activities))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .with_state(state)
        .merge(rpc)
        .layer(tower::util::option_layer(
            limits.rate.map(|limiter| axum::middleware::from_fn_with_state(limiter, rate_limit::limit)),
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                            // The matched route, not the path: paths and query strings may carry user ids.
                            let route = req
                                .extensions()
                                .get::<axum::extract::MatchedPath>()
                                .map_or("-", axum::extract::MatchedPath::as_str);
                            tracing::info_span!("request", method = %req.method(), route, request_id = %id)
                        })
                        .on_request(())
                        .on_response(
                            DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.timeout)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes))
}

/// The OpenAPI 3.1 document of this API (kept beside the code; a test checks every path it names is routed).
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
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

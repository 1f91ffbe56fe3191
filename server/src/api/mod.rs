//! The HTTP API: router, shared state, and the cross-cutting layers.
//!
//! ```text
//! request ─► request id ─► trace ─► timeout ─► body limit ─► handler ─► ApiError | JSON
//!                                                              │
//!                                      Caller (JWT, roles) ◄───┘ ─► audit trail
//! ```

mod activity;
mod amount;
mod approvals;
pub(crate) mod auth;
mod doc;
pub(crate) mod error;
mod health;
mod http_metrics;
mod idempotency;
mod keys;
mod operations;
mod owner_rotation;
mod paymaster;
pub(crate) mod rate_limit;
mod signatures;
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
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

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
    /// The chain (`[chain] rpc_url`), connected once: readiness and on-chain reads share it.
    pub(crate) chain: Option<alloy::providers::DynProvider>,
    /// Wallets, when a deployment is configured.
    pub(crate) wallets: Option<custody_accounts::Wallets>,
    /// The activity mirror (intake and reads; its worker runs beside the API).
    pub(crate) issuance: custody_issuance::Issuance,
    /// The supervised tasks' states, for `/readyz`.
    pub(crate) tasks: crate::tasks::TaskBoard,
    /// The most whole PTKN one mint or burn request may move (`[issuance] max_amount`).
    pub(crate) max_amount: u64,
    /// The bundler (ERC-7769 at `POST /rpc`), when `[bundler]` is configured.
    pub(crate) bundler: Option<Arc<custody_bundler::Bundler>>,
    /// The paymaster (ERC-7677 at `POST /paymaster`), when `[paymaster]` is configured.
    pub(crate) paymaster: Option<Arc<custody_paymaster::Paymaster>>,
    /// The contracts (`[chain] deployment_file`), when configured.
    pub(crate) deployment: Option<custody_contracts::Deployment>,
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
    audit_with(state, caller, (action, target, outcome), headers, None).await
}

/// [`audit`] with details (an amount, an activity id, a refusal code).
pub(crate) async fn audit_with(
    state: &AppState,
    caller: &Caller,
    (action, target, outcome): (&str, &str, &str),
    headers: &axum::http::HeaderMap,
    details: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let details = details.map(ToString::to_string).unwrap_or_default();
    let entry = crate::audit::Entry { actor: &caller.actor(), action, target, request_id, outcome, details: &details };
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
    let (api, document) = OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(audit_page))
        .routes(routes!(keys::list))
        .routes(routes!(approvals::rotate_kek))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::get))
        .routes(routes!(wallets::create))
        .routes(routes!(wallets::get))
        .routes(routes!(wallets::deactivate))
        .routes(routes!(wallets::status))
        .routes(routes!(wallets::resolve))
        .routes(routes!(activity::track))
        .routes(routes!(activity::get))
        .routes(routes!(activity::mint))
        .routes(routes!(operations::burn))
        .routes(routes!(activity::tokens))
        .routes(routes!(activity::badges))
        .routes(routes!(activity::activities))
        .routes(routes!(activity::own_tokens))
        .routes(routes!(activity::own_badges))
        .routes(routes!(activity::own_activities))
        .routes(routes!(signatures::sign))
        .routes(routes!(signatures::sign_own))
        .routes(routes!(paymaster::sponsorships))
        .routes(routes!(paymaster::policies))
        .routes(routes!(owner_rotation::rotate))
        .routes(routes!(owner_rotation::rotate_many))
        .routes(routes!(owner_rotation::rotations))
        .routes(routes!(paymaster::policy, paymaster::put_policy))
        .routes(routes!(operations::prepare))
        .routes(routes!(operations::prepare_own))
        .routes(routes!(operations::submit))
        .routes(routes!(operations::submit_own))
        .routes(routes!(operations::status))
        .routes(routes!(operations::status_own))
        .routes(routes!(operations::transfer))
        .routes(routes!(operations::transfer_own))
        .split_for_parts();
    let document: Arc<str> = document.to_pretty_json().unwrap_or_default().into();
    api.route("/openapi.json", get(move || openapi(document.clone())))
        .route("/paymaster", axum::routing::post(paymaster::rpc))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint") })
        .with_state(state)
        .merge(rpc)
        .route_layer(axum::middleware::from_fn(http_metrics::record))
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

/// `GET /openapi.json`: the document generated from the handlers ([`doc`]).
async fn openapi(document: Arc<str>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document.to_string())
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    #[param(minimum = 0)]
    after: i64,
    /// Entries on the page.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: i64,
    /// Only this actor (`role:subject`, or `cli:<user>`).
    #[param(max_length = 512)]
    actor: Option<String>,
    /// Only this action (`wallet.create`, `token.mint`, `key.sign`, …).
    #[param(max_length = 128)]
    action: Option<String>,
    /// Only this target (a DID, a key name, an activity id).
    #[param(max_length = 512)]
    target: Option<String>,
    /// At or after this time, Unix milliseconds.
    #[param(minimum = 0)]
    since: Option<i64>,
    /// Before this time, Unix milliseconds.
    #[param(minimum = 0)]
    until: Option<i64>,
}

/// A page of the audit trail.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct AuditPage {
    entries: Vec<crate::audit::Stored>,
    /// The `after` of the next page.
    next_after: Option<i64>,
}

fn default_limit() -> i64 {
    100
}

/// `GET /v1/admin/audit?after=SEQ&limit=N` (role `auditor`): a page of the trail.
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "audit", security(("bearer" = [])),
    description = "Role auditor. A page of the hash-chained audit trail, filtered by actor, action, target and time.",
    params(AuditQuery),
    responses((status = 200, description = "A page.", body = AuditPage), doc::Reads),
)]
async fn audit_page(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Auditor)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if !(1..=1000).contains(&q.limit) || q.after < 0 {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1..=1000 and after ≥ 0"));
    }
    if q.since.is_some_and(|t| t < 0) || q.until.is_some_and(|t| t < 0) {
        return Err(ApiError::bad_request("invalid_query", "since and until are Unix milliseconds ≥ 0"));
    }
    let too_long = |value: &Option<String>, most: usize| value.as_ref().is_some_and(|v| v.chars().count() > most);
    if too_long(&q.actor, 512) || too_long(&q.action, 128) || too_long(&q.target, 512) {
        return Err(ApiError::bad_request("invalid_query", "actor and target are at most 512 characters, action 128"));
    }
    let filter =
        crate::audit::Filter { actor: q.actor, action: q.action, target: q.target, since: q.since, until: q.until };
    let entries = state.audit.page(&filter, q.after, q.limit).await.map_err(|e| ApiError::internal(&e))?;
    let next_after = entries.last().map(|e| e.seq);
    Ok(Json(AuditPage { entries, next_after }))
}

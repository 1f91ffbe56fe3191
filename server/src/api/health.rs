//! Liveness, readiness (dependencies and supervised tasks) and metrics.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;

use super::AppState;
use crate::tasks::TaskState;

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// `ok`.
    status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Readiness {
    /// `ready` or `degraded`.
    status: &'static str,
    checks: Checks,
    /// Warnings that do not make the service unready: `paymaster_deposit_low` (a PeruriPaymaster
    /// deposit under `[paymaster] min_deposit_wei`).
    warnings: Vec<&'static str>,
    /// Each supervised task (issuance worker and indexer, activity consumer, bundle builders) and its state.
    #[schema(value_type = BTreeMap<String, TaskState>)]
    tasks: BTreeMap<&'static str, TaskState>,
}

/// Each dependency: `ok` or `down`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Checks {
    database: &'static str,
    hsm: &'static str,
    chain: &'static str,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive.", body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the database, the HSM (or KMS) and the chain answer; 503 otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers.", body = Readiness),
        (status = 503, description = "One does not.", body = Readiness),
    ),
)]
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let db = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let db_ok = matches!(db, Ok(Ok(_)));
    let hsm_ok = match state.keyring.backend() {
        custody_signer::Backend::Pkcs11(hsm) => matches!(tokio::time::timeout(timeout, hsm.ping()).await, Ok(Ok(()))),
        custody_signer::Backend::Kms(_) => true,
    };
    let chain_ok = match &state.chain {
        Some(chain) => {
            use alloy::providers::Provider;
            matches!(tokio::time::timeout(timeout, chain.get_chain_id()).await, Ok(Ok(_)))
        }
        None => true,
    };
    let tasks = state.tasks.snapshot();
    let ready = db_ok && hsm_ok && chain_ok && tasks.values().all(|t| *t == TaskState::Running);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let checks = Checks { database: word(db_ok), hsm: word(hsm_ok), chain: word(chain_ok) };
    let warnings = state.paymaster.iter().filter(|p| p.deposit_low()).map(|_| "paymaster_deposit_low").collect();
    (status, Json(Readiness { status: if ready { "ready" } else { "degraded" }, checks, warnings, tasks }))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are not enabled in this process.", body = String, content_type = "text/plain"),
    ),
)]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

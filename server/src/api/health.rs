//! Liveness, readiness and metrics.

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use super::AppState;

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database, the HSM (or KMS) and the chain answer; 503 otherwise.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let db = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let db_ok = matches!(db, Ok(Ok(_)));
    let hsm_ok = match state.keyring.backend() {
        custody_signer::Backend::Pkcs11(hsm) => matches!(tokio::time::timeout(timeout, hsm.ping()).await, Ok(Ok(()))),
        custody_signer::Backend::Kms(_) => true,
    };
    let chain_ok = match &state.rpc_url {
        Some(url) => chain_answers(url, timeout).await,
        None => true,
    };
    let ready = db_ok && hsm_ok && chain_ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "degraded" },
            "checks": {"database": word(db_ok), "hsm": word(hsm_ok), "chain": word(chain_ok)},
        })),
    )
}

async fn chain_answers(url: &str, timeout: Duration) -> bool {
    use alloy::providers::{Provider, ProviderBuilder};
    let Ok(url) = url.parse() else { return false };
    let provider = ProviderBuilder::new().connect_http(url);
    matches!(tokio::time::timeout(timeout, provider.get_chain_id()).await, Ok(Ok(_)))
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

//! Request metrics by route (never by path: paths carry user ids):
//! `custody_http_requests_total{method, route, status}` and `custody_http_request_duration_seconds{route}`.

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

/// Counts and times one request.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("custody_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("custody_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

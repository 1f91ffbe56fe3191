//! A token bucket per client IP address: `per_second` sustained, `burst` at once.
//! Over the limit a request gets a 429 `rate_limited` with `Retry-After`, before
//! any handler (or token check) runs.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::{config::RateLimitConfig, tls::PeerAddr};

/// Buckets kept before idle (full) ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// The per-client buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `None` when the configuration turns limiting off.
    pub(crate) fn new(config: RateLimitConfig) -> Option<Arc<Self>> {
        (config.per_second > 0).then(|| {
            Arc::new(Self {
                per_second: f64::from(config.per_second),
                burst: f64::from(config.burst.max(1)),
                buckets: Mutex::new(HashMap::new()),
            })
        })
    }

    /// Takes one token for `ip`, or says how long until one is available.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| self.refill(*b, now) < self.burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: self.burst, at: now });
        let tokens = self.refill(*bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket { tokens: tokens - 1.0, at: now };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }

    fn refill(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

/// The middleware: limits by the peer's address (when the listener gives one).
pub(crate) async fn limit(State(limiter): State<Arc<RateLimiter>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<PeerAddr>>().map(|c| c.0.0.ip());
    if let Some(ip) = peer
        && let Err(wait) = limiter.check(ip, Instant::now())
    {
        metrics::counter!("custody_http_rate_limited_total").increment(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this client; retry after the time in Retry-After",
        )
        .into_response();
        let secs = wait.as_secs_f64().ceil().max(1.0);
        if let Ok(value) = HeaderValue::from_str(&format!("{secs:.0}")) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate_per_client() {
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 10, burst: 3 }).expect("on");
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).expect_err("burst spent");
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check(b, t0).is_ok(), "another client has its own bucket");
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_ok(), "one token after 1/rate");
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_err());
        assert!(RateLimiter::new(RateLimitConfig { per_second: 0, burst: 5 }).is_none(), "0 turns it off");
    }
}

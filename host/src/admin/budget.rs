//! How many requests the admin listener answers per second: it shares the
//! worker's I/O threads, and `/api/state` (or a route reading beanstalkd)
//! costs far more than a connection does. A token bucket for the whole
//! listener: [`RATE`] per second, bursts of [`BURST`]; beyond it, 429 with
//! `Retry-After: 1`. `/healthz` and `/readyz` are never refused (a probe
//! refused would restart a healthy worker); they cost next to nothing.
//!
//! [`Bucket::take`] is the decision (pure: the caller gives the time).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Requests per second, sustained: a Prometheus server, health checkers
/// and several dashboard tabs (each a few requests a second) stay far
/// below it.
pub const RATE: f64 = 100.0;

/// Requests answered at once after a quiet period.
pub const BURST: f64 = 200.0;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Whether a request at `now` may be answered (and takes a token).
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The listener's bucket, shared by its connections.
pub type Shared = Arc<Mutex<Bucket>>;

/// A full bucket of [`RATE`] and [`BURST`].
pub fn shared() -> Shared {
    Arc::new(Mutex::new(Bucket::new(RATE, BURST, Instant::now())))
}

/// Axum middleware: 429 once the bucket is empty, but for health checks.
/// Applied with `.layer(axum::middleware::from_fn_with_state(budget::shared(), budget::layer))`.
pub async fn layer(State(bucket): State<Shared>, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let allowed = probe
        || bucket
            .lock()
            .map(|mut b| b.take(Instant::now()))
            .unwrap_or(true);
    if allowed {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests: the admin listener answers {RATE} a second\n"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(10.0, 5.0, t0);
        assert_eq!((0..8).filter(|_| bucket.take(t0)).count(), 5);
        // 0.5 s later: 5 more, and no more than the burst after a long wait.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..8).filter(|_| bucket.take(t1)).count(), 5);
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| bucket.take(t2)).count(), 5);
        // A clock read out of order takes nothing back.
        assert!(!bucket.take(t1));
    }
}

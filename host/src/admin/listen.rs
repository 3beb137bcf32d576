//! The admin listener's connections, bounded so that no client can starve
//! the worker it shares a process with: at most [`MAX_CONNECTIONS`] are
//! served at once (more are closed as soon as they are accepted, so they
//! hold no file descriptor the worker's beanstalkd connections and module
//! files need), and a connection that has not sent a request's headers
//! within [`HEADER_TIMEOUT`] (slowloris, or idle between requests) is
//! closed. HTTP/1 only, with a small read buffer: a request head over
//! [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`] headers is answered 431.
//!
//! `axum::serve` sets no limit on connections and no timer (so hyper's
//! header-read timeout is off): this loop replaces it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once. A Prometheus server, a few health checkers
/// and browser tabs (6 connections each) need far fewer; 64 descriptors
/// leave the worker most of even the common 1024 default limit, and 64
/// connections' buffers stay under a few MiB.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send a request's headers, counted
/// from when the server starts reading them: a client sends them in one
/// packet; 10 s allow a slow link and free a slowloris' connection fast.
/// Idle keep-alive connections are closed after it too (clients reconnect).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (request line and headers) read: 64 KiB, far
/// above any real request to these routes (hyper's default is ~400 KiB).
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// The most headers a request may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Router) {
    if let Ok(local) = listener.local_addr()
        && !local.ip().is_loopback()
    {
        tracing::warn!(
            addr = %local,
            "admin listener not on loopback: whoever reaches it reads job bodies and \
             failure reasons; keep it on 127.0.0.1 or behind an authenticating proxy"
        );
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut full = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE) or the like: let the worker
                // have them back before trying again.
                tracing::warn!(error = %e, "admin listener: cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "admin listener: too many connections; closing new ones until some end"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(peer = %peer, error = %e, "admin connection ended");
            }
            drop(permit);
        });
    }
}

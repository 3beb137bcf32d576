//! The admin listener (`runner --admin ADDR`): Prometheus metrics, health
//! and readiness checks, the dashboard and its JSON, on the worker's I/O
//! runtime. Read-only unless a token is configured (`--admin-token`).
//!
//! - `server.rs`: the read-only routes;
//! - `actions.rs`: `/api/buried` and the POST actions (kick, delete,
//!   pause) on [`crate::ops`];
//! - `poller.rs`: each beanstalkd server's tube counts, polled every
//!   second;
//! - `state.rs`: the `/api/state` document and readiness (pure);
//! - `auth.rs`: who may act (pure check, axum extractor);
//! - `guard.rs`: which requests are answered at all (DNS rebinding,
//!   cross-site posts, framing);
//! - `budget.rs`: how many requests a second are answered;
//! - `listen.rs`: the connections, bounded (count, header timeout).

pub mod actions;
pub mod auth;
pub mod budget;
pub mod guard;
pub mod listen;
pub mod poller;
pub mod server;
pub mod state;

use std::net::SocketAddr;

use beanbox_queue::Servers;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::registry::Registry;
pub use server::{AdminState, router};

/// What the admin listener serves from.
#[derive(Clone)]
pub struct AdminConfig {
    /// The token POST actions need; `None`: read-only.
    pub token: Option<String>,
    /// The beanstalkd servers, each polled on its own connection.
    pub beanstalkd: Servers,
    /// When `/readyz` says ready, as to those servers.
    pub ready_when: state::ReadyWhen,
    /// The worker's metrics (and the tenants it publishes there).
    pub metrics: Metrics,
    /// The worker's modules.
    pub registry: Registry,
    /// Modules readiness waits for besides the tenants' (with no config and
    /// no `--tube`: the module files found at start).
    pub modules_at_start: Vec<String>,
    /// Host names requests may carry besides IP literals and `localhost`
    /// (see [`guard`]).
    pub hosts: guard::Hosts,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("beanstalkd", &self.beanstalkd)
            .field("ready_when", &self.ready_when)
            .field("modules_at_start", &self.modules_at_start)
            .finish_non_exhaustive()
    }
}

/// Listens on `addr` (`HOST:PORT`).
///
/// # Errors
///
/// An address that does not parse or resolve, or that cannot be bound (in
/// use, not local, no permission), naming it.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--admin {addr}: cannot listen there: {e}"))
}

/// Serves the admin routes on `listener` and starts the poller, both on the
/// current runtime, until the process ends. Returns the bound address.
///
/// # Errors
///
/// When the listener's address cannot be read.
pub fn spawn(listener: TcpListener, config: AdminConfig) -> anyhow::Result<SocketAddr> {
    let local = listener.local_addr()?;
    for server in &config.beanstalkd {
        // Labels bounded by the list; down until first reached.
        config.metrics.set_beanstalkd_up(server, false);
        tokio::spawn(poller::run(server.clone(), config.metrics.clone()));
    }
    let hosts = config.hosts.clone();
    let app = router(AdminState::new(config))
        .layer(axum::middleware::from_fn_with_state(
            budget::shared(),
            budget::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(hosts, guard::layer));
    tokio::spawn(listen::serve(listener, app));
    tracing::info!(addr = %local, "admin listener: /metrics, /healthz, /readyz, /api/state, /api/buried, POST /api/kick /api/delete /api/pause, /");
    Ok(local)
}

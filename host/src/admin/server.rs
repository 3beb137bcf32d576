//! The admin listener's routes (axum): `/metrics`, `/healthz`, `/readyz`,
//! `/api/state` and the dashboard at `/`; [`router`] adds those of
//! [`super::actions`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::AdminConfig;
use super::state::{self, Inputs, ServerView, WorkerView};

/// The embedded dashboard: one page, no CDN, no build step.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What the dashboard may load: its own inline script and style, and
/// requests to this listener; nothing else, and no framing (the actions
/// cannot be clickjacked). Defense in depth: the page never renders job
/// data as HTML in the first place.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Shared>,
}

struct Shared {
    config: AdminConfig,
    started_at: u64,
    /// Held while a request reads the failure records (a listing, a kick,
    /// a delete): concurrent readers of one listener would see each
    /// other's partial lists.
    records: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

impl AdminState {
    /// The state of a listener configured by `config`, started now.
    pub fn new(config: AdminConfig) -> AdminState {
        AdminState {
            inner: Arc::new(Shared {
                config,
                started_at: crate::metrics::unix_now(),
                records: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// What the listener was configured with.
    pub fn config(&self) -> &AdminConfig {
        &self.inner.config
    }

    /// Taken by whatever reads the failure records, one at a time.
    pub fn records(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.records
    }

    /// The token actions need, if actions are enabled.
    pub fn token(&self) -> Option<&str> {
        self.inner.config.token.as_deref()
    }

    /// Each beanstalkd server, in the order given, and whether the poller
    /// reaches it.
    pub fn servers(&self) -> Vec<ServerView> {
        let c = &self.inner.config;
        c.beanstalkd
            .iter()
            .map(|server| ServerView {
                server: server.clone(),
                up: c.metrics.beanstalkd_up(server),
            })
            .collect()
    }

    /// Whether the worker is ready, or one line saying why not.
    ///
    /// # Errors
    ///
    /// What is not ready.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_with(&self.servers())
    }

    fn readiness_with(&self, servers: &[ServerView]) -> Result<(), String> {
        let c = &self.inner.config;
        let wanted = state::wanted_modules(&c.metrics.tenants(), &c.modules_at_start);
        state::readiness(servers, c.ready_when, &wanted, &c.registry.modules())
    }

    /// The `/api/state` document now.
    pub fn state(&self) -> state::State {
        let c = &self.inner.config;
        let tenants = c.metrics.tenants();
        let busy = tenants
            .tenants
            .iter()
            .map(|t| (t.name.clone(), c.metrics.busy_slots(&t.name)))
            .collect();
        let servers = self.servers();
        state::state(Inputs {
            worker: WorkerView {
                version: env!("CARGO_PKG_VERSION"),
                started_at: self.inner.started_at,
                beanstalkd: c.beanstalkd.to_string(),
                up: servers.iter().all(|s| s.up),
                ready: self.readiness_with(&servers).is_ok(),
                actions: c.token.is_some(),
            },
            servers,
            tenants: &tenants,
            busy,
            board: c.metrics.board_snapshot(),
            modules: c.registry.modules(),
        })
    }
}

/// Every route: the read-only ones here, `/api/buried` and the POST
/// actions (each taking [`super::auth::Authorized`] first) from
/// [`super::actions`].
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/state", get(api_state))
        .merge(super::actions::routes())
        .with_state(state)
}

async fn dashboard() -> Response {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, Html(DASHBOARD)).into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        s.config().metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn api_state(State(s): State<AdminState>) -> Response {
    axum::Json(s.state()).into_response()
}

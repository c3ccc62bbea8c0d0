//! The admin listener: Prometheus `/metrics` and the JSON admin API.
//!
//! - `GET /metrics`
//! - `GET /api/v1/state`: TSIs (upstream neighbour and interface, repair states, children),
//!   routes, IGMP memberships
//! - `GET /api/v1/traffic`: per-interface packets and bytes in and out by PGM type, engine
//!   and daemon counters
//! - `POST /api/v1/clear/counters`
//! - `POST /api/v1/clear/repair-state`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::state::Shared;

#[derive(Clone)]
struct App {
    shared: Arc<Mutex<Shared>>,
    metrics: Arc<Metrics>,
    changed: Arc<Notify>,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds `listen` and serves until the process ends. `changed` is notified after a clear,
/// so that the driver re-reads the engine's deadline.
pub(crate) async fn bind(
    listen: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
) -> anyhow::Result<impl Future<Output = ()>> {
    let app = App {
        metrics: Arc::new(Metrics::new(Arc::clone(&shared))),
        shared,
        changed,
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/state", get(state))
        .route("/api/v1/traffic", get(traffic))
        .route("/api/v1/clear/counters", post(clear_counters))
        .route("/api/v1/clear/repair-state", post(clear_repair_state))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "admin API and /metrics listening");
    Ok(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    })
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let text = app.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn state(State(app): State<App>) -> Json<Value> {
    Json(app.lock().state_json())
}

async fn traffic(State(app): State<App>) -> Json<Value> {
    Json(app.lock().traffic_json())
}

async fn clear_counters(State(app): State<App>) -> Json<Value> {
    app.lock().clear_counters();
    tracing::info!("counters cleared through the admin API");
    app.changed.notify_one();
    Json(json!({"cleared": "counters"}))
}

async fn clear_repair_state(State(app): State<App>) -> Json<Value> {
    let n = {
        let mut s = app.lock();
        let n = s.engine.repair_state_count();
        s.engine.clear_repair_state();
        n
    };
    tracing::info!(
        repair_states = n,
        "repair state cleared through the admin API"
    );
    app.changed.notify_one();
    Json(json!({"cleared": "repair-state", "repair_states": n}))
}

//! The admin listener: Prometheus `/metrics` and the JSON admin API.
//!
//! - `GET /metrics`: `pgm_dlr_*` (see [`crate::metrics`])
//! - `GET /api/v1/state`: cache bound and use, and per engine (interface, group, port) its
//!   cache and sessions with their parents
//! - `POST /api/v1/clear/counters`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::state::Shared;

#[derive(Clone)]
struct App {
    shared: Arc<Mutex<Shared>>,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds `listen`; the future serves until the process ends.
pub(crate) async fn bind(
    listen: SocketAddr,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<impl Future<Output = ()>> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/state", get(state))
        .route("/api/v1/clear/counters", post(clear_counters))
        .with_state(App { shared });
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
    let text = crate::metrics::render(&app.lock());
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

async fn clear_counters(State(app): State<App>) -> Json<Value> {
    app.lock().clear_counters();
    tracing::info!("counters cleared through the admin API");
    Json(json!({"cleared": "counters"}))
}

//! Operator endpoints: `/healthz` for load balancers, `/metrics` for Prometheus.

use super::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::time::Duration;

pub async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(3), st.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database error");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database not answering\n"),
    }
}

pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    if let Ok(n) = st.store.pending_send_count().await {
        metrics::gauge!("herald_send_queue_depth").set(n as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
}

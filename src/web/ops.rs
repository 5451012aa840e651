//! Operator endpoints: `/healthz` for load balancers, `/metrics` for Prometheus.

use super::AppState;
use crate::domain::TokenHash;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// 200 "ok" only when the database answers and every background job is making progress;
/// otherwise 503 with one line per problem, so a supervisor restarts what cannot recover.
pub async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    let mut problems = match tokio::time::timeout(Duration::from_secs(3), st.store.ping()).await {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database error");
            vec!["database unavailable".to_string()]
        }
        Err(_) => vec!["database not answering".to_string()],
    };
    problems.extend(st.health.problems());
    metrics::gauge!("herald_healthy").set(if problems.is_empty() { 1.0 } else { 0.0 });
    // Paused receiving domains: herald works, but some readers wait. Still 200, so a load
    // balancer keeps the instance; the first line says `degraded` for whoever watches.
    let paused = if problems.is_empty() {
        st.engine.domains().paused_now().await
    } else {
        Vec::new()
    };
    if problems.is_empty() && paused.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else if problems.is_empty() {
        let lines: Vec<String> = paused
            .iter()
            .map(|p| {
                format!(
                    "delivery: {} paused until {} ({} policy refusals: {})",
                    p.domain,
                    p.paused_until.format("%Y-%m-%d %H:%M:%S UTC"),
                    p.refusals,
                    p.reason
                )
            })
            .collect();
        (StatusCode::OK, format!("degraded\n{}\n", lines.join("\n")))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy\n{}\n", problems.join("\n")),
        )
    }
}

/// `/metrics` on the public listener: served only with `http.metrics_token` and that bearer
/// token, and answered exactly like an unknown page otherwise, so a reader cannot read the
/// signup counters (they would tell whether an address is subscribed).
pub async fn metrics_with_token(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let allowed = match (&st.config.http.metrics_token, super::bearer_token(&headers)) {
        // Compared as hashes: the time taken says nothing about the token.
        (Some(want), Some(got)) => TokenHash::of(got).0 == TokenHash::of(want.expose()).0,
        _ => false,
    };
    if !allowed {
        return super::public::not_found(State(st)).await;
    }
    metrics(State(st)).await.into_response()
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

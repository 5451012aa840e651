//! HTTP: the reader pages (`public.rs`), health and metrics (`ops.rs`). Handlers are thin:
//! parse the request, call one function of a feature module, map the result to a page and
//! a status. No SQL here.

pub mod api;
mod ops;
mod pages;
mod public;
pub mod ratelimit;

use crate::config::Config;
use crate::delivery::DeliveryEngine;
use crate::store::Store;
use crate::subscriptions::Subscriptions;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Everything a handler may use.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub subs: Arc<Subscriptions>,
    pub digests: Arc<crate::digests::Digests>,
    pub engine: Arc<DeliveryEngine>,
    pub limiter: Arc<ratelimit::IpLimiter>,
    pub metrics: PrometheusHandle,
    pub clock: crate::clock::Clock,
    pub health: Arc<crate::jobs::JobHealth>,
}

/// Largest request body we read; a signup form is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(public::subscribe_page))
        .route(
            "/subscribe",
            get(public::subscribe_page).post(public::subscribe),
        )
        .route(
            "/confirm/{token}",
            get(public::confirm_page).post(public::confirm),
        )
        .route(
            "/preferences/{token}",
            get(public::preferences_page).post(public::save_preferences),
        )
        .route(
            "/unsubscribe/{token}",
            get(public::unsubscribe_page).post(public::unsubscribe),
        )
        .route("/healthz", get(ops::healthz))
        // Only with `http.metrics_token` and that bearer token; otherwise "not found".
        .route("/metrics", get(ops::metrics_with_token))
        .nest("/api/v1", api::router(state.clone()))
        .fallback(public::not_found)
        .layer(middleware::from_fn(observe))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// `/metrics` (and `/healthz`) alone, for `http.metrics_listen`: an address only the
/// operator's Prometheus reaches.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .with_state(state)
}

/// The token of an `Authorization: Bearer …` header. The scheme is case-insensitive
/// (RFC 9110 §11.1): `bearer x` is as good as `Bearer x`.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() < 200)
        .then_some(token)
}

/// Count and log each request by its route pattern — never by its URI, which would put
/// tokens into logs and metric labels — and set the security headers every page carries.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let status = res.status().as_u16();
    metrics::counter!("herald_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    tracing::debug!(%method, %route, status, ms = started.elapsed().as_millis() as u64, "request");
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Token URLs must not leak to other sites through Referer.
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the last
/// X-Forwarded-For hop that is not itself a trusted proxy.
pub(crate) fn client_ip(
    config: &Config,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> IpAddr {
    let peer_ip = peer.ip();
    if !config.http.trusted_proxies.contains(&peer_ip) {
        return peer_ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|ip| !config.http.trusted_proxies.contains(ip))
        .unwrap_or(peer_ip)
}

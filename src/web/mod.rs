//! HTTP: the reader pages (`public.rs`), health and metrics (`ops.rs`). Handlers are thin:
//! parse the request, call one function of a feature module, map the result to a page and
//! a status. No SQL here.

pub mod api;
mod archive;
mod console;
mod ops;
mod pages;
mod public;
pub mod ratelimit;
pub mod server;

use crate::config::Config;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Everything a handler may use: the services `herald serve` runs with (through `Deref`,
/// so `st.config`, `st.store`, `st.subs` … are theirs, never copies that could drift), and
/// what only the web side keeps.
#[derive(Clone)]
pub struct AppState {
    pub services: crate::Services,
    pub limiter: Arc<ratelimit::IpLimiter>,
    pub metrics: PrometheusHandle,
    /// Failed console logins, per account and per client.
    pub logins: Arc<crate::access::LoginLimiter>,
}

impl std::ops::Deref for AppState {
    type Target = crate::Services;
    fn deref(&self) -> &crate::Services {
        &self.services
    }
}

impl AppState {
    /// An absolute URL at herald's public address (`http.public_url`, its path included),
    /// for `path` (which starts with `/`).
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.config.http.public_url)
    }
}

/// The fields of a form (a body or a query string) in order, repeated names kept (a
/// group of checkboxes sends one `sections=` per ticked box).
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

const MALFORMED_MULTIPART: &str = "what was sent is not a well-formed multipart/form-data body; \
     an HTML form sends application/x-www-form-urlencoded or multipart/form-data";

/// The fields of a form as browsers send it: `application/x-www-form-urlencoded` (also
/// when no type is given) or `multipart/form-data`. Any other type is an error naming it,
/// for a 415: a body herald did not understand must never read as an empty form.
pub(crate) async fn form_fields(
    headers: &axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Vec<(String, String)>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(form_pairs(&body));
    }
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!(
            "this form is sent as application/x-www-form-urlencoded or multipart/form-data (an HTML form), not {media}"
        ));
    }
    use axum::extract::FromRequest;
    let req = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body))
        .map_err(|e| e.to_string())?;
    let mut parts = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| format!("{MALFORMED_MULTIPART} ({e})"))?;
    let mut out = Vec::new();
    loop {
        match parts.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                // A file field has no place in these forms; its bytes are not text.
                if field.file_name().is_some() {
                    continue;
                }
                let value = field
                    .text()
                    .await
                    .map_err(|e| format!("a field of the form could not be read: {e}"))?;
                out.push((name, value));
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("{MALFORMED_MULTIPART} ({e})")),
        }
    }
}

/// Largest request body we read; a signup form is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;
/// A body declared larger than [`BODY_LIMIT`] but no larger than this is read and thrown
/// away before the 413, so the answer reaches the client (see `observe`).
const DRAIN_MAX: usize = 1024 * 1024;

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
        .route("/archive/{schedule}", get(archive::index))
        .route("/archive/{schedule}/{issue}", get(archive::issue))
        .route("/healthz", get(ops::healthz))
        // Only with `http.metrics_token` and that bearer token; otherwise "not found".
        .route("/metrics", get(ops::metrics_with_token))
        .nest("/api/v1", api::router(state.clone()))
        .nest("/admin", console::router(&state))
        // The console lives at /admin; with a slash, send the browser there.
        .route(
            "/admin/",
            get(|| async { axum::response::Redirect::permanent("../admin") }),
        )
        .fallback(public::not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        // Bounds a request whose body trickles in (the header timeout is the server's).
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.config.http.request_timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Outermost, so every response — a 413 from the body limit, a 500 from a panic —
        // is counted and carries the security headers.
        .layer(middleware::from_fn_with_state(state.clone(), observe))
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
async fn observe(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let api = req.uri().path().starts_with("/api/");
    let method = req.method().clone();
    let started = std::time::Instant::now();
    // A body declared too large is answered before the handler, but only after reading it
    // (up to DRAIN_MAX): a server that answers and closes with the body still unread makes
    // the kernel reset the connection, and the client often sees "connection reset"
    // instead of the answer (CI saw it on the 413 test).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut res = match declared {
        Some(len) if len > BODY_LIMIT as u64 => {
            if len <= DRAIN_MAX as u64 {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    axum::body::to_bytes(req.into_body(), DRAIN_MAX),
                )
                .await;
            }
            // Made into the site's page or the API's JSON just below.
            axum::response::IntoResponse::into_response(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        }
        // Everything logged while answering carries the route (never the URI: tokens).
        _ => {
            use tracing::Instrument;
            let span = tracing::info_span!("request", %method, %route);
            next.run(req).instrument(span).await
        }
    };
    // The body limit answers in plain text (tower-http, or axum when a body outgrows it
    // while read); say it the way the rest of the site or the API says errors.
    let plain = || {
        res.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("text/plain"))
    };
    if res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && plain() {
        res = if api {
            api::error(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large (limit {} KiB)", BODY_LIMIT / 1024),
            )
        } else {
            public::too_large(&st)
        };
    }
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

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// hop of the standard `Forwarded` header (RFC 7239), or else of `X-Forwarded-For`, that is
/// not itself a trusted proxy. Hops may carry ports (`1.2.3.4:5678`, `[2001:db8::1]:443`).
/// A hop that names no address (`unknown`, an obfuscated `_id`, garbage) ends the walk: what
/// lies left of it came from an untrusted party and could be forged, so that hop gets a
/// bucket of its own (an address in `fd00::/8` derived from its text) rather than the
/// proxy's, which every client would share.
pub(crate) fn client_ip(
    config: &Config,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> IpAddr {
    let peer_ip = peer.ip();
    let trusted = &config.http.trusted_proxies;
    if !trusted.contains(&peer_ip) {
        return peer_ip;
    }
    let hops: Vec<String> = if headers.contains_key(header::FORWARDED) {
        forwarded_for_hops(headers)
    } else {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect()
    };
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if trusted.contains(&ip) => continue,
            Some(ip) => return ip,
            None => return opaque_hop(hop),
        }
    }
    peer_ip
}

/// The `for=` values of every `Forwarded` element, in order.
fn forwarded_for_hops(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .collect()
}

/// An address from one hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// A stable stand-in address for a hop that names none, for the per-IP rate limit.
fn opaque_hop(hop: &str) -> IpAddr {
    use sha2::Digest;
    let d = sha2::Sha256::digest(hop.to_ascii_lowercase().as_bytes());
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..].copy_from_slice(&d[..15]);
    IpAddr::V6(std::net::Ipv6Addr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn ip_for(headers: &[(&str, &str)]) -> IpAddr {
        let config =
            Config::defaults_with(&[("http.trusted_proxies", "10.0.0.1, 10.0.0.2")]).unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        client_ip(&config, "10.0.0.1:40000".parse().unwrap(), &h)
    }

    #[test]
    fn forwarded_hops_with_ports_and_the_standard_header() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_for(&[("x-forwarded-for", "1.2.3.4")]), ip("1.2.3.4"));
        assert_eq!(
            ip_for(&[("x-forwarded-for", "1.2.3.4:5678")]),
            ip("1.2.3.4")
        );
        assert_eq!(
            ip_for(&[("x-forwarded-for", "9.9.9.9, [2001:db8::7]:443, 10.0.0.2")]),
            ip("2001:db8::7")
        );
        assert_eq!(
            ip_for(&[(
                "forwarded",
                r#"for=9.9.9.9, for="[2001:db8::17]:4711";proto=https"#
            )]),
            ip("2001:db8::17")
        );
        assert_eq!(
            ip_for(&[("Forwarded", "proto=http;For=203.0.113.9:1234;by=10.0.0.2")]),
            ip("203.0.113.9")
        );
        // Forwarded wins over X-Forwarded-For when both are there.
        assert_eq!(
            ip_for(&[("x-forwarded-for", "5.5.5.5"), ("forwarded", "for=6.6.6.6")]),
            ip("6.6.6.6")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(ip_for(&[]), ip("10.0.0.1"));
    }

    #[test]
    fn a_hop_without_an_address_is_its_own_bucket_and_stops_the_walk() {
        let unknown = ip_for(&[("x-forwarded-for", "9.9.9.9, unknown")]);
        assert_ne!(
            unknown,
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "not the proxy's bucket"
        );
        assert_ne!(
            unknown,
            "9.9.9.9".parse::<IpAddr>().unwrap(),
            "left of it may be forged"
        );
        assert_eq!(unknown, ip_for(&[("x-forwarded-for", "8.8.8.8, UNKNOWN")]));
        assert_ne!(unknown, ip_for(&[("forwarded", "for=_hidden")]));
    }
}

//! `/admin/login` and `/admin/logout`.

use super::{Chrome, ConsoleError, Page, Viewer, cookie_spec, read_cookie, root, set_cookie};
use crate::access::LoginRefused;
use crate::web::{AppState, client_ip};
use askama::Template;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use std::net::SocketAddr;

/// The login form's own CSRF token (double submit: a cookie and the same value in the
/// form), so nobody can log a browser in to an account of theirs from another site. Its name
/// takes the strongest prefix the address allows, as the session's does: a `__Host-` cookie
/// cannot be set by another subdomain or port of the site ("cookie tossing").
fn login_cookie(spec: &super::CookieSpec) -> &'static str {
    match spec.name {
        "__Host-herald_session" => "__Host-herald_login",
        "__Secure-herald_session" => "__Secure-herald_login",
        _ => "herald_login",
    }
}

/// Whether the form was posted from herald's own pages. Browsers say where a request comes
/// from in `Sec-Fetch-Site` (anything but `same-origin` is refused: a sibling subdomain or
/// port is `same-site`) and in `Origin` (refused if another origin; herald's pages send no
/// referrer, so browsers may send `null` there, which says nothing). A request with neither
/// (not a browser's) is left to the token.
fn same_origin(st: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let ours = url::Url::parse(&st.config.http.public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    origin.to_str().is_ok_and(|o| o == "null" || o == ours)
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    name: String,
    csrf: String,
    error: Option<String>,
    /// The console page to go to after logging in (checked again when the form comes back).
    next: String,
}

/// The form, with a fresh login token in a cookie and in the form.
fn login_form(
    st: &AppState,
    status: StatusCode,
    name: String,
    error: Option<String>,
    next: String,
) -> Page {
    let csrf = crate::domain::RandomToken::generate().as_str().to_string();
    let spec = cookie_spec(st);
    let body = LoginPage {
        chrome: Chrome::anonymous(st),
        name,
        csrf: csrf.clone(),
        error,
        next,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    let mut res = (status, Html(body)).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            login_cookie(&spec),
            &csrf,
            &spec.path,
            spec.secure,
            Some(3600),
        ),
    );
    Ok(res)
}

/// `?next=`: the console page the browser asked for before it was sent here.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Next {
    next: String,
}

pub(super) async fn login_page(
    State(st): State<AppState>,
    super::Query(Next { next }): super::Query<Next>,
) -> Page {
    let next = if super::safe_next(&next) {
        next
    } else {
        String::new()
    };
    login_form(&st, StatusCode::OK, String::new(), None, next)
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub(super) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Page {
    let expected = read_cookie(&headers, login_cookie(&cookie_spec(&st)));
    if expected.is_none_or(|c| c.len() != f.csrf.len() || c != f.csrf)
        || !same_origin(&st, &headers)
    {
        return Err(ConsoleError::BadCsrf);
    }
    let client = client_ip(&st.config, peer, &headers).to_string();
    let lifetime = st.config.console.session_lifetime.as_chrono();
    let name = f.name.trim().to_string();
    match crate::access::log_in(
        st.store.as_ref(),
        &st.logins,
        &name,
        &f.password,
        &client,
        st.clock.now(),
        lifetime,
    )
    .await?
    {
        Ok(session) => {
            tracing::info!(user = %session.user.name, "console login");
            login_audit(&st, &session.user.name, &client, "ok").await;
            metrics::counter!("herald_console_logins_total", "outcome" => "ok").increment(1);
            let spec = cookie_spec(&st);
            // A new login in this browser ends the session it had (someone else's, perhaps,
            // on a shared computer), not only replaces its cookie.
            if let Some(old) = read_cookie(&headers, spec.name) {
                crate::access::log_out(st.store.as_ref(), &old).await?;
            }
            // Back to the page asked for, if it is one of the console's; else the dashboard.
            let to = if super::safe_next(&f.next) {
                format!("{}{}", root(&st), f.next)
            } else {
                root(&st)
            };
            let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    spec.name,
                    &session.cookie,
                    &spec.path,
                    spec.secure,
                    Some(lifetime.num_seconds()),
                ),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(login_cookie(&spec), "", &spec.path, spec.secure, Some(0)),
            );
            Ok(res)
        }
        // One answer for an unknown name and a wrong password.
        Err(LoginRefused::Wrong) => {
            metrics::counter!("herald_console_logins_total", "outcome" => "refused").increment(1);
            login_audit(&st, &name, &client, "refused: wrong name or password").await;
            login_form(
                &st,
                StatusCode::UNAUTHORIZED,
                name,
                Some("The name or the password is wrong.".into()),
                f.next,
            )
        }
        Err(LoginRefused::Limited(wait)) => {
            metrics::counter!("herald_console_logins_total", "outcome" => "limited").increment(1);
            let mut page = login_form(
                &st,
                StatusCode::TOO_MANY_REQUESTS,
                name,
                Some(format!(
                    "Too many failed logins. Try again in {}.",
                    match wait {
                        1 => "a second".to_string(),
                        2..60 => format!("{wait} seconds"),
                        _ => format!("{} minutes", (wait + 59) / 60),
                    }
                )),
                f.next,
            )?;
            page.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from(wait as u64),
            );
            Ok(page)
        }
    }
}

/// A login, or a refused one, in the audit log (under the name typed, cut to 64
/// characters). Throttled tries are not: they checked nothing (they are WARN lines).
async fn login_audit(st: &AppState, name: &str, client: &str, outcome: &str) {
    let entry = crate::audit::NewAudit {
        at: st.clock.now(),
        actor: name.chars().take(64).collect(),
        via: crate::audit::Via::Console,
        address: Some(client.to_string()),
        action: "console login".into(),
        subject: String::new(),
        outcome: outcome.into(),
    };
    crate::audit::record(st.store.as_ref(), entry).await;
}

#[derive(serde::Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn logout(State(st): State<AppState>, v: Viewer, Form(f): Form<CsrfForm>) -> Page {
    if !crate::access::csrf_ok(&v.session, &f.csrf) {
        return Err(ConsoleError::BadCsrf);
    }
    crate::access::log_out(st.store.as_ref(), &v.cookie).await?;
    let spec = cookie_spec(&st);
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{}/login", root(&st)))],
    )
        .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(spec.name, "", &spec.path, spec.secure, Some(0)),
    );
    Ok(res)
}

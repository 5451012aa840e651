//! The staff and operator console at `{public_url}/admin`: server-rendered pages (askama),
//! every one usable without JavaScript.
//!
//! Access: people added with `herald users add` log in at `/admin/login`; their session is
//! a random cookie whose hash is kept in the database (a restart logs nobody out, several
//! instances share the sessions), ended by logout, by `console.session_idle` without use and
//! by `console.session_lifetime` after the login. Every state-changing form carries the
//! session's CSRF token; the login form a double-submit token of its own. `operator` reads
//! everything, `staff` may also change and send; a forbidden action answers 403.
//!
//! The console sends a CSP of its own, stricter than the reader pages': no inline style or
//! script at all (its stylesheet is `/admin/console.css`), forms only to itself, no framing.

mod articles;
mod audit;
mod auth;
mod dashboard;
mod issues;
mod log;
mod returned;
mod schedules;
mod sections;
mod subscribers;

use super::AppState;
use crate::store::{ConsoleSession, Role};
use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/sections", get(sections::page).post(sections::add))
        .route("/sections/{slug}", get(sections::show).post(sections::edit))
        .route("/articles", get(articles::list).post(articles::add))
        .route("/articles/{id}", get(articles::show).post(articles::edit))
        .route("/articles/{id}/hold", post(articles::hold))
        .route("/articles/{id}/withdraw", post(articles::withdraw))
        .route("/articles/{id}/restore", post(articles::restore))
        .route("/schedules", get(schedules::page).post(schedules::add))
        .route("/schedules/check", get(schedules::check_fragment))
        .route(
            "/schedules/{name}",
            get(schedules::show).post(schedules::edit),
        )
        .route(
            "/schedules/{name}/preview.html",
            get(schedules::preview_html),
        )
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/schedules/{name}/send", post(schedules::send_now))
        .route("/schedules/{name}/remove", post(schedules::remove))
        .route("/issues", get(issues::list))
        .route("/issues/{id}", get(issues::show))
        .route("/issues/{id}/retry", post(issues::retry))
        .route("/issues/{id}/stop", post(issues::stop))
        .route("/issues/{id}/progress", get(issues::progress))
        .route("/log", get(log::page))
        .route("/sends/retry", post(log::retry))
        .route("/subscribers", get(subscribers::list))
        .route("/subscribers/{id}", get(subscribers::show))
        .route("/subscribers/{id}/export.json", get(subscribers::export))
        .route("/subscribers/{id}/erase", post(subscribers::erase))
        .route("/bounces", get(returned::list))
        .route("/bounces/{id}", get(returned::show))
        .route(
            "/suppressions",
            get(returned::suppressions).post(returned::add),
        )
        .route("/suppressions/lift", post(returned::lift))
        .route("/audit", get(audit::page))
        .route("/audit.csv", get(audit::csv))
        .route("/console.css", get(stylesheet))
        .route("/console.js", get(script))
        .route("/icon.svg", get(icon))
        .layer(middleware::from_fn_with_state(state.clone(), failures))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(middleware::from_fn(console_headers))
}

/// Every POST of the console (but the login form, which has a double-submit token of its
/// own) passes here before its handler: it needs a live session, this session's CSRF token
/// in the form, and the staff role (logging out needs the token only). A handler added
/// later cannot forget the check: there is no way around this layer. What it refuses is
/// answered with the viewer's own navigation bar; what it lets through carries the viewer,
/// so the handler does not look the session up again.
async fn gate(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != axum::http::Method::POST || req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let logout = req.uri().path() == "/logout";
    let (mut parts, body) = req.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &st).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    // The size is bounded by the router's body limit, outside this layer.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let fields = match super::form_fields(&parts.headers, bytes.clone()).await {
        Ok(fields) => FormFields(fields),
        Err(why) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, why).into_response(),
    };
    let csrf = fields.get("csrf");
    let refused = if !crate::access::csrf_ok(&viewer.session, &csrf) {
        Some(ConsoleError::BadCsrf)
    } else if !logout && !viewer.session.role.may_change() {
        Some(ConsoleError::Forbidden)
    } else {
        None
    };
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let address = peer.map(|p| super::client_ip(&st.config, p, &parts.headers).to_string());
    let (action, subject) = crate::audit::action_of("POST", parts.uri.path());
    let entry = |outcome: String| crate::audit::NewAudit {
        at: st.clock.now(),
        actor: viewer.session.name.clone(),
        via: crate::audit::Via::Console,
        address: address.clone(),
        action: action.clone(),
        subject: subject.clone(),
        outcome,
    };
    if let Some(e) = refused {
        // A change the role does not allow is worth knowing about; a stale or forged token
        // is not this user's doing.
        if matches!(e, ConsoleError::Forbidden) {
            crate::audit::record(st.store.as_ref(), entry("refused: not staff".into())).await;
        }
        let chrome = viewer.chrome(&st, "");
        return e.respond_in(&st, chrome);
    }
    // The handler gets both as read here: no second session lookup, no second parse.
    parts.extensions.insert(viewer.clone());
    parts.extensions.insert(fields);
    let res = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    // What was done: a change that went through (its page, or where it sent the browser).
    // A refused form (4xx) changed nothing.
    let status = res.status();
    if status.is_success() || status.is_redirection() {
        let outcome = match res.headers().get(header::LOCATION) {
            Some(to) => format!(
                "ok, then {}",
                crate::audit::page_of(to.to_str().unwrap_or("?"))
            ),
            None => "ok".to_string(),
        };
        crate::audit::record(st.store.as_ref(), entry(outcome)).await;
    }
    res
}

/// The console's own CSP, set before the site-wide headers (which only fill in what is
/// missing); a page with a policy of its own (a digest's HTML preview) keeps it.
async fn console_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if !res.headers().contains_key(header::CONTENT_SECURITY_POLICY) {
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    res
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/console/console.css"),
    )
        .into_response()
}

/// The console's little script: progressive enhancement only, every page works without it.
async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/console/console.js"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../../templates/console/icon.svg"),
    )
        .into_response()
}

/// A point in time as templates hold it: a `DateTime<Utc>`, or a reference to one (however
/// many `if let` and `for` bindings deep).
pub(crate) trait Moment {
    fn utc(&self) -> chrono::DateTime<chrono::Utc>;
}

impl Moment for chrono::DateTime<chrono::Utc> {
    fn utc(&self) -> chrono::DateTime<chrono::Utc> {
        *self
    }
}

impl<T: Moment + ?Sized> Moment for &T {
    fn utc(&self) -> chrono::DateTime<chrono::Utc> {
        (**self).utc()
    }
}

/// A count as templates hold it: a number, or a reference to one.
pub(crate) trait Count {
    fn get(&self) -> i64;
}

macro_rules! count {
    ($($t:ty),*) => {$(
        impl Count for $t {
            fn get(&self) -> i64 {
                i64::try_from(*self).unwrap_or(i64::MAX)
            }
        }
    )*};
}
count!(i64, i32, u32, u64, usize);

impl<T: Count + ?Sized> Count for &T {
    fn get(&self) -> i64 {
        (**self).get()
    }
}

/// The zone's abbreviation at `t` ("CET", "CEST"), or its UTC offset where the zone has
/// no letters for it ("+03"); "UTC" for UTC.
pub(crate) fn zone_name(zone: &chrono_tz::Tz, t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(zone).format("%Z").to_string()
}

/// Whether `next` may be where a login sends the browser: a path under the console (it is
/// put after the console's own address), never another site (`//host`, `\\host`), at most
/// 500 characters, no control characters.
pub(crate) fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 500
        && !crate::domain::has_control_chars(next)
}

/// `{public_url}/admin`.
pub(crate) fn root(st: &AppState) -> String {
    st.public_url("/admin")
}

/// What every console page shows around its content.
pub(crate) struct Chrome {
    pub site_name: String,
    pub root: String,
    pub user: Option<Who>,
    /// Which navigation entry is this page.
    pub here: &'static str,
    /// The newsroom's time zone (`site.timezone`): every time on the page is shown in it.
    pub zone: chrono_tz::Tz,
}

pub(crate) struct Who {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

impl Chrome {
    /// A time as the console shows it: in the newsroom's zone, the zone named, to the
    /// minute, with the UTC time on hover and in `datetime`. Only digits, letters of the
    /// zone's abbreviation and punctuation: safe to put in the page as it is (`|safe`).
    pub fn at(&self, t: impl Moment) -> String {
        self.time(t.utc(), "%Y-%m-%d %H:%M")
    }

    /// [`Chrome::at`], to the second.
    pub fn at_s(&self, t: impl Moment) -> String {
        self.time(t.utc(), "%Y-%m-%d %H:%M:%S")
    }

    fn time(&self, t: chrono::DateTime<chrono::Utc>, format: &str) -> String {
        format!(
            r#"<time datetime="{}" title="{} UTC">{} {}</time>"#,
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            t.format("%Y-%m-%d %H:%M:%S"),
            t.with_timezone(&self.zone).format(format),
            zone_name(&self.zone, t),
        )
    }

    /// A time typed in field `field` of a form (empty: none), or the reason it is not one
    /// pushed onto `errors` — said the same way on every form.
    pub fn read_time_field(
        &self,
        field: &'static str,
        text: &str,
        errors: &mut Vec<(&'static str, String)>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if text.trim().is_empty() {
            return None;
        }
        let t = self.read_time(text);
        if t.is_none() {
            errors.push((
                field,
                format!("A date and time, like 2026-03-02 07:00 ({}).", self.zone),
            ));
        }
        t
    }

    /// A time typed into a filter (`datetime-local` sends `2026-03-02T07:00`; a date alone, or
    /// a space for the `T`, is taken too), read in the newsroom's zone.
    pub fn read_time(&self, s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        let s = s.trim().replace(' ', "T");
        let naive = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(&s, f).ok())
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })?;
        // A time the clocks skip (spring forward) does not exist: the moment after the gap;
        // one they pass twice (autumn), the first.
        let local = self.zone.from_local_datetime(&naive);
        local
            .earliest()
            .or_else(|| {
                self.zone
                    .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// A count with thousands separators ("12,345"): the console is in English.
    pub fn n(&self, n: impl Count) -> String {
        let n = n.get();
        let digits = n.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if n < 0 {
            out.push('-');
        }
        for (i, d) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(d);
        }
        out
    }

    /// Whether the viewer may change things (their forms are shown): staff.
    pub fn staff(&self) -> bool {
        self.user.as_ref().is_some_and(|w| w.role.may_change())
    }

    /// The viewer's CSRF token, for the forms of the page (empty for nobody).
    pub fn csrf(&self) -> &str {
        self.user.as_ref().map_or("", |w| w.csrf.as_str())
    }

    /// For a page shown to nobody logged in (the login page, an error).
    pub fn anonymous(st: &AppState) -> Self {
        Self {
            site_name: st.config.site.name.clone(),
            root: root(st),
            user: None,
            here: "",
            zone: st.config.site.timezone,
        }
    }
}

/// The session cookie, named and scoped as RFC 6265bis allows: `__Host-` (Secure, Path=/,
/// no Domain) when herald is at the root of an https address; `__Secure-` and the console's
/// path when it is behind one; a plain name on http (a trial on loopback).
pub(crate) struct CookieSpec {
    pub name: &'static str,
    pub path: String,
    pub secure: bool,
}

pub(crate) fn cookie_spec(st: &AppState) -> CookieSpec {
    let url = url::Url::parse(&st.config.http.public_url).ok();
    let secure = url.as_ref().is_some_and(|u| u.scheme() == "https");
    let prefix = url
        .as_ref()
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    match (secure, prefix.is_empty()) {
        (true, true) => CookieSpec {
            name: "__Host-herald_session",
            path: "/".into(),
            secure,
        },
        (true, false) => CookieSpec {
            name: "__Secure-herald_session",
            path: format!("{prefix}/admin"),
            secure,
        },
        (false, _) => CookieSpec {
            name: "herald_session",
            path: format!("{prefix}/admin"),
            secure,
        },
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax (a link from a mail opens the console
/// logged in; a form posted from elsewhere carries no cookie), Secure on https.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut v = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if secure {
        v.push_str("; Secure");
    }
    if let Some(age) = max_age {
        v.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&v).expect("cookie values are URL-safe base64")
}

/// The value of cookie `name` in the request.
pub(crate) fn read_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() < 200)
}

/// Whoever is logged in. A page without a live session sends the browser to the login
/// page.
#[derive(Clone)]
pub(crate) struct Viewer {
    pub session: ConsoleSession,
    pub cookie: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        // Already looked up by the gate (a POST).
        if let Some(v) = parts.extensions.get::<Viewer>() {
            return Ok(v.clone());
        }
        let spec = cookie_spec(st);
        // Where to come back to, worked out only when the login page is the answer: a page
        // asked for, not a form posted (nor the dashboard, where a login goes anyway).
        let back = || {
            (parts.method == axum::http::Method::GET)
                .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_string()))
                .flatten()
                .filter(|p| p != "/" && safe_next(p))
        };
        let Some(cookie) = read_cookie(&parts.headers, spec.name) else {
            return Err(ConsoleError::LogIn(back()).respond(st));
        };
        let idle = st.config.console.session_idle.as_chrono();
        match crate::access::session(st.store.as_ref(), &cookie, st.clock.now(), idle).await {
            Ok(Some(session)) => Ok(Viewer { session, cookie }),
            Ok(None) => Err(ConsoleError::LogIn(back()).respond(st)),
            Err(e) => Err(ConsoleError::from(e).respond(st)),
        }
    }
}

/// The `before` of the next (older) page of a keyset-paged list: the last id shown, when
/// the page was full.
pub(crate) fn next_page<T>(rows: &[T], page: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    (rows.len() as i64 == page)
        .then(|| rows.last().map(id))
        .flatten()
}

/// A POST's form as the gate read it, handed on to [`Change`].
#[derive(Clone)]
struct FormFields(Vec<(String, String)>);

impl FormFields {
    /// A field's value, trimmed; empty when the form did not send it.
    fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }
}

/// A console change, as a handler takes it: who asked, and their form as the handler
/// declares it (`T`, a `Deserialize` struct; a repeated field, such as a checkbox list, into
/// a `Vec`). Made only with this session's CSRF token and the staff role (the gate checks
/// both before any handler; this says it again, so a handler taking a `Change` cannot be
/// reached without). A form that does not fit `T` is a 400 page.
pub(crate) struct Change<T = NoFields> {
    pub v: Viewer,
    pub form: T,
}

/// For a change that is only a button: no fields but the CSRF token.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct NoFields {}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<AppState> for Change<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let v = Viewer::from_request_parts(&mut parts, st).await?;
        let fields = match parts.extensions.remove::<FormFields>() {
            Some(read) => read,
            // Not through the gate (it covers every console POST): read it here.
            None => {
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
                let fields = super::form_fields(&parts.headers, bytes)
                    .await
                    .map_err(|why| (StatusCode::UNSUPPORTED_MEDIA_TYPE, why).into_response())?;
                FormFields(fields)
            }
        };
        if let Err(e) = v.may_change(&fields.get("csrf")) {
            let chrome = v.chrome(st, "");
            return Err(e.respond_in(st, chrome));
        }
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        for (k, val) in &fields.0 {
            encoded.append_pair(k, val.trim());
        }
        let form =
            decode(&encoded.finish(), "form").map_err(|e| e.respond_in(st, v.chrome(st, "")))?;
        Ok(Change { v, form })
    }
}

/// A page's query string as the handler declares it (`T`, a `Deserialize` struct, values
/// trimmed); one that does not fit is a 400 page.
pub(crate) struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ConsoleError> {
        let raw = parts.uri.query().unwrap_or("");
        let trimmed: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k, v.trim().to_string())),
            )
            .finish();
        decode(&trimmed, "address").map(Query)
    }
}

fn decode<T: serde::de::DeserializeOwned>(encoded: &str, what: &str) -> Result<T, ConsoleError> {
    serde_html_form::from_str(encoded)
        .map_err(|e| ConsoleError::BadRequest(format!("The {what} could not be read ({e})")))
}

/// A checkbox or a `1` in a link: on when sent with any value but `0`.
pub(crate) fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = <String as serde::Deserialize>::deserialize(d)?;
    Ok(!v.is_empty() && v != "0")
}

/// A number in a link that may be left empty.
pub(crate) fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = <String as serde::Deserialize>::deserialize(d)?;
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{v:?} is not a number")))
}

/// What console handlers return: a page, or the page that says what went wrong.
pub(crate) type Page = Result<Response, ConsoleError>;

/// A page as the answer, with `status`.
pub(crate) fn html(status: StatusCode, page: impl Template) -> Page {
    let body = page.render().map_err(ConsoleError::internal)?;
    Ok((status, axum::response::Html(body)).into_response())
}

/// After a change: send the browser to `path` under the console (303, so a reload does
/// not post the form again).
pub(crate) fn see_other(st: &AppState, path: &str) -> Page {
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{}{path}", root(st)))],
    )
        .into_response())
}

/// The query string of a page's filters, those left empty left out (for its pager's links).
pub(crate) fn query_string(fields: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

/// What a form said a user got wrong, by field, shown next to that field.
#[derive(Default, Debug)]
pub(crate) struct FieldErrors(Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn one(field: &'static str, message: impl Into<String>) -> Self {
        Self(vec![(field, message.into())])
    }

    /// The answer to a filter form: 400 when a field could not be read, else 200.
    pub fn status(&self) -> StatusCode {
        if self.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

impl From<Vec<(&'static str, String)>> for FieldErrors {
    fn from(v: Vec<(&'static str, String)>) -> Self {
        Self(v)
    }
}

impl Viewer {
    pub fn chrome(&self, st: &AppState, here: &'static str) -> Chrome {
        Chrome {
            site_name: st.config.site.name.clone(),
            root: root(st),
            user: Some(Who {
                name: self.session.name.clone(),
                role: self.session.role,
                csrf: self.session.csrf.clone(),
            }),
            here,
            zone: st.config.site.timezone,
        }
    }

    /// A change: only staff, and only with this session's CSRF token. The gate of every
    /// console POST already checked both; handlers say it again where they read the form.
    pub fn may_change(&self, csrf: &str) -> Result<(), ConsoleError> {
        if !crate::access::csrf_ok(&self.session, csrf) {
            return Err(ConsoleError::BadCsrf);
        }
        if !self.session.role.may_change() {
            return Err(ConsoleError::Forbidden);
        }
        Ok(())
    }
}

/// Every way a console request fails, as the page that says so.
#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// Not logged in (or the session ended): to the login page, and back to this page
    /// (its path under the console) after it.
    LogIn(Option<String>),
    /// Logged in, but the role may not do this.
    Forbidden,
    /// The form's CSRF token is missing or not this session's.
    BadCsrf,
    /// No such thing (a schedule, an issue, a subscriber): what, in words.
    NotFound(String),
    /// The change collides with what is there (a name taken): what, in words.
    Conflict(String),
    /// The request's form or query could not be read: why, in words.
    BadRequest(String),
    /// herald's fault: logged with its causes, the page says only that it went wrong.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ConsoleError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConsoleError::Internal(Box::new(e))
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        // The store's own words for these are meant for people ("section wmd already
        // exists"); anything else is herald's fault and stays in the log.
        match e {
            StoreError::NotFound(what) => ConsoleError::NotFound(what),
            StoreError::Conflict(what) => ConsoleError::Conflict(what),
            other => ConsoleError::internal(other),
        }
    }
}

/// A handler's error on its way out: [`failures`] renders it with the viewer's chrome.
#[derive(Clone)]
struct Unrendered(std::sync::Arc<std::sync::Mutex<Option<ConsoleError>>>);

impl IntoResponse for ConsoleError {
    /// A placeholder that carries the error: the page needs the viewer, which the
    /// [`failures`] layer around every console handler looks up.
    fn into_response(self) -> Response {
        let mut res = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        res.extensions_mut()
            .insert(Unrendered(std::sync::Arc::new(std::sync::Mutex::new(
                Some(self),
            ))));
        res
    }
}

/// Around every console handler: an error a handler returned becomes its page, with the
/// viewer's navigation bar when someone is logged in (their session is looked up again
/// only then, on the way out of a failed request).
async fn failures(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // All the viewer's look-up reads, kept for the rare error page (not every header of
    // every request).
    let cookies: Vec<HeaderValue> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .cloned()
        .collect();
    let res = next.run(req).await;
    let Some(failure) = res.extensions().get::<Unrendered>() else {
        return res;
    };
    let Some(e) = failure.0.lock().expect("failure lock").take() else {
        return res;
    };
    let mut viewer_req = Request::new(axum::body::Body::empty());
    for c in cookies {
        viewer_req.headers_mut().append(header::COOKIE, c);
    }
    let (mut parts, _) = viewer_req.into_parts();
    let chrome = match Viewer::from_request_parts(&mut parts, &st).await {
        Ok(v) => v.chrome(&st, ""),
        Err(_) => Chrome::anonymous(&st),
    };
    e.respond_in(&st, chrome)
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: &'static str,
    text: String,
}

impl ConsoleError {
    /// The answer, for nobody logged in (`st` is needed for the links).
    pub fn respond(self, st: &AppState) -> Response {
        self.respond_in(st, Chrome::anonymous(st))
    }

    /// The answer inside `chrome`: a logged-in viewer keeps the navigation bar on an
    /// error page, so the way on is one click.
    fn respond_in(self, st: &AppState, chrome: Chrome) -> Response {
        let page = |status: StatusCode, heading: &'static str, text: String| {
            let body = ErrorPage {
                chrome,
                heading,
                text,
            }
            .render()
            .unwrap_or_else(|_| heading.to_string());
            (status, axum::response::Html(body)).into_response()
        };
        match self {
            ConsoleError::LogIn(back) => {
                let to = match back {
                    Some(next) => {
                        format!("{}/login?{}", root(st), query_string(&[("next", &next)]))
                    }
                    None => format!("{}/login", root(st)),
                };
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
            }
            ConsoleError::Forbidden => page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role (operator) may look, not change. Ask someone with the staff role."
                    .into(),
            ),
            ConsoleError::BadCsrf => page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "It did not come from this session. Reload the page and try again.".into(),
            ),
            ConsoleError::NotFound(what) => page(StatusCode::NOT_FOUND, "Not found", what),
            ConsoleError::Conflict(what) => page(
                StatusCode::CONFLICT,
                "That clashes with what is there",
                format!("{what}. Nothing was changed."),
            ),
            ConsoleError::BadRequest(why) => page(
                StatusCode::BAD_REQUEST,
                "This request could not be read",
                format!("{why}. Go back, reload the page and try again."),
            ),
            ConsoleError::Internal(cause) => {
                let error = crate::telemetry::error_chain(cause.as_ref());
                tracing::error!(%error, "console request failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The error is in herald's log. Please try again in a moment.".into(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn berlin() -> Chrome {
        Chrome {
            site_name: "x".into(),
            root: "/admin".into(),
            user: None,
            here: "",
            zone: chrono_tz::Europe::Berlin,
        }
    }

    #[test]
    fn counts_have_thousands_separators() {
        let c = berlin();
        for (n, shown) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1234567, "1,234,567"),
            (-1234, "-1,234"),
        ] {
            assert_eq!(c.n(n), shown);
        }
    }

    /// Typed times are the newsroom's wall clock, across both changes of the clocks.
    #[test]
    fn typed_times_are_read_in_the_newsrooms_zone() {
        let c = berlin();
        let utc = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert_eq!(
            c.read_time("2026-03-02 08:00"),
            Some(utc("2026-03-02T07:00:00Z"))
        );
        assert_eq!(
            c.read_time("2026-07-01T08:30"),
            Some(utc("2026-07-01T06:30:00Z"))
        );
        assert_eq!(c.read_time("2026-07-01"), Some(utc("2026-06-30T22:00:00Z")));
        // 02:30 on 29 March never happens in Berlin: the moment after the gap.
        assert_eq!(
            c.read_time("2026-03-29 02:30"),
            Some(utc("2026-03-29T01:30:00Z"))
        );
        // 02:30 on 25 October happens twice: the first.
        assert_eq!(
            c.read_time("2026-10-25 02:30"),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(c.read_time("yesterday"), None);
        assert_eq!(
            c.at(utc("2026-10-25T01:30:00Z")),
            r#"<time datetime="2026-10-25T01:30:00Z" title="2026-10-25 01:30:00 UTC">2026-10-25 02:30 CET</time>"#
        );
    }

    /// What the store says a person did wrong is a 404 or 409 page in its own words, not
    /// "Something went wrong" with a 500.
    #[test]
    fn store_refusals_are_not_server_errors() {
        assert!(matches!(
            ConsoleError::from(StoreError::NotFound("no issue #7".into())),
            ConsoleError::NotFound(w) if w == "no issue #7"
        ));
        assert!(matches!(
            ConsoleError::from(StoreError::Conflict("section wmd already exists".into())),
            ConsoleError::Conflict(w) if w == "section wmd already exists"
        ));
        assert!(matches!(
            ConsoleError::from(StoreError::Open("disk".into())),
            ConsoleError::Internal(_)
        ));
    }
}

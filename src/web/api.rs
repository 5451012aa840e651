//! The JSON API under `/api/v1`, for a CMS pushing articles and for staff tooling.
//! `Authorization: Bearer TOKEN`; tokens are made with `herald tokens add` and stored
//! hashed. Role `operator` reads; `staff` reads and writes. No token or a bad one: 401;
//! an operator writing: 403.

use super::AppState;
use crate::articles::{ArticleError, ArticleInput, SectionError};
use crate::digests::DigestError;
use crate::store::{SendFilter, StoreError};
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A valid token, and for anything but reading, a staff one. A webhook token may do none
/// of this.
async fn authorise(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    use crate::store::Role;
    let found = match token_of(&st, req.headers()).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    match found.role {
        Role::Webhook => {
            return error(
                StatusCode::FORBIDDEN,
                "this token may only post returned mail (role webhook)",
            );
        }
        Role::Operator if writes => {
            return error(
                StatusCode::FORBIDDEN,
                "this token is read-only (role operator)",
            );
        }
        _ => {}
    }
    if !writes {
        req.extensions_mut().insert(found);
        return next.run(req).await;
    }
    // A change: in the audit log once it went through.
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let address = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| super::client_ip(&st.config, c.0, req.headers()).to_string());
    let actor = format!("token {}", found.name);
    req.extensions_mut().insert(found);
    let res = next.run(req).await;
    if res.status().is_success() {
        let (action, subject) = crate::audit::action_of(&method, &path);
        let entry = crate::audit::NewAudit {
            at: st.clock.now(),
            actor,
            via: crate::audit::Via::Api,
            address,
            action,
            subject,
            outcome: format!("ok ({})", res.status().as_u16()),
        };
        crate::audit::record(st.store.as_ref(), entry).await;
    }
    res
}

/// A token that may report returned mail: a webhook or a staff one. Returned mail
/// unsubscribes and suppresses readers, so a read-only (operator) token may not.
async fn authorise_webhook(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    use crate::store::Role;
    let found = match token_of(&st, req.headers()).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if found.role == Role::Operator {
        return error(
            StatusCode::FORBIDDEN,
            "an operator token is read-only; give the relay a token of role webhook",
        );
    }
    req.extensions_mut().insert(found);
    next.run(req).await
}

/// The API token the request carries, or the answer that refuses it.
async fn token_of(
    st: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<crate::store::ApiToken, Response> {
    let Some(token) = super::bearer_token(headers) else {
        return Err(with_challenge(error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
        )));
    };
    match crate::access::token_by_secret(st.store.as_ref(), token).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(with_challenge(error(
            StatusCode::UNAUTHORIZED,
            "invalid or revoked token",
        ))),
        Err(e) => {
            tracing::error!(error = %e, "API token look-up failed");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

fn with_challenge(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/articles", post(add_article).get(list_articles))
        .route("/schedules", get(list_schedules).post(add_schedule))
        .route("/schedules/{name}", axum::routing::delete(remove_schedule))
        .route("/schedules/{name}/pause", post(pause_schedule))
        .route("/schedules/{name}/resume", post(resume_schedule))
        .route("/issues", get(list_issues))
        .route("/issues/{id}/stop", post(stop_issue))
        .route("/sends", get(list_sends))
        .route("/returned", get(list_returned))
        .route(
            "/suppressions",
            get(list_suppressions).post(add_suppression),
        )
        .route(
            "/suppressions/{email}",
            axum::routing::delete(remove_suppression),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authorise))
        // Relays report what happened after they accepted a mail, with a token of role
        // webhook (which may do nothing else) or staff.
        .merge(
            Router::new()
                .route("/webhooks/returned", post(report_returned))
                .route("/webhooks/postmark", post(report_postmark))
                .layer(middleware::from_fn_with_state(state, authorise_webhook)),
        )
        // SNS cannot send a token: its messages are authenticated by their signature and
        // topic (see `returned::sns`).
        .route("/webhooks/ses", post(report_ses))
}

/// Every way an API request fails, as its answer: `{"error": "…"}` with the status that
/// says whose problem it is. Handlers return `Result<_, ApiError>` and use `?`.
#[derive(Debug)]
pub(super) enum ApiError {
    /// 422: the request is wrong, and the message says how.
    Invalid(String),
    NotFound(String),
    Conflict(String),
    /// 500: logged with its causes; the client is told only that it failed.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => error(StatusCode::CONFLICT, m),
            ApiError::Internal(cause) => {
                let chain = crate::telemetry::error_chain(cause.as_ref());
                tracing::error!(error = %chain, "API request failed");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<ArticleError> for ApiError {
    fn from(e: ArticleError) -> Self {
        match e {
            ArticleError::Invalid(_, m) => ApiError::Invalid(m),
            ArticleError::Section(SectionError::Store(s)) | ArticleError::Store(s) => s.into(),
            ArticleError::Section(s) => ApiError::Invalid(s.to_string()),
            ArticleError::Feed(f) => ApiError::Invalid(f.to_string()),
        }
    }
}

impl From<DigestError> for ApiError {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::UnknownSchedule(_) | DigestError::UnknownIssue(_) => {
                ApiError::NotFound(e.to_string())
            }
            DigestError::NothingToStop(_) => ApiError::Conflict(e.to_string()),
            DigestError::Store(s) => s.into(),
            DigestError::Render(r) => ApiError::Internal(r.into()),
            other => ApiError::Invalid(other.to_string()),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// A JSON body; a malformed one is a 422 that says what is wrong (axum's own answer is a
/// plain-text 400 or 415).
pub(super) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| ApiError::Invalid(e.body_text()))
    }
}

/// A query string, checked as the CLI checks its flags: `?status=bogus` is a 422 naming
/// the values it may take.
pub(super) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::Invalid(e.body_text()))
    }
}

/// An address from a request, normalised as the store keeps it.
fn address(field: &str, e: &str) -> Result<String, ApiError> {
    crate::domain::EmailAddress::parse(e)
        .map(|a| a.as_str().to_string())
        .map_err(|err| ApiError::Invalid(format!("{field}: {}", err.plain())))
}

async fn add_article(
    State(st): State<AppState>,
    ApiJson(input): ApiJson<ArticleInput>,
) -> ApiResult {
    let w = crate::articles::add_article(st.store.as_ref(), input, st.clock.now()).await?;
    Ok(if w.added > 0 {
        (StatusCode::CREATED, Json(json!({ "added": true }))).into_response()
    } else if w.updated > 0 {
        Json(json!({ "added": false, "updated": true, "reason": "corrected: same guid, not mailed yet" }))
            .into_response()
    } else {
        Json(json!({ "added": false, "updated": false, "reason": "already present (unchanged, or already mailed)" }))
            .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleQuery {
    section: Option<String>,
    limit: Option<i64>,
}

async fn list_articles(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ArticleQuery>,
) -> ApiResult {
    let section_id = match &q.section {
        Some(slug) => Some(
            crate::articles::section_by_slug(st.store.as_ref(), slug)
                .await
                .map_err(ArticleError::from)?
                .id,
        ),
        None => None,
    };
    let list = st
        .store
        .list_articles(section_id, q.limit.unwrap_or(50).clamp(1, 1000))
        .await?;
    Ok(Json(list).into_response())
}

async fn list_schedules(State(st): State<AppState>) -> ApiResult {
    Ok(Json(st.digests.list_schedules().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleInput {
    name: String,
    cron: String,
    sections: Vec<String>,
    timezone: Option<String>,
    subject: Option<String>,
    /// Article pictures in its digests (default true).
    images: Option<bool>,
}

async fn add_schedule(State(st): State<AppState>, ApiJson(s): ApiJson<ScheduleInput>) -> ApiResult {
    let sched = st
        .digests
        .add_schedule(
            &s.name,
            &s.cron,
            &s.sections,
            s.timezone.as_deref(),
            s.subject.as_deref(),
            s.images,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(sched)).into_response())
}

async fn pause_schedule(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    st.digests.pause(&name).await?;
    Ok(Json(json!({ "name": name, "enabled": false })).into_response())
}

async fn resume_schedule(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    st.digests.resume(&name).await?;
    Ok(Json(json!({ "name": name, "enabled": true })).into_response())
}

async fn remove_schedule(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    st.digests.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Stop an issue: its unsent mail is cancelled at once. 200 with what it did (`already`:
/// it had been stopped before, nothing changed); 404 for no such issue, 409 for one with
/// nothing left to send.
async fn stop_issue(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    axum::Extension(token): axum::Extension<crate::store::ApiToken>,
) -> ApiResult {
    let by = format!("token {}", token.name);
    Ok(Json(st.digests.stop_issue(id, &by).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuesQuery {
    limit: Option<i64>,
}

async fn list_issues(State(st): State<AppState>, ApiQuery(q): ApiQuery<IssuesQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(
        Json(crate::digests::issues_with_counts(st.store.as_ref(), None, limit).await?)
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendsQuery {
    issue: Option<i64>,
    status: Option<crate::store::SendStatus>,
    email: Option<String>,
    limit: Option<i64>,
}

async fn list_sends(State(st): State<AppState>, ApiQuery(q): ApiQuery<SendsQuery>) -> ApiResult {
    // Addresses are stored normalised by EmailAddress; filter by the same normal form.
    let email = match q.email.as_deref() {
        Some(e) => Some(address("email", e)?),
        None => None,
    };
    let filter = SendFilter {
        issue_id: q.issue,
        status: q.status,
        email,
        updated_since: None,
        limit: Some(q.limit.unwrap_or(1000).clamp(1, 10_000)),
    };
    Ok(Json(st.store.list_sends(&filter).await?).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnedQuery {
    /// Only those received within this long, e.g. 24h.
    since: Option<String>,
    #[serde(rename = "type")]
    kind: Option<crate::store::ReturnedKind>,
    limit: Option<i64>,
}

/// Returned mail, newest first (`herald bounces list`).
async fn list_returned(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ReturnedQuery>,
) -> ApiResult {
    let since = match q.since.as_deref() {
        Some(d) => Some(
            st.clock.now()
                - d.parse::<crate::domain::HumanDuration>()
                    .map_err(|e| ApiError::Invalid(format!("since: {e}")))?
                    .as_chrono(),
        ),
        None => None,
    };
    let list = st
        .store
        .list_returned(since, q.kind, q.limit.unwrap_or(100).clamp(1, 10_000))
        .await?;
    Ok(Json(list).into_response())
}

/// Suppressed addresses, as hashes (the address itself is not always kept).
async fn list_suppressions(State(st): State<AppState>) -> ApiResult {
    Ok(Json(st.store.list_suppressions().await?).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressionInput {
    email: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn add_suppression(
    State(st): State<AppState>,
    ApiJson(input): ApiJson<SuppressionInput>,
) -> ApiResult {
    let email = address("email", &input.email)?;
    let reason = input.reason.unwrap_or_else(|| "manual".into());
    if !crate::store::valid_suppression_reason(&reason) {
        return Err(ApiError::Invalid(
            "reason is a word such as manual or legal".into(),
        ));
    }
    Ok(
        if st
            .store
            .add_suppression(&email, &reason, st.clock.now())
            .await?
        {
            (StatusCode::CREATED, Json(json!({ "suppressed": true }))).into_response()
        } else {
            Json(json!({ "suppressed": true, "already": true })).into_response()
        },
    )
}

/// Lift a suppression; it subscribes nobody.
async fn remove_suppression(
    State(st): State<AppState>,
    axum::Extension(token): axum::Extension<crate::store::ApiToken>,
    Path(email): Path<String>,
) -> ApiResult {
    let email = address("email", &email)?;
    let by = format!("api:{}", token.name);
    if !st
        .store
        .remove_suppression(&email, st.clock.now(), &by)
        .await?
    {
        return Err(ApiError::NotFound("that address is not suppressed".into()));
    }
    Ok(Json(json!({ "suppressed": false })).into_response())
}

/// What a relay reports by HTTP about one address (a generic webhook).
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ReturnedReport {
    /// hard, soft, refused, delayed, delivered, complaint or unsubscribe.
    #[serde(rename = "type")]
    kind: String,
    email: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    diagnostic: Option<String>,
    /// The relay's own id of this report: a second post of it acts on nobody.
    #[serde(default)]
    id: Option<String>,
    /// When the relay made the report (RFC 3339); refused when over an hour old.
    #[serde(default)]
    at: Option<String>,
}

/// Reports older than this are refused: a replay, or one whose moment has passed.
const WEBHOOK_MAX_AGE: chrono::Duration = chrono::Duration::hours(1);

/// Refuse a report made before `WEBHOOK_MAX_AGE` (or in the future beyond clock skew).
fn fresh(st: &AppState, field: &str, at: Option<&str>) -> Result<(), ApiError> {
    let Some(at) = at else { return Ok(()) };
    let when = chrono::DateTime::parse_from_rfc3339(at.trim())
        .map_err(|_| ApiError::Invalid(format!("{field}: {at:?} is not an RFC 3339 time")))?
        .with_timezone(&chrono::Utc);
    let now = st.clock.now();
    if now - when > WEBHOOK_MAX_AGE {
        tracing::warn!(%when, "webhook report refused: older than an hour");
        return Err(ApiError::Invalid(format!(
            "{field}: this report is from {when}, over an hour ago; refused as a replay"
        )));
    }
    if when - now > chrono::Duration::minutes(5) {
        return Err(ApiError::Invalid(format!(
            "{field}: {when} is in the future"
        )));
    }
    Ok(())
}

async fn report_returned(
    State(st): State<AppState>,
    ApiJson(report): ApiJson<ReturnedReport>,
) -> ApiResult {
    use crate::store::ReturnedKind as K;
    let hint = match report.kind.as_str() {
        "hard" => K::Hard,
        "soft" => K::Soft,
        "refused" => K::Refused,
        "delayed" => K::Delayed,
        "delivered" => K::Delivered,
        "complaint" => K::Complaint,
        "unsubscribe" => K::Unsubscribe,
        _ => {
            return Err(ApiError::Invalid(
                "type must be hard, soft, refused, delayed, delivered, complaint or unsubscribe"
                    .into(),
            ));
        }
    };
    let email = address("email", &report.email)?;
    fresh(&st, "at", report.at.as_deref())?;
    let status = report
        .status
        .as_deref()
        .map(|s| crate::articles::one_line(s, 20));
    // A bounce's code decides what it is, whatever the relay called it: "hard" with a
    // 5.7.1 is a blocklisting, and suppresses nobody.
    let kind = match hint {
        K::Hard | K::Soft | K::Refused => {
            crate::domain::judge(None, status.as_deref(), report.diagnostic.as_deref())
                .map_or(hint, K::of)
        }
        other => other,
    };
    let diagnostic = report.diagnostic.clone();
    let raw = serde_json::to_string(&report).unwrap_or_default();
    let dedup = report.id.as_ref().map(|id| {
        (
            "webhook".to_string(),
            format!("{}/{email}", crate::articles::one_line(id, 200)),
        )
    });
    let action = record_one(&st, kind, email, status, diagnostic.as_deref(), raw, dedup).await?;
    Ok(Json(json!({ "action": action })).into_response())
}

/// Record and act on what a webhook said about one address, as returned mail is.
async fn record_one(
    st: &AppState,
    kind: crate::store::ReturnedKind,
    email: String,
    status: Option<String>,
    diagnostic: Option<&str>,
    raw: String,
    dedup: Option<(String, String)>,
) -> Result<String, ApiError> {
    let now = st.clock.now();
    let record = crate::store::NewReturned {
        kind,
        send_id: None,
        reader_email: Some(email.clone()),
        recipient: Some(email.clone()),
        status,
        diagnostic: diagnostic.map(|d| crate::articles::one_line(d, 1000)),
        raw: crate::store::RawReturned::Text(raw),
        now,
        soft_limit: st.config.bounces.soft_limit,
        soft_since: now - st.config.bounces.soft_window.as_chrono(),
        dedup,
    };
    let recorded = st.store.record_returned(&record).await?;
    if kind == crate::store::ReturnedKind::Refused
        && let Some(d) = &record.diagnostic
        && crate::domain::judge(None, record.status.as_deref(), Some(d))
            .is_some_and(crate::domain::Verdict::is_policy)
    {
        st.engine.domains().record(&email, true, d).await;
    }
    metrics::counter!("herald_returned_total", "kind" => kind.as_str(), "source" => "webhook")
        .increment(1);
    Ok(recorded.action)
}

/// Amazon SES bounce and complaint notifications, as SNS delivers them. Answered 200 once
/// handled (SNS retries anything else); 403 when the signature or the topic is not trusted.
async fn report_ses(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    use crate::returned::sns::{SnsError, ses_events};
    let Some(verifier) = st.keys.sns.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "SES notifications are off (bounces.sns_certificates and bounces.sns_topics)",
        );
    };
    let msg = match verifier.verify(&body) {
        Ok(m) => m,
        Err(e @ SnsError::Malformed(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "SNS message refused");
            return error(StatusCode::FORBIDDEN, e.to_string());
        }
    };
    if matches!(
        msg.kind.as_str(),
        "SubscriptionConfirmation" | "UnsubscribeConfirmation"
    ) {
        // Confirming means fetching SubscribeURL; herald makes no requests it was not
        // configured to make, so the operator opens it once.
        tracing::warn!(
            topic = %msg.topic_arn,
            subscribe_url = msg.subscribe_url.as_deref().unwrap_or(""),
            "SNS {}: open the SubscribeURL once to confirm",
            msg.kind
        );
        return Json(json!({ "action": format!("{}: logged for the operator", msg.kind) }))
            .into_response();
    }
    // A signed message is valid for ever; a replay of an old one is refused, and SNS's
    // own redeliveries of a recent one count once (by its MessageId, below).
    if let Err(e) = fresh(&st, "Timestamp", Some(&msg.timestamp)) {
        return e.into_response();
    }
    let events = match ses_events(&msg.message) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut actions = Vec::new();
    for ev in events {
        let Ok(email) = address("emailAddress", &ev.email) else {
            actions.push(format!("ignored: {:?} is not an address", ev.email));
            continue;
        };
        let status = ev
            .status
            .as_deref()
            .map(|s| crate::articles::one_line(s, 20));
        let dedup = Some(("ses".to_string(), format!("{}/{email}", msg.message_id)));
        match record_one(
            &st,
            ev.kind,
            email,
            status,
            ev.diagnostic.as_deref(),
            msg.message.clone(),
            dedup,
        )
        .await
        {
            Ok(a) => actions.push(a),
            Err(e) => return e.into_response(),
        }
    }
    Json(json!({ "actions": actions })).into_response()
}

/// Postmark's bounce and spam-complaint webhooks (their JSON, as Postmark documents it:
/// `RecordType`, `Type`, `Email`, `Description`, `Details`). Other record types (deliveries,
/// opens, clicks) are answered 200 and ignored, so Postmark does not retry them.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkEvent {
    record_type: String,
    /// Postmark's id of the bounce or complaint: a second post of it acts on nobody.
    #[serde(default, rename = "ID")]
    id: Option<serde_json::Value>,
    #[serde(default)]
    bounced_at: Option<String>,
    #[serde(default, rename = "Type")]
    kind: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

async fn report_postmark(
    State(st): State<AppState>,
    ApiJson(event): ApiJson<PostmarkEvent>,
) -> ApiResult {
    use crate::store::ReturnedKind as K;
    let kind = match (
        event.record_type.as_str(),
        event.kind.as_deref().unwrap_or(""),
    ) {
        ("SpamComplaint", _) | ("Bounce", "SpamComplaint") => K::Complaint,
        ("Bounce", "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated") => K::Hard,
        ("Bounce", "SoftBounce" | "ChallengeVerification") => K::Soft,
        // Postmark's own words: "Transient" is a delay, "DnsError" a temporary lookup
        // failure, "Blocked" the receiving ISP blocking the message.
        ("Bounce", "Transient") => K::Delayed,
        ("Bounce", "DnsError" | "Blocked") => K::Refused,
        ("Bounce", "AutoResponder") => K::AutoReply,
        ("Bounce", "Unsubscribe") => K::Unsubscribe,
        ("Bounce", _) => K::Unrecognised,
        _ => {
            return Ok(
                Json(json!({ "action": "ignored: not a bounce or complaint" })).into_response(),
            );
        }
    };
    // The SMTP words Postmark passes on decide what a bounce is (a "HardBounce" with a
    // 5.7.1 is a blocklisting).
    let kind = match kind {
        K::Hard | K::Soft => {
            crate::domain::judge(None, None, event.details.as_deref()).map_or(kind, K::of)
        }
        other => other,
    };
    fresh(&st, "BouncedAt", event.bounced_at.as_deref())?;
    let email = match event.email.as_deref() {
        Some(e) => address("Email", e)?,
        None => return Err(ApiError::Invalid("Email is missing".into())),
    };
    let diagnostic = event.details.clone().or(event.description.clone());
    let raw = serde_json::to_string(&event).unwrap_or_default();
    let dedup = event.id.as_ref().map(|id| {
        (
            "postmark".to_string(),
            format!(
                "{}:{}/{email}",
                event.record_type,
                id.to_string().trim_matches('"')
            ),
        )
    });
    let action = record_one(&st, kind, email, None, diagnostic.as_deref(), raw, dedup).await?;
    Ok(Json(json!({ "action": action })).into_response())
}

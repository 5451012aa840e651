//! `/admin/bounces`: what came back (bounces, complaints, replies), why, and what herald did
//! about it, with each message's raw text; `/admin/suppressions`: the addresses no mail goes
//! to, checking one, suppressing one by hand and — deliberately, behind a ticked box —
//! lifting one.

use super::{Change, Query};
use super::{Chrome, ConsoleError, FieldErrors, Page, Viewer, html, see_other};
use crate::domain::{EmailAddress, sha256_hex};
use crate::store::{ReturnedKind, ReturnedRow, Suppression, valid_suppression_reason};
use crate::web::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;

const PAGE: i64 = 50;

/// `/bounces`' filter: the kind of returned mail, and the page.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ListQuery {
    kind: String,
    #[serde(deserialize_with = "super::number")]
    before: Option<i64>,
}

/// `/suppressions`: what was just done, and the address it was done to.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SuppressionsQuery {
    done: String,
    address: String,
}

/// The forms of `/suppressions`: suppress an address (with a reason), or lift one (with
/// the box ticked).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SuppressionForm {
    address: String,
    reason: String,
    #[serde(deserialize_with = "super::flag")]
    confirm: bool,
}

#[derive(Template)]
#[template(path = "console/bounces.html")]
struct BouncesPage {
    chrome: Chrome,
    kind: String,
    kinds: &'static [ReturnedKind],
    rows: Vec<ReturnedRow>,
    older: Option<i64>,
    paged: bool,
    error: Option<String>,
}

pub(super) async fn list(
    State(st): State<AppState>,
    v: Viewer,
    Query(ListQuery { kind, before }): Query<ListQuery>,
) -> Page {
    let (parsed, error) = match kind.as_str() {
        "" => (None, None),
        k => match ReturnedKind::parse(k) {
            Some(k) => (Some(k), None),
            None => (None, Some("Pick a kind from the list.".to_string())),
        },
    };
    let rows = if error.is_none() {
        st.store.returned_page(parsed, None, before, PAGE).await?
    } else {
        Vec::new()
    };
    let older = super::next_page(&rows, PAGE, |r| r.id);
    html(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        BouncesPage {
            chrome: v.chrome(&st, "bounces"),
            kind,
            kinds: &ReturnedKind::ALL,
            rows,
            older,
            paged: before.is_some(),
            error,
        },
    )
}

#[derive(Template)]
#[template(path = "console/bounce.html")]
struct BouncePage {
    chrome: Chrome,
    r: ReturnedRow,
    raw: String,
    /// The send it answers, when herald knows it.
    send: Option<crate::store::SendRecord>,
}

pub(super) async fn show(State(st): State<AppState>, v: Viewer, Path(id): Path<i64>) -> Page {
    let Some((r, raw)) = st.store.returned(id).await? else {
        return Err(ConsoleError::NotFound(format!(
            "There is no returned message #{id}."
        )));
    };
    // The send it answers, for its issue and its line in the log (a keyset page of one).
    let send = match r.send_id {
        Some(sid) => st
            .store
            .send_log(&crate::store::LogQuery {
                before: Some(sid.saturating_add(1)),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_iter()
            .find(|s| s.id == sid),
        None => None,
    };
    html(
        StatusCode::OK,
        BouncePage {
            chrome: v.chrome(&st, "bounces"),
            r,
            raw,
            send,
        },
    )
}

/// What looking an address up found.
pub(crate) struct Lookup {
    pub address: String,
    pub suppression: Option<Suppression>,
    pub subscriber: Option<(i64, String)>,
}

#[derive(Template)]
#[template(path = "console/suppressions.html")]
struct SuppressionsPage {
    chrome: Chrome,
    rows: Vec<Suppression>,
    total: i64,
    lookup: Option<Lookup>,
    address: String,
    reason: String,
    errors: FieldErrors,
    notice: Option<String>,
}

async fn suppressions_page(
    st: &AppState,
    v: &Viewer,
    status: StatusCode,
    address: String,
    errors: FieldErrors,
    notice: Option<String>,
) -> Page {
    let (rows, total) = st.store.recent_suppressions(100).await?;
    let mut errors = errors;
    let lookup = if address.is_empty() || errors.get("address").is_some() {
        None
    } else {
        match EmailAddress::parse(&address) {
            Ok(a) => Some(Lookup {
                suppression: st.store.suppression(&sha256_hex(a.as_str())).await?,
                subscriber: st
                    .store
                    .subscriber_by_email(a.as_str())
                    .await?
                    .map(|s| (s.id, s.status.as_str().to_string())),
                address: a.as_str().to_string(),
            }),
            Err(e) => {
                errors = FieldErrors::one("address", e.to_string());
                None
            }
        }
    };
    let status = if errors.is_empty() {
        status
    } else if status == StatusCode::OK {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    html(
        status,
        SuppressionsPage {
            chrome: v.chrome(st, "suppressions"),
            rows,
            total,
            lookup,
            address,
            reason: String::new(),
            errors,
            notice,
        },
    )
}

pub(super) async fn suppressions(
    State(st): State<AppState>,
    v: Viewer,
    Query(q): Query<SuppressionsQuery>,
) -> Page {
    let notice = match q.done.as_str() {
        "lifted" => Some(
            "Lifted. Nobody is subscribed by it: a reader who bounced or complained is now unsubscribed, free to sign up again.".to_string(),
        ),
        "added" => Some("Suppressed: no mail of any kind goes to this address, and its subscriber is unsubscribed.".to_string()),
        _ => None,
    };
    suppressions_page(
        &st,
        &v,
        StatusCode::OK,
        q.address,
        FieldErrors::default(),
        notice,
    )
    .await
}

/// Why a suppressions form was refused: the status, the field, what to say beside it.
type Refusal = (StatusCode, &'static str, String);

/// The suppressions page again, with the refusal beside its field and the address as typed.
async fn refused(st: &AppState, v: &Viewer, form: &SuppressionForm, r: Refusal) -> Page {
    let (status, field, message) = r;
    let errors = FieldErrors::one(field, message);
    suppressions_page(st, v, status, form.address.clone(), errors, None).await
}

fn unprocessable(field: &'static str, message: impl Into<String>) -> Refusal {
    (StatusCode::UNPROCESSABLE_ENTITY, field, message.into())
}

/// The form's address, or why it is not one.
fn address_of(form: &SuppressionForm) -> Result<EmailAddress, Refusal> {
    EmailAddress::parse(&form.address).map_err(|e| unprocessable("address", e.to_string()))
}

/// Suppress an address by hand, with a one-word reason.
pub(super) async fn add(
    State(st): State<AppState>,
    Change { v, form }: Change<SuppressionForm>,
) -> Page {
    let reason = Some(form.reason.as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or("manual");
    let email = match address_of(&form) {
        Ok(_) if !valid_suppression_reason(reason) => {
            let why = "One word: letters, digits, dashes or underscores, e.g. legal.";
            return refused(&st, &v, &form, unprocessable("reason", why)).await;
        }
        Ok(email) => email,
        Err(r) => return refused(&st, &v, &form, r).await,
    };
    st.store
        .add_suppression(email.as_str(), reason, st.clock.now())
        .await?;
    tracing::info!(user = %v.session.name, %reason, "address suppressed from the console");
    see_other(
        &st,
        &format!(
            "/suppressions?{}",
            super::query_string(&[("done", "added"), ("address", email.as_str())])
        ),
    )
}

/// Lift a suppression: only with its box ticked.
pub(super) async fn lift(
    State(st): State<AppState>,
    Change { v, form }: Change<SuppressionForm>,
) -> Page {
    let email = match address_of(&form) {
        Ok(_) if !form.confirm => {
            let why = "Tick the box to say you mean it.";
            return refused(&st, &v, &form, unprocessable("lift", why)).await;
        }
        Ok(email) => email,
        Err(r) => return refused(&st, &v, &form, r).await,
    };
    let by = format!("console:{}", v.session.name);
    if !st
        .store
        .remove_suppression(email.as_str(), st.clock.now(), &by)
        .await?
    {
        let r = (
            StatusCode::NOT_FOUND,
            "lift",
            "This address is not suppressed.".into(),
        );
        return refused(&st, &v, &form, r).await;
    }
    tracing::info!(user = %v.session.name, "suppression lifted from the console");
    see_other(
        &st,
        &format!(
            "/suppressions?{}",
            super::query_string(&[("done", "lifted"), ("address", email.as_str())])
        ),
    )
}

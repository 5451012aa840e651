//! `/admin/subscribers`: counts by status and active readers per section; a search by
//! address (its start, or `@domain`) filtered by status and section, newest first, keyset-paged; and
//! one subscriber's page — their consent record, sections, suppression, every mail sent to
//! them and everything that came back — with, for staff, the JSON export of all of it
//! (GDPR Art. 15/20) and erasure (Art. 17) behind typing the address.

use super::{Change, Query};
use super::{Chrome, ConsoleError, FieldErrors, Page, Viewer, html, see_other};
use crate::domain::{SubscriberStatus, sha256_hex};
use crate::store::{ReturnedRow, Role, SendRecord, Subscriber, SubscriberQuery, Suppression};
use crate::web::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

const PAGE: i64 = 50;

#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Filters {
    pub q: String,
    pub status: String,
    pub section: String,
    #[serde(deserialize_with = "super::flag")]
    erased: bool,
    #[serde(deserialize_with = "super::number")]
    pub before: Option<i64>,
}

impl Filters {
    /// What the page says above the list: that someone was just erased.
    pub fn notice(&self) -> Option<&'static str> {
        self.erased.then_some(
            "Erased: their record, sections and links are gone, the log keeps no address, and a hash of it stays suppressed.",
        )
    }

    pub fn query(&self) -> String {
        super::query_string(&[
            ("q", &self.q),
            ("status", &self.status),
            ("section", &self.section),
        ])
    }

    pub fn any(&self) -> bool {
        !self.query().is_empty()
    }
}

pub(crate) struct SectionCount {
    pub slug: String,
    pub name: String,
    pub active: i64,
}

#[derive(Template)]
#[template(path = "console/subscribers.html")]
struct ListPage {
    chrome: Chrome,
    f: Filters,
    errors: FieldErrors,
    statuses: &'static [SubscriberStatus],
    by_status: Vec<(&'static str, i64)>,
    sections: Vec<SectionCount>,
    rows: Vec<Subscriber>,
    older: Option<i64>,
}

pub(super) async fn list(State(st): State<AppState>, v: Viewer, Query(f): Query<Filters>) -> Page {
    let all_sections = st.store.list_sections().await?;
    let mut errors = Vec::new();
    let mut query = SubscriberQuery {
        before: f.before,
        limit: PAGE,
        ..Default::default()
    };
    if !f.q.is_empty() {
        if f.q.len() > 320 {
            errors.push(("q", "At most 320 characters.".to_string()));
        } else {
            query.search = Some(f.q.clone());
        }
    }
    if !f.status.is_empty() {
        match SubscriberStatus::parse(&f.status) {
            Some(s) => query.status = Some(s),
            None => errors.push(("status", "Pick a status from the list.".to_string())),
        }
    }
    if !f.section.is_empty() {
        match all_sections.iter().find(|s| s.slug == f.section) {
            Some(s) => query.section_id = Some(s.id),
            None => errors.push(("section", "Pick a section from the list.".to_string())),
        }
    }
    let errors = FieldErrors::from(errors);
    let rows = if errors.is_empty() {
        st.store.subscriber_page(&query).await?
    } else {
        Vec::new()
    };
    let older = super::next_page(&rows, PAGE, |r| r.id);
    let counts = st.store.subscriber_status_counts().await?;
    let by_status = SubscriberStatus::ALL
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
            (s.as_str(), n)
        })
        .collect();
    let per_section = st.store.section_reader_counts().await?;
    let sections = all_sections
        .into_iter()
        .map(|s| SectionCount {
            active: per_section
                .iter()
                .find(|(id, _)| *id == s.id)
                .map_or(0, |(_, n)| *n),
            slug: s.slug,
            name: s.name,
        })
        .collect();
    let status = errors.status();
    html(
        status,
        ListPage {
            chrome: v.chrome(&st, "subscribers"),
            f,
            errors,
            statuses: &SubscriberStatus::ALL,
            by_status,
            sections,
            rows,
            older,
        },
    )
}

#[derive(Template)]
#[template(path = "console/subscriber.html")]
struct OnePage {
    chrome: Chrome,
    s: Subscriber,
    sections: Vec<String>,
    suppression: Option<Suppression>,
    sends: Vec<SendRecord>,
    returned: Vec<ReturnedRow>,
    erase_error: Option<&'static str>,
}

fn unknown(id: i64) -> ConsoleError {
    ConsoleError::NotFound(format!(
        "There is no subscriber #{id}: never, or erased since."
    ))
}

async fn one(
    st: &AppState,
    v: &Viewer,
    id: i64,
    status: StatusCode,
    erase_error: Option<&'static str>,
) -> Page {
    let Some(s) = st.store.subscriber_by_id(id).await? else {
        return Err(unknown(id));
    };
    let sections = st
        .store
        .subscriber_sections(id)
        .await?
        .into_iter()
        .map(|x| x.name)
        .collect();
    let suppression = st.store.suppression(&sha256_hex(&s.email)).await?;
    // Newest first: the last mail is what one looks for.
    let mut sends = st.store.sends_for_subscriber(id).await?;
    sends.reverse();
    let returned = st.store.returned_page(None, Some(id), None, 200).await?;
    html(
        status,
        OnePage {
            chrome: v.chrome(st, "subscribers"),
            s,
            sections,
            suppression,
            sends,
            returned,
            erase_error,
        },
    )
}

pub(super) async fn show(State(st): State<AppState>, v: Viewer, Path(id): Path<i64>) -> Page {
    one(&st, &v, id, StatusCode::OK, None).await
}

/// Everything herald keeps about the subscriber, as a JSON download (staff only: it is
/// their personal data).
pub(super) async fn export(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<i64>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Page {
    if v.session.role != Role::Staff {
        return Err(ConsoleError::Forbidden);
    }
    let Some(s) = st.store.subscriber_by_id(id).await? else {
        return Err(unknown(id));
    };
    let Some(record) = st.subs.export_subscriber(&s.email).await? else {
        return Err(unknown(id));
    };
    let body = serde_json::to_vec_pretty(&record).map_err(ConsoleError::internal)?;
    tracing::info!(user = %v.session.name, subscriber = id, "subscriber exported from the console");
    // Taking a reader's data out is a change of who holds it: audited like one.
    let entry = crate::audit::NewAudit {
        at: st.clock.now(),
        actor: v.session.name.clone(),
        via: crate::audit::Via::Console,
        address: Some(crate::web::client_ip(&st.config, peer, &headers).to_string()),
        action: "subscribers export".into(),
        subject: id.to_string(),
        outcome: "ok".into(),
    };
    crate::audit::record(st.store.as_ref(), entry).await;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"subscriber-{id}.json\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// The erase form: the subscriber's address, typed again.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct EraseForm {
    confirm: String,
}

/// Erase, once the address is typed again (a slip of the mouse must not erase anyone).
pub(super) async fn erase(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Change { v, form }: Change<EraseForm>,
) -> Page {
    let v = &v;
    let Some(s) = st.store.subscriber_by_id(id).await? else {
        return Err(unknown(id));
    };
    if !form.confirm.eq_ignore_ascii_case(&s.email) {
        return one(
            &st,
            v,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Type the subscriber's address exactly to erase them."),
        )
        .await;
    }
    st.subs.erase_subscriber(&s.email).await?;
    tracing::info!(user = %v.session.name, subscriber = id, "subscriber erased from the console");
    see_other(&st, "/subscribers?erased=1")
}

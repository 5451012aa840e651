//! `/admin/audit`: the audit log — who did what, when and from where, newest first,
//! filtered by who, action and time (read in the newsroom's zone), keyset-paginated; and
//! `/admin/audit.csv`, the same filters as a CSV file for an auditor.

use super::{Chrome, FieldErrors, Page, Query, Viewer, html};
use crate::audit::{AuditEntry, AuditQuery};
use crate::web::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

const PAGE: i64 = 50;
/// The most lines one CSV file holds (newest first); narrow the filters for older ones.
const CSV_LIMIT: i64 = 100_000;

/// The filter form, as typed.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Filters {
    who: String,
    action: String,
    since: String,
    until: String,
    #[serde(deserialize_with = "super::number")]
    before: Option<i64>,
}

impl Filters {
    /// The query string of these filters (for the pager and the CSV link), `before` left out.
    fn query(&self) -> String {
        super::query_string(&[
            ("who", &self.who),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
        ])
    }

    fn any(&self) -> bool {
        !self.query().is_empty()
    }

    /// The store's query, or what is wrong with the form.
    fn read(&self, chrome: &Chrome, limit: i64) -> Result<AuditQuery, FieldErrors> {
        let mut errors = Vec::new();
        let q = AuditQuery {
            actor: Some(self.who.trim().to_string()).filter(|s| !s.is_empty()),
            action: Some(self.action.trim().to_string()).filter(|s| !s.is_empty()),
            since: chrome.read_time_field("since", &self.since, &mut errors),
            until: chrome.read_time_field("until", &self.until, &mut errors),
            before: self.before,
            limit,
        };
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(FieldErrors::from(errors))
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    f: Filters,
    errors: FieldErrors,
    rows: Vec<AuditEntry>,
    older: Option<i64>,
}

pub(super) async fn page(State(st): State<AppState>, v: Viewer, Query(f): Query<Filters>) -> Page {
    let chrome = v.chrome(&st, "audit");
    let (rows, errors) = match f.read(&chrome, PAGE) {
        Ok(q) => (st.store.audit_log(&q).await?, FieldErrors::default()),
        Err(errors) => (Vec::new(), errors),
    };
    let older = super::next_page(&rows, PAGE, |r| r.id);
    let status = errors.status();
    html(
        status,
        AuditPage {
            chrome,
            f,
            errors,
            rows,
            older,
        },
    )
}

/// The filtered log as CSV (all of it, up to [`CSV_LIMIT`] lines).
pub(super) async fn csv(State(st): State<AppState>, v: Viewer, Query(f): Query<Filters>) -> Page {
    let chrome = v.chrome(&st, "audit");
    let q = match f.read(&chrome, CSV_LIMIT) {
        Ok(q) => q,
        Err(_) => {
            return Err(super::ConsoleError::BadRequest(
                "The times of the filter are not dates and times.".into(),
            ));
        }
    };
    let rows = st.store.audit_log(&q).await?;
    let body = crate::audit::to_csv(&rows).map_err(super::ConsoleError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"herald-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

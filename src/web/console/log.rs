//! `/admin/log`: the delivery log, newest send first, filtered by status, address, issue
//! and the time of the last change; each row with its Message-ID, attempts and the last
//! SMTP reply. Pages are keyset-paginated (`before` = the last id shown), so the thousandth
//! page of a million-row ledger costs what the first does. With "follow live" `console.js`
//! replaces the first page's rows every few seconds (with a pause control); without script
//! the page reloads itself.

use super::{Chrome, FieldErrors, Page, Query, Viewer, html};
use crate::domain::EmailAddress;
use crate::store::{LogQuery, SendRecord, SendStatus};
use crate::web::AppState;
use askama::Template;
use axum::extract::State;

const PAGE: i64 = 50;

/// The filter form, as typed.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Filters {
    pub status: String,
    pub address: String,
    pub issue: String,
    pub since: String,
    pub until: String,
    #[serde(deserialize_with = "super::flag")]
    pub live: bool,
    #[serde(deserialize_with = "super::number")]
    pub before: Option<i64>,
    /// After "retry": how many failed digests went back in the queue, and to which domain
    /// (for an address, the address filter says).
    #[serde(deserialize_with = "super::number")]
    pub retried: Option<i64>,
    pub domain: String,
}

impl Filters {
    /// The query string of these filters (for the pager's links), `before` left out.
    pub fn query(&self) -> String {
        super::query_string(&[
            ("status", &self.status),
            ("address", &self.address),
            ("issue", &self.issue),
            ("since", &self.since),
            ("until", &self.until),
            ("live", if self.live { "1" } else { "" }),
        ])
    }

    pub fn any(&self) -> bool {
        !self.query().is_empty()
    }
}

#[derive(Template)]
#[template(path = "console/log.html")]
struct LogPage {
    chrome: Chrome,
    f: Filters,
    errors: FieldErrors,
    statuses: &'static [SendStatus],
    rows: Vec<SendRecord>,
    older: Option<i64>,
    /// Said instead of rows when the filter matched nobody (an address we have no reader for).
    nobody: Option<String>,
    refresh: Option<u32>,
    /// What a retry did.
    notice: Option<String>,
}

pub(super) async fn page(
    State(st): State<AppState>,
    v: Viewer,
    Query(mut f): Query<Filters>,
) -> Page {
    // "#12" as the issue page names it.
    f.issue = f.issue.trim_start_matches('#').to_string();
    let mut errors = Vec::new();
    let mut query = LogQuery {
        before: f.before,
        limit: PAGE,
        ..Default::default()
    };
    if !f.status.is_empty() {
        match SendStatus::parse(&f.status) {
            Some(s) => query.status = Some(s),
            None => errors.push(("status", "Pick a status from the list.".to_string())),
        }
    }
    if !f.issue.is_empty() {
        match f.issue.parse::<i64>() {
            Ok(i) => query.issue_id = Some(i),
            Err(_) => errors.push(("issue", "An issue number, like 12.".to_string())),
        }
    }
    // Typed in the newsroom's time, as every time on the page is shown.
    let chrome = v.chrome(&st, "log");
    query.since = chrome.read_time_field("since", &f.since, &mut errors);
    query.until = chrome.read_time_field("until", &f.until, &mut errors);
    let mut nobody = None;
    if !f.address.is_empty() {
        match EmailAddress::parse(&f.address) {
            Err(e) => errors.push(("address", e.to_string())),
            Ok(a) => match st.store.subscriber_by_email(a.as_str()).await? {
                Some(s) => query.subscriber_id = Some(s.id),
                None => {
                    nobody = Some(format!(
                        "No subscriber has the address {}: nothing was ever sent to it, or its subscriber was erased (an erased address keeps no log under its name).",
                        a.as_str()
                    ))
                }
            },
        }
    }
    let errors = FieldErrors::from(errors);
    let rows = if errors.is_empty() && nobody.is_none() {
        st.store.send_log(&query).await?
    } else {
        Vec::new()
    };
    let older = super::next_page(&rows, PAGE, |r| r.id);
    let status = errors.status();
    let refresh = (f.live && f.before.is_none()).then_some(super::issues::REFRESH_SECS);
    let notice = f.retried.map(|n| {
        let to = if f.domain.is_empty() {
            f.address.clone()
        } else {
            format!("addresses at {}", f.domain)
        };
        match n {
            0 => format!(
                "Nothing to retry: no digest to {to} has failed (or its issue was stopped)."
            ),
            1 => format!("1 failed digest to {to} is queued again."),
            n => format!("{n} failed digests to {to} are queued again."),
        }
    });
    html(
        status,
        LogPage {
            chrome,
            f,
            errors,
            statuses: &SendStatus::ALL,
            rows,
            older,
            nobody,
            refresh,
            notice,
        },
    )
}

/// The retry form: one address, or one domain.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct RetryForm {
    address: String,
    domain: String,
}

/// Put one address's, or one domain's, failed digests back in the queue, whatever their
/// issue (see `Store::requeue_failed_sends_to`), and wake the workers.
pub(super) async fn retry(
    State(st): State<AppState>,
    super::Change { v, form }: super::Change<RetryForm>,
) -> Page {
    use crate::store::RetryScope;
    let (scope, back) = if !form.address.trim().is_empty() {
        let a = EmailAddress::parse(&form.address)
            .map_err(|e| super::ConsoleError::BadRequest(e.to_string()))?;
        let back = ("address", a.as_str().to_string());
        (RetryScope::Address(a.as_str().to_string()), back)
    } else {
        let d = crate::domain::mail_domain(&form.domain).ok_or_else(|| {
            super::ConsoleError::BadRequest("Name an address or a domain to retry.".into())
        })?;
        (RetryScope::Domain(d.clone()), ("domain", d))
    };
    let n = st
        .store
        .requeue_failed_sends_to(&scope, st.clock.now())
        .await?;
    if n > 0 {
        st.engine.wake();
    }
    tracing::info!(user = %v.session.name, ?scope, requeued = n, "failed digests retried from the console");
    let query = super::query_string(&[(back.0, &back.1), ("retried", &n.to_string())]);
    super::see_other(&st, &format!("/log?{query}"))
}

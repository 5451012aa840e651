//! Helpers the shared SQL in `sql/` uses on both backends: column lists, row types, error
//! mapping.

use super::ConfirmOutcome;
use chrono::{DateTime, Utc};

/// `SELECT <the columns of Subscriber> <tail>`, as a literal so it stays a `&'static str`
/// query (sqlx's SQL-injection guard) while the column list is written once.
macro_rules! select_subscriber {
    ($tail:literal) => {
        concat!(
            "SELECT id, email, status, created_at, updated_at, signup_ip, signup_form, \
             confirmed_at, consent_at, consent_ip, consent_form, unsubscribed_at, last_notice_at ",
            $tail
        )
    };
}
pub(crate) use select_subscriber;

/// `SELECT <the columns of SendRecord> FROM sends <tail>`, likewise.
macro_rules! select_send {
    ($tail:literal) => {
        concat!(
            "SELECT id, issue_id, subscriber_id, kind, email, message_id, status, attempts, \
             last_reply, created_at, updated_at, sent_at FROM sends ",
            $tail
        )
    };
}
pub(crate) use select_send;

/// `SELECT <the columns of Article> FROM articles <tail>`, likewise.
macro_rules! select_article {
    ($tail:literal) => {
        concat!(
            "SELECT id, section_id, guid, title, url, summary_html, summary_text, author, \
             published_at, created_at, image_url, hold_until, withdrawn_at, EXISTS (SELECT 1 \
             FROM issue_articles ia WHERE ia.article_id = articles.id) AS mailed FROM articles ",
            $tail
        )
    };
}
pub(crate) use select_article;

/// `SELECT <the columns of Issue> FROM issues <tail>`, likewise.
macro_rules! select_issue {
    ($tail:literal) => {
        concat!(
            "SELECT id, schedule_id, schedule_name, scheduled_for, window_start, window_end, \
             status, subject, article_count, send_count, created_at, finished_at, (fill_after IS \
             NOT NULL) AS filling, stopped_at, stopped_by FROM issues ",
            $tail
        )
    };
}
pub(crate) use select_issue;

/// The `settings` key counting issue stops: workers compare it with what they last saw
/// (`Ledger::issue_stops`), so a stop made by another process reaches them.
pub(crate) const ISSUE_STOPS: &str = "ledger.issue_stops";

/// A confirmation token's row, with the address it confirms.
#[derive(sqlx::FromRow)]
pub(super) struct ConfirmRow {
    subscriber_id: i64,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    email: String,
}

pub(super) const CONFIRM_TOKEN_SQL: &str = "SELECT t.subscriber_id, t.expires_at, t.used_at, \
     s.email FROM tokens t JOIN subscribers s ON s.id = t.subscriber_id \
     WHERE t.token_hash = $1 AND t.purpose = 'confirm'";

/// What a confirmation token is worth at `now`; `Confirmed` means usable (confirm() then uses it).
pub(super) fn confirm_outcome(row: Option<ConfirmRow>, now: DateTime<Utc>) -> ConfirmOutcome {
    match row {
        None => ConfirmOutcome::Unknown,
        Some(t) if t.used_at.is_some() => ConfirmOutcome::AlreadyUsed,
        Some(t) if t.expires_at <= now => ConfirmOutcome::Expired,
        Some(t) => ConfirmOutcome::Confirmed {
            subscriber_id: t.subscriber_id,
            email: t.email,
        },
    }
}

/// Rows per statement when loading many rows: 5 columns × 1,000 stays under both SQLite's
/// (32,766) and PostgreSQL's (65,535) limit on bind parameters.
pub(super) const BULK_CHUNK: usize = 1000;

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A unique key's violation as `StoreError::Conflict` in words a person acts on ("a
/// section with slug \"wmd\" already exists"); any other error as it is.
pub(super) fn conflict_on_unique(
    e: sqlx::Error,
    what: impl FnOnce() -> String,
) -> super::StoreError {
    if is_unique_violation(&e) {
        super::StoreError::Conflict(what())
    } else {
        e.into()
    }
}

/// An article as stored, for telling a corrected story from an unchanged one, and whether a
/// digest has carried it already (then it stays as it was mailed).
#[derive(sqlx::FromRow)]
pub(super) struct StoredArticle {
    pub id: i64,
    pub title: String,
    pub url: String,
    pub summary_html: String,
    pub summary_text: String,
    pub author: Option<String>,
    pub image_url: Option<String>,
    pub mailed: bool,
}

//! The rows herald keeps and the values its store methods take and give, shared by the
//! slices of the store and by their callers.

use crate::domain::{SignupAction, SubscriberStatus};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Roles are a domain rule (`domain::Role`); re-exported here, where rows carry them.
pub use crate::domain::Role;

/// An issue: made with articles (its sends follow), or skipped (nothing new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    Queued,
    Skipped,
}

impl IssueStatus {
    pub fn is_queued(&self) -> bool {
        *self == IssueStatus::Queued
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Queued => "queued",
            IssueStatus::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [IssueStatus::Queued, IssueStatus::Skipped]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Section {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub feed_url: Option<String>,
    /// The section's page on the site (see migration 0006).
    pub page_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub status: SubscriberStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub signup_ip: Option<String>,
    pub signup_form: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_ip: Option<String>,
    pub consent_form: Option<String>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub last_notice_at: Option<DateTime<Utc>>,
}

/// Which mail a `sends` row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendKind {
    Confirm,
    AlreadySubscribed,
    Welcome,
    Digest,
}

impl SendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SendKind::Confirm => "confirm",
            SendKind::AlreadySubscribed => "already_subscribed",
            SendKind::Welcome => "welcome",
            SendKind::Digest => "digest",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Confirm,
            Self::AlreadySubscribed,
            Self::Welcome,
            Self::Digest,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A send's states and which may be retried are a domain rule (`domain::SendStatus`);
/// re-exported here, where rows carry them.
pub use crate::domain::SendStatus;

/// One row of the delivery ledger, as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SendRecord {
    pub id: i64,
    /// `issue` in JSON, as in `herald sends --format json` and the API.
    #[serde(rename = "issue")]
    pub issue_id: Option<i64>,
    /// `subscriber` in JSON; None once the subscriber is erased.
    #[serde(rename = "subscriber")]
    pub subscriber_id: Option<i64>,
    pub kind: SendKind,
    pub email: Option<String>,
    pub message_id: String,
    pub status: SendStatus,
    pub attempts: i32,
    pub last_reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A signup request, with the confirmation mail's parts prepared in advance (the store
/// decides inside its transaction whether they are used).
#[derive(Debug, Clone)]
pub struct NewSignup {
    pub email: String,
    pub section_ids: Vec<i64>,
    pub ip: Option<String>,
    pub form: String,
    pub now: DateTime<Utc>,
    pub cooldown: Duration,
    pub message_id: String,
    pub token_hash: String,
    pub sealed_token: String,
    pub token_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupOutcome {
    pub action: SignupAction,
    pub subscriber_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed {
        subscriber_id: i64,
        email: String,
    },
    AlreadyUsed,
    Expired,
    Unknown,
    /// The address is suppressed (by hand, a bounce, a complaint or erasure): a link
    /// mailed before that activates nothing.
    Withdrawn,
}

/// A send claimed by a delivery worker, with what it needs to render and address it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SendJob {
    pub id: i64,
    pub kind: SendKind,
    pub issue_id: Option<i64>,
    pub subscriber_id: Option<i64>,
    pub email: Option<String>,
    pub message_id: String,
    pub sealed_token: Option<String>,
    /// Attempts recorded before this claim (what reached, or tried to reach, a server);
    /// a claim, or taking a row back from a dead owner, is not one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The subscriber's status now (NULL when erased).
    pub subscriber_status: Option<SubscriberStatus>,
    /// The subscriber's section ids now, comma-separated: read with the claim so that
    /// composing a digest needs no query per message.
    pub subscriber_sections: Option<String>,
}

impl SendJob {
    pub fn section_ids(&self) -> Vec<i64> {
        self.subscriber_sections
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

/// What happened to one send attempt. (Serialised in the outcome journal,
/// `delivery::journal`.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SendOutcome {
    Sent {
        reply: String,
    },
    Retry {
        reply: String,
        next_attempt_at: DateTime<Utc>,
    },
    Failed {
        reply: String,
    },
    /// Permanent failure that says the mailbox does not exist: fail it and suppress the address.
    Bounced {
        reply: String,
        email_hash: String,
    },
    Suppressed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendResult {
    pub send_id: i64,
    /// The worker that sent it: the outcome is written only while that worker still holds
    /// the row's lease (the fence against a worker whose lease passed).
    pub lease_owner: String,
    #[serde(flatten)]
    pub outcome: SendOutcome,
}

/// Who asks for a lease: a worker (`owner`, unique per worker) of a process (`instance`,
/// whose heartbeat tells whether it is alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub instance: String,
}

/// A running `herald serve` process, as its heartbeat row records it.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
}

/// One address of a bulk import, with a confirmation prepared in case it is new.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub email: String,
    pub email_hash: String,
    pub message_id: String,
    pub token_hash: String,
    pub sealed_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub new_subscribers: u64,
    pub merged: u64,
    pub skipped_unsubscribed: u64,
    pub skipped_suppressed: u64,
    pub confirmations_queued: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SubscriberFilter {
    pub status: Option<SubscriberStatus>,
    pub section_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Article {
    pub id: i64,
    pub section_id: i64,
    pub guid: String,
    pub title: String,
    pub url: String,
    pub summary_html: String,
    pub summary_text: String,
    pub author: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub image_url: Option<String>,
    /// Held back: no issue made before this time carries it.
    pub hold_until: Option<DateTime<Utc>>,
    /// Withdrawn: no issue carries it.
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// An issue carries it: it stays as it was mailed.
    pub mailed: bool,
}

/// An article to store; `guid` is unique per section, so storing it twice adds nothing.
#[derive(Debug, Clone)]
pub struct NewArticle {
    pub guid: String,
    pub title: String,
    pub url: String,
    pub summary_html: String,
    pub summary_text: String,
    pub author: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    /// An absolute https URL of the article's picture.
    pub image_url: Option<String>,
}

/// What kind of mail came back: a domain rule (`domain::ReturnedKind`), re-exported here,
/// where rows carry it.
pub use crate::domain::ReturnedKind;

/// One returned message, with the send its address names (verified) if any.
#[derive(Debug, Clone)]
pub struct NewReturned {
    pub kind: ReturnedKind,
    pub send_id: Option<i64>,
    /// Without a send: the reader's address, from a source that is trusted to name it (an
    /// authenticated webhook; never the text of a mail, which anyone can write).
    pub reader_email: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub raw: RawReturned,
    pub now: DateTime<Utc>,
    /// Temporary failures of one address that suppress it, counted since `soft_since`.
    pub soft_limit: u32,
    pub soft_since: DateTime<Utc>,
    /// A webhook message's own id (`source`, id): a second delivery of it is recorded as
    /// a repeat and acts on nobody.
    pub dedup: Option<(String, String)>,
}

/// The raw text of a returned message, kept once per message however many recipients it
/// names, and only when it names a reader herald knows.
#[derive(Debug, Clone)]
pub enum RawReturned {
    /// Keep this text with the record if it names a reader.
    Text(String),
    /// Kept already, with an earlier record of the same message.
    Kept(i64),
    /// Nothing to keep.
    None,
}

/// What recording a returned message did.
#[derive(Debug, Clone)]
pub struct ReturnedRecorded {
    /// In words, as `herald bounces list` shows it.
    pub action: String,
    /// Where its raw text was kept, for the message's other recipients.
    pub raw_kept: Option<i64>,
    /// The reader it was about, if herald knows them.
    pub email: Option<String>,
}

/// A receiving domain herald stopped sending to for a while (policy refusals).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DomainPause {
    pub domain: String,
    pub paused_at: DateTime<Utc>,
    pub paused_until: DateTime<Utc>,
    pub backoff_secs: i64,
    pub refusals: i64,
    /// The provider's words that tripped it.
    pub reason: String,
}

/// A returned message as the operator sees it (`herald bounces list`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReturnedRow {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub kind: ReturnedKind,
    pub send_id: Option<i64>,
    pub subscriber_id: Option<i64>,
    /// The reader's address, while herald still has it.
    pub email: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub action: String,
}

/// A suppression's reason as an operator gives it: one word such as `manual` or `legal`.
pub fn valid_suppression_reason(reason: &str) -> bool {
    !reason.is_empty()
        && reason.len() <= 40
        && reason
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One suppressed address: its hash, why, since when, and the address while a subscriber
/// row still carries it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Suppression {
    pub email_hash: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// A suppression an operator lifted, and who.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SuppressionLift {
    pub email_hash: String,
    pub reason: String,
    pub suppressed_at: DateTime<Utc>,
    pub lifted_at: DateTime<Utc>,
    pub lifted_by: String,
}

/// What storing a batch of articles did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArticleWrite {
    pub added: u64,
    /// Corrected: same guid, changed content, not mailed yet.
    pub updated: u64,
}

/// A section's feed and the state of its last poll.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SectionFeed {
    pub id: i64,
    pub slug: String,
    pub feed_url: Option<String>,
    pub feed_etag: Option<String>,
    pub feed_last_modified: Option<String>,
    pub feed_checked_at: Option<DateTime<Utc>>,
    pub feed_error: Option<String>,
    /// What the last successful read found (see `FeedReport`).
    pub feed_report: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A person who logs in to the console (`herald users add`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ConsoleUser {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user with the hash their password is checked against.
#[derive(Clone, sqlx::FromRow)]
pub struct UserLogin {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

impl std::fmt::Debug for UserLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLogin")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A console session, with whose it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleSession {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    /// What every state-changing form of this session carries.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Schedule {
    pub id: i64,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub subject: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub next_run_at: DateTime<Utc>,
    /// Its digests show article pictures.
    pub images: bool,
}

#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub subject: Option<String>,
    pub section_ids: Vec<i64>,
    pub next_run_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Article pictures in its digests; None: on for a new schedule, unchanged on an edit.
    pub images: Option<bool>,
}

/// One digest run to create, with its tick claimed in the same transaction.
#[derive(Debug, Clone)]
pub struct IssuePlan {
    pub schedule_id: i64,
    pub schedule_name: String,
    /// `Some((expected, new))`: claim the tick by moving `next_run_at` from `expected` to
    /// `new`; no issue if another instance already moved it. `None`: a manual run.
    pub claim: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub scheduled_for: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The oldest arrival a schedule's issues consider (its creation minus
    /// `digests.first_lookback`); also the first issue's window start.
    pub first_window_start: DateTime<Utc>,
    /// Record the tick as skipped (too late) without sending.
    pub stale: bool,
    pub subject: String,
    /// Message-IDs are `<d{issue}.{subscriber}.{nonce}@{domain}>`: fixed at enqueue time.
    pub message_id_nonce: String,
    pub message_id_domain: String,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Issue {
    pub id: i64,
    pub schedule_id: Option<i64>,
    pub schedule_name: String,
    pub scheduled_for: DateTime<Utc>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Written only for a skipped issue: "queued" is how every other issue began, and read
    /// beside a `state` of "sent" it said the opposite of the truth.
    #[serde(skip_serializing_if = "IssueStatus::is_queued")]
    pub status: IssueStatus,
    pub subject: String,
    pub article_count: i32,
    /// Readers whose `sends` rows are written so far (all of them once `filling` is false).
    pub send_count: i32,
    pub created_at: DateTime<Utc>,
    /// When its last send settled (see `Store::settle_issue`).
    pub finished_at: Option<DateTime<Utc>>,
    /// Its `sends` rows are still being written (see `Store::fill_issue`).
    pub filling: bool,
    /// When it was stopped (`IssueStore::stop_issue`) and by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

/// Whose failed digests to put back in the queue, across issues
/// (`Store::requeue_failed_sends_to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryScope {
    /// One address, as `EmailAddress` writes it.
    Address(String),
    /// Every address at one domain (lower case, its ASCII form, no "@").
    Domain(String),
}

/// What stopping an issue did (`IssueStore::stop_issue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopReport {
    pub issue: i64,
    /// Rows this stop made `cancelled` (0 when it was stopped before).
    pub cancelled: u64,
    /// Its mail the relay had taken when it stopped.
    pub sent: i64,
    /// When and by whom it was stopped; None when there was nothing left to stop (every
    /// send settled), and it was left as it was.
    pub stopped_at: Option<DateTime<Utc>>,
    pub stopped_by: Option<String>,
    /// It had been stopped before: this call changed nothing.
    pub already: bool,
}

/// What one `Store::fill_issue` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillStep {
    pub written: u64,
    /// Every reader of the issue has a row now.
    pub done: bool,
}

/// An article of an issue, with the section it came through.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssueArticle {
    pub section_id: i64,
    pub section_slug: String,
    pub section_name: String,
    pub section_page_url: Option<String>,
    pub image_url: Option<String>,
    pub title: String,
    pub url: String,
    pub summary_html: String,
    pub summary_text: String,
    pub author: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A filter on the delivery log.
#[derive(Debug, Clone, Default)]
pub struct SendFilter {
    pub issue_id: Option<i64>,
    pub status: Option<SendStatus>,
    pub email: Option<String>,
    pub updated_since: Option<DateTime<Utc>>,
    /// At most this many rows, oldest update first.
    pub limit: Option<i64>,
}

/// A page of the console's subscriber list, newest first, keyset-paginated like
/// [`LogQuery`].
#[derive(Debug, Clone, Default)]
pub struct SubscriberQuery {
    /// The start of the address, or `@domain` for every address there (any case).
    pub search: Option<String>,
    pub status: Option<SubscriberStatus>,
    pub section_id: Option<i64>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// A page of the delivery log, newest send first. Keyset-paginated: `before` is the id of
/// the last row of the previous page, so a page costs the same however deep it is.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub issue_id: Option<i64>,
    pub status: Option<SendStatus>,
    pub subscriber_id: Option<i64>,
    /// Rows last changed in [since, until).
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

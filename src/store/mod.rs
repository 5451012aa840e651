//! Persistence. [`Store`] is the only way the rest of herald touches the database, and this
//! folder is the only place with SQL. Two implementations: SQLite (embedded default) and
//! PostgreSQL (production, several instances on one database). SQL that is the same in both
//! dialects is written once in `sql/` (compiled once per backend); only real differences
//! (claiming work, hourly counts, migrations) are written twice, in `sqlite.rs` and `postgres.rs`.

mod postgres;
mod shared;
mod sqlite;

use crate::domain::SubscriberStatus;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot open the database: {0}")]
    Open(String),
    /// The outcome journal (`delivery::journal`) could not be written.
    #[error("cannot record the outcome: {0}")]
    Journal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A state kept as its name in a TEXT column (each table's CHECK lists the names): read
/// and written through sqlx as text on both backends, so rows carry the enum and nothing
/// compares strings by hand. Also `Display` as that name.
macro_rules! text_column {
    ($ty:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                <$ty>::parse(s).ok_or_else(|| {
                    format!("{s:?} is not a {} herald knows", stringify!($ty)).into()
                })
            }
        }
        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_string(), buf)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_column!(SubscriberStatus);
text_column!(SendKind);
text_column!(SendStatus);
text_column!(ReturnedKind);
text_column!(Role);
text_column!(crate::audit::Via);
text_column!(IssueStatus);

mod rows;
pub use rows::*;

/// Everything herald keeps, for the callers that need all of it (tests, the CLI, wiring).
/// Its slices, each declared by the part of herald that uses it, are its supertraits:
/// [`crate::delivery::Ledger`] for the delivery workers.
#[async_trait]
pub trait Store:
    crate::delivery::Ledger
    + crate::digests::ScheduleStore
    + crate::digests::IssueStore
    + crate::digests::DigestStore
    + crate::subscriptions::SubscriberStore
    + crate::subscriptions::SubscriberAdminStore
    + crate::subscriptions::SubscriptionStore
    + crate::articles::ArticleStore
    + crate::returned::ReturnedStore
    + crate::returned::SuppressionStore
    + crate::access::AccessStore
    + crate::audit::AuditStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;

    /// Read a setting, or store `value` if there is none yet; returns what is stored.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Store a setting, replacing what was there.
    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Sends not yet settled (queued, retrying or sending), for `deliver_all_pending` and metrics.
    async fn pending_send_count(&self) -> StoreResult<i64>;
    /// The earliest `next_attempt_at` of a send waiting to be retried or claimed.
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;

    // --- what the console's dashboard shows
    /// Sends by status among those updated since `since`.
    async fn send_counts_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<(SendStatus, i64)>>;
    /// Sends that became `sent` per hour since `since`: (the hour's start, count), hours
    /// without any left out.
    async fn sent_per_hour(&self, since: DateTime<Utc>) -> StoreResult<Vec<(DateTime<Utc>, i64)>>;

    async fn list_sends(&self, filter: &SendFilter) -> StoreResult<Vec<SendRecord>>;
    /// The console's delivery log: newest first, see [`LogQuery`].
    async fn send_log(&self, q: &LogQuery) -> StoreResult<Vec<SendRecord>>;
    /// Put the failed sends of an issue back in the queue, due `now`, and only those: a
    /// row that was delivered, is in flight, is queued or went to an address that must not
    /// get mail is never touched (see [`SendStatus::why_not_retried`]); nothing of a
    /// stopped issue is.
    async fn requeue_failed_sends(&self, issue_id: i64, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Put the failed digests of one address, or of every address at one domain, back in
    /// the queue, due `now`, whatever their issue (after a blocklisting is lifted, say):
    /// the same rule as [`Store::requeue_failed_sends`], nothing of a stopped issue, and
    /// confirmation and welcome mails never (a late one carries a stale link).
    async fn requeue_failed_sends_to(
        &self,
        scope: &RetryScope,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    async fn unsettled_sends_of_issue(&self, issue_id: i64) -> StoreResult<i64>;
    /// The first use of a one-time form token (`kind` says which form): true the first time,
    /// false for a repeat (a double click, a reload that posts again). Kept a day, with the
    /// webhooks' message ids (the same table and pruning).
    async fn first_use(&self, kind: &str, token: &str, now: DateTime<Utc>) -> StoreResult<bool>;
}

/// Open the store named by a database URL (`sqlite:PATH` or `postgres://…`), making the
/// SQLite file (and its folder) if it is missing.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    open(url, max_connections, true).await
}

/// Open the store; with `create` false a missing SQLite file is an error that names the
/// path, not a new empty database (a command run from another folder once answered "no
/// subscriber" from a fresh `./var/herald.db`, which looked like data loss).
pub async fn open(url: &str, max_connections: u32, create: bool) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        Ok(Arc::new(
            SqliteStore::open_with(path, max_connections, create).await?,
        ))
    } else {
        Err(StoreError::Open(format!(
            "unsupported database URL {url:?}"
        )))
    }
}

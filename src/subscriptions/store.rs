//! What the reader's side needs of the store, declared here: signups, confirmation,
//! preferences and unsubscribes ([`SubscriberStore`]); imports and the operator's subscriber
//! tools ([`SubscriberAdminStore`]). `store::Store` has both as supertraits; the SQL is in
//! `store/sql/subscribers.rs` and `store/sql/subscriber_admin.rs`.

#[allow(unused_imports)]
use crate::domain::{SignupAction, SubscriberStatus};
#[allow(unused_imports)]
use crate::store::*;
use chrono::{DateTime, Duration, Utc};

#[async_trait::async_trait]
pub trait SubscriberStore: Send + Sync + 'static {
    async fn signup(&self, req: &NewSignup) -> StoreResult<SignupOutcome>;
    /// Several signups in one transaction, in order (each sees the ones before it): one
    /// commit for all. An error fails them all; the caller retries them one by one.
    async fn signup_batch(&self, reqs: &[NewSignup]) -> StoreResult<Vec<SignupOutcome>>;
    async fn confirm(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        ip: Option<&str>,
        welcome_message_id: &str,
    ) -> StoreResult<ConfirmOutcome>;
    /// What `confirm` would answer, without changing anything.
    async fn peek_confirm_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ConfirmOutcome>;
    async fn subscriber_by_id(&self, id: i64) -> StoreResult<Option<Subscriber>>;
    async fn subscriber_by_email(&self, email: &str) -> StoreResult<Option<Subscriber>>;
    async fn subscriber_sections(&self, id: i64) -> StoreResult<Vec<Section>>;
    /// Replace the subscriber's sections; an empty list unsubscribes. Only for active ones.
    async fn set_preferences(
        &self,
        id: i64,
        section_ids: &[i64],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Returns whether anything changed (false when already unsubscribed).
    async fn unsubscribe(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Delete pending subscribers with no confirmation link valid after `cutoff`
    /// and created before it.
    async fn purge_pending(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;
    async fn subscriber_section_ids(&self, subscriber_id: i64) -> StoreResult<Vec<i64>>;
}

/// What the subscriptions service holds: its own slices (readers one by one, and as a list
/// for staff), and the sections readers choose from. A supertrait of `store::Store`, so the
/// whole store is one.
pub trait SubscriptionStore:
    SubscriberStore + SubscriberAdminStore + crate::articles::ArticleStore
{
}

impl<T> SubscriptionStore for T where
    T: SubscriberStore + SubscriberAdminStore + crate::articles::ArticleStore + ?Sized
{
}

/// What staff and operators do with readers as a list: import, browse, count, export, erase.
#[async_trait::async_trait]
pub trait SubscriberAdminStore: Send + Sync + 'static {
    async fn import_subscribers(
        &self,
        rows: &[ImportRow],
        section_ids: &[i64],
        preconfirmed: bool,
        form: &str,
        now: DateTime<Utc>,
        confirm_ttl: Duration,
    ) -> StoreResult<ImportReport>;
    async fn list_subscribers(&self, filter: &SubscriberFilter) -> StoreResult<Vec<Subscriber>>;
    async fn sends_for_subscriber(&self, id: i64) -> StoreResult<Vec<SendRecord>>;
    async fn subscriber_page(&self, q: &SubscriberQuery) -> StoreResult<Vec<Subscriber>>;
    /// Subscribers by status.
    async fn subscriber_status_counts(&self) -> StoreResult<Vec<(SubscriberStatus, i64)>>;
    /// Active readers per section id.
    async fn section_reader_counts(&self) -> StoreResult<Vec<(i64, i64)>>;
    /// Erase a subscriber's personal data and keep only `email_hash` on the suppression list.
    async fn erase_subscriber(
        &self,
        id: i64,
        email_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

//! What returned mail needs of the store, declared here: the returned messages and what
//! herald did about them, and paused domains ([`ReturnedStore`]); the suppression list and
//! its lifts ([`SuppressionStore`]). `store::Store` has both as supertraits; the SQL is in
//! `store/sql/returned.rs` and `store/sql/suppressions.rs`.

#[allow(unused_imports)]
use crate::store::*;
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait ReturnedStore: Send + Sync + 'static {
    /// Keep a returned message and act on it in one transaction: a hard bounce marks its
    /// send `bounced` and suppresses the address, a refusal marks it `failed`, a complaint
    /// unsubscribes and suppresses, mail to an unsubscribe address unsubscribes; delays
    /// and successes change nothing. Returns what was done.
    async fn record_returned(&self, r: &NewReturned) -> StoreResult<ReturnedRecorded>;
    /// The digest send whose Message-ID this is (`<d{issue}.{subscriber}.…@…>`, matched
    /// whole against the ledger). Only ids with a per-reader random part are matched:
    /// they cannot be guessed from one's own.
    async fn send_by_message_id(&self, message_id: &str) -> StoreResult<Option<i64>>;
    /// Forget webhook message ids seen before `before`; how many.
    async fn purge_webhook_seen(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// Pause (or keep paused) sending to a domain.
    async fn pause_domain(&self, p: &DomainPause) -> StoreResult<()>;
    /// Every domain pause on record (some may have run out).
    async fn domain_pauses(&self) -> StoreResult<Vec<DomainPause>>;
    /// Lift a domain's pause: the sends it held back are due at `now`. False if it had none.
    async fn resume_domain(&self, domain: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Returned messages, newest first.
    async fn list_returned(
        &self,
        since: Option<DateTime<Utc>>,
        kind: Option<ReturnedKind>,
        limit: i64,
    ) -> StoreResult<Vec<ReturnedRow>>;
    /// One returned message with its raw text.
    async fn returned(&self, id: i64) -> StoreResult<Option<(ReturnedRow, String)>>;
    /// Empty the raw text of returned messages received before `cutoff`; how many.
    async fn drop_returned_raw(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;
    /// Returned mail newest first: of one kind and/or one subscriber, below id `before`.
    async fn returned_page(
        &self,
        kind: Option<ReturnedKind>,
        subscriber_id: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ReturnedRow>>;
    /// Returned mail by kind since `since`.
    async fn returned_counts_since(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(ReturnedKind, i64)>>;
}

/// Suppressed addresses: added by returned mail, by hand or by import; lifted only by hand,
/// with a record of who lifted what.
#[async_trait::async_trait]
pub trait SuppressionStore: Send + Sync + 'static {
    async fn list_suppressions(&self) -> StoreResult<Vec<Suppression>>;
    /// Suppress an address by hand: no more mail of any kind, and a subscriber with it is
    /// unsubscribed. False if it was suppressed already.
    async fn add_suppression(
        &self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Lift a suppression, recording who did (`by`: `cli:…`, `api:…`, `console:…`) in the
    /// same transaction. Nobody is subscribed again by it: a reader who bounced or
    /// complained becomes `unsubscribed`, free to sign up and confirm anew. False if the
    /// address was not suppressed.
    async fn remove_suppression(
        &self,
        email: &str,
        now: DateTime<Utc>,
        by: &str,
    ) -> StoreResult<bool>;
    /// The suppressions lifted, newest first.
    async fn suppression_lifts(&self, limit: i64) -> StoreResult<Vec<SuppressionLift>>;
    /// The newest suppressions, and how many there are.
    async fn recent_suppressions(&self, limit: i64) -> StoreResult<(Vec<Suppression>, i64)>;
    async fn suppression(&self, email_hash: &str) -> StoreResult<Option<Suppression>>;
    async fn is_suppressed(&self, email_hash: &str) -> StoreResult<bool>;
}

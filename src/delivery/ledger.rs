//! What the delivery workers need of the store, declared here by them (the consumer
//! declares its store, as listmonk's managers do): claim due sends under a lease, keep and
//! give back leases, record outcomes fenced by the lease, and the instance heartbeats that
//! let a dead instance's rows be taken back. `store::Store` has it as a supertrait; the SQL
//! is in `store/sql/ledger.rs`, written once for both dialects (but the claim, which is not).

use crate::store::{InstanceInfo, LeaseHolder, SendJob, SendResult, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Claim up to `limit` due sends for `holder` until `lease_until`: rows whose lease
    /// expired first, then retries, then new rows; each in (due time, id) order. The cost
    /// is O(limit), whatever the queue's length.
    async fn claim_sends(
        &self,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>>;
    /// Extend the lease on every row `owner` still holds; returns the ids of those rows.
    /// A row another worker took over is not among them, and must not be sent.
    async fn renew_leases(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<i64>>;
    /// Hand back rows `owner` claimed but never offered to a server (its heartbeat went
    /// stale before their turn): due at `now` again, the claim's attempt undone. Only rows
    /// still `sending` under `owner`; returns how many.
    async fn release_unsent(
        &self,
        owner: &str,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Record outcomes (of one or several workers) in one transaction. A row is touched
    /// only while its `lease_owner` still holds it (a worker whose lease passed must not
    /// overwrite the outcome of the one that took over), with one exception: a row its
    /// issue's stop made `cancelled` while the holder's message was with the server takes
    /// `sent` (the truth), and no other outcome. Returns how many rows were written.
    async fn complete_sends(&self, results: &[SendResult], now: DateTime<Utc>) -> StoreResult<u64>;
    /// Say that `instance` is alive at `now` (insert or refresh its row).
    async fn heartbeat(&self, instance: &InstanceInfo, now: DateTime<Utc>) -> StoreResult<()>;
    /// Instances whose heartbeat is older than `cutoff` are dead: their leases end at `now`
    /// (so any worker takes the rows at once) and their rows are removed. Returns how many
    /// sends were released.
    async fn reap_dead_instances(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// A clean stop: end this instance's leases at `now` and remove its row.
    async fn release_instance(&self, instance: &str, now: DateTime<Utc>) -> StoreResult<u64>;
    /// How many issues were ever stopped (`IssueStore::stop_issue` counts them): a worker
    /// that sees it change renews its leases at once, and so drops the rows a stop
    /// cancelled — also when the stop came from another process.
    async fn issue_stops(&self) -> StoreResult<i64>;
}

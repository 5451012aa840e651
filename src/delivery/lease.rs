//! The lease keeper: this instance's claims on the ledger's rows. A batch is claimed under a
//! lease; before each message the worker asks [`Leases::still_held`], which renews the lease
//! at half-time and says whether the row is still this worker's with room for a whole
//! exchange. A heartbeat older than half of `delivery.instance_timeout` stops all sending:
//! others may already have declared this instance dead and taken its rows.

use crate::clock::Clock;
use crate::store::{InstanceInfo, LeaseHolder, SendJob, StoreResult};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a worker sending reads the ledger's count of issue stops, for a stop made by
/// another process (the CLI, another instance): one small read per worker four times a
/// second, against thousands of messages.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Issue stops as this process hears of them. A stop made here (console, API) is told at
/// once with [`IssueStops::stopped`]; one made elsewhere shows in the ledger's count
/// ([`super::Ledger::issue_stops`]), read every [`STOP_POLL`]. Either way a worker
/// renews its leases before its next message, and the rows the stop cancelled are no
/// longer among those it holds.
#[derive(Debug, Default)]
pub struct IssueStops {
    here: AtomicU64,
}

impl IssueStops {
    /// An issue was stopped by this process.
    pub fn stopped(&self) {
        self.here.fetch_add(1, Ordering::AcqRel);
    }
    fn here(&self) -> u64 {
        self.here.load(Ordering::Acquire)
    }
}

/// A batch of claimed sends and the lease they are held under.
pub struct Batch {
    pub(super) holder: LeaseHolder,
    lease_until: DateTime<Utc>,
    pub(super) jobs: Vec<SendJob>,
    /// The ids still held after the last renewal (all of them until then).
    held: HashSet<i64>,
    /// The stops this batch has heard of: this process's count, the ledger's count and
    /// when it was read.
    stops_here: u64,
    stops_ledger: i64,
    stops_read: Instant,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.jobs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
    pub fn ids(&self) -> Vec<i64> {
        self.jobs.iter().map(|j| j.id).collect()
    }
}

pub(super) struct Leases {
    pub(super) ledger: Arc<dyn super::Ledger>,
    pub(super) clock: Clock,
    pub(super) instance: InstanceInfo,
    pub(super) instance_timeout: Duration,
    pub(super) batch_size: u32,
    pub(super) lease: Duration,
    /// The longest one exchange with the server may take (connect + send timeouts): a
    /// message is sent only while at least this much of the lease is left.
    pub(super) exchange: Duration,
    /// When our heartbeat was last written; None while no heartbeat runs (tests, CLI),
    /// whose leases nobody reaps.
    pub(super) last_heartbeat: std::sync::Mutex<Option<std::time::Instant>>,
    pub(super) stops: Arc<IssueStops>,
}

pub(super) fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::minutes(5))
}

impl Leases {
    /// A lease holder for worker `name` of this process.
    pub(super) fn holder(&self, name: &str) -> LeaseHolder {
        LeaseHolder {
            owner: format!("{}/{name}", self.instance.id),
            instance: self.instance.id.clone(),
        }
    }

    /// Whether this instance's heartbeat is too old to trust its leases: others may already
    /// have declared it dead and taken its rows. (No heartbeat running: tests, CLI.)
    pub(super) fn heartbeat_stale(&self) -> bool {
        self.last_heartbeat
            .lock()
            .expect("heartbeat lock")
            .is_some_and(|beat| beat.elapsed() > self.instance_timeout / 2)
    }

    /// A heartbeat was written just now.
    pub(super) fn beat(&self) {
        *self.last_heartbeat.lock().expect("heartbeat lock") = Some(std::time::Instant::now());
    }

    /// Claim up to `delivery.batch_size` due sends for `holder`; nothing while this
    /// instance's heartbeat is stale (it could not send them, only keep them from others).
    pub(super) async fn claim(&self, holder: &LeaseHolder) -> StoreResult<Batch> {
        // Where the batch starts hearing of stops, read before the claim: a stop after
        // this read is noticed, one before it cancelled its rows before the claim.
        let stops_here = self.stops.here();
        let stops_ledger = self.ledger.issue_stops().await?;
        let now = self.clock.now();
        let lease_until = now + chrono(self.lease);
        let jobs = if self.heartbeat_stale() {
            Vec::new()
        } else {
            self.ledger
                .claim_sends(holder, now, lease_until, self.batch_size)
                .await?
        };
        Ok(Batch {
            holder: holder.clone(),
            lease_until,
            held: jobs.iter().map(|j| j.id).collect(),
            jobs,
            stops_here,
            stops_ledger,
            stops_read: Instant::now(),
        })
    }

    /// Whether this worker may send row `id` now: its heartbeat is fresh and the lease has
    /// room for one whole exchange. Renews the lease at half-time; the renewal says which
    /// rows are still ours.
    pub(super) async fn still_held(&self, batch: &mut Batch, id: i64) -> StoreResult<bool> {
        if self.heartbeat_stale() {
            tracing::warn!(
                send = id,
                "heartbeat stale: not sending; the row returns when its lease ends"
            );
            return Ok(false);
        }
        let now = self.clock.now();
        let left = batch.lease_until - now;
        let renew_below = chrono((self.lease / 2).max(self.exchange));
        if left < renew_below || self.issue_stopped(batch).await? {
            let until = now + chrono(self.lease);
            let ids = self
                .ledger
                .renew_leases(&batch.holder.owner, until, now)
                .await?;
            batch.lease_until = until;
            batch.held = ids.into_iter().collect();
        }
        Ok(batch.held.contains(&id)
            && batch.lease_until - self.clock.now() >= chrono(self.exchange))
    }

    /// Whether an issue was stopped since the batch last looked: told by this process, or
    /// counted in the ledger (read at most every [`STOP_POLL`]).
    async fn issue_stopped(&self, batch: &mut Batch) -> StoreResult<bool> {
        let here = self.stops.here();
        if here != batch.stops_here {
            batch.stops_here = here;
            return Ok(true);
        }
        if batch.stops_read.elapsed() < STOP_POLL {
            return Ok(false);
        }
        let count = self.ledger.issue_stops().await?;
        batch.stops_read = Instant::now();
        Ok(std::mem::replace(&mut batch.stops_ledger, count) != count)
    }
}

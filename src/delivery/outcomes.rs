//! The way an outcome reaches the ledger: [`OutcomeLog`] groups the outcomes of all workers
//! into one write (group commit), and a [`Gate`] holds the next message back from the
//! server until the previous outcome is written.

use crate::store::{SendResult, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

/// What must hold before a server may take a message: the previous message's outcome is in
/// the ledger. The envelope (MAIL, RCPT, DATA) goes out while that write runs; the message
/// itself, after which the server is responsible for it, only once the write is done. So a
/// crash can still double at most the one message per connection that was in flight.
pub struct Gate {
    pending: Option<tokio::task::JoinHandle<StoreResult<()>>>,
    error: Option<String>,
    failure: Option<StoreError>,
}

impl Gate {
    /// Nothing to wait for.
    pub fn open() -> Self {
        Self {
            pending: None,
            error: None,
            failure: None,
        }
    }

    /// Open once this write has succeeded.
    pub fn after(write: tokio::task::JoinHandle<StoreResult<()>>) -> Self {
        Self {
            pending: Some(write),
            error: None,
            failure: None,
        }
    }

    /// Wait for the write (once); whether sending may go on.
    pub async fn wait(&mut self) -> bool {
        if let Some(write) = self.pending.take() {
            match write.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.failure = Some(e),
                Err(e) => self.error = Some(format!("the ledger write panicked: {e}")),
            }
        }
        self.failure.is_none() && self.error.is_none()
    }

    /// After [`Gate::wait`]: why the write failed, if it did.
    pub fn take_failure(&mut self) -> Option<StoreError> {
        self.failure
            .take()
            .or_else(|| self.error.take().map(StoreError::Open))
    }
}

impl super::transport::Handover for Gate {
    async fn ready(&mut self) -> bool {
        self.wait().await
    }
}

/// Outcomes waiting to be written, in the order the servers answered. `durable` is the
/// sequence number up to which they are written: whoever holds the flush lock writes every
/// pending outcome (its own and those that queued while the previous write ran), so the
/// ledger costs one transaction per group of messages, not one per message.
pub(super) struct OutcomeLog {
    pending: std::sync::Mutex<PendingOutcomes>,
    durable: Mutex<u64>,
}

#[derive(Default)]
struct PendingOutcomes {
    last_seq: u64,
    items: Vec<SendResult>,
}

impl OutcomeLog {
    pub(super) fn new() -> Self {
        Self {
            pending: std::sync::Mutex::new(PendingOutcomes::default()),
            durable: Mutex::new(0),
        }
    }

    pub(super) fn push(&self, result: SendResult) -> u64 {
        let mut p = self.pending.lock().expect("outcome log lock");
        p.last_seq += 1;
        p.items.push(result);
        p.last_seq
    }

    /// Write whatever is pending (outcomes a failed write left behind). Returns the
    /// sequence number up to which outcomes are written, if anything was pending.
    pub(super) async fn flush_pending(
        &self,
        store: &dyn super::Ledger,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<u64>> {
        let last = {
            let p = self.pending.lock().expect("outcome log lock");
            if p.items.is_empty() {
                return Ok(None);
            }
            p.last_seq
        };
        self.flush_until(store, last, now).await?;
        Ok(Some(*self.durable.lock().await))
    }

    /// Return once every outcome up to `seq` is written. On a database error the outcomes
    /// stay pending (the next flush, by any worker, writes them) and the error is returned.
    pub(super) async fn flush_until(
        &self,
        store: &dyn super::Ledger,
        seq: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut durable = self.durable.lock().await;
        if *durable >= seq {
            return Ok(());
        }
        let (batch, upto) = {
            let mut p = self.pending.lock().expect("outcome log lock");
            (std::mem::take(&mut p.items), p.last_seq)
        };
        match store.complete_sends(&batch, now).await {
            Ok(written) => {
                if (written as usize) < batch.len() {
                    metrics::counter!("herald_lease_lost_total", "at" => "record")
                        .increment((batch.len() - written as usize) as u64);
                }
                *durable = upto;
                Ok(())
            }
            Err(e) => {
                let mut p = self.pending.lock().expect("outcome log lock");
                let later = std::mem::replace(&mut p.items, batch);
                p.items.extend(later);
                Err(e)
            }
        }
    }
}

//! The delivery workers: claim a batch of due `sends` with a lease, compose and send each,
//! then record the whole batch's outcomes in one transaction. A worker that dies leaves its
//! lease to expire and the rows are claimed again (same Message-ID). A row becomes `sent`
//! only after the server's 2xx.

use super::OutgoingMail;
use super::mail::{MailHeaders, build_message};
use super::transport::{MailSender, SendError, Transport};
use crate::clock::Clock;
use crate::store::{SendJob, SendOutcome, SendResult, Store, StoreResult};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, watch};

/// What to send for a claimed row, or why not to.
#[derive(Debug, Clone)]
pub enum Composed {
    Mail {
        mail: OutgoingMail,
        unsubscribe_url: Option<String>,
    },
    /// The recipient left, was erased or is suppressed since the row was queued.
    Skip(String),
}

/// Turns a ledger row into a message. Implemented where the templates live, so delivery
/// knows nothing of subscriptions or digests.
#[async_trait::async_trait]
pub trait Composer: Send + Sync {
    async fn compose(&self, job: &SendJob) -> Result<Composed, String>;
}

/// Exponential backoff for temporary failures, until `max_age` after the row was queued.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_age: Duration,
}

impl RetryPolicy {
    /// When to try again after `attempts` attempts, or None to give up.
    pub fn next_attempt(
        &self,
        attempts: i32,
        queued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let exp = attempts.clamp(1, 30) as u32 - 1;
        let delay = self
            .initial
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max);
        let next = now + chrono::Duration::from_std(delay).ok()?;
        let deadline = queued_at + chrono::Duration::from_std(self.max_age).ok()?;
        (next <= deadline).then_some(next)
    }
}

/// Spaces sends evenly to stay under `rate_per_second` across all workers.
struct RateLimiter {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

pub struct DeliveryEngine {
    store: Arc<dyn Store>,
    composer: Arc<dyn Composer>,
    transport: Transport,
    clock: Clock,
    from: Mailbox,
    list_id: String,
    unsubscribe_mailto: Option<String>,
    policy: RetryPolicy,
    batch_size: u32,
    lease: Duration,
    connections: u32,
    poll_interval: Duration,
    rate: Option<RateLimiter>,
    wake: Notify,
    dkim: Option<lettre::message::dkim::DkimConfig>,
}

impl DeliveryEngine {
    pub fn new(
        config: &crate::config::Config,
        store: Arc<dyn Store>,
        composer: Arc<dyn Composer>,
        clock: Clock,
    ) -> Self {
        let d = &config.delivery;
        Self {
            store,
            composer,
            transport: Transport::from_config(&config.mail),
            clock,
            from: config.mail.from.clone(),
            list_id: format!(
                "{} <{}.{}>",
                config.site.name, config.mail.list_id, config.mail.domain
            ),
            unsubscribe_mailto: config
                .mail
                .unsubscribe_mailto
                .as_ref()
                .map(|a| a.to_string()),
            policy: RetryPolicy {
                initial: d.initial_backoff.0,
                max: d.max_backoff.0,
                max_age: d.max_age.0,
            },
            batch_size: d.batch_size,
            lease: d.lease.0,
            connections: d.connections,
            poll_interval: d.poll_interval.0,
            rate: (d.rate_per_second > 0).then(|| RateLimiter {
                interval: Duration::from_secs_f64(1.0 / d.rate_per_second as f64),
                next: Mutex::new(tokio::time::Instant::now()),
            }),
            wake: Notify::new(),
            dkim: config.mail.dkim.as_ref().and_then(super::mail::dkim_config),
        }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Tell idle workers there is new work (a signup just queued a mail).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Claim and process one batch with `sender`. Returns how many rows it settled.
    pub async fn run_batch(&self, owner: &str, sender: &mut MailSender) -> StoreResult<usize> {
        let now = self.clock.now();
        let lease_until =
            now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(5));
        let jobs = self
            .store
            .claim_sends(owner, now, lease_until, self.batch_size)
            .await?;
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut results = Vec::with_capacity(jobs.len());
        let mut unreachable: Option<String> = None;
        for job in &jobs {
            let outcome = match &unreachable {
                // The server could not be reached a moment ago: do not spend a connect
                // timeout on every remaining message of the batch.
                Some(why) => {
                    self.retry_or_fail(job, format!("not attempted, server unreachable: {why}"))
                }
                None => {
                    let (outcome, down) = self.process(job, sender).await;
                    unreachable = down;
                    outcome
                }
            };
            record_metrics(job, &outcome);
            results.push(SendResult {
                send_id: job.id,
                outcome,
            });
        }
        self.store
            .complete_sends(owner, &results, self.clock.now())
            .await?;
        Ok(results.len())
    }

    /// Send one row; also says whether the server was unreachable.
    async fn process(
        &self,
        job: &SendJob,
        sender: &mut MailSender,
    ) -> (SendOutcome, Option<String>) {
        match self.attempt(job, sender).await {
            Err(SendError::Unreachable(why)) => {
                tracing::warn!(send = job.id, reason = %why, "mail server unreachable; will retry");
                (self.retry_or_fail(job, why.clone()), Some(why))
            }
            Err(other) => unreachable!("attempt() maps every other error: {other}"),
            Ok(outcome) => (outcome, None),
        }
    }

    /// Ok(outcome) for everything but an unreachable server.
    async fn attempt(
        &self,
        job: &SendJob,
        sender: &mut MailSender,
    ) -> Result<SendOutcome, SendError> {
        let composed = match self.composer.compose(job).await {
            Ok(c) => c,
            Err(e) => {
                return Ok(self.retry_or_fail(job, format!("could not compose the message: {e}")));
            }
        };
        let (mail, unsubscribe_url) = match composed {
            Composed::Mail {
                mail,
                unsubscribe_url,
            } => (mail, unsubscribe_url),
            Composed::Skip(reason) => return Ok(SendOutcome::Suppressed { reason }),
        };
        let headers = MailHeaders {
            from: self.from.clone(),
            message_id: job.message_id.clone(),
            list_id: self.list_id.clone(),
            unsubscribe_url,
            unsubscribe_mailto: self.unsubscribe_mailto.clone(),
        };
        let mut message = match build_message(&mail, &headers) {
            Ok(m) => m,
            Err(e) => {
                return Ok(SendOutcome::Failed {
                    reply: e.to_string(),
                });
            }
        };
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        if let Some(rate) = &self.rate {
            rate.acquire().await;
        }
        let started = std::time::Instant::now();
        let result = sender
            .send(message.envelope(), &job.message_id, &message.formatted())
            .await;
        metrics::histogram!("herald_send_duration_seconds").record(started.elapsed().as_secs_f64());
        let class = match &result {
            Ok(_) => "2xx",
            Err(SendError::Permanent { .. }) => "5xx",
            Err(SendError::Transient(r)) if r.contains("(4") || r.starts_with('4') => "4xx",
            Err(SendError::Transient(_) | SendError::Unreachable(_)) => "connection",
        };
        metrics::counter!("herald_smtp_replies_total", "class" => class).increment(1);
        Ok(match result {
            Ok(reply) => SendOutcome::Sent { reply },
            Err(SendError::Transient(reply)) => {
                tracing::warn!(send = job.id, kind = %job.kind, %reply, "temporary delivery failure; will retry");
                self.retry_or_fail(job, reply)
            }
            Err(e @ SendError::Unreachable(_)) => return Err(e),
            Err(SendError::Permanent {
                reply,
                mailbox_unknown,
            }) => {
                tracing::warn!(send = job.id, kind = %job.kind, %reply, "permanent delivery failure");
                match (mailbox_unknown, &job.email) {
                    (true, Some(email)) => SendOutcome::Bounced {
                        reply,
                        email_hash: crate::domain::sha256_hex(email),
                    },
                    _ => SendOutcome::Failed { reply },
                }
            }
        })
    }

    fn retry_or_fail(&self, job: &SendJob, reply: String) -> SendOutcome {
        match self
            .policy
            .next_attempt(job.attempts, job.created_at, self.clock.now())
        {
            Some(next_attempt_at) => SendOutcome::Retry {
                reply,
                next_attempt_at,
            },
            None => SendOutcome::Failed {
                reply: format!("gave up after {} attempts: {reply}", job.attempts),
            },
        }
    }

    /// Deliver everything due now, batch after batch, on one connection (tests, CLI).
    pub async fn deliver_due(&self) -> StoreResult<usize> {
        let owner = worker_name("drain", 0);
        let mut sender = self.transport.sender();
        let mut total = 0;
        loop {
            let n = self.run_batch(&owner, &mut sender).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        sender.close().await;
        Ok(total)
    }

    /// Start `delivery.connections` workers; they stop when `shutdown` turns true.
    pub fn spawn_workers(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.connections)
            .map(|i| {
                let engine = self.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let owner = worker_name("worker", i);
                    let mut sender = engine.transport.sender();
                    while !*shutdown.borrow() {
                        let idle = match engine.run_batch(&owner, &mut sender).await {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => {
                                tracing::error!(error = %e, "delivery worker: database error");
                                true
                            }
                        };
                        if idle {
                            tokio::select! {
                                _ = tokio::time::sleep(engine.poll_interval) => {}
                                _ = engine.wake.notified() => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                    }
                    sender.close().await;
                })
            })
            .collect()
    }
}

fn worker_name(kind: &str, i: u32) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
    let token = crate::domain::RandomToken::generate();
    let nonce = &token.as_str()[..8];
    format!("{host}:{}:{kind}{i}:{nonce}", std::process::id())
}

fn record_metrics(job: &SendJob, outcome: &SendOutcome) {
    let status = match outcome {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Retry { .. } => "retrying",
        SendOutcome::Failed { .. } => "failed",
        SendOutcome::Bounced { .. } => "bounced",
        SendOutcome::Suppressed { .. } => "suppressed",
    };
    metrics::counter!("herald_mails_total", "kind" => job.kind.clone(), "status" => status)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_gives_up() {
        let p = RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            max_age: Duration::from_secs(3 * 86_400),
        };
        let t0 = Utc::now();
        assert_eq!(
            p.next_attempt(1, t0, t0),
            Some(t0 + chrono::Duration::seconds(60))
        );
        assert_eq!(
            p.next_attempt(2, t0, t0),
            Some(t0 + chrono::Duration::seconds(120))
        );
        assert_eq!(
            p.next_attempt(10, t0, t0),
            Some(t0 + chrono::Duration::seconds(3600))
        );
        let late = t0 + chrono::Duration::days(3);
        assert_eq!(p.next_attempt(50, t0, late), None);
    }
}

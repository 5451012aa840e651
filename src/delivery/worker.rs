//! The delivery workers. A worker claims a batch of due `sends` under a lease, then for each
//! message: composes it, waits for the rate limiter, makes sure it still holds the row's
//! lease (renewing it at half-time; a row another worker took over is dropped, never sent),
//! sends it, and has the outcome written before it starts the next message. So a process
//! that dies can have sent at most the one message per connection it was in the middle of,
//! and a slow relay or a low rate limit makes delivery slow, never repeated.
//!
//! Outcomes are written with group commit ([`OutcomeLog`]): the outcomes of all workers that
//! finished a message while the previous write ran go out in one transaction. Under
//! `herald serve` on SQLite, "written" first means the outcome journal (`journal.rs`): an
//! append to a local file before the next message, and the ledger write a moment later, in
//! bulk, by a flusher task.
//!
//! Each `herald serve` has a heartbeat row; the rows leased by an instance whose heartbeat
//! stopped are taken back at once, and a worker whose own heartbeat could not be written
//! stops sending (the others may already consider it dead). A row becomes `sent` only after
//! the server's 2xx.

use super::builder::{Composer, MessageBuilder, NotBuilt};
use super::domains::{DomainWatch, PauseSettings};
use super::lease::{Batch, Leases, chrono};
use super::outcomes::{Gate, OutcomeLog};
use super::pacing::{RateLimiter, RetryPolicy};
use super::transport::{MailSender, SendError, Transport};
use crate::clock::Clock;
use crate::jobs::JobHealth;
use crate::store::{
    InstanceInfo, LeaseHolder, SendJob, SendOutcome, SendResult, Store, StoreResult,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, watch};

/// What to send for a claimed row, or why not to.
/// What one batch came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows whose outcome was recorded (sent, retrying, failed, bounced, suppressed).
    pub settled: usize,
    /// Rows not sent: another worker had taken them over, or this instance's heartbeat
    /// had gone stale (those are handed back at once).
    pub lost: usize,
}

/// A message ready to go (envelope and the exact bytes, signed), or why it will not.
enum Prepared {
    Message(lettre::address::Envelope, Vec<u8>),
    Outcome(SendOutcome),
}

/// The tasks of [`DeliveryEngine::spawn_workers`].
pub struct Workers {
    /// One per connection.
    pub senders: Vec<tokio::task::JoinHandle<()>>,
    /// Writes journaled outcomes to the ledger (SQLite under `serve`).
    pub flusher: Option<tokio::task::JoinHandle<()>>,
}

/// How a stop reaches the workers, in two steps. `stopping` (SIGTERM): finish the exchange
/// under way, send nothing more, hand the rest of the batch back to the queue at once.
/// `abandon` (`delivery.shutdown_grace` later): stop waiting for a server that has not
/// answered; that message is left to be retried (it may have arrived: the one message per
/// connection a stop, like a crash, can leave in doubt).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    pub stopping: tokio_util::sync::CancellationToken,
    pub abandon: tokio_util::sync::CancellationToken,
}

/// The delivery workers and what they share. Each part has one job: the lease keeper
/// ([`Leases`]: claims, renewals, the heartbeat's word on them), the message builder
/// ([`MessageBuilder`]), the transport, pacing (rate limit, retry policy) and the outcome
/// log with its journal. The engine runs the loop that ties them together (`send_batch`).
pub struct DeliveryEngine {
    /// The store, as much of it as delivery uses (see `ledger.rs`).
    ledger: Arc<dyn super::Ledger>,
    leases: Leases,
    builder: MessageBuilder,
    transport: Transport,
    clock: Clock,
    retry: RetryPolicy,
    rate: Option<RateLimiter>,
    log: Arc<OutcomeLog>,
    /// `{db}.outcomes.` on SQLite: where outcome journals live (see `journal.rs`).
    journal_prefix: Option<std::path::PathBuf>,
    /// This process's journal, once its workers run.
    journal: std::sync::OnceLock<Arc<super::journal::Journal>>,
    /// Outcomes were journaled: the flusher has ledger writes to do.
    flush_wake: Notify,
    /// Receiving domains paused for policy refusals, and the outcomes that pause them.
    domains: Arc<DomainWatch>,
    connections: u32,
    poll_interval: Duration,
    /// `mail.idle_timeout`: a worker that has had nothing to send this long says QUIT. An
    /// idle session holds one of the relay's connection slots (relays limit them per client:
    /// with a limit below `delivery.connections`, a worker could not connect while the others
    /// sat idle on theirs), and the relay would drop it after its own timeout anyway.
    idle_timeout: Duration,
    /// New work was queued (a signup's mail): idle workers look now.
    wake: Notify,
    /// SIGTERM, as the workers hear it (see [`Stop`]).
    stop: Stop,
    /// Where the workers report progress (set when they are started).
    health: std::sync::OnceLock<Arc<JobHealth>>,
}

impl DeliveryEngine {
    pub fn new(
        config: &crate::config::Config,
        store: Arc<dyn Store>,
        composer: Arc<dyn Composer>,
        clock: Clock,
        key: crate::domain::SecretKey,
        dkim: Option<Arc<super::DkimSigner>>,
        tls_ca: Option<Arc<Vec<Vec<u8>>>>,
    ) -> Self {
        let d = &config.delivery;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
        let pid = std::process::id();
        let nonce = crate::domain::RandomToken::generate();
        let instance = InstanceInfo {
            id: format!("{host}:{pid}:{}", &nonce.as_str()[..10]),
            host,
            pid: pid as i64,
            started_at: clock.now(),
        };
        Self {
            ledger: store.clone(),
            leases: Leases {
                ledger: store.clone(),
                clock: clock.clone(),
                instance,
                instance_timeout: d.instance_timeout.0,
                batch_size: d.batch_size,
                lease: d.lease.0,
                exchange: config.mail.connect_timeout.0 + config.mail.send_timeout.0,
                last_heartbeat: std::sync::Mutex::new(None),
                stops: Arc::default(),
            },
            builder: MessageBuilder {
                composer,
                from: config.mail.from.clone(),
                list_name: config.site.name.clone(),
                list_label: format!("{}.{}", config.mail.list_id, config.mail.domain),
                unsubscribe_mailto: config
                    .mail
                    .unsubscribe_mailto
                    .as_ref()
                    .map(|a| a.to_string()),
                return_path: config.mail.return_path.clone().map(|a| (a, key)),
                dkim,
            },
            transport: Transport::from_config(&config.mail, tls_ca),
            clock: clock.clone(),
            retry: RetryPolicy {
                initial: d.initial_backoff.0,
                max: d.max_backoff.0,
                max_age: d.max_age.0,
            },
            rate: RateLimiter::per_second(d.rate_per_second),
            log: Arc::new(OutcomeLog::new()),
            journal_prefix: super::journal::prefix_for(&config.database.url),
            journal: std::sync::OnceLock::new(),
            flush_wake: Notify::new(),
            domains: Arc::new(DomainWatch::new(
                store,
                clock,
                PauseSettings::from_config(d),
            )),
            connections: d.connections,
            poll_interval: d.poll_interval.0,
            idle_timeout: config.mail.idle_timeout.0,
            wake: Notify::new(),
            stop: Stop::default(),
            health: std::sync::OnceLock::new(),
        }
    }

    /// The receiving domains' pauses, shared with the returned-mail intake.
    pub fn domains(&self) -> Arc<DomainWatch> {
        self.domains.clone()
    }

    /// The signals that stop this engine's workers (see [`Stop`]).
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// This process's id in the `instances` table and in the leases it takes.
    pub fn instance_id(&self) -> &str {
        &self.leases.instance.id
    }

    /// Where this process tells its workers that an issue was stopped (the digests
    /// service holds it too).
    pub fn issue_stops(&self) -> Arc<super::IssueStops> {
        self.leases.stops.clone()
    }

    /// Tell idle workers there is new work (a signup just queued a mail).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// A lease holder for worker `name` of this process.
    pub fn holder(&self, name: &str) -> LeaseHolder {
        self.leases.holder(name)
    }

    /// Claim up to `delivery.batch_size` due sends for `holder` (see [`Leases::claim`]).
    pub async fn claim(&self, holder: &LeaseHolder) -> StoreResult<Batch> {
        self.leases.claim(holder).await
    }

    /// Claim and process one batch with `sender`. Returns how many rows it settled.
    pub async fn run_batch(
        &self,
        holder: &LeaseHolder,
        sender: &mut MailSender,
    ) -> StoreResult<usize> {
        let batch = self.claim(holder).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        Ok(self.send_batch(batch, sender).await?.settled)
    }

    /// Send a claimed batch, message by message, each only while its lease is held.
    #[tracing::instrument(name = "batch", skip_all, fields(owner = %batch.holder.owner, size = batch.jobs.len()))]
    pub async fn send_batch(
        &self,
        mut batch: Batch,
        sender: &mut MailSender,
    ) -> StoreResult<BatchReport> {
        let mut report = BatchReport::default();
        let mut unreachable: Option<String> = None;
        let jobs = std::mem::take(&mut batch.jobs);
        // The outcome of the previous message, not yet known to be written.
        let mut unwritten: Option<u64> = None;
        // Rows of the batch this worker did not offer to the server (see the end).
        let mut unsent: Vec<i64> = Vec::new();
        // Rows for a paused domain go back to the queue, due when the pause ends.
        let mut held_back: std::collections::BTreeMap<DateTime<Utc>, Vec<i64>> = Default::default();
        for (i, job) in jobs.iter().enumerate() {
            // Stopping: nothing more is offered; the rest goes back to the queue below.
            if self.stop.stopping.is_cancelled() {
                unsent.extend(jobs[i..].iter().map(|j| j.id));
                break;
            }
            if let Some(email) = job.email.as_deref()
                && let Some(until) = self.domains.paused_until(email).await
            {
                held_back.entry(until).or_default().push(job.id);
                continue;
            }
            // The previous outcome is written while this message is composed and its
            // envelope sent; the server gets the message itself only once that write is done
            // (see `Gate`), so a crash can still double at most the one message in flight.
            let mut gate = match unwritten.take() {
                Some(seq) => Gate::after(self.spawn_write(seq)),
                None => Gate::open(),
            };
            let prepared = match &unreachable {
                // The server could not be reached a moment ago: do not spend a connect
                // timeout on every remaining message of the batch.
                Some(why) => Prepared::Outcome(
                    self.retry_or_fail(job, format!("not attempted, server unreachable: {why}")),
                ),
                None => match self.builder.build(job, self.clock.now()).await {
                    Ok((envelope, bytes)) => Prepared::Message(envelope, bytes),
                    Err(NotBuilt::Compose(e)) => Prepared::Outcome(
                        self.retry_or_fail(job, format!("could not compose the message: {e}")),
                    ),
                    Err(NotBuilt::Skip(reason)) => {
                        Prepared::Outcome(SendOutcome::Suppressed { reason })
                    }
                    Err(NotBuilt::Build(e)) => Prepared::Outcome(SendOutcome::Failed {
                        reply: e.to_string(),
                    }),
                },
            };
            let outcome = match prepared {
                Prepared::Outcome(o) => Some(o),
                Prepared::Message(envelope, bytes) => {
                    let mut stopped = false;
                    if let Some(rate) = &self.rate {
                        tokio::select! {
                            _ = rate.acquire() => {}
                            _ = self.stop.stopping.cancelled() => stopped = true,
                        }
                    }
                    if stopped {
                        unsent.push(job.id);
                        None
                    } else if self.leases.still_held(&mut batch, job.id).await? {
                        let sent = {
                            let exchange = self.transmit(job, &envelope, &bytes, sender, &mut gate);
                            tokio::select! {
                                sent = exchange => Some(sent),
                                _ = self.stop.abandon.cancelled() => None,
                            }
                        };
                        let (outcome, down) = sent.unwrap_or_else(|| {
                            // Mid-exchange: this session cannot be used again.
                            *sender = self.transport.sender();
                            tracing::warn!(send = job.id, "stopped waiting for the server's answer (delivery.shutdown_grace); the message is retried");
                            (
                                SendOutcome::Retry {
                                    reply: "herald stopped before the server answered; retried (it may have arrived)".into(),
                                    next_attempt_at: self.clock.now(),
                                },
                                None,
                            )
                        });
                        unreachable = down;
                        Some(outcome)
                    } else {
                        tracing::warn!(send = job.id, owner = %batch.holder.owner, "lease not held: not sending this one");
                        metrics::counter!("herald_lease_lost_total", "at" => "send").increment(1);
                        report.lost += 1;
                        unsent.push(job.id);
                        None
                    }
                }
            };
            // Whatever happened, the previous outcome must be in the ledger before this one
            // is recorded (and if it could not be written, this message was not sent).
            if !gate.wait().await {
                return Err(gate.take_failure().expect("a closed gate says why"));
            }
            self.progress();
            let Some(outcome) = outcome else { continue };
            record_metrics(job, &outcome);
            let result = SendResult {
                send_id: job.id,
                lease_owner: batch.holder.owner.clone(),
                outcome,
            };
            report.settled += 1;
            match self.journal.get() {
                // Recorded once the line is in the journal; the flusher writes the ledger.
                // If the line cannot be written, the outcome still waits in the log for
                // the ledger, and nothing more is sent.
                Some(journal) => {
                    journal
                        .append(|| self.log.push(result.clone()), &result)
                        .map_err(|e| crate::store::StoreError::Journal(e.to_string()))?;
                    self.flush_wake.notify_one();
                }
                None => unwritten = Some(self.log.push(result)),
            }
        }
        if let Some(seq) = unwritten {
            self.log
                .flush_until(self.ledger.as_ref(), seq, self.clock.now())
                .await?;
            self.progress();
        }
        for (until, ids) in &held_back {
            match self
                .ledger
                .release_unsent(&batch.holder.owner, ids, *until)
                .await
            {
                Ok(n) => {
                    metrics::counter!("herald_sends_held_total", "why" => "domain_paused")
                        .increment(n);
                    tracing::debug!(held = n, %until, "sends to a paused domain wait");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not hold back the sends to a paused domain; they return when their lease ends")
                }
            }
        }
        // Rows never offered (the heartbeat went stale before their turn) go back at once
        // rather than at the end of the lease: a few seconds without a heartbeat would
        // otherwise hold them for `delivery.lease`. Rows another worker took are not ours
        // any more and are left alone; if even this write fails, the lease still ends.
        if !unsent.is_empty() {
            match self
                .ledger
                .release_unsent(&batch.holder.owner, &unsent, self.clock.now())
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::info!(released = n, "handed back the sends not offered");
                    self.wake();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand back the sends not offered; they return when their lease ends")
                }
            }
        }
        Ok(report)
    }

    /// Write the outcomes up to `seq` in a task of its own, so the worker can go on
    /// composing and addressing the next message meanwhile.
    fn spawn_write(&self, seq: u64) -> tokio::task::JoinHandle<StoreResult<()>> {
        let (log, ledger, now) = (self.log.clone(), self.ledger.clone(), self.clock.now());
        tokio::spawn(async move { log.flush_until(ledger.as_ref(), seq, now).await })
    }

    /// Hand one message to the server; also says whether the server was unreachable.
    async fn transmit(
        &self,
        job: &SendJob,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
        sender: &mut MailSender,
        gate: &mut Gate,
    ) -> (SendOutcome, Option<String>) {
        let started = std::time::Instant::now();
        let result = sender.send(envelope, &job.message_id, bytes, gate).await;
        metrics::histogram!("herald_send_duration_seconds").record(started.elapsed().as_secs_f64());
        let class = match &result {
            Ok(_) => "2xx",
            Err(SendError::Permanent { .. }) => "5xx",
            Err(SendError::Transient(r)) if r.contains("(4") || r.starts_with('4') => "4xx",
            Err(
                SendError::Transient(_)
                | SendError::Unreachable(_)
                | SendError::ConnectionLost(_)
                | SendError::Held,
            ) => "connection",
        };
        metrics::counter!("herald_smtp_replies_total", "class" => class).increment(1);
        // What the reply means for the receiving domain (see `domains`): only answers that
        // came from a server count, never a connection that failed.
        if let Some(email) = job.email.as_deref() {
            match &result {
                Ok(_) => self.domains.record(email, false, "").await,
                Err(SendError::Permanent { reply }) | Err(SendError::Transient(reply))
                    if class != "connection" =>
                {
                    self.domains
                        .record(email, crate::domain::judge_reply(reply).is_policy(), reply)
                        .await
                }
                _ => {}
            }
        }
        match result {
            Ok(reply) => (SendOutcome::Sent { reply }, None),
            // Held: not handed over; the caller sees the closed gate and records nothing.
            Err(SendError::Held) => (self.retry_or_fail(job, "not sent".into()), None),
            Err(SendError::Transient(reply) | SendError::ConnectionLost(reply)) => {
                tracing::warn!(send = job.id, kind = %job.kind, %reply, "temporary delivery failure; will retry");
                (self.retry_or_fail(job, reply), None)
            }
            Err(SendError::Unreachable(why)) => {
                tracing::warn!(send = job.id, reason = %why, "mail server unreachable; will retry");
                (self.retry_or_fail(job, why.clone()), Some(why))
            }
            Err(SendError::Permanent { reply }) => {
                tracing::warn!(send = job.id, kind = %job.kind, %reply, "permanent delivery failure");
                // Only a failure of the address suppresses; a refusal of the message (a
                // blocklisting, its size, its content) fails this send alone.
                let address_failed = crate::domain::judge_reply(&reply).is_address_failure();
                let outcome = match (address_failed, &job.email) {
                    (true, Some(email)) => SendOutcome::Bounced {
                        reply,
                        email_hash: crate::domain::sha256_hex(email),
                    },
                    _ => SendOutcome::Failed { reply },
                };
                (outcome, None)
            }
        }
    }

    fn retry_or_fail(&self, job: &SendJob, reply: String) -> SendOutcome {
        self.retry.after_failure(job, reply, self.clock.now())
    }

    /// Deliver everything due now, batch after batch, on one connection (tests, CLI).
    pub async fn deliver_due(&self) -> StoreResult<usize> {
        self.replay_journals().await?;
        let holder = self.holder(&format!("drain-{}", nonce()));
        let mut sender = self.transport.sender();
        let mut total = 0;
        loop {
            let n = match self.run_batch(&holder, &mut sender).await {
                Ok(n) => n,
                Err(e) => {
                    sender.close().await;
                    return Err(e);
                }
            };
            if n == 0 {
                break;
            }
            total += n;
        }
        sender.close().await;
        Ok(total)
    }

    /// Start `delivery.connections` workers; they stop when `shutdown` turns true or the
    /// engine's [`Stop::stopping`] is cancelled (the flusher only with `shutdown`: it writes
    /// the outcomes of the workers still finishing their exchanges). A
    /// worker's error or panic is logged and counted, and the worker goes on. Each claim
    /// and each recorded outcome counts as progress of the "delivery" job in `health`.
    pub fn spawn_workers(
        self: &Arc<Self>,
        health: Arc<JobHealth>,
        shutdown: watch::Receiver<bool>,
    ) -> Workers {
        // Progress comes at least once per message: one exchange, a wait for the rate
        // limiter (one slot per worker at most), a poll interval when idle.
        let rate_wait = self
            .rate
            .as_ref()
            .map_or(Duration::ZERO, |r| r.interval * self.connections);
        let stale =
            self.leases.exchange * 2 + rate_wait + self.poll_interval + Duration::from_secs(60);
        health.register(DELIVERY_JOB, stale);
        let _ = self.health.set(health.clone());
        let mut tasks = Vec::new();
        let mut flusher = None;
        if let Some(prefix) = &self.journal_prefix {
            match super::journal::Journal::open(prefix.clone(), &self.leases.instance.id) {
                Ok(j) => {
                    let j = Arc::new(j);
                    let _ = self.journal.set(j.clone());
                    flusher = Some(self.spawn_flusher(j, shutdown.clone()));
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "no outcome journal: each outcome is written to the database before the next message"
                ),
            }
        }
        tasks.extend((0..self.connections).map(|i| {
            let engine = self.clone();
            let health = health.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                // A worker that ends for any reason but shutdown is reported.
                let _watch = WorkerExit {
                    engine: engine.clone(),
                    shutdown: shutdown.clone(),
                };
                let holder = engine.holder(&format!("worker{i}"));
                let sender = Arc::new(Mutex::new(engine.transport.sender()));
                // Since when this worker has found nothing to send.
                let mut idle_since: Option<std::time::Instant> = None;
                while !*shutdown.borrow() && !engine.stop.stopping.is_cancelled() {
                    // Each batch runs as its own task, so a panic (a bug in a template,
                    // a driver) ends that batch, not the worker.
                    let run = {
                        let (engine, holder, sender) =
                            (engine.clone(), holder.clone(), sender.clone());
                        async move {
                            let mut sender = sender.lock().await;
                            engine
                                .log
                                .flush_pending(engine.ledger.as_ref(), engine.clock.now())
                                .await?;
                            engine.run_batch(&holder, &mut sender).await
                        }
                    };
                    let idle = match crate::jobs::run_guarded(&health, DELIVERY_JOB, run).await {
                        Ok(n) => n == 0,
                        Err(crate::jobs::RunFailure::Error(_)) => true,
                        Err(crate::jobs::RunFailure::Panic(_)) => {
                            // The session may be mid-message: start the next on a new one.
                            *sender.lock().await = engine.transport.sender();
                            true
                        }
                    };
                    if idle {
                        let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= engine.idle_timeout {
                            sender.lock().await.close().await;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(engine.poll_interval) => {}
                            _ = engine.wake.notified() => {}
                            _ = shutdown.changed() => {}
                            _ = engine.stop.stopping.cancelled() => {}
                        }
                    } else {
                        idle_since = None;
                    }
                }
                sender.lock().await.close().await;
            })
        }));
        Workers {
            senders: tasks,
            flusher,
        }
    }

    /// Write journaled outcomes to the ledger as they come, a few milliseconds' worth at a
    /// time, and drop from the journal what the ledger has. At shutdown, `release` writes
    /// the rest.
    fn spawn_flusher(
        self: &Arc<Self>,
        journal: Arc<super::journal::Journal>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = engine.flush_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.changed() => break,
                }
                // Let the outcomes of the other workers join this write.
                tokio::time::sleep(Duration::from_millis(2)).await;
                match engine
                    .log
                    .flush_pending(engine.ledger.as_ref(), engine.clock.now())
                    .await
                {
                    Ok(Some(seq)) => journal.flushed(seq),
                    Ok(None) => {}
                    Err(e) => {
                        // The outcomes stay in the journal and in the log; the workers see
                        // the same database and report it.
                        tracing::warn!(error = %e, "journaled outcomes not yet in the ledger; will retry");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })
    }

    /// Record into the ledger the outcomes of processes that died with them only in their
    /// journal (SQLite), and hand their rows back at once: their lock says they are gone.
    pub async fn replay_journals(&self) -> StoreResult<()> {
        let Some(prefix) = &self.journal_prefix else {
            return Ok(());
        };
        let now = self.clock.now();
        let revived = match self.journal.get() {
            Some(own) => own.replay_dead(self.ledger.as_ref(), now).await?,
            None => super::journal::replay_dead(prefix, None, self.ledger.as_ref(), now).await?,
        };
        for instance in revived {
            let released = self.ledger.release_instance(&instance, now).await?;
            if released > 0 {
                tracing::warn!(released, %instance, "took back the sends of a herald that stopped");
                metrics::counter!("herald_sends_reclaimed_total").increment(released);
                self.wake();
            }
        }
        Ok(())
    }

    /// Write this instance's heartbeat every sixth of `delivery.instance_timeout`, and take
    /// back at once the rows of instances whose heartbeat stopped. On shutdown (after the
    /// workers stopped), hand this instance's remaining leases back.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        health: Arc<JobHealth>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        // Past half the timeout without a heartbeat the workers stop sending.
        health.register("heartbeat", self.leases.instance_timeout / 2);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(engine.leases.instance_timeout / 6);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.changed() => break,
                }
                match engine.beat().await {
                    Ok(()) => health.ok("heartbeat"),
                    Err(e) => {
                        tracing::error!(error = %e, "heartbeat failed; will retry");
                        metrics::counter!("herald_job_errors_total", "job" => "heartbeat")
                            .increment(1);
                        health.failed("heartbeat", format!("cannot write the heartbeat: {e}"));
                    }
                }
            }
        })
    }

    /// One heartbeat and one reaping of dead instances.
    pub async fn beat(&self) -> StoreResult<()> {
        let now = self.clock.now();
        self.ledger.heartbeat(&self.leases.instance, now).await?;
        self.replay_journals().await?;
        self.leases.beat();
        let cutoff = now - chrono(self.leases.instance_timeout);
        let released = self.ledger.reap_dead_instances(cutoff, now).await?;
        if released > 0 {
            tracing::warn!(
                released,
                "took back the sends of an instance that stopped answering"
            );
            metrics::counter!("herald_sends_reclaimed_total").increment(released);
            self.wake();
        }
        Ok(())
    }

    /// A clean stop: write what is pending and hand this instance's leases back.
    pub async fn release(&self) {
        match self
            .log
            .flush_pending(self.ledger.as_ref(), self.clock.now())
            .await
        {
            // Everything is in the ledger: the journal has nothing left to say.
            Ok(_) => {
                if let Some(j) = self.journal.get() {
                    j.remove();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the last outcomes; the next start records them from the journal")
            }
        }
        match self
            .ledger
            .release_instance(&self.leases.instance.id, self.clock.now())
            .await
        {
            Ok(n) if n > 0 => tracing::info!(released = n, "handed back unsent claimed sends"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not hand back claimed sends; they return when the lease ends")
            }
        }
    }
}

const DELIVERY_JOB: &str = "delivery";

/// Reports a worker that stopped while herald was not shutting down.
struct WorkerExit {
    engine: Arc<DeliveryEngine>,
    shutdown: watch::Receiver<bool>,
}

impl Drop for WorkerExit {
    fn drop(&mut self) {
        if !*self.shutdown.borrow()
            && let Some(h) = self.engine.health.get()
        {
            tracing::error!("a delivery worker stopped");
            // Its own entry, which nothing clears: the other workers' progress must not
            // hide that one is gone.
            h.register("delivery workers", Duration::ZERO);
            h.failed(
                "delivery workers",
                "a delivery worker stopped; restart herald".into(),
            );
        }
    }
}

impl DeliveryEngine {
    fn progress(&self) {
        if let Some(h) = self.health.get() {
            h.ok(DELIVERY_JOB);
        }
    }
}

fn nonce() -> String {
    crate::domain::RandomToken::generate().as_str()[..8].to_string()
}

fn record_metrics(job: &SendJob, outcome: &SendOutcome) {
    let status = match outcome {
        SendOutcome::Sent { .. } => "sent",
        SendOutcome::Retry { .. } => "retrying",
        SendOutcome::Failed { .. } => "failed",
        SendOutcome::Bounced { .. } => "bounced",
        SendOutcome::Suppressed { .. } => "suppressed",
    };
    metrics::counter!("herald_mails_total", "kind" => job.kind.as_str(), "status" => status)
        .increment(1);
}

//! Digests: schedules (cron in a time zone), the scheduler tick that turns a due tick into
//! exactly one issue, and per-reader rendering (`render.rs`).
//!
//! Exactly once: the tick is claimed by moving the schedule's `next_run_at` from the value
//! read to the next tick, in the same transaction that writes the issue and fixes its
//! readers; `issues` is unique on (schedule, scheduled time). Two instances, or a restart
//! mid-tick, therefore make one issue per tick. The issue's `sends` rows, one per reader,
//! are then written in chunks of [`FILL_CHUNK`] subscriber ids, each its own transaction
//! ([`Digests::fill_pending`]): a million readers never hold the database in one
//! transaction, delivery starts after the first chunk, and mail queued meanwhile
//! (confirmations) waits behind the chunks written so far, not behind the whole list. A
//! chunk is atomic and `sends` is unique per (issue, reader), so a crash between chunks
//! resumes where it stopped and gives nobody a second row.

mod render;
mod store;
pub use store::{DigestStore, IssueStore, ScheduleStore};

pub use render::{
    ArchiveChrome, DigestComposer, HTML_BUDGET, IssueLook, RenderedDigest, SubjectRule,
};

use crate::articles::one_line;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{CronSchedule, ScheduleError, has_control_chars};
use crate::store::{Issue, IssuePlan, NewSchedule, Schedule, StopReport, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("unknown schedule {0:?} (see `herald schedules list`)")]
    UnknownSchedule(String),
    #[error("there is no issue #{0} (see `herald issues list`)")]
    UnknownIssue(i64),
    #[error("issue #{0} has nothing left to send: there is nothing to stop")]
    NothingToStop(i64),
    #[error("unknown section {0:?} (see `herald sections list`)")]
    UnknownSection(String),
    #[error("{0}")]
    Invalid(String),
    /// A value the user gave is wrong: which field, and how.
    #[error("{1}")]
    Field(&'static str, String),
    #[error("nothing to preview: {0}")]
    NothingToPreview(String),
    #[error("rendering failed: {0}")]
    Render(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Subscriber ids whose `sends` rows one fill transaction writes: on SQLite about 50 ms of
/// holding the database (1,000,000 readers in 200 transactions), short enough for a signup
/// to wait.
pub const FILL_CHUNK: i64 = 5_000;

/// What one tick did for one schedule.
#[derive(Debug, Clone)]
pub struct TickOutcome {
    pub schedule: String,
    pub issue: Issue,
}

/// A schedule with its sections, for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub sections: Vec<String>,
    pub description: String,
    /// The next runs in the schedule's own time zone.
    pub upcoming: Vec<String>,
}

pub struct Digests {
    store: Arc<dyn DigestStore>,
    clock: Clock,
    max_lateness: chrono::Duration,
    first_lookback: chrono::Duration,
    domain: String,
    composer: Arc<DigestComposer>,
    /// Where a stop made here is told to this process's delivery workers.
    stops: Arc<crate::delivery::IssueStops>,
}

impl Digests {
    pub fn new(
        config: &Config,
        store: Arc<dyn DigestStore>,
        clock: Clock,
        composer: Arc<DigestComposer>,
        stops: Arc<crate::delivery::IssueStops>,
    ) -> Self {
        Self {
            store,
            clock,
            max_lateness: config.digests.max_lateness.as_chrono(),
            first_lookback: config.digests.first_lookback.as_chrono(),
            domain: config.mail.domain.clone(),
            composer,
            stops,
        }
    }

    pub fn composer(&self) -> &Arc<DigestComposer> {
        &self.composer
    }

    /// A new schedule; `images` None shows article pictures (the default).
    pub async fn add_schedule(
        &self,
        name: &str,
        cron: &str,
        sections: &[String],
        timezone: Option<&str>,
        subject: Option<&str>,
        images: Option<bool>,
    ) -> Result<Schedule, DigestError> {
        let mut new = self
            .validate(name, cron, sections, timezone, subject)
            .await?;
        new.images = images;
        Ok(self.store.add_schedule(&new).await?)
    }

    /// Change a schedule's cron, zone, sections and subject (its name stays: the archive's
    /// addresses carry it). The next run follows the new times from now on; a paused
    /// schedule stays paused. `images` None leaves the pictures setting as it is.
    pub async fn edit_schedule(
        &self,
        name: &str,
        cron: &str,
        sections: &[String],
        timezone: Option<&str>,
        subject: Option<&str>,
        images: Option<bool>,
    ) -> Result<Schedule, DigestError> {
        let old = self.schedule(name).await?;
        let mut new = self
            .validate(&old.name, cron, sections, timezone, subject)
            .await?;
        new.images = images;
        self.store
            .update_schedule(old.id, &new)
            .await?
            .ok_or_else(|| DigestError::UnknownSchedule(old.name.clone()))
    }

    /// Check a schedule as `add_schedule` and `edit_schedule` take it; each problem names
    /// its field.
    async fn validate(
        &self,
        name: &str,
        cron: &str,
        sections: &[String],
        timezone: Option<&str>,
        subject: Option<&str>,
    ) -> Result<NewSchedule, DigestError> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(DigestError::Field(
                "name",
                "a schedule name is 1 to 100 letters, digits, dots, dashes or underscores".into(),
            ));
        }
        let tz = timezone
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC");
        let parsed = CronSchedule::parse(cron, tz)?;
        let subject = subject.map(str::trim).filter(|s| !s.is_empty());
        if let Some(s) = subject
            && (has_control_chars(s) || s.len() > 300)
        {
            return Err(DigestError::Field(
                "subject",
                "the subject must be one line of at most 300 characters".into(),
            ));
        }
        let section_ids = crate::articles::section_ids(self.store.as_ref(), sections)
            .await?
            .map_err(DigestError::UnknownSection)?;
        if section_ids.is_empty() {
            return Err(DigestError::Field(
                "sections",
                "a schedule needs at least one section".into(),
            ));
        }
        let now = self.clock.now();
        let next = parsed
            .next_after(now)
            .ok_or_else(|| DigestError::Field("cron", "this cron expression never fires".into()))?;
        Ok(NewSchedule {
            name: name.to_string(),
            cron: parsed.expr().to_string(),
            timezone: tz.to_string(),
            subject: subject.map(|s| one_line(s, 300)),
            section_ids,
            next_run_at: next,
            now,
            images: None,
        })
    }

    pub async fn list_schedules(&self) -> Result<Vec<ScheduleView>, DigestError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for s in self.store.list_schedules().await? {
            let sections = self
                .store
                .schedule_sections(s.id)
                .await?
                .into_iter()
                .map(|x| x.slug)
                .collect();
            let (description, upcoming) = match CronSchedule::parse(&s.cron, &s.timezone) {
                Ok(c) => (
                    c.describe(),
                    if s.enabled {
                        c.upcoming(now, 3)
                            .iter()
                            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
                            .collect()
                    } else {
                        vec![]
                    },
                ),
                Err(e) => (e.to_string(), vec![]),
            };
            out.push(ScheduleView {
                schedule: s,
                sections,
                description,
                upcoming,
            });
        }
        Ok(out)
    }

    async fn schedule(&self, name: &str) -> Result<Schedule, DigestError> {
        self.store
            .schedule_by_name(name)
            .await?
            .ok_or_else(|| DigestError::UnknownSchedule(name.chars().take(100).collect()))
    }

    /// One issue as the public archive shows it; None if the schedule has no such issue
    /// with articles.
    pub async fn archive_issue(
        &self,
        schedule: &str,
        issue_id: i64,
    ) -> Result<Option<String>, DigestError> {
        let Some(issue) = self.store.issue(issue_id).await? else {
            return Ok(None);
        };
        if issue.schedule_name != schedule
            || issue.status == crate::store::IssueStatus::Skipped
            || issue.article_count == 0
        {
            return Ok(None);
        }
        let schedule_row = self
            .store
            .schedule_by_name(schedule)
            .await?
            .filter(|s| Some(s.id) == issue.schedule_id);
        let (prev, next) = self.store.issue_neighbours(&issue).await?;
        let chrome = self
            .composer
            .archive_chrome(&issue, schedule_row.as_ref(), prev, next);
        self.composer.render_archive(&issue, &chrome).await
    }

    /// Show article pictures in a schedule's digests, or not.
    pub async fn set_images(&self, name: &str, on: bool) -> Result<(), DigestError> {
        if self.store.set_schedule_images(name, on).await? {
            Ok(())
        } else {
            Err(DigestError::UnknownSchedule(
                name.chars().take(100).collect(),
            ))
        }
    }

    pub async fn pause(&self, name: &str) -> Result<(), DigestError> {
        self.schedule(name).await?;
        self.store.set_schedule_enabled(name, false, None).await?;
        Ok(())
    }

    /// Resume from now on: ticks missed while paused are not sent.
    pub async fn resume(&self, name: &str) -> Result<(), DigestError> {
        let s = self.schedule(name).await?;
        let next = CronSchedule::parse(&s.cron, &s.timezone)?.next_after(self.clock.now());
        self.store.set_schedule_enabled(name, true, next).await?;
        Ok(())
    }

    /// Stop an issue (see [`IssueStore::stop_issue`]) on behalf of `by` (a console user, an
    /// API token's name, "cli"), and tell this process's workers at once.
    pub async fn stop_issue(&self, id: i64, by: &str) -> Result<StopReport, DigestError> {
        let report = self
            .store
            .stop_issue(id, by, self.clock.now())
            .await?
            .ok_or(DigestError::UnknownIssue(id))?;
        if report.stopped_at.is_none() {
            return Err(DigestError::NothingToStop(id));
        }
        if !report.already {
            self.stops.stopped();
            tracing::warn!(
                issue = id,
                by,
                cancelled = report.cancelled,
                sent = report.sent,
                "issue stopped"
            );
        }
        Ok(report)
    }

    pub async fn remove(&self, name: &str) -> Result<(), DigestError> {
        if !self.store.remove_schedule(name).await? {
            return Err(DigestError::UnknownSchedule(
                name.chars().take(100).collect(),
            ));
        }
        Ok(())
    }

    /// The preview's subject and pictures (as the issue's sends will make them).
    fn look(&self, s: &Schedule, at: DateTime<Utc>) -> render::IssueLook {
        let subject = match &s.subject {
            Some(subject) => render::SubjectRule::Fixed(subject.clone()),
            None => render::SubjectRule::Sections {
                date: date_label(s, at),
            },
        };
        render::IssueLook {
            subject,
            images: s.images,
        }
    }

    /// The subject stored on the issue (the log's name for it): the schedule's own, or the
    /// site's name with all the schedule's sections. Each reader's mail names only theirs.
    async fn subject_for(&self, s: &Schedule, at: DateTime<Utc>) -> Result<String, DigestError> {
        if let Some(subject) = &s.subject {
            return Ok(subject.clone());
        }
        let names: Vec<String> = self
            .store
            .schedule_sections(s.id)
            .await?
            .into_iter()
            .map(|x| x.name)
            .collect();
        Ok(one_line(
            &format!(
                "{}: {} — {}",
                self.composer.site().name,
                names.join(", "),
                date_label(s, at)
            ),
            300,
        ))
    }

    fn first_window_start(&self, s: &Schedule) -> DateTime<Utc> {
        s.created_at - self.first_lookback
    }

    fn nonce() -> String {
        crate::domain::RandomToken::generate().as_str()[..10].replace(['-', '_'], "x")
    }

    /// Make the issues of every due schedule. Safe to run concurrently from several
    /// instances: each tick is claimed once.
    pub async fn run_tick(&self) -> Result<Vec<TickOutcome>, DigestError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for s in self.store.due_schedules(now).await? {
            let cron = match CronSchedule::parse(&s.cron, &s.timezone) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(schedule = %s.name, error = %e, "schedule has an invalid cron expression; skipped");
                    continue;
                }
            };
            // Every missed tick collapses into this one: the next run is after *now*.
            let Some(next) = cron.next_after(now) else {
                continue;
            };
            let lateness = now - s.next_run_at;
            let stale = lateness > self.max_lateness;
            metrics::gauge!("herald_scheduler_lag_seconds")
                .set(lateness.num_milliseconds() as f64 / 1000.0);
            let plan = IssuePlan {
                schedule_id: s.id,
                schedule_name: s.name.clone(),
                claim: Some((s.next_run_at, next)),
                scheduled_for: s.next_run_at,
                window_end: now,
                first_window_start: self.first_window_start(&s),
                stale,
                subject: self.subject_for(&s, s.next_run_at).await?,
                message_id_nonce: Self::nonce(),
                message_id_domain: self.domain.clone(),
                now,
            };
            if let Some(issue) = self.store.create_issue(&plan).await? {
                if stale {
                    tracing::warn!(schedule = %s.name, late_by = %lateness, "tick too late (digests.max_lateness); skipped, the next issue covers its articles");
                } else {
                    tracing::info!(schedule = %s.name, issue = issue.id, articles = issue.article_count, status = %issue.status, "issue made");
                }
                metrics::counter!("herald_issues_total", "status" => issue.status.as_str())
                    .increment(1);
                out.push(TickOutcome {
                    schedule: s.name.clone(),
                    issue,
                });
            }
        }
        Ok(out)
    }

    /// Write the `sends` rows of every issue that still lacks some, chunk by chunk, for at
    /// most `budget` (the rest is left for the next call); `on_chunk` runs after each
    /// chunk that wrote rows, e.g. to wake the delivery workers. Returns the rows written.
    pub async fn fill_pending(
        &self,
        budget: std::time::Duration,
        mut on_chunk: impl FnMut(u64) + Send,
    ) -> Result<u64, DigestError> {
        // A budget too large to add (Duration::MAX) means no deadline.
        let deadline = std::time::Instant::now().checked_add(budget);
        let mut total = 0;
        for issue in self.store.issues_filling().await? {
            let (written, done) = self.fill_one(issue, deadline, &mut on_chunk).await?;
            total += written;
            if !done {
                break;
            }
        }
        Ok(total)
    }

    /// Write one issue's remaining rows chunk by chunk, until done or past `deadline`.
    /// Returns the rows written and whether the issue is complete.
    #[tracing::instrument(name = "fill", skip_all, fields(issue = issue))]
    async fn fill_one(
        &self,
        issue: i64,
        deadline: Option<std::time::Instant>,
        on_chunk: &mut (impl FnMut(u64) + Send),
    ) -> Result<(u64, bool), DigestError> {
        let mut total = 0;
        loop {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok((total, false));
            }
            let step = self
                .store
                .fill_issue(issue, FILL_CHUNK, self.clock.now())
                .await?;
            total += step.written;
            if step.written > 0 {
                on_chunk(step.written);
            }
            if step.done {
                tracing::info!(
                    issue,
                    written = total,
                    "every reader of the issue is queued"
                );
                return Ok((total, true));
            }
        }
    }

    /// Make an issue of this schedule now, outside its cron times (`herald digests run`);
    /// its readers' rows follow with [`Digests::fill`] (or the scheduler job).
    pub async fn run_now(&self, name: &str) -> Result<Issue, DigestError> {
        let s = self.schedule(name).await?;
        let now = self.clock.now();
        let plan = IssuePlan {
            schedule_id: s.id,
            schedule_name: s.name.clone(),
            claim: None,
            scheduled_for: now,
            window_end: now,
            first_window_start: self.first_window_start(&s),
            stale: false,
            subject: self.subject_for(&s, now).await?,
            message_id_nonce: Self::nonce(),
            message_id_domain: self.domain.clone(),
            now,
        };
        self.store.create_issue(&plan).await?.ok_or_else(|| {
            DigestError::Invalid("an issue for this instant already exists; try again".into())
        })
    }

    /// Write every remaining `sends` row of one issue (chunk by chunk) and return the issue.
    pub async fn fill(&self, issue: Issue) -> Result<Issue, DigestError> {
        if !issue.filling {
            return Ok(issue);
        }
        self.fill_one(issue.id, None, &mut |_| {}).await?;
        Ok(self.store.issue(issue.id).await?.unwrap_or(issue))
    }

    /// The next digest of `name` as `to` (or the first reader) would get it now; nothing is
    /// sent or recorded.
    pub async fn preview(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<RenderedDigest, DigestError> {
        let s = self.schedule(name).await?;
        let now = self.clock.now();
        let start = self.first_window_start(&s);
        let articles = self.store.window_articles(s.id, start, now).await?;
        if articles.is_empty() {
            let sections: Vec<String> = self
                .store
                .schedule_sections(s.id)
                .await?
                .into_iter()
                .map(|x| x.slug)
                .collect();
            let last = self
                .store
                .schedule_issues(&s.name, 1)
                .await?
                .into_iter()
                .next();
            return Err(DigestError::NothingToPreview(match last {
                Some(i) => format!(
                    "nothing new for {}: every article of {} that arrived since {} went out in an earlier issue (the last: #{} of {}); the next digest takes what arrives from now on",
                    s.name,
                    sections.join(", "),
                    start.format("%Y-%m-%d %H:%M UTC"),
                    i.id,
                    i.scheduled_for.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!(
                    "nothing to preview for {}: {} has no articles since {} (digests.first_lookback before the schedule was made); add some or let a feed bring them",
                    s.name,
                    sections.join(", "),
                    start.format("%Y-%m-%d %H:%M UTC")
                ),
            }));
        }
        let sections: Vec<i64> = self
            .store
            .schedule_sections(s.id)
            .await?
            .into_iter()
            .map(|x| x.id)
            .collect();
        let reader = match to {
            Some(email) => {
                let e = crate::domain::EmailAddress::parse(email)
                    .map_err(|e| DigestError::Invalid(e.to_string()))?;
                self.store
                    .subscriber_by_email(e.as_str())
                    .await?
                    .ok_or_else(|| {
                        DigestError::NothingToPreview(format!("no subscriber {email:?}"))
                    })?
            }
            None => self.store.first_reader(&sections).await?.ok_or_else(|| {
                DigestError::NothingToPreview("no active subscriber of these sections".into())
            })?,
        };
        // A preview "as this reader gets it" must not show a digest to someone who gets none.
        use crate::domain::SubscriberStatus as S;
        let why = match reader.status {
            S::Active => None,
            S::Pending => Some("has not confirmed their subscription yet"),
            S::Unsubscribed => Some("has unsubscribed"),
            S::Bounced => Some("is suppressed: their address bounced"),
            S::Complained => Some("is suppressed: they reported our mail as spam"),
        };
        if let Some(why) = why {
            return Err(DigestError::NothingToPreview(format!(
                "{} receives no digest: the reader {why}",
                reader.email
            )));
        }
        let look = self.look(&s, now);
        self.composer
            .render_for(&look, &articles, reader.id, &reader.email)
            .await?
            .ok_or_else(|| {
                DigestError::NothingToPreview(format!(
                    "{} has no new articles in their sections",
                    reader.email
                ))
            })
    }
}

/// The date of an issue in its schedule's zone, as subjects show it ("2 March 2026").
pub(crate) fn date_label(s: &Schedule, at: DateTime<Utc>) -> String {
    let tz: chrono_tz::Tz = s.timezone.parse().unwrap_or(chrono_tz::UTC);
    at.with_timezone(&tz).format("%-d %B %Y").to_string()
}

/// "2 March 2026, 07:00 CET": the date and time in the schedule's zone (UTC without one),
/// so three issues of one day can be told apart.
pub(crate) fn time_label(s: Option<&Schedule>, at: DateTime<Utc>) -> String {
    let tz: chrono_tz::Tz = s
        .and_then(|s| s.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    at.with_timezone(&tz)
        .format("%-d %B %Y, %H:%M %Z")
        .to_string()
}

/// An issue with its sends counted by status, for `herald issues list` and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssueWithCounts {
    #[serde(flatten)]
    pub issue: Issue,
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Where delivery of the issue stands: `skipped` (nothing new), `stopped` (by hand:
    /// what was not sent then is `cancelled`), `queueing` (its sends are still being
    /// written), `delivering` (some not settled yet), `sent` (every one sent) or `settled`
    /// (every one settled, not all sent: see the counts).
    pub state: &'static str,
}

impl IssueWithCounts {
    fn new(issue: Issue, counts: std::collections::BTreeMap<String, i64>) -> Self {
        let unsettled: i64 = ["queued", "sending", "retrying"]
            .iter()
            .map(|k| counts.get(*k).copied().unwrap_or(0))
            .sum();
        let total: i64 = counts.values().sum();
        let state = if issue.status == crate::store::IssueStatus::Skipped {
            "skipped"
        } else if issue.stopped_at.is_some() {
            "stopped"
        } else if issue.filling {
            "queueing"
        } else if total == 0 {
            // No rows: no readers at all (settled), or none written yet.
            if issue.send_count == 0 {
                "settled"
            } else {
                "delivering"
            }
        } else if unsettled > 0 {
            "delivering"
        } else if counts.get("sent").copied().unwrap_or(0) == total {
            "sent"
        } else {
            "settled"
        };
        Self {
            issue,
            counts,
            state,
        }
    }
}

/// Issues newest first (below `before`, an issue id), with their counts.
pub async fn issues_with_counts(
    store: &dyn DigestStore,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<IssueWithCounts>, StoreError> {
    let issues = store.list_issues(before, limit).await?;
    with_counts(store, issues).await
}

/// A schedule's issues that carry articles, newest first, with their counts.
pub async fn issues_of_schedule(
    store: &dyn DigestStore,
    schedule: &str,
    limit: i64,
) -> Result<Vec<IssueWithCounts>, StoreError> {
    let issues = store.schedule_issues(schedule, limit).await?;
    with_counts(store, issues).await
}

/// One issue with its counts.
pub async fn issue_with_counts(
    store: &dyn DigestStore,
    id: i64,
) -> Result<Option<IssueWithCounts>, StoreError> {
    let Some(issue) = store.issue(id).await? else {
        return Ok(None);
    };
    Ok(with_counts(store, vec![issue]).await?.pop())
}

/// Count the sends of `issues` (newest first) by status, in one query.
async fn with_counts(
    store: &dyn DigestStore,
    issues: Vec<Issue>,
) -> Result<Vec<IssueWithCounts>, StoreError> {
    let ids = issues.iter().map(|i| i.id);
    let (Some(first), Some(last)) = (ids.clone().min(), ids.max()) else {
        return Ok(Vec::new());
    };
    let mut counts: std::collections::HashMap<i64, std::collections::BTreeMap<String, i64>> =
        Default::default();
    for (issue, status, n) in store.issues_status_counts(first, last).await? {
        counts.entry(issue).or_default().insert(status, n);
    }
    let mut out = Vec::with_capacity(issues.len());
    for issue in issues {
        let c = counts.remove(&issue.id).unwrap_or_default();
        let mut i = IssueWithCounts::new(issue, c);
        if matches!(i.state, "sent" | "settled") && i.issue.finished_at.is_none() {
            i.issue.finished_at = store.settle_issue(i.issue.id).await?;
        }
        out.push(i);
    }
    Ok(out)
}

//! What digests need of the store, declared here: schedules ([`ScheduleStore`]), the issues
//! made of them and filling an issue's sends ([`IssueStore`]). `store::Store` has both as
//! supertraits; the SQL is in `store/sql/schedules.rs` and `store/sql/issues.rs`, written
//! once for both dialects.

#[allow(unused_imports)]
use crate::store::*;
use chrono::{DateTime, Utc};

/// Schedules: their cron, zone, sections and state.
#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    async fn add_schedule(&self, s: &NewSchedule) -> StoreResult<Schedule>;
    /// Replace a schedule's cron, zone, subject and sections in one transaction; the next
    /// run becomes `n.next_run_at` unless it is paused. None if there is no such schedule.
    async fn update_schedule(&self, id: i64, n: &NewSchedule) -> StoreResult<Option<Schedule>>;
    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>>;
    async fn schedule_by_name(&self, name: &str) -> StoreResult<Option<Schedule>>;
    async fn schedule_sections(&self, schedule_id: i64) -> StoreResult<Vec<Section>>;
    /// Pause or resume; resuming sets the next run. Returns false for an unknown name.
    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_run_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;
    async fn remove_schedule(&self, name: &str) -> StoreResult<bool>;
    /// Turn article pictures on or off in a schedule's digests; false if no such schedule.
    async fn set_schedule_images(&self, name: &str, on: bool) -> StoreResult<bool>;
    async fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>>;
}

/// Issues: made at a schedule's tick, filled with their readers' sends, settled.
#[async_trait::async_trait]
pub trait IssueStore: Send + Sync + 'static {
    /// Claim the tick and write the issue and its articles in one transaction, fixing its
    /// readers: the active readers of its sections with a subscriber id up to the highest
    /// one now. Their `sends` rows follow with `fill_issue`. None when the tick was already
    /// claimed.
    async fn create_issue(&self, plan: &IssuePlan) -> StoreResult<Option<Issue>>;
    /// Issues whose `sends` rows are not all written yet, oldest first.
    async fn issues_filling(&self) -> StoreResult<Vec<i64>>;
    /// Write the `sends` rows of the issue's readers among the next `chunk` subscriber ids
    /// in one transaction. Readers who left before their chunk are skipped.
    async fn fill_issue(
        &self,
        issue_id: i64,
        chunk: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<FillStep>;
    async fn issue(&self, id: i64) -> StoreResult<Option<Issue>>;
    async fn issue_articles(&self, issue_id: i64) -> StoreResult<Vec<IssueArticle>>;
    /// Articles of a schedule's sections that arrived in (start, end] and are in no issue
    /// of it yet: what the next issue would hold (previews).
    async fn window_articles(
        &self,
        schedule_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> StoreResult<Vec<IssueArticle>>;
    /// Issues newest first, those with an id below `before` (the previous page's last).
    async fn list_issues(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<Issue>>;
    /// If nothing of the issue is left in the queue, work out when its last send settled
    /// (once: it is kept) and return it.
    async fn settle_issue(&self, issue_id: i64) -> StoreResult<Option<DateTime<Utc>>>;
    /// Stop the issue: in one transaction, no more of its rows are written (filling ends)
    /// and every row not yet settled — queued, retrying, or claimed by a worker — becomes
    /// `cancelled`, and the stop is counted where every worker looks
    /// ([`crate::delivery::Ledger::issue_stops`]). A claimed row keeps its lease holder, so
    /// the one message a worker had already handed to the server is still recorded as
    /// `sent` when the server takes it (see the outcome fence). Stopping a stopped issue
    /// changes nothing and says when it was stopped; an issue with nothing left to send is
    /// left as it is (`stopped_at` None). None: no such issue.
    async fn stop_issue(
        &self,
        issue_id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StopReport>>;
    /// A schedule's issues that carry articles (not skipped), newest first.
    async fn schedule_issues(&self, schedule_name: &str, limit: i64) -> StoreResult<Vec<Issue>>;
    /// The issues of the same schedule (carrying articles, as [`Store::schedule_issues`]
    /// lists them) just before and just after `issue`, in the order they were scheduled.
    async fn issue_neighbours(&self, issue: &Issue) -> StoreResult<(Option<i64>, Option<i64>)>;
    /// Sends of issues `first..=last` counted by (issue, status), in one query.
    async fn issues_status_counts(
        &self,
        first: i64,
        last: i64,
    ) -> StoreResult<Vec<(i64, String, i64)>>;
    /// Sends of one issue counted by status.
    async fn issue_status_counts(&self, issue_id: i64) -> StoreResult<Vec<(String, i64)>> {
        Ok(self
            .issues_status_counts(issue_id, issue_id)
            .await?
            .into_iter()
            .map(|(_, status, n)| (status, n))
            .collect())
    }
    /// First active subscriber of any of these sections (preview without --to).
    async fn first_reader(&self, section_ids: &[i64]) -> StoreResult<Option<Subscriber>>;
    /// How many active subscribers have any of these sections: the readers an issue made
    /// now would reach (before "Send now").
    async fn readers_of(&self, section_ids: &[i64]) -> StoreResult<i64>;
}

/// What the digests service holds: its own slice, the sections and articles an issue is
/// made of, and the readers a preview is shown as. A supertrait of `store::Store`, so the
/// whole store is one; the ledger, access and returned mail are not in it.
pub trait DigestStore:
    ScheduleStore + IssueStore + crate::articles::ArticleStore + crate::subscriptions::SubscriberStore
{
}

impl<T> DigestStore for T where
    T: ScheduleStore
        + IssueStore
        + crate::articles::ArticleStore
        + crate::subscriptions::SubscriberStore
        + ?Sized
{
}

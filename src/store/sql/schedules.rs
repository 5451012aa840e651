//! The SQL of [`crate::digests::ScheduleStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;

/// A section of a schedule (add and update write them alike).
const LINK_SECTION: &str = "INSERT INTO schedule_sections (schedule_id, section_id) \
                            VALUES ($1, $2) ON CONFLICT DO NOTHING";

#[async_trait::async_trait]
impl crate::digests::ScheduleStore for Backend {
    async fn add_schedule(&self, n: &NewSchedule) -> StoreResult<Schedule> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query_as::<Db, Schedule>(
            "INSERT INTO schedules (name, cron, timezone, subject, enabled, created_at, \
             next_run_at, images) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, name, \
             cron, timezone, subject, enabled, created_at, next_run_at, images",
        )
        .bind(&n.name)
        .bind(&n.cron)
        .bind(&n.timezone)
        .bind(&n.subject)
        .bind(true)
        .bind(n.now)
        .bind(n.next_run_at)
        .bind(n.images.unwrap_or(true))
        .fetch_one(&mut *tx)
        .await;
        let sched = match r {
            Ok(s) => s,
            Err(e) => {
                return Err(crate::store::shared::conflict_on_unique(e, || {
                    format!("a schedule named {:?} already exists", n.name)
                }));
            }
        };
        for section in &n.section_ids {
            sqlx::query::<Db>(LINK_SECTION)
                .bind(sched.id)
                .bind(section)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(sched)
    }

    async fn update_schedule(&self, id: i64, n: &NewSchedule) -> StoreResult<Option<Schedule>> {
        let mut tx = self.begin_write().await?;
        // A paused schedule keeps its next_run_at: resuming sets it.
        let Some(sched) = sqlx::query_as::<Db, Schedule>(
            "UPDATE schedules SET cron = $2, timezone = $3, subject = $4, images = COALESCE($6, \
             images), next_run_at = CASE WHEN enabled THEN $5 ELSE next_run_at END WHERE id = $1 \
             RETURNING id, name, cron, timezone, subject, enabled, created_at, next_run_at, images",
        )
        .bind(id)
        .bind(&n.cron)
        .bind(&n.timezone)
        .bind(&n.subject)
        .bind(n.next_run_at)
        .bind(n.images)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        sqlx::query::<Db>("DELETE FROM schedule_sections WHERE schedule_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for section in &n.section_ids {
            sqlx::query::<Db>(LINK_SECTION)
                .bind(id)
                .bind(section)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(sched))
    }

    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>> {
        Ok(sqlx::query_as::<Db, Schedule>(
            "SELECT id, name, cron, timezone, subject, enabled, created_at, next_run_at, images \
             FROM schedules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn schedule_by_name(&self, name: &str) -> StoreResult<Option<Schedule>> {
        Ok(sqlx::query_as::<Db, Schedule>(
            "SELECT id, name, cron, timezone, subject, enabled, created_at, next_run_at, images \
             FROM schedules WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn schedule_sections(&self, schedule_id: i64) -> StoreResult<Vec<Section>> {
        Ok(sqlx::query_as::<Db, Section>(
            "SELECT s.id, s.slug, s.name, s.description, s.feed_url, s.page_url, s.created_at FROM \
             sections s JOIN schedule_sections x ON x.section_id = s.id WHERE x.schedule_id = $1 \
             ORDER BY s.name, s.slug",
        )
        .bind(schedule_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
        next_run_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        Ok(sqlx::query::<Db>(
            "UPDATE schedules SET enabled = $2, next_run_at = COALESCE($3, next_run_at) WHERE name \
             = $1",
        )
        .bind(name)
        .bind(enabled)
        .bind(next_run_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn remove_schedule(&self, name: &str) -> StoreResult<bool> {
        Ok(sqlx::query::<Db>("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn set_schedule_images(&self, name: &str, on: bool) -> StoreResult<bool> {
        Ok(
            sqlx::query::<Db>("UPDATE schedules SET images = $2 WHERE name = $1")
                .bind(name)
                .bind(on)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>> {
        Ok(sqlx::query_as::<Db, Schedule>(
            "SELECT id, name, cron, timezone, subject, enabled, created_at, next_run_at, images \
             FROM schedules WHERE enabled = $2 AND next_run_at <= $1 ORDER BY next_run_at",
        )
        .bind(now)
        .bind(true)
        .fetch_all(&self.pool)
        .await?)
    }
}

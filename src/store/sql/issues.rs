//! The SQL of [`crate::digests::IssueStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;

#[async_trait::async_trait]
impl crate::digests::IssueStore for Backend {
    async fn create_issue(&self, p: &IssuePlan) -> StoreResult<Option<Issue>> {
        let mut tx = self.begin_write().await?;
        // The first statement locks the schedule row (PostgreSQL) or the database
        // (SQLite), so the window read below cannot race another run of this schedule.
        let claimed = match p.claim {
            Some((expected, new)) => sqlx::query::<Db>(
                "UPDATE schedules SET next_run_at = $3 WHERE id = $1 AND next_run_at = $2 AND \
                 enabled = $4",
            )
            .bind(p.schedule_id)
            .bind(expected)
            .bind(new)
            .bind(true)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            None => {
                sqlx::query::<Db>("UPDATE schedules SET next_run_at = next_run_at WHERE id = $1")
                    .bind(p.schedule_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        };
        if claimed == 0 {
            return Ok(None);
        }
        let last_end: Option<DateTime<Utc>> = sqlx::query_scalar::<Db, Option<DateTime<Utc>>>(
            "SELECT MAX(window_end) FROM issues WHERE schedule_id = $1",
        )
        .bind(p.schedule_id)
        .fetch_one(&mut *tx)
        .await?;
        let window_start = last_end.unwrap_or(p.first_window_start);
        // A stale tick keeps an empty window, so the next issue still covers its articles.
        let window_end = if p.stale {
            window_start
        } else {
            p.window_end.max(window_start)
        };
        let inserted = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO issues (schedule_id, schedule_name, scheduled_for, window_start, \
             window_end, status, subject, article_count, send_count, created_at) VALUES ($1, $2, \
             $3, $4, $5, 'skipped', $6, 0, 0, $7) ON CONFLICT (schedule_id, scheduled_for) DO \
             NOTHING RETURNING id",
        )
        .bind(p.schedule_id)
        .bind(&p.schedule_name)
        .bind(p.scheduled_for)
        .bind(window_start)
        .bind(window_end)
        .bind(&p.subject)
        .bind(p.now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(issue_id) = inserted else {
            // This tick already has its issue.
            return Ok(None);
        };
        if !p.stale {
            // An issue takes every article of its sections not yet in an issue of
            // this schedule, rather than those with a timestamp in (last end, now]:
            // an article whose transaction commits just after the previous issue
            // read the table, with a timestamp before it, would otherwise never go out.
            let articles = sqlx::query::<Db>(
                "INSERT INTO issue_articles (issue_id, article_id) SELECT DISTINCT $1, a.id FROM \
                 articles a JOIN schedule_sections x ON x.section_id = a.section_id WHERE \
                 x.schedule_id = $2 AND a.created_at > $3 AND a.created_at <= $4 AND \
                 a.withdrawn_at IS NULL AND (a.hold_until IS NULL OR a.hold_until <= $4) AND NOT \
                 EXISTS (SELECT 1 FROM issue_articles done JOIN issues i ON i.id = done.issue_id \
                 WHERE i.schedule_id = $2 AND done.article_id = a.id)",
            )
            .bind(issue_id)
            .bind(p.schedule_id)
            .bind(p.first_window_start)
            .bind(window_end)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if articles > 0 {
                // The readers are fixed here (active readers of the sections with an id
                // up to the highest one now); their `sends` rows follow in chunks
                // (`fill_issue`), so this transaction stays short whatever the list size.
                sqlx::query::<Db>(
                    "UPDATE issues SET status = 'queued', article_count = $2, fill_after = 0, \
                     fill_through = (SELECT COALESCE(MAX(id), 0) FROM subscribers), \
                     message_id_nonce = $3, message_id_domain = $4 WHERE id = $1",
                )
                .bind(issue_id)
                .bind(articles as i32)
                .bind(&p.message_id_nonce)
                .bind(&p.message_id_domain)
                .execute(&mut *tx)
                .await?;
            }
        }
        let issue =
            sqlx::query_as::<Db, Issue>(crate::store::shared::select_issue!("WHERE id = $1"))
                .bind(issue_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(issue))
    }

    async fn issues_filling(&self) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT id FROM issues WHERE fill_after IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn fill_issue(
        &self,
        issue_id: i64,
        chunk: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<FillStep> {
        let mut tx = self.begin_write().await?;
        // Locks the issue row (PostgreSQL; SQLite's write transaction locks the
        // database), so two instances filling the same issue take turns.
        let open = sqlx::query::<Db>(
            "UPDATE issues SET fill_after = fill_after WHERE id = $1 AND fill_after IS NOT NULL",
        )
        .bind(issue_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if open == 0 {
            return Ok(FillStep {
                written: 0,
                done: true,
            });
        }
        let (after, through, nonce, domain) = sqlx::query_as::<Db, (i64, i64, String, String)>(
            "SELECT fill_after, fill_through, message_id_nonce, message_id_domain FROM issues \
             WHERE id = $1",
        )
        .bind(issue_id)
        .fetch_one(&mut *tx)
        .await?;
        // The issue's sections, bound as values: with a subquery in their place
        // PostgreSQL hashed all of `subscriptions` for every chunk (0.86 s per chunk
        // of 5,000 at 1M readers, against 16 ms for an index probe per reader).
        let sections = sqlx::query_scalar::<Db, i64>(
            "SELECT DISTINCT a.section_id FROM issue_articles ia JOIN articles a ON a.id = \
             ia.article_id WHERE ia.issue_id = $1",
        )
        .bind(issue_id)
        .fetch_all(&mut *tx)
        .await?;
        // The next `chunk` subscriber ids (a range, not a count, so each chunk reads
        // one bounded slice of `subscribers` whatever the share of active readers);
        // the unique (issue, subscriber) key would refuse a second row for anyone.
        let upto = after.saturating_add(chunk).min(through);
        let mut written = 0;
        if !sections.is_empty() && upto > after {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO sends (issue_id, kind, subscriber_id, email, message_id, status, \
                 attempts, next_attempt_at, created_at, updated_at) SELECT ",
            );
            qb.push_bind(issue_id)
                .push(", 'digest', s.id, s.email, '<d' || ")
                .push_bind(issue_id.to_string())
                .push(" || '.' || s.id || '.' || ")
                .push_bind(nonce)
                // A part of each reader's own (48 random bits), so that a complaint
                // matched by its quoted Message-ID cannot be forged for another
                // reader from one's own id (`send_by_message_id`).
                .push(if self.backend() == "sqlite" {
                    " || '.' || lower(hex(randomblob(6))) || '@' || "
                } else {
                    " || '.' || substr(md5(random()::text || clock_timestamp()::text), 1, 12) || \
                     '@' || "
                })
                .push_bind(domain)
                .push(" || '>', 'queued', 0, ")
                .push_bind(now)
                .push(", ")
                .push_bind(now)
                .push(", ")
                .push_bind(now)
                .push(" FROM subscribers s WHERE s.id > ")
                .push_bind(after)
                .push(" AND s.id <= ")
                .push_bind(upto)
                .push(
                    " AND s.status = 'active' AND EXISTS (SELECT 1 FROM subscriptions x \
                       WHERE x.subscriber_id = s.id AND x.section_id IN (",
                );
            let mut ids = qb.separated(", ");
            for id in &sections {
                ids.push_bind(*id);
            }
            qb.push("))");
            written = qb.build().execute(&mut *tx).await?.rows_affected();
        }
        let done = upto >= through || sections.is_empty();
        let next: Option<i64> = if done { None } else { Some(upto) };
        sqlx::query::<Db>(
            "UPDATE issues SET send_count = send_count + $2, fill_after = $3, \
             fill_through = CASE WHEN $3 IS NULL THEN NULL ELSE fill_through END WHERE id = $1",
        )
        .bind(issue_id)
        .bind(written as i32)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(FillStep { written, done })
    }

    async fn issue(&self, id: i64) -> StoreResult<Option<Issue>> {
        Ok(
            sqlx::query_as::<Db, Issue>(crate::store::shared::select_issue!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn issue_articles(&self, issue_id: i64) -> StoreResult<Vec<IssueArticle>> {
        Ok(sqlx::query_as::<Db, IssueArticle>(
            "SELECT a.section_id, s.slug AS section_slug, s.name AS section_name, s.page_url AS \
             section_page_url, a.title, a.url, a.summary_html, a.summary_text, a.author, \
             a.published_at, a.created_at, a.image_url FROM issue_articles ia JOIN articles a ON \
             a.id = ia.article_id JOIN sections s ON s.id = a.section_id WHERE ia.issue_id = $1 \
             ORDER BY s.name, s.slug, COALESCE(a.published_at, a.created_at) DESC, a.id",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn window_articles(
        &self,
        schedule_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> StoreResult<Vec<IssueArticle>> {
        Ok(sqlx::query_as::<Db, IssueArticle>(
            "SELECT a.section_id, s.slug AS section_slug, s.name AS section_name, s.page_url AS \
             section_page_url, a.title, a.url, a.summary_html, a.summary_text, a.author, \
             a.published_at, a.created_at, a.image_url FROM articles a JOIN sections s ON s.id = \
             a.section_id JOIN schedule_sections x ON x.section_id = a.section_id WHERE \
             x.schedule_id = $1 AND a.created_at > $2 AND a.created_at <= $3 AND \
             a.withdrawn_at IS NULL AND (a.hold_until IS NULL OR a.hold_until <= $3) AND NOT \
             EXISTS (SELECT 1 FROM issue_articles done JOIN issues i ON i.id = done.issue_id \
             WHERE i.schedule_id = $1 AND done.article_id = a.id) ORDER BY s.name, s.slug, \
             COALESCE(a.published_at, a.created_at) DESC, a.id",
        )
        .bind(schedule_id)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_issues(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<Issue>> {
        Ok(
            sqlx::query_as::<Db, Issue>(crate::store::shared::select_issue!(
                "WHERE id < $2 ORDER BY id DESC LIMIT $1"
            ))
            .bind(limit)
            .bind(before.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn settle_issue(&self, issue_id: i64) -> StoreResult<Option<DateTime<Utc>>> {
        // Only while nothing of it is in the queue: a retry may have re-opened it
        // since the caller counted.
        let _turn = self.write_turn().await;
        sqlx::query::<Db>(
            "UPDATE issues SET finished_at = (SELECT MAX(updated_at) FROM sends WHERE issue_id = \
             $1) WHERE id = $1 AND finished_at IS NULL AND fill_after IS NULL AND NOT EXISTS \
             (SELECT 1 FROM sends WHERE issue_id = $1 AND status IN ('queued', 'sending', \
             'retrying'))",
        )
        .bind(issue_id)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar::<Db, Option<DateTime<Utc>>>(
            "SELECT finished_at FROM issues WHERE id = $1",
        )
        .bind(issue_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    async fn stop_issue(
        &self,
        issue_id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StopReport>> {
        let mut tx = self.begin_write().await?;
        // Takes the issue's row lock first (PostgreSQL), as a fill chunk does: a chunk being
        // written finishes before the stop, and its rows are cancelled with the rest.
        // Only an issue with something left to send: a finished one stays as it finished.
        let first = sqlx::query::<Db>(
            "UPDATE issues SET stopped_at = $2, stopped_by = $3, fill_after = NULL, \
             fill_through = NULL WHERE id = $1 AND stopped_at IS NULL AND (fill_after IS NOT \
             NULL OR EXISTS (SELECT 1 FROM sends WHERE issue_id = $1 AND status IN ('queued', \
             'retrying', 'sending')))",
        )
        .bind(issue_id)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let Some((stopped_at, stopped_by)) =
            sqlx::query_as::<Db, (Option<DateTime<Utc>>, Option<String>)>(
                "SELECT stopped_at, stopped_by FROM issues WHERE id = $1",
            )
            .bind(issue_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut cancelled = 0;
        if first {
            // Claimed rows keep lease_owner: the outcome fence lets their holder record
            // `sent` for the one message already with the server, and nothing else.
            cancelled = sqlx::query::<Db>(
                "UPDATE sends SET status = 'cancelled', last_reply = $2, sealed_token = NULL, \
                 lease_until = NULL, updated_at = $3 WHERE issue_id = $1 AND status IN \
                 ('queued', 'retrying', 'sending')",
            )
            .bind(issue_id)
            .bind(format!("stopped by {by}"))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query::<Db>(
                "INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT (key) DO UPDATE \
                 SET value = CAST(CAST(settings.value AS INTEGER) + 1 AS TEXT)",
            )
            .bind(crate::store::shared::ISSUE_STOPS)
            .execute(&mut *tx)
            .await?;
        }
        let sent = sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM sends WHERE issue_id = $1 AND status = 'sent'",
        )
        .bind(issue_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(StopReport {
            issue: issue_id,
            cancelled,
            sent,
            already: !first && stopped_at.is_some(),
            stopped_at,
            stopped_by,
        }))
    }

    async fn schedule_issues(&self, schedule_name: &str, limit: i64) -> StoreResult<Vec<Issue>> {
        Ok(
            sqlx::query_as::<Db, Issue>(crate::store::shared::select_issue!(
                "WHERE schedule_name = $1 AND status <> 'skipped' AND article_count > 0 \
                 ORDER BY scheduled_for DESC, id DESC LIMIT $2"
            ))
            .bind(schedule_name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn issue_neighbours(&self, issue: &Issue) -> StoreResult<(Option<i64>, Option<i64>)> {
        let prev = sqlx::query_scalar::<Db, i64>(
            "SELECT id FROM issues WHERE schedule_name = $1 AND status <> 'skipped' AND \
             article_count > 0 AND (scheduled_for < $2 OR (scheduled_for = $2 AND id < $3)) ORDER \
             BY scheduled_for DESC, id DESC LIMIT 1",
        )
        .bind(&issue.schedule_name)
        .bind(issue.scheduled_for)
        .bind(issue.id)
        .fetch_optional(&self.pool)
        .await?;
        let next = sqlx::query_scalar::<Db, i64>(
            "SELECT id FROM issues WHERE schedule_name = $1 AND status <> 'skipped' AND \
             article_count > 0 AND (scheduled_for > $2 OR (scheduled_for = $2 AND id > $3)) ORDER \
             BY scheduled_for ASC, id ASC LIMIT 1",
        )
        .bind(&issue.schedule_name)
        .bind(issue.scheduled_for)
        .bind(issue.id)
        .fetch_optional(&self.pool)
        .await?;
        Ok((prev, next))
    }

    async fn issues_status_counts(
        &self,
        first: i64,
        last: i64,
    ) -> StoreResult<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as::<Db, (i64, String, i64)>(
            "SELECT issue_id, status, COUNT(*) FROM sends WHERE issue_id BETWEEN $1 AND $2 \
             GROUP BY issue_id, status ORDER BY issue_id, status",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn first_reader(&self, section_ids: &[i64]) -> StoreResult<Option<Subscriber>> {
        if section_ids.is_empty() {
            return Ok(None);
        }
        let mut qb = sqlx::QueryBuilder::<Db>::new(crate::store::shared::select_subscriber!(
            "FROM subscribers WHERE status = 'active' AND id IN \
             (SELECT subscriber_id FROM subscriptions WHERE section_id IN ("
        ));
        let mut ids = qb.separated(", ");
        for id in section_ids {
            ids.push_bind(*id);
        }
        qb.push(")) ORDER BY id LIMIT 1");
        Ok(qb
            .build_query_as::<Subscriber>()
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn readers_of(&self, section_ids: &[i64]) -> StoreResult<i64> {
        if section_ids.is_empty() {
            return Ok(0);
        }
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "SELECT COUNT(*) FROM subscribers WHERE status = 'active' AND id IN (SELECT \
             subscriber_id FROM subscriptions WHERE section_id IN (",
        );
        let mut ids = qb.separated(", ");
        for id in section_ids {
            ids.push_bind(*id);
        }
        qb.push("))");
        Ok(qb.build_query_scalar::<i64>().fetch_one(&self.pool).await?)
    }
}

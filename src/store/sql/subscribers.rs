//! The SQL of [`crate::subscriptions::SubscriberStore`], written once for both dialects
//! (see `mod.rs`).

use super::prelude::*;

#[async_trait::async_trait]
impl crate::subscriptions::SubscriberStore for Backend {
    async fn signup(&self, req: &NewSignup) -> StoreResult<SignupOutcome> {
        // Two signups of one new address at once (PostgreSQL runs them in parallel)
        // both find no row and both insert it; the loser's transaction is rolled
        // back and run again, and now finds the winner's row.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.begin_write().await?;
            match Self::signup_in(&mut tx, req).await {
                Ok(out) => {
                    tx.commit().await?;
                    return Ok(out);
                }
                Err(StoreError::Database(e))
                    if attempt < 3 && crate::store::shared::is_unique_violation(&e) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn signup_batch(&self, reqs: &[NewSignup]) -> StoreResult<Vec<SignupOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            out.push(Self::signup_in(&mut tx, req).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn confirm(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        ip: Option<&str>,
        welcome_message_id: &str,
    ) -> StoreResult<ConfirmOutcome> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query_as::<Db, crate::store::shared::ConfirmRow>(
            crate::store::shared::CONFIRM_TOKEN_SQL,
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let (subscriber_id, email) = match crate::store::shared::confirm_outcome(row, now) {
            ConfirmOutcome::Confirmed {
                subscriber_id,
                email,
            } => (subscriber_id, email),
            refused => return Ok(refused),
        };
        // A suppression is lifted only by an operator (`suppressions remove`): a
        // link mailed before it, or to a stranger's signup, activates nothing.
        let suppressed = sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM suppressions WHERE email_hash = $1",
        )
        .bind(crate::domain::sha256_hex(&email))
        .fetch_one(&mut *tx)
        .await?
            > 0;
        if suppressed {
            tx.commit().await?;
            return Ok(ConfirmOutcome::Withdrawn);
        }
        // Every outstanding link of this address is spent by one confirmation.
        sqlx::query::<Db>(
            "UPDATE tokens SET used_at = $2 WHERE subscriber_id = $1 AND purpose = 'confirm' AND \
             used_at IS NULL",
        )
        .bind(subscriber_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query::<Db>(
            "UPDATE subscribers SET status = 'active', confirmed_at = $2, consent_at = $2, \
             consent_ip = $3, consent_form = signup_form, unsubscribed_at = NULL, last_notice_at = \
             NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(subscriber_id)
        .bind(now)
        .bind(ip)
        .execute(&mut *tx)
        .await?;
        sqlx::query::<Db>(
            "INSERT INTO sends (kind, subscriber_id, email, message_id, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ('welcome', $1, $2, $3, 'queued', 0, \
             $4, $4, $4)",
        )
        .bind(subscriber_id)
        .bind(&email)
        .bind(welcome_message_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Confirmed {
            subscriber_id,
            email,
        })
    }

    async fn peek_confirm_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ConfirmOutcome> {
        let row = sqlx::query_as::<Db, crate::store::shared::ConfirmRow>(
            crate::store::shared::CONFIRM_TOKEN_SQL,
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(crate::store::shared::confirm_outcome(row, now))
    }

    async fn subscriber_by_id(&self, id: i64) -> StoreResult<Option<Subscriber>> {
        Ok(
            sqlx::query_as::<Db, Subscriber>(crate::store::shared::select_subscriber!(
                "FROM subscribers WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn subscriber_by_email(&self, email: &str) -> StoreResult<Option<Subscriber>> {
        Ok(
            sqlx::query_as::<Db, Subscriber>(crate::store::shared::select_subscriber!(
                "FROM subscribers WHERE email = $1"
            ))
            .bind(email)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn subscriber_sections(&self, id: i64) -> StoreResult<Vec<Section>> {
        Ok(sqlx::query_as::<Db, Section>(
            "SELECT s.id, s.slug, s.name, s.description, s.feed_url, s.page_url, s.created_at FROM \
             sections s JOIN subscriptions x ON x.section_id = s.id WHERE x.subscriber_id = $1 \
             ORDER BY s.name, s.slug",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_preferences(
        &self,
        id: i64,
        section_ids: &[i64],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> =
            sqlx::query_scalar::<Db, String>("SELECT status FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        match status.as_deref() {
            None => return Err(StoreError::NotFound("no such subscriber".into())),
            Some("active") => {}
            Some(_) => {
                return Err(StoreError::Conflict(
                    "the subscription is not active".into(),
                ));
            }
        }
        sqlx::query::<Db>("DELETE FROM subscriptions WHERE subscriber_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for section in section_ids {
            sqlx::query::<Db>(
                "INSERT INTO subscriptions (subscriber_id, section_id, created_at) VALUES ($1, $2, \
                 $3) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(section)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if section_ids.is_empty() {
            sqlx::query::<Db>(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $2, \
                 last_notice_at = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query::<Db>("UPDATE subscribers SET updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unsubscribe(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let r = sqlx::query::<Db>(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $2, last_notice_at \
             = NULL, updated_at = $2 WHERE id = $1 AND status IN ('active', 'pending')",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge_pending(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        // Sends keep their ledger row but lose the address with the person.
        sqlx::query::<Db>(
            "UPDATE sends SET email = NULL, sealed_token = NULL, subscriber_id = NULL WHERE \
             subscriber_id IN ( SELECT id FROM subscribers s WHERE s.status = 'pending' AND \
             s.unsubscribed_at IS NULL AND s.created_at < $1 AND NOT EXISTS (SELECT 1 FROM tokens \
             t WHERE t.subscriber_id = s.id AND t.expires_at > $1))",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query::<Db>(
            "DELETE FROM subscribers WHERE status = 'pending' AND unsubscribed_at IS NULL AND \
             created_at < $1 AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.subscriber_id = \
             subscribers.id AND t.expires_at > $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn subscriber_section_ids(&self, subscriber_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT section_id FROM subscriptions WHERE subscriber_id = $1",
        )
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

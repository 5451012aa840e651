//! The SQL of [`crate::returned::SuppressionStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;

#[async_trait::async_trait]
impl crate::returned::SuppressionStore for Backend {
    async fn list_suppressions(&self) -> StoreResult<Vec<Suppression>> {
        Ok(sqlx::query_as::<Db, Suppression>(
            "SELECT email_hash, reason, created_at FROM suppressions ORDER BY created_at DESC, \
             email_hash",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_suppression(
        &self,
        email: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let added = sqlx::query::<Db>(
            "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, $2, $3) ON \
             CONFLICT (email_hash) DO NOTHING",
        )
        .bind(crate::domain::sha256_hex(email))
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query::<Db>(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = \
             COALESCE(unsubscribed_at, $2), updated_at = $2 WHERE email = $1 AND status IN \
             ('active', 'pending')",
        )
        .bind(email)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(added > 0)
    }

    async fn remove_suppression(
        &self,
        email: &str,
        now: DateTime<Utc>,
        by: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let hash = crate::domain::sha256_hex(email);
        let lifted = sqlx::query_as::<Db, (String, DateTime<Utc>)>(
            "DELETE FROM suppressions WHERE email_hash = $1 RETURNING reason, created_at",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let removed = u64::from(lifted.is_some());
        if let Some((reason, since)) = lifted {
            sqlx::query::<Db>(
                "INSERT INTO suppression_lifts (email_hash, reason, suppressed_at, lifted_at, \
                 lifted_by) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&hash)
            .bind(reason)
            .bind(since)
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query::<Db>(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = \
             COALESCE(unsubscribed_at, $2), updated_at = $2 WHERE email = $1 AND status IN \
             ('bounced', 'complained')",
        )
        .bind(email)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(removed > 0)
    }

    async fn suppression_lifts(&self, limit: i64) -> StoreResult<Vec<SuppressionLift>> {
        Ok(sqlx::query_as::<Db, SuppressionLift>(
            "SELECT email_hash, reason, suppressed_at, lifted_at, lifted_by FROM suppression_lifts \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recent_suppressions(&self, limit: i64) -> StoreResult<(Vec<Suppression>, i64)> {
        let rows = sqlx::query_as::<Db, Suppression>(
            "SELECT email_hash, reason, created_at FROM suppressions ORDER BY created_at DESC, \
             email_hash LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let n = sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM suppressions")
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, n))
    }

    async fn suppression(&self, email_hash: &str) -> StoreResult<Option<Suppression>> {
        Ok(sqlx::query_as::<Db, Suppression>(
            "SELECT email_hash, reason, created_at FROM suppressions WHERE email_hash = $1",
        )
        .bind(email_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn is_suppressed(&self, email_hash: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar::<Db, i64>(
                "SELECT COUNT(*) FROM suppressions WHERE email_hash = $1",
            )
            .bind(email_hash)
            .fetch_one(&self.pool)
            .await?
                > 0,
        )
    }
}

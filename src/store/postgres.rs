//! PostgreSQL backend: for production and for several herald instances on one database.
//! Work is claimed with `FOR UPDATE SKIP LOCKED`, so instances never wait on or double-claim
//! each other's rows.

use super::shared::shared_store_impl;
use super::*;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres, Transaction};
use std::str::FromStr;

pub struct PostgresStore {
    pool: Pool<Postgres>,
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("bad PostgreSQL URL: {e}")))?
            // Bulk statements (an issue for a million readers) legitimately take seconds.
            .log_slow_statements(
                tracing::log::LevelFilter::Warn,
                std::time::Duration::from_secs(30),
            );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Self { pool })
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'_, Postgres>> {
        self.pool.begin().await
    }
}

shared_store_impl!(PostgresStore, Postgres, "postgres", {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_sends(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Postgres>(
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM sends WHERE (status IN ('queued', 'retrying') AND next_attempt_at <= $3) \
                OR (status = 'sending' AND lease_until < $3) ORDER BY next_attempt_at, id LIMIT $4 \
                FOR UPDATE SKIP LOCKED)",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit as i64)
        .execute(&mut *tx)
        .await?;
        let jobs = sqlx::query_as::<Postgres, SendJob>(
            "SELECT s.id, s.kind, s.issue_id, s.subscriber_id, s.email, s.message_id, s.sealed_token, s.attempts, \
             COALESCE(s.requeued_at, s.created_at) AS created_at, u.status AS subscriber_status, \
             (SELECT string_agg(x.section_id::text, ',') FROM subscriptions x WHERE x.subscriber_id = s.subscriber_id) AS subscriber_sections FROM sends s LEFT JOIN subscribers u ON u.id = s.subscriber_id \
             WHERE s.lease_owner = $1 AND s.status = 'sending' ORDER BY s.id",
        )
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }
});

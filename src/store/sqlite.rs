//! SQLite backend: the embedded default. One file, WAL, a busy timeout, and every write
//! transaction `BEGIN IMMEDIATE` so concurrent writers queue instead of failing with
//! "database is locked" (a read-then-write transaction in deferred mode cannot upgrade its
//! lock when another writer got there first).

use super::shared::shared_store_impl;
use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Pool, Sqlite, Transaction};
use std::str::FromStr;

pub struct SqliteStore {
    pool: Pool<Sqlite>,
}

impl SqliteStore {
    pub async fn open(path: &str, max_connections: u32) -> StoreResult<Self> {
        let path = path.trim_start_matches("//");
        if path.is_empty() || path.contains(":memory:") {
            // Each pooled connection would get its own empty in-memory database.
            return Err(StoreError::Open(
                "sqlite needs a file path, e.g. sqlite:var/herald.db".into(),
            ));
        }
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Open(format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| StoreError::Open(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last transactions on power loss.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true)
            // Bulk statements (an issue for a million readers) legitimately take seconds.
            .log_slow_statements(
                tracing::log::LevelFilter::Warn,
                std::time::Duration::from_secs(30),
            );
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("cannot open SQLite database {path}: {e}")))?;
        Ok(Self { pool })
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'_, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

shared_store_impl!(SqliteStore, Sqlite, "sqlite", {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
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
        // BEGIN IMMEDIATE holds the write lock, so no other claimer sees these rows as free.
        let mut tx = self.begin_write().await?;
        sqlx::query::<Sqlite>(
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM sends WHERE (status IN ('queued', 'retrying') AND next_attempt_at <= $3) \
                OR (status = 'sending' AND lease_until < $3) ORDER BY next_attempt_at, id LIMIT $4)",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit as i64)
        .execute(&mut *tx)
        .await?;
        let jobs = sqlx::query_as::<Sqlite, SendJob>(
            "SELECT s.id, s.kind, s.issue_id, s.subscriber_id, s.email, s.message_id, s.sealed_token, s.attempts, \
             COALESCE(s.requeued_at, s.created_at) AS created_at, u.status AS subscriber_status, \
             (SELECT GROUP_CONCAT(x.section_id) FROM subscriptions x WHERE x.subscriber_id = s.subscriber_id) AS subscriber_sections FROM sends s LEFT JOIN subscribers u ON u.id = s.subscriber_id \
             WHERE s.lease_owner = $1 AND s.status = 'sending' ORDER BY s.id",
        )
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }
});

//! PostgreSQL backend: for production and for several herald instances on one database.
//! Work is claimed with `FOR UPDATE SKIP LOCKED`, so instances never wait on or double-claim
//! each other's rows.

use super::shared::shared_store_impl;
use super::*;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Pool, Postgres, Transaction};
use std::str::FromStr;

pub struct PostgresStore {
    pool: Pool<Postgres>,
    /// A connection of its own for recording send outcomes, the statement every delivery
    /// worker waits on after each message. It commits with `synchronous_commit = off`: the
    /// commit does not wait for the WAL to reach the disk (measured: 1,842 msg/s into
    /// smtp-sink with it on). A crash of herald loses nothing by that; only a crash of the
    /// PostgreSQL server or machine can lose the last few hundred milliseconds of outcomes,
    /// and those messages are then sent again with the same Message-ID (RELIABILITY.md).
    /// Every other write (signups, confirmations, issues) keeps synchronous commit.
    ledger: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    ledger_options: PgConnectOptions,
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
        let ledger_options = opts.clone().options([("synchronous_commit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // Never hand out a connection still inside a transaction (a COMMIT that failed
            // mid-way): close it instead. PostgreSQL's rollback-on-drop lowers the depth at
            // once, so a dropped transaction does not trip this.
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Self {
            pool,
            ledger: tokio::sync::Mutex::new(None),
            ledger_options,
        })
    }

    /// Run one statement, atomic by itself, on the ledger connection (see `ledger`). A
    /// connection that failed is replaced at the next call.
    async fn execute_alone(&self, mut qb: sqlx::QueryBuilder<Postgres>) -> StoreResult<u64> {
        let mut slot = self.ledger.lock().await;
        if slot.is_none() {
            *slot = Some(self.ledger_options.connect().await?);
        }
        let conn = slot.as_mut().expect("connected above");
        match qb.build().execute(&mut *conn).await {
            Ok(r) => Ok(r.rows_affected()),
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
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
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        // SKIP LOCKED: concurrent claimers (other workers, other instances) pass over rows
        // another transaction is claiming instead of waiting for it or taking it twice.
        // One ordered range of the (status, next_attempt_at, id) index per status, each
        // read no further than the batch: a claim costs O(batch) whatever the queue holds.
        // A leased row's next_attempt_at is its lease expiry, so "due" means the same for all.
        // The statuses are literals (not binds) so each statement keeps its own plan.
        const CLAIMS: [&str; 3] = [
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, lease_until = $3, \
             next_attempt_at = $3, attempts = attempts + 1, updated_at = $4 WHERE id IN (SELECT id FROM sends \
             WHERE status = 'sending' AND next_attempt_at <= $4 ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED)",
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, lease_until = $3, \
             next_attempt_at = $3, attempts = attempts + 1, updated_at = $4 WHERE id IN (SELECT id FROM sends \
             WHERE status = 'retrying' AND next_attempt_at <= $4 ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED)",
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, lease_until = $3, \
             next_attempt_at = $3, attempts = attempts + 1, updated_at = $4 WHERE id IN (SELECT id FROM sends \
             WHERE status = 'queued' AND next_attempt_at <= $4 ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED)",
        ];
        let mut tx = self.begin_write().await?;
        let mut remaining = limit as i64;
        for sql in CLAIMS {
            if remaining == 0 {
                break;
            }
            remaining -= sqlx::query::<Postgres>(sql)
                .bind(&holder.owner)
                .bind(&holder.instance)
                .bind(lease_until)
                .bind(now)
                .bind(remaining)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
        }
        let jobs = sqlx::query_as::<Postgres, SendJob>(
            "SELECT s.id, s.kind, s.issue_id, s.subscriber_id, s.email, s.message_id, s.sealed_token, s.attempts, \
             COALESCE(s.requeued_at, s.created_at) AS created_at, u.status AS subscriber_status, \
             (SELECT string_agg(x.section_id::text, ',') FROM subscriptions x WHERE x.subscriber_id = s.subscriber_id) AS subscriber_sections \
             FROM sends s LEFT JOIN subscribers u ON u.id = s.subscriber_id \
             WHERE s.status = 'sending' AND s.lease_owner = $1 ORDER BY s.id",
        )
        .bind(&holder.owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }
});

//! SQLite backend: the embedded default. One file, WAL, a busy timeout, and every write
//! transaction `BEGIN IMMEDIATE` so concurrent writers queue instead of failing with
//! "database is locked" (a read-then-write transaction in deferred mode cannot upgrade its
//! lock when another writer got there first).

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Pool, Sqlite, Transaction};
use std::str::FromStr;

pub struct SqliteStore {
    pool: Pool<Sqlite>,
    /// Write transactions of this process take turns here instead of at SQLite's lock:
    /// a `BEGIN IMMEDIATE` that finds the lock taken gets SQLITE_BUSY, and the busy handler
    /// then sleeps 1, 2, 5, 10 … 100 ms. With the delivery workers writing each outcome as
    /// it comes, those sleeps halved throughput (4,200 -> 2,100 msg/s into smtp-sink).
    /// Other processes (a CLI command beside `herald serve`) still meet at SQLite's lock.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// A connection of its own for the statement the delivery workers wait on after every
    /// message (recording outcomes): no pool acquire and release, each of which is another
    /// round trip to a connection thread.
    ledger: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
    ledger_options: SqliteConnectOptions,
}

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// A WAL this long (pages) is checkpointed once more in the write turn. SQLite starts the
/// WAL file over only in a write transaction that began after a checkpoint had copied all of
/// it; a writer that never pauses (an issue for a million readers being written) always
/// begins while its previous commit is not yet copied, and the file grew to 446 MB. In the
/// turn no writer of this process runs, so the checkpoint completes and the next writer
/// starts the file over. 10,000 pages (40 MB) was the automatic interval before; most of it
/// is copied by then, so the writers wait for the rest and one fsync.
const WAL_CATCH_UP_PAGES: i64 = 10_000;

/// Copy committed WAL pages into the database file on a connection of its own, outside every
/// write turn. A PASSIVE checkpoint takes no writer lock, so writers go on appending while it
/// copies and fsyncs; with nothing to copy it only reads the WAL index. It stops with its store.
fn spawn_checkpointer(
    opts: SqliteConnectOptions,
    write_turn: std::sync::Weak<tokio::sync::Mutex<()>>,
) {
    tokio::spawn(async move {
        let mut conn: Option<sqlx::SqliteConnection> = None;
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if write_turn.strong_count() == 0 {
                break;
            }
            if conn.is_none() {
                match opts.connect().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpointer cannot connect; will retry");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let result = match checkpoint(c).await {
                Ok((log, _)) if log >= WAL_CATCH_UP_PAGES => match write_turn.upgrade() {
                    Some(turn) => {
                        let _turn = turn.lock().await;
                        checkpoint(c).await.map(|_| ())
                    }
                    None => break,
                },
                other => other.map(|_| ()),
            };
            if let Err(e) = result {
                // A full disk and the like: the backstop checkpoint in the writers remains.
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                conn = None;
            }
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    });
}

/// One passive checkpoint: (pages in the WAL, pages of it now in the database file).
async fn checkpoint(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<(i64, i64)> {
    let (_busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok((log, done))
}

/// A write transaction holding this process's write turn until it ends.
pub(super) struct WriteTx<'a> {
    tx: Transaction<'a, Sqlite>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl WriteTx<'_> {
    pub(super) async fn commit(self) -> sqlx::Result<()> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl SqliteStore {
    pub async fn open(path: &str, max_connections: u32) -> StoreResult<Self> {
        Self::open_with(path, max_connections, true).await
    }

    /// Open the database file; with `create` false a missing one is an error naming where
    /// it was looked for.
    pub async fn open_with(path: &str, max_connections: u32, create: bool) -> StoreResult<Self> {
        let path = path.trim_start_matches("//");
        if path.is_empty() || path.contains(":memory:") {
            // Each pooled connection would get its own empty in-memory database.
            return Err(StoreError::Open(
                "sqlite needs a file path, e.g. sqlite:var/herald.db".into(),
            ));
        }
        let file = path.split('?').next().unwrap_or(path);
        if !create && !std::path::Path::new(file).exists() {
            let shown = std::path::absolute(file)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| file.to_string());
            return Err(StoreError::Open(format!(
                "no database at {shown}: point database.url (or HERALD_DATABASE__URL) at yours, \
                 or run `herald migrate` to make a new one there"
            )));
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
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last transactions on power loss.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            // Checkpoints run beside the writers (see `spawn_checkpointer`), not in them: SQLite
            // runs an automatic checkpoint inside the COMMIT that crossed the threshold, with
            // its two fsyncs, while this process's write turn is held, so every writer queued
            // behind it (signups saw p99 30 ms, 20+ ms of it such stalls). The automatic one
            // stays only as a backstop at 100,000 pages (400 MB) should the checkpointer stall.
            // The WAL file is cut back to 64 MB after a checkpoint.
            .pragma("wal_autocheckpoint", "100000")
            .pragma("journal_size_limit", "67108864")
            .foreign_keys(true)
            // Bulk statements (an issue for a million readers) legitimately take seconds.
            .log_slow_statements(
                tracing::log::LevelFilter::Warn,
                std::time::Duration::from_secs(30),
            );
        let ledger_options = opts.clone();
        let write_turn = Arc::new(tokio::sync::Mutex::new(()));
        spawn_checkpointer(opts.clone(), Arc::downgrade(&write_turn));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            // A connection whose transaction could not be ended (a COMMIT or ROLLBACK that
            // failed on a full disk, after SQLite had already rolled back by itself) keeps a
            // transaction depth of 1 in sqlx, and every later `BEGIN IMMEDIATE` on it fails
            // with "attempted to call begin_with at non-zero transaction depth". Such a
            // connection is closed instead of returned to the pool. (A transaction dropped
            // without commit may not have rolled back yet either: closing that one too costs
            // a reconnect on an error path, which is cheaper than a ping on every release.)
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            // Every statement is a round trip to the connection's own thread: no extra ping
            // on acquire (sqlx pings on release anyway). Measured: delivery into smtp-sink
            // waits for one ledger write per message, and each hop costs a context switch.
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("cannot open SQLite database {path}: {e}")))?;
        Ok(Self {
            pool,
            write_turn,
            ledger: tokio::sync::Mutex::new(None),
            ledger_options,
        })
    }

    /// This process's turn to write, for a statement that runs outside a transaction.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.write_turn.lock().await)
    }

    async fn begin_write(&self) -> sqlx::Result<WriteTx<'_>> {
        let turn = self.write_turn.lock().await;
        Ok(WriteTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }
}

/// What only this dialect writes its own way; `sql/store.rs` forwards to it.
impl SqliteStore {
    const NAME: &str = "sqlite";

    async fn dialect_sent_per_hour(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(DateTime<Utc>, i64)>> {
        // Timestamps are RFC 3339 text: the first 13 characters name the hour.
        let rows = sqlx::query_as::<Sqlite, (String, i64)>(
            "SELECT substr(updated_at, 1, 13) AS h, COUNT(*) FROM sends \
             WHERE updated_at >= $1 AND status = 'sent' GROUP BY h ORDER BY h",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(h, n)| {
                let t = chrono::NaiveDateTime::parse_from_str(
                    &format!("{}:00:00", h.replacen(' ', "T", 1)),
                    "%Y-%m-%dT%H:%M:%S",
                )
                .ok()?;
                Some((t.and_utc(), n))
            })
            .collect())
    }

    async fn dialect_migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Committed pages reach the database file without any writer running a checkpoint (the
    /// automatic one is only a backstop at 100,000 pages): the checkpointer copies them.
    #[tokio::test]
    async fn the_checkpointer_moves_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(path.to_str().unwrap(), 2).await.unwrap();
        store.migrate().await.unwrap();
        // Let the checkpointer take the migration in, then write more than fits one page.
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = std::fs::metadata(&path).unwrap().len();
        for i in 0..300 {
            store
                .setting_or_insert(&format!("key-{i}"), &"v".repeat(200))
                .await
                .unwrap();
        }
        let mut grew = false;
        for _ in 0..50 {
            if std::fs::metadata(&path).unwrap().len() > before {
                grew = true;
                break;
            }
            tokio::time::sleep(CHECKPOINT_EVERY / 2).await;
        }
        assert!(
            grew,
            "the database file stayed at {before} bytes: nothing checkpointed"
        );
    }

    /// The state a full disk leaves behind: sqlx believes a transaction is open (its
    /// ROLLBACK failed because SQLite had already rolled back by itself). Such a
    /// connection must not be handed out again, or every later write fails with
    /// "attempted to call begin_with at non-zero transaction depth" until a restart.
    #[tokio::test]
    async fn a_connection_left_in_a_transaction_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // One connection, so the next write gets the same one if it goes back to the pool.
        let store = SqliteStore::open(path.to_str().unwrap(), 1).await.unwrap();
        store.migrate().await.unwrap();
        {
            let mut tx = store.begin_write().await.unwrap();
            // End the transaction behind sqlx's back, as SQLite does on SQLITE_FULL.
            sqlx::raw_sql("ROLLBACK").execute(&mut *tx).await.unwrap();
            // Dropping `tx` now issues a ROLLBACK that fails: the depth stays at 1.
        }
        for i in 0..3 {
            let v = store
                .setting_or_insert(&format!("k{i}"), "v")
                .await
                .expect("the next writes get a healthy connection");
            assert_eq!(v, "v");
        }
    }
}

impl SqliteStore {
    async fn dialect_claim_sends(
        &self,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        // BEGIN IMMEDIATE holds the write lock, so no other claimer sees these rows as free.
        // One ordered range of the (status, next_attempt_at, id) index per status, each
        // read no further than the batch: a claim costs O(batch) whatever the queue holds.
        // A leased row's next_attempt_at is its lease expiry, so "due" means the same for all.
        // The statuses are literals (not binds) so each statement keeps its own plan.
        // A claim is not an attempt: `attempts` counts what reached a server, and is
        // counted when its outcome is recorded (taking a row back from a dead owner must
        // not stretch its backoff).
        const CLAIMS: [&str; 3] = [
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, \
             lease_until = $3, next_attempt_at = $3, updated_at = $4 WHERE id IN (SELECT id FROM \
             sends WHERE status = 'sending' AND next_attempt_at <= $4 ORDER BY next_attempt_at, id \
             LIMIT $5)",
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, \
             lease_until = $3, next_attempt_at = $3, updated_at = $4 WHERE id IN (SELECT id FROM \
             sends WHERE status = 'retrying' AND next_attempt_at <= $4 ORDER BY next_attempt_at, \
             id LIMIT $5)",
            "UPDATE sends SET status = 'sending', lease_owner = $1, lease_instance = $2, \
             lease_until = $3, next_attempt_at = $3, updated_at = $4 WHERE id IN (SELECT id FROM \
             sends WHERE status = 'queued' AND next_attempt_at <= $4 ORDER BY next_attempt_at, id \
             LIMIT $5)",
        ];
        let mut tx = self.begin_write().await?;
        let mut remaining = limit as i64;
        for sql in CLAIMS {
            if remaining == 0 {
                break;
            }
            remaining -= sqlx::query::<Sqlite>(sql)
                .bind(&holder.owner)
                .bind(&holder.instance)
                .bind(lease_until)
                .bind(now)
                .bind(remaining)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
        }
        let jobs = sqlx::query_as::<Sqlite, SendJob>(
            "SELECT s.id, s.kind, s.issue_id, s.subscriber_id, s.email, s.message_id, \
             s.sealed_token, s.attempts, COALESCE(s.requeued_at, s.created_at) AS created_at, \
             u.status AS subscriber_status, (SELECT GROUP_CONCAT(x.section_id) FROM subscriptions \
             x WHERE x.subscriber_id = s.subscriber_id) AS subscriber_sections FROM sends s LEFT \
             JOIN subscribers u ON u.id = s.subscriber_id WHERE s.status = 'sending' AND \
             s.lease_owner = $1 ORDER BY s.id",
        )
        .bind(&holder.owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }
}

/// The backend the shared SQL in `sql/` is compiled for, here.
type Backend = SqliteStore;
type Db = Sqlite;

/// The SQL both dialects share, compiled once for each backend (as a macro expanded twice
/// was before, but as plain Rust that rustfmt and the reader can follow).
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

//! PostgreSQL backend: for production and for several herald instances on one database.
//! Work is claimed with `FOR UPDATE SKIP LOCKED`, so instances never wait on or double-claim
//! each other's rows.

use super::*;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Pool, Postgres, Transaction};
use std::str::FromStr;

/// Where the last claim of each status ended in the (status, next_attempt_at, id) index.
/// Under MVCC every claimed or finished row leaves a dead entry at the front of its old range
/// until vacuum, and a scan from the start steps over all of them: at 1,000,000 readers the
/// delivery rate fell to 0.46 of the 20,000-reader rate. Claims start after the cursor
/// instead. A row can commit behind it (ids are taken before commit; a retry falls due),
/// so a claim that comes up short looks once from the start, and cursors expire after 30 s.
#[derive(Default)]
struct ClaimCursors(std::sync::Mutex<std::collections::HashMap<&'static str, CursorAt>>);

/// The last (next_attempt_at, id) claimed, and since when the cursor has run.
type CursorAt = (DateTime<Utc>, i64, std::time::Instant);

impl ClaimCursors {
    const START: (DateTime<Utc>, i64) = (DateTime::<Utc>::UNIX_EPOCH, 0);
    const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

    fn get(&self, status: &'static str) -> (DateTime<Utc>, i64) {
        let mut map = self.0.lock().expect("cursor lock");
        match map.get(status) {
            Some((at, id, since)) if since.elapsed() < Self::MAX_AGE => (*at, *id),
            Some(_) => {
                map.remove(status);
                Self::START
            }
            None => Self::START,
        }
    }

    fn advance(&self, status: &'static str, to: (DateTime<Utc>, i64)) {
        let mut map = self.0.lock().expect("cursor lock");
        let entry =
            map.entry(status)
                .or_insert((Self::START.0, Self::START.1, std::time::Instant::now()));
        if (to.0, to.1) > (entry.0, entry.1) {
            entry.0 = to.0;
            entry.1 = to.1;
        }
    }

    fn reset(&self, status: &'static str) {
        self.0.lock().expect("cursor lock").remove(status);
    }
}

pub struct PostgresStore {
    pool: Pool<Postgres>,
    cursors: ClaimCursors,
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

/// Why a connection failed, in words: the server's own message (without sqlx's source
/// file and line), or the network error.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message().to_string();
            match d.code().as_deref() {
                // invalid_catalog_name
                Some("3D000") => format!("{msg}: create it (createdb) or fix database.url"),
                // invalid_password, invalid_authorization_specification
                Some("28P01") | Some("28000") => {
                    format!("{msg}: check the user and password in database.url")
                }
                _ => msg,
            }
        }
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused: is PostgreSQL running and listening there?".into()
            }
            _ => io.to_string(),
        },
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        other => other.to_string(),
    }
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
        // One plain connection first, so a failure says why (refused, no such database, bad
        // password) rather than the pool's "timed out" after ten seconds of retries.
        let target = format!(
            "PostgreSQL at {}:{} (database {:?})",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("postgres")
        );
        {
            use sqlx::ConnectOptions;
            match tokio::time::timeout(std::time::Duration::from_secs(10), opts.connect()).await {
                Ok(Ok(c)) => {
                    let _ = sqlx::Connection::close(c).await;
                }
                Ok(Err(e)) => {
                    return Err(StoreError::Open(format!(
                        "cannot connect to {target}: {}",
                        connect_cause(&e)
                    )));
                }
                Err(_) => {
                    return Err(StoreError::Open(format!(
                        "cannot connect to {target}: no answer within 10 s"
                    )));
                }
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // Never hand out a connection still inside a transaction (a COMMIT that failed
            // mid-way): close it instead. PostgreSQL's rollback-on-drop lowers the depth at
            // once, so a dropped transaction does not trip this.
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(opts)
            .await
            .map_err(|e| {
                StoreError::Open(format!("cannot connect to {target}: {}", connect_cause(&e)))
            })?;
        Ok(Self {
            pool,
            cursors: ClaimCursors::default(),
            ledger: tokio::sync::Mutex::new(None),
            ledger_options,
        })
    }

    /// PostgreSQL's row locks order writers: no turn to wait for.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'_, Postgres>> {
        self.pool.begin().await
    }
}

/// What only this dialect writes its own way; `sql/store.rs` forwards to it.
impl PostgresStore {
    const NAME: &str = "postgres";

    async fn dialect_sent_per_hour(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(DateTime<Utc>, i64)>> {
        Ok(sqlx::query_as::<Postgres, (DateTime<Utc>, i64)>(
            "SELECT date_trunc('hour', updated_at) AS h, COUNT(*) FROM sends \
             WHERE updated_at >= $1 AND status = 'sent' GROUP BY h ORDER BY h",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn dialect_migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

impl PostgresStore {
    async fn dialect_claim_sends(
        &self,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        // SKIP LOCKED: concurrent claimers (other workers, other instances) pass over rows
        // another transaction is claiming instead of waiting for it or taking it twice.
        // One ordered range of the (status, next_attempt_at, id) index per status, read from
        // this process's cursor (see `ClaimCursors`) and no further than the batch. A leased
        // row's next_attempt_at is its lease expiry, so "due" means the same for all three.
        // The statuses are literals (not binds) so each statement keeps its own plan.
        macro_rules! claim {
            ($status:literal) => {
                concat!(
                    "WITH picked AS (SELECT id, next_attempt_at FROM sends WHERE status = '",
                    $status,
                    "' AND next_attempt_at <= $4 AND (status, next_attempt_at, id) > ('",
                    $status,
                    "', $6, $7) ORDER BY status, next_attempt_at, id LIMIT $5 FOR UPDATE SKIP \
                     LOCKED) UPDATE sends s SET status = 'sending', lease_owner = $1, \
                     lease_instance = $2, lease_until = $3, next_attempt_at = $3, updated_at = $4 \
                     FROM picked p WHERE s.id = p.id RETURNING s.id, p.next_attempt_at"
                )
            };
        }
        const CLAIMS: [(&str, &str); 3] = [
            ("sending", claim!("sending")),
            ("retrying", claim!("retrying")),
            ("queued", claim!("queued")),
        ];
        let mut tx = self.begin_write().await?;
        let mut ids: Vec<i64> = Vec::with_capacity(limit as usize);
        for (status, sql) in CLAIMS {
            let mut from_cursor = true;
            loop {
                let remaining = limit as i64 - ids.len() as i64;
                if remaining <= 0 {
                    break;
                }
                let (after_at, after_id) = if from_cursor {
                    self.cursors.get(status)
                } else {
                    ClaimCursors::START
                };
                let rows: Vec<(i64, DateTime<Utc>)> =
                    sqlx::query_as::<Postgres, (i64, DateTime<Utc>)>(sql)
                        .bind(&holder.owner)
                        .bind(&holder.instance)
                        .bind(lease_until)
                        .bind(now)
                        .bind(remaining)
                        .bind(after_at)
                        .bind(after_id)
                        .fetch_all(&mut *tx)
                        .await?;
                let short = (rows.len() as i64) < remaining;
                if let Some(last) = rows.iter().map(|(id, at)| (*at, *id)).max() {
                    self.cursors.advance(status, last);
                }
                ids.extend(rows.into_iter().map(|(id, _)| id));
                // Came up short from the cursor: rows may wait behind it (committed late, or
                // due again); look once from the start of the range.
                if short && from_cursor && (after_at, after_id) != ClaimCursors::START {
                    self.cursors.reset(status);
                    from_cursor = false;
                    continue;
                }
                break;
            }
        }
        // Read back by id: the `sending` range holds a dead index entry for every row that
        // has passed through it, until vacuum.
        let jobs = sqlx::query_as::<Postgres, SendJob>(
            "SELECT s.id, s.kind, s.issue_id, s.subscriber_id, s.email, s.message_id, \
             s.sealed_token, s.attempts, COALESCE(s.requeued_at, s.created_at) AS created_at, \
             u.status AS subscriber_status, (SELECT string_agg(x.section_id::text, ',') FROM \
             subscriptions x WHERE x.subscriber_id = s.subscriber_id) AS subscriber_sections FROM \
             sends s LEFT JOIN subscribers u ON u.id = s.subscriber_id WHERE s.id = ANY($1) ORDER \
             BY s.id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }
}

/// The backend the shared SQL in `sql/` is compiled for, here.
type Backend = PostgresStore;
type Db = Postgres;

/// The SQL both dialects share, compiled once for each backend (as a macro expanded twice
/// was before, but as plain Rust that rustfmt and the reader can follow).
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

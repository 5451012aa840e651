//! The SQL of [`crate::store::Store`]'s own methods (health, counts, signup's batch, the
//! ledger's writes shared with the slices), written once for both dialects (see `mod.rs`).

use super::prelude::*;

/// `UPDATE sends SET <back in the queue, due $1> WHERE status = 'failed' AND <which>`: the
/// one way a failed send is queued again, whoever asks (an issue's retry, an address's or a
/// domain's).
macro_rules! requeue_failed {
    ($which:literal) => {
        concat!(
            "UPDATE sends SET status = 'queued', next_attempt_at = $1, updated_at = $1, \
             requeued_at = $1, lease_owner = NULL, lease_until = NULL, lease_instance = NULL \
             WHERE status = 'failed' AND ",
            $which
        )
    };
}

#[async_trait::async_trait]
impl crate::store::Store for Backend {
    async fn sent_per_hour(&self, since: DateTime<Utc>) -> StoreResult<Vec<(DateTime<Utc>, i64)>> {
        self.dialect_sent_per_hour(since).await
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.dialect_migrate().await
    }

    fn backend(&self) -> &'static str {
        Backend::NAME
    }

    async fn first_use(&self, kind: &str, token: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let fresh = sqlx::query::<Db>(
            "INSERT INTO webhook_seen (source, message_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source, message_id) DO NOTHING",
        )
        .bind(format!("form:{kind}"))
        .bind(token)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(fresh == 1)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query::<Db>("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let v: String =
            sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET \
             value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_send_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM sends WHERE status IN ('queued', 'retrying', 'sending')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // A leased row's next_attempt_at is its lease expiry; one index probe per status.
        Ok(sqlx::query_scalar::<Db, Option<DateTime<Utc>>>(
            "SELECT MIN(t) FROM ( \
               SELECT MIN(next_attempt_at) AS t FROM sends WHERE status = 'queued' \
               UNION ALL SELECT MIN(next_attempt_at) FROM sends WHERE status = 'retrying' \
               UNION ALL SELECT MIN(next_attempt_at) FROM sends WHERE status = 'sending') AS due",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn send_counts_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<(SendStatus, i64)>> {
        Ok(sqlx::query_as::<Db, (SendStatus, i64)>(
            "SELECT status, COUNT(*) FROM sends WHERE updated_at >= $1 GROUP BY status",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_sends(&self, f: &SendFilter) -> StoreResult<Vec<SendRecord>> {
        let mut qb =
            sqlx::QueryBuilder::<Db>::new(crate::store::shared::select_send!("WHERE 1 = 1"));
        if let Some(i) = f.issue_id {
            qb.push(" AND issue_id = ").push_bind(i);
        }
        if let Some(st) = f.status {
            qb.push(" AND status = ").push_bind(st);
        }
        if let Some(e) = &f.email {
            qb.push(" AND email = ").push_bind(e.clone());
        }
        if let Some(t) = f.updated_since {
            qb.push(" AND updated_at >= ").push_bind(t);
        }
        qb.push(" ORDER BY updated_at, id");
        if let Some(l) = f.limit {
            qb.push(" LIMIT ").push_bind(l);
        }
        Ok(qb
            .build_query_as::<SendRecord>()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn send_log(&self, q: &LogQuery) -> StoreResult<Vec<SendRecord>> {
        let mut qb =
            sqlx::QueryBuilder::<Db>::new(crate::store::shared::select_send!("WHERE 1 = 1"));
        if let Some(i) = q.issue_id {
            qb.push(" AND issue_id = ").push_bind(i);
        }
        if let Some(st) = q.status {
            qb.push(" AND status = ").push_bind(st);
        }
        if let Some(id) = q.subscriber_id {
            qb.push(" AND subscriber_id = ").push_bind(id);
        }
        if let Some(t) = q.since {
            qb.push(" AND updated_at >= ").push_bind(t);
        }
        if let Some(t) = q.until {
            qb.push(" AND updated_at < ").push_bind(t);
        }
        if let Some(b) = q.before {
            qb.push(" AND id < ").push_bind(b);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit);
        Ok(qb
            .build_query_as::<SendRecord>()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn requeue_failed_sends(&self, issue_id: i64, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        // A stopped issue stays stopped: nothing of it goes back in the queue.
        let open = sqlx::query::<Db>(
            "UPDATE issues SET finished_at = NULL WHERE id = $1 AND stopped_at IS NULL",
        )
        .bind(issue_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if open == 0 {
            return Ok(0);
        }
        let n = sqlx::query::<Db>(requeue_failed!("issue_id = $2"))
            .bind(now)
            .bind(issue_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn requeue_failed_sends_to(
        &self,
        scope: &RetryScope,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // The rows: failed digests to the address ($2 = 0), or to an address ending in
        // "@domain" ($2 = 1); one statement for both, so the SQL stays a literal.
        let (value, by_domain) = match scope {
            RetryScope::Address(a) => (a.clone(), 0_i32),
            RetryScope::Domain(d) => (format!("@{d}"), 1_i32),
        };
        let mut tx = self.begin_write().await?;
        // Their issues are not finished any more.
        sqlx::query::<Db>(
            "UPDATE issues SET finished_at = NULL WHERE stopped_at IS NULL AND id IN (SELECT \
             issue_id FROM sends WHERE status = 'failed' AND kind = 'digest' AND CASE WHEN $2 = \
             1 THEN length(email) > length($1) AND substr(email, length(email) - length($1) + \
             1) = $1 ELSE email = $1 END)",
        )
        .bind(&value)
        .bind(by_domain)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query::<Db>(requeue_failed!(
            "kind = 'digest' AND CASE WHEN $3 = 1 THEN length(email) > length($2) AND \
             substr(email, length(email) - length($2) + 1) = $2 ELSE email = $2 END AND \
             issue_id NOT IN (SELECT id FROM issues WHERE stopped_at IS NOT NULL)"
        ))
        .bind(now)
        .bind(&value)
        .bind(by_domain)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn unsettled_sends_of_issue(&self, issue_id: i64) -> StoreResult<i64> {
        // An issue whose rows are still being written counts one more: it is not done.
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT (SELECT COUNT(*) FROM sends WHERE issue_id = $1 AND status IN ('queued', \
             'retrying', 'sending')) + (SELECT COUNT(*) FROM issues WHERE id = $1 AND fill_after \
             IS NOT NULL)",
        )
        .bind(issue_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

impl Backend {
    /// One signup's reads and writes, inside the caller's transaction.
    /// A returned message that makes the address dead: its send `bounced` with what
    /// came back, the address suppressed, the reader `bounced` (if still on the list).
    pub(super) async fn suppress_bounced(
        tx: &mut <Db as sqlx::Database>::Connection,
        r: &NewReturned,
        subscriber_id: i64,
        email: &str,
        reply: &str,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE sends SET status = 'bounced', last_reply = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(r.send_id)
        .bind(reply)
        .bind(r.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query::<Db>(
            "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'bounced', $2) \
             ON CONFLICT (email_hash) DO NOTHING",
        )
        .bind(crate::domain::sha256_hex(email))
        .bind(r.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query::<Db>(
            "UPDATE subscribers SET status = 'bounced', updated_at = $2 WHERE id = $1 AND status \
             IN ('active', 'pending')",
        )
        .bind(subscriber_id)
        .bind(r.now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub(super) async fn signup_in(
        tx: &mut <Db as sqlx::Database>::Connection,
        req: &NewSignup,
    ) -> StoreResult<SignupOutcome> {
        use crate::domain::SignupAction;
        let existing: Option<(i64, String, Option<DateTime<Utc>>)> =
            sqlx::query_as::<Db, (i64, String, Option<DateTime<Utc>>)>(
                "SELECT id, status, last_notice_at FROM subscribers WHERE email = $1",
            )
            .bind(&req.email)
            .fetch_optional(&mut *tx)
            .await?;
        let state = existing.as_ref().map(|(_, status, last)| {
            (
                crate::domain::SubscriberStatus::parse(status)
                    .unwrap_or(crate::domain::SubscriberStatus::Unsubscribed),
                *last,
            )
        });
        // A suppressed address — by hand, a bounce, a complaint, or an erasure (only
        // its hash is left) — gets the same answer as any other, and nothing is
        // written or mailed: a stranger's signup must neither reach it nor bring it
        // back. Only an operator lifts a suppression (`suppressions remove`).
        let suppressed = sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM suppressions WHERE email_hash = $1",
        )
        .bind(crate::domain::sha256_hex(&req.email))
        .fetch_one(&mut *tx)
        .await?
            > 0;
        let action = SignupAction::decide(state, suppressed, req.now, req.cooldown);
        if action == SignupAction::Suppressed {
            return Ok(SignupOutcome {
                action,
                subscriber_id: existing.map_or(0, |e| e.0),
            });
        }
        let notice = matches!(
            action,
            SignupAction::SendConfirmation | SignupAction::SendAlreadySubscribed
        );
        let subscriber_id = match (action, &existing) {
            (
                SignupAction::SendConfirmation | SignupAction::PendingWithinCooldown,
                Some((id, _, last)),
            ) => {
                let last_notice = if notice { Some(req.now) } else { *last };
                // The status stays as it is: pending stays pending, and someone who
                // unsubscribed stays unsubscribed until they click the new link.
                sqlx::query::<Db>(
                    "UPDATE subscribers SET updated_at = $2, signup_ip = $3, \
                     signup_form = $4, last_notice_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(req.now)
                .bind(&req.ip)
                .bind(&req.form)
                .bind(last_notice)
                .execute(&mut *tx)
                .await?;
                *id
            }
            (SignupAction::SendConfirmation | SignupAction::PendingWithinCooldown, None) => {
                sqlx::query_scalar::<Db, i64>(
                    "INSERT INTO subscribers (email, status, created_at, updated_at, signup_ip, \
                     signup_form, last_notice_at) VALUES ($1, 'pending', $2, $2, $3, $4, $2) \
                     RETURNING id",
                )
                .bind(&req.email)
                .bind(req.now)
                .bind(&req.ip)
                .bind(&req.form)
                .fetch_one(&mut *tx)
                .await?
            }
            (SignupAction::SendAlreadySubscribed, Some((id, _, _))) => {
                sqlx::query::<Db>("UPDATE subscribers SET last_notice_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(req.now)
                    .execute(&mut *tx)
                    .await?;
                *id
            }
            (_, Some((id, _, _))) => *id,
            (_, None) => unreachable!("decide() only answers SendConfirmation for a new address"),
        };
        if matches!(
            action,
            SignupAction::SendConfirmation | SignupAction::PendingWithinCooldown
        ) {
            // A pending address takes the sections of its latest request.
            sqlx::query::<Db>("DELETE FROM subscriptions WHERE subscriber_id = $1")
                .bind(subscriber_id)
                .execute(&mut *tx)
                .await?;
            for section in &req.section_ids {
                sqlx::query::<Db>(
                    "INSERT INTO subscriptions (subscriber_id, section_id, created_at) VALUES ($1, \
                     $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(subscriber_id)
                .bind(section)
                .bind(req.now)
                .execute(&mut *tx)
                .await?;
            }
        }
        if action == SignupAction::SendConfirmation {
            sqlx::query::<Db>(
                "INSERT INTO tokens (token_hash, purpose, subscriber_id, created_at, expires_at) \
                 VALUES ($1, 'confirm', $2, $3, $4)",
            )
            .bind(&req.token_hash)
            .bind(subscriber_id)
            .bind(req.now)
            .bind(req.token_expires_at)
            .execute(&mut *tx)
            .await?;
        }
        if notice {
            let (kind, sealed) = if action == SignupAction::SendConfirmation {
                ("confirm", Some(&req.sealed_token))
            } else {
                ("already_subscribed", None)
            };
            sqlx::query::<Db>(
                "INSERT INTO sends (kind, subscriber_id, email, message_id, sealed_token, status, \
                 attempts, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, \
                 'queued', 0, $6, $6, $6)",
            )
            .bind(kind)
            .bind(subscriber_id)
            .bind(&req.email)
            .bind(&req.message_id)
            .bind(sealed)
            .bind(req.now)
            .execute(&mut *tx)
            .await?;
        }
        Ok(SignupOutcome {
            action,
            subscriber_id,
        })
    }

    /// Run one statement, atomic by itself, on the connection kept for recording
    /// outcomes (`ledger`), in this process's write turn. A connection that failed
    /// is replaced at the next call.
    pub(super) async fn execute_alone(&self, mut qb: sqlx::QueryBuilder<Db>) -> StoreResult<u64> {
        use sqlx::ConnectOptions;
        let _turn = self.write_turn().await;
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

    /// One UPDATE that records these outcomes (none a bounce), each only where the
    /// row is still `sending` under the worker that sent it.
    pub(super) fn outcome_update(
        chunk: &[&SendResult],
        now: DateTime<Utc>,
    ) -> sqlx::QueryBuilder<Db> {
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "UPDATE sends SET status = v.column2, last_reply = v.column3, next_attempt_at = \
             COALESCE(v.column4, sends.next_attempt_at), sent_at = COALESCE(v.column5, \
             sends.sent_at), lease_owner = NULL, lease_until = NULL, lease_instance = NULL, \
             sealed_token = CASE WHEN v.column2 = 'retrying' THEN sends.sealed_token ELSE NULL \
             END, attempts = sends.attempts + CASE WHEN v.column2 = 'suppressed' THEN 0 ELSE 1 \
             END, updated_at = ",
        );
        qb.push_bind(now);
        qb.push(" FROM (");
        qb.push_values(chunk.iter(), |mut b, r| {
            let (status, reply, next, sent_at): (
                &str,
                &str,
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
            ) = match &r.outcome {
                SendOutcome::Sent { reply } => ("sent", reply, None, Some(now)),
                SendOutcome::Retry {
                    reply,
                    next_attempt_at,
                } => ("retrying", reply, Some(*next_attempt_at), None),
                SendOutcome::Failed { reply } => ("failed", reply, None, None),
                SendOutcome::Suppressed { reason } => ("suppressed", reason, None, None),
                SendOutcome::Bounced { .. } => unreachable!("bounces are written one by one"),
            };
            b.push_bind(r.send_id)
                .push_bind(status.to_string())
                .push_bind(reply.to_string())
                .push_bind(next)
                .push_bind(sent_at)
                .push_bind(r.lease_owner.clone());
        });
        qb.push(
            ") AS v WHERE sends.id = v.column1 AND sends.lease_owner = v.column6 AND \
             (sends.status = 'sending' OR (sends.status = 'cancelled' AND v.column2 = 'sent'))",
        );
        qb
    }
}

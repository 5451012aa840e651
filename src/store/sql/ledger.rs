//! The SQL of [`crate::delivery::Ledger`], written once for both dialects (see `mod.rs`) but
//! for the claim, the one query that differs: each backend's `dialect_claim_sends`.

use super::prelude::*;

#[async_trait::async_trait]
impl crate::delivery::Ledger for Backend {
    async fn claim_sends(
        &self,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        self.dialect_claim_sends(holder, now, lease_until, limit)
            .await
    }

    async fn complete_sends(&self, results: &[SendResult], now: DateTime<Utc>) -> StoreResult<u64> {
        if results.is_empty() {
            return Ok(0);
        }
        let bounces = results
            .iter()
            .any(|r| matches!(r.outcome, SendOutcome::Bounced { .. }));
        if !bounces && results.len() <= crate::store::shared::BULK_CHUNK {
            // The usual case is one UPDATE, atomic by itself: no BEGIN and COMMIT.
            // Each statement is a round trip to the connection's thread (SQLite) or
            // the server, and the delivery workers wait for this write per message.
            let all: Vec<&SendResult> = results.iter().collect();
            return self.execute_alone(Self::outcome_update(&all, now)).await;
        }
        let mut written = 0;
        let mut tx = self.begin_write().await?;
        // Bounces (rare) one by one: they also suppress the address, but only if the
        // worker still held the row.
        for r in results {
            let SendOutcome::Bounced { reply, email_hash } = &r.outcome else {
                continue;
            };
            let updated = sqlx::query::<Db>(
                "UPDATE sends SET status = 'bounced', last_reply = $3, lease_owner = NULL, \
                 lease_until = NULL, lease_instance = NULL, updated_at = $4, sealed_token = NULL, \
                 attempts = attempts + 1 WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
            )
            .bind(r.send_id)
            .bind(&r.lease_owner)
            .bind(reply)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            written += updated;
            if updated == 1 {
                sqlx::query::<Db>(
                    "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, \
                     'bounced', $2) ON CONFLICT (email_hash) DO NOTHING",
                )
                .bind(email_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query::<Db>(
                    "UPDATE subscribers SET status = 'bounced', updated_at = $2 \
                     WHERE id = (SELECT subscriber_id FROM sends WHERE id = $1)",
                )
                .bind(r.send_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        // Everything else in one statement per chunk: the outcomes of all workers that
        // finished a message while the previous write ran are one write, not one each.
        let rest: Vec<&SendResult> = results
            .iter()
            .filter(|r| !matches!(r.outcome, SendOutcome::Bounced { .. }))
            .collect();
        for chunk in rest.chunks(crate::store::shared::BULK_CHUNK) {
            written += Self::outcome_update(chunk, now)
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn renew_leases(
        &self,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<i64>> {
        // A leased row's next_attempt_at is its lease expiry (see claim_sends). One
        // statement, atomic by itself.
        let _turn = self.write_turn().await;
        Ok(sqlx::query_scalar::<Db, i64>(
            "UPDATE sends SET lease_until = $2, next_attempt_at = $2, updated_at = $3 \
             WHERE status = 'sending' AND lease_owner = $1 RETURNING id",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release_unsent(
        &self,
        owner: &str,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "UPDATE sends SET lease_owner = NULL, lease_until = NULL, lease_instance = NULL, \
             status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'queued' END, next_attempt_at = ",
        );
        qb.push_bind(now)
            .push(" WHERE status = 'sending' AND lease_owner = ")
            .push_bind(owner.to_string())
            .push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
        Ok(qb.build().execute(&self.pool).await?.rows_affected())
    }

    async fn heartbeat(&self, i: &InstanceInfo, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query::<Db>(
            "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, \
             $4, $5) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&i.id)
        .bind(&i.host)
        .bind(i.pid)
        .bind(i.started_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reap_dead_instances(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let released = sqlx::query::<Db>(
            "UPDATE sends SET lease_until = $2, next_attempt_at = $2 WHERE status = 'sending' \
             AND lease_instance IN (SELECT id FROM instances WHERE heartbeat_at < $1)",
        )
        .bind(cutoff)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query::<Db>("DELETE FROM instances WHERE heartbeat_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn issue_stops(&self) -> StoreResult<i64> {
        let n = sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(crate::store::shared::ISSUE_STOPS)
            .fetch_optional(&self.pool)
            .await?;
        Ok(n.and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    async fn release_instance(&self, instance: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let released = sqlx::query::<Db>(
            "UPDATE sends SET lease_until = $2, next_attempt_at = $2 WHERE status = 'sending' AND \
             lease_instance = $1",
        )
        .bind(instance)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query::<Db>("DELETE FROM instances WHERE id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(released)
    }
}

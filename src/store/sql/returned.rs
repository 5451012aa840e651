//! The SQL of [`crate::returned::ReturnedStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;

#[async_trait::async_trait]
impl crate::returned::ReturnedStore for Backend {
    async fn record_returned(&self, r: &NewReturned) -> StoreResult<ReturnedRecorded> {
        let mut tx = self.begin_write().await?;
        // A webhook's message seen before: recorded as a repeat, acting on nobody.
        if let Some((source, id)) = &r.dedup {
            let fresh = sqlx::query::<Db>(
                "INSERT INTO webhook_seen (source, message_id, received_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (source, message_id) DO NOTHING",
            )
            .bind(source)
            .bind(id)
            .bind(r.now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if fresh == 0 {
                tx.commit().await?;
                return Ok(ReturnedRecorded {
                    action: "ignored: this message was received before".into(),
                    raw_kept: None,
                    email: None,
                });
            }
        }
        let send: Option<(Option<i64>, Option<String>)> = match r.send_id {
            Some(id) => {
                sqlx::query_as::<Db, (Option<i64>, Option<String>)>(
                    "SELECT subscriber_id, email FROM sends WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let (subscriber_id, email) = match send {
            Some((Some(sub), Some(email))) => (Some(sub), Some(email)),
            _ => match &r.reader_email {
                Some(e) if r.send_id.is_none() => sqlx::query_as::<Db, (i64, String)>(
                    "SELECT id, email FROM subscribers WHERE email = $1",
                )
                .bind(e)
                .fetch_optional(&mut *tx)
                .await?
                .map_or((None, None), |(id, email)| (Some(id), Some(email))),
                _ => (None, None),
            },
        };
        let reply = [r.status.as_deref(), r.diagnostic.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        use crate::domain::ReturnedEffect as E;
        let reader = subscriber_id.zip(email.as_deref());
        let action: &str = match (r.kind.effect(reader.is_some()), reader) {
            (E::Nothing(why), _) => why,
            (_, None) => unreachable!("only a known reader's message acts"),
            (E::SendFailed, Some(_)) => {
                // The provider refused the message after our relay took it: that send
                // failed; the reader stays.
                sqlx::query::<Db>(
                    "UPDATE sends SET status = 'failed', last_reply = $2, updated_at = $3 \
                     WHERE id = $1 AND status IN ('sent', 'failed')",
                )
                .bind(r.send_id)
                .bind(format!("returned: {reply}"))
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                "failed: the message was refused, not the address (nobody suppressed)"
            }
            (E::CountSoft, Some((sub, email))) => {
                // This one and the earlier ones of this reader in the window.
                let earlier = sqlx::query_scalar::<Db, i64>(
                    "SELECT COUNT(*) FROM returned WHERE subscriber_id = $1 AND kind = 'soft' AND \
                     received_at >= $2",
                )
                .bind(sub)
                .bind(r.soft_since)
                .fetch_one(&mut *tx)
                .await?;
                if crate::domain::soft_limit_reached(earlier + 1, r.soft_limit) {
                    let reply = format!("returned: {reply} (temporary failures: {})", earlier + 1);
                    Self::suppress_bounced(&mut tx, r, sub, email, &reply).await?;
                    "suppressed: too many temporary failures"
                } else {
                    "counted: a temporary failure"
                }
            }
            (E::Suppress, Some((sub, email))) => {
                Self::suppress_bounced(&mut tx, r, sub, email, &format!("returned: {reply}"))
                    .await?;
                "suppressed: the address failed"
            }
            (E::Complaint, Some((sub, email))) => {
                sqlx::query::<Db>(
                    "UPDATE sends SET last_reply = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(r.send_id)
                .bind("returned: a complaint (abuse report)")
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                sqlx::query::<Db>(
                    "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, \
                     'complained', $2) ON CONFLICT (email_hash) DO UPDATE SET reason = \
                     'complained'",
                )
                .bind(crate::domain::sha256_hex(email))
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                sqlx::query::<Db>(
                    "UPDATE subscribers SET status = 'complained', unsubscribed_at = \
                     COALESCE(unsubscribed_at, $2), updated_at = $2 WHERE id = $1",
                )
                .bind(sub)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                "unsubscribed and suppressed: a complaint"
            }
            (E::Unsubscribe, Some((sub, _))) => {
                sqlx::query::<Db>(
                    "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $2, \
                     last_notice_at = NULL, updated_at = $2 WHERE id = $1 AND status IN ('active', \
                     'pending')",
                )
                .bind(sub)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                "unsubscribed: mail to the reader's unsubscribe address"
            }
        };
        // The raw text: once per message, and only for mail about a known reader
        // (anyone can mail the bounce domain; what names nobody is not kept).
        let message_ref = match (&r.raw, subscriber_id) {
            (RawReturned::Kept(id), _) => Some(*id),
            (RawReturned::Text(raw), Some(_)) => Some(
                sqlx::query_scalar::<Db, i64>(
                    "INSERT INTO returned_messages (received_at, raw) VALUES ($1, $2) RETURNING id",
                )
                .bind(r.now)
                .bind(raw)
                .fetch_one(&mut *tx)
                .await?,
            ),
            _ => None,
        };
        sqlx::query::<Db>(
            "INSERT INTO returned (received_at, kind, send_id, subscriber_id, recipient, status, \
             diagnostic, action, message_ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.now)
        .bind(r.kind.as_str())
        .bind(r.send_id)
        .bind(subscriber_id)
        .bind(&r.recipient)
        .bind(&r.status)
        .bind(&r.diagnostic)
        .bind(action)
        .bind(message_ref)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReturnedRecorded {
            action: action.to_string(),
            raw_kept: message_ref,
            email,
        })
    }

    async fn send_by_message_id(&self, message_id: &str) -> StoreResult<Option<i64>> {
        // `<d{issue}.{subscriber}.{nonce}.{random}@domain>`: the random part is the
        // reader's own, so nobody can name another reader's send from theirs.
        let Some(local) = message_id
            .trim()
            .strip_prefix("<d")
            .and_then(|m| m.split_once('@'))
            .map(|(l, _)| l)
        else {
            return Ok(None);
        };
        let parts: Vec<&str> = local.split('.').collect();
        let [issue, subscriber, _nonce, random] = parts.as_slice() else {
            return Ok(None);
        };
        let (Ok(issue), Ok(subscriber)) = (issue.parse::<i64>(), subscriber.parse::<i64>()) else {
            return Ok(None);
        };
        if random.len() < 12 {
            return Ok(None);
        }
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT id FROM sends WHERE subscriber_id = $1 AND issue_id = $2 AND message_id = $3",
        )
        .bind(subscriber)
        .bind(issue)
        .bind(message_id.trim())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn purge_webhook_seen(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(
            sqlx::query::<Db>("DELETE FROM webhook_seen WHERE received_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn pause_domain(&self, p: &DomainPause) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>(
            "INSERT INTO domain_pauses (domain, paused_at, paused_until, backoff_secs, refusals, \
             reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (domain) DO UPDATE SET paused_at \
             = $2, paused_until = $3, backoff_secs = $4, refusals = $5, reason = $6",
        )
        .bind(&p.domain)
        .bind(p.paused_at)
        .bind(p.paused_until)
        .bind(p.backoff_secs)
        .bind(p.refusals)
        .bind(&p.reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn domain_pauses(&self) -> StoreResult<Vec<DomainPause>> {
        Ok(sqlx::query_as::<Db, DomainPause>(
            "SELECT domain, paused_at, paused_until, backoff_secs, refusals, reason FROM \
             domain_pauses ORDER BY domain",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn resume_domain(&self, domain: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let until = sqlx::query_scalar::<Db, DateTime<Utc>>(
            "DELETE FROM domain_pauses WHERE domain = $1 RETURNING paused_until",
        )
        .bind(domain)
        .fetch_optional(&mut *tx)
        .await?;
        let n = u64::from(until.is_some());
        // The sends held back for the pause wait for exactly its end (the claim's
        // index on the due time finds them): due now instead.
        if let Some(until) = until.filter(|u| *u > now) {
            sqlx::query::<Db>(
                "UPDATE sends SET next_attempt_at = $1 WHERE status IN ('queued', 'retrying') \
                 AND next_attempt_at = $2 AND email LIKE $3",
            )
            .bind(now)
            .bind(until)
            .bind(format!("%@{domain}"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn list_returned(
        &self,
        since: Option<DateTime<Utc>>,
        kind: Option<crate::store::ReturnedKind>,
        limit: i64,
    ) -> StoreResult<Vec<ReturnedRow>> {
        Ok(sqlx::query_as::<Db, ReturnedRow>(
            "SELECT r.id, r.received_at, r.kind, r.send_id, r.subscriber_id, u.email, r.recipient, \
             r.status, r.diagnostic, r.action FROM returned r LEFT JOIN subscribers u ON u.id = \
             r.subscriber_id WHERE ($1 IS NULL OR r.received_at >= $1) AND ($2 IS NULL OR r.kind = \
             $2) ORDER BY r.id DESC LIMIT $3",
        )
        .bind(since)
        .bind(kind.map(crate::store::ReturnedKind::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn returned(&self, id: i64) -> StoreResult<Option<(ReturnedRow, String)>> {
        let row = sqlx::query_as::<Db, ReturnedRow>(
            "SELECT r.id, r.received_at, r.kind, r.send_id, r.subscriber_id, u.email, r.recipient, \
             r.status, r.diagnostic, r.action FROM returned r LEFT JOIN subscribers u ON u.id = \
             r.subscriber_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let raw = sqlx::query_scalar::<Db, String>(
            "SELECT m.raw FROM returned r JOIN returned_messages m ON m.id = r.message_ref WHERE \
             r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default();
        Ok(Some((row, raw)))
    }

    async fn drop_returned_raw(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query::<Db>(
            "UPDATE returned_messages SET raw = '' WHERE received_at < $1 AND raw <> ''",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn returned_page(
        &self,
        kind: Option<crate::store::ReturnedKind>,
        subscriber_id: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ReturnedRow>> {
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "SELECT r.id, r.received_at, r.kind, r.send_id, r.subscriber_id, u.email, r.recipient, \
             r.status, r.diagnostic, r.action FROM returned r LEFT JOIN subscribers u ON u.id = \
             r.subscriber_id WHERE 1 = 1",
        );
        if let Some(k) = kind {
            qb.push(" AND r.kind = ").push_bind(k);
        }
        if let Some(id) = subscriber_id {
            qb.push(" AND r.subscriber_id = ").push_bind(id);
        }
        if let Some(b) = before {
            qb.push(" AND r.id < ").push_bind(b);
        }
        qb.push(" ORDER BY r.id DESC LIMIT ").push_bind(limit);
        Ok(qb
            .build_query_as::<ReturnedRow>()
            .fetch_all(&self.pool)
            .await?)
    }

    async fn returned_counts_since(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<(ReturnedKind, i64)>> {
        Ok(sqlx::query_as::<Db, (ReturnedKind, i64)>(
            "SELECT kind, COUNT(*) FROM returned WHERE received_at >= $1 GROUP BY kind",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}

//! The SQL of [`crate::audit::AuditStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;
use crate::audit::{AuditEntry, AuditQuery, NewAudit};

#[async_trait::async_trait]
impl crate::audit::AuditStore for Backend {
    async fn record_audit(&self, e: &NewAudit) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query::<Db>(
            "INSERT INTO audit_log (at, actor, via, address, action, subject, outcome) VALUES \
             ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(&e.actor)
        .bind(e.via)
        .bind(&e.address)
        .bind(&e.action)
        .bind(&e.subject)
        .bind(&e.outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "SELECT id, at, actor, via, address, action, subject, outcome FROM audit_log \
             WHERE 1 = 1",
        );
        if let Some(a) = &q.actor {
            qb.push(" AND actor = ").push_bind(a.clone());
        }
        if let Some(a) = &q.action {
            // A prefix, compared as text (no LIKE: an action may hold % or _).
            qb.push(" AND substr(action, 1, ")
                .push_bind(i32::try_from(a.chars().count()).unwrap_or(i32::MAX))
                .push(") = ")
                .push_bind(a.clone());
        }
        if let Some(t) = q.since {
            qb.push(" AND at >= ").push_bind(t);
        }
        if let Some(t) = q.until {
            qb.push(" AND at < ").push_bind(t);
        }
        if let Some(b) = q.before {
            qb.push(" AND id < ").push_bind(b);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit);
        Ok(qb
            .build_query_as::<AuditEntry>()
            .fetch_all(&self.pool)
            .await?)
    }
}

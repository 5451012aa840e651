//! The SQL of [`crate::access::AccessStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;

#[async_trait::async_trait]
impl crate::access::AccessStore for Backend {
    async fn add_api_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ApiToken> {
        let r = sqlx::query_as::<Db, ApiToken>(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, role, created_at, revoked_at",
        )
        .bind(name)
        .bind(role)
        .bind(token_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(t) => Ok(t),
            Err(e) => Err(crate::store::shared::conflict_on_unique(e, || {
                format!("a token named {name:?} already exists")
            })),
        }
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        Ok(sqlx::query_as::<Db, ApiToken>(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_api_token(&self, name: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        Ok(sqlx::query::<Db>(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        Ok(sqlx::query_as::<Db, ApiToken>(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens WHERE token_hash = $1 \
             AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleUser> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query_as::<Db, ConsoleUser>(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES ($1, $2, \
             $3, $4, $4) RETURNING id, name, role, created_at, updated_at",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        match r {
            Ok(u) => {
                tx.commit().await?;
                Ok(u)
            }
            Err(e) => Err(crate::store::shared::conflict_on_unique(e, || {
                format!("a user named {name:?} already exists")
            })),
        }
    }

    async fn list_users(&self) -> StoreResult<Vec<ConsoleUser>> {
        Ok(sqlx::query_as::<Db, ConsoleUser>(
            "SELECT id, name, role, created_at, updated_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn remove_user(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>(
            "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query::<Db>("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_user_password(
        &self,
        name: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query::<Db>(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE name = $1",
        )
        .bind(name)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query::<Db>(
            "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn user_login(&self, name: &str) -> StoreResult<Option<UserLogin>> {
        Ok(sqlx::query_as::<Db, UserLogin>(
            "SELECT id, name, role, password_hash FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<ConsoleSession>> {
        Ok(sqlx::query_as::<Db, ConsoleSession>(
            "SELECT s.user_id, u.name, u.role, s.csrf, s.created_at, s.last_seen_at, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn touch_session(&self, id_hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn end_session(&self, id_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query::<Db>("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn note_login_attempt(&self, keys: &[&str], at: DateTime<Utc>) -> StoreResult<Vec<i64>> {
        let _turn = self.write_turn().await;
        let mut ids = Vec::with_capacity(keys.len());
        // One statement a key, each committed by itself: a count that follows sees
        // every attempt noted before it, by any instance.
        for key in keys {
            ids.push(
                sqlx::query_scalar::<Db, i64>(
                    "INSERT INTO login_attempts (key, at) VALUES ($1, $2) RETURNING id",
                )
                .bind(*key)
                .bind(at)
                .fetch_one(&self.pool)
                .await?,
            );
        }
        Ok(ids)
    }

    async fn login_attempts(
        &self,
        key: &str,
        since: DateTime<Utc>,
        upto: i64,
    ) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
        // The newest of them but `upto` itself: when the attempt before this one was.
        Ok(sqlx::query_as::<Db, (i64, Option<DateTime<Utc>>)>(
            "SELECT COUNT(*), MAX(CASE WHEN id < $3 THEN at END) FROM login_attempts WHERE key = \
             $1 AND at > $2 AND id <= $3",
        )
        .bind(key)
        .bind(since)
        .bind(upto)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn forget_login_attempts(&self, ids: &[i64], key: Option<&str>) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut qb = sqlx::QueryBuilder::<Db>::new("DELETE FROM login_attempts WHERE id IN (");
        let mut list = qb.separated(", ");
        list.push_bind(0_i64);
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
        if let Some(key) = key {
            qb.push(" OR key = ").push_bind(key.to_string());
        }
        qb.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn forget_login_attempts_under(&self, prefix: &str) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        // substr, not LIKE: a name may hold `_` or `%`. The addresses the account was tried
        // from are let go too (an office's shared address is where its owner logs in from).
        Ok(sqlx::query::<Db>(
            "DELETE FROM login_attempts WHERE substr(key, 1, CAST($2 AS INTEGER)) = $1 \
             OR key IN (SELECT 'ip:' || substr(key, CAST($2 AS INTEGER) + 1) FROM login_attempts \
             WHERE substr(key, 1, CAST($2 AS INTEGER)) = $1)",
        )
        .bind(prefix)
        .bind(prefix.chars().count() as i64)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn purge_login_attempts(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        Ok(
            sqlx::query::<Db>("DELETE FROM login_attempts WHERE at <= $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        idle_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let n =
            sqlx::query::<Db>("DELETE FROM sessions WHERE expires_at < $1 OR last_seen_at < $2")
                .bind(now)
                .bind(idle_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

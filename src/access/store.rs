//! What access control needs of the store, declared here by it: API tokens, console
//! users, their sessions and the shared count of login attempts. `store::Store` has it as a
//! supertrait; the SQL is in `store/sql/access.rs`, written once for both dialects.

#[allow(unused_imports)]
use crate::store::*;
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    // --- API tokens
    async fn add_api_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ApiToken>;
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    async fn revoke_api_token(&self, name: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    // --- console users and sessions
    async fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ConsoleUser>;
    async fn list_users(&self) -> StoreResult<Vec<ConsoleUser>>;
    /// Remove a user and their sessions; false if there is none of that name.
    async fn remove_user(&self, name: &str) -> StoreResult<bool>;
    /// A new password ends every session of that user; false if there is none.
    async fn set_user_password(
        &self,
        name: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn user_login(&self, name: &str) -> StoreResult<Option<UserLogin>>;
    async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn session(&self, id_hash: &str) -> StoreResult<Option<ConsoleSession>>;
    async fn touch_session(&self, id_hash: &str, now: DateTime<Utc>) -> StoreResult<()>;
    async fn end_session(&self, id_hash: &str) -> StoreResult<()>;
    /// Note one login attempt under each of `keys` (an account, a client), committed at once
    /// so that concurrent attempts count each other; returns the rows' ids, in `keys` order.
    async fn note_login_attempt(&self, keys: &[&str], at: DateTime<Utc>) -> StoreResult<Vec<i64>>;
    /// Attempts under `key` after `since`, noted no later than attempt `upto` (ids grow as
    /// attempts are noted): how many, and when the one before `upto` was.
    async fn login_attempts(
        &self,
        key: &str,
        since: DateTime<Utc>,
        upto: i64,
    ) -> StoreResult<(i64, Option<DateTime<Utc>>)>;
    /// Forget the attempts `ids`, and every attempt under `key` if given.
    async fn forget_login_attempts(&self, ids: &[i64], key: Option<&str>) -> StoreResult<()>;
    /// Delete attempts made before `before`.
    async fn purge_login_attempts(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// Forget every attempt counted under a key that starts with `prefix` (an account's,
    /// from every address: `herald users unlock`, a new password), and the counts of the
    /// addresses those came from. How many rows went.
    async fn forget_login_attempts_under(&self, prefix: &str) -> StoreResult<u64>;
    /// Delete sessions past their absolute expiry or idle since `idle_before`.
    async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        idle_before: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

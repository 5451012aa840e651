//! Who may use the JSON API: bearer tokens, made by `herald tokens add` and looked up by the
//! API on each request. Only a token's hash is stored; the token is shown once. (In one
//! place so the CLI, the API and the coming console issue and check them alike.)

use crate::domain::{RandomToken, TokenHash};
use crate::store::{ApiRole, ApiToken, Store, StoreError, StoreResult};

/// Create a token; returns the only copy of it.
pub async fn issue_token(
    store: &dyn Store,
    name: &str,
    role: ApiRole,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > 100 || crate::domain::has_control_chars(name) {
        return Err(StoreError::Conflict(
            "a token name is 1 to 100 printable characters".into(),
        ));
    }
    let token = format!("hrld_{}", RandomToken::generate().as_str());
    store
        .add_api_token(name, role, &TokenHash::of(&token).0, now)
        .await?;
    Ok(token)
}

/// The live token a request presents, if it is one (revoked ones are not).
pub async fn token_by_secret(store: &dyn Store, token: &str) -> StoreResult<Option<ApiToken>> {
    store.api_token_by_hash(&TokenHash::of(token).0).await
}

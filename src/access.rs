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

// --- the console's people: passwords, sessions, login limits

use crate::store::{ConsoleSession, UserLogin};
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Argon2id with OWASP's first recommended setting (Password Storage Cheat Sheet): 19 MiB
/// of memory, 2 iterations, 1 lane. About 20 ms per check on this project's machine.
fn hasher() -> argon2::Argon2<'static> {
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"),
    )
}

/// The hash to store for a new password (PHC string). Refuses passwords shorter than 12
/// characters (NIST SP 800-63B asks for at least 8; a console that can mail a whole list
/// deserves more).
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.chars().count() < 12 {
        return Err("a password is at least 12 characters".into());
    }
    if password.len() > 1024 {
        return Err("a password is at most 1024 bytes".into());
    }
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt =
        SaltString::encode_b64(&RandomToken::generate_bytes::<16>()).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash of no one's password, checked when the name is unknown so that an unknown user
/// and a wrong password take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(RandomToken::generate().as_str()).expect("a random password hashes")
    })
}

/// Failed logins within a window, per key (an account, a client IP). In memory, so each
/// instance counts its own; a few instances multiply the limit by a few, not by much.
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Err(seconds until a try is allowed) while `key` is over the limit.
    fn check(&self, key: &str, now: DateTime<Utc>) -> Result<(), i64> {
        let mut f = self.failures.lock().expect("limiter lock");
        let Some(q) = f.get_mut(key) else {
            return Ok(());
        };
        while q.front().is_some_and(|t| *t <= now - self.window) {
            q.pop_front();
        }
        if q.len() >= self.max {
            let first = *q.front().expect("full");
            return Err(((first + self.window) - now).num_seconds().max(1));
        }
        Ok(())
    }

    fn fail(&self, key: &str, now: DateTime<Utc>) {
        self.failures
            .lock()
            .expect("limiter lock")
            .entry(key.to_string())
            .or_default()
            .push_back(now);
    }

    fn clear(&self, key: &str) {
        self.failures.lock().expect("limiter lock").remove(key);
    }

    /// Forget old failures (called by the purge job).
    pub fn prune(&self, now: DateTime<Utc>) {
        self.failures
            .lock()
            .expect("limiter lock")
            .retain(|_, q| q.back().is_some_and(|t| *t > now - self.window));
    }
}

/// Why a login did not succeed. Unknown users and wrong passwords are one case, said the
/// same way.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// The name or the password is wrong.
    Wrong,
    /// Too many failures for this account or from this client: wait this many seconds.
    Limited(i64),
}

/// A new session: the cookie's value (given to the browser, never stored) and its CSRF token.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
    pub user: UserLogin,
}

/// Check a login and open a session. `client` is the client's IP as the web layer sees it.
pub async fn log_in(
    store: &dyn Store,
    limiter: &LoginLimiter,
    name: &str,
    password: &str,
    client: &str,
    now: DateTime<Utc>,
    lifetime: Duration,
) -> Result<Result<NewSession, LoginRefused>, StoreError> {
    let (account, ip) = (format!("user:{name}"), format!("ip:{client}"));
    if let Err(wait) = limiter.check(&account, now).and(limiter.check(&ip, now)) {
        return Ok(Err(LoginRefused::Limited(wait)));
    }
    let user = store.user_login(name).await?;
    // The same work for an unknown name as for a known one.
    let (phc, user) = match user {
        Some(u) => (u.password_hash.clone(), Some(u)),
        None => (dummy_hash().to_string(), None),
    };
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        limiter.fail(&account, now);
        limiter.fail(&ip, now);
        return Ok(Err(LoginRefused::Wrong));
    };
    limiter.clear(&account);
    let cookie = RandomToken::generate().as_str().to_string();
    let csrf = RandomToken::generate().as_str().to_string();
    store
        .create_session(
            &TokenHash::of(&cookie).0,
            user.id,
            &csrf,
            now,
            now + lifetime,
        )
        .await?;
    Ok(Ok(NewSession { cookie, csrf, user }))
}

/// The live session a cookie names: not past its absolute expiry, not idle too long.
/// Seeing it keeps it alive (at most once a minute, so browsing is not a write per page).
pub async fn session(
    store: &dyn Store,
    cookie: &str,
    now: DateTime<Utc>,
    idle: Duration,
) -> StoreResult<Option<ConsoleSession>> {
    let id = TokenHash::of(cookie).0;
    let Some(s) = store.session(&id).await? else {
        return Ok(None);
    };
    if s.expires_at <= now || s.last_seen_at + idle <= now {
        store.end_session(&id).await?;
        return Ok(None);
    }
    if now - s.last_seen_at >= Duration::minutes(1) {
        store.touch_session(&id, now).await?;
    }
    Ok(Some(s))
}

pub async fn log_out(store: &dyn Store, cookie: &str) -> StoreResult<()> {
    store.end_session(&TokenHash::of(cookie).0).await
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub fn csrf_ok(session: &ConsoleSession, given: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_check() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterx", &h));
        assert!(!verify("anything", "not a hash"));
        assert!(hash_password("short").is_err());
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn failures_are_limited_per_key_and_forgotten() {
        let l = LoginLimiter::new(3, Duration::minutes(15));
        let t = Utc::now();
        for _ in 0..3 {
            assert!(l.check("user:a", t).is_ok());
            l.fail("user:a", t);
        }
        assert!(l.check("user:a", t).is_err());
        assert!(l.check("user:b", t).is_ok());
        assert!(l.check("user:a", t + Duration::minutes(16)).is_ok());
    }
}

//! Who may use herald besides its readers: JSON API bearer tokens (made by `herald tokens
//! add`; only a token's hash is stored, the token is shown once), console users with their
//! argon2 password hashes, their sessions (a random cookie, its hash stored) and CSRF
//! tokens, and the login limit every instance shares. In one place so the CLI, the API and
//! the console issue and check them alike; what it needs of the store is `AccessStore`.

mod store;
pub use store::AccessStore;

use crate::domain::{RandomToken, TokenHash};
use crate::store::{ApiToken, Role, StoreError, StoreResult};

/// Create a token; returns the only copy of it.
pub async fn issue_token(
    store: &dyn AccessStore,
    name: &str,
    role: Role,
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
pub async fn token_by_secret(
    store: &dyn AccessStore,
    token: &str,
) -> StoreResult<Option<ApiToken>> {
    store.api_token_by_hash(&TokenHash::of(token).0).await
}

// --- the console's people: passwords, sessions, login limits

use crate::store::{ConsoleSession, UserLogin};
use chrono::{DateTime, Duration, Utc};

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

/// Login attempts per key (an account from one address, an address), kept in the
/// database: every instance counts the same attempts. Of the attempts of the last
/// [`MEMORY`] windows, the first `max` go through; after that each must wait longer after
/// the one before — 1 s, 2 s, 4 s, … up to a whole window — so a mistyped password costs
/// its owner seconds while a guesser gets about a dozen tries an hour (with the defaults,
/// against twenty under the 15-minute lockout this replaced). Remembering only one window
/// would let the count fall back to zero under a patient guesser (three times as many
/// tries). An attempt is noted before its password is
/// checked, so guesses sent all at once count against each other instead of all passing a
/// check that none of them has failed yet; one refused is not kept (it checked nothing); a
/// successful login forgets the account's attempts and its own.
pub struct LoginLimiter {
    max: i64,
    window: Duration,
}

/// How many windows of attempts a limiter remembers.
const MEMORY: i32 = 4;

/// The wait after the attempt before, for the `n`th attempt in the window when `max` are
/// free: none up to `max`, then one second doubling with each, at most `window`.
fn login_delay(n: i64, max: i64, window: Duration) -> Duration {
    if n <= max {
        return Duration::zero();
    }
    let doublings = u32::try_from(n - max - 1).unwrap_or(u32::MAX).min(30);
    Duration::seconds(1_i64 << doublings).min(window)
}

/// An attempt allowed to go on: the row noted for it under the address (a success forgets
/// it; the rows of the account from this address all go then), and how many attempts at
/// this account from this address the window holds, this one included.
pub struct Attempt {
    client: i64,
    count: i64,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: i64::from(max),
            window,
        }
    }

    /// Note an attempt under `account` and `client`; Err(seconds until a try is allowed)
    /// while either had its `max` attempts in the window and the one before this came
    /// less than [`login_delay`] ago (this one is then not kept).
    async fn begin(
        &self,
        store: &dyn AccessStore,
        account: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Attempt, (i64, i64)>, StoreError> {
        let ids = store.note_login_attempt(&[account, client], now).await?;
        let since = now - self.window * MEMORY;
        let mut wait = None;
        let mut count = 0;
        for (key, id) in [account, client].into_iter().zip(ids.iter().copied()) {
            // Only the attempts noted before this one (and this one) count against it: a
            // burst noted all at once otherwise saw itself over the limit and refused every
            // guess, the first five included (CI saw 20 of 20 refused on PostgreSQL).
            let (n, before) = store.login_attempts(key, since, id).await?;
            if key == account {
                count = n;
            }
            // `n` counts this attempt too.
            let due = before.unwrap_or(now) + login_delay(n, self.max, self.window);
            if due > now {
                // Whole seconds, rounded up: a client told 0 would come back at once.
                let w = (due - now + Duration::milliseconds(999))
                    .num_seconds()
                    .max(1);
                wait = Some(wait.map_or(w, |v: i64| v.max(w)));
            }
        }
        if let Some(w) = wait {
            store.forget_login_attempts(&ids, None).await?;
            return Ok(Err((w, count)));
        }
        Ok(Ok(Attempt {
            client: ids[1],
            count,
        }))
    }

    /// Forget attempts older than the limiter remembers (called by the purge job).
    pub async fn prune(
        &self,
        store: &dyn AccessStore,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        store.purge_login_attempts(now - self.window * MEMORY).await
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

/// The key an account's attempts from one address are counted under.
fn account_key(name: &str, client: &str) -> String {
    format!("{}{client}", account_prefix(name))
}

/// What every key of an account's attempts starts with, whatever the address.
fn account_prefix(name: &str) -> String {
    format!("user:{name}|ip:")
}

/// Forget the failed logins of account `name` from every address (`herald users unlock`, and
/// a new password): its owner may log in again at once. How many were forgotten.
pub async fn unlock(store: &dyn AccessStore, name: &str) -> StoreResult<u64> {
    store
        .forget_login_attempts_under(&account_prefix(name))
        .await
}

/// Check a login and open a session. `client` is the client's IP as the web layer sees it.
pub async fn log_in(
    store: &dyn AccessStore,
    limiter: &LoginLimiter,
    name: &str,
    password: &str,
    client: &str,
    now: DateTime<Utc>,
    lifetime: Duration,
) -> Result<Result<NewSession, LoginRefused>, StoreError> {
    // Counted per account *from this address*, and per address: guesses from one place
    // are throttled there, and the right password from another address still works (a
    // limit per account alone let anyone lock its owner out from anywhere).
    let (account, ip) = (account_key(name, client), format!("ip:{client}"));
    let attempt = match limiter.begin(store, &account, &ip, now).await? {
        Ok(a) => a,
        Err((wait, count)) => {
            tracing::warn!(account = %name, address = %client, attempts = count, wait_secs = wait, "console login throttled");
            return Ok(Err(LoginRefused::Limited(wait)));
        }
    };
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
        // The attempt's rows stay: they are the failures that count.
        tracing::warn!(account = %name, address = %client, failures = attempt.count, "console login failed");
        return Ok(Err(LoginRefused::Wrong));
    };
    store
        .forget_login_attempts(&[attempt.client], Some(&account))
        .await?;
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
    store: &dyn AccessStore,
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
    // Kept alive at most once a minute (browsing is not a write per page), and at least
    // twice per `session_idle`, so a short idle limit never ends a session in use.
    if now - s.last_seen_at >= Duration::minutes(1).min(idle / 2) {
        store.touch_session(&id, now).await?;
    }
    Ok(Some(s))
}

pub async fn log_out(store: &dyn AccessStore, cookie: &str) -> StoreResult<()> {
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

    /// Five free, then 1 s, 2 s, 4 s … doubling, never more than the window.
    #[test]
    fn login_delays_grow_to_the_window() {
        let window = Duration::minutes(15);
        let waits: Vec<i64> = (1..=18)
            .map(|n| login_delay(n, 5, window).num_seconds())
            .collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900
            ]
        );
        assert_eq!(login_delay(i64::MAX, 5, window), window);
    }

    /// What the README promises: a guesser who tries as soon as each wait ends gets about a
    /// dozen tries an hour once past the first burst (the rule of `LoginLimiter::begin`:
    /// the attempts of the last four windows count).
    #[test]
    fn a_patient_guesser_gets_about_a_dozen_tries_an_hour() {
        let (max, window) = (5, Duration::minutes(15));
        let t0 = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let mut tried: Vec<DateTime<Utc>> = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::hours(24) {
            let recent = tried.iter().filter(|t| **t > now - window * MEMORY).count() as i64;
            let due = tried
                .last()
                .map_or(now, |last| *last + login_delay(recent + 1, max, window));
            now = now.max(due);
            tried.push(now);
        }
        let last_hours = tried
            .iter()
            .filter(|t| **t >= t0 + Duration::hours(4))
            .count();
        let per_hour = last_hours as f64 / 20.0;
        assert!(
            (10.0..=14.0).contains(&per_hour),
            "{per_hour} tries an hour"
        );
        // Against twenty under the old rule (five per 15 minutes).
        assert!(per_hour < 20.0);
    }
}

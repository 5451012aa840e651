//! The reader side: signup (double opt-in), confirmation, preferences, unsubscribe, and the
//! operator's subscriber tools (import, list, show, export, erase, purge). Handlers in
//! `web/` and the CLI call into [`Subscriptions`]; it calls the store.

mod admin;
mod mails;
mod store;
pub use store::{SubscriberAdminStore, SubscriberStore, SubscriptionStore};

pub use admin::{ImportError, ImportSummary, SubscriberExport};
pub use mails::TransactionalComposer;

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::new_message_id;
use crate::domain::{
    EmailAddress, EmailError, ManageToken, RandomToken, SecretKey, SignupAction, TokenHash,
    TokenPurpose,
};
use crate::store::{
    ConfirmOutcome, NewSignup, Section, SignupOutcome, Store, StoreError, Subscriber,
};
use std::sync::Arc;

/// Longest value we accept in any signup field; longer is an attack or a mistake.
pub const MAX_FIELD_LEN: usize = 1024;

/// A signup as submitted, before parsing.
#[derive(Debug, Clone, Default)]
pub struct SignupForm {
    pub email: String,
    pub sections: Vec<String>,
    /// The hidden field a human never fills.
    pub honeypot: String,
    /// Which form (e.g. `article-footer`): kept with the consent record.
    pub source: String,
}

/// Problems with a signup the reader can fix, shown on the form.
/// Sections one signup may name.
pub const MAX_SECTIONS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("{0}")]
    Email(#[from] EmailError),
    #[error("Please choose at least one section.")]
    NoSections,
    #[error("Unknown section {0:?}.")]
    UnknownSection(String),
    #[error("A field is too long.")]
    TooLong,
    #[error("{0} sections were chosen; a signup takes at most 200.")]
    TooManySections(usize),
    #[error("This address is not subscribed.")]
    NotActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignupError {
    pub fn is_user_error(&self) -> bool {
        !matches!(self, SignupError::Store(_))
    }
}

/// What a confirmation link leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmResult {
    Confirmed {
        email: String,
        sections: Vec<String>,
    },
    AlreadyUsed,
    Expired,
    Unknown,
    /// The address was suppressed since the link was mailed: only an operator lifts that.
    Withdrawn,
}

impl From<ConfirmOutcome> for ConfirmResult {
    /// A usable token maps to `Confirmed` without sections; `confirm()` fills them in.
    fn from(o: ConfirmOutcome) -> Self {
        match o {
            ConfirmOutcome::Confirmed { email, .. } => ConfirmResult::Confirmed {
                email,
                sections: vec![],
            },
            ConfirmOutcome::AlreadyUsed => ConfirmResult::AlreadyUsed,
            ConfirmOutcome::Expired => ConfirmResult::Expired,
            ConfirmOutcome::Unknown => ConfirmResult::Unknown,
            ConfirmOutcome::Withdrawn => ConfirmResult::Withdrawn,
        }
    }
}

/// Links a subscriber manages their subscription with.
#[derive(Debug, Clone)]
pub struct ManageLinks {
    pub unsubscribe_url: String,
    pub preferences_url: String,
}

pub struct Subscriptions {
    /// The store, as much of it as subscriptions use (see `store.rs`).
    store: Arc<dyn SubscriptionStore>,
    /// "sqlite" or "postgres": how signups are written (see `signup`).
    backend: &'static str,
    key: SecretKey,
    clock: Clock,
    public_url: String,
    mail_domain: String,
    cooldown: chrono::Duration,
    confirm_ttl: chrono::Duration,
    purge_after: chrono::Duration,
    /// Signups waiting for the group-commit writer (started on first use).
    queue: std::sync::OnceLock<SignupQueue>,
    /// The sections, read again when older than [`SECTIONS_TTL`] or when a slug is not in
    /// them: every signup needs them, and sections change a few times a year.
    sections: std::sync::Mutex<Option<(std::time::Instant, Vec<crate::store::Section>)>>,
    /// Signups being written one by one (PostgreSQL), to batch past [`DIRECT_SIGNUPS`].
    direct_in_flight: std::sync::atomic::AtomicUsize,
}

/// PostgreSQL: signups written each in its own transaction at once, at most; more wait
/// for a batch writer.
const DIRECT_SIGNUPS: usize = 8;

/// How long the signup form's copy of the sections is trusted.
const SECTIONS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

type SignupReply = tokio::sync::oneshot::Sender<Result<SignupOutcome, StoreError>>;
type SignupQueue = tokio::sync::mpsc::Sender<(NewSignup, SignupReply)>;

/// Signups one group commit takes at most.
const SIGNUP_BATCH: usize = 64;

/// The group-commit writer: takes every signup waiting (up to [`SIGNUP_BATCH`]) and writes
/// them in one transaction, so under load the signups share one commit and one turn at the
/// database instead of queueing for a transaction each. If the batch fails, each signup is
/// tried alone, so one bad request fails only itself.
fn spawn_signup_writer(
    store: Arc<dyn SubscriptionStore>,
    writers: usize,
    most: usize,
) -> SignupQueue {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(NewSignup, SignupReply)>(1024);
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(writers));
        while let Some(first) = rx.recv().await {
            // Wait for a free writer first: what arrives meanwhile joins this batch.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < most {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            // Each batch in a task of its own: a panic loses only its replies (whose
            // callers then write alone), not the writer.
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = tokio::spawn(write_batch(store, batch)).await {
                    tracing::error!(error = %e, "signup group commit panicked; its signups are written one by one");
                }
                drop(permit);
            });
        }
    });
    tx
}

async fn write_batch(store: Arc<dyn SubscriptionStore>, batch: Vec<(NewSignup, SignupReply)>) {
    let (reqs, replies): (Vec<NewSignup>, Vec<SignupReply>) = batch.into_iter().unzip();
    match store.signup_batch(&reqs).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        // Alone, a signup that lost a race for a new address (another writer inserted it
        // first: a unique violation) is tried again and finds that row; a batch of one
        // too, which used to answer 500 (PostgreSQL, several signups of one address at once).
        Err(e) => {
            if reqs.len() > 1 {
                tracing::warn!(error = %e, signups = reqs.len(), "group commit failed; writing the signups one by one");
            }
            for (req, reply) in reqs.iter().zip(replies) {
                let _ = reply.send(store.signup(req).await);
            }
        }
    }
}

impl Subscriptions {
    pub fn new(config: &Config, store: Arc<dyn Store>, key: SecretKey, clock: Clock) -> Self {
        Self {
            backend: store.backend(),
            store,
            key,
            clock,
            public_url: config.http.public_url.clone(),
            mail_domain: config.mail.domain.clone(),
            cooldown: config.subscriptions.resend_cooldown.as_chrono(),
            confirm_ttl: config.subscriptions.confirm_ttl.as_chrono(),
            purge_after: config.subscriptions.purge_pending_after.as_chrono(),
            queue: std::sync::OnceLock::new(),
            sections: std::sync::Mutex::new(None),
            direct_in_flight: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn confirm_ttl(&self) -> chrono::Duration {
        self.confirm_ttl
    }

    pub fn links(&self, subscriber_id: i64, email: &str) -> ManageLinks {
        ManageLinks {
            unsubscribe_url: format!(
                "{}/unsubscribe/{}",
                self.public_url,
                ManageToken::issue(&self.key, TokenPurpose::Unsubscribe, subscriber_id, email)
            ),
            preferences_url: format!(
                "{}/preferences/{}",
                self.public_url,
                ManageToken::issue(&self.key, TokenPurpose::Preferences, subscriber_id, email)
            ),
        }
    }

    /// Resolve chosen slugs to section ids; every slug must exist.
    async fn resolve_sections(&self, slugs: &[String]) -> Result<Vec<i64>, SignupError> {
        let cached = self
            .sections
            .lock()
            .expect("sections cache")
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= SECTIONS_TTL)
            .map(|(_, all)| crate::articles::pick_section_ids(all, slugs));
        // A copy that knows every slug answers; one that is stale or misses a slug (a
        // section added a moment ago) is read again first.
        if let Some(Ok(ids)) = cached {
            return Ok(ids);
        }
        let all = self.store.list_sections().await?;
        let picked = crate::articles::pick_section_ids(&all, slugs);
        *self.sections.lock().expect("sections cache") = Some((std::time::Instant::now(), all));
        picked.map_err(SignupError::UnknownSection)
    }

    /// Handle a signup. Whatever state the address is in, the caller shows the same answer;
    /// only what is mailed differs (see [`SignupAction`]).
    pub async fn signup(&self, form: &SignupForm, ip: Option<String>) -> Result<(), SignupError> {
        if form.sections.len() > MAX_SECTIONS {
            return Err(SignupError::TooManySections(form.sections.len()));
        }
        if form.email.len() > MAX_FIELD_LEN
            || form.source.len() > MAX_FIELD_LEN
            || form.sections.iter().any(|s| s.len() > MAX_FIELD_LEN)
        {
            return Err(SignupError::TooLong);
        }
        let email = EmailAddress::parse(&form.email)?;
        let section_ids = self.resolve_sections(&form.sections).await?;
        if section_ids.is_empty() {
            return Err(SignupError::NoSections);
        }
        if !form.honeypot.is_empty() {
            // A bot: answer as if it worked, write and send nothing.
            tracing::info!("signup honeypot filled; ignored");
            metrics::counter!("herald_signups_total", "outcome" => "honeypot").increment(1);
            return Ok(());
        }
        let now = self.clock.now();
        let token = RandomToken::generate();
        let message_id = new_message_id(&self.mail_domain);
        let source: String = form
            .source
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
            .take(100)
            .collect();
        let req = NewSignup {
            email: email.as_str().to_string(),
            section_ids,
            ip,
            form: if source.is_empty() {
                "web".into()
            } else {
                format!("web:{source}")
            },
            now,
            cooldown: self.cooldown,
            sealed_token: self.key.seal(&message_id, &token),
            message_id,
            token_hash: token.hash().0,
            token_expires_at: now + self.confirm_ttl,
        };
        let outcome = self.write_signup(req).await?;
        let label = match outcome.action {
            SignupAction::SendConfirmation => "confirmation_sent",
            SignupAction::PendingWithinCooldown => "cooldown",
            SignupAction::SendAlreadySubscribed => "already_subscribed",
            SignupAction::Nothing => "already_subscribed_cooldown",
            SignupAction::Suppressed => "suppressed",
        };
        tracing::info!(
            subscriber = outcome.subscriber_id,
            outcome = label,
            "signup"
        );
        metrics::counter!("herald_signups_total", "outcome" => label).increment(1);
        Ok(())
    }

    /// Write one signup: on SQLite through the group-commit writer (should the writer be
    /// gone, or its batch panic, directly).
    async fn write_signup(&self, req: NewSignup) -> Result<SignupOutcome, StoreError> {
        // SQLite has one writer: the signups waiting share one transaction (one commit, one
        // turn at the database). PostgreSQL writes a signup in its own transaction while
        // few are in flight (lowest latency: p99 13-16 ms at 1,000/s against 26-27 ms
        // batched), and past that hands them to batch writers, four at once, so a spike
        // shares commits (2,316 against 1,787 signups/s at saturation; bench/signup.sh).
        if self.backend != "sqlite" {
            struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
            impl Drop for InFlight<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let n = self
                .direct_in_flight
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let guard = InFlight(&self.direct_in_flight);
            if n < DIRECT_SIGNUPS {
                return self.store.signup(&req).await;
            }
            drop(guard);
        }
        let (writers, most) = if self.backend == "sqlite" {
            (1, SIGNUP_BATCH)
        } else {
            (4, 16)
        };
        let queue = self
            .queue
            .get_or_init(|| spawn_signup_writer(self.store.clone(), writers, most));
        let (reply, answer) = tokio::sync::oneshot::channel();
        if queue.send((req.clone(), reply)).await.is_ok()
            && let Ok(result) = answer.await
        {
            return result;
        }
        // The writer is gone or its batch panicked (rolled back): write this one alone. Had
        // it committed after all, this second write finds the address within its cooldown
        // and mails nothing more.
        self.store.signup(&req).await
    }

    /// Look at a confirmation token without using it (the GET page changes nothing).
    pub async fn peek_confirm(&self, token: &str) -> Result<ConfirmResult, StoreError> {
        if !plausible_token(token) {
            return Ok(ConfirmResult::Unknown);
        }
        let outcome = self
            .store
            .peek_confirm_token(&TokenHash::of(token).0, self.clock.now())
            .await?;
        Ok(outcome.into())
    }

    /// Use a confirmation token: activate the subscriber, record consent, queue the welcome mail.
    pub async fn confirm(
        &self,
        token: &str,
        ip: Option<String>,
    ) -> Result<ConfirmResult, StoreError> {
        if !plausible_token(token) {
            return Ok(ConfirmResult::Unknown);
        }
        let welcome_id = new_message_id(&self.mail_domain);
        let outcome = self
            .store
            .confirm(
                &TokenHash::of(token).0,
                self.clock.now(),
                ip.as_deref(),
                &welcome_id,
            )
            .await?;
        let ConfirmOutcome::Confirmed {
            subscriber_id,
            email,
        } = outcome
        else {
            return Ok(outcome.into());
        };
        metrics::counter!("herald_confirmations_total").increment(1);
        tracing::info!(subscriber = subscriber_id, "subscription confirmed");
        let sections = self
            .store
            .subscriber_sections(subscriber_id)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        Ok(ConfirmResult::Confirmed { email, sections })
    }

    /// The subscriber a long-lived link belongs to, if the link is genuine.
    pub async fn resolve_link(
        &self,
        purpose: TokenPurpose,
        token: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let Some(id) = ManageToken::claimed_id(token) else {
            return Ok(None);
        };
        let Some(sub) = self.store.subscriber_by_id(id).await? else {
            return Ok(None);
        };
        Ok(ManageToken::verify(&self.key, purpose, token, sub.id, &sub.email).then_some(sub))
    }

    pub async fn sections(&self) -> Result<Vec<Section>, StoreError> {
        self.store.list_sections().await
    }

    pub async fn subscriber_sections(&self, id: i64) -> Result<Vec<Section>, StoreError> {
        self.store.subscriber_sections(id).await
    }

    /// Save a subscriber's choice of sections; none left means unsubscribed.
    pub async fn save_preferences(
        &self,
        sub: &Subscriber,
        slugs: &[String],
    ) -> Result<bool, SignupError> {
        let ids = self.resolve_sections(slugs).await?;
        // The store checks the status inside its transaction.
        match self
            .store
            .set_preferences(sub.id, &ids, self.clock.now())
            .await
        {
            Err(StoreError::Conflict(_)) => return Err(SignupError::NotActive),
            other => other?,
        }
        if ids.is_empty() {
            metrics::counter!("herald_unsubscribes_total", "via" => "preferences").increment(1);
        }
        Ok(!ids.is_empty())
    }

    /// Unsubscribe; idempotent.
    pub async fn unsubscribe(&self, sub: &Subscriber, via: &'static str) -> Result<(), StoreError> {
        if self.store.unsubscribe(sub.id, self.clock.now()).await? {
            metrics::counter!("herald_unsubscribes_total", "via" => via).increment(1);
            tracing::info!(subscriber = sub.id, via, "unsubscribed");
        }
        Ok(())
    }

    /// Delete pending subscribers whose link expired more than `purge_pending_after` ago.
    pub async fn purge_expired_pending(&self) -> Result<u64, StoreError> {
        let n = self
            .store
            .purge_pending(self.clock.now() - self.purge_after)
            .await?;
        if n > 0 {
            tracing::info!(purged = n, "purged unconfirmed signups");
        }
        Ok(n)
    }
}

/// Tokens are 43 base64url characters; anything else is not worth a database query.
fn plausible_token(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

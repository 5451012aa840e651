//! The message builder: a ledger row becomes the exact bytes a server gets. The
//! [`Composer`] (implemented where the templates live) makes the mail; this adds the list
//! headers herald mails carry, the per-send VERP sender and unsubscribe address, and the
//! DKIM signature.

use super::OutgoingMail;
use super::mail::{BuildError, MailHeaders, build_message};
use crate::store::SendJob;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use std::sync::Arc;

// One lives per message being sent, on the stack: boxing the mail would cost an
// allocation per message to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Composed {
    Mail {
        mail: OutgoingMail,
        unsubscribe_url: Option<String>,
    },
    /// The recipient left, was erased or is suppressed since the row was queued.
    Skip(String),
}

/// Why a row's message could not be made. Each is retried with backoff (the database
/// may come back, a template fixed), then the send fails with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("the stored address cannot be used: {0}")]
    Address(String),
    #[error("the confirmation link cannot be made: {0}")]
    Token(&'static str),
    #[error("{0} is gone")]
    Missing(String),
    #[error("a template failed: {0}")]
    Render(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Turns a ledger row into a message. Implemented where the templates live, so delivery
/// knows nothing of subscriptions or digests.
#[async_trait::async_trait]
pub trait Composer: Send + Sync {
    async fn compose(&self, job: &SendJob) -> Result<Composed, ComposeError>;
}

/// A message ready to go: its envelope and its bytes, signed.
pub(super) type Built = (lettre::address::Envelope, Vec<u8>);

/// Why a row has no message.
#[derive(Debug)]
pub(super) enum NotBuilt {
    /// The composer failed (retried with backoff: the database may come back, a template
    /// be fixed).
    Compose(ComposeError),
    /// The reader left, was erased or is suppressed since the row was queued.
    Skip(String),
    /// The mail cannot be made into a message (an address lettre refuses): final.
    Build(BuildError),
}

/// Everything the builder needs besides the row.
pub(super) struct MessageBuilder {
    pub(super) composer: Arc<dyn Composer>,
    pub(super) from: Mailbox,
    /// `List-Id`: the site's name and `{mail.list_id}.{mail.domain}`.
    pub(super) list_name: String,
    pub(super) list_label: String,
    pub(super) unsubscribe_mailto: Option<String>,
    /// `mail.return_path` and the key its per-send references are made with.
    pub(super) return_path: Option<(lettre::Address, crate::domain::SecretKey)>,
    pub(super) dkim: Option<Arc<super::DkimSigner>>,
}

impl MessageBuilder {
    /// Compose, build and sign the message for a row (the envelope and the exact bytes),
    /// or say why it will not be sent.
    pub(super) async fn build(&self, job: &SendJob, now: DateTime<Utc>) -> Result<Built, NotBuilt> {
        let composed = match self.composer.compose(job).await {
            Ok(c) => c,
            Err(e) => return Err(NotBuilt::Compose(e)),
        };
        let (mail, unsubscribe_url) = match composed {
            Composed::Mail {
                mail,
                unsubscribe_url,
            } => (mail, unsubscribe_url),
            Composed::Skip(reason) => return Err(NotBuilt::Skip(reason)),
        };
        let headers = MailHeaders {
            from: self.from.clone(),
            message_id: job.message_id.clone(),
            list_name: self.list_name.clone(),
            list_label: self.list_label.clone(),
            unsubscribe_url,
            // With a return path each recipient has an unsubscribe address of their own.
            unsubscribe_mailto: match &self.return_path {
                Some((rp, key)) => Some(format!(
                    "unsubscribe+{}@{}",
                    crate::domain::SendRef::issue(key, crate::domain::SendRef::UNSUBSCRIBE, job.id),
                    rp.domain()
                )),
                None => self.unsubscribe_mailto.clone(),
            },
        };
        let message = match build_message(&mail, &headers) {
            Ok(m) => m,
            Err(e) => return Err(NotBuilt::Build(e)),
        };
        let bytes = message.formatted();
        let bytes = match &self.dkim {
            Some(dkim) => dkim.sign(&bytes, now.timestamp()),
            None => bytes,
        };
        let envelope = match &self.return_path {
            // VERP: the envelope sender names this send, so what comes back says which.
            Some((rp, key)) => {
                let verp = format!(
                    "{}+{}@{}",
                    rp.user(),
                    crate::domain::SendRef::issue(key, crate::domain::SendRef::BOUNCE, job.id),
                    rp.domain()
                );
                match verp.parse::<lettre::Address>().ok().and_then(|from| {
                    lettre::address::Envelope::new(Some(from), message.envelope().to().to_vec())
                        .ok()
                }) {
                    Some(e) => e,
                    None => message.envelope().clone(),
                }
            }
            None => message.envelope().clone(),
        };
        Ok((envelope, bytes))
    }
}

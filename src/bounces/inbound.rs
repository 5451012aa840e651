//! Returned mail arriving at herald: which of its addresses it was sent to, what it is
//! (see `classify`), and what herald does about it (`Store::record_returned`). The SMTP
//! listener (`listener.rs`) and the mailbox reader (`imap.rs`) feed it.

use super::{Returned, classify};
use crate::clock::Clock;
use crate::domain::{SecretKey, SendRef};
use crate::store::{NewReturned, ReturnedKind, Store, StoreError};
use std::sync::Arc;

/// The raw message kept with each record, at most this much of it.
const KEEP_RAW: usize = 256 * 1024;

pub struct Inbound {
    store: Arc<dyn Store>,
    key: SecretKey,
    clock: Clock,
    /// `mail.return_path`: bounces come to `{local}+<ref>@{domain}`.
    local: String,
    domain: String,
    /// The domain of herald's Message-IDs (a plain-text bounce quotes one).
    message_id_domain: String,
    soft_limit: u32,
    soft_window: chrono::Duration,
}

/// Which of herald's addresses a recipient is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    /// `{local}+<ref>`: the envelope sender of one send (VERP); the ref if it verified.
    Bounce(Option<i64>),
    /// `unsubscribe+<ref>`: one reader's List-Unsubscribe mailto.
    Unsubscribe(Option<i64>),
    /// The return path itself, without a ref.
    Plain,
}

impl Inbound {
    pub fn new(
        store: Arc<dyn Store>,
        key: SecretKey,
        clock: Clock,
        return_path: &lettre::Address,
        message_id_domain: &str,
        config: &crate::config::BouncesConfig,
    ) -> Self {
        Self {
            store,
            key,
            clock,
            local: return_path.user().to_ascii_lowercase(),
            domain: return_path.domain().to_ascii_lowercase(),
            message_id_domain: message_id_domain.to_string(),
            soft_limit: config.soft_limit,
            soft_window: config.soft_window.as_chrono(),
        }
    }

    fn address(&self, rcpt: &str) -> Option<Address> {
        let rcpt = rcpt.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = rcpt.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let local = local.to_ascii_lowercase();
        if local == self.local {
            return Some(Address::Plain);
        }
        let (base, reference) = local.split_once('+')?;
        if base == self.local {
            Some(Address::Bounce(SendRef::verify(
                &self.key,
                SendRef::BOUNCE,
                reference,
            )))
        } else if base == "unsubscribe" {
            Some(Address::Unsubscribe(SendRef::verify(
                &self.key,
                SendRef::UNSUBSCRIBE,
                reference,
            )))
        } else {
            None
        }
    }

    /// Whether mail for `rcpt` is ours to take (the listener refuses the rest at RCPT).
    pub fn accepts(&self, rcpt: &str) -> bool {
        self.address(rcpt).is_some()
    }

    /// Act on one message for these recipients; returns what it was and what was done,
    /// for each recipient that is one of herald's addresses. `source` (`smtp`, `imap`)
    /// labels the `herald_returned_total` counter.
    pub async fn receive(
        &self,
        rcpts: &[String],
        raw: &[u8],
        source: &'static str,
    ) -> Result<Vec<(ReturnedKind, String)>, StoreError> {
        let mut done = Vec::new();
        let kept = String::from_utf8_lossy(&raw[..raw.len().min(KEEP_RAW)]).into_owned();
        for rcpt in rcpts {
            let Some(address) = self.address(rcpt) else {
                continue;
            };
            let mut record = NewReturned {
                kind: ReturnedKind::Unrecognised,
                send_id: None,
                reader_email: None,
                recipient: None,
                status: None,
                diagnostic: None,
                raw: kept.clone(),
                now: self.clock.now(),
                soft_limit: self.soft_limit,
                soft_since: self.clock.now() - self.soft_window,
            };
            record.send_id = match address {
                Address::Bounce(id) | Address::Unsubscribe(id) => id,
                Address::Plain => None,
            };
            if matches!(address, Address::Unsubscribe(_)) {
                // Sent on purpose by the reader's own mail client (RFC 2369).
                record.kind = ReturnedKind::Unsubscribe;
            } else {
                match classify(raw, &self.message_id_domain) {
                    Returned::Bounce(b) => {
                        record.kind = if b.hard {
                            ReturnedKind::Hard
                        } else {
                            ReturnedKind::Soft
                        };
                        record.recipient = b.recipient;
                        record.status = b.status;
                        record.diagnostic = b.diagnostic;
                    }
                    Returned::Complaint(c) => {
                        record.kind = ReturnedKind::Complaint;
                        record.recipient = c.recipient;
                        record.diagnostic = Some(format!("feedback type: {}", c.feedback_type));
                    }
                    Returned::AutoReply => record.kind = ReturnedKind::AutoReply,
                    Returned::Other => {}
                }
            }
            let action = self.store.record_returned(&record).await?;
            metrics::counter!(
                "herald_returned_total",
                "kind" => record.kind.as_str(),
                "source" => source
            )
            .increment(1);
            tracing::info!(kind = record.kind.as_str(), send = ?record.send_id, %action, "returned mail");
            done.push((record.kind, action));
        }
        Ok(done)
    }
}

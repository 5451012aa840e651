//! Returned mail arriving at herald: which of its addresses it was sent to, what it is
//! (see `classify`), and what herald does about it (`Store::record_returned`). The SMTP
//! listener (`listener.rs`) and the mailbox reader (`imap.rs`) feed it.

use super::classify::Quoted;
use super::{Returned, classify};
use crate::clock::Clock;
use crate::delivery::DomainWatch;
use crate::domain::{SecretKey, SendRef, Verdict};
use crate::store::{NewReturned, RawReturned, ReturnedKind, StoreError};
use std::sync::Arc;

/// The raw message kept with each record, at most this much of it.
const KEEP_RAW: usize = 256 * 1024;

pub struct Inbound {
    store: Arc<dyn super::ReturnedStore>,
    key: SecretKey,
    clock: Clock,
    /// `mail.return_path`: bounces come to `{local}+<ref>@{domain}`.
    local: String,
    domain: String,
    /// The domain of herald's Message-IDs (a plain-text bounce quotes one).
    message_id_domain: String,
    soft_limit: u32,
    soft_window: chrono::Duration,
    /// Policy refusals reported in DSNs count toward pausing the reader's domain.
    domains: Option<Arc<DomainWatch>>,
}

/// Which of herald's addresses a recipient is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
        store: Arc<dyn super::ReturnedStore>,
        key: SecretKey,
        clock: Clock,
        return_path: &lettre::Address,
        message_id_domain: &str,
        config: &crate::config::ReturnedConfig,
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
            domains: None,
        }
    }

    /// Count the policy refusals of DSNs toward pausing their domain.
    pub fn with_domain_watch(mut self, watch: Arc<DomainWatch>) -> Self {
        self.domains = Some(watch);
        self
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

    /// Whether mail for `rcpt` is ours to take (the listener refuses the rest at RCPT): the
    /// plain return path, or a reference whose MAC verifies. A forged or mangled reference
    /// is refused before anything is read or stored.
    pub fn accepts(&self, rcpt: &str) -> bool {
        matches!(
            self.address(rcpt),
            Some(Address::Plain | Address::Bounce(Some(_)) | Address::Unsubscribe(Some(_)))
        )
    }

    /// The send a report is about when it came to the plain return path (complaint loops
    /// such as Yahoo's and Microsoft's JMRP mail one fixed address): the VERP envelope
    /// sender it quotes (MAC checked), then the quoted Message-ID in the ledger, then the
    /// reader's List-Unsubscribe mailto (MAC checked).
    async fn quoted_send(
        &self,
        quoted: &Quoted,
        message_id: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        for path in &quoted.return_paths {
            if let Some(Address::Bounce(Some(id))) = self.address(path) {
                return Ok(Some(id));
            }
        }
        if let Some(mid) = message_id
            && let Some(id) = self.store.send_by_message_id(mid).await?
        {
            return Ok(Some(id));
        }
        for a in &quoted.unsubscribe {
            if let Some(Address::Unsubscribe(Some(id))) = self.address(a) {
                return Ok(Some(id));
            }
        }
        Ok(None)
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
        let mut kept = RawReturned::Text(
            String::from_utf8_lossy(&raw[..raw.len().min(KEEP_RAW)]).into_owned(),
        );
        // Read once, whatever the number of recipients.
        let mut read: Option<Returned> = None;
        let mut seen = std::collections::HashSet::new();
        for rcpt in rcpts {
            let Some(address) = self.address(rcpt) else {
                continue;
            };
            // The same address twice in one envelope is one report.
            if !seen.insert(address.clone()) {
                continue;
            }
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
                dedup: None,
            };
            record.send_id = match address {
                Address::Bounce(id) | Address::Unsubscribe(id) => id,
                Address::Plain => None,
            };
            let mut policy = false;
            if matches!(address, Address::Unsubscribe(_)) {
                // Sent on purpose by the reader's own mail client (RFC 2369).
                record.kind = ReturnedKind::Unsubscribe;
            } else {
                let returned = read.get_or_insert_with(|| classify(raw, &self.message_id_domain));
                match returned {
                    Returned::Bounce(b) => {
                        record.kind = b
                            .verdict
                            .map_or(ReturnedKind::Unrecognised, ReturnedKind::of);
                        policy = b.verdict.is_some_and(Verdict::is_policy);
                        record.recipient = b.recipient.clone();
                        record.status = b.status.clone();
                        record.diagnostic = b.diagnostic.clone();
                        if record.send_id.is_none() {
                            record.send_id =
                                self.quoted_send(&b.quoted, b.message_id.as_deref()).await?;
                        }
                    }
                    Returned::Complaint(c) => {
                        record.kind = ReturnedKind::Complaint;
                        record.recipient = c.recipient.clone();
                        record.diagnostic = Some(format!("feedback type: {}", c.feedback_type));
                        if record.send_id.is_none() {
                            record.send_id =
                                self.quoted_send(&c.quoted, c.message_id.as_deref()).await?;
                        }
                    }
                    Returned::AutoReply => record.kind = ReturnedKind::AutoReply,
                    Returned::Other => {}
                }
            }
            let recorded = self.store.record_returned(&record).await?;
            if let Some(id) = recorded.raw_kept {
                kept = RawReturned::Kept(id);
            }
            if policy && let (Some(watch), Some(email)) = (&self.domains, recorded.email.as_deref())
            {
                watch
                    .record(
                        email,
                        true,
                        record.diagnostic.as_deref().unwrap_or("a policy refusal"),
                    )
                    .await;
            }
            metrics::counter!(
                "herald_returned_total",
                "kind" => record.kind.as_str(),
                "source" => source
            )
            .increment(1);
            tracing::info!(kind = record.kind.as_str(), send = ?record.send_id, action = %recorded.action, "returned mail");
            done.push((record.kind, recorded.action));
        }
        Ok(done)
    }
}

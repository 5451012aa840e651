//! Returned mail: what kind of message came back, and what herald does about it. The
//! policy is here, apart from the SQL that carries it out (`store/sql/returned.rs`), so it
//! can be read, and tested, on its own.

/// What a returned message is, as herald acts on it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ReturnedKind {
    /// The address failed (5.1.x, 5.2.1): the address is suppressed.
    Hard,
    /// A temporary failure or a full mailbox (4.x.x, 5.2.2): counted.
    Soft,
    /// The message was refused, not the address (policy, content, size, routing): that
    /// send failed, nobody is suppressed.
    Refused,
    /// A DSN saying the provider is still trying: recorded, never counted.
    Delayed,
    /// A DSN saying the mail was delivered, relayed or expanded: recorded, changes nothing.
    Delivered,
    /// An abuse report: unsubscribed and suppressed.
    Complaint,
    /// Mail to the reader's own List-Unsubscribe address.
    Unsubscribe,
    AutoReply,
    Unrecognised,
}

impl ReturnedKind {
    pub const ALL: [ReturnedKind; 9] = [
        ReturnedKind::Hard,
        ReturnedKind::Soft,
        ReturnedKind::Refused,
        ReturnedKind::Delayed,
        ReturnedKind::Delivered,
        ReturnedKind::Complaint,
        ReturnedKind::Unsubscribe,
        ReturnedKind::AutoReply,
        ReturnedKind::Unrecognised,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// "hard, soft, …" for messages that list the choices.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// What a verdict on a returned message records it as.
    pub fn of(verdict: super::Verdict) -> Self {
        use super::Verdict as V;
        match verdict {
            V::Delivered => ReturnedKind::Delivered,
            V::Delayed => ReturnedKind::Delayed,
            V::AddressFailure => ReturnedKind::Hard,
            V::MailboxTemporary => ReturnedKind::Soft,
            V::Refused | V::PolicyRefused => ReturnedKind::Refused,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnedKind::Hard => "hard",
            ReturnedKind::Soft => "soft",
            ReturnedKind::Refused => "refused",
            ReturnedKind::Delayed => "delayed",
            ReturnedKind::Delivered => "delivered",
            ReturnedKind::Complaint => "complaint",
            ReturnedKind::Unsubscribe => "unsubscribe",
            ReturnedKind::AutoReply => "auto_reply",
            ReturnedKind::Unrecognised => "unrecognised",
        }
    }
}

/// What a returned message does, by its kind and whether it names a send of a known reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnedEffect {
    /// Recorded; nothing changes. The words say why.
    Nothing(&'static str),
    /// The provider refused the message after the relay took it: that send failed, the
    /// reader stays.
    SendFailed,
    /// A temporary failure: counted with the reader's others in `bounces.soft_window`; the
    /// `bounces.soft_limit`th suppresses the address ([`soft_limit_reached`]).
    CountSoft,
    /// The address failed: suppressed, the reader `bounced`.
    Suppress,
    /// An abuse report: suppressed, the reader `complained` and unsubscribed.
    Complaint,
    /// Mail to the reader's own unsubscribe address: unsubscribed.
    Unsubscribe,
}

impl ReturnedKind {
    /// What a message of this kind does; `reader_known`: it names a send (or an address)
    /// of a reader herald has. Only the kinds that say something about a reader act, and
    /// only on a reader it names.
    pub fn effect(self, reader_known: bool) -> ReturnedEffect {
        use ReturnedEffect as E;
        use ReturnedKind as K;
        match (self, reader_known) {
            (K::AutoReply, _) => E::Nothing("ignored: an automatic reply"),
            (K::Unrecognised, _) => E::Nothing("kept: not understood"),
            (K::Delivered, _) => E::Nothing("recorded: delivered (changes nothing)"),
            (K::Delayed, _) => E::Nothing("recorded: delayed, still being tried (never counted)"),
            (_, false) => E::Nothing("kept: names no send of a known reader"),
            (K::Refused, true) => E::SendFailed,
            (K::Soft, true) => E::CountSoft,
            (K::Hard, true) => E::Suppress,
            (K::Complaint, true) => E::Complaint,
            (K::Unsubscribe, true) => E::Unsubscribe,
        }
    }
}

/// Whether `count` temporary failures of one reader within the window (this one included)
/// suppress the address.
pub fn soft_limit_reached(count: i64, limit: u32) -> bool {
    count >= i64::from(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only what names a known reader acts, and only kinds that say something about the
    /// address or the reader's wish; the rest is kept for the record.
    #[test]
    fn only_a_known_readers_failure_complaint_or_wish_acts() {
        for kind in ReturnedKind::ALL {
            assert!(
                matches!(kind.effect(false), ReturnedEffect::Nothing(_)),
                "{kind:?}"
            );
        }
        let acts = |k: ReturnedKind| !matches!(k.effect(true), ReturnedEffect::Nothing(_));
        let acting: Vec<_> = ReturnedKind::ALL.into_iter().filter(|k| acts(*k)).collect();
        assert_eq!(
            acting,
            [
                ReturnedKind::Hard,
                ReturnedKind::Soft,
                ReturnedKind::Refused,
                ReturnedKind::Complaint,
                ReturnedKind::Unsubscribe
            ]
        );
        // A refusal of the message is never a failure of the address.
        assert_eq!(
            ReturnedKind::Refused.effect(true),
            ReturnedEffect::SendFailed
        );
        assert_eq!(ReturnedKind::Hard.effect(true), ReturnedEffect::Suppress);
    }

    #[test]
    fn the_limitth_soft_failure_suppresses() {
        assert!(!soft_limit_reached(2, 3));
        assert!(soft_limit_reached(3, 3));
        assert!(soft_limit_reached(1, 1));
    }
}

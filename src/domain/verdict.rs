//! What a mail system's answer means for the reader and the list, decided in one place for
//! every path an answer arrives by: the relay's reply at send time, a delivery status
//! notification (RFC 3464), a plain bounce, the IMAP box, a relay's webhook.
//!
//! The rule (RFC 3463's classes): only a failure *of the address* (`5.1.x`, `5.2.1` mailbox
//! disabled, or a reply that says "no such user" without a code) is a hard bounce that
//! suppresses the reader. A refusal of *the message* — policy and reputation (`x.7.x`: a
//! blocklisting, our own DMARC failing), content or size (`x.3.x`, `x.6.x`, `5.2.3`),
//! routing and protocol (`x.4.x`, `x.5.x`) — fails that one send and says nothing about the
//! reader: one day on a blocklist must not unsubscribe thousands. A full mailbox (`x.2.2`)
//! counts as a temporary failure. Success and delay reports change nothing.

/// What an answer means. See the module's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `delivered`, `relayed`, `expanded`, or a 2.x.x status: nothing to do.
    Delivered,
    /// `delayed`: the provider is still trying; never counted.
    Delayed,
    /// The address does not exist or is disabled: a hard bounce, the reader is suppressed.
    AddressFailure,
    /// The mailbox is full or temporarily unavailable: a soft bounce, counted toward
    /// `bounces.soft_limit`.
    MailboxTemporary,
    /// The message was refused, not the address (content, size, routing, protocol,
    /// system): that send fails, nobody is suppressed.
    Refused,
    /// Refused for policy or reputation (`x.7.x`: a blocklist, authentication, rate
    /// limits): that send fails (or, for a 4.7.x at send time, waits), nobody is
    /// suppressed, and a wave of these from one domain pauses sending to it.
    PolicyRefused,
}

impl Verdict {
    /// Whether this outcome suppresses the reader at once.
    pub fn is_address_failure(self) -> bool {
        self == Verdict::AddressFailure
    }

    /// Whether this outcome counts toward pausing the receiving domain.
    pub fn is_policy(self) -> bool {
        self == Verdict::PolicyRefused
    }
}

/// An enhanced status code (RFC 3463): class 2, 4 or 5, subject and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl StatusCode {
    /// `"5.1.1"` → the code; anything else → None.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let num = |p: &str| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        Some(StatusCode {
            class,
            subject: num(subject)?,
            detail: num(detail)?,
        })
    }

    /// The first enhanced status code in `text`, else one made from the first 3-digit
    /// SMTP reply code (`550` → `5.0.0`): how a reply or a diagnostic states its code.
    pub fn find(text: &str) -> Option<Self> {
        let words = text
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')' | ':' | '['))
            .map(|w| w.trim_end_matches([']', '.', '-']))
            .filter(|w| !w.is_empty());
        let mut reply = None;
        for w in words {
            if let Some(code) = StatusCode::parse(w) {
                return Some(code);
            }
            if reply.is_none()
                && w.len() == 3
                && (w.starts_with('4') || w.starts_with('5'))
                && w.bytes().all(|b| b.is_ascii_digit())
            {
                reply = Some(StatusCode {
                    class: w.as_bytes()[0] - b'0',
                    subject: 0,
                    detail: 0,
                });
            }
        }
        reply
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Words receiving servers use, without a code, for "this address does not exist" (Exim,
/// qmail, old MTAs, Yahoo's 554).
const NO_SUCH_ADDRESS: &[&str] = &[
    "no such user",
    "user unknown",
    "unknown user",
    "no such mailbox",
    "no mailbox here",
    "mailbox not found",
    "recipient unknown",
    "unknown recipient",
    "invalid recipient",
    "invalid mailbox",
    "not a valid mailbox",
    "address does not exist",
    "user does not exist",
    "mailbox does not exist",
    "account does not exist",
    "user doesn't have",
    "user does not have",
    "unrouteable address",
    "account has been disabled",
    "account is disabled",
    "mailbox is disabled",
];

/// Words that say the refusal is about policy or reputation, not the address.
const POLICY: &[&str] = &[
    "blocked",
    "blocklist",
    "blacklist",
    "block list",
    "black list",
    "spamhaus",
    "spamcop",
    "barracuda",
    "listed",
    "reputation",
    "policy",
    "dmarc",
    "spf",
    "dkim",
    "spam",
    "rejected due to",
    "rate limit",
    "too many",
];

fn contains_any(text: &str, words: &[&str]) -> bool {
    let lower = text.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// The one decision. `action` is a DSN's `Action` field (None for a reply at send time or
/// a report without one), `status` the code given on its own (a DSN's `Status`, a
/// webhook's field), `text` the server's words (a reply, a `Diagnostic-Code`). None when
/// none of them says anything herald can act on.
pub fn judge(action: Option<&str>, status: Option<&str>, text: Option<&str>) -> Option<Verdict> {
    match action.map(|a| a.trim().to_ascii_lowercase()).as_deref() {
        Some("delivered" | "relayed" | "expanded") => return Some(Verdict::Delivered),
        Some("delayed") => return Some(Verdict::Delayed),
        _ => {}
    }
    let text = text.unwrap_or("");
    let given = status.and_then(StatusCode::parse);
    // A specific code in the words beats a bare class in the status field ("5.0.0").
    let code = match (given, StatusCode::find(text)) {
        (Some(g), Some(t)) if g.subject == 0 && g.detail == 0 && t.class == g.class => Some(t),
        (Some(g), _) => Some(g),
        (None, t) => t,
    };
    let Some(code) = code else {
        // No code at all: only the words can say it.
        return if contains_any(text, POLICY) {
            Some(Verdict::PolicyRefused)
        } else if contains_any(text, NO_SUCH_ADDRESS) {
            Some(Verdict::AddressFailure)
        } else {
            None
        };
    };
    Some(match (code.class, code.subject, code.detail) {
        (2, _, _) => Verdict::Delivered,
        // Sender-side address problems (our own return path): not the reader's fault.
        (5, 1, 7 | 8) => Verdict::Refused,
        (5, 1, _) | (5, 2, 1) => Verdict::AddressFailure,
        (_, 7, _) => Verdict::PolicyRefused,
        (_, 2, 0 | 2) => Verdict::MailboxTemporary,
        (_, 3..=6, _) | (_, 2, _) => Verdict::Refused,
        // x.0.0 (a bare reply code) or an undefined subject: the words decide.
        (class, _, _) => {
            if contains_any(text, POLICY) {
                Verdict::PolicyRefused
            } else if class == 5 && contains_any(text, NO_SUCH_ADDRESS) {
                Verdict::AddressFailure
            } else if class == 4 {
                Verdict::MailboxTemporary
            } else {
                Verdict::Refused
            }
        }
    })
}

/// The verdict on a relay's reply at send time (`550 5.7.1 …`, lettre's `permanent error
/// (550): 5.7.1 …`), where there is always a reply code.
pub fn judge_reply(reply: &str) -> Verdict {
    judge(None, None, Some(reply)).unwrap_or(if reply.contains("(5") || reply.starts_with('5') {
        Verdict::Refused
    } else {
        Verdict::MailboxTemporary
    })
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    /// A DSN's action, its status field, the server's words, and the verdict.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, Option<Verdict>);

    /// Each class of RFC 3463, by every way it arrives.
    #[test]
    fn every_class_is_judged_by_what_it_means() {
        let table: &[Case] = &[
            // Address failures: the only hard bounces.
            (
                None,
                None,
                "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown",
                Some(AddressFailure),
            ),
            (
                Some("failed"),
                Some("5.1.1"),
                "smtp; 550 5.1.1 user unknown",
                Some(AddressFailure),
            ),
            (
                Some("failed"),
                Some("5.1.10"),
                "RecipientNotFound",
                Some(AddressFailure),
            ),
            (
                None,
                None,
                "550 5.2.1 The email account that you tried to reach is disabled",
                Some(AddressFailure),
            ),
            (
                None,
                None,
                "550 5.1.2 bad destination system address",
                Some(AddressFailure),
            ),
            // Old MTAs say it in words only.
            (None, None, "550 No such user here", Some(AddressFailure)),
            (
                Some("failed"),
                Some("5.0.0"),
                "smtp; 550 unknown user",
                Some(AddressFailure),
            ),
            (
                None,
                None,
                "554 delivery error: dd This user doesn't have a yahoo.com account",
                Some(AddressFailure),
            ),
            // Our own sender address: not the reader's.
            (
                None,
                None,
                "553 5.1.8 sender domain does not exist",
                Some(Refused),
            ),
            // Policy and reputation: fail that send, pause the domain on a wave.
            (
                None,
                None,
                "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
                Some(PolicyRefused),
            ),
            (
                Some("failed"),
                Some("5.7.26"),
                "smtp; 550 5.7.26 unauthenticated mail is prohibited (DMARC)",
                Some(PolicyRefused),
            ),
            (
                None,
                None,
                "421 4.7.0 Try again later, closing connection",
                Some(PolicyRefused),
            ),
            (
                None,
                None,
                "451 4.7.1 greylisted, try again",
                Some(PolicyRefused),
            ),
            (
                None,
                None,
                "554 Message rejected: IP listed at spamcop",
                Some(PolicyRefused),
            ),
            (
                None,
                None,
                "550 Blocked by local policy, user unknown",
                Some(PolicyRefused),
            ),
            // Content, size, system, routing, protocol: that send only.
            (
                Some("failed"),
                Some("5.3.4"),
                "smtp; 552 5.3.4 message too big",
                Some(Refused),
            ),
            (
                None,
                None,
                "552 5.2.3 message length exceeds administrative limit",
                Some(Refused),
            ),
            (
                None,
                None,
                "550 5.4.4 Host or domain name not found",
                Some(Refused),
            ),
            (None, None, "554 5.5.0 transaction failed", Some(Refused)),
            (
                None,
                None,
                "554 5.6.0 corrupt message content",
                Some(Refused),
            ),
            (None, None, "550 Requested action not taken", Some(Refused)),
            // Full mailboxes count as temporary failures, whatever the class.
            (
                Some("failed"),
                Some("5.2.2"),
                "smtp; 552 5.2.2 mailbox full",
                Some(MailboxTemporary),
            ),
            (
                Some("failed"),
                Some("4.2.2"),
                "over quota",
                Some(MailboxTemporary),
            ),
            (
                None,
                None,
                "450 4.2.0 mailbox temporarily unavailable",
                Some(MailboxTemporary),
            ),
            (None, None, "451 4.3.0 local error", Some(Refused)),
            (
                None,
                None,
                "452 temporarily out of space",
                Some(MailboxTemporary),
            ),
            // Success and delay reports change nothing, whatever their code.
            (
                Some("delivered"),
                Some("2.0.0"),
                "smtp; 250 2.0.0 OK",
                Some(Delivered),
            ),
            (Some("relayed"), Some("2.0.0"), "", Some(Delivered)),
            (Some("expanded"), Some("2.0.0"), "", Some(Delivered)),
            (
                Some("delayed"),
                Some("4.4.1"),
                "smtp; 421 4.4.1 connection timed out",
                Some(Delayed),
            ),
            (Some("Delayed"), Some("5.1.1"), "", Some(Delayed)),
            (None, Some("2.1.5"), "", Some(Delivered)),
            // Nothing to go by.
            (None, None, "thanks for your mail", None),
            (Some("failed"), None, "", None),
        ];
        for (action, status, text, expected) in table {
            assert_eq!(
                judge(*action, *status, Some(text)),
                *expected,
                "action {action:?}, status {status:?}, text {text:?}"
            );
        }
    }

    #[test]
    fn replies_at_send_time_always_get_a_verdict() {
        assert_eq!(
            judge_reply("permanent error (550): 5.7.1 blocked using zen.spamhaus.org"),
            PolicyRefused
        );
        assert_eq!(
            judge_reply("permanent error (550): 5.1.1 user unknown"),
            AddressFailure
        );
        assert_eq!(
            judge_reply("permanent error (554): transaction failed"),
            Refused
        );
        assert_eq!(
            judge_reply("transient error (451): try later"),
            MailboxTemporary
        );
    }

    #[test]
    fn status_codes_are_found_in_words() {
        assert_eq!(
            StatusCode::find("smtp; 550 5.1.1 <a@b>: x")
                .map(|c| c.to_string())
                .as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            StatusCode::find("Remote server replied: 550 nope")
                .map(|c| c.to_string())
                .as_deref(),
            Some("5.0.0")
        );
        assert_eq!(
            StatusCode::find("[5.7.26] DMARC")
                .map(|c| c.to_string())
                .as_deref(),
            Some("5.7.26")
        );
        assert_eq!(StatusCode::find("version 1.2.3 of 200 things"), None);
        assert_eq!(StatusCode::parse("5.1"), None);
        assert_eq!(StatusCode::parse("6.1.1"), None);
    }
}

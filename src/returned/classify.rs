//! Reading a returned message. Formats, as their senders publish them:
//! - RFC 3464 DSNs, `multipart/report; report-type=delivery-status` (Postfix, Gmail,
//!   Outlook, most MTAs): per recipient `Final-Recipient`, `Action`, `Status`,
//!   `Diagnostic-Code`; the original message or its headers in a later part.
//! - Exim's and other plain-text bounces: a sentence, the failed address and the SMTP
//!   reply, then a copy of the message with its headers.
//! - RFC 5965 ARF, `multipart/report; report-type=feedback-report`: `Feedback-Type`,
//!   `Original-Rcpt-To`, and the original message.
//! - RFC 3834 auto-replies (`Auto-Submitted: auto-replied` without a report), vacation
//!   notices and the like: never a bounce, whatever their text quotes.

use crate::articles::one_line;
use crate::domain::{StatusCode, Verdict, judge};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// What one returned message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    Bounce(Bounce),
    Complaint(Complaint),
    /// A vacation notice or other automatic answer: ignored.
    AutoReply,
    /// Not something herald understands: left alone.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The address that failed, lower case, when the report names it.
    pub recipient: Option<String>,
    /// The enhanced status code (RFC 3463), e.g. "5.1.1"; from the SMTP reply when the
    /// report has no `Status`.
    pub status: Option<String>,
    /// What it means (`domain::judge`): only an address failure suppresses; a report that
    /// says nothing herald can act on is None.
    pub verdict: Option<Verdict>,
    /// What the receiving server said, on one line.
    pub diagnostic: Option<String>,
    /// The Message-ID of the mail that bounced, with its angle brackets.
    pub message_id: Option<String>,
    /// herald's own references in the quoted original, to find the send by.
    pub quoted: Quoted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// `abuse`, `fraud`, … (RFC 5965 §7.3).
    pub feedback_type: String,
    pub recipient: Option<String>,
    pub message_id: Option<String>,
    pub quoted: Quoted,
}

/// What a report quotes of the original message that can name its send: the envelope
/// sender (a `Return-Path` line, ARF's `Original-Mail-From`, a DSN's `X-Postfix-Sender`),
/// and the `List-Unsubscribe` addresses. Complaint loops (Yahoo, Microsoft JMRP) mail their
/// reports to one fixed address, so these are how such a report finds its reader. Each is
/// only a candidate: the caller checks its MAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quoted {
    pub return_paths: Vec<String>,
    pub unsubscribe: Vec<String>,
}

/// Read one returned message. `our_domain` is the Message-ID domain herald writes: a
/// plain-text bounce is recognised by quoting one of ours.
pub fn classify(raw: &[u8], our_domain: &str) -> Returned {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Returned::Other;
    };
    let report_type = msg
        .content_type()
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    match report_type.as_deref() {
        Some("delivery-status") | Some("global-delivery-status") => {
            if let Some(b) = dsn(&msg) {
                return Returned::Bounce(b);
            }
        }
        Some("feedback-report") => {
            if let Some(c) = arf(&msg) {
                return Returned::Complaint(c);
            }
        }
        _ => {}
    }
    if is_auto_reply(&msg) && !looks_like_bounce(&msg) {
        return Returned::AutoReply;
    }
    if looks_like_bounce(&msg)
        && let Some(b) = plain_bounce(&msg, our_domain)
    {
        return Returned::Bounce(b);
    }
    if is_auto_reply(&msg) {
        return Returned::AutoReply;
    }
    Returned::Other
}

/// The text of a part whatever type mail-parser gave it (`message/delivery-status` is not
/// text to it).
fn part_text<'a>(p: &'a mail_parser::MessagePart<'a>) -> Option<std::borrow::Cow<'a, str>> {
    match &p.body {
        PartType::Text(t) | PartType::Html(t) => Some(std::borrow::Cow::Borrowed(t.as_ref())),
        PartType::Binary(b) | PartType::InlineBinary(b) => Some(String::from_utf8_lossy(b)),
        _ => None,
    }
}

fn part_type(p: &mail_parser::MessagePart<'_>) -> String {
    p.content_type()
        .map(|ct| {
            format!(
                "{}/{}",
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase()
            )
        })
        .unwrap_or_default()
}

/// `Name: value` fields in blocks separated by blank lines, continuation lines unfolded.
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !blocks.last().is_some_and(Vec::is_empty) {
                blocks.push(Vec::new());
            }
            continue;
        }
        let block: &mut Vec<(String, String)> = blocks.last_mut().expect("one block");
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            block.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// "rfc822; Gone@Example.org" → "gone@example.org".
fn address_of(typed: &str) -> Option<String> {
    let a = typed.split_once(';').map_or(typed, |(_, a)| a);
    let a = a
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    a.contains('@').then(|| a.to_ascii_lowercase())
}

/// The Message-ID of the original message carried in a report (a `message/rfc822` part, or
/// `text/rfc822-headers`).
fn original_message_id(msg: &Message<'_>) -> Option<String> {
    for p in msg.parts.iter() {
        match &p.body {
            PartType::Message(inner) => {
                if let Some(id) = inner.message_id() {
                    return Some(format!("<{id}>"));
                }
            }
            _ if part_type(p) == "text/rfc822-headers" => {
                if let Some(text) = part_text(p)
                    && let Some(id) = message_id_in(&text, None)
                {
                    return Some(id);
                }
            }
            _ => {}
        }
    }
    None
}

/// The envelope senders and List-Unsubscribe addresses quoted anywhere in a report: in its
/// text parts, its report fields and the headers of the original it carries.
fn quoted_refs(msg: &Message<'_>) -> Quoted {
    let mut q = Quoted::default();
    let mut read = |text: &str| {
        for (name, value) in field_blocks(text).into_iter().flatten() {
            match name.as_str() {
                "return-path" | "original-mail-from" | "x-postfix-sender" | "x-original-sender" => {
                    if let Some(a) = address_of(&value)
                        && !q.return_paths.contains(&a)
                    {
                        q.return_paths.push(a);
                    }
                }
                "list-unsubscribe" => {
                    for item in value.split(',') {
                        let item = item.trim().trim_start_matches('<').trim_end_matches('>');
                        if let Some(mailto) = item.strip_prefix("mailto:") {
                            let a = mailto.split('?').next().unwrap_or("").to_ascii_lowercase();
                            if a.contains('@') && !q.unsubscribe.contains(&a) {
                                q.unsubscribe.push(a);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    };
    for p in msg.parts.iter() {
        match &p.body {
            PartType::Message(inner) => {
                let raw = inner.raw_message();
                let end = raw.len().min(inner.root_part().raw_body_offset() as usize);
                read(&String::from_utf8_lossy(&raw[..end]));
            }
            _ => {
                if let Some(text) = part_text(p) {
                    read(&text);
                }
            }
        }
    }
    q
}

/// The first `Message-ID:` header line in `text` (on `domain`, when given).
fn message_id_in(text: &str, domain: Option<&str>) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let v = v.trim();
        let id = v.strip_prefix('<')?.split('>').next()?;
        let ok = domain.is_none_or(|d| {
            id.rsplit_once('@')
                .is_some_and(|(_, h)| h.eq_ignore_ascii_case(d))
        });
        ok.then(|| format!("<{id}>"))
    })
}

/// The first enhanced status code (`5.1.1`) in `text`, else one made from a 3-digit SMTP
/// reply code (`550` → `5.0.0`).
fn status_in(text: &str) -> Option<String> {
    StatusCode::find(text).map(|c| c.to_string())
}

fn dsn(msg: &Message<'_>) -> Option<Bounce> {
    let report = msg.parts.iter().find(|p| {
        matches!(
            part_type(p).as_str(),
            "message/delivery-status" | "message/global-delivery-status"
        )
    })?;
    let text = part_text(report)?;
    let blocks = field_blocks(&text);
    // The first block is about the message, the others about one recipient each: the
    // first recipient that failed, else the first one at all (a delay).
    let recipients: Vec<&Vec<(String, String)>> = blocks
        .iter()
        .filter(|b| field(b, "final-recipient").is_some() || field(b, "action").is_some())
        .collect();
    let chosen = recipients
        .iter()
        .find(|b| field(b, "action").is_some_and(|a| a.eq_ignore_ascii_case("failed")))
        .or(recipients.first())?;
    let diagnostic = field(chosen, "diagnostic-code")
        .map(|d| one_line(d.split_once(';').map_or(d, |(_, v)| v), 1000));
    let status = field(chosen, "status")
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| diagnostic.as_deref().and_then(status_in));
    let verdict = judge(
        field(chosen, "action"),
        status.as_deref(),
        diagnostic.as_deref(),
    );
    let message_id = original_message_id(msg).or_else(|| {
        blocks
            .iter()
            .find_map(|b| field(b, "x-original-message-id"))
            .map(|v| v.trim().to_string())
    });
    Some(Bounce {
        recipient: field(chosen, "final-recipient")
            .or(field(chosen, "original-recipient"))
            .and_then(address_of),
        status,
        verdict,
        diagnostic,
        message_id,
        quoted: quoted_refs(msg),
    })
}

fn arf(msg: &Message<'_>) -> Option<Complaint> {
    let report = msg
        .parts
        .iter()
        .find(|p| part_type(p) == "message/feedback-report")?;
    let text = part_text(report)?;
    let fields: Vec<(String, String)> = field_blocks(&text).into_iter().flatten().collect();
    Some(Complaint {
        feedback_type: field(&fields, "feedback-type")
            .unwrap_or("abuse")
            .to_ascii_lowercase(),
        recipient: field(&fields, "original-rcpt-to").and_then(address_of),
        message_id: original_message_id(msg),
        quoted: quoted_refs(msg),
    })
}

/// RFC 3834 `Auto-Submitted` other than `no`, or the markers vacation programs and
/// Exchange set.
fn is_auto_reply(msg: &Message<'_>) -> bool {
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    header("Auto-Submitted").is_some_and(|v| v != "no")
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("Precedence").is_some_and(|v| v == "auto_reply")
        || header("X-Auto-Response-Suppress").is_some()
}

/// Sent by a mail system about delivery: a postmaster/MAILER-DAEMON sender or an empty
/// return path, and a subject that says so.
fn looks_like_bounce(msg: &Message<'_>) -> bool {
    let from = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase();
    let system = from.starts_with("mailer-daemon@") || from.starts_with("postmaster@");
    let null_path = msg
        .header_raw("Return-Path")
        .is_some_and(|v| v.trim() == "<>");
    let subject = msg.subject().unwrap_or("").to_ascii_lowercase();
    let about_delivery = [
        "undeliver",
        "delivery status notification",
        "mail delivery failed",
        "returned mail",
        "delivery failure",
        "failure notice",
    ]
    .iter()
    .any(|s| subject.contains(s));
    (system || null_path) && about_delivery
}

/// A plain-text bounce (Exim and others): it must quote a message of ours, and say what
/// failed.
fn plain_bounce(msg: &Message<'_>, our_domain: &str) -> Option<Bounce> {
    let text = msg.body_text(0)?;
    let message_id = message_id_in(&text, Some(our_domain))?;
    // The report is what comes before the copy of the message.
    let report = text
        .split("------ This is a copy of the message")
        .next()
        .unwrap_or(&text);
    let status = status_in(report);
    let recipient = report.lines().find_map(|l| {
        let l = l.trim();
        (l.contains('@') && !l.contains(' '))
            .then(|| l.trim_matches(['<', '>']).to_ascii_lowercase())
    });
    let diagnostic = report
        .lines()
        .find(|l| {
            status
                .as_deref()
                .is_some_and(|s| l.contains(s) || l.contains(&s[..1]))
                && l.trim().starts_with(['4', '5'])
        })
        .map(|l| one_line(l, 1000));
    // Exim says "permanent error" and then the server's words; those words decide.
    let verdict = judge(
        None,
        status.as_deref(),
        diagnostic.as_deref().or(Some(report)),
    );
    Some(Bounce {
        recipient,
        status,
        verdict,
        diagnostic,
        message_id: Some(message_id),
        quoted: quoted_refs(msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/returned/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    const OURS: &str = "news.herald.example";

    #[test]
    fn postfix_dsn_is_a_hard_bounce() {
        let Returned::Bounce(b) = classify(&fixture("postfix-hard.eml"), OURS) else {
            panic!("not a bounce");
        };
        assert_eq!(b.recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert_eq!(b.verdict, Some(Verdict::AddressFailure));
        assert_eq!(
            b.diagnostic.as_deref(),
            Some(
                "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
            )
        );
        assert_eq!(
            b.message_id.as_deref(),
            Some("<AbCdEfGhIjKlMnOpQrStUv@news.herald.example>")
        );
        assert_eq!(
            b.quoted.return_paths,
            vec!["bounces+ref@news.herald.example".to_string()],
            "X-Postfix-Sender and the quoted Return-Path"
        );
    }

    /// A DSN as Postfix writes it, with the action and status given: what each means.
    fn postfix_dsn(action: &str, status: &str, diagnostic: &str) -> Vec<u8> {
        String::from_utf8(fixture("postfix-hard.eml"))
            .unwrap()
            .replace("Action: failed", &format!("Action: {action}"))
            .replace("Status: 5.1.1", &format!("Status: {status}"))
            .replace(
                "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
                diagnostic,
            )
            .into_bytes()
    }

    #[test]
    fn a_dsn_is_judged_by_its_action_and_code() {
        for (action, status, diagnostic, verdict) in [
            (
                "failed",
                "5.7.1",
                "550 5.7.1 Service unavailable; client [192.0.2.10] blocked using zen.spamhaus.org",
                Verdict::PolicyRefused,
            ),
            (
                "failed",
                "5.7.26",
                "550 5.7.26 This mail is unauthenticated (DMARC)",
                Verdict::PolicyRefused,
            ),
            (
                "failed",
                "5.3.4",
                "552 5.3.4 Message size exceeds fixed limit",
                Verdict::Refused,
            ),
            (
                "failed",
                "5.2.2",
                "552 5.2.2 Mailbox full",
                Verdict::MailboxTemporary,
            ),
            (
                "delivered",
                "2.0.0",
                "250 2.0.0 Ok: queued as 4Rk2",
                Verdict::Delivered,
            ),
            ("relayed", "2.0.0", "250 2.0.0 Ok", Verdict::Delivered),
            (
                "delayed",
                "4.4.1",
                "connect to mx.example.org: Connection timed out",
                Verdict::Delayed,
            ),
        ] {
            let Returned::Bounce(b) = classify(&postfix_dsn(action, status, diagnostic), OURS)
            else {
                panic!("{action} {status}: not read as a report");
            };
            assert_eq!(b.verdict, Some(verdict), "{action} {status}");
            assert_eq!(b.status.as_deref(), Some(status));
        }
    }

    #[test]
    fn outlook_ndr_is_a_hard_bounce() {
        let Returned::Bounce(b) = classify(&fixture("outlook-hard.eml"), OURS) else {
            panic!("not a bounce");
        };
        assert_eq!(b.recipient.as_deref(), Some("left@outlook.com"));
        assert_eq!(b.status.as_deref(), Some("5.1.10"));
        assert_eq!(b.verdict, Some(Verdict::AddressFailure));
        assert!(b.diagnostic.unwrap().contains("RecipientNotFound"));
        assert_eq!(
            b.message_id.as_deref(),
            Some("<OutlookRejectedIdentifier@news.herald.example>")
        );
    }

    #[test]
    fn a_gmail_delay_is_soft() {
        let Returned::Bounce(b) = classify(&fixture("gmail-soft.eml"), OURS) else {
            panic!("not a bounce");
        };
        assert_eq!(b.recipient.as_deref(), Some("full@example.com"));
        assert_eq!(b.status.as_deref(), Some("4.2.2"));
        assert_eq!(b.verdict, Some(Verdict::Delayed), "Gmail's delay notice");
        assert_eq!(
            b.message_id.as_deref(),
            Some("<DelayedMessageIdentifier0@news.herald.example>")
        );
    }

    #[test]
    fn an_exim_text_bounce_is_read_from_its_words_and_its_quote() {
        let Returned::Bounce(b) = classify(&fixture("exim-hard.eml"), OURS) else {
            panic!("not a bounce");
        };
        assert_eq!(b.recipient.as_deref(), Some("nobody@example.co.uk"));
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert_eq!(b.verdict, Some(Verdict::AddressFailure));
        assert_eq!(
            b.message_id.as_deref(),
            Some("<EximQuotedMessageIdentifier@news.herald.example>")
        );
        assert!(b.diagnostic.unwrap().starts_with("550 5.1.1"));
    }

    #[test]
    fn an_arf_report_is_a_complaint() {
        assert_eq!(
            classify(&fixture("arf-complaint.eml"), OURS),
            Returned::Complaint(Complaint {
                feedback_type: "abuse".into(),
                recipient: Some("angry@example.com".into()),
                message_id: Some("<ComplaintMessageIdentifier@news.herald.example>".into()),
                quoted: Quoted {
                    return_paths: vec!["bounces+ref@news.herald.example".into()],
                    unsubscribe: vec![],
                },
            })
        );
    }

    /// Yahoo's complaint feedback loop redacts the reader's address: the report still
    /// counts, found by its return path (VERP) and the quoted Message-ID.
    #[test]
    fn a_yahoo_report_without_its_recipient_is_a_complaint() {
        assert_eq!(
            classify(&fixture("yahoo-complaint.eml"), OURS),
            Returned::Complaint(Complaint {
                feedback_type: "abuse".into(),
                recipient: None,
                message_id: Some("<YahooComplaintIdentifier@news.herald.example>".into()),
                quoted: Quoted {
                    return_paths: vec!["bounces+ref@news.herald.example".into()],
                    unsubscribe: vec![],
                },
            })
        );
    }

    /// A reader forwarding a bounce they got (with our Message-ID and a 5.1.1 in it) is a
    /// person writing, not a mail system reporting: it must not bounce anyone.
    #[test]
    fn a_forwarded_bounce_is_not_a_bounce() {
        assert_eq!(
            classify(&fixture("forwarded-bounce.eml"), OURS),
            Returned::Other
        );
    }

    #[test]
    fn vacation_notices_and_unrelated_mail_are_not_bounces() {
        assert_eq!(
            classify(&fixture("vacation.eml"), OURS),
            Returned::AutoReply
        );
        assert_eq!(classify(&fixture("unrelated.eml"), OURS), Returned::Other);
        assert_eq!(classify(b"\xff\xfe not mail at all", OURS), Returned::Other);
    }
}

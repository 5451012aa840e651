//! One outgoing email as herald builds it: `multipart/alternative` (text + HTML),
//! `Message-ID` on our domain, `Date`, `List-Id`, `List-Unsubscribe` (+ RFC 8058
//! `List-Unsubscribe-Post`), `Auto-Submitted`. Every header value is checked for CR/LF
//! before it is used, so no article title or name can add a header.

use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

/// What a composer produces; the worker turns it into bytes.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: lettre::Address,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Set on list mail (digests), not on a transactional one (a confirmation).
    pub list: Option<ListMail>,
}

/// What a mailbox provider is told about list mail: `Precedence: bulk`, a `Feedback-ID`
/// for its complaint reports (Gmail's feedback loop), and where the list lives.
#[derive(Debug, Clone, Default)]
pub struct ListMail {
    /// The campaign part of `Feedback-ID`, e.g. `42:morning` (issue : schedule); the list
    /// label is added as the sender part: `42:morning:news.herald.example`.
    pub campaign: String,
    /// `List-Subscribe`: the signup form.
    pub subscribe_url: Option<String>,
    /// `List-Archive`: the schedule's page in the web archive.
    pub archive_url: Option<String>,
    /// `List-Help`: `mail.list_help`.
    pub help_url: Option<String>,
    /// `Archived-At` (RFC 5064): this issue's own page in the web archive.
    pub archived_at: Option<String>,
}

/// Headers that depend on the list and the recipient rather than on the content.
#[derive(Debug, Clone)]
pub struct MailHeaders {
    pub from: Mailbox,
    pub message_id: String,
    /// `List-Id`: the list's name (any text) and its label, e.g. `news.herald.example`.
    pub list_name: String,
    pub list_label: String,
    /// https unsubscribe URL (RFC 8058 one-click target).
    pub unsubscribe_url: Option<String>,
    pub unsubscribe_mailto: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("header {0} would contain a line break")]
    HeaderInjection(&'static str),
    #[error("cannot build the message: {0}")]
    Lettre(#[from] lettre::error::Error),
}

/// A new Message-ID, `<random@domain>`, fixed when the `sends` row is made so a resend
/// after a crash carries the same one.
pub fn new_message_id(domain: &str) -> String {
    let token = crate::domain::RandomToken::generate();
    // 22 characters (~128 bits) are plenty for uniqueness and keep the header short.
    format!("<{}@{}>", &token.as_str()[..22], domain)
}

macro_rules! raw_header {
    ($ty:ident, $name:expr) => {
        #[derive(Debug, Clone)]
        struct $ty(String);
        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

raw_header!(ListUnsubscribe, "List-Unsubscribe");
raw_header!(ListUnsubscribePost, "List-Unsubscribe-Post");
raw_header!(AutoSubmitted, "Auto-Submitted");
raw_header!(Precedence, "Precedence");
raw_header!(FeedbackId, "Feedback-ID");
raw_header!(ListSubscribe, "List-Subscribe");
raw_header!(ListArchive, "List-Archive");
raw_header!(ListHelp, "List-Help");
raw_header!(ListPost, "List-Post");
raw_header!(ArchivedAt, "Archived-At");

/// `List-Id` (RFC 2919) with its phrase written so any name survives: as it is when it
/// is plain words, as a quoted string when it has specials (`,` `"` `&` …: an unquoted
/// `Zürcher Post, "Daily" & Co.` broke the header), as an RFC 2047 encoded word when it is
/// not ASCII.
#[derive(Debug, Clone)]
struct ListIdHeader {
    phrase: String,
    label: String,
}

impl Header for ListIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Id")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self {
            phrase: String::new(),
            label: s.to_string(),
        })
    }
    fn display(&self) -> HeaderValue {
        let encoded = format!("{} <{}>", encode_phrase(&self.phrase), self.label);
        HeaderValue::dangerous_new_pre_encoded(Self::name(), encoded.clone(), encoded)
    }
}

/// An RFC 5322 phrase for `text`.
fn encode_phrase(text: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~ ".contains(c);
    if !text.is_ascii() {
        // Encoded words of at most 75 characters (RFC 2047 §2): 39 bytes of UTF-8 each, cut
        // at character boundaries, on folded lines of their own.
        use base64::Engine;
        let mut words = Vec::new();
        let mut chunk = String::new();
        for c in text.chars() {
            if chunk.len() + c.len_utf8() > 39 {
                words.push(std::mem::take(&mut chunk));
            }
            chunk.push(c);
        }
        words.push(chunk);
        return words
            .iter()
            .map(|w| {
                format!(
                    "=?utf-8?b?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(w)
                )
            })
            .collect::<Vec<_>>()
            .join("\r\n ");
    }
    if !text.is_empty() && text.chars().all(atext) && !text.starts_with(' ') && !text.ends_with(' ')
    {
        return text.to_string();
    }
    let mut q = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn clean(name: &'static str, v: &str) -> Result<(), BuildError> {
    if v.contains(['\r', '\n']) {
        Err(BuildError::HeaderInjection(name))
    } else {
        Ok(())
    }
}

/// Build the complete RFC 5322 message.
pub fn build_message(mail: &OutgoingMail, h: &MailHeaders) -> Result<Message, BuildError> {
    clean("Subject", &mail.subject)?;
    clean("Message-ID", &h.message_id)?;
    clean("List-Id", &h.list_name)?;
    clean("List-Id", &h.list_label)?;
    let mut b = Message::builder()
        .from(h.from.clone())
        .to(Mailbox::new(None, mail.to.clone()))
        .subject(mail.subject.clone())
        .date_now()
        .message_id(Some(h.message_id.clone()))
        .header(ListIdHeader {
            phrase: h.list_name.clone(),
            label: h.list_label.clone(),
        })
        .header(AutoSubmitted("auto-generated".into()));
    if let Some(list) = &mail.list {
        clean("Feedback-ID", &list.campaign)?;
        b = b
            .header(Precedence("bulk".into()))
            .header(FeedbackId(format!("{}:{}", list.campaign, h.list_label)));
        if let Some(u) = &list.subscribe_url {
            clean("List-Subscribe", u)?;
            b = b.header(ListSubscribe(format!("<{u}>")));
        }
        if let Some(u) = &list.archive_url {
            clean("List-Archive", u)?;
            b = b.header(ListArchive(format!("<{u}>")));
        }
        if let Some(u) = &list.help_url {
            clean("List-Help", u)?;
            b = b.header(ListHelp(format!("<{u}>")));
        }
        if let Some(u) = &list.archived_at {
            clean("Archived-At", u)?;
            b = b.header(ArchivedAt(format!("<{u}>")));
        }
        // RFC 2369: an announcement list; readers cannot post to it.
        b = b.header(ListPost("NO".into()));
    }
    let mut targets = Vec::new();
    if let Some(url) = &h.unsubscribe_url {
        clean("List-Unsubscribe", url)?;
        targets.push(format!("<{url}>"));
    }
    if let Some(mailto) = &h.unsubscribe_mailto {
        clean("List-Unsubscribe", mailto)?;
        targets.push(format!("<mailto:{mailto}?subject=unsubscribe>"));
    }
    if !targets.is_empty() {
        b = b.header(ListUnsubscribe(targets.join(", ")));
    }
    if h.unsubscribe_url.is_some() {
        b = b.header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
    }
    // Bodies encoded here in one pass each (see `encode`), not by lettre.
    Ok(b.multipart(MultiPart::alternative_plain_html(
        super::encode::body(&mail.text),
        super::encode::body(&mail.html),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> MailHeaders {
        MailHeaders {
            from: "News <n@herald.example>".parse().unwrap(),
            message_id: new_message_id("herald.example"),
            list_name: "News".into(),
            list_label: "news.herald.example".into(),
            unsubscribe_url: Some("https://h.example/unsubscribe/1.abc".into()),
            unsubscribe_mailto: None,
        }
    }

    #[test]
    fn carries_every_header() {
        let mail = OutgoingMail {
            to: "r@example.com".parse().unwrap(),
            subject: "Hello".into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            list: None,
        };
        let m = build_message(&mail, &headers()).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        for h in [
            "Message-ID: <",
            "Date: ",
            "List-Id: News <news.herald.example>",
            "List-Unsubscribe: <https://h.example/unsubscribe/1.abc>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Auto-Submitted: auto-generated",
            "multipart/alternative",
        ] {
            assert!(raw.contains(h), "missing {h} in\n{raw}");
        }
        // A transactional mail (a confirmation) is not bulk.
        assert!(!raw.contains("Precedence:") && !raw.contains("Feedback-ID:"));
    }

    /// The list's name in `List-Id` arrives as written, whatever it holds, read back by a
    /// parser we did not write (mail-parser).
    #[test]
    fn list_id_phrases_survive_any_name() {
        for name in [
            "Herald News",
            "Zürcher Post, \"Daily\" & Co.",
            "A, B <c>",
            "back\\slash",
            "日本語ニュース",
            &"Zürcher Nachrichten für alle ".repeat(6),
        ] {
            let mut h = headers();
            h.list_name = name.into();
            let mail = OutgoingMail {
                to: "r@example.com".parse().unwrap(),
                subject: "Hello".into(),
                text: "t".into(),
                html: "h".into(),
                list: None,
            };
            let raw = build_message(&mail, &h).unwrap().formatted();
            let text = String::from_utf8_lossy(&raw).to_string();
            let start = text.find("List-Id:").unwrap();
            // The header with its folded lines.
            let line: String = text[start..]
                .split("\r\n")
                .enumerate()
                .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
                .map(|(_, l)| l.to_string())
                .collect::<Vec<_>>()
                .join("\r\n");
            assert!(line.is_ascii(), "{line}");
            assert!(line.split("\r\n").all(|l| l.len() <= 998), "{line}");
            let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let addr = parsed
                .list_id()
                .as_address()
                .and_then(|a| a.first())
                .unwrap_or_else(|| panic!("List-Id not an address: {line}"));
            assert_eq!(addr.name(), Some(name), "{line}");
            assert_eq!(addr.address(), Some("news.herald.example"), "{line}");
        }
    }

    #[test]
    fn list_mail_says_it_is_bulk() {
        let list = ListMail {
            campaign: "42:morning".into(),
            subscribe_url: Some("https://h.example/subscribe".into()),
            archive_url: Some("https://h.example/archive/morning".into()),
            help_url: Some("mailto:help@h.example".into()),
            archived_at: Some("https://h.example/archive/morning/42".into()),
        };
        let mail = OutgoingMail {
            to: "r@example.com".parse().unwrap(),
            subject: "Hello".into(),
            text: "t".into(),
            html: "h".into(),
            list: Some(list),
        };
        let raw = String::from_utf8(build_message(&mail, &headers()).unwrap().formatted()).unwrap();
        for h in [
            "Precedence: bulk",
            "Feedback-ID: 42:morning:news.herald.example",
            "List-Subscribe: <https://h.example/subscribe>",
            "List-Archive: <https://h.example/archive/morning>",
            "List-Help: <mailto:help@h.example>",
            "Archived-At: <https://h.example/archive/morning/42>",
            "List-Post: NO",
        ] {
            assert!(raw.contains(h), "missing {h} in\n{raw}");
        }
    }

    #[test]
    fn refuses_line_breaks_in_the_subject() {
        let mail = OutgoingMail {
            to: "r@example.com".parse().unwrap(),
            subject: "Hi\r\nBcc: victim@example.org".into(),
            text: "t".into(),
            html: "h".into(),
            list: None,
        };
        assert!(matches!(
            build_message(&mail, &headers()),
            Err(BuildError::HeaderInjection(_))
        ));
    }
}

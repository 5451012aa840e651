//! Rules of one config value each, checked as the value is read: a field declares its rule
//! (`#[serde(deserialize_with = "fields::…")]`, or a type such as [`LanguageTag`]) and a
//! wrong value fails there, with the dotted key named by the span of the value (see
//! `Config::from_sources`). What needs two keys at once stays in `check.rs`.

use super::{ImapConfig, MailTransportConfig, Secret, Tls};
use crate::domain::HumanDuration;
use serde::de::{Deserialize, Deserializer, Error};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A whole number from `MIN` to `MAX`.
pub(super) fn between<'de, D: Deserializer<'de>, const MIN: u32, const MAX: u32>(
    d: D,
) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if !(MIN..=MAX).contains(&n) {
        return Err(D::Error::custom(if MAX == u32::MAX {
            format!("must be at least {MIN}")
        } else {
            format!("must be {MIN} to {MAX}")
        }));
    }
    Ok(n)
}

/// A whole number of at least 1.
pub(super) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    between::<D, 1, { u32::MAX }>(d)
}

/// A duration of more than zero (a zero interval would spin, a zero timeout fail all).
pub(super) fn nonzero<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let v = HumanDuration::deserialize(d)?;
    if v.0.is_zero() {
        return Err(D::Error::custom("must be more than 0s"));
    }
    Ok(v)
}

/// An `address:port` to listen on.
pub(super) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_address(&s).map_err(D::Error::custom)
}

/// An `address:port` to listen on, or empty for "off".
pub(super) fn optional_address<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "" => Ok(None),
        a => parse_address(a).map(Some).map_err(D::Error::custom),
    }
}

fn parse_address(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address:port such as 127.0.0.1:8080"))
}

/// A list of IP addresses (a comma-separated list in an environment variable).
pub(super) fn ip_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|p| {
            p.trim()
                .parse::<IpAddr>()
                .map_err(|_| D::Error::custom(format!("{p:?} is not an IP address")))
        })
        .collect()
}

/// A line of text shown in mails and pages: no line breaks or control characters (they
/// would break a header or the layout).
pub(super) fn one_line<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if crate::domain::has_control_chars(&s) {
        return Err(D::Error::custom(
            "must not contain line breaks or control characters",
        ));
    }
    Ok(s)
}

/// A line of text that must say something.
pub(super) fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = one_line(d)?;
    if s.trim().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(s)
}

/// An http(s) URL, or empty for "none".
pub(super) fn optional_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = one_line(d)?;
    if !s.is_empty() && !s.starts_with("https://") && !s.starts_with("http://") {
        return Err(D::Error::custom("must be an http(s) URL"));
    }
    Ok(s)
}

/// A secret a person chose, or empty for "none": at least `MIN` printable characters.
pub(super) fn optional_secret<'de, D: Deserializer<'de>, const MIN: usize>(
    d: D,
) -> Result<Option<Secret>, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "" => Ok(None),
        t if t.len() < MIN || !t.bytes().all(|b| b.is_ascii_graphic()) => Err(D::Error::custom(
            format!("must be at least {MIN} printable characters without spaces"),
        )),
        t => Ok(Some(Secret(t.to_string()))),
    }
}

/// The key tokens are made with: empty (then `herald serve` refuses to start) or long
/// enough to be a key.
pub(super) fn secret_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let s = String::deserialize(d)?;
    let min = crate::domain::SecretKey::MIN_LEN;
    match s.len() {
        0 => Ok(None),
        n if n < min => Err(D::Error::custom(format!(
            "must be at least {min} characters (generate one with `herald secret`)"
        ))),
        _ => Ok(Some(Secret(s))),
    }
}

/// `sqlite:PATH` or `postgres://…`.
pub(super) fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| s.starts_with(p))
    {
        Ok(s)
    } else {
        Err(D::Error::custom(format!(
            "{s:?} is neither `sqlite:PATH` nor `postgres://…`"
        )))
    }
}

/// Letters, digits, dots and dashes: a domain name, a List-Id.
fn is_dns_like(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// A domain name, or empty for "the domain of mail.from".
pub(super) fn optional_domain<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.is_empty() && !is_dns_like(&s) {
        return Err(D::Error::custom(format!("{s:?} is not a domain name")));
    }
    Ok(s)
}

/// `mail.list_id`: the part of List-Id before the domain.
pub(super) fn list_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !is_dns_like(&s) {
        return Err(D::Error::custom("use letters, digits, dots and dashes"));
    }
    Ok(s)
}

/// A mailbox like `Name <addr@domain>`.
pub(super) fn mailbox<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<lettre::message::Mailbox, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|e| {
        D::Error::custom(format!(
            "{s:?} is not a mailbox like `Name <addr@domain>`: {e}"
        ))
    })
}

/// An email address, or empty for "none".
pub(super) fn optional_email<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<lettre::Address>, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{a:?} is not an email address"))),
    }
}

/// `mail.return_path`: an address herald adds `+<ref>` to, so plain ASCII without a `+`.
pub(super) fn return_path<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<lettre::Address>, D::Error> {
    let addr = optional_email(d)?;
    if let Some(a) = &addr
        && (a.user().contains('+') || !a.user().is_ascii() || !a.domain().is_ascii())
    {
        return Err(D::Error::custom(
            "use a plain ASCII address without '+' (herald adds +<ref> to it)",
        ));
    }
    Ok(addr)
}

/// `mail.list_help`: an http(s) URL or `mailto:ADDRESS`, or empty for "none".
pub(super) fn list_help<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let h = s.trim();
    if h.is_empty() {
        return Ok(None);
    }
    let ok = match h.strip_prefix("mailto:") {
        Some(a) => a.parse::<lettre::Address>().is_ok(),
        None => {
            url::Url::parse(h).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
        }
    };
    if !ok || h.contains(['<', '>', ',', ' ', '\r', '\n']) {
        return Err(D::Error::custom(format!(
            "{h:?} is not an https URL or mailto:ADDRESS"
        )));
    }
    Ok(Some(h.to_string()))
}

/// A comma-separated list, empty parts left out.
pub(super) fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(String::deserialize(d)?
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

/// Text, or empty for "none".
pub(super) fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(match s.trim() {
        "" => None,
        t => Some(t.to_string()),
    })
}

/// `mail.url`: where mail goes.
pub(super) fn mail_url<'de, D: Deserializer<'de>>(d: D) -> Result<MailTransportConfig, D::Error> {
    parse_mail_url(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// `bounces.imap_url`: a mailbox returned mail is read from, or empty for "off".
pub(super) fn imap_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ImapConfig>, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "" => Ok(None),
        u => parse_imap_url(u).map(Some).map_err(D::Error::custom),
    }
}

/// A BCP 47 language tag as pages and mails carry it (`lang="pt-BR"`): letters, digits and
/// dashes, at most 35 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct LanguageTag(String);

impl<'de> Deserialize<'de> for LanguageTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 35 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(D::Error::custom(format!(
                "{s:?} is not a language tag like en or pt-BR"
            )));
        }
        Ok(LanguageTag(s))
    }
}

/// A colour as CSS and mail clients all read it: `#` and six hex digits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct HexColour(String);

impl<'de> Deserialize<'de> for HexColour {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok =
            s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|x| x.is_ascii_hexdigit());
        if !ok {
            return Err(D::Error::custom(format!(
                "{s:?} is not a colour like #1a4d8f"
            )));
        }
        Ok(HexColour(s))
    }
}

macro_rules! text_newtype {
    ($($t:ty),*) => {$(
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
text_newtype!(LanguageTag, HexColour);

/// A percent-encoded URL part as written (a `+` stays a `+`: user names such as
/// `bounces+news@example.com` are common).
fn url_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// A mail server's address as `mail.url` and `bounces.imap_url` both write it:
/// `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?tls=required|none]`, user and password
/// percent-encoded. One parser, so the two keys cannot drift apart again (`tls=none` was
/// once accepted by one only).
struct ServerUrl {
    host: String,
    port: u16,
    tls: Tls,
    user: String,
    password: Secret,
    path: String,
}

/// The schemes of one kind of server: plain (STARTTLS with `?tls=required`) and implicit
/// TLS, each with its default port; `example` is shown in errors.
struct Schemes {
    plain: (&'static str, u16),
    implicit: (&'static str, u16),
    example: &'static str,
}

fn parse_server_url(s: &str, schemes: &Schemes) -> Result<ServerUrl, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let (default_port, mut tls) = match u.scheme() {
        p if p == schemes.plain.0 => (schemes.plain.1, Tls::None),
        i if i == schemes.implicit.0 => (schemes.implicit.1, Tls::Implicit),
        other => {
            return Err(format!("unknown scheme {other:?}: use {}", schemes.example));
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("needs a host, e.g. {}", schemes.example))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    for (k, v) in u.query_pairs() {
        match (k.as_ref(), v.as_ref(), tls) {
            ("tls", "required", Tls::None) => tls = Tls::StartTls,
            ("tls", "required", _) => {}
            ("tls", "none", Tls::None) => {}
            ("tls", other, _) => {
                return Err(format!(
                    "tls={other:?}: use tls=required (STARTTLS), tls=none on {}://, or {}:// for \
                     TLS from the first byte",
                    schemes.plain.0, schemes.implicit.0
                ));
            }
            (other, _, _) => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(ServerUrl {
        host,
        port: u.port().unwrap_or(default_port),
        tls,
        user: url_decode(u.username()),
        password: Secret(url_decode(u.password().unwrap_or(""))),
        path: url_decode(u.path().trim_start_matches('/')),
    })
}

/// `imaps://USER:PASSWORD@HOST[:993]/MAILBOX`, or `imap://…[:143]/MAILBOX[?tls=required]`
/// (STARTTLS; without it, plain text). The mailbox defaults to INBOX.
pub(super) fn parse_imap_url(s: &str) -> Result<ImapConfig, String> {
    let u = parse_server_url(
        s,
        &Schemes {
            plain: ("imap", 143),
            implicit: ("imaps", 993),
            example: "imaps://user:password@imap.example.com/INBOX",
        },
    )?;
    if u.user.is_empty() {
        return Err("needs a user and password: imaps://user:password@host/INBOX".into());
    }
    Ok(ImapConfig {
        host: u.host,
        port: u.port,
        tls: u.tls,
        user: u.user,
        password: u.password,
        mailbox: if u.path.is_empty() {
            "INBOX".into()
        } else {
            u.path
        },
        move_to: None,
        interval: std::time::Duration::from_secs(60),
        ca_file: None,
    })
}

pub(super) fn parse_mail_url(s: &str) -> Result<MailTransportConfig, String> {
    if let Some(path) = s.strip_prefix("maildir:") {
        if path.is_empty() {
            return Err("maildir: needs a folder, e.g. maildir:var/outbox".into());
        }
        return Ok(MailTransportConfig::Maildir(PathBuf::from(path)));
    }
    let u = parse_server_url(
        s,
        &Schemes {
            plain: ("smtp", 25),
            implicit: ("smtps", 465),
            example: "maildir:PATH, smtp://host:port or smtps://host:465",
        },
    )?;
    Ok(MailTransportConfig::Smtp {
        host: u.host,
        port: u.port,
        tls: u.tls,
        credentials: (!u.user.is_empty()).then_some((u.user, u.password)),
    })
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub(super) fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        D::Error::custom(format!(
            "{s:?} is not a time zone: use an IANA name such as Europe/Berlin or UTC"
        ))
    })
}

/// `feeds.max_size`: at least 1 kB (no feed is smaller).
pub(super) fn feed_size<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<crate::domain::ByteSize, D::Error> {
    let v = crate::domain::ByteSize::deserialize(d)?;
    if v.0 < 1_000 {
        return Err(D::Error::custom("must be at least 1kB"));
    }
    Ok(v)
}

/// `console.session_idle`: at least a minute (a session in use is kept alive at most once
/// a minute, and a shorter limit would end sessions mid-work).
pub(super) fn session_idle<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let v = HumanDuration::deserialize(d)?;
    if v.0 < std::time::Duration::from_secs(60) {
        return Err(D::Error::custom("must be at least 1m"));
    }
    Ok(v)
}

/// `delivery.instance_timeout`: at least 3s (heartbeats go every sixth of it).
pub(super) fn instance_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let v = HumanDuration::deserialize(d)?;
    if v.0 < std::time::Duration::from_secs(3) {
        return Err(D::Error::custom(
            "must be at least 3s (heartbeats are sent every sixth of it)",
        ));
    }
    Ok(v)
}

/// `delivery.shutdown_grace`: at most 10m.
pub(super) fn shutdown_grace<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let v = HumanDuration::deserialize(d)?;
    if v.0 > std::time::Duration::from_secs(600) {
        return Err(D::Error::custom(
            "must be at most 10m (a stop that waits longer is killed by the service manager)",
        ));
    }
    Ok(v)
}

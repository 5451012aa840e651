//! Typed configuration: the embedded defaults (`config/herald.toml`), then an optional
//! file, then `HERALD_*` environment variables. Every error names the key and what is wrong,
//! and `herald` exits with status 2 on it.

mod check;
mod fields;

use crate::domain::HumanDuration;
pub use fields::{HexColour, LanguageTag};
use serde::Deserialize;
use std::{net::IpAddr, net::SocketAddr, path::PathBuf};

/// The defaults, compiled in so `herald serve` runs with no file at all.
pub const DEFAULTS: &str = include_str!("../../config/herald.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("unknown config key `{0}` (check the spelling against config/herald.toml)")]
    UnknownKey(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(deserialize_with = "fields::secret_key")]
    secret_key: Option<Secret>,
    database: DatabaseConfig,
    http: RawHttp,
    site: SiteConfig,
    mail: RawMail,
    subscriptions: SubscriptionsConfig,
    delivery: DeliveryConfig,
    digests: DigestsConfig,
    feeds: FeedsConfig,
    bounces: RawBounces,
    console: ConsoleConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    #[serde(deserialize_with = "fields::optional_address")]
    listen: Option<SocketAddr>,
    #[serde(deserialize_with = "fields::imap_url")]
    imap_url: Option<ImapConfig>,
    #[serde(deserialize_with = "fields::nonzero")]
    imap_interval: HumanDuration,
    #[serde(deserialize_with = "fields::optional_text")]
    imap_move_to: Option<String>,
    #[serde(deserialize_with = "fields::optional_text")]
    imap_tls_ca_file: Option<String>,
    #[serde(deserialize_with = "fields::comma_list")]
    sns_certificates: Vec<String>,
    #[serde(deserialize_with = "fields::comma_list")]
    sns_topics: Vec<String>,
    #[serde(deserialize_with = "fields::positive")]
    soft_limit: u32,
    #[serde(deserialize_with = "fields::nonzero")]
    soft_window: HumanDuration,
    keep_raw: HumanDuration,
}

/// Returned mail: where herald listens for it and what it does (see `src/returned/`).
#[derive(Debug, Clone)]
pub struct ReturnedConfig {
    /// An SMTP listener for mail to `mail.return_path`'s domain; None: off.
    pub listen: Option<SocketAddr>,
    /// A mailbox to read returned mail from; None: off.
    pub imap: Option<ImapConfig>,
    /// Amazon SES notifications by SNS: the certificates and topics that are trusted;
    /// None: `POST /api/v1/webhooks/ses` is off. (The certificates are read by
    /// `keys::Keys::load`.)
    pub sns: Option<SnsSpec>,
    /// This many temporary failures of one address within `soft_window` suppress it.
    pub soft_limit: u32,
    pub soft_window: HumanDuration,
    /// How long a returned message's raw text is kept (its record stays).
    pub keep_raw: HumanDuration,
}

/// The staff and operator console at `/admin` (see `src/web/console/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session unused this long ends.
    #[serde(deserialize_with = "fields::session_idle")]
    pub session_idle: HumanDuration,
    /// A session ends this long after its login, however used.
    #[serde(deserialize_with = "fields::nonzero")]
    pub session_lifetime: HumanDuration,
    /// Failed logins allowed per account, and per client IP, within `login_window`.
    #[serde(deserialize_with = "fields::positive")]
    pub login_limit: u32,
    pub login_window: HumanDuration,
}

/// `bounces.imap_url` and its companions: a mailbox herald reads returned mail from.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    /// `imaps://`: TLS from the first byte; `?tls=required`: STARTTLS; else plain text.
    pub tls: Tls,
    pub user: String,
    pub password: Secret,
    pub mailbox: String,
    /// Where messages herald understood go after it acted on them; None: they stay, marked
    /// read.
    pub move_to: Option<String>,
    pub interval: std::time::Duration,
    /// `bounces.imap_tls_ca_file`: the server's certificate must chain to one of the
    /// certificates in this PEM file, and to nothing else; None: the system's trusted roots.
    /// Read by `keys::Keys::load`.
    pub ca_file: Option<String>,
}

impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("mailbox", &self.mailbox)
            .field("move_to", &self.move_to)
            .field("interval", &self.interval)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestsConfig {
    #[serde(deserialize_with = "fields::nonzero")]
    pub tick_interval: HumanDuration,
    pub max_lateness: HumanDuration,
    pub first_lookback: HumanDuration,
    /// Articles per section in one digest; the rest are a line "and N more in Section".
    #[serde(deserialize_with = "fields::between::<_, 1, 1000>")]
    pub max_articles: u32,
    /// Publish each issue at `/archive/{schedule}/{issue}` (and link it from the mail).
    pub archive: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    #[serde(deserialize_with = "fields::nonzero")]
    pub poll_interval: HumanDuration,
    #[serde(deserialize_with = "fields::nonzero")]
    pub timeout: HumanDuration,
    /// A feed document larger than this is refused (counted while it is read).
    #[serde(deserialize_with = "fields::feed_size")]
    pub max_size: crate::domain::ByteSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    key_file: String,
    selector: String,
    domain: String,
    /// More keys, each signing: `[[mail.dkim.keys]]` tables, or from the environment
    /// `SELECTOR:KEY_FILE[:DOMAIN]` items separated by commas.
    keys: Vec<RawDkimKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawDkimKey {
    Table(RawDkimKeyTable),
    Short(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkimKeyTable {
    selector: String,
    key_file: String,
    #[serde(default)]
    domain: String,
}

/// A value that must not appear in logs or `Debug` output (passwords, the secret key,
/// tokens): it prints as `[redacted]`; `expose` gives the value to the code that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(deserialize_with = "fields::database_url")]
    pub url: String,
    #[serde(deserialize_with = "fields::positive")]
    pub max_connections: u32,
}

/// The URL without its password (`postgres://herald:[redacted]@db/herald`).
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("[redacted]"));
                u.to_string()
            }
            _ => self.url.clone(),
        };
        f.debug_struct("DatabaseConfig")
            .field("url", &url)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(deserialize_with = "fields::address")]
    listen: SocketAddr,
    public_url: String,
    #[serde(deserialize_with = "fields::ip_list")]
    trusted_proxies: Vec<IpAddr>,
    #[serde(deserialize_with = "fields::optional_address")]
    metrics_listen: Option<SocketAddr>,
    #[serde(deserialize_with = "fields::optional_secret::<_, 16>")]
    metrics_token: Option<Secret>,
    #[serde(deserialize_with = "fields::nonzero")]
    header_timeout: HumanDuration,
    #[serde(deserialize_with = "fields::nonzero")]
    request_timeout: HumanDuration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Without a trailing slash.
    pub public_url: String,
    pub trusted_proxies: Vec<IpAddr>,
    /// Where `/metrics` is served for Prometheus, apart from the public pages (None: not
    /// on a listener of its own).
    pub metrics_listen: Option<SocketAddr>,
    /// With a token, `/metrics` is also served on the public listener to requests that
    /// carry `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// A client must send its request headers within this, and an idle keep-alive
    /// connection is closed after it.
    pub header_timeout: std::time::Duration,
    /// A whole request (body and handler) must finish within this: 408 otherwise.
    pub request_timeout: std::time::Duration,
    /// `public_url` was left at its default while `listen` was changed, so it was made
    /// from `listen` (mailed links would otherwise point at the default port).
    pub public_url_derived: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    #[serde(deserialize_with = "fields::name")]
    pub name: String,
    pub url: String,
    #[serde(deserialize_with = "fields::one_line")]
    pub postal_address: String,
    #[serde(deserialize_with = "fields::optional_http_url")]
    pub logo_url: String,
    pub accent_color: HexColour,
    #[serde(deserialize_with = "fields::one_line")]
    pub footer_text: String,
    /// The language of the mails and pages (`lang` on their HTML), e.g. "en", "pt-BR".
    pub language: LanguageTag,
    /// The logo's size in the mail, in CSS pixels (mail clients need both to lay it out
    /// before images load, or when they never do).
    #[serde(deserialize_with = "fields::between::<_, 1, 2000>")]
    pub logo_width: u32,
    #[serde(deserialize_with = "fields::between::<_, 1, 2000>")]
    pub logo_height: u32,
    /// The newsroom's time zone: the console shows every time in it.
    #[serde(deserialize_with = "fields::timezone")]
    pub timezone: chrono_tz::Tz,
    /// `url` was left at its default, so it was made from `http.public_url` (the mails'
    /// masthead and footer would otherwise link to a port on loopback).
    #[serde(skip)]
    pub url_derived: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    #[serde(deserialize_with = "fields::mail_url")]
    url: MailTransportConfig,
    #[serde(deserialize_with = "fields::mailbox")]
    from: lettre::message::Mailbox,
    #[serde(deserialize_with = "fields::optional_domain")]
    domain: String,
    #[serde(deserialize_with = "fields::list_id")]
    list_id: String,
    #[serde(deserialize_with = "fields::optional_email")]
    unsubscribe_mailto: Option<lettre::Address>,
    #[serde(deserialize_with = "fields::list_help")]
    list_help: Option<String>,
    #[serde(deserialize_with = "fields::return_path")]
    return_path: Option<lettre::Address>,
    #[serde(deserialize_with = "fields::nonzero")]
    send_timeout: HumanDuration,
    connect_timeout: HumanDuration,
    idle_timeout: HumanDuration,
    #[serde(deserialize_with = "fields::optional_text")]
    helo_name: Option<String>,
    #[serde(deserialize_with = "fields::optional_text")]
    tls_ca_file: Option<String>,
    dkim: RawDkim,
}

/// Where mail goes, parsed from `mail.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransportConfig {
    Maildir(PathBuf),
    Smtp {
        host: String,
        port: u16,
        tls: Tls,
        credentials: Option<(String, Secret)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text, for a relay on the same host or network.
    None,
    /// STARTTLS, required: refuse to send if the server does not offer it.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransportConfig,
    pub from: lettre::message::Mailbox,
    pub domain: String,
    pub list_id: String,
    pub unsubscribe_mailto: Option<lettre::Address>,
    /// `List-Help` (RFC 2369) on list mail: an https URL or a `mailto:` address.
    pub list_help: Option<String>,
    /// Where returned mail goes: each message's envelope sender is `local+<ref>@domain`
    /// (VERP) and its List-Unsubscribe mailto `unsubscribe+<ref>@domain`. None: the From.
    pub return_path: Option<lettre::Address>,
    pub send_timeout: HumanDuration,
    pub connect_timeout: HumanDuration,
    /// A delivery worker with nothing to send this long closes its SMTP connection.
    pub idle_timeout: HumanDuration,
    pub helo_name: Option<String>,
    /// `mail.tls_ca_file`: the relay's certificate must chain to one of the certificates in
    /// this PEM file, and to nothing else; None: the system's trusted roots. Read by
    /// `keys::Keys::load`.
    pub tls_ca_file: Option<String>,
    /// DKIM keys to sign with, in order (none: no signature). Their files are read and
    /// checked by `keys::Keys::load`, a step of its own after the settings are parsed.
    pub dkim_keys: Vec<DkimKeySpec>,
}

/// One DKIM key as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeySpec {
    /// The key that names it, for errors: `mail.dkim.key_file` or `mail.dkim.keys[N]`.
    pub key: String,
    pub selector: String,
    pub key_file: String,
    /// The signing domain (`d=`).
    pub domain: String,
}

/// The SNS signing certificates (files) and topic ARNs `bounces.sns_*` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsSpec {
    pub certificates: Vec<String>,
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    #[serde(deserialize_with = "fields::nonzero")]
    pub confirm_ttl: HumanDuration,
    pub resend_cooldown: HumanDuration,
    #[serde(deserialize_with = "fields::positive")]
    pub rate_limit_per_ip: u32,
    pub rate_limit_window: HumanDuration,
    pub purge_pending_after: HumanDuration,
    #[serde(deserialize_with = "fields::nonzero")]
    pub purge_interval: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(deserialize_with = "fields::between::<_, 1, 1000>")]
    pub connections: u32,
    pub rate_per_second: u32,
    #[serde(deserialize_with = "fields::between::<_, 1, 10000>")]
    pub batch_size: u32,
    #[serde(deserialize_with = "fields::nonzero")]
    pub lease: HumanDuration,
    #[serde(deserialize_with = "fields::nonzero")]
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    pub max_age: HumanDuration,
    #[serde(deserialize_with = "fields::nonzero")]
    pub poll_interval: HumanDuration,
    #[serde(deserialize_with = "fields::instance_timeout")]
    pub instance_timeout: HumanDuration,
    /// At SIGTERM, how long a worker may still wait for the server's answer to the message
    /// it is sending; past it the message is left to be retried and `serve` exits.
    #[serde(deserialize_with = "fields::shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// A receiving domain that refused this many of herald's last `pause_window` sends to
    /// it for policy reasons (5.7.x / 4.7.x: a blocklisting) is paused.
    #[serde(deserialize_with = "fields::positive")]
    pub pause_after: u32,
    #[serde(deserialize_with = "fields::between::<_, 1, 128>")]
    pub pause_window: u32,
    /// The first pause; each pause that follows within a day doubles it, up to pause_max.
    #[serde(deserialize_with = "fields::nonzero")]
    pub pause_first: HumanDuration,
    pub pause_max: HumanDuration,
}

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Empty when not configured: the app then loads or creates a persistent one.
    pub secret_key: Option<Secret>,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub site: SiteConfig,
    pub mail: MailConfig,
    pub subscriptions: SubscriptionsConfig,
    pub delivery: DeliveryConfig,
    pub digests: DigestsConfig,
    pub feeds: FeedsConfig,
    pub bounces: ReturnedConfig,
    pub console: ConsoleConfig,
}

/// Variables that start with HERALD_ but are not config keys.
const NON_KEY_VARS: &[&str] = &["HERALD_CONFIG", "HERALD_LOG", "HERALD_LOG_FORMAT"];

impl Config {
    /// What is allowed but probably wrong: said by `check-config` and at `serve`'s start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.site.url_derived {
            out.push(format!(
                "site.url is not set: the mails' masthead, footer and \"and N more\" links go to \
                 {} (from http.public_url); set site.url to the news site's home page",
                self.site.url
            ));
        }
        if self.http.public_url_derived {
            out.push(format!(
                "http.public_url is not set: links in mail and on pages use {} (from \
                 http.listen); set http.public_url to the address readers reach herald at",
                self.http.public_url
            ));
        }
        if let Ok(u) = url::Url::parse(&self.http.public_url) {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if u.scheme() != "https" && !loopback {
                out.push(format!(
                    "http.public_url {:?} is not https: mailbox providers offer one-click \
                     unsubscribe (RFC 8058) only for https links, and readers' links travel in clear",
                    self.http.public_url
                ));
            }
        }
        out
    }

    /// Defaults + optional file + the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("HERALD_") && !k.starts_with("HERALD_TEST_"))
            .collect();
        let file_text = match file {
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_sources(
            file_text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            &env,
        )
    }

    /// The embedded defaults alone, with overrides given as (dotted key, value) — for tests
    /// and tools that build a config in code.
    pub fn defaults_with(overrides: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| {
                (
                    format!("HERALD_{}", k.replace('.', "__").to_uppercase()),
                    v.to_string(),
                )
            })
            .collect();
        Self::from_sources(None, &env)
    }

    fn from_sources(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = DEFAULTS.parse().expect("embedded defaults are valid TOML");
        if let Some((path, text)) = file {
            let overlay: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.to_string(),
                        message: e.message().to_string(),
                    })?;
            merge(&mut table, overlay, "")?;
        }
        for (var, value) in env {
            if NON_KEY_VARS.contains(&var.as_str()) {
                continue;
            }
            let path: Vec<String> = var["HERALD_".len()..]
                .split("__")
                .map(|p| p.to_lowercase())
                .collect();
            set_from_env(&mut table, &path, value)?;
        }
        // Deserialise from text, not from the table, so the error carries a span we can turn
        // into the dotted key the user has to fix.
        let text = toml::to_string(&table).expect("a TOML table serialises");
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let key = e
                .span()
                .map(|span| key_at(&text, span.start))
                .unwrap_or_else(|| "(config)".to_string());
            invalid(&key, e.message().to_string())
        })?;
        raw.check()
    }
}

/// The dotted key whose value starts at byte `pos` of a serialised table.
fn key_at(text: &str, pos: usize) -> String {
    let mut section = String::new();
    let mut key = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > pos {
            break;
        }
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = h.trim().to_string();
        } else if let Some((k, _)) = t.split_once('=') {
            key = k.trim().to_string();
        }
        offset += line.len();
    }
    if section.is_empty() {
        key
    } else {
        format!("{section}.{key}")
    }
}

/// Overlay `src` on `dst`, refusing keys the defaults do not have (a typo must not be
/// silently ignored).
fn merge(dst: &mut toml::Table, src: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in src {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (dst.get_mut(&k), v) {
            (None, _) => return Err(ConfigError::UnknownKey(key)),
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s, &key)?,
            (Some(toml::Value::Table(_)), _) => {
                return Err(invalid(&key, "must be a table ([section])"));
            }
            (Some(slot), v) => *slot = v,
        }
    }
    Ok(())
}

/// Environment values are text; convert to the type the default has at that key.
fn set_from_env(table: &mut toml::Table, path: &[String], value: &str) -> Result<(), ConfigError> {
    let key = path.join(".");
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| ConfigError::UnknownKey(key.clone()))?;
    let mut t = table;
    for p in parents {
        t = match t.get_mut(p) {
            Some(toml::Value::Table(inner)) => inner,
            _ => return Err(ConfigError::UnknownKey(key)),
        };
    }
    let slot = t
        .get_mut(last)
        .ok_or_else(|| ConfigError::UnknownKey(key.clone()))?;
    *slot = match slot {
        toml::Value::Integer(_) => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| invalid(&key, format!("expected a whole number, got {value:?}")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            value
                .trim()
                .parse()
                .map_err(|_| invalid(&key, format!("expected true or false, got {value:?}")))?,
        ),
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        toml::Value::Table(_) => return Err(invalid(&key, "is a section, not a value")),
        _ => toml::Value::String(value.to_string()),
    };
    Ok(())
}

#[cfg(test)]
mod tests;

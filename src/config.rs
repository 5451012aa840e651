//! Typed configuration: the embedded defaults (`config/herald.toml`), then an optional
//! file, then `HERALD_*` environment variables. Every error names the key and what is wrong,
//! and `herald` exits with status 2 on it.

use crate::domain::HumanDuration;
use serde::Deserialize;
use std::{net::IpAddr, net::SocketAddr, path::PathBuf};

/// The defaults, compiled in so `herald serve` runs with no file at all.
pub const DEFAULTS: &str = include_str!("../config/herald.toml");

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
    secret_key: String,
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
    listen: String,
    imap_url: String,
    imap_interval: HumanDuration,
    imap_move_to: String,
    imap_tls_ca_file: String,
    sns_certificates: String,
    sns_topics: String,
    soft_limit: u32,
    soft_window: HumanDuration,
    keep_raw: HumanDuration,
}

/// Returned mail: where herald listens for it and what it does (see `src/bounces/`).
#[derive(Debug, Clone)]
pub struct BouncesConfig {
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
    pub session_idle: HumanDuration,
    /// A session ends this long after its login, however used.
    pub session_lifetime: HumanDuration,
    /// Failed logins allowed per account, and per client IP, within `login_window`.
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
    /// `bounces.imap_tls_ca_file`: the server's certificate must chain to one of these
    /// (DER), and to nothing else; None: the system's trusted roots.
    pub ca: Option<std::sync::Arc<Vec<Vec<u8>>>>,
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
    pub tick_interval: HumanDuration,
    pub max_lateness: HumanDuration,
    pub first_lookback: HumanDuration,
    /// Articles per section in one digest; the rest are a line "and N more in Section".
    pub max_articles: u32,
    /// Publish each issue at `/archive/{schedule}/{issue}` (and link it from the mail).
    pub archive: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    pub poll_interval: HumanDuration,
    pub timeout: HumanDuration,
    /// A feed document larger than this is refused (counted while it is read).
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
    pub url: String,
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
    listen: String,
    public_url: String,
    trusted_proxies: Vec<String>,
    metrics_listen: String,
    metrics_token: String,
    header_timeout: HumanDuration,
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
    pub name: String,
    pub url: String,
    pub postal_address: String,
    pub logo_url: String,
    pub accent_color: String,
    pub footer_text: String,
    /// The language of the mails and pages (`lang` on their HTML), e.g. "en", "pt-BR".
    pub language: String,
    /// The logo's size in the mail, in CSS pixels (mail clients need both to lay it out
    /// before images load, or when they never do).
    pub logo_width: u32,
    pub logo_height: u32,
    /// `url` was left at its default, so it was made from `http.public_url` (the mails'
    /// masthead and footer would otherwise link to a port on loopback).
    #[serde(skip)]
    pub url_derived: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    url: String,
    from: String,
    domain: String,
    list_id: String,
    unsubscribe_mailto: String,
    list_help: String,
    return_path: String,
    send_timeout: HumanDuration,
    connect_timeout: HumanDuration,
    idle_timeout: HumanDuration,
    helo_name: String,
    tls_ca_file: String,
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
    /// `mail.tls_ca_file`: the relay's certificate must chain to one of these (PEM), and to
    /// nothing else; None: the system's trusted roots.
    pub tls_ca: Option<std::sync::Arc<Vec<Vec<u8>>>>,
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
    pub confirm_ttl: HumanDuration,
    pub resend_cooldown: HumanDuration,
    pub rate_limit_per_ip: u32,
    pub rate_limit_window: HumanDuration,
    pub purge_pending_after: HumanDuration,
    pub purge_interval: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub connections: u32,
    pub rate_per_second: u32,
    pub batch_size: u32,
    pub lease: HumanDuration,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    pub max_age: HumanDuration,
    pub poll_interval: HumanDuration,
    pub instance_timeout: HumanDuration,
    /// At SIGTERM, how long a worker may still wait for the server's answer to the message
    /// it is sending; past it the message is left to be retried and `serve` exits.
    pub shutdown_grace: HumanDuration,
    /// A receiving domain that refused this many of herald's last `pause_window` sends to
    /// it for policy reasons (5.7.x / 4.7.x: a blocklisting) is paused.
    pub pause_after: u32,
    pub pause_window: u32,
    /// The first pause; each pause that follows within a day doubles it, up to pause_max.
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
    pub bounces: BouncesConfig,
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

impl RawConfig {
    fn check(mut self) -> Result<Config, ConfigError> {
        let secret_key = if self.secret_key.is_empty() {
            None
        } else if self.secret_key.len() < crate::domain::SecretKey::MIN_LEN {
            return Err(invalid(
                "secret_key",
                format!(
                    "must be at least {} characters (generate one with `herald secret`)",
                    crate::domain::SecretKey::MIN_LEN
                ),
            ));
        } else {
            Some(Secret(self.secret_key))
        };

        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                format!("{db:?} is neither `sqlite:PATH` nor `postgres://…`"),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }

        let listen: SocketAddr = self.http.listen.parse().map_err(|_| {
            invalid(
                "http.listen",
                format!(
                    "{:?} is not an address:port such as 127.0.0.1:8080",
                    self.http.listen
                ),
            )
        })?;
        // Left at the default while the listener moved: links follow the listener (an
        // unspecified address becomes loopback, with a warning) instead of pointing at a
        // port nothing listens on.
        let default_listen: SocketAddr = "127.0.0.1:8080".parse().expect("a valid address");
        let public_url_derived = self.http.public_url.trim_end_matches('/')
            == "http://127.0.0.1:8080"
            && listen != default_listen;
        if public_url_derived {
            let ip = match listen.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            self.http.public_url = format!("http://{}", SocketAddr::new(ip, listen.port()));
        }
        let public = url::Url::parse(&self.http.public_url).map_err(|e| {
            invalid(
                "http.public_url",
                format!("{:?} is not a URL: {e}", self.http.public_url),
            )
        })?;
        if !matches!(public.scheme(), "http" | "https") || public.host_str().is_none() {
            return Err(invalid(
                "http.public_url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        let metrics_listen = match self.http.metrics_listen.trim() {
            "" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "http.metrics_listen",
                    format!("{a:?} is not an address:port such as 127.0.0.1:9464"),
                )
            })?),
        };
        if metrics_listen == Some(listen) {
            return Err(invalid(
                "http.metrics_listen",
                "must differ from http.listen (metrics are not for the public)",
            ));
        }
        let metrics_token = match self.http.metrics_token.trim() {
            "" => None,
            t if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(invalid(
                    "http.metrics_token",
                    "must be at least 16 printable characters without spaces",
                ));
            }
            t => Some(Secret(t.to_string())),
        };
        let trusted_proxies = self
            .http
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        "http.trusted_proxies",
                        format!("{p:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        for (key, v) in [
            ("site.name", &self.site.name),
            ("site.postal_address", &self.site.postal_address),
        ] {
            if crate::domain::has_control_chars(v) {
                return Err(invalid(
                    key,
                    "must not contain line breaks or control characters",
                ));
            }
        }
        for (key, v) in [
            ("site.footer_text", &self.site.footer_text),
            ("site.logo_url", &self.site.logo_url),
        ] {
            if crate::domain::has_control_chars(v) {
                return Err(invalid(
                    key,
                    "must not contain line breaks or control characters",
                ));
            }
        }
        let lang = &self.site.language;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                "site.language",
                format!("{lang:?} is not a language tag like en or pt-BR"),
            ));
        }
        for (key, v) in [
            ("site.logo_width", self.site.logo_width),
            ("site.logo_height", self.site.logo_height),
        ] {
            if v == 0 || v > 2000 {
                return Err(invalid(key, "must be 1 to 2000 pixels"));
            }
        }
        if self.digests.max_articles == 0 || self.digests.max_articles > 1000 {
            return Err(invalid("digests.max_articles", "must be 1 to 1000"));
        }
        let c = &self.site.accent_color;
        if !(c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit())) {
            return Err(invalid(
                "site.accent_color",
                format!("{c:?} is not a colour like #1a4d8f"),
            ));
        }
        if !self.site.logo_url.is_empty()
            && !self.site.logo_url.starts_with("https://")
            && !self.site.logo_url.starts_with("http://")
        {
            return Err(invalid("site.logo_url", "must be an http(s) URL"));
        }
        // Left at its default while the public address is elsewhere: the site's home is
        // the public address's origin, not herald's default port on loopback.
        if self.site.url.trim_end_matches('/') == "http://127.0.0.1:8080" {
            let origin = public.origin().ascii_serialization();
            if origin != "http://127.0.0.1:8080" {
                self.site.url = format!("{origin}/");
                self.site.url_derived = true;
            }
        }
        let site_ok =
            url::Url::parse(&self.site.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !site_ok {
            return Err(invalid(
                "site.url",
                format!("{:?} is not an http(s) URL", self.site.url),
            ));
        }
        if self.site.name.trim().is_empty() {
            return Err(invalid("site.name", "must not be empty"));
        }

        let transport = parse_mail_url(&self.mail.url)?;
        let from: lettre::message::Mailbox = self.mail.from.parse().map_err(|e| {
            invalid(
                "mail.from",
                format!(
                    "{:?} is not a mailbox like `Name <addr@domain>`: {e}",
                    self.mail.from
                ),
            )
        })?;
        let domain = if self.mail.domain.is_empty() {
            from.email.domain().to_string()
        } else {
            self.mail.domain.clone()
        };
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(invalid(
                "mail.domain",
                format!("{domain:?} is not a domain name"),
            ));
        }
        if self.mail.list_id.is_empty()
            || !self
                .mail
                .list_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(invalid(
                "mail.list_id",
                "use letters, digits, dots and dashes",
            ));
        }
        let unsubscribe_mailto = if self.mail.unsubscribe_mailto.is_empty() {
            None
        } else {
            Some(
                self.mail
                    .unsubscribe_mailto
                    .parse()
                    .map_err(|_| invalid("mail.unsubscribe_mailto", "is not an email address"))?,
            )
        };
        let list_help = match self.mail.list_help.trim() {
            "" => None,
            h => {
                let ok = match h.strip_prefix("mailto:") {
                    Some(a) => a.parse::<lettre::Address>().is_ok(),
                    None => url::Url::parse(h)
                        .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host()),
                };
                if !ok || h.contains(['<', '>', ',', ' ', '\r', '\n']) {
                    return Err(invalid(
                        "mail.list_help",
                        format!("{h:?} is not an https URL or mailto:ADDRESS"),
                    ));
                }
                Some(h.to_string())
            }
        };
        let return_path: Option<lettre::Address> = match self.mail.return_path.trim() {
            "" => None,
            a => {
                let addr: lettre::Address = a.parse().map_err(|_| {
                    invalid("mail.return_path", format!("{a:?} is not an email address"))
                })?;
                if addr.user().contains('+') || !addr.user().is_ascii() || !addr.domain().is_ascii()
                {
                    return Err(invalid(
                        "mail.return_path",
                        "use a plain ASCII address without '+' (herald adds +<ref> to it)",
                    ));
                }
                Some(addr)
            }
        };
        let bounces_listen = match self.bounces.listen.trim() {
            "" => None,
            a => Some(a.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "bounces.listen",
                    format!("{a:?} is not an address:port such as 127.0.0.1:2525"),
                )
            })?),
        };
        if self.bounces.soft_limit == 0 {
            return Err(invalid("bounces.soft_limit", "must be at least 1"));
        }
        if self.bounces.soft_window.0.is_zero() {
            return Err(invalid("bounces.soft_window", "must be more than 0s"));
        }
        if bounces_listen.is_some() && return_path.is_none() {
            return Err(invalid(
                "bounces.listen",
                "needs mail.return_path (the address returned mail is sent to)",
            ));
        }
        let imap = match self.bounces.imap_url.trim() {
            "" => None,
            u => {
                if return_path.is_none() {
                    return Err(invalid(
                        "bounces.imap_url",
                        "needs mail.return_path (herald reads only mail sent to its addresses)",
                    ));
                }
                if self.bounces.imap_interval.0.is_zero() {
                    return Err(invalid("bounces.imap_interval", "must be more than 0s"));
                }
                let mut c = parse_imap_url(u)?;
                c.interval = self.bounces.imap_interval.0;
                c.move_to = match self.bounces.imap_move_to.trim() {
                    "" => None,
                    f if f.eq_ignore_ascii_case(&c.mailbox) => {
                        return Err(invalid(
                            "bounces.imap_move_to",
                            "must be another folder than the one read",
                        ));
                    }
                    f => Some(f.to_string()),
                };
                c.ca = read_ca("bounces.imap_tls_ca_file", &self.bounces.imap_tls_ca_file)?;
                if c.ca.is_some() && c.tls == Tls::None {
                    return Err(invalid(
                        "bounces.imap_tls_ca_file",
                        "is for TLS: use imaps://, or imap://…?tls=required",
                    ));
                }
                Some(c)
            }
        };
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (certs, topics) = (
            list(&self.bounces.sns_certificates),
            list(&self.bounces.sns_topics),
        );
        let sns = match (certs.is_empty(), topics.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(invalid(
                    "bounces.sns_topics",
                    "name the SNS topic ARNs to accept (anyone can make a topic AWS signs)",
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "bounces.sns_certificates",
                    "name the certificate file(s) SNS signs with (its SigningCertURL)",
                ));
            }
            (false, false) => Some(SnsSpec {
                certificates: certs,
                topics,
            }),
        };
        if self.mail.send_timeout.0.is_zero() {
            return Err(invalid("mail.send_timeout", "must be more than 0s"));
        }
        if self.console.session_idle.0.is_zero() || self.console.session_lifetime.0.is_zero() {
            return Err(invalid(
                "console.session_idle",
                "console.session_idle and console.session_lifetime must be more than 0s",
            ));
        }
        if self.console.login_limit == 0 {
            return Err(invalid("console.login_limit", "must be at least 1"));
        }
        // EHLO names the site, as its public address does; a bare machine name (or an IP
        // address in public_url) says nothing a receiver can check, so then the machine's.
        let helo_name = if self.mail.helo_name.is_empty() {
            public
                .host_str()
                .filter(|h| {
                    h.contains('.')
                        && h.parse::<IpAddr>().is_err()
                        && !h.starts_with('[')
                        && *h != "localhost"
                })
                .map(str::to_string)
        } else {
            Some(self.mail.helo_name)
        };
        let tls_ca = read_ca("mail.tls_ca_file", &self.mail.tls_ca_file)?;
        let dkim = {
            let default_domain = if self.mail.dkim.domain.is_empty() {
                domain.clone()
            } else {
                self.mail.dkim.domain.clone()
            };
            // (the key's name in messages, selector, key file, domain)
            let mut wanted: Vec<(String, String, String, String)> = Vec::new();
            if !self.mail.dkim.key_file.is_empty() {
                if self.mail.dkim.selector.is_empty() {
                    return Err(invalid("mail.dkim.selector", "must not be empty"));
                }
                wanted.push((
                    "mail.dkim.key_file".into(),
                    self.mail.dkim.selector.clone(),
                    self.mail.dkim.key_file.clone(),
                    default_domain.clone(),
                ));
            }
            for (i, k) in self.mail.dkim.keys.iter().enumerate() {
                let name = format!("mail.dkim.keys[{i}]");
                let (selector, key_file, d) = match k {
                    RawDkimKey::Table(t) => {
                        (t.selector.clone(), t.key_file.clone(), t.domain.clone())
                    }
                    RawDkimKey::Short(text) => {
                        let mut parts = text.splitn(3, ':');
                        let selector = parts.next().unwrap_or("").trim().to_string();
                        let key_file = parts.next().unwrap_or("").trim().to_string();
                        let d = parts.next().unwrap_or("").trim().to_string();
                        (selector, key_file, d)
                    }
                };
                if selector.is_empty()
                    || !selector
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                {
                    return Err(invalid(
                        &name,
                        format!(
                            "selector {selector:?} must be letters, digits, dots, dashes or underscores"
                        ),
                    ));
                }
                if key_file.is_empty() {
                    return Err(invalid(&name, "key_file must not be empty"));
                }
                let d = if d.is_empty() {
                    default_domain.clone()
                } else {
                    d
                };
                if wanted
                    .iter()
                    .any(|(_, s, _, dd)| *s == selector && *dd == d)
                {
                    return Err(invalid(
                        &name,
                        format!("selector {selector:?} of {d} is listed twice"),
                    ));
                }
                wanted.push((name, selector, key_file, d));
            }
            wanted
                .into_iter()
                .map(|(key, selector, key_file, domain)| DkimKeySpec {
                    key,
                    selector,
                    key_file,
                    domain,
                })
                .collect::<Vec<_>>()
        };
        for (key, d) in [
            ("digests.tick_interval", self.digests.tick_interval),
            ("http.header_timeout", self.http.header_timeout),
            ("http.request_timeout", self.http.request_timeout),
            ("feeds.poll_interval", self.feeds.poll_interval),
            ("feeds.timeout", self.feeds.timeout),
        ] {
            if d.0.is_zero() {
                return Err(invalid(key, "must be more than 0s"));
            }
        }

        if self.feeds.max_size.0 < 1_000 {
            return Err(invalid("feeds.max_size", "must be at least 1kB"));
        }
        if self.subscriptions.rate_limit_per_ip == 0 {
            return Err(invalid(
                "subscriptions.rate_limit_per_ip",
                "must be at least 1",
            ));
        }
        if self.subscriptions.confirm_ttl.0.is_zero() {
            return Err(invalid("subscriptions.confirm_ttl", "must be more than 0s"));
        }
        if self.subscriptions.purge_interval.0.is_zero() {
            return Err(invalid(
                "subscriptions.purge_interval",
                "must be more than 0s",
            ));
        }
        if self.delivery.connections == 0 || self.delivery.connections > 1000 {
            return Err(invalid(
                "delivery.connections",
                "must be between 1 and 1000",
            ));
        }
        if self.delivery.batch_size == 0 || self.delivery.batch_size > 10_000 {
            return Err(invalid(
                "delivery.batch_size",
                "must be between 1 and 10000",
            ));
        }
        for (key, d) in [
            ("delivery.lease", self.delivery.lease),
            ("delivery.initial_backoff", self.delivery.initial_backoff),
            ("delivery.poll_interval", self.delivery.poll_interval),
        ] {
            if d.0.is_zero() {
                return Err(invalid(key, "must be more than 0s"));
            }
        }
        // A worker sends a message only while at least one full exchange (connect + send
        // timeouts) is left on its lease, and renews the lease at half-time: a lease shorter
        // than two exchanges could not fence anything.
        let exchange = self.mail.connect_timeout.0 + self.mail.send_timeout.0;
        if self.delivery.lease.0 < exchange * 2 {
            return Err(invalid(
                "delivery.lease",
                format!(
                    "must be at least twice mail.connect_timeout + mail.send_timeout ({}s here), \
                     so a send always ends before the lease it runs under",
                    (exchange * 2).as_secs()
                ),
            ));
        }
        if !(1..=128).contains(&self.delivery.pause_window) {
            return Err(invalid("delivery.pause_window", "must be 1 to 128 sends"));
        }
        if self.delivery.pause_after == 0 || self.delivery.pause_after > self.delivery.pause_window
        {
            return Err(invalid(
                "delivery.pause_after",
                "must be at least 1 and at most delivery.pause_window",
            ));
        }
        if self.delivery.pause_first.0.is_zero()
            || self.delivery.pause_max.0 < self.delivery.pause_first.0
        {
            return Err(invalid(
                "delivery.pause_max",
                "delivery.pause_first must be above zero and pause_max at least pause_first",
            ));
        }
        if self.delivery.shutdown_grace.0 > std::time::Duration::from_secs(600) {
            return Err(invalid(
                "delivery.shutdown_grace",
                "must be at most 10m (a stop that waits longer is killed by the service manager)",
            ));
        }
        if self.delivery.instance_timeout.0 < std::time::Duration::from_secs(3) {
            return Err(invalid(
                "delivery.instance_timeout",
                "must be at least 3s (heartbeats are sent every sixth of it)",
            ));
        }

        Ok(Config {
            secret_key,
            database: self.database,
            http: HttpConfig {
                listen,
                public_url: self.http.public_url.trim_end_matches('/').to_string(),
                trusted_proxies,
                metrics_listen,
                metrics_token,
                header_timeout: self.http.header_timeout.0,
                request_timeout: self.http.request_timeout.0,
                public_url_derived,
            },
            site: self.site,
            mail: MailConfig {
                transport,
                from,
                domain,
                list_id: self.mail.list_id,
                unsubscribe_mailto,
                list_help,
                return_path,
                send_timeout: self.mail.send_timeout,
                connect_timeout: self.mail.connect_timeout,
                idle_timeout: self.mail.idle_timeout,
                helo_name,
                tls_ca,
                dkim_keys: dkim,
            },
            subscriptions: self.subscriptions,
            delivery: self.delivery,
            digests: self.digests,
            feeds: self.feeds,
            bounces: BouncesConfig {
                listen: bounces_listen,
                imap,
                sns,
                soft_limit: self.bounces.soft_limit,
                soft_window: self.bounces.soft_window,
                keep_raw: self.bounces.keep_raw,
            },
            console: self.console,
        })
    }
}

/// A percent-encoded URL part as written (a `+` stays a `+`: user names such as
/// `bounces+news@example.com` are common).
fn url_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// A private CA's certificates from the PEM file `path` (config key `key`); None if empty.
fn read_ca(key: &str, path: &str) -> Result<Option<std::sync::Arc<Vec<Vec<u8>>>>, ConfigError> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(None);
    }
    let pem =
        std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path:?}: {e}")))?;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(key, format!("{path:?} is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{path:?} holds no certificate (BEGIN CERTIFICATE)"),
        ));
    }
    Ok(Some(std::sync::Arc::new(certs)))
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

fn parse_server_url(key: &str, s: &str, schemes: &Schemes) -> Result<ServerUrl, ConfigError> {
    let u = url::Url::parse(s).map_err(|e| invalid(key, format!("{s:?} is not a URL: {e}")))?;
    let (default_port, mut tls) = match u.scheme() {
        p if p == schemes.plain.0 => (schemes.plain.1, Tls::None),
        i if i == schemes.implicit.0 => (schemes.implicit.1, Tls::Implicit),
        other => {
            return Err(invalid(
                key,
                format!("unknown scheme {other:?}: use {}", schemes.example),
            ));
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid(key, format!("needs a host, e.g. {}", schemes.example)))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    for (k, v) in u.query_pairs() {
        match (k.as_ref(), v.as_ref(), tls) {
            ("tls", "required", Tls::None) => tls = Tls::StartTls,
            ("tls", "required", _) => {}
            ("tls", "none", Tls::None) => {}
            ("tls", other, _) => {
                return Err(invalid(
                    key,
                    format!(
                        "tls={other:?}: use tls=required (STARTTLS), tls=none on {}://, or {}:// for TLS from the first byte",
                        schemes.plain.0, schemes.implicit.0
                    ),
                ));
            }
            (other, _, _) => return Err(invalid(key, format!("unknown parameter {other:?}"))),
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
fn parse_imap_url(s: &str) -> Result<ImapConfig, ConfigError> {
    const KEY: &str = "bounces.imap_url";
    let u = parse_server_url(
        KEY,
        s,
        &Schemes {
            plain: ("imap", 143),
            implicit: ("imaps", 993),
            example: "imaps://user:password@imap.example.com/INBOX",
        },
    )?;
    if u.user.is_empty() {
        return Err(invalid(
            KEY,
            "needs a user and password: imaps://user:password@host/INBOX",
        ));
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
        ca: None,
    })
}

fn parse_mail_url(s: &str) -> Result<MailTransportConfig, ConfigError> {
    const KEY: &str = "mail.url";
    if let Some(path) = s.strip_prefix("maildir:") {
        if path.is_empty() {
            return Err(invalid(
                KEY,
                "maildir: needs a folder, e.g. maildir:var/outbox",
            ));
        }
        return Ok(MailTransportConfig::Maildir(PathBuf::from(path)));
    }
    let u = parse_server_url(
        KEY,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let c = Config::defaults_with(&[]).unwrap();
        assert_eq!(c.database.url, "sqlite:var/herald.db");
        assert_eq!(
            c.mail.transport,
            MailTransportConfig::Maildir("var/outbox".into())
        );
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.mail.domain, "herald.example");
        assert!(c.secret_key.is_none());
    }

    #[test]
    fn env_overrides_and_types() {
        let c = Config::defaults_with(&[
            (
                "mail.url",
                "smtp://news+relay:p%40ss+w@relay.example:587?tls=required",
            ),
            ("delivery.connections", "3"),
            ("http.trusted_proxies", "127.0.0.1, ::1"),
        ])
        .unwrap();
        assert_eq!(
            c.mail.transport,
            MailTransportConfig::Smtp {
                host: "relay.example".into(),
                port: 587,
                tls: Tls::StartTls,
                // A `+` is a plus in a URL's user part, not a space (as in a form).
                credentials: Some(("news+relay".into(), Secret::new("p@ss+w"))),
            }
        );
        assert_eq!(c.delivery.connections, 3);
        assert_eq!(c.http.trusted_proxies.len(), 2);
    }

    /// The error of these settings, or of the key files they name (the step after).
    fn err_of(overrides: &[(&str, &str)]) -> String {
        Config::defaults_with(overrides)
            .and_then(|c| crate::keys::Keys::load(&c).map(|_| c))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err_of(&[("http.listen", "nope")]).contains("http.listen"));
        assert!(err_of(&[("mail.url", "ftp://x")]).contains("mail.url"));
        assert!(err_of(&[("database.url", "mysql://x")]).contains("database.url"));
        assert!(err_of(&[("delivery.connections", "many")]).contains("delivery.connections"));
        assert!(err_of(&[("subscriptions.confirm_ttl", "soon")]).contains("confirm_ttl"));
        assert!(err_of(&[("secret_key", "short")]).contains("secret_key"));
        assert!(err_of(&[("nosuch.key", "1")]).contains("nosuch.key"));
        assert!(err_of(&[("site.url", "javascript:alert(1)")]).contains("site.url"));
        assert!(err_of(&[("site.accent_color", "red;x")]).contains("site.accent_color"));
    }

    /// `mail.url` and `bounces.imap_url` read `tls=` the same way (one parser).
    #[test]
    fn both_server_urls_read_tls_alike() {
        for (plain, implicit) in [
            ("smtp://u:p@h", "smtps://u:p@h"),
            ("imap://u:p@h", "imaps://u:p@h"),
        ] {
            let tls_of = |url: &str| -> Result<Tls, ConfigError> {
                if url.starts_with("smtp") {
                    match parse_mail_url(url)? {
                        MailTransportConfig::Smtp { tls, .. } => Ok(tls),
                        MailTransportConfig::Maildir(_) => unreachable!(),
                    }
                } else {
                    Ok(parse_imap_url(url)?.tls)
                }
            };
            assert_eq!(tls_of(plain).unwrap(), Tls::None);
            assert_eq!(tls_of(&format!("{plain}?tls=none")).unwrap(), Tls::None);
            assert_eq!(
                tls_of(&format!("{plain}?tls=required")).unwrap(),
                Tls::StartTls
            );
            assert_eq!(tls_of(implicit).unwrap(), Tls::Implicit);
            assert_eq!(
                tls_of(&format!("{implicit}?tls=required")).unwrap(),
                Tls::Implicit
            );
            let e = tls_of(&format!("{implicit}?tls=none"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("tls=\"none\""), "{e}");
            let e = tls_of(&format!("{plain}?tls=maybe"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("tls=required"), "{e}");
        }
        let imap = parse_imap_url("imaps://a%40b:p%2Fw@mail.example/Bounces%20In").unwrap();
        assert_eq!(
            (imap.user.as_str(), imap.password.0.as_str()),
            ("a@b", "p/w")
        );
        assert_eq!((imap.mailbox.as_str(), imap.port), ("Bounces In", 993));
    }

    #[test]
    fn links_follow_the_listener_when_public_url_is_left_alone() {
        let c = Config::defaults_with(&[("http.listen", "0.0.0.0:9000")]).unwrap();
        assert_eq!(c.http.public_url, "http://127.0.0.1:9000");
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("http.public_url is not set")),
            "{:?}",
            c.warnings()
        );
        let c = Config::defaults_with(&[("http.listen", "[::]:9001")]).unwrap();
        assert_eq!(c.http.public_url, "http://[::1]:9001");
        let c = Config::defaults_with(&[("http.listen", "127.0.0.1:9002")]).unwrap();
        assert_eq!(c.http.public_url, "http://127.0.0.1:9002");
        let c = Config::defaults_with(&[
            ("http.listen", "0.0.0.0:9000"),
            ("http.public_url", "https://news.example.com/newsletter/"),
        ])
        .unwrap();
        assert_eq!(c.http.public_url, "https://news.example.com/newsletter");
        assert!(
            !c.warnings()
                .iter()
                .any(|w| w.contains("http.public_url is not set"))
        );
        let c = Config::defaults_with(&[]).unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn returned_mail_sources_are_checked() {
        let rp = ("mail.return_path", "bounces@bounces.example.com");
        let c = Config::defaults_with(&[
            rp,
            (
                "bounces.imap_url",
                "imaps://bounces%2Bnews%40example.com:p%40ss+1@imap.example.com/Bounces%20In",
            ),
            ("bounces.imap_move_to", "Done"),
        ])
        .unwrap();
        let imap = c.bounces.imap.unwrap();
        assert_eq!(
            (
                imap.host.as_str(),
                imap.port,
                imap.tls,
                imap.user.as_str(),
                imap.password.expose()
            ),
            (
                "imap.example.com",
                993,
                Tls::Implicit,
                "bounces+news@example.com",
                "p@ss+1"
            )
        );
        assert_eq!(imap.mailbox, "Bounces In");
        assert_eq!(imap.move_to.as_deref(), Some("Done"));
        assert!(
            !format!("{imap:?}").contains("p@ss"),
            "the password is redacted"
        );
        let plain = Config::defaults_with(&[rp, ("bounces.imap_url", "imap://u:p@127.0.0.1/")])
            .unwrap()
            .bounces
            .imap
            .unwrap();
        assert_eq!(
            (plain.port, plain.tls, plain.mailbox.as_str()),
            (143, Tls::None, "INBOX")
        );
        let starttls =
            Config::defaults_with(&[rp, ("bounces.imap_url", "imap://u:p@h?tls=required")])
                .unwrap();
        assert_eq!(starttls.bounces.imap.unwrap().tls, Tls::StartTls);
        for (k, v, why) in [
            ("bounces.imap_url", "pop3://u:p@h", "unknown scheme"),
            ("bounces.imap_url", "imaps://h/INBOX", "needs a user"),
            ("bounces.imap_url", "imaps://u:p@h?tls=maybe", "tls="),
        ] {
            let e = err_of(&[rp, (k, v)]);
            assert!(e.contains(k) && e.contains(why), "{e}");
        }
        let e = err_of(&[("bounces.imap_url", "imaps://u:p@h/INBOX")]);
        assert!(e.contains("mail.return_path"), "{e}");
        let e = err_of(&[
            rp,
            ("bounces.imap_url", "imaps://u:p@h/INBOX"),
            ("bounces.imap_move_to", "inbox"),
        ]);
        assert!(e.contains("bounces.imap_move_to"), "{e}");
        // SES by SNS needs both the certificates and the topics, and a readable certificate.
        let e = err_of(&[("bounces.sns_topics", "arn:aws:sns:us-east-1:1:t")]);
        assert!(e.contains("bounces.sns_certificates"), "{e}");
        let e = err_of(&[("bounces.sns_certificates", "/nonexistent/sns.pem")]);
        assert!(e.contains("bounces.sns_topics"), "{e}");
        let e = err_of(&[
            ("bounces.sns_certificates", "/nonexistent/sns.pem"),
            ("bounces.sns_topics", "arn:aws:sns:us-east-1:1:t"),
        ]);
        assert!(e.contains("cannot read"), "{e}");
        // List-Help: an https URL or a mailto address, nothing that could break the header.
        for ok in [
            "https://news.example.com/help",
            "mailto:help@news.example.com",
        ] {
            let c = Config::defaults_with(&[("mail.list_help", ok)]).unwrap();
            assert_eq!(c.mail.list_help.as_deref(), Some(ok));
        }
        for bad in [
            "help",
            "javascript:alert(1)",
            "mailto:nobody",
            "https://x.example/a>, <b",
        ] {
            assert!(
                err_of(&[("mail.list_help", bad)]).contains("mail.list_help"),
                "{bad}"
            );
        }
    }

    /// Nothing secret reaches a log through `Debug`: passwords in the database and relay
    /// URLs, the secret key, the metrics token, the mailbox password.
    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = Config::defaults_with(&[
            (
                "database.url",
                "postgres://herald:db-pass-1@db.example/herald",
            ),
            (
                "mail.url",
                "smtp://news:relay-pass-2@relay.example:587?tls=required",
            ),
            ("secret_key", "secret-key-secret-key-secret-key-3333"),
            ("http.metrics_token", "metrics-token-4444-4444"),
            ("mail.return_path", "bounces@bounces.example.com"),
            (
                "bounces.imap_url",
                "imaps://b:imap-pass-5@imap.example.com/INBOX",
            ),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "db-pass-1",
            "relay-pass-2",
            "secret-key-secret",
            "metrics-token-4444",
            "imap-pass-5",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("db.example"), "the rest stays readable");
    }

    #[test]
    fn file_keys_are_checked() {
        let e = Config::from_sources(Some(("f.toml", "[http]\nlisen = \"x\"\n")), &[]).unwrap_err();
        assert!(e.to_string().contains("http.lisen"), "{e}");
        let e = Config::from_sources(Some(("f.toml", "[http\n")), &[]).unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
    }

    /// Ed25519 keys as the base64 of their seed: no openssl needed in a unit test.
    fn seed_file(dir: &std::path::Path, name: &str, byte: u8) -> String {
        use base64::Engine;
        let p = dir.join(name);
        std::fs::write(
            &p,
            base64::engine::general_purpose::STANDARD.encode([byte; 32]),
        )
        .unwrap();
        p.display().to_string()
    }

    #[test]
    fn several_dkim_keys_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (seed_file(dir.path(), "a", 1), seed_file(dir.path(), "b", 2));
        let file = format!(
            "[mail.dkim]\nkey_file = \"{a}\"\nselector = \"old\"\n\
             [[mail.dkim.keys]]\nselector = \"new\"\nkey_file = \"{b}\"\ndomain = \"other.example\"\n"
        );
        let c = Config::from_sources(Some(("f.toml", &file)), &[]).unwrap();
        let names: Vec<String> = crate::keys::Keys::load(&c)
            .unwrap()
            .dkim
            .unwrap()
            .keys()
            .iter()
            .map(|k| k.dns_name())
            .collect();
        assert_eq!(
            names,
            [
                "old._domainkey.herald.example",
                "new._domainkey.other.example"
            ]
        );
        let c = Config::defaults_with(&[("mail.dkim.keys", &format!("x:{a},y:{b}"))]).unwrap();
        let signer = crate::keys::Keys::load(&c).unwrap().dkim.unwrap();
        assert_eq!(signer.keys().len(), 2);
        // Wrong ones say which key of the list is wrong.
        let e = err_of(&[("mail.dkim.keys", &format!("x:{a},y:/nonexistent/key"))]);
        assert!(
            e.contains("mail.dkim.keys[1]") && e.contains("/nonexistent/key"),
            "{e}"
        );
        let e = err_of(&[("mail.dkim.keys", &format!("x:{a},x:{b}"))]);
        assert!(e.contains("listed twice"), "{e}");
        let e = err_of(&[("mail.dkim.keys", "bad selector!:/k")]);
        assert!(e.contains("mail.dkim.keys[0]"), "{e}");
        let e = Config::from_sources(
            Some((
                "f.toml",
                "[[mail.dkim.keys]]\nselector = \"s\"\nkeyfile = \"k\"\n",
            )),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("mail.dkim"), "{e}");
    }

    #[test]
    fn the_site_url_follows_the_public_address_when_left_alone() {
        let c =
            Config::defaults_with(&[("http.public_url", "https://news.example.com/newsletter")])
                .unwrap();
        assert_eq!(c.site.url, "https://news.example.com/");
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("site.url is not set"))
        );
        let c = Config::defaults_with(&[("http.listen", "0.0.0.0:9000")]).unwrap();
        assert_eq!(
            c.site.url, "http://127.0.0.1:9000/",
            "public_url followed listen"
        );
        let c = Config::defaults_with(&[
            ("http.public_url", "https://news.example.com/newsletter"),
            ("site.url", "https://www.example.com/"),
        ])
        .unwrap();
        assert_eq!(c.site.url, "https://www.example.com/");
        assert!(!c.warnings().iter().any(|w| w.contains("site.url")));
        let c = Config::defaults_with(&[]).unwrap();
        assert_eq!(
            c.site.url, "http://127.0.0.1:8080",
            "the trial set-up stays as it is"
        );
    }

    #[test]
    fn domain_pauses_and_helo_are_checked() {
        assert!(err_of(&[("delivery.pause_window", "200")]).contains("delivery.pause_window"));
        assert!(err_of(&[("delivery.pause_after", "0")]).contains("delivery.pause_after"));
        assert!(
            err_of(&[("delivery.pause_first", "2h"), ("delivery.pause_max", "1h")])
                .contains("delivery.pause_max")
        );
        let c =
            Config::defaults_with(&[("http.public_url", "https://news.example.com/newsletter")])
                .unwrap();
        assert_eq!(c.mail.helo_name.as_deref(), Some("news.example.com"));
        let c = Config::defaults_with(&[("http.public_url", "http://192.0.2.7:8080")]).unwrap();
        assert_eq!(
            c.mail.helo_name, None,
            "an address is no name: the machine's"
        );
        let c = Config::defaults_with(&[("mail.helo_name", "mx1.news.example.com")]).unwrap();
        assert_eq!(c.mail.helo_name.as_deref(), Some("mx1.news.example.com"));
    }
}

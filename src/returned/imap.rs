//! `bounces.imap_url`: returned mail read from an existing mailbox, for sites that cannot
//! route the return path's domain to herald's listener (a hosted mailbox, a shared
//! provider). Each read:
//!
//! - takes only messages it has not read before: the mailbox's UIDVALIDITY and the last UID
//!   read are kept in the database (`settings`), and messages are fetched with `BODY.PEEK`,
//!   so reading marks nothing;
//! - acts on a message only when it was sent to one of herald's own addresses (the VERP
//!   return path or a reader's unsubscribe address, found in `Delivered-To`,
//!   `X-Original-To`, `Envelope-To` or `To`), exactly as the SMTP listener would;
//! - marks read (`\Seen`), or moves to `bounces.imap_move_to`, only the messages herald
//!   understood and acted on. Mail for other addresses, mail it could not classify, and
//!   anything too large are left exactly as they were: never deleted, never marked. (Users
//!   of other tools report the opposite as the trap: unrelated mail deleted from the box.)
//!
//! A crash between acting on a message and saving the last UID reads that one message again.

use super::{Inbound, listener::MAX_MESSAGE};
use crate::config::{ImapConfig, Tls};
use crate::store::{ReturnedKind, Store, StoreError};
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Messages looked at per read, so one read of a huge backlog stays bounded in time and
/// memory; the rest come at the next read.
const PER_READ: usize = 200;
/// Connecting, logging in, and each command.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What one read of the mailbox found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImapReport {
    /// New messages looked at.
    pub read: usize,
    /// Acted on (and marked read or moved).
    pub acted: usize,
    /// Left as they were: not to herald's addresses, not understood, or too large.
    pub left: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("IMAP {host}: {what}")]
    Server { host: String, what: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Anything a session can run over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}
type Session = async_imap::Session<Box<dyn Stream>>;

pub struct ImapReader {
    config: ImapConfig,
    /// The private CA the server's certificate must chain to (`keys::Keys::imap_ca`).
    ca: Option<Arc<Vec<Vec<u8>>>>,
    inbound: Arc<Inbound>,
    store: Arc<dyn Store>,
}

impl ImapReader {
    pub fn new(
        config: ImapConfig,
        ca: Option<Arc<Vec<Vec<u8>>>>,
        inbound: Arc<Inbound>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            config,
            ca,
            inbound,
            store,
        }
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    fn err(&self, what: impl std::fmt::Display) -> ImapError {
        ImapError::Server {
            host: format!("{}:{}", self.config.host, self.config.port),
            what: what.to_string(),
        }
    }

    /// Where this mailbox's progress is kept.
    fn state_key(&self) -> String {
        format!(
            "bounces.imap:{}@{}:{}/{}",
            self.config.user, self.config.host, self.config.port, self.config.mailbox
        )
    }

    /// Read what is new in the mailbox once.
    pub async fn read_once(&self) -> Result<ImapReport, ImapError> {
        let mut session = tokio::time::timeout(TIMEOUT, self.open())
            .await
            .map_err(|_| self.err("timed out connecting and logging in"))??;
        let result = self.read_new(&mut session).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        result
    }

    async fn open(&self) -> Result<Session, ImapError> {
        let c = &self.config;
        let tcp = tokio::net::TcpStream::connect((c.host.as_str(), c.port))
            .await
            .map_err(|e| self.err(format!("cannot connect: {e}")))?;
        let stream: Box<dyn Stream> = match c.tls {
            Tls::Implicit => Box::new(self.tls(tcp).await?),
            _ => Box::new(tcp),
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|e| self.err(format!("no greeting: {e}")))?
            .ok_or_else(|| self.err("closed the connection before its greeting"))?;
        if c.tls == Tls::StartTls {
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| {
                    self.err(format!("STARTTLS required (tls=required) but failed: {e}"))
                })?;
            let tcp = client.into_inner();
            // `into_inner` gives back what we put in: a boxed plain TCP stream.
            let tls = self.tls_over(tcp).await?;
            client = async_imap::Client::new(Box::new(tls) as Box<dyn Stream>);
        }
        client
            .login(&c.user, c.password.expose())
            .await
            .map_err(|(e, _)| self.err(format!("login as {:?} refused: {e}", c.user)))
    }

    async fn tls(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ImapError> {
        let (connector, name) = self.connector()?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| self.err(format!("TLS handshake: {e}")))
    }

    async fn tls_over(
        &self,
        stream: Box<dyn Stream>,
    ) -> Result<tokio_rustls::client::TlsStream<Box<dyn Stream>>, ImapError> {
        let (connector, name) = self.connector()?;
        connector
            .connect(name, stream)
            .await
            .map_err(|e| self.err(format!("TLS handshake: {e}")))
    }

    fn connector(
        &self,
    ) -> Result<
        (
            tokio_rustls::TlsConnector,
            tokio_rustls::rustls::pki_types::ServerName<'static>,
        ),
        ImapError,
    > {
        let config = crate::delivery::tls_client_config(self.ca.as_deref())
            .map_err(|e| self.err(format!("TLS setup: {e}")))?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|e| self.err(format!("bad TLS server name: {e}")))?;
        Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    }

    async fn read_new(&self, session: &mut Session) -> Result<ImapReport, ImapError> {
        let c = &self.config;
        let mailbox = session
            .select(&c.mailbox)
            .await
            .map_err(|e| self.err(format!("cannot open mailbox {:?}: {e}", c.mailbox)))?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        // "validity:last uid"; another validity means the UIDs were renumbered: start over.
        let key = self.state_key();
        let last = match self.store.setting(&key).await? {
            Some(v) => match v.split_once(':') {
                Some((val, uid)) if val == validity.to_string() => uid.parse::<u32>().unwrap_or(0),
                _ => 0,
            },
            None => 0,
        };
        let mut uids: Vec<u32> = session
            .uid_search(format!("UID {}:*", last.saturating_add(1)))
            .await
            .map_err(|e| self.err(format!("search failed: {e}")))?
            .into_iter()
            // `n:*` always includes the highest UID, even when it is below n.
            .filter(|u| *u > last)
            .collect();
        uids.sort_unstable();
        uids.truncate(PER_READ);
        let mut report = ImapReport::default();
        if uids.is_empty() {
            return Ok(report);
        }
        if let Some(folder) = &c.move_to {
            // Made once; "already exists" is no error worth stopping for.
            let _ = session.create(folder).await;
        }
        let sizes = self.sizes(session, &uids).await?;
        for uid in uids {
            report.read += 1;
            let understood = match sizes.get(&uid) {
                Some(size) if *size <= MAX_MESSAGE as u32 => {
                    match self.fetch(session, uid).await? {
                        Some(raw) => self.act(&raw).await?,
                        None => false,
                    }
                }
                _ => false,
            };
            if understood {
                self.mark_done(session, uid).await?;
                report.acted += 1;
            } else {
                report.left += 1;
            }
            self.store
                .set_setting(&key, &format!("{validity}:{uid}"))
                .await?;
        }
        Ok(report)
    }

    async fn sizes(
        &self,
        session: &mut Session,
        uids: &[u32],
    ) -> Result<std::collections::HashMap<u32, u32>, ImapError> {
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let fetched = self.fetch_items(session, &set, "(UID RFC822.SIZE)").await?;
        Ok(fetched
            .iter()
            .filter_map(|f| Some((f.uid?, f.size?)))
            .collect())
    }

    /// `UID FETCH set items`, every answer collected.
    async fn fetch_items(
        &self,
        session: &mut Session,
        set: &str,
        items: &str,
    ) -> Result<Vec<async_imap::types::Fetch>, ImapError> {
        session
            .uid_fetch(set, items)
            .await
            .map_err(|e| self.err(format!("fetch failed: {e}")))?
            .try_collect()
            .await
            .map_err(|e| self.err(format!("fetch failed: {e}")))
    }

    /// The message, read without marking it.
    async fn fetch(&self, session: &mut Session, uid: u32) -> Result<Option<Vec<u8>>, ImapError> {
        let fetched = self
            .fetch_items(session, &uid.to_string(), "(UID BODY.PEEK[])")
            .await?;
        Ok(fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec))
    }

    /// Act on one message if it is for one of herald's addresses; whether herald understood
    /// it (and so may mark it).
    async fn act(&self, raw: &[u8]) -> Result<bool, ImapError> {
        let rcpts = recipients(raw)
            .into_iter()
            .filter(|a| self.inbound.accepts(a))
            .collect::<Vec<_>>();
        if rcpts.is_empty() {
            return Ok(false);
        }
        let done = self.inbound.receive(&rcpts, raw, "imap").await?;
        Ok(done
            .iter()
            .any(|(kind, _)| *kind != ReturnedKind::Unrecognised))
    }

    async fn mark_done(&self, session: &mut Session, uid: u32) -> Result<(), ImapError> {
        match &self.config.move_to {
            Some(folder) => session
                .uid_mv(uid.to_string(), folder)
                .await
                .map_err(|e| self.err(format!("cannot move a message to {folder:?}: {e}"))),
            None => {
                let _: Vec<_> = session
                    .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                    .await
                    .map_err(|e| self.err(format!("cannot mark a message read: {e}")))?
                    .try_collect()
                    .await
                    .map_err(|e| self.err(format!("cannot mark a message read: {e}")))?;
                Ok(())
            }
        }
    }
}

/// The addresses a message was delivered to, as the delivering server wrote them:
/// `Delivered-To` (Postfix, Dovecot, Gmail), `X-Original-To` (Postfix), `Envelope-To`
/// (Exim), then `To` and `Cc`.
fn recipients(raw: &[u8]) -> Vec<String> {
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for name in [
        "Delivered-To",
        "X-Original-To",
        "Envelope-To",
        "X-Envelope-To",
    ] {
        for h in msg
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
        {
            let value = raw
                .get(h.offset_start() as usize..h.offset_end() as usize)
                .unwrap_or_default();
            out.extend(
                String::from_utf8_lossy(value)
                    .split(',')
                    .map(|a| a.trim().trim_matches(['<', '>']).to_string()),
            );
        }
    }
    for list in [msg.to(), msg.cc()].into_iter().flatten() {
        out.extend(list.iter().filter_map(|a| a.address()).map(str::to_string));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| a.contains('@') && seen.insert(a.to_ascii_lowercase()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn recipients_come_from_delivery_headers_first() {
        let raw = b"Delivered-To: bounces+abc@news.example\r\nX-Original-To: <bounces+abc@news.example>\r\nTo: Someone <someone@example.org>, other@example.org\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(
            super::recipients(raw),
            [
                "bounces+abc@news.example",
                "someone@example.org",
                "other@example.org"
            ]
        );
        assert!(super::recipients(b"\xff\xfe").is_empty());
    }
}

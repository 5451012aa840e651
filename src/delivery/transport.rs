//! Transports. `maildir:` writes one `.eml` per message (the embedded default: nothing to
//! install, and operators can open what herald would have sent). `smtp://`/`smtps://` talk
//! to a relay over connections we open ourselves: lettre's pooled transport never sets
//! TCP_NODELAY, and Nagle against delayed ACK costs ~40 ms per mail per connection (measured
//! 182 msg/s on 8 connections vs 10,200 msg/s with NODELAY; the appendix of the design
//! notes, ../shared/DESIGN.md, outside this repository, has the measurement). Each
//! worker owns one long-lived connection, reconnects after errors, and every exchange is
//! wrapped in a timeout (lettre only times out the connect).
//!
//! Per message the client speaks in two writes, not five: where the server offers
//! PIPELINING (RFC 2920; Postfix, Exim, every large provider) MAIL, RCPT and DATA go out
//! together, and the message goes out dot-stuffed with its terminating `.` in one write.
//! lettre sends each command and waits for its reply, and writes the message and the dot
//! separately: five round trips' worth of wake-ups on both ends of every message.

use crate::config::{MailConfig, MailTransportConfig, Tls};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What must hold before a server may take a message (the worker's [`super::Gate`]: the
/// previous outcome is in the ledger). The sender asks it after the envelope is accepted and
/// before the message itself goes out; `false` and the message is not handed over
/// ([`SendError::Held`]).
pub trait Handover {
    fn ready(&mut self) -> impl std::future::Future<Output = bool> + Send;
}

/// Why a message did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 4xx, timeout, connection dropped: try again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// No session could be opened (refused, unreachable, TLS or AUTH failed): try again
    /// later, and do not try the rest of the batch now.
    #[error("mail server unreachable: {0}")]
    Unreachable(String),
    /// The connection failed before the server answered (closed while idle, reset): the
    /// one case worth an immediate second try, on a new connection. Never leaves
    /// [`MailSender::send`], which turns it into `Transient`.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The gate did not open (the previous outcome could not be written): the message was
    /// not handed over, and the row stays leased.
    #[error("not sent: the previous outcome could not be recorded")]
    Held,
    /// 5xx: do not retry. What it means for the reader is `domain::judge_reply`'s to say.
    #[error("permanent failure: {reply}")]
    Permanent { reply: String },
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<(String, crate::config::Secret)>,
    helo: ClientId,
    connect_timeout: Duration,
    send_timeout: Duration,
    /// `mail.tls_ca_file`: the only roots the relay's certificate may chain to.
    ca: Option<Arc<Vec<Vec<u8>>>>,
}

/// Where mail goes; makes one [`MailSender`] per worker.
#[derive(Debug, Clone)]
pub enum Transport {
    Maildir(PathBuf),
    Smtp(Arc<SmtpSettings>),
}

impl Transport {
    /// `ca`: the private CA `mail.tls_ca_file` names, read by `keys::Keys::load`.
    pub fn from_config(cfg: &MailConfig, ca: Option<Arc<Vec<Vec<u8>>>>) -> Self {
        match &cfg.transport {
            MailTransportConfig::Maildir(p) => Transport::Maildir(p.clone()),
            MailTransportConfig::Smtp {
                host,
                port,
                tls,
                credentials,
            } => Transport::Smtp(Arc::new(SmtpSettings {
                host: host.clone(),
                port: *port,
                tls: *tls,
                credentials: credentials.clone(),
                helo: cfg
                    .helo_name
                    .clone()
                    .map(ClientId::Domain)
                    .unwrap_or_default(),
                connect_timeout: cfg.connect_timeout.0,
                send_timeout: cfg.send_timeout.0,
                ca,
            })),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Maildir(p) => format!("maildir:{}", p.display()),
            Transport::Smtp(s) => format!(
                "smtp {}:{} ({})",
                s.host,
                s.port,
                match s.tls {
                    crate::config::Tls::None => "no TLS",
                    crate::config::Tls::StartTls => "STARTTLS required",
                    crate::config::Tls::Implicit => "TLS from the first byte",
                }
            ),
        }
    }

    pub fn sender(&self) -> MailSender {
        match self {
            Transport::Maildir(p) => MailSender::Maildir(p.clone()),
            Transport::Smtp(s) => MailSender::Smtp {
                settings: s.clone(),
                conn: None,
            },
        }
    }
}

/// One worker's way out: a folder, or its own SMTP connection.
pub enum MailSender {
    Maildir(PathBuf),
    Smtp {
        settings: Arc<SmtpSettings>,
        conn: Option<Box<Session>>,
    },
}

/// An open SMTP session and what its server said it can do beyond what lettre records.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// The server's EHLO offered PIPELINING.
    pipelining: bool,
}

impl MailSender {
    /// Deliver one message once `gate` opens; on success, the server's reply (or where the
    /// file went).
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message_id: &str,
        bytes: &[u8],
        gate: &mut impl Handover,
    ) -> Result<String, SendError> {
        match self {
            MailSender::Maildir(dir) => {
                if !gate.ready().await {
                    return Err(SendError::Held);
                }
                write_eml(dir, message_id, bytes).await
            }
            MailSender::Smtp { settings, conn } => {
                let reused = conn.is_some();
                let first = match smtp_send(settings, conn, envelope, bytes, gate).await {
                    // A connection that sat idle may have been closed by the server; that is
                    // no reason to defer the mail, so reconnect once. A 4xx reply or a timeout
                    // is not that: the server answered (or may still deliver), and an at-once
                    // retry would hammer a greylisting or rate-limiting server.
                    Err(SendError::ConnectionLost(_)) if reused => {
                        smtp_send(settings, conn, envelope, bytes, gate).await
                    }
                    other => other,
                };
                first.map_err(|e| match e {
                    SendError::ConnectionLost(m) => SendError::Transient(m),
                    other => other,
                })
            }
        }
    }

    /// Say QUIT politely (shutdown).
    pub async fn close(&mut self) {
        if let MailSender::Smtp { conn, settings } = self
            && let Some(mut c) = conn.take()
        {
            let _ = tokio::time::timeout(settings.send_timeout, c.conn.quit()).await;
        }
    }
}

async fn write_eml(
    dir: &std::path::Path,
    message_id: &str,
    bytes: &[u8],
) -> Result<String, SendError> {
    let io =
        |e: std::io::Error| SendError::Transient(format!("cannot write to {}: {e}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    // Named after the Message-ID: a resend after a crash overwrites, never duplicates.
    let stem: String = message_id
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join(format!(".{stem}.tmp"));
    let path = dir.join(format!("{stem}.eml"));
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, &path).await.map_err(io)?;
    Ok(format!("written {}", path.display()))
}

async fn smtp_send(
    s: &SmtpSettings,
    conn: &mut Option<Box<Session>>,
    envelope: &Envelope,
    bytes: &[u8],
    gate: &mut impl Handover,
) -> Result<String, SendError> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
    if conn.as_ref().is_some_and(|c| c.conn.has_broken()) {
        *conn = None;
    }
    if conn.is_none() {
        // Whatever went wrong opening the session (a refusing greeting, TLS, AUTH) is about
        // the session, not this message: try again later, never fail the message for it.
        let c = connect(s).await.map_err(|e| match e {
            SendError::Transient(m) | SendError::ConnectionLost(m) => SendError::Unreachable(m),
            SendError::Permanent { reply, .. } => {
                SendError::Unreachable(format!("the server refused the session: {reply}"))
            }
            other => other,
        })?;
        *conn = Some(Box::new(c));
    }
    let session = conn.as_mut().expect("connected above");
    let pipelining = session.pipelining;
    let c = &mut session.conn;
    // What lettre's `send` does, in two phases around the gate.
    let mut options = Vec::new();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(SendError::Permanent {
                reply: "the address is not ASCII and the server does not offer SMTPUTF8".into(),
            });
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !c.server_info().supports_feature(Extension::EightBitMime) {
            return Err(SendError::Permanent {
                reply: "the message is not 7-bit and the server does not offer 8BITMIME".into(),
            });
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), options);
    let envelope_phase = async {
        if !pipelining {
            c.command(mail).await?;
            for to in envelope.to() {
                c.command(Rcpt::new(to.clone(), vec![])).await?;
            }
            return c.command(Data).await;
        }
        // One write; then every reply, in order, before judging any (RFC 2920 §3.1), so
        // the session stays in step; the first refusal is the one that says why.
        let mut commands = mail.to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push_str(&Data.to_string());
        let mut first_error = None;
        let mut last = None;
        for i in 0..envelope.to().len() + 2 {
            let reply = if i == 0 {
                c.command(Raw(&commands)).await
            } else {
                c.read_response().await
            };
            match reply {
                Ok(r) => last = Some(r),
                // The connection is gone: no further reply will come.
                Err(e) if !(e.is_permanent() || e.is_transient()) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(last.expect("DATA answered")),
        }
    };
    let result = match tokio::time::timeout(s.send_timeout, envelope_phase).await {
        Ok(Ok(_)) => {
            if !gate.ready().await {
                // Inside DATA: closing the connection without the final dot discards the
                // message (RFC 5321 §4.1.1.4). Not lettre's `abort`: it first sends QUIT and
                // waits for an answer, which a server reading message text never gives; on
                // a full disk every worker hung there until the relay's idle timeout
                // (100 s for smtp-sink), and delivery stayed stopped that long after the
                // space came back.
                *conn = None;
                return Err(SendError::Held);
            }
            tokio::time::timeout(s.send_timeout, c.command(DataBlock::of(bytes))).await
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(elapsed) => Err(elapsed),
    };
    match result {
        Ok(Ok(resp)) => Ok(format!(
            "{} {}",
            resp.code(),
            resp.message().collect::<Vec<_>>().join(" ")
        )),
        Ok(Err(e)) => {
            let answered = e.is_permanent() || e.is_transient();
            // A refused command leaves the session mid-transaction: start afresh, as
            // lettre's own send does, but never wait long for the QUIT's answer (a server
            // that took DATA after refusing RCPT would be reading message text).
            let _ = tokio::time::timeout(QUIT_WAIT.min(s.send_timeout), c.abort()).await;
            *conn = None;
            if answered {
                Err(classify(&e))
            } else {
                Err(SendError::ConnectionLost(e.to_string()))
            }
        }
        Err(_) => {
            *conn = None;
            Err(SendError::Transient(format!(
                "timed out after {}s waiting for the SMTP server",
                s.send_timeout.as_secs()
            )))
        }
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let reply = e.to_string();
    if e.is_permanent() {
        SendError::Permanent { reply }
    } else {
        SendError::Transient(reply)
    }
}

async fn connect(s: &SmtpSettings) -> Result<Session, SendError> {
    let fut = async {
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| {
                SendError::Transient(format!("cannot connect to {}:{}: {e}", s.host, s.port))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Transient(format!("set TCP_NODELAY: {e}")))?;
        let smtp_err = |e: lettre::transport::smtp::Error| classify(&e);
        let mut conn = match s.tls {
            Tls::Implicit => {
                let tls = implicit_tls(&s.host, tcp, s.ca.as_deref()).await?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tls), &s.helo)
                    .await
                    .map_err(smtp_err)?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &s.helo)
                .await
                .map_err(smtp_err)?,
        };
        if s.tls == Tls::StartTls {
            let params = match &s.ca {
                // A private CA: only its certificates are roots.
                Some(ca) => {
                    use lettre::transport::smtp::client::{Certificate, CertificateStore};
                    let mut b = TlsParameters::builder(s.host.clone())
                        .certificate_store(CertificateStore::None);
                    for der in ca.iter() {
                        b = b.add_root_certificate(
                            Certificate::from_der(der.clone()).map_err(smtp_err)?,
                        );
                    }
                    b.build().map_err(smtp_err)?
                }
                None => TlsParameters::new(s.host.clone()).map_err(smtp_err)?,
            };
            conn.starttls(params, &s.helo).await.map_err(|e| {
                SendError::Transient(format!("STARTTLS required (tls=required) but failed: {e}"))
            })?;
        }
        // lettre keeps only the EHLO keywords it knows, and PIPELINING is not one: ask
        // again (RFC 5321 §4.1.4 allows a second EHLO; before AUTH, which it would reset).
        // Some servers refuse a repeated EHLO (Python's smtpd: "503 Duplicate HELO/EHLO");
        // the session is still good, only without pipelining.
        let pipelining = match conn
            .command(lettre::transport::smtp::commands::Ehlo::new(s.helo.clone()))
            .await
        {
            Ok(reply) => reply.message().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            }),
            Err(e) if e.is_permanent() || e.is_transient() => false,
            Err(e) => return Err(smtp_err(e)),
        };
        if let Some((user, pass)) = &s.credentials {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), pass.expose().to_string()),
            )
            .await
            .map_err(|e| SendError::Transient(format!("SMTP authentication failed: {e}")))?;
        }
        Ok(Session { conn, pipelining })
    };
    match tokio::time::timeout(s.connect_timeout + s.send_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Transient(format!(
            "timed out connecting to {}:{}",
            s.host, s.port
        ))),
    }
}

/// How long a QUIT after a refusal may take before the connection is simply closed.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// Commands written as one piece (pipelining): lettre's `command` writes whatever its
/// argument displays as, then reads one reply.
struct Raw<'a>(&'a str);

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A message as DATA carries it (RFC 5321 §4.5.2): every line that starts with `.` gets
/// one more, and the lone `.` line ends it; written in one piece.
struct DataBlock<'a> {
    text: std::borrow::Cow<'a, str>,
}

impl<'a> DataBlock<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        // Built from Strings, with every body transfer-encoded: always UTF-8.
        let text = String::from_utf8_lossy(bytes);
        let text = match dot_stuff(text.as_bytes()) {
            Some(stuffed) => std::borrow::Cow::Owned(
                String::from_utf8(stuffed).expect("stuffing adds ASCII dots only"),
            ),
            None => text,
        };
        Self { text }
    }
}

impl std::fmt::Display for DataBlock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        if !self.text.ends_with("\r\n") {
            f.write_str("\r\n")?;
        }
        f.write_str(".\r\n")
    }
}

/// `bytes` with a `.` added before every line that starts with one, or None when no line
/// does (the usual case: no copy).
fn dot_stuff(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut at = memchr::memmem::find_iter(bytes, b"\r\n.")
        .map(|i| i + 2)
        .peekable();
    let first_line = bytes.starts_with(b".");
    if !first_line && at.peek().is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() + 64);
    if first_line {
        out.push(b'.');
    }
    let mut from = 0;
    for i in at {
        out.extend_from_slice(&bytes[from..i]);
        out.push(b'.');
        from = i;
    }
    out.extend_from_slice(&bytes[from..]);
    Some(out)
}

/// A TLS client setup: the system's trusted roots, or with `ca` (a private CA's
/// certificates, DER) those alone. Server names are checked either way. Used for the relay
/// and for the IMAP server returned mail is read from.
pub(crate) fn tls_client_config(
    ca: Option<&Vec<Vec<u8>>>,
) -> Result<tokio_rustls::rustls::ClientConfig, tokio_rustls::rustls::Error> {
    use rustls_platform_verifier::ConfigVerifierExt;
    use tokio_rustls::rustls;
    match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in ca {
                roots.add(rustls::pki_types::CertificateDer::from(der.clone()))?;
            }
            Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
        }
        None => rustls::ClientConfig::with_platform_verifier(),
    }
}

/// TLS from the first byte (smtps, port 465), on our own NODELAY socket; with `ca`, only
/// those roots.
async fn implicit_tls(
    host: &str,
    tcp: TcpStream,
    ca: Option<&Vec<Vec<u8>>>,
) -> Result<TlsTcp, SendError> {
    use tokio_rustls::rustls;
    let config =
        tls_client_config(ca).map_err(|e| SendError::Transient(format!("TLS setup: {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| SendError::Transient(format!("bad TLS server name {host:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| SendError::Transient(format!("TLS handshake with {host}: {e}")))?;
    Ok(TlsTcp(stream))
}

struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl std::fmt::Debug for TlsTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTcp")
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn dot_stuffing_doubles_leading_dots_only() {
        assert_eq!(dot_stuff(b"a\r\nb\r\n"), None);
        assert_eq!(dot_stuff(b"a.b\r\n"), None);
        assert_eq!(
            dot_stuff(b".x\r\n..y\r\nz.\r\n.\r\n").unwrap(),
            b"..x\r\n...y\r\nz.\r\n..\r\n"
        );
        let block = DataBlock::of(b"Subject: s\r\n\r\n.\r\nend").to_string();
        assert_eq!(block, "Subject: s\r\n\r\n..\r\nend\r\n.\r\n");
    }

    /// The previous outcome could not be recorded (a full disk) while the server waits
    /// inside DATA for the message text. The message must not go out, and the worker must
    /// not wait for a QUIT reply the server, reading text, never sends.
    #[tokio::test]
    async fn a_closed_gate_inside_data_hangs_up_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<(bool, bool)>();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut input = BufReader::new(stream);
            out.write_all(b"220 t ESMTP\r\n").unwrap();
            let mut in_data = false;
            let mut dot = false;
            let mut line = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line).unwrap_or(0) == 0 {
                    // Hung up on: with no final dot, nothing was delivered.
                    let _ = seen_tx.send((in_data, dot));
                    return;
                }
                if in_data {
                    dot |= line == ".\r\n";
                    continue;
                }
                let reply: &[u8] = match &line.to_ascii_uppercase()[..4] {
                    "EHLO" => b"250-t\r\n250 PIPELINING\r\n",
                    "MAIL" | "RCPT" => b"250 ok\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    _ => b"250 ok\r\n",
                };
                out.write_all(reply).unwrap();
            }
        });
        let settings = Arc::new(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: Tls::None,
            credentials: None,
            helo: ClientId::Domain("herald.test".into()),
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
            ca: None,
        });
        let mut sender = Transport::Smtp(settings).sender();
        let envelope = Envelope::new(
            Some("news@herald.test".parse().unwrap()),
            vec!["r@example.com".parse().unwrap()],
        )
        .unwrap();
        // The previous outcome could not be written (say, the disk is full).
        struct Closed;
        impl Handover for Closed {
            async fn ready(&mut self) -> bool {
                false
            }
        }
        let mut gate = Closed;
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            sender.send(
                &envelope,
                "<m@herald.test>",
                b"Subject: s\r\n\r\nbody\r\n",
                &mut gate,
            ),
        )
        .await
        .expect("the worker hung up instead of waiting for the server");
        assert_eq!(sent, Err(SendError::Held));
        let (in_data, dot) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(in_data && !dot, "closed inside DATA, no final dot");
    }
}

//! `bounces.listen`: a small SMTP server for the return path's domain, fed by the site's
//! MTA (e.g. Postfix `transport_maps`: `bounces.news.example.com smtp:[127.0.0.1]:2525`).
//! It takes mail only for herald's own addresses (550 at RCPT for anything else), acts on
//! each message before answering 250, and answers 451 when it could not (the MTA keeps the
//! message and tries again).
//!
//! Its own, and small, because returned mail comes from the null sender (`MAIL FROM:<>`,
//! RFC 5321 §4.5.5), which the embedded SMTP server the tests use refuses as a syntax error.
//! Only what an MTA relaying to us needs: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.

use super::Inbound;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest returned message taken (a bounce quotes at most the original).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// A command line longer than this is refused (RFC 5321 §4.5.3.1.4: 512).
const MAX_COMMAND: u64 = 1024;
/// A text line inside DATA (RFC 5321 says 1000; some senders go further).
const MAX_TEXT_LINE: u64 = 64 * 1024;
/// Recipients per message.
const MAX_RCPTS: usize = 100;
/// A client silent this long is hung up on.
const IDLE: Duration = Duration::from_secs(60);
/// However busy, a session ends this long after it began (a slow drip of bytes that is
/// never idle would otherwise hold its slot for ever).
const LIFETIME: Duration = Duration::from_secs(300);
/// Sessions at once, in all.
const SESSIONS: usize = 64;
/// Sessions at once from one client address: a few clients that connect and say nothing
/// cannot keep the site's MTA (and the bounces it brings) out.
const PER_CLIENT: usize = 8;

/// Sessions open per client address.
#[derive(Default)]
struct Clients(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl Clients {
    fn enter(&self, ip: std::net::IpAddr) -> bool {
        let mut m = self.0.lock().expect("client counts");
        let n = m.entry(ip).or_default();
        if *n >= PER_CLIENT {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: std::net::IpAddr) {
        let mut m = self.0.lock().expect("client counts");
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Serve returned mail on `listener` until the process ends. A client over its share, or
/// past the total, is told 421 (try later) at once rather than left waiting.
pub async fn serve(
    listener: TcpListener,
    inbound: Arc<Inbound>,
    name: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(SESSIONS));
    let clients = Arc::new(Clients::default());
    loop {
        // A stop closes the door; sessions under way end on their own (5 min at most).
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "returned-mail accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) if clients.enter(peer.ip()) => p,
            _ => {
                tracing::info!(%peer, "returned-mail session refused: too many sessions");
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        stream.write_all(b"421 4.3.2 too many sessions, try again later\r\n"),
                    )
                    .await;
                });
                continue;
            }
        };
        let inbound = inbound.clone();
        let name = name.clone();
        let clients = clients.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(LIFETIME, session(stream, inbound, &name)).await {
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "returned-mail session ended"),
                Err(_) => tracing::info!(%peer, "returned-mail session ended: too long"),
                Ok(Ok(())) => {}
            }
            clients.leave(peer.ip());
            drop(permit);
        });
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    limit: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = tokio::time::timeout(IDLE, r.take(limit).read_until(b'\n', buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if n == 0 {
        return Ok(None);
    }
    // false: the line did not end within the limit.
    Ok(Some(buf.ends_with(b"\n")))
}

/// The address inside `<…>` after a `FROM:` or `TO:`, possibly empty (the null sender).
fn path(arg: &str) -> Option<String> {
    let open = arg.find('<')?;
    let close = arg[open..].find('>')? + open;
    Some(arg[open + 1..close].trim().to_string())
}

async fn session(stream: TcpStream, inbound: Arc<Inbound>, name: &str) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(format!("220 {name} herald returned-mail service\r\n").as_bytes())
        .await?;
    let mut line = Vec::new();
    let mut in_mail = false;
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let Some(whole) = read_line(&mut r, MAX_COMMAND, &mut line).await? else {
            return Ok(());
        };
        if !whole {
            w.write_all(b"500 5.5.6 line too long\r\n").await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => format!("250-{name}\r\n250-8BITMIME\r\n250 SIZE {MAX_MESSAGE}"),
            "HELO" => format!("250 {name}"),
            "MAIL" => match arg
                .to_ascii_uppercase()
                .starts_with("FROM:")
                .then(|| path(arg))
                .flatten()
            {
                Some(_) => {
                    in_mail = true;
                    rcpts.clear();
                    "250 2.1.0 OK".into()
                }
                None => "501 5.5.4 MAIL FROM:<address> expected".into(),
            },
            "RCPT" => match arg
                .to_ascii_uppercase()
                .starts_with("TO:")
                .then(|| path(arg))
                .flatten()
            {
                _ if !in_mail => "503 5.5.1 MAIL first".into(),
                Some(_) if rcpts.len() >= MAX_RCPTS => "452 4.5.3 too many recipients".into(),
                Some(to) if inbound.accepts(&to) => {
                    rcpts.push(to);
                    "250 2.1.5 OK".into()
                }
                Some(_) => "550 5.1.1 no such address here".into(),
                None => "501 5.5.4 RCPT TO:<address> expected".into(),
            },
            "DATA" if rcpts.is_empty() => "503 5.5.1 RCPT first".into(),
            "DATA" => {
                w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = Vec::new();
                let mut too_big = false;
                loop {
                    let Some(_) = read_line(&mut r, MAX_TEXT_LINE, &mut line).await? else {
                        return Ok(());
                    };
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 §4.5.2).
                    let content = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    if data.len() + content.len() > MAX_MESSAGE {
                        too_big = true;
                    } else {
                        data.extend_from_slice(content);
                    }
                }
                let to = std::mem::take(&mut rcpts);
                in_mail = false;
                if too_big {
                    "552 5.3.4 message too big".into()
                } else {
                    match inbound.receive(&to, &data, "smtp").await {
                        Ok(_) => "250 2.0.0 OK".into(),
                        Err(e) => {
                            tracing::error!(error = %e, "returned mail not recorded; the sender will retry");
                            "451 4.3.0 not recorded, try again later".into()
                        }
                    }
                }
            }
            "RSET" => {
                in_mail = false;
                rcpts.clear();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "VRFY" => "252 2.5.0 cannot verify".into(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "500 5.5.2 command not recognised".into(),
        };
        w.write_all(reply.as_bytes()).await?;
        w.write_all(b"\r\n").await?;
    }
}

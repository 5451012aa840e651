//! An in-process SMTP server (mailin-embedded) that catches mail and can be told to
//! misbehave: temporary or permanent refusals, or coming up only later.

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// How the server answers.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Refuse DATA of the first N messages with this code and text.
    pub fail_first: Option<(u32, u16, String)>,
    /// Accept this many messages before `fail_first` starts refusing.
    pub accept_first: u32,
    /// Refuse RCPT for this address (or, written `@domain`, any address there) with this
    /// code and text.
    pub reject_rcpt: Option<(String, u16, String)>,
    /// Called for each message received, before the 250 (e.g. to move a manual clock:
    /// a relay that takes that long to answer).
    pub on_message: Option<Hook>,
}

/// A callback the server runs on its own thread.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A message as the server received it.
#[derive(Clone, Debug)]
pub struct Caught {
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl Caught {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("parseable message")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.parsed().header_raw(name).map(|s| s.trim().to_string())
    }
    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_string()
    }
    pub fn message_id(&self) -> String {
        self.parsed().message_id().unwrap_or_default().to_string()
    }
    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|c| c.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .map(|c| c.into_owned())
            .unwrap_or_default()
    }
    /// The https target of `List-Unsubscribe` (what a mailbox provider POSTs to).
    pub fn one_click_url(&self) -> String {
        let h = self
            .header("List-Unsubscribe")
            .expect("List-Unsubscribe header");
        h.trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string()
    }

    /// The first URL in the text part that contains `needle`.
    pub fn link_with(&self, needle: &str) -> Option<String> {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains(needle))
            .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_string())
    }
}

#[derive(Clone)]
struct Catcher {
    inbox: Arc<Mutex<Vec<Caught>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    delivered: Arc<Mutex<u32>>,
    attempts: Arc<Mutex<u32>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Catcher {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_string();
        self.to.clear();
        self.data.clear();
        response::OK
    }
    fn rcpt(&mut self, to: &str) -> Response {
        if let Some((addr, code, text)) = &self.behaviour.lock().unwrap().reject_rcpt
            && (addr.eq_ignore_ascii_case(to)
                || (addr.starts_with('@')
                    && to
                        .to_ascii_lowercase()
                        .ends_with(&addr.to_ascii_lowercase())))
        {
            return Response::custom(*code, text.clone());
        }
        self.to.push(to.to_string());
        response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }
    // Refusals are given to DATA, not at the end of the data: mailin stays in its data
    // state after an error reply there, and the session would hang.
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        *self.attempts.lock().unwrap() += 1;
        let mut b = self.behaviour.lock().unwrap();
        if b.accept_first > 0 {
            b.accept_first -= 1;
            return response::OK;
        }
        if let Some((n, code, text)) = &mut b.fail_first
            && *n > 0
        {
            *n -= 1;
            return Response::custom(*code, text.clone());
        }
        response::OK
    }
    fn data_end(&mut self) -> Response {
        let hook = self.behaviour.lock().unwrap().on_message.clone();
        if let Some(Hook(f)) = hook {
            f();
        }
        *self.delivered.lock().unwrap() += 1;
        self.inbox.lock().unwrap().push(Caught {
            from: self.from.clone(),
            to: self.to.clone(),
            raw: std::mem::take(&mut self.data),
        });
        response::OK
    }
}

pub struct SmtpServer {
    pub port: u16,
    /// STARTTLS with this certificate and key (PEM files), when set.
    tls: Option<(String, String)>,
    inbox: Arc<Mutex<Vec<Caught>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    delivered: Arc<Mutex<u32>>,
    attempts: Arc<Mutex<u32>>,
    /// Sessions served at once (mailin serves each on a thread of its own; one more waits,
    /// unanswered, until one ends). More than herald's default `delivery.connections`.
    threads: u32,
}

impl SmtpServer {
    /// A relay that serves at most `threads` sessions at once, as relays that limit the
    /// connections of each client do.
    pub fn start_limited(behaviour: Behaviour, threads: u32) -> Self {
        let mut s = Self::reserve();
        s.threads = threads;
        *s.behaviour.lock().unwrap() = behaviour;
        s.go_up();
        s
    }

    /// A server listening now.
    pub fn start(behaviour: Behaviour) -> Self {
        let s = Self::reserve();
        *s.behaviour.lock().unwrap() = behaviour;
        s.go_up();
        s
    }

    /// A server offering STARTTLS with this certificate chain and key (PEM files).
    pub fn start_tls(behaviour: Behaviour, cert: &str, key: &str) -> Self {
        let mut s = Self::reserve();
        s.tls = Some((cert.to_string(), key.to_string()));
        *s.behaviour.lock().unwrap() = behaviour;
        s.go_up();
        s
    }

    /// A port with nothing listening on it (yet): "the SMTP server is down".
    pub fn reserve() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        Self {
            port,
            tls: None,
            inbox: Arc::default(),
            behaviour: Arc::default(),
            delivered: Arc::default(),
            attempts: Arc::default(),
            threads: 16,
        }
    }

    /// Start serving on the port.
    pub fn go_up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("SMTP port still free");
        let handler = Catcher {
            inbox: self.inbox.clone(),
            behaviour: self.behaviour.clone(),
            delivered: self.delivered.clone(),
            attempts: self.attempts.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("test.smtp")
            .with_tcp_listener(listener)
            .with_num_threads(self.threads);
        if let Some((cert, key)) = &self.tls {
            server
                .with_ssl(mailin_embedded::SslConfig::SelfSigned {
                    cert_path: cert.clone(),
                    key_path: key.clone(),
                })
                .expect("TLS for the test server");
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn all(&self) -> Vec<Caught> {
        self.inbox.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.inbox.lock().unwrap().len()
    }

    /// How many messages were offered (DATA commands), accepted or not.
    pub fn attempts(&self) -> u32 {
        *self.attempts.lock().unwrap()
    }

    pub fn to(&self, email: &str) -> Vec<Caught> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(email)))
            .collect()
    }

    pub fn last_to(&self, email: &str) -> Option<Caught> {
        self.to(email).pop()
    }
}

/// A bare SMTP server for faults mailin cannot produce: it takes the whole message after
/// DATA and then drops the connection without answering, `drop_after_data` times; after
/// that it answers 250 and keeps the message.
pub struct RawSmtp {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Caught>>>,
}

impl RawSmtp {
    pub fn start(drop_after_data: u32) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox: Arc<Mutex<Vec<Caught>>> = Arc::default();
        let drops = Arc::new(Mutex::new(drop_after_data));
        let inbox2 = inbox.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let inbox = inbox2.clone();
                let drops = drops.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let _ = stream.write_all(b"220 raw.test ESMTP\r\n");
                    let (mut from, mut to) = (String::new(), Vec::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-raw.test\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().to_string();
                            to.clear();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                            b"250 OK\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = stream.write_all(b"354 go ahead\r\n");
                            let mut data = Vec::new();
                            loop {
                                line.clear();
                                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                // Undo dot-stuffing (RFC 5321 4.5.2).
                                let l = line.strip_prefix('.').unwrap_or(&line);
                                data.extend_from_slice(l.as_bytes());
                            }
                            let mut d = drops.lock().unwrap();
                            if *d > 0 {
                                *d -= 1;
                                // The message is in, the reply never comes.
                                let _ = stream.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            drop(d);
                            inbox.lock().unwrap().push(Caught {
                                from: from.clone(),
                                to: to.clone(),
                                raw: data,
                            });
                            b"250 2.0.0 queued\r\n"
                        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
                            b"250 OK\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = stream.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if stream.write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, inbox }
    }

    pub fn all(&self) -> Vec<Caught> {
        self.inbox.lock().unwrap().clone()
    }
}

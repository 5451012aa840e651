//! An in-process SMTP server (mailin-embedded) that catches mail and can be told to
//! misbehave: temporary or permanent refusals, or coming up only later.

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// How the server answers.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Refuse the end of DATA of the first N messages with this code and text.
    pub fail_first: Option<(u32, u16, String)>,
    /// Refuse RCPT for this address with this code and text.
    pub reject_rcpt: Option<(String, u16, String)>,
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
            .map(|c| c.into_owned())
            .unwrap_or_default()
    }
    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .map(|c| c.into_owned())
            .unwrap_or_default()
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
            && addr.eq_ignore_ascii_case(to)
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
    fn data_end(&mut self) -> Response {
        let mut b = self.behaviour.lock().unwrap();
        if let Some((n, code, text)) = &mut b.fail_first
            && *n > 0
        {
            *n -= 1;
            return Response::custom(*code, text.clone());
        }
        drop(b);
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
    inbox: Arc<Mutex<Vec<Caught>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    delivered: Arc<Mutex<u32>>,
}

impl SmtpServer {
    /// A server listening now.
    pub fn start(behaviour: Behaviour) -> Self {
        let s = Self::reserve();
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
            inbox: Arc::default(),
            behaviour: Arc::default(),
            delivered: Arc::default(),
        }
    }

    /// Start serving on the port.
    pub fn go_up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("SMTP port still free");
        let handler = Catcher {
            inbox: self.inbox.clone(),
            behaviour: self.behaviour.clone(),
            delivered: self.delivered.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(handler);
        server
            .with_name("test.smtp")
            .with_tcp_listener(listener)
            .with_num_threads(4);
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

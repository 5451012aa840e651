//! Returned mail as the site's MTA hands it to herald's listener: an app set up for it, the
//! fixtures under tests/fixtures/returned, and two ways to talk to the listener — a real
//! SMTP client (lettre) for whole messages, and a line-by-line session for what a client
//! says out of turn.

use super::{Spawn, TestApp};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The return path every returned-mail test gives herald.
pub const RETURN_PATH: &str = "bounces@bounces.herald.example";

impl Spawn {
    /// VERP return path and the returned-mail listener on a free port.
    pub fn returned_mail(self) -> Self {
        self.set("mail.return_path", RETURN_PATH)
            .set("bounces.listen", "127.0.0.1:0")
    }
}

/// A fixture's text with its placeholder envelope address (`bounces+REF@…`) left as is.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/returned/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

impl TestApp {
    /// Hand `raw` to the listener for `to`, from the null sender, as an MTA does.
    pub async fn send_returned(
        &self,
        to: &str,
        raw: &str,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let listener = self.bounces_addr.expect("bounces.listen");
        let smtp: AsyncSmtpTransport<Tokio1Executor> =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(listener.ip().to_string())
                .port(listener.port())
                .build();
        let envelope = lettre::address::Envelope::new(None, vec![to.parse().unwrap()]).unwrap();
        smtp.send_raw(&envelope, raw.as_bytes()).await
    }

    /// A fixture addressed to `to` in place of its placeholder, handed to the listener.
    pub async fn return_fixture(&self, to: &str, name: &str) {
        let raw = fixture(name).replace("bounces+REF@news.herald.example", to);
        self.send_returned(to, &raw)
            .await
            .unwrap_or_else(|e| panic!("{name} to {to}: {e}"));
    }

    /// Each reader (`name` of `name@example.com`) has this status.
    pub async fn assert_statuses(&self, expected: &[(&str, &str)]) {
        for (name, status) in expected {
            assert_eq!(
                self.subscriber_status(&format!("{name}@example.com"))
                    .await
                    .as_deref(),
                Some(*status),
                "{name}"
            );
        }
    }

    /// A raw session with the listener, greeted.
    pub async fn listener_session(&self) -> (SmtpLines, String) {
        let stream = tokio::net::TcpStream::connect(self.bounces_addr.expect("bounces.listen"))
            .await
            .unwrap();
        let (r, w) = stream.into_split();
        let mut s = SmtpLines {
            r: BufReader::new(r),
            w,
        };
        let greeting = s.reply().await;
        (s, greeting)
    }
}

/// An SMTP session spoken line by line.
pub struct SmtpLines {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl SmtpLines {
    /// Send one line, read the whole (possibly multi-line) reply.
    pub async fn say(&mut self, line: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).await.unwrap();
            reply.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return reply;
            }
        }
    }
}

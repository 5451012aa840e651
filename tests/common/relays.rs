//! Relays other than the in-process catcher: Postfix's own `smtp-sink`, which offers
//! PIPELINING and keeps each message in a file, and a scripted relay that answers only
//! once a whole pipelined envelope has arrived.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A message as smtp-sink dumped it: the recipient it names and the message itself.
pub struct Dumped {
    pub rcpt: String,
    pub raw: Vec<u8>,
}

/// `smtp-sink -d DIR/%M.` on a free port of 127.0.0.1; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpSink {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dumps = dir.path().join("dumps");
        std::fs::create_dir(&dumps).unwrap();
        // smtp-sink drops root for this user after binding; it must be able to write here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new("/usr/sbin/smtp-sink");
        // As root, smtp-sink must be told whom to become.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg("-d")
            .arg(format!("{}/%M.", dumps.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        super::wait_for_port(port, "smtp-sink");
        Self { port, dir, child }
    }

    /// Wait for `n` dumped messages (smtp-sink writes each as its session goes on) and
    /// read them: the dump's own lines first (`X-Rcpt-Args: <to>` among them, then a
    /// `Received:` line of its own), then the message as received.
    pub fn messages(&self, n: usize) -> Vec<Dumped> {
        let dumps = self.dir.path().join("dumps");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut out = Vec::new();
            for f in std::fs::read_dir(&dumps).unwrap() {
                let raw = std::fs::read(f.unwrap().path()).unwrap();
                let text = String::from_utf8_lossy(&raw);
                // A finished dump ends with the message; a message of ours ends with the
                // closing MIME boundary.
                if !text.trim_end().ends_with("--") {
                    continue;
                }
                let rcpt = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                    .map(|a| a.trim().trim_matches(['<', '>']).to_string())
                    .expect("X-Rcpt-Args in the dump");
                out.push(Dumped { rcpt, raw });
            }
            if out.len() >= n || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay that offers PIPELINING and, for each transaction, reads MAIL, RCPT and DATA
/// before it answers any of them (RFC 2920 allows a server to wait so); `rcpt_reply`
/// decides the RCPT answer per address. DATA is refused (554) when RCPT was.
pub struct ScriptedRelay {
    pub port: u16,
    state: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    /// Every envelope arrived whole before any reply.
    all_pipelined: bool,
    envelopes: usize,
    delivered: Vec<String>,
}

impl ScriptedRelay {
    pub fn start(rcpt_reply: fn(&str) -> &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Script {
            all_pipelined: true,
            ..Default::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = session(stream, rcpt_reply, &shared);
                });
            }
        });
        Self { port, state }
    }

    pub fn pipelined(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.envelopes > 0 && s.all_pipelined
    }

    pub fn delivered(&self) -> Vec<String> {
        self.state.lock().unwrap().delivered.clone()
    }
}

fn session(
    stream: TcpStream,
    rcpt_reply: fn(&str) -> &'static str,
    state: &Mutex<Script>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 scripted ESMTP\r\n")?;
    let mut line = String::new();
    let read = |input: &mut BufReader<TcpStream>, line: &mut String| -> std::io::Result<bool> {
        line.clear();
        Ok(input.read_line(line)? > 0)
    };
    while read(&mut input, &mut line)? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            out.write_all(b"250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            // The rest of the envelope must already be on its way: read it before any
            // reply. Whatever is already buffered arrived in the same write.
            let whole = !input.buffer().is_empty();
            if !read(&mut input, &mut line)? {
                break;
            }
            let rcpt = line
                .trim_end()
                .split_once(':')
                .map(|(_, a)| a.trim().trim_matches(['<', '>']).to_string())
                .unwrap_or_default();
            let rcpt = rcpt.split('>').next().unwrap_or_default().to_string();
            if !read(&mut input, &mut line)? {
                break;
            }
            let data = line.trim_end().eq_ignore_ascii_case("DATA");
            {
                let mut s = state.lock().unwrap();
                s.envelopes += 1;
                s.all_pipelined &= whole && data;
            }
            let answer = rcpt_reply(&rcpt);
            out.write_all(b"250 2.1.0 Ok\r\n")?;
            out.write_all(format!("{answer}\r\n").as_bytes())?;
            if !answer.starts_with('2') {
                out.write_all(b"554 5.5.1 Error: no valid recipients\r\n")?;
                continue;
            }
            out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            loop {
                if !read(&mut input, &mut line)? {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            state.lock().unwrap().delivered.push(rcpt);
            out.write_all(b"250 2.0.0 Ok: queued\r\n")?;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            out.write_all(b"250 2.0.0 Ok\r\n")?;
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            break;
        } else {
            out.write_all(b"502 5.5.2 Error: command not recognized\r\n")?;
        }
    }
    Ok(())
}

/// TLS from the first byte (smtps) in front of a plain SMTP server: accepts TLS on its own
/// port with this certificate and key, and relays the bytes to `backend`.
pub struct TlsFront {
    pub port: u16,
}

impl TlsFront {
    pub fn start(cert: &std::path::Path, key: &std::path::Path, backend: u16) -> Self {
        use rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) =
                            tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        Self { port }
    }
}

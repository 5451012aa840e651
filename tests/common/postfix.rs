//! A real Postfix for the tests: a second instance with its own configuration, queue and
//! port (the packaged one stays stopped), run in the foreground as root. It relays what
//! herald sends, bounces what its transport table says to bounce, and routes mail for the
//! return path's domain to herald's listener with exactly the `transport_maps` line the
//! README gives. Its log is `log()`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A free port of 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Postfix {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

/// Only what relaying and bouncing need, none of it chrooted (the queue folder has none of
/// the files a chroot would need).
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

impl Postfix {
    /// Whether this test can run one (Postfix installed, and root to start it).
    pub fn available() -> bool {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        super::tool_available("Postfix (as root)", &["test", "-x", "/usr/sbin/postfix"]) && {
            if !root {
                assert!(
                    std::env::var_os("HERALD_TEST_REQUIRE_TOOLS").is_none(),
                    "a real Postfix needs root (HERALD_TEST_REQUIRE_TOOLS is set)"
                );
                eprintln!("not root: the real-Postfix test is skipped");
            }
            root
        }
    }

    /// Start it on `port` with this `transport_maps` table (`domain=transport` entries).
    pub fn start(port: u16, transports: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        use std::os::unix::fs::PermissionsExt;
        // Postfix's own processes run as user postfix: they must reach these folders.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "spool", "lib"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let _ = std::process::Command::new("chown")
            .arg("postfix")
            .arg(d.join("lib"))
            .status();
        // A transport(5) table as a site writes it, one "domain transport" per line.
        let table: String = transports
            .iter()
            .map(|(domain, t)| format!("{domain} {t}\n"))
            .collect();
        std::fs::write(d.join("etc/transport"), table).unwrap();
        let relay_domains = transports
            .iter()
            .map(|(domain, _)| *domain)
            .collect::<Vec<_>>()
            .join(", ");
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {l}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mx.herald.test\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relay_domains = {relay_domains}\n\
             transport_maps = texthash:{t}\n\
             smtp_dns_support_level = disabled\n\
             maillog_file = /dev/stdout\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             smtputf8_enable = no\n\
             biff = no\n",
            q = d.join("spool").display(),
            l = d.join("lib").display(),
            t = d.join("etc/transport").display(),
        );
        std::fs::write(d.join("etc/main.cf"), main_cf).unwrap();
        std::fs::write(
            d.join("etc/master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF}"),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("maillog")).unwrap();
        let child = std::process::Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(d.join("etc"))
            .arg("start-fg")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postfix");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "postfix did not start:\n{}",
                    std::fs::read_to_string(d.join("maillog")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, dir, child }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("abort")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real IMAP server for the tests: Debian's Dovecot, started with a configuration of its
//! own in a temporary folder (plain-text IMAP on a free port of 127.0.0.1, users from a
//! passwd file, Maildir storage). Mail is "delivered" the way an MTA's local delivery does
//! it: a file in the user's `Maildir/new`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Dovecot {
    pub port: u16,
    /// The imaps (TLS from the first byte) port, when started with a certificate.
    pub imaps_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The owner of the mail files (Dovecot will not serve mail as root).
    uid: u32,
    gid: u32,
    child: std::process::Child,
    delivered: std::sync::atomic::AtomicUsize,
}

fn id(flag: &str, name: Option<&str>) -> u32 {
    let mut cmd = std::process::Command::new("id");
    cmd.arg(flag);
    if let Some(n) = name {
        cmd.arg(n);
    }
    String::from_utf8(cmd.output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Dovecot {
    /// Start Dovecot with these users (name, password).
    pub fn start(users: &[(&str, &str)]) -> Self {
        Self::start_with(users, None)
    }

    /// The same, also offering TLS with this certificate and key (PEM files): STARTTLS on
    /// `port`, and TLS from the first byte on `imaps_port`.
    pub fn start_tls(users: &[(&str, &str)], cert: &Path, key: &Path) -> Self {
        Self::start_with(users, Some((cert, key)))
    }

    fn start_with(users: &[(&str, &str)], tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = id("-u", None) == 0;
        let (uid, gid, service_user) = if root {
            (
                id("-u", Some("nobody")),
                id("-g", Some("nobody")),
                "dovenull",
            )
        } else {
            (id("-u", None), id("-g", None), "")
        };
        let free_port = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let port = free_port();
        let imaps_port = tls.map(|_| free_port());
        let ssl = match tls {
            Some((cert, key)) => format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            ),
            None => "ssl = no\n".to_string(),
        };
        let d = dir.path().display();
        let passwd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        std::fs::write(dir.path().join("passwd"), passwd).unwrap();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let users_line = if root {
            format!("default_internal_user = dovecot\ndefault_login_user = {service_user}\n")
        } else {
            let me = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
            format!("default_internal_user = {me}\ndefault_login_user = {me}\n")
        };
        let imaps = imaps_port.unwrap_or(0);
        let conf = format!(
            "protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             {ssl}\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             mail_location = maildir:{d}/mail/%u\n\
             first_valid_uid = {uid}\n\
             {users_line}\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        let conf_path = dir.path().join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        if root {
            // Dovecot's services run as other users: they must reach the folder.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let _ = std::process::Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(dir.path().join("mail"))
                .status();
        }
        let child = std::process::Command::new("/usr/sbin/dovecot")
            .args(["-F", "-c"])
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start dovecot");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(dir.path().join("dovecot.log")).unwrap_or_default();
                panic!("dovecot did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Self {
            port,
            imaps_port,
            dir,
            uid,
            gid,
            child,
            delivered: Default::default(),
        }
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// Put a message into `user`'s inbox as local delivery does (a new file in `new/`).
    pub fn deliver(&self, user: &str, raw: &[u8]) {
        let md = self.maildir(user);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        let n = self
            .delivered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("1772434800.M{n}P1.herald-test");
        let tmp = md.join("tmp").join(&name);
        std::fs::write(&tmp, raw).unwrap();
        std::fs::rename(&tmp, md.join("new").join(&name)).unwrap();
        chown_all(&md, self.uid, self.gid);
    }

    /// The messages of `user`'s folder (`""`: the inbox), with their Maildir flags as
    /// Dovecot keeps them in the file names (`S` for seen).
    pub fn messages(&self, user: &str, folder: &str) -> Vec<(String, Vec<u8>)> {
        let mut md = self.maildir(user);
        if !folder.is_empty() {
            md = md.join(format!(".{folder}"));
        }
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(md.join(sub)) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                let flags = name
                    .rsplit_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                out.push((flags, std::fs::read(&path).unwrap()));
            }
        }
        out
    }
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    let _ = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(path)
        .status();
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

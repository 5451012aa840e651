//! The `herald` command as operators use it: exit codes, messages, import, erase.

mod common;
use common::Backend;
use std::process::{Command, Output};

struct Cli {
    db: String,
    _db: common::DbGuard,
    work: tempfile::TempDir,
}

impl Cli {
    async fn new(backend: Backend) -> Self {
        let (db, guard) = common::fresh_database(backend).await;
        let cli = Self {
            db,
            _db: guard,
            work: tempfile::tempdir().unwrap(),
        };
        // Only `migrate` and `serve` make a database; every other command needs one.
        cli.ok(&["migrate"]);
        cli
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.args(args)
            .current_dir(self.work.path())
            .env("HERALD_DATABASE__URL", &self.db)
            .env(
                "HERALD_SECRET_KEY",
                "cli-test-secret-cli-test-secret-0123456789",
            )
            .env("HERALD_MAIL__URL", "maildir:outbox")
            .env_remove("HERALD_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Run with `input` on standard input. A command that stops reading early (a limit
    /// reached) is not an error of the writer's.
    fn run_stdin(&self, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.args(args)
            .current_dir(self.work.path())
            .env("HERALD_DATABASE__URL", &self.db)
            .env(
                "HERALD_SECRET_KEY",
                "cli-test-secret-cli-test-secret-0123456789",
            )
            .env_remove("HERALD_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.work.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn sections_commands(backend: Backend) {
    let cli = Cli::new(backend).await;
    cli.ok(&[
        "sections",
        "add",
        "wmd",
        "--name",
        "Weapons of Mass Destruction (WMD)",
        "--description",
        "Arms control",
    ]);
    cli.ok(&["sections", "add", "cyber", "--name", "Cyber"]);
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sections", "list", "--format", "json"])).unwrap();
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["cyber", "wmd"]);
    assert!(
        cli.ok(&["sections", "list"])
            .contains("Weapons of Mass Destruction")
    );

    let dup = cli.run(&["sections", "add", "wmd", "--name", "Again"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad = cli.run(&["sections", "add", "Bad Slug", "--name", "x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("invalid section slug"));
    let usage = cli.run(&["sections", "add", "x"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "missing --name is a usage error"
    );
}
both_backends!(sections_commands);

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.args(args)
            .current_dir(dir.path())
            .env_remove("HERALD_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    for (k, v, key) in [
        ("HERALD_HTTP__LISTEN", "nowhere", "http.listen"),
        ("HERALD_MAIL__URL", "carrier-pigeon://x", "mail.url"),
        ("HERALD_DATABASE__URL", "mysql://x", "database.url"),
        (
            "HERALD_SUBSCRIPTIONS__CONFIRM_TTL",
            "soon",
            "subscriptions.confirm_ttl",
        ),
        (
            "HERALD_DELIVERY__CONNECTIONS",
            "lots",
            "delivery.connections",
        ),
        ("HERALD_SECRET_KEY", "short", "secret_key"),
        ("HERALD_NO__SUCH", "1", "no.such"),
        // Read in a step of its own after the settings (keys.rs): still a configuration
        // error naming the key.
        (
            "HERALD_MAIL__DKIM__KEYS",
            "s1:/nonexistent/dkim.pem",
            "mail.dkim.keys[0]",
        ),
    ] {
        let o = run(&[(k, v)], &["check-config"]);
        assert_eq!(o.status.code(), Some(2), "{k}={v}");
        assert!(stderr(&o).contains(key), "{k}={v}: {}", stderr(&o));
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[http]\nlisten = 42\n").unwrap();
    let o = run(&[], &["--config", file.to_str().unwrap(), "check-config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("http.listen"), "{}", stderr(&o));
    let o = run(
        &[],
        &["--config", "/nonexistent/herald.toml", "check-config"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/herald.toml"));
    // Nothing was created by a refused start.
    assert!(!dir.path().join("var").exists());

    // Allowed but probably wrong: said, exit 0.
    let secret = (
        "HERALD_SECRET_KEY",
        "check-config-secret-check-config-secret-0",
    );
    for (url, warned) in [
        ("http://news.example.com", true),
        ("https://news.example.com/newsletter", false),
        ("http://127.0.0.1:8080", false),
        ("http://localhost:8080", false),
    ] {
        let o = run(
            &[("HERALD_HTTP__PUBLIC_URL", url), secret],
            &["check-config"],
        );
        assert_eq!(o.status.code(), Some(0), "{url}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert_eq!(
            out.contains("warning: http.public_url"),
            warned,
            "{url}: {out}"
        );
        if warned {
            assert!(out.contains("RFC 8058"), "{out}");
        }
    }
    // Every URL a mail will carry is named; the site's home follows the public address
    // when left at its default, and says so.
    let o = run(
        &[
            (
                "HERALD_HTTP__PUBLIC_URL",
                "https://news.example.com/newsletter",
            ),
            secret,
        ],
        &["check-config"],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("site (masthead, footer, \"and N more\"): https://news.example.com/")
            && out.contains("https://news.example.com/newsletter/unsubscribe/")
            && out.contains("warning: site.url is not set"),
        "{out}"
    );
    assert!(!out.contains("127.0.0.1"), "{out}");

    // The transport in words, not in Rust's.
    for (url, said) in [
        ("smtp://127.0.0.1:25", "mail: smtp 127.0.0.1:25 (no TLS)"),
        (
            "smtp://u:p@relay.example:587?tls=required",
            "mail: smtp relay.example:587 (STARTTLS required)",
        ),
        (
            "smtps://relay.example:465",
            "mail: smtp relay.example:465 (TLS from the first byte)",
        ),
    ] {
        let o = run(&[("HERALD_MAIL__URL", url), secret], &["check-config"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(out.contains(said), "{url}: {out}");
    }

    // A port another program holds: `serve` stops with exit 1 and names the key to change.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = busy.local_addr().unwrap().to_string();
    let o = run(
        &[
            ("HERALD_HTTP__LISTEN", &at),
            ("HERALD_DATABASE__URL", "sqlite:var/busy.db"),
            secret,
        ],
        &["serve"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("cannot listen on {at}"))
            && stderr(&o).contains("`http.listen` / HERALD_HTTP__LISTEN"),
        "{}",
        stderr(&o)
    );
}

/// `herald users`: add (password from standard input; a prompt needs a terminal), list,
/// passwd, remove; what is refused says why.
async fn console_users(backend: Backend) {
    let cli = Cli::new(backend).await;
    let with_stdin = |args: &[&str], input: &str| cli.run_stdin(args, &[], input.as_bytes());
    let o = with_stdin(
        &["users", "add", "ed", "--role", "staff", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("/admin"));
    let o = with_stdin(
        &[
            "users",
            "add",
            "ed",
            "--role",
            "operator",
            "--password-stdin",
        ],
        "another long password\n",
    );
    assert_eq!(o.status.code(), Some(1), "a second ed");
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = with_stdin(
        &["users", "add", "amy", "--role", "staff", "--password-stdin"],
        "short\n",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 12"), "{}", stderr(&o));
    // No terminal to prompt on: say how instead of hanging.
    let o = cli.run(&["users", "add", "amy", "--role", "staff"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--password-stdin"), "{}", stderr(&o));
    let o = cli.run(&["users", "add", "bad name", "--role", "staff"]);
    assert_eq!(o.status.code(), Some(2));
    // Webhook is a role of API tokens (a relay's), not of people.
    let o = cli.run(&["users", "add", "relay", "--role", "webhook"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("herald tokens add"), "{}", stderr(&o));
    let list = cli.ok(&["users", "list"]);
    assert!(list.contains("ed") && list.contains("staff"), "{list}");
    assert!(!list.contains("argon2"), "never the hash");
    let o = with_stdin(
        &["users", "passwd", "ed", "--password-stdin"],
        "a newer long password\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        cli.run(&["users", "passwd", "nobody", "--password-stdin"])
            .status
            .code(),
        Some(1)
    );
    cli.ok(&["users", "remove", "ed"]);
    assert_eq!(cli.run(&["users", "remove", "ed"]).status.code(), Some(1));
    assert!(stderr(&cli.run(&["users", "list"])).contains("0 users"));
}
both_backends!(console_users);

/// A PostgreSQL that is not there, or a database that does not exist, is named with its
/// cause at once: not "pool timed out" after ten seconds, not a source line of the server.
#[test]
fn database_errors_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let run = |url: &str| {
        let started = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["sections", "list"])
            .current_dir(dir.path())
            .env_remove("HERALD_CONFIG")
            .env("HERALD_DATABASE__URL", url)
            .env(
                "HERALD_SECRET_KEY",
                "cli-test-secret-cli-test-secret-0123456789",
            )
            .output()
            .unwrap();
        (o, started.elapsed())
    };
    let (o, took) = run("postgres://postgres@127.0.0.1:1/herald");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("connection refused"),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_secs(8),
        "said at once: {took:?}"
    );
    if let Some(base) = common::postgres_url() {
        let missing = match base.rfind('/') {
            Some(i) => format!("{}/herald_no_such_db", &base[..i]),
            None => format!("{base}/herald_no_such_db"),
        };
        let (o, _) = run(&missing);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains("herald_no_such_db")
                && err.contains("does not exist")
                && err.contains("createdb"),
            "{err}"
        );
        assert!(!err.contains(" line "), "no server source lines: {err}");
    }
}

/// `herald suppressions add|list|remove` and `herald bounces list|show`, with their errors.
async fn suppression_and_bounce_commands(backend: Backend) {
    let cli = Cli::new(backend).await;
    cli.ok(&["sections", "add", "wmd", "--name", "WMD"]);
    let csv = cli.write("list.csv", "email\nann@example.com\nbob@example.com\n");
    cli.ok(&[
        "subscribers",
        "import",
        &csv,
        "--sections",
        "wmd",
        "--preconfirmed",
    ]);
    let out = cli.ok(&[
        "suppressions",
        "add",
        "Ann@Example.com",
        "--reason",
        "legal",
    ]);
    assert!(out.contains("ann@example.com suppressed (legal)"), "{out}");
    assert!(
        cli.ok(&["subscribers", "list", "--status", "unsubscribed"])
            .contains("ann@example.com")
    );
    assert!(
        cli.ok(&["subscribers", "list", "--status", "active"])
            .contains("bob@example.com")
    );
    let listed = cli.ok(&["suppressions", "list"]);
    assert!(
        listed.contains("ann@example.com") && listed.contains("legal"),
        "{listed}"
    );
    assert!(
        cli.ok(&["suppressions", "add", "ann@example.com"])
            .contains("already")
    );
    cli.ok(&["suppressions", "remove", "ann@example.com"]);
    let o = cli.run(&["suppressions", "remove", "ann@example.com"]);
    assert_eq!(o.status.code(), Some(1), "not suppressed any more");
    // Lifting is recorded: which (hashed) address, suppressed why, lifted by whom.
    let lifted = cli.ok(&["suppressions", "list", "--lifted"]);
    assert!(
        lifted.contains("legal") && lifted.contains(" by cli:"),
        "{lifted}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["suppressions", "list", "--lifted", "--format", "json"]))
            .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(
        json[0]["email_hash"],
        herald::domain::sha256_hex("ann@example.com")
    );
    assert_eq!(
        cli.run(&["suppressions", "add", "not-an-address"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cli.ok(&["bounces", "list"]).trim(), "");
    let o = cli.run(&["bounces", "list", "--type", "nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("hard, soft, refused, delayed, delivered, complaint"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        cli.run(&["bounces", "list", "--since", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cli.run(&["bounces", "show", "99"]).status.code(), Some(1));
}
both_backends!(suppression_and_bounce_commands);

async fn import_show_export_delete(backend: Backend) {
    let cli = Cli::new(backend).await;
    cli.ok(&["sections", "add", "wmd", "--name", "WMD"]);
    cli.ok(&["sections", "add", "cyber", "--name", "Cyber"]);
    let csv = cli.write(
        "list.csv",
        "name,email,city\nAnn,ann@example.com,Oslo\nBob,not-an-address,Rome\nCid,CID@example.com,Lima\n\
         Ann again,Ann@Example.com,Oslo\nEve,\"eve@example.com\r\nBcc: x@example.org\",Nice\n",
    );
    let o = cli.run(&[
        "subscribers",
        "import",
        &csv,
        "--sections",
        "wmd,cyber",
        "--preconfirmed",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(":3:") && err.contains("not-an-address"),
        "bad row reported with its line: {err}"
    );
    assert!(err.contains(":6:"), "CR/LF row reported: {err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 new"), "{out}");

    let list: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "subscribers",
        "list",
        "--status",
        "active",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let by_section = cli.ok(&["subscribers", "list", "--section", "cyber"]);
    assert!(by_section.contains("ann@example.com") && by_section.contains("cid@example.com"));
    let bad_status = cli.run(&["subscribers", "list", "--status", "weird"]);
    assert_eq!(bad_status.status.code(), Some(2));

    let show: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "subscribers",
        "show",
        "ANN@example.com",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(show["email"], "ann@example.com");
    assert_eq!(show["status"], "active");
    assert_eq!(show["sections"], serde_json::json!(["cyber", "wmd"]));
    assert_eq!(show["consent_form"], "import:preconfirmed");
    assert!(
        cli.ok(&["subscribers", "show", "ann@example.com"])
            .contains("status:    active")
    );
    assert_eq!(
        cli.run(&["subscribers", "show", "nobody@example.com"])
            .status
            .code(),
        Some(1)
    );

    // Importing again merges; nothing doubles.
    let o = cli.run(&["subscribers", "import", &csv, "--sections", "wmd"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 new, 2 merged"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let export: serde_json::Value =
        serde_json::from_str(&cli.ok(&["subscribers", "export", "cid@example.com"])).unwrap();
    assert_eq!(export["email"], "cid@example.com");
    assert!(export["sends"].is_array());

    // Erase: gone, and a re-import does not bring them back.
    assert!(
        cli.ok(&["subscribers", "delete", "cid@example.com"])
            .contains("erased")
    );
    assert_eq!(
        cli.run(&["subscribers", "show", "cid@example.com"])
            .status
            .code(),
        Some(1)
    );
    let o = cli.run(&[
        "subscribers",
        "import",
        &csv,
        "--sections",
        "wmd",
        "--preconfirmed",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 skipped (erased/suppressed)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        cli.run(&["subscribers", "show", "cid@example.com"])
            .status
            .code(),
        Some(1)
    );
}
both_backends!(import_show_export_delete);

async fn bad_csv_imports_nothing(backend: Backend) {
    let cli = Cli::new(backend).await;
    cli.ok(&["sections", "add", "wmd", "--name", "WMD"]);
    let no_col = cli.write("a.csv", "name,mail\nAnn,ann@example.com\n");
    let o = cli.run(&["subscribers", "import", &no_col, "--sections", "wmd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no `email` column"), "{}", stderr(&o));
    let all_bad = cli.write("b.csv", "email\nnope\nalso nope\n");
    let o = cli.run(&["subscribers", "import", &all_bad, "--sections", "wmd"]);
    assert_eq!(o.status.code(), Some(1));
    let good = cli.write("c.csv", "email\nann@example.com\n");
    let o = cli.run(&["subscribers", "import", &good, "--sections", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown section"));
    let o = cli.run(&[
        "subscribers",
        "import",
        "/nonexistent.csv",
        "--sections",
        "wmd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let list = cli.ok(&["subscribers", "list", "--format", "json"]);
    assert_eq!(list.trim(), "[]");
}
both_backends!(bad_csv_imports_nothing);

async fn import_without_preconfirm_sends_confirmations(backend: Backend) {
    // Imported through the library with the app's SMTP server catching the mail.
    let app = common::TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    let csv = "email\nann@example.com\nbob@example.com\n";
    let s = app
        .services
        .subs
        .import_csv(csv.as_bytes(), &["wmd".into()], false)
        .await
        .unwrap();
    assert_eq!(s.report.new_subscribers, 2);
    assert_eq!(s.report.confirmations_queued, 2);
    assert_eq!(
        app.subscriber_status("ann@example.com").await.as_deref(),
        Some("pending")
    );
    app.deliver().await;
    let link = app
        .smtp()
        .last_to("bob@example.com")
        .unwrap()
        .link_with("/confirm/")
        .unwrap();
    assert_eq!(app.post(&link, "").await.status(), 200);
    assert_eq!(
        app.subscriber_status("bob@example.com").await.as_deref(),
        Some("active")
    );
}
both_backends!(import_without_preconfirm_sends_confirmations);

async fn digest_commands(backend: Backend) {
    let cli = Cli::new(backend).await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    cli.ok(&[
        "sections",
        "add",
        "wmd",
        "--name",
        "Weapons of Mass Destruction (WMD)",
    ]);
    cli.ok(&[
        "sections",
        "add",
        "cyber",
        "--name",
        "Cyber",
        "--feed",
        "https://news.example.org/cyber/feed",
    ]);
    assert!(
        cli.ok(&["sections", "list"])
            .contains("feed not polled yet")
    );
    // A bad feed URL refuses the whole section: nothing half-written.
    let o = cli.run(&[
        "sections",
        "add",
        "odd",
        "--name",
        "Odd",
        "--feed",
        "file:///etc/passwd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("feed URL"), "{}", stderr(&o));
    assert!(!cli.ok(&["sections", "list"]).contains("odd"));
    // The section's page: set, shown, refused when it is not a web address.
    cli.ok(&[
        "sections",
        "set-page",
        "wmd",
        "https://news.example.org/wmd/",
    ]);
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["sections", "list", "--format", "json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["slug"] == "wmd" && s["page_url"] == "https://news.example.org/wmd/"),
        "{listed}"
    );
    let o = cli.run(&["sections", "set-page", "wmd", "javascript:alert(1)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("page URL"), "{}", stderr(&o));
    let out = cli.ok(&[
        "articles",
        "import",
        "--section",
        "wmd",
        &format!("{fixtures}/wmd.rss.xml"),
    ]);
    assert!(
        out.contains("3 items, 1 skipped (1 with no http(s) link), 2 new, 0 updated in wmd"),
        "{out}"
    );
    let o = cli.run(&[
        "articles",
        "import",
        "--section",
        "wmd",
        &format!("{fixtures}/not-a-feed.html"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a feed"));
    // The size limit holds for what has no size to look at first: a pipe, a device. (It
    // was checked on the file's length alone: a pipe imported whole, /dev/zero ran the
    // machine out of memory.)
    let small = [("HERALD_FEEDS__MAX_SIZE", "64kB")];
    let o = cli.run_env(
        &["articles", "import", "--section", "wmd", "/dev/zero"],
        &small,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("larger than 64"), "{}", stderr(&o));
    // A feed padded past the limit with whitespace before its items; herald stops reading
    // at the limit.
    let feed = std::fs::read_to_string(format!("{fixtures}/wmd.rss.xml")).unwrap();
    let padded = feed.replacen("<item>", &format!("{}<item>", " ".repeat(200_000)), 1);
    let o = cli.run_stdin(
        &["articles", "import", "--section", "wmd", "/dev/stdin"],
        &small,
        padded.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("larger than 64"), "{}", stderr(&o));
    cli.ok(&[
        "articles",
        "add",
        "--section",
        "cyber",
        "--title",
        "Hand-added",
        "--url",
        "https://news.example.org/cyber/h",
        "--published",
        "2015-10-02T08:00:00Z",
    ]);
    let o = cli.run(&[
        "articles",
        "add",
        "--section",
        "cyber",
        "--title",
        "x",
        "--url",
        "https://e.example/",
        "--published",
        "yesterday",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a bad flag value is a usage error"
    );
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["articles", "list", "--format", "json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);

    let csv = cli.write("r.csv", "email\nann@example.com\nbob@example.com\n");
    cli.ok(&[
        "subscribers",
        "import",
        &csv,
        "--sections",
        "wmd,cyber",
        "--preconfirmed",
    ]);

    let o = cli.run(&[
        "schedules",
        "add",
        "bad",
        "--cron",
        "0 7 * *",
        "--sections",
        "wmd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid cron expression"),
        "{}",
        stderr(&o)
    );
    let o = cli.run(&[
        "schedules",
        "add",
        "bad",
        "--cron",
        "0 7 * * *",
        "--sections",
        "wmd",
        "--timezone",
        "Mars/Base",
    ]);
    assert!(stderr(&o).contains("unknown time zone"));
    let o = cli.run(&[
        "schedules",
        "add",
        "bad",
        "--cron",
        "0 7 * * *",
        "--sections",
        "nosuch",
    ]);
    assert!(stderr(&o).contains("unknown section"));
    cli.ok(&[
        "schedules",
        "add",
        "morning",
        "--cron",
        "0 7 * * 1-5",
        "--sections",
        "wmd,cyber",
        "--timezone",
        "Europe/Berlin",
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["schedules", "list", "--format", "json"])).unwrap();
    assert!(list[0]["description"].as_str().unwrap().contains("07:00"));
    assert_eq!(list[0]["upcoming"].as_array().unwrap().len(), 3);
    assert!(
        list[0]["upcoming"][0]
            .as_str()
            .unwrap()
            .contains("07:00 CE"),
        "{}",
        list[0]["upcoming"]
    );
    assert_eq!(list[0]["images"], true, "pictures on by default");
    cli.ok(&[
        "schedules",
        "add",
        "plain",
        "--cron",
        "0 7 * * 1-5",
        "--sections",
        "wmd",
        "--no-images",
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&cli.ok(&["schedules", "list", "--format", "json"])).unwrap();
    assert_eq!(
        (list[1]["name"].as_str(), &list[1]["images"]),
        (Some("plain"), &serde_json::json!(false))
    );
    cli.ok(&["schedules", "remove", "plain"]);

    let preview = cli.ok(&["digests", "preview", "morning", "--to", "ann@example.com"]);
    assert!(
        preview.contains("Lavrov Says Russia") && preview.contains("Hand-added"),
        "{preview}"
    );
    assert!(
        preview.contains("== Cyber ==")
            && preview.contains("== Weapons of Mass Destruction (WMD) ==")
    );
    // Nothing recorded by a preview.
    assert_eq!(cli.ok(&["issues", "list", "--format", "json"]).trim(), "[]");

    let run = cli.run(&["digests", "run", "morning"]);
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(out.contains("settled: sent=2"), "{out}");
    assert!(
        stderr(&run).contains("delivering by maildir:outbox"),
        "says which transport it used: {}",
        stderr(&run)
    );
    // Nothing new now, and the preview says why.
    let o = cli.run(&["digests", "preview", "morning"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("went out in an earlier issue (the last: #1"),
        "{}",
        stderr(&o)
    );
    // A settled issue says so.
    assert!(
        cli.ok(&["issues", "list"]).contains(" sent "),
        "{}",
        cli.ok(&["issues", "list"])
    );
    let outbox = std::fs::read_dir(cli.work.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(outbox, 2, "one .eml per reader");
    let issues: serde_json::Value =
        serde_json::from_str(&cli.ok(&["issues", "list", "--format", "json"])).unwrap();
    assert_eq!(issues[0]["counts"]["sent"], 2);
    assert_eq!(issues[0]["article_count"], 3);
    assert_eq!(issues[0]["state"], "sent");
    assert!(
        issues[0].get("status").is_none(),
        "no 'queued' beside 'sent': {}",
        issues[0]
    );
    let sends = cli.ok(&["sends", "--issue", "1", "--format", "json"]);
    let rows: Vec<serde_json::Value> = sends
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for key in [
        "issue",
        "email",
        "status",
        "message_id",
        "attempts",
        "last_reply",
        "updated_at",
    ] {
        assert!(rows[0].get(key).is_some(), "sends json lacks {key}");
    }
    assert!(
        cli.ok(&["sends", "--email", "ANN@example.com"])
            .contains("ann@example.com")
    );
    assert_eq!(
        cli.run(&["sends", "--status", "lost"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cli.run(&["sends", "--since", "soon"]).status.code(),
        Some(2)
    );
    assert!(
        cli.ok(&["sends", "retry", "--issue", "1"])
            .contains("0 failed sends of issue #1 re-queued")
    );
    // Delivered or in-flight mail is never re-queued: that would send it twice.
    for status in ["sent", "sending", "queued", "bounced"] {
        let out = cli.run(&["sends", "retry", "--issue", "1", "--status", status]);
        assert_eq!(out.status.code(), Some(2), "retry --status {status}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("only failed sends"));
    }
    assert!(cli.ok(&["sends", "--status", "sent"]).contains("sent"));
    // Nothing new: the next run sends nothing.
    assert!(
        cli.ok(&["digests", "run", "morning"])
            .contains("nothing to send")
    );
    // One new article: counted in words ("1 article", not "1 articles").
    cli.ok(&[
        "articles",
        "add",
        "--section",
        "wmd",
        "--title",
        "One more",
        "--url",
        "https://news.example.org/wmd/one-more",
    ]);
    let queued = cli.ok(&["digests", "run", "morning", "--queue-only"]);
    assert!(
        queued.contains(": 1 article, made in") && queued.contains(" queued in "),
        "{queued}"
    );

    cli.ok(&["schedules", "pause", "morning"]);
    assert!(cli.ok(&["schedules", "list"]).contains("PAUSED"));
    cli.ok(&["schedules", "resume", "morning"]);
    assert_eq!(
        cli.run(&["schedules", "pause", "nope"]).status.code(),
        Some(1)
    );
    cli.ok(&["schedules", "remove", "morning"]);

    let token = cli.ok(&["tokens", "add", "cms", "--role", "staff"]);
    assert!(token.trim().starts_with("hrld_"));
    assert_eq!(
        cli.run(&["tokens", "add", "cms", "--role", "staff"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        cli.run(&["tokens", "add", "x", "--role", "root"])
            .status
            .code(),
        Some(2)
    );
    let relay = cli.ok(&["tokens", "add", "relay", "--role", "webhook"]);
    assert!(relay.trim().starts_with("hrld_"));
    assert!(cli.ok(&["tokens", "list"]).contains("webhook"));
    assert!(cli.ok(&["tokens", "list"]).contains("cms"));
    cli.ok(&["tokens", "revoke", "cms"]);
    assert_eq!(cli.run(&["tokens", "revoke", "cms"]).status.code(), Some(1));
}
both_backends!(digest_commands);

/// What a new user met in the first hour, each answered: a command in the wrong folder
/// refuses a missing database (naming it) instead of making an empty one; a listing piped
/// into `head` ends quietly; `digests run` against a relay that is down reports after one
/// pass instead of waiting for days of retries; `--help` lists the values a flag takes;
/// times are in the schedule's zone; counts are in words; logs carry no colour codes when
/// nobody reads them on a terminal.
async fn the_first_hour_needs_no_guesswork(backend: Backend) {
    let empty = tempfile::tempdir().unwrap();
    let bare = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.args(args)
            .current_dir(empty.path())
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_DATABASE__URL");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = bare(&["sections", "list"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let expected = empty.path().join("var/herald.db");
    assert!(
        stderr(&o).contains(&format!("no database at {}", expected.display()))
            && stderr(&o).contains("herald migrate"),
        "{}",
        stderr(&o)
    );
    assert!(!empty.path().join("var").exists(), "nothing made");
    let o = bare(
        &["sections", "list"],
        &[(
            "HERALD_DATABASE__URL",
            "sqlite:/nonexistent-dir/sub/herald.db",
        )],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent-dir/sub/herald.db"),
        "{}",
        stderr(&o)
    );
    assert!(!std::path::Path::new("/nonexistent-dir").exists());
    // `migrate` makes it, and says where; no colour codes in what is not a terminal.
    let o = bare(&["migrate"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&expected.display().to_string()));
    assert!(
        stderr(&o).contains("no secret_key configured") && !stderr(&o).contains('\x1b'),
        "{}",
        stderr(&o)
    );
    let o = bare(&["check-config"], &[]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains(&format!("database: SQLite {}", expected.display()))
            && out.contains("mail: maildir:"),
        "{out}"
    );

    let cli = Cli::new(backend).await;
    cli.ok(&["sections", "add", "wmd", "--name", "WMD"]);
    let mut csv = String::from("email\n");
    for i in 0..3000 {
        csv.push_str(&format!("reader{i}@example.com\n"));
    }
    let file = cli.write("many.csv", &csv);
    cli.ok(&[
        "subscribers",
        "import",
        &file,
        "--sections",
        "wmd",
        "--preconfirmed",
    ]);
    // `herald subscribers list | head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["subscribers", "list"])
        .current_dir(cli.work.path())
        .env("HERALD_DATABASE__URL", &cli.db)
        .env(
            "HERALD_SECRET_KEY",
            "cli-test-secret-cli-test-secret-0123456789",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("@example.com"));
    }
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(101), "no panic on a closed pipe");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    // Counts in words.
    let one = cli.run(&["tokens", "list"]);
    assert!(stderr(&one).contains("0 tokens"), "{}", stderr(&one));
    cli.ok(&["tokens", "add", "cms", "--role", "staff"]);
    assert!(stderr(&cli.run(&["tokens", "list"])).contains("1 token\n"));
    assert!(stderr(&cli.run(&["sends", "--issue", "99"])).contains("no sends match"));

    // --help says what a flag takes.
    let help = cli.ok(&["sends", "--help"]);
    for v in [
        "queued",
        "sending",
        "sent",
        "retrying",
        "failed",
        "bounced",
        "suppressed",
    ] {
        assert!(help.contains(v), "{v} in\n{help}");
    }
    assert!(
        cli.ok(&["bounces", "list", "--help"])
            .contains("auto_reply")
    );
    assert!(cli.ok(&["tokens", "add", "--help"]).contains("operator"));
    let o = cli.run(&["sends", "--status", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));

    // The next run in the schedule's own zone.
    let out = cli.ok(&[
        "schedules",
        "add",
        "morning",
        "--cron",
        "0 7 * * *",
        "--sections",
        "wmd",
        "--timezone",
        "Europe/Berlin",
    ]);
    assert!(
        (out.contains("07:00 CET") || out.contains("07:00 CEST")) && out.contains("UTC)"),
        "{out}"
    );

    // A relay that is down: one pass, then a summary and the way on, not days of waiting.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cli.ok(&[
        "articles",
        "add",
        "--section",
        "wmd",
        "--title",
        "Story",
        "--url",
        "https://news.example.org/1",
    ]);
    let started = std::time::Instant::now();
    let o = cli.run_env(
        &["digests", "run", "morning"],
        &[
            ("HERALD_MAIL__URL", &format!("smtp://127.0.0.1:{dead_port}")),
            ("HERALD_MAIL__CONNECT_TIMEOUT", "1s"),
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "it returned"
    );
    assert_eq!(o.status.code(), Some(1), "nothing could be delivered");
    let err = stderr(&o);
    assert!(
        err.contains("3000 sends are to be tried again later")
            && err.contains("herald serve")
            && err.contains("--wait"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("retrying=3000"));
}
both_backends!(the_first_hour_needs_no_guesswork);

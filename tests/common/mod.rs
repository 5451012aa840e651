//! Test harness: a real herald on port 0 with its own database (a fresh SQLite file, or a
//! fresh PostgreSQL database when HERALD_TEST_POSTGRES_URL is set), a manual clock, no
//! background tasks, and an in-process SMTP server that catches the mail.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use herald::clock::Clock;
use herald::config::Config;
use herald::{App, AppOptions, Services};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub mod dovecot;
pub mod pki;
pub mod postfix;
pub mod relays;
pub mod returned;
pub mod smtp;
#[allow(unused_imports)]
pub use relays::{ScriptedRelay, SmtpSink};
#[allow(unused_imports)]
pub use smtp::{Behaviour, Caught, Hook, SmtpServer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generate one test per backend from one async body `fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    // Needs chromium, node and playwright-core: ignored (not passed) without them.
    ($name:ident, browser) => {
        both_backends!(@gated $name, herald_browser,
            "chromium, node or playwright-core (npm ci --prefix tests/browser) was missing when the tests were built");
    };
    // Checks against outside programs (dkimpy, OpenDKIM, openssl, Dovecot, Postfix):
    // ignored (not passed) when one was missing at build time.
    ($name:ident, tools) => {
        both_backends!(@gated $name, herald_tools,
            "an outside program it checks against (dkimpy, OpenDKIM, openssl, Dovecot, Postfix) was missing when the tests were built");
    };
    (@gated $name:ident, $cfg:ident, $why:literal) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not($cfg), ignore = $why)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(herald_pg), ignore = "HERALD_TEST_POSTGRES_URL was not set when the tests were built")]
            #[cfg_attr(all(herald_pg, not($cfg)), ignore = $why)]
            async fn postgres() {
                assert!(
                    $crate::common::postgres_url().is_some(),
                    "HERALD_TEST_POSTGRES_URL is not set"
                );
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    };
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(herald_pg),
                ignore = "HERALD_TEST_POSTGRES_URL was not set when the tests were built"
            )]
            async fn postgres() {
                assert!(
                    $crate::common::postgres_url().is_some(),
                    "HERALD_TEST_POSTGRES_URL is not set"
                );
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    };
}

/// `HERALD_TEST_LOG=herald=debug cargo test NAME` shows herald's logs (with their spans:
/// request route, job, batch, issue fill) in a failing test's output.
pub fn test_log() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

pub fn postgres_url() -> Option<String> {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fixed, ordinary instant for tests to start from.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap()
}

/// What keeps a test's database alive, and removes it when the test ends: the SQLite
/// file's folder, or the PostgreSQL database (dropped, whatever still holds a connection).
pub enum DbGuard {
    Sqlite(tempfile::TempDir),
    Postgres {
        base: String,
        name: String,
    },
    /// Someone else's database (a second instance on the first one's).
    Borrowed,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        let DbGuard::Postgres { base, name } = self else {
            return;
        };
        let (base, name) = (base.clone(), name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A fresh, empty database URL for `backend`, and the guard that removes it. PostgreSQL
/// databases are named `herald_test_<unix seconds>_<random>`, so `.ci/run` can tell one a
/// crashed run left behind (hours old) from one a concurrent run is using.
pub async fn fresh_database(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("herald.db").display());
            (url, DbGuard::Sqlite(dir))
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let base = postgres_url().expect("postgres url");
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let name = format!(
                "herald_test_{secs}_{}",
                herald::domain::RandomToken::generate().as_str()[..12]
                    .to_lowercase()
                    .replace(['-', '_'], "x")
            );
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let url = match base.rfind('/') {
                Some(i) if base[..i].ends_with('/') => format!("{base}/{name}"),
                Some(i) => format!("{}/{name}", &base[..i]),
                None => format!("{base}/{name}"),
            };
            (url, DbGuard::Postgres { base, name })
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub services: Services,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub smtp: Option<SmtpServer>,
    pub db_url: String,
    /// `http://addr` of the metrics listener, when `http.metrics_listen` is set.
    pub metrics_base: Option<String>,
    /// Where returned mail is taken, when `bounces.listen` is set.
    pub bounces_addr: Option<std::net::SocketAddr>,
    _db: DbGuard,
}

pub struct Spawn {
    pub backend: Backend,
    pub overrides: Vec<(String, String)>,
    /// false: point mail at a port where nothing listens yet (SMTP down).
    pub smtp_up: bool,
    /// Share another app's database (two instances on one database).
    pub db_url: Option<String>,
    /// Use this SMTP port (a second instance sending to the first one's server).
    pub smtp_port: Option<u16>,
    /// Run the background jobs and delivery workers as `herald serve` does (real time).
    pub background: bool,
}

impl Spawn {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            overrides: Vec::new(),
            smtp_up: true,
            db_url: None,
            smtp_port: None,
            background: false,
        }
    }
    /// Share this database (another instance on it, or the same one restarted).
    pub fn db(mut self, url: &str) -> Self {
        self.db_url = Some(url.to_string());
        self
    }

    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.overrides.push((k.into(), v.into()));
        self
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(Spawn::new(backend)).await
    }

    pub async fn spawn_with(spec: Spawn) -> TestApp {
        test_log();
        let (db_url, db_guard) = match &spec.db_url {
            Some(u) => (u.clone(), DbGuard::Borrowed),
            None => fresh_database(spec.backend).await,
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let smtp = if spec.smtp_up {
            SmtpServer::start(Behaviour::default())
        } else {
            SmtpServer::reserve()
        };
        let smtp_url = format!("smtp://127.0.0.1:{}", spec.smtp_port.unwrap_or(smtp.port));
        let mut overrides: Vec<(String, String)> = vec![
            ("database.url".into(), db_url.clone()),
            ("database.max_connections".into(), "5".into()),
            ("http.listen".into(), format!("127.0.0.1:{port}")),
            ("http.public_url".into(), base.clone()),
            ("mail.url".into(), smtp_url),
            ("mail.send_timeout".into(), "5s".into()),
            ("mail.connect_timeout".into(), "2s".into()),
            (
                "secret_key".into(),
                "test-secret-key-test-secret-key-0123456789".into(),
            ),
        ];
        overrides.extend(spec.overrides);
        let pairs: Vec<(&str, &str)> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config = Config::defaults_with(&pairs).expect("test config");
        let clock = Clock::manual(t0());
        let app = App::build_with(
            config,
            AppOptions {
                clock: clock.clone(),
                background: spec.background,
                listener: Some(listener),
            },
        )
        .await
        .expect("app starts");
        let services = app.services().clone();
        let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
        let bounces_addr = app.bounces_addr();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            base,
            services,
            clock,
            http,
            smtp: Some(smtp),
            db_url,
            metrics_base,
            bounces_addr,
            _db: db_guard,
        }
    }

    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().unwrap()
    }

    /// Add an article that arrives now.
    pub async fn add_article(&self, section: &str, title: &str, url: &str, summary: &str) {
        let input = herald::articles::ArticleInput {
            section: section.into(),
            title: title.into(),
            url: url.into(),
            summary: Some(summary.into()),
            author: Some("Pamela Dockins".into()),
            published: None,
            guid: None,
            image: None,
        };
        herald::articles::add_article(self.services.store.as_ref(), input, self.clock.now())
            .await
            .expect("add article");
    }

    /// A schedule in UTC with no custom subject.
    pub async fn add_schedule(&self, name: &str, cron: &str, sections: &[&str]) {
        let slugs: Vec<String> = sections.iter().map(|s| s.to_string()).collect();
        self.services
            .digests
            .add_schedule(name, cron, &slugs, None, None, None)
            .await
            .expect("add schedule");
    }

    /// Set the manual clock to this UTC instant.
    pub fn set_time(&self, y: i32, mo: u32, d: u32, h: u32, mi: u32, sec: u32) {
        self.clock
            .set(Utc.with_ymd_and_hms(y, mo, d, h, mi, sec).unwrap());
    }

    /// Run the scheduler once at the clock's current time.
    /// Like `herald serve`'s scheduler job: make the due issues, then write their readers'
    /// `sends` rows; the outcomes carry the issues as they are after that.
    pub async fn tick(&self) -> Vec<herald::digests::TickOutcome> {
        let digests = &self.services.digests;
        let mut made = digests.run_tick().await.expect("tick");
        digests
            .fill_pending(std::time::Duration::MAX, |_| {})
            .await
            .expect("fill");
        for o in &mut made {
            o.issue = self
                .services
                .store
                .issue(o.issue.id)
                .await
                .unwrap()
                .unwrap();
        }
        made
    }

    /// Make a subscriber active for these sections without going through mail.
    pub async fn reader(&self, email: &str, sections: &[&str]) {
        let csv = format!("email\n{email}\n");
        let slugs: Vec<String> = sections.iter().map(|s| s.to_string()).collect();
        self.services
            .subs
            .import_csv(csv.as_bytes(), &slugs, true)
            .await
            .expect("import reader");
    }

    pub async fn add_section(&self, slug: &str, name: &str) {
        herald::articles::add_section(
            self.services.store.as_ref(),
            slug,
            name,
            "",
            None,
            self.clock.now(),
        )
        .await
        .expect("add section");
    }

    /// Deliver everything due now (no waiting on wall-clock time).
    pub async fn deliver(&self) -> usize {
        self.services.engine.deliver_due().await.expect("deliver")
    }

    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// GET with extra headers (a path, or a whole URL).
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        self.http.get(url).send().await.unwrap()
    }

    pub async fn post(&self, url: &str, body: &str) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        self.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// POST to the JSON API with a bearer token.
    pub async fn api_post(
        &self,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send().await.unwrap()
    }

    pub async fn signup(&self, email: &str, sections: &[&str]) -> reqwest::Response {
        let mut body = format!("email={}", urlencode(email));
        for s in sections {
            body.push_str(&format!("&sections={s}"));
        }
        self.post_form("/subscribe", &body).await
    }

    /// One digest of a section "wmd" to each of `readers` (addresses at example.com unless
    /// they have an @), made at 07:00 on 2 March 2026 and delivered.
    pub async fn digest_to(&self, readers: &[&str]) {
        self.add_section("wmd", "WMD").await;
        for r in readers {
            let email = if r.contains('@') {
                r.to_string()
            } else {
                format!("{r}@example.com")
            };
            self.reader(&email, &["wmd"]).await;
        }
        self.add_article("wmd", "First story", "https://news.example.org/1", "s")
            .await;
        self.add_schedule("m", "0 7 * * *", &["wmd"]).await;
        self.set_time(2026, 3, 2, 7, 0, 0);
        self.tick().await;
        self.deliver().await;
    }

    /// The envelope sender of the last mail to `email`: its VERP return path.
    pub fn verp(&self, email: &str) -> String {
        self.smtp().last_to(email).expect("a mail to them").from
    }

    /// The mailto target of the last mail to `email`'s List-Unsubscribe.
    pub fn unsubscribe_address(&self, email: &str) -> String {
        self.smtp()
            .last_to(email)
            .expect("a mail to them")
            .header("List-Unsubscribe")
            .expect("List-Unsubscribe")
            .split("<mailto:")
            .nth(1)
            .expect("a mailto target")
            .split(['?', '>'])
            .next()
            .unwrap()
            .to_string()
    }

    /// Sign up, deliver, follow the confirmation link and press the button.
    pub async fn subscribe_and_confirm(&self, email: &str, sections: &[&str]) -> Caught {
        assert_eq!(self.signup(email, sections).await.status(), 200);
        self.deliver().await;
        let mail = self.smtp().last_to(email).expect("confirmation mail");
        let link = mail.link_with("/confirm/").expect("confirm link");
        assert_eq!(self.post(&link, "").await.status(), 200);
        self.deliver().await;
        self.smtp().last_to(email).expect("welcome mail")
    }

    pub async fn subscriber_status(&self, email: &str) -> Option<String> {
        self.services
            .store
            .subscriber_by_email(email)
            .await
            .unwrap()
            .map(|s| s.status.to_string())
    }

    /// Run one statement on the test database from a connection of its own.
    pub async fn execute(&self, sql: &'static str) {
        use sqlx::Connection;
        if self.db_url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }

    /// Poll `/healthz` until `pred(status, body)` holds (at most `secs` seconds).
    pub async fn wait_health(&self, secs: u64, pred: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let r = self.get("/healthz").await;
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            if pred(status, &body) || std::time::Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Rows of one table as text, for "no secret is stored" checks.
    pub async fn dump_table(&self, sql: &'static str) -> String {
        match self.db_url.starts_with("sqlite:") {
            true => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
                let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
                rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
            }
            false => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
                let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
                rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

/// The value of metric `name` in Prometheus text, summed over the series whose labels
/// include all of `labels` (0 when there is none).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Shared, thread-safe list of caught messages.
pub type Inbox = Arc<Mutex<Vec<Caught>>>;

/// Wait until something listens on 127.0.0.1:`port` (a server the test started).
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
}

/// Whether an outside program a test relies on is here. When it is not, the test is skipped
/// with a note, unless HERALD_TEST_REQUIRE_TOOLS is set (as `.ci/run` does): then it fails.
pub fn tool_available(what: &str, probe: &[&str]) -> bool {
    let ok = std::process::Command::new(probe[0])
        .args(&probe[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("HERALD_TEST_REQUIRE_TOOLS").is_none(),
            "{what} is required (HERALD_TEST_REQUIRE_TOOLS is set) but not installed"
        );
        eprintln!("{what} not installed: test skipped");
    }
    ok
}

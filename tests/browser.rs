//! The console in a real browser: headless Chromium (Debian's `chromium`), driven by
//! playwright-core (`tests/browser/`, installed with `npm ci --prefix tests/browser`).
//! herald runs here as `herald serve` does (background jobs and delivery workers) with
//! readers seeded; the script logs in, adds a section and an article, schedules a
//! weekday-morning digest in Berlin time (a bad cron first), previews it, sends it now,
//! watches it reach every reader in the log, and finds one address's mail as an operator.
//! Then every reader must have exactly one digest carrying the article added in the
//! browser. The screenshots of the README's tour are made here: set HERALD_SCREENSHOTS to
//! keep them (`docs/console` for the README's).

mod common;
use common::{Backend, Spawn, TestApp};
use herald::store::Role;

const READERS: usize = 25;

fn browser_available() -> bool {
    let here = env!("CARGO_MANIFEST_DIR");
    common::tool_available("chromium", &["chromium", "--version"])
        && common::tool_available(
            "playwright-core (npm ci --prefix tests/browser)",
            &[
                "test",
                "-f",
                &format!("{here}/tests/browser/node_modules/playwright-core/package.json"),
            ],
        )
        && common::tool_available("node", &["node", "--version"])
}

/// herald's warnings and errors of this test process, kept to explain a failure.
fn herald_log() -> std::path::PathBuf {
    static LOG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("herald-browser-{}.log", std::process::id()));
        let file = std::fs::File::create(&path).expect("log file");
        let _ = tracing_subscriber::fmt()
            .with_env_filter("herald=warn")
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
        path
    })
    .clone()
}

async fn a_staff_member_schedules_and_sends_a_digest_in_the_browser(backend: Backend) {
    if !browser_available() {
        return;
    }
    let log_path = herald_log();
    let app = TestApp::spawn_with(
        serving(backend)
            .set("site.name", "The Herald")
            // A shared, loaded machine may time out an exchange now and then: the retry comes
            // seconds later (not the default minute), and a stale-heartbeat hand-back in a
            // minute at most. Generous timeouts make such retries rare.
            .set("delivery.initial_backoff", "2s")
            .set("mail.connect_timeout", "10s")
            .set("mail.send_timeout", "20s")
            .set("delivery.lease", "60s"),
    )
    .await;
    let ticker = wall_clock(&app);
    let store = app.services.store.as_ref();
    add_users(&app).await;
    app.add_section("wmd", "Weapons of Mass Destruction").await;
    let readers: Vec<String> = (0..READERS)
        .map(|i| format!("reader{i:02}@example.com"))
        .collect();
    let csv = format!("email\n{}\n", readers.join("\n"));
    app.services
        .subs
        .import_csv(csv.as_bytes(), &["wmd".to_string()], true)
        .await
        .unwrap();
    // The screenshots go where HERALD_SCREENSHOTS says, or to a folder of this run's own
    // (one per backend: both run at once) that is removed when the test passes.
    // A relative folder is the crate's (node runs in tests/browser: give it the whole path).
    let (shots, kept) = screenshots("herald-shots", backend);
    let started = std::time::SystemTime::now();
    let out = node(
        "console.test.mjs",
        &[
            ("HERALD_BASE", app.base.clone()),
            ("HERALD_READERS", READERS.to_string()),
            ("HERALD_FIND", readers[7].clone()),
            ("HERALD_SHOTS", shots.clone()),
        ],
    )
    .await;
    ticker.abort();
    let log = said(&out);
    if !out.status.success() {
        panic!(
            "the browser run failed:\n{log}\n{}",
            what_herald_says(&app, &log_path).await
        );
    }
    assert!(log.contains("browser: all good"), "{log}");
    // What the browser saw is what the readers got: one digest each, with the article the
    // staff member added, and nothing to anyone else.
    let smtp = app.smtp();
    for r in &readers {
        let got = smtp.to(r);
        assert_eq!(got.len(), 1, "{r}: {log}");
        assert!(
            got[0].text().contains("Inspectors find the <blueprints>"),
            "{r}"
        );
        assert!(
            got[0]
                .html()
                .contains("Inspectors find the &lt;blueprints&gt;")
                || got[0]
                    .html()
                    .contains("Inspectors find the &#60;blueprints&#62;"),
            "{r}"
        );
    }
    assert_eq!(smtp.count(), READERS);
    let s = store.schedule_by_name("morning").await.unwrap().unwrap();
    assert_eq!(
        (s.cron.as_str(), s.timezone.as_str()),
        ("0 7 * * 1-5", "Europe/Berlin")
    );
    for name in [
        "login",
        "schedule-bad-cron",
        "schedule-times",
        "schedule-preview",
        "digest-html",
        "issue",
        "log",
        "subscriber",
        "dashboard",
    ] {
        // Made by this run, not left from an earlier one.
        let made = std::fs::metadata(format!("{shots}/{name}.png")).and_then(|m| m.modified());
        assert!(
            made.as_ref().is_ok_and(|t| *t >= started),
            "screenshot {name} in {shots}: {made:?}"
        );
    }
    if !kept {
        let _ = std::fs::remove_dir_all(&shots);
    }
}
both_backends!(
    a_staff_member_schedules_and_sends_a_digest_in_the_browser,
    browser
);

/// Readers of the stop test, messages the relay takes before it holds the rest, and the
/// connections herald keeps.
const STOP_READERS: usize = 40;
const STOP_FREE: usize = 10;
const STOP_CONNECTIONS: usize = 2;

/// A staff member stops an issue mid-send with the keyboard alone. The relay takes the
/// first messages, then holds each one it is given until the script is done, as a slow
/// relay would: what it was holding arrives (and the ledger says `sent` for exactly that),
/// nothing more of the issue does, and every other reader's send is `cancelled`. On the
/// way, the issue page updates its progress in place (no reload; a pause control) and an
/// article title in Persian carrying U+202E does not reorder the line it is on.
async fn a_staff_member_stops_an_issue_mid_send_by_keyboard(backend: Backend) {
    use common::{Behaviour, Hook};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    if !browser_available() {
        return;
    }
    let log_path = herald_log();
    let app = TestApp::spawn_with(
        serving(backend)
            .set("delivery.connections", &STOP_CONNECTIONS.to_string())
            .set("delivery.batch_size", "20")
            // The relay holds messages for as long as the script runs: no timeout meanwhile.
            .set("mail.send_timeout", "120s")
            .set("delivery.lease", "300s"),
    )
    .await;
    let ticker = wall_clock(&app);
    add_users(&app).await;
    // The relay: free for the first messages, then each waits until released.
    let seen = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    app.smtp().set_behaviour(Behaviour {
        on_message: Some(Hook(Arc::new({
            let (seen, gate) = (seen.clone(), gate.clone());
            move || {
                if seen.fetch_add(1, Ordering::SeqCst) >= STOP_FREE {
                    let (open, cv) = &*gate;
                    let held = cv
                        .wait_timeout_while(
                            open.lock().unwrap(),
                            std::time::Duration::from_secs(100),
                            |open| !*open,
                        )
                        .unwrap();
                    drop(held);
                }
            }
        }))),
        ..Default::default()
    });
    app.add_section("wmd", "WMD").await;
    let csv: String = (0..STOP_READERS)
        .map(|i| format!("reader{i:02}@example.com\n"))
        .collect();
    app.services
        .subs
        .import_csv(
            format!("email\n{csv}").as_bytes(),
            &["wmd".to_string()],
            true,
        )
        .await
        .unwrap();
    // A Persian title with a right-to-left override in it, as a feed might carry.
    let title = "\u{202E}گزارش بازرسان درباره سایت‌ها";
    app.add_article("wmd", title, "https://news.example.org/fa", "")
        .await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    let issue = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(issue.clone()).await.unwrap();
    app.services.engine.wake();

    let (shots, kept) = screenshots("herald-stop-shots", backend);
    let out = node(
        "stop.test.mjs",
        &[
            ("HERALD_BASE", app.base.clone()),
            ("HERALD_ISSUE", issue.id.to_string()),
            ("HERALD_SHOTS", shots.clone()),
        ],
    )
    .await;
    // Let the relay answer what it holds.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let log = said(&out);
    if !out.status.success() {
        ticker.abort();
        panic!(
            "the browser run failed:\n{log}\n{}",
            what_herald_says(&app, &log_path).await
        );
    }
    assert!(log.contains("browser: all good"), "{log}");
    // Nothing more arrives: at most what the relay was holding when the stop came.
    let mut received = app.smtp().count();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let now = app.smtp().count();
        if now == received {
            break;
        }
        received = now;
    }
    ticker.abort();
    assert!(
        received <= STOP_FREE + STOP_CONNECTIONS,
        "{received} arrived: more than the {STOP_FREE} before the stop and the {STOP_CONNECTIONS} in flight"
    );
    let counts: std::collections::BTreeMap<String, i64> = app
        .services
        .store
        .issue_status_counts(issue.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        counts.get("sent").copied(),
        Some(received as i64),
        "{counts:?}"
    );
    assert_eq!(
        counts.get("cancelled").copied(),
        Some((STOP_READERS - received) as i64),
        "{counts:?}"
    );
    if !kept {
        let _ = std::fs::remove_dir_all(&shots);
    }
}
both_backends!(a_staff_member_stops_an_issue_mid_send_by_keyboard, browser);

/// herald as `herald serve` runs it: background jobs and delivery workers.
fn serving(backend: Backend) -> Spawn {
    Spawn {
        background: true,
        ..Spawn::new(backend)
    }
}

/// herald's clock runs as the wall clock does, from the tests' usual start, so that retries
/// and leases come due as in `herald serve`. Abort the task to stop it.
fn wall_clock(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let clock = app.clock.clone();
    tokio::spawn(async move {
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let now = std::time::Instant::now();
            clock.advance(chrono::Duration::from_std(now - last).unwrap());
            last = now;
        }
    })
}

/// Where a script puts its screenshots: HERALD_SCREENSHOTS (kept; relative to the crate,
/// since node runs in tests/browser), or a folder of this run's own (one per backend: both
/// run at once) that the test removes when it passes. Whether they are kept.
fn screenshots(name: &str, backend: Backend) -> (String, bool) {
    match std::env::var("HERALD_SCREENSHOTS") {
        Ok(d) => (
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(d)
                .to_string_lossy()
                .into_owned(),
            true,
        ),
        Err(_) => (
            std::env::temp_dir()
                .join(format!("{name}-{}-{backend:?}", std::process::id()))
                .to_string_lossy()
                .into_owned(),
            false,
        ),
    }
}

/// The console users the scripts log in as: ed (staff) and olga (operator).
async fn add_users(app: &TestApp) {
    for (name, pw, role) in [
        ("ed", "staff password 1", Role::Staff),
        ("olga", "operator password 2", Role::Operator),
    ] {
        let hash = herald::access::hash_password(pw).unwrap();
        app.services
            .store
            .add_user(name, role, &hash, app.clock.now())
            .await
            .unwrap();
    }
}

/// Run a script of tests/browser with node (the users' names and passwords in its
/// environment, and `env`), in a blocking thread: herald answers the browser from this
/// test's runtime meanwhile.
async fn node(script: &str, env: &[(&str, String)]) -> std::process::Output {
    let here = env!("CARGO_MANIFEST_DIR");
    let mut c = std::process::Command::new("timeout");
    c.args(["420", "node", &format!("{here}/tests/browser/{script}")])
        .current_dir(format!("{here}/tests/browser"))
        .env("HERALD_STAFF", "ed")
        .env("HERALD_STAFF_PASSWORD", "staff password 1")
        .env("HERALD_OPERATOR", "olga")
        .env("HERALD_OPERATOR_PASSWORD", "operator password 2");
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .expect("node runs")
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the ledger, PostgreSQL, /healthz, the relay and herald's log say, so that a
/// failure on a machine we cannot watch explains itself.
async fn what_herald_says(app: &TestApp, log_path: &std::path::Path) -> String {
    let store = app.services.store.as_ref();
    let mut ledger = String::new();
    for i in store.list_issues(None, 10).await.unwrap_or_default() {
        ledger += &format!(
            "issue {}: {:?} filling={} sends={}\n",
            i.id, i.status, i.filling, i.send_count
        );
    }
    let rows = store
        .send_log(&herald::store::LogQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    for r in rows {
        ledger += &format!(
            "send {} issue={:?} {:?} attempts={} reply={:?}\n",
            r.id, r.issue_id, r.status, r.attempts, r.last_reply
        );
    }
    // On PostgreSQL, what every connection of this database is doing or waiting for.
    if app.db_url.starts_with("postgres") {
        let activity = std::process::Command::new("psql")
            .args([
                app.db_url.as_str(),
                "-Atc",
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 160) \
                 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string());
        ledger += &format!("PostgreSQL sessions:\n{activity}");
    }
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("herald answers")
        .text()
        .await
        .unwrap_or_else(|e| e.to_string());
    format!(
        "ledger:\n{ledger}SMTP server: {} offered, {} accepted; /healthz {health}\n\
         herald's warnings (both backends):\n{}",
        app.smtp().attempts(),
        app.smtp().count(),
        std::fs::read_to_string(log_path).unwrap_or_default()
    )
}

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
        Spawn {
            background: true,
            ..Spawn::new(backend)
        }
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
    // herald's clock runs as the wall clock does, from the tests' usual start, so that
    // retries and leases come due as in `herald serve`.
    let ticker = {
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
    };
    let store = app.services.store.as_ref();
    for (name, pw, role) in [
        ("ed", "staff password 1", Role::Staff),
        ("olga", "operator password 2", Role::Operator),
    ] {
        let hash = herald::access::hash_password(pw).unwrap();
        store
            .add_user(name, role, &hash, app.clock.now())
            .await
            .unwrap();
    }
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
    let kept = std::env::var("HERALD_SCREENSHOTS").ok().map(|d| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(d)
            .to_string_lossy()
            .into_owned()
    });
    let started = std::time::SystemTime::now();
    let shots = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("herald-shots-{}-{backend:?}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    });
    let here = env!("CARGO_MANIFEST_DIR");
    // In a blocking thread: herald answers the browser from this test's runtime meanwhile.
    let (base, find, shots_dir) = (app.base.clone(), readers[7].clone(), shots.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args([
                "420",
                "node",
                &format!("{here}/tests/browser/console.test.mjs"),
            ])
            .current_dir(format!("{here}/tests/browser"))
            .env("HERALD_BASE", &base)
            .env("HERALD_STAFF", "ed")
            .env("HERALD_STAFF_PASSWORD", "staff password 1")
            .env("HERALD_OPERATOR", "olga")
            .env("HERALD_OPERATOR_PASSWORD", "operator password 2")
            .env("HERALD_READERS", READERS.to_string())
            .env("HERALD_FIND", &find)
            .env("HERALD_SHOTS", &shots_dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    ticker.abort();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        // What the ledger says, so a failure on a machine we cannot watch explains itself.
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
        panic!(
            "the browser run failed:\n{log}\nledger:\n{ledger}SMTP server: {} offered, {} accepted; /healthz {health}\n\
             herald's warnings (both backends):\n{}",
            app.smtp().attempts(),
            app.smtp().count(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
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
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&shots);
    }
}
both_backends!(
    a_staff_member_schedules_and_sends_a_digest_in_the_browser,
    browser
);

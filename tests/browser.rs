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
use herald::store::ApiRole;

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

async fn a_staff_member_schedules_and_sends_a_digest_in_the_browser(backend: Backend) {
    if !browser_available() {
        return;
    }
    let app = TestApp::spawn_with(
        Spawn {
            background: true,
            ..Spawn::new(backend)
        }
        .set("site.name", "The Herald"),
    )
    .await;
    let store = app.services.store.as_ref();
    for (name, pw, role) in [
        ("ed", "staff password 1", ApiRole::Staff),
        ("olga", "operator password 2", ApiRole::Operator),
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
    let shots = std::env::var("HERALD_SCREENSHOTS").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join(format!("herald-shots-{}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    });
    let here = env!("CARGO_MANIFEST_DIR");
    // In a blocking thread: herald answers the browser from this test's runtime meanwhile.
    let (base, find, shots_dir) = (app.base.clone(), readers[7].clone(), shots.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args([
                "240",
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
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser run failed:\n{log}");
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
        assert!(
            std::path::Path::new(&format!("{shots}/{name}.png")).exists(),
            "screenshot {name}"
        );
    }
}
both_backends!(a_staff_member_schedules_and_sends_a_digest_in_the_browser);

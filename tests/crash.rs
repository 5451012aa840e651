//! A real `herald serve` process killed with SIGKILL while it delivers an issue, restarted,
//! killed again: every reader gets the digest, and the duplicates are no more than the
//! messages that were in flight at the kills. (bench/crash.sh is the long version, with
//! Postfix's smtp-sink, 20,000 readers and 20 kills; results in RELIABILITY.md.) And one
//! stopped with SIGTERM while its relay stalls after DATA: it exits within
//! `delivery.shutdown_grace`, and nothing is lost or doubled.

mod common;
use common::{Backend, Behaviour, Hook, SmtpServer};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const READERS: usize = 300;
const CONNECTIONS: usize = 4;
const KILLS: usize = 3;

fn herald(db: &str, smtp_port: u16, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.current_dir(dir)
        .env("HERALD_DATABASE__URL", db)
        .env(
            "HERALD_SECRET_KEY",
            "crash-test-secret-crash-test-secret-01234",
        )
        .env("HERALD_MAIL__URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("HERALD_HTTP__LISTEN", "127.0.0.1:0")
        .env("HERALD_DELIVERY__CONNECTIONS", CONNECTIONS.to_string())
        .env("HERALD_DELIVERY__BATCH_SIZE", "20")
        // Reclaim a killed instance's rows within seconds, not 20 s, to keep the test short.
        .env("HERALD_DELIVERY__INSTANCE_TIMEOUT", "3s")
        .env("HERALD_LOG", "error")
        .env_remove("HERALD_CONFIG");
    c
}

fn ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(db: &str, port: u16, dir: &std::path::Path) -> Child {
    let mut c = herald(db, port, dir);
    c.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().unwrap()
}

/// A database with `readers` confirmed readers of section "wmd", the sample feed's
/// articles and one issue of schedule "morning" queued (not sent), made by the CLI as an
/// operator would; `env` is added to each command.
fn seed_issue(
    db: &str,
    smtp_port: u16,
    dir: &std::path::Path,
    readers: usize,
    env: &[(&str, &str)],
) {
    let run = |args: &[&str]| {
        let mut c = herald(db, smtp_port, dir);
        c.envs(env.iter().copied()).args(args);
        ok(c);
    };
    run(&["migrate"]);
    run(&["sections", "add", "wmd", "--name", "WMD"]);
    let mut csv = String::from("email\n");
    for i in 0..readers {
        csv.push_str(&format!("r{i}@example.com\n"));
    }
    std::fs::write(dir.join("list.csv"), csv).unwrap();
    run(&[
        "subscribers",
        "import",
        "list.csv",
        "--sections",
        "wmd",
        "--preconfirmed",
    ]);
    let feed = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wmd.rss.xml");
    run(&["articles", "import", "--section", "wmd", feed]);
    run(&[
        "schedules",
        "add",
        "morning",
        "--cron",
        "0 7 * * *",
        "--sections",
        "wmd",
    ]);
    run(&["digests", "run", "morning", "--queue-only"]);
}

/// Wait (90 s at most) until no send of the database is left to settle.
async fn settled(store: &std::sync::Arc<dyn herald::store::Store>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while store.pending_send_count().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the issue never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn killed_mid_send_loses_nothing(backend: Backend) {
    let (db, _keep) = common::fresh_database(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // A relay that takes 10 ms per message: the issue takes long enough to be killed in.
    let smtp = SmtpServer::start(Behaviour {
        on_message: Some(Hook(Arc::new(|| {
            std::thread::sleep(Duration::from_millis(10))
        }))),
        ..Default::default()
    });
    seed_issue(&db, smtp.port, dir, READERS, &[]);

    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for k in 0..KILLS {
        let before = smtp.count();
        let mut child = serve(&db, smtp.port, dir);
        // Kill it in the middle of the stream of messages.
        wait_for("deliveries before a kill", &|| smtp.count() >= before + 30);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(smtp.count() < READERS, "kill {k} came after the end");
    }
    let store = herald::store::connect(&db, 2).await.unwrap();
    let mut child = serve(&db, smtp.port, dir);
    settled(&store).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in smtp.all() {
        *copies.entry(m.message_id()).or_default() += 1;
    }
    assert_eq!(copies.len(), READERS, "every reader got the digest");
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= KILLS * CONNECTIONS,
        "{duplicates} duplicates after {KILLS} kills of {CONNECTIONS} connections"
    );
    let issue = store.list_issues(None, 1).await.unwrap()[0].id;
    assert_eq!(
        store.issue_status_counts(issue).await.unwrap(),
        vec![("sent".to_string(), READERS as i64)]
    );
}
both_backends!(killed_mid_send_loses_nothing);

/// A signup answered 200 is durable: a real `herald serve` is killed with SIGKILL in the
/// middle of a burst of signups (many at once, so they share group commits, and on
/// PostgreSQL run both one by one and batched), and every address that got its 200 is
/// pending afterwards, with its confirmation queued. An answer comes only after the commit,
/// never before.
async fn an_acknowledged_signup_survives_a_kill(backend: Backend) {
    let (db, _keep) = common::fresh_database(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = common::postfix::free_port();
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
        c.current_dir(dir)
            .env("HERALD_DATABASE__URL", &db)
            .env(
                "HERALD_SECRET_KEY",
                "crash-test-secret-crash-test-secret-01234",
            )
            .env("HERALD_MAIL__URL", "maildir:outbox")
            .env("HERALD_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_SUBSCRIPTIONS__RATE_LIMIT_PER_IP", "100000000")
            .env("HERALD_LOG", "error")
            .env_remove("HERALD_CONFIG");
        c
    };
    let mut c = cmd();
    c.arg("migrate");
    ok(c);
    let mut c = cmd();
    c.args(["sections", "add", "wmd", "--name", "WMD"]);
    ok(c);
    let mut c = cmd();
    c.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    common::wait_for_port(port, "herald serve");

    let http = reqwest::Client::new();
    let answered = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..24 {
        let (http, answered, started) = (http.clone(), answered.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let email = format!("w{w}n{n}@example.com");
                started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r = http
                    .post(format!("http://127.0.0.1:{port}/subscribe"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("email={}&sections=wmd", email.replace('@', "%40")))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => answered.lock().unwrap().push(email),
                    Ok(r) => panic!("{email}: {}", r.status()),
                    // The server is gone: the burst is over.
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill it in the middle of the burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "signups never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let asked = started.load(std::sync::atomic::Ordering::Relaxed);
    assert!(asked > answered.len(), "some were in flight at the kill");

    let store = herald::store::connect(&db, 2).await.unwrap();
    for email in &answered {
        let sub = store
            .subscriber_by_email(email)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{email} was answered 200 and is gone"));
        assert_eq!(sub.status.as_str(), "pending", "{email}");
        let sends = store.sends_for_subscriber(sub.id).await.unwrap();
        assert!(
            sends.iter().any(|s| s.kind.as_str() == "confirm"),
            "{email}: its confirmation is queued or sent: {sends:?}"
        );
    }
}
both_backends!(an_acknowledged_signup_survives_a_kill);

/// SIGTERM while every worker waits for a relay that stalls after DATA (it has the whole
/// message and never answers): `serve` exits within `delivery.shutdown_grace` (plus the
/// moment to write the outcomes), the two messages in doubt are left to be retried, the rest
/// of the batches go back to the queue (none left claimed), and a restart against a relay
/// that answers delivers each reader's digest exactly once.
async fn a_stop_never_waits_on_a_stalled_relay(backend: Backend) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const READERS: usize = 40;
    const ANSWERED: usize = 10;
    let (db, _keep) = common::fresh_database(backend).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // After ANSWERED messages, each one stalls before the 250 (for far longer than the
    // test), until `stall` is cleared; a stalled message is never counted as delivered.
    let stall = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(AtomicUsize::new(0));
    let smtp = SmtpServer::start(Behaviour {
        on_message: Some(Hook(Arc::new({
            let (stall, seen) = (stall.clone(), seen.clone());
            move || {
                if seen.fetch_add(1, Ordering::SeqCst) >= ANSWERED && stall.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_secs(600));
                }
            }
        }))),
        ..Default::default()
    });
    const ENV: &[(&str, &str)] = &[
        ("HERALD_DELIVERY__CONNECTIONS", "2"),
        ("HERALD_DELIVERY__SHUTDOWN_GRACE", "2s"),
        // With the returned-mail listener running too: the stop ends it as well.
        ("HERALD_MAIL__RETURN_PATH", "bounces@bounces.example.org"),
        ("HERALD_BOUNCES__LISTEN", "127.0.0.1:0"),
    ];
    let with_env = |c: &mut Command| {
        c.envs(ENV.iter().copied());
    };
    seed_issue(&db, smtp.port, dir, READERS, ENV);

    let mut c = herald(&db, smtp.port, dir);
    with_env(&mut c);
    c.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Both workers stuck, each on a message the relay has whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::SeqCst) < ANSWERED + 2 {
        assert!(
            Instant::now() < deadline,
            "the workers never reached the stall"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped_at = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(30),
            "serve still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = stopped_at.elapsed();
    assert!(status.success(), "serve exited with {status}");
    // The grace (2 s) and the moment to write what happened (at most 5 s more).
    assert!(took < Duration::from_secs(7), "serve took {took:?} to stop");

    let store = herald::store::connect(&db, 2).await.unwrap();
    let issue = store.list_issues(None, 1).await.unwrap()[0].id;
    let counts: HashMap<String, i64> = store
        .issue_status_counts(issue)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts.get("sent"), Some(&(ANSWERED as i64)), "{counts:?}");
    assert_eq!(
        counts.get("retrying"),
        Some(&2),
        "the two in doubt: {counts:?}"
    );
    assert_eq!(
        counts.get("sending"),
        None,
        "nothing left claimed: {counts:?}"
    );
    assert_eq!(
        counts.get("queued"),
        Some(&((READERS - ANSWERED - 2) as i64)),
        "{counts:?}"
    );
    assert_eq!(smtp.count(), ANSWERED);

    // A relay that answers again (the two stalled sessions still hang, never delivering).
    stall.store(false, Ordering::SeqCst);
    let mut c = herald(&db, smtp.port, dir);
    with_env(&mut c);
    c.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    settled(&store).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut copies: HashMap<Vec<String>, usize> = HashMap::new();
    for m in smtp.all() {
        *copies.entry(m.to.clone()).or_default() += 1;
    }
    assert_eq!(copies.len(), READERS, "every reader got the digest");
    assert!(
        copies.values().all(|n| *n == 1),
        "nothing doubled: {copies:?}"
    );
}
both_backends!(a_stop_never_waits_on_a_stalled_relay);

//! The delivery ledger under the faults that double or lose mail: a batch that outlives its
//! lease, a slow relay, a process that died holding rows, a greylisting server, a retry of
//! the wrong rows. Each story counts what the SMTP server actually received.

mod common;
use chrono::Duration;
use common::returned::fixture;
use common::{Backend, Behaviour, Hook, Spawn, TestApp};
use herald::store::{InstanceInfo, LeaseHolder};
use std::sync::Arc;

/// `n` active readers of one section and a queued digest for all of them.
async fn issue_for(app: &TestApp, n: usize) {
    app.add_section("wmd", "WMD").await;
    let mut csv = String::from("email\n");
    for i in 0..n {
        csv.push_str(&format!("r{i}@example.com\n"));
    }
    app.services
        .subs
        .import_csv(csv.as_bytes(), &["wmd".to_string()], true)
        .await
        .unwrap();
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    let made = app.tick().await;
    assert_eq!(made[0].issue.send_count as usize, n);
}

/// The ledger rows in one status.
async fn sends_in(app: &TestApp, status: &str) -> Vec<herald::store::SendRecord> {
    app.services
        .store
        .list_sends(&herald::store::SendFilter {
            status: Some(herald::store::SendStatus::parse(status).expect("a send status")),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Every reader got exactly one digest, and the ledger says sent for each.
async fn exactly_one_each(app: &TestApp, n: usize) {
    for i in 0..n {
        let got = app.smtp().to(&format!("r{i}@example.com")).len();
        assert_eq!(got, 1, "r{i}@example.com received {got} copies");
    }
    let issue = app.services.store.list_issues(None, 1).await.unwrap()[0].id;
    let counts = app.services.store.issue_status_counts(issue).await.unwrap();
    assert_eq!(counts, vec![("sent".to_string(), n as i64)]);
}

async fn a_worker_whose_lease_passed_sends_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 4).await;
    let engine = &app.services.engine;
    // Worker A claims the whole issue, then stalls past its lease.
    let a = engine.holder("A");
    let batch = engine.claim(&a).await.unwrap();
    assert_eq!(batch.len(), 4);
    app.clock.advance(Duration::minutes(6));
    // Worker B takes the rows over and delivers them.
    assert_eq!(app.deliver().await, 4);
    assert_eq!(app.smtp().count(), 4);
    // A wakes up: it must send none of them, nor overwrite B's outcomes.
    let mut sender = engine.transport().sender();
    let report = engine.send_batch(batch, &mut sender).await.unwrap();
    assert_eq!((report.settled, report.lost), (0, 4));
    assert_eq!(app.smtp().attempts(), 4, "A offered nothing to the server");
    exactly_one_each(&app, 4).await;
}
both_backends!(a_worker_whose_lease_passed_sends_nothing);

async fn a_lost_row_mid_batch_is_not_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 3).await;
    let engine = &app.services.engine;
    let batch = engine.claim(&engine.holder("A")).await.unwrap();
    // A stalls past its lease; B takes one of its rows (the oldest due) and holds it.
    app.clock.advance(Duration::minutes(6));
    let now = app.clock.now();
    let b = LeaseHolder {
        owner: "B".into(),
        instance: "other".into(),
    };
    let got = app
        .services
        .store
        .claim_sends(&b, now, now + Duration::minutes(5), 1)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    // A goes on: its renewal says which rows are still its own; it sends only those.
    let mut sender = engine.transport().sender();
    let report = engine.send_batch(batch, &mut sender).await.unwrap();
    assert_eq!((report.settled, report.lost), (2, 1));
    assert_eq!(app.smtp().count(), 2);
    let taken = &got[0];
    assert!(
        app.smtp().to(taken.email.as_deref().unwrap()).is_empty(),
        "B's row was not sent by A"
    );
    let leased = sends_in(&app, "sending").await;
    assert_eq!(
        leased.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![taken.id]
    );
}
both_backends!(a_lost_row_mid_batch_is_not_sent);

/// The issue's reproduction in virtual time: two workers, batches of 10, a relay that takes
/// 3 s (of a 30 s lease) to answer each message. A batch outlives its lease many times over;
/// renewals keep every row with the worker that claimed it.
///
/// The margin a worker keeps (one whole exchange, connect + send timeout) is what real time
/// cannot exceed; here the clock moves by 3 s with every message of *either* worker, so
/// one exchange can last several messages' worth of virtual time when the machine is
/// loaded. With a 7 s margin, three messages during one exchange (CI saw it once) let the
/// lease run out mid-send, which real time cannot do; 12 s needs five.
async fn a_slow_relay_never_doubles(backend: Backend) {
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("delivery.lease", "30s")
            .set("mail.send_timeout", "10s")
            .set("delivery.batch_size", "10"),
    )
    .await;
    issue_for(&app, 40).await;
    let clock = app.clock.clone();
    app.smtp().set_behaviour(Behaviour {
        on_message: Some(Hook(Arc::new(move || clock.advance(Duration::seconds(3))))),
        ..Default::default()
    });
    let engine = app.services.engine.clone();
    let worker = |name: &'static str| {
        let engine = engine.clone();
        async move {
            let holder = engine.holder(name);
            let mut sender = engine.transport().sender();
            let mut lost = 0;
            loop {
                let batch = engine.claim(&holder).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                lost += engine.send_batch(batch, &mut sender).await.unwrap().lost;
            }
            sender.close().await;
            lost
        }
    };
    // A worker may lose rows it had not started on (its lease ran out in virtual time while
    // the other worker's messages moved the clock); it then sends none of them.
    let (lost_a, lost_b) = tokio::join!(worker("A"), worker("B"));
    // Both stopped when nothing was due; rows one of them lost may still sit under a lease
    // that has not run out in virtual time (seen once in CI). With nothing in flight now,
    // let it run out, as real time would, and deliver what is left.
    if app.services.store.pending_send_count().await.unwrap() > 0 {
        app.clock.advance(Duration::seconds(31));
        app.deliver().await;
    }
    exactly_one_each(&app, 40).await;
    assert!(lost_a + lost_b < 40, "lost {lost_a} + {lost_b}");
    assert!(
        app.clock.now() - common::t0() > Duration::seconds(40 * 3),
        "the relay really was slow"
    );
}
both_backends!(a_slow_relay_never_doubles);

async fn rows_of_a_dead_instance_come_back_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 4).await;
    let store = &app.services.store;
    let now = app.clock.now();
    let instance = |id: &str| InstanceInfo {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        started_at: now,
    };
    // Two other instances claim two rows each; one keeps beating, one is killed.
    for (id, alive) in [("dead", false), ("alive", true)] {
        store.heartbeat(&instance(id), now).await.unwrap();
        let holder = LeaseHolder {
            owner: format!("{id}/w0"),
            instance: id.into(),
        };
        let got = store
            .claim_sends(&holder, now, now + Duration::minutes(5), 2)
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{id} (alive: {alive}) claimed two");
    }
    assert_eq!(app.deliver().await, 0, "all four are leased");
    // 30 s later, well inside the 5-minute lease: "alive" beat again, "dead" did not.
    app.clock.advance(Duration::seconds(30));
    store
        .heartbeat(&instance("alive"), app.clock.now())
        .await
        .unwrap();
    app.services.engine.beat().await.unwrap();
    assert_eq!(app.deliver().await, 2, "the dead instance's rows, at once");
    assert_eq!(app.smtp().count(), 2);
    // Taken back from a dead owner, then sent once: one attempt, not two. (Counting the
    // reclaim stretched the backoff of a later 451 after every crash.)
    let sent = sends_in(&app, "sent").await;
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.attempts == 1), "{sent:?}");
    // The same row taken back again and again (crashes in a row) still counts none.
    for round in 0..3 {
        app.clock.advance(Duration::minutes(6));
        let id = format!("dead{round}");
        store
            .heartbeat(&instance(&id), app.clock.now())
            .await
            .unwrap();
        let holder = LeaseHolder {
            owner: format!("{id}/w0"),
            instance: id.clone(),
        };
        let got = store
            .claim_sends(
                &holder,
                app.clock.now(),
                app.clock.now() + Duration::minutes(5),
                2,
            )
            .await
            .unwrap();
        assert_eq!(
            got.len(),
            2,
            "the alive instance's rows, once its lease ran out"
        );
        assert!(got.iter().all(|j| j.attempts == 0), "{got:?}");
    }
}
both_backends!(rows_of_a_dead_instance_come_back_at_once);

/// SQLite: `herald serve` records each outcome in its journal before the next message and
/// writes the ledger a moment later. A process killed in between leaves outcomes only in
/// its journal; whoever comes next records them before it sends anything, and hands the
/// dead process's other rows back at once (its journal lock is free: it is gone). The
/// readers whose mail went out are not mailed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_process_journal_is_recorded_before_its_rows_go_out_again() {
    use herald::delivery::journal::{Journal, prefix_for};
    use herald::store::{SendOutcome, SendResult};
    let app = TestApp::spawn(Backend::Sqlite).await;
    issue_for(&app, 5).await;
    let store = &app.services.store;
    let now = app.clock.now();
    let dead = "deadhost:4242:abcdef";
    store
        .heartbeat(
            &InstanceInfo {
                id: dead.into(),
                host: "deadhost".into(),
                pid: 4242,
                started_at: now,
            },
            now,
        )
        .await
        .unwrap();
    let holder = LeaseHolder {
        owner: format!("{dead}/worker0"),
        instance: dead.into(),
    };
    let claimed = store
        .claim_sends(&holder, now, now + Duration::minutes(5), 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    // It sent three and journaled them, then died (the journal is dropped, not removed:
    // its lock goes with the process, its files stay).
    {
        let journal = Journal::open(prefix_for(&app.db_url).unwrap(), dead).unwrap();
        for (i, job) in claimed.iter().take(3).enumerate() {
            journal
                .append(
                    || i as u64 + 1,
                    &SendResult {
                        send_id: job.id,
                        lease_owner: holder.owner.clone(),
                        outcome: SendOutcome::Sent {
                            reply: "250 2.0.0 Ok: queued".into(),
                        },
                    },
                )
                .unwrap();
        }
    }
    assert_eq!(app.deliver().await, 2, "only the two it never sent");
    assert_eq!(app.smtp().count(), 2);
    assert_eq!(sends_in(&app, "sent").await.len(), 5);
    let journal_files = std::fs::read_dir(
        std::path::Path::new(&app.db_url["sqlite:".len()..])
            .parent()
            .unwrap(),
    )
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".outcomes.")
    })
    .count();
    assert_eq!(journal_files, 0, "the dead journal is gone once recorded");
}

async fn a_4xx_is_not_retried_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 2).await;
    // The first message goes through, so the second is on a reused connection.
    app.smtp().set_behaviour(Behaviour {
        accept_first: 1,
        fail_first: Some((5, 451, "4.7.1 greylisted, try again later".into())),
        ..Default::default()
    });
    app.deliver().await;
    assert_eq!(app.smtp().attempts(), 2, "the 451 was not retried at once");
    let retrying = sends_in(&app, "retrying").await;
    assert_eq!(retrying.len(), 1);
    assert!(retrying[0].last_reply.as_deref().unwrap().contains("451"));
    // It is tried again after the backoff, not before.
    app.smtp().set_behaviour(Behaviour::default());
    app.clock.advance(Duration::seconds(30));
    assert_eq!(app.deliver().await, 0);
    app.clock.advance(Duration::seconds(31));
    assert_eq!(app.deliver().await, 1);
    exactly_one_each(&app, 2).await;
}
both_backends!(a_4xx_is_not_retried_at_once);

async fn each_outcome_is_recorded_before_the_next_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 5).await;
    // After each message the server receives, the ledger already says sent for every
    // message before it: a crash now could re-send only the message in flight.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let db_url = app.db_url.clone();
    app.smtp().set_behaviour(Behaviour {
        on_message: Some(Hook(Arc::new(move || {
            let n = sent_count_blocking(&db_url);
            seen2.lock().unwrap().push(n);
        }))),
        ..Default::default()
    });
    app.deliver().await;
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    exactly_one_each(&app, 5).await;
}
both_backends!(each_outcome_is_recorded_before_the_next_message);

/// Count sent digests from another connection, from the SMTP server's thread.
fn sent_count_blocking(db_url: &str) -> i64 {
    let url = db_url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::Connection;
            const SQL: &str =
                "SELECT COUNT(*) FROM sends WHERE kind = 'digest' AND status = 'sent'";
            if url.starts_with("sqlite:") {
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar::<_, i64>(SQL)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            } else {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query_scalar::<_, i64>(SQL)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        })
    })
    .join()
    .unwrap()
}

/// Verify DKIM signatures with dkimpy (Debian's python3-dkim), an implementation we did not
/// write, against the public key as openssl derives it from the private key file (selector
/// s2026 of herald.example, as the tests configure it): every signature of every message.
fn dkimpy_verifies(key_file: &std::path::Path, messages: &[Vec<u8>]) -> Result<(), String> {
    let records = vec![(
        "s2026._domainkey.herald.example".to_string(),
        dkim_record(key_file),
    )];
    let bad: Vec<String> = dkimpy_each(&records, messages)
        .iter()
        .enumerate()
        .filter(|(_, sigs)| sigs.is_empty() || sigs.iter().any(|ok| !ok))
        .map(|(i, sigs)| format!("message {i} ({sigs:?})"))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

async fn dkim_signatures_verify_independently(backend: Backend) {
    if !common::tool_available("dkimpy", &["/usr/bin/python3", "-c", "import dkim"])
        || !common::tool_available("openssl", &["openssl", "version"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The forms the standard tools write: PKCS#8 RSA (openssl genpkey, and genrsa on
    // OpenSSL 3), PKCS#1 RSA (genrsa -traditional, opendkim-genkey), PKCS#8 Ed25519.
    let keys: [(&str, &[&str]); 3] = [
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "KEY",
            ],
        ),
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "KEY", "2048"],
        ),
        (
            "ed25519",
            &["genpkey", "-algorithm", "ed25519", "-out", "KEY"],
        ),
    ];
    for (name, cmd) in keys {
        let key = dir.path().join(format!("{name}.key"));
        let args = cmd.iter().map(|a| {
            if *a == "KEY" {
                key.to_str().unwrap()
            } else {
                a
            }
        });
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {cmd:?}: {out:?}");
        let outbox = dir.path().join(format!("outbox-{name}"));
        for transport in ["smtp", "maildir"] {
            let mut spec = Spawn::new(backend)
                .set("mail.dkim.key_file", key.to_str().unwrap())
                .set("mail.dkim.selector", "s2026")
                .set("mail.list_help", "mailto:help@herald.example");
            if transport == "maildir" {
                spec = spec.set("mail.url", &format!("maildir:{}", outbox.display()));
            }
            let app = TestApp::spawn_with(spec).await;
            issue_for(&app, 2).await;
            let mut messages: Vec<Vec<u8>> = Vec::new();
            if transport == "smtp" {
                // Confirmation and welcome mails, then a digest.
                app.subscribe_and_confirm("new@example.com", &["wmd"]).await;
                app.deliver().await;
                messages.extend(app.smtp().all().into_iter().map(|m| m.raw));
                assert_eq!(messages.len(), 4, "confirm, welcome, two digests");
            } else {
                app.deliver().await;
                for f in std::fs::read_dir(&outbox).unwrap() {
                    messages.push(std::fs::read(f.unwrap().path()).unwrap());
                }
                assert_eq!(messages.len(), 2);
            }
            for m in &messages {
                let text = String::from_utf8_lossy(m);
                let sig = text.split("DKIM-Signature:").nth(1).expect("signed");
                let h: String = sig
                    .split("h=")
                    .nth(1)
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                assert!(
                    h.starts_with("from:from:") || h.contains(":from:from"),
                    "From over-signed: {h}"
                );
                if text.contains("\nFeedback-ID:") {
                    assert!(
                        h.to_ascii_lowercase().contains("feedback-id"),
                        "a digest's Feedback-ID is signed: {h}"
                    );
                    assert!(
                        text.contains("\nList-Help: <mailto:help@herald.example>")
                            && h.to_ascii_lowercase().contains("list-help"),
                        "a digest's List-Help is there and signed: {h}"
                    );
                }
            }
            if let Err(e) = dkimpy_verifies(&key, &messages) {
                panic!("{name} over {transport}: dkimpy rejected {e}");
            }
            // A changed body or header must fail: the check can fail.
            let mut forged = messages[0].clone();
            let at = forged.len() - 40;
            forged[at] = if forged[at] == b'x' { b'y' } else { b'x' };
            assert!(
                dkimpy_verifies(&key, &[forged]).is_err(),
                "{name}: tampering went unnoticed"
            );
        }
    }
}
both_backends!(dkim_signatures_verify_independently, tools);

/// The public key record of a private key file, as openssl derives it.
fn dkim_record(key_file: &std::path::Path) -> String {
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key_file)
        .output()
        .unwrap();
    assert!(der.status.success(), "openssl pkey: {der:?}");
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if der.stdout.len() == 44 {
        format!("v=DKIM1; k=ed25519; p={}", b64(&der.stdout[12..]))
    } else {
        format!("v=DKIM1; k=rsa; p={}", b64(&der.stdout))
    }
}

/// For each message, whether each of its DKIM signatures verifies with dkimpy, given the
/// TXT records by name.
fn dkimpy_each(records: &[(String, String)], messages: &[Vec<u8>]) -> Vec<Vec<bool>> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-c".to_string(),
        "import sys, json, dkim\n\
         recs = json.loads(sys.argv[1])\n\
         dns = lambda n, timeout=5: recs.get(n.decode().rstrip('.'), '').encode()\n\
         def ok(d, i):\n\
         \x20   try:\n\
         \x20       return bool(d.verify(idx=i, dnsfunc=dns))\n\
         \x20   except Exception:\n\
         \x20       return False\n\
         out = []\n\
         for p in sys.argv[2:]:\n\
         \x20   m = open(p, 'rb').read()\n\
         \x20   d = dkim.DKIM(m)\n\
         \x20   n = m.split(b'\\r\\n\\r\\n')[0].lower().count(b'\\ndkim-signature:') + m.lower().startswith(b'dkim-signature:')\n\
         \x20   out.append([ok(d, i) for i in range(n)])\n\
         print(json.dumps(out))"
            .to_string(),
        serde_json::to_string(&records.iter().cloned().collect::<std::collections::HashMap<_, _>>())
            .unwrap(),
    ];
    for (i, m) in messages.iter().enumerate() {
        let path = dir.path().join(format!("m{i}.eml"));
        std::fs::write(&path, m).unwrap();
        args.push(path.display().to_string());
    }
    let out = std::process::Command::new("/usr/bin/python3")
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "dkimpy: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether OpenDKIM (its filter in test mode, the keys given as TestPublicKeys) says the
/// message's signature verifies.
fn opendkim_verifies(records: &[(String, String)], message: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        records
            .iter()
            .map(|(n, r)| format!("{n} {r}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let conf = dir.path().join("opendkim.conf");
    std::fs::write(
        &conf,
        format!("TestPublicKeys\t{}\nMode\tv\nSyslog\tno\n", keys.display()),
    )
    .unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, message).unwrap();
    let out = std::process::Command::new("opendkim")
        .arg("-x")
        .arg(&conf)
        .arg("-t")
        .arg(&msg)
        .output()
        .unwrap();
    // It reports on standard output or error, depending on its version.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("verification"), "opendkim said: {said}");
    said.contains("succeeded") && !said.contains("failed")
}

/// Signatures nobody can reuse with extra headers, made with every key. A digest signed
/// by an RSA and an Ed25519 key (`mail.dkim.keys`) carries two signatures, each verified by
/// dkimpy, and OpenDKIM verifies it. Then each over-signed header is prepended (a second
/// `List-Unsubscribe` to a phishing page, a `Content-Type`, `List-Id`, `Subject`, `To`,
/// `Date`, …) and each absent one added (`Reply-To`, `Cc`, `Sender`, `In-Reply-To`): both
/// verifiers refuse every such copy. `check-config` prints each key's record in strings a
/// zone file takes, and warns on a 1024-bit RSA key.
async fn dkim_cannot_be_replayed_with_extra_headers(backend: Backend) {
    if !common::tool_available("dkimpy", &["/usr/bin/python3", "-c", "import dkim"])
        || !common::tool_available("openssl", &["openssl", "version"])
        || !common::tool_available("OpenDKIM", &["test", "-x", "/usr/sbin/opendkim"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ed, weak) = (
        dir.path().join("rsa.pem"),
        dir.path().join("ed.pem"),
        dir.path().join("weak.pem"),
    );
    for (path, args) in [
        (
            &rsa,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ][..],
        ),
        (&ed, &["genpkey", "-algorithm", "ed25519"][..]),
        (
            &weak,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ][..],
        ),
    ] {
        let out = std::process::Command::new("openssl")
            .args(args)
            .arg("-out")
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set(
                "mail.dkim.keys",
                &format!("rsa2026:{},ed2026:{}", rsa.display(), ed.display()),
            )
            .set("mail.list_help", "mailto:help@herald.example"),
    )
    .await;
    issue_for(&app, 1).await;
    app.deliver().await;
    let digest = app.smtp().all().pop().unwrap().raw;
    let domain = "herald.example";
    let records = vec![
        (format!("rsa2026._domainkey.{domain}"), dkim_record(&rsa)),
        (format!("ed2026._domainkey.{domain}"), dkim_record(&ed)),
    ];
    let text = String::from_utf8_lossy(&digest).into_owned();
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "one per key");
    assert_eq!(
        dkimpy_each(&records, std::slice::from_ref(&digest)),
        vec![vec![true, true]],
        "both signatures verify"
    );
    assert!(opendkim_verifies(&records, &digest), "OpenDKIM verifies it");

    let headers_end = text.find("\r\n\r\n").unwrap();
    let tampered: Vec<(String, Vec<u8>)> = [
        "List-Unsubscribe: <https://evil.example/phish>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Content-Type: text/html",
        "List-Id: <evil.example>",
        "Subject: Your account is locked",
        "To: someone-else@example.com",
        "Date: Tue, 03 Mar 2026 07:00:00 +0000",
        "From: Security <security@evil.example>",
        "Message-ID: <again@evil.example>",
        "MIME-Version: 1.0",
        "Feedback-ID: 1:evil:list",
    ]
    .iter()
    .map(|h| (h.to_string(), format!("{h}\r\n{text}").into_bytes()))
    .chain(
        [
            "Reply-To: <collect@evil.example>",
            "Cc: <copy@evil.example>",
            "Sender: <sender@evil.example>",
            "In-Reply-To: <thread@evil.example>",
        ]
        .iter()
        .map(|h| {
            // Added among the message's own headers, below the signatures.
            let mut t = text.clone();
            t.insert_str(headers_end, &format!("\r\n{h}"));
            (h.to_string(), t.into_bytes())
        }),
    )
    .collect();
    let results = dkimpy_each(
        &records,
        &tampered.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
    );
    for ((header, message), verdicts) in tampered.iter().zip(results) {
        assert_eq!(
            verdicts,
            vec![false, false],
            "dkimpy passed with {header:?} added"
        );
        assert!(
            !opendkim_verifies(&records, message),
            "OpenDKIM passed with {header:?} added"
        );
    }

    // check-config: every key's record, as strings of at most 255 characters; a warning
    // for a short RSA key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check-config")
        .env(
            "HERALD_MAIL__DKIM__KEYS",
            format!("rsa2026:{},old:{}", rsa.display(), weak.display()),
        )
        .env("HERALD_DATABASE__URL", "sqlite:unused.db")
        .env_remove("HERALD_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let line = said
        .lines()
        .find(|l| l.contains("rsa2026._domainkey."))
        .unwrap_or_else(|| panic!("{said}"));
    let value = line.split("TXT").nth(1).unwrap().trim();
    let strings: Vec<&str> = value.split("\" \"").collect();
    assert!(strings.len() >= 2, "{line}");
    assert!(
        strings.iter().all(|s| s.trim_matches('"').len() <= 255),
        "{line}"
    );
    assert_eq!(
        strings
            .iter()
            .map(|s| s.trim_matches('"'))
            .collect::<String>(),
        dkim_record(&rsa)
    );
    assert!(said.contains("old._domainkey."), "{said}");
    assert!(
        said.contains("warning: mail.dkim: the RSA key of selector \"old\" has 1024 bits"),
        "{said}"
    );
}
both_backends!(dkim_cannot_be_replayed_with_extra_headers, tools);

/// An app whose background jobs and workers run as in `herald serve`, on short intervals.
async fn with_background_jobs(backend: Backend) -> TestApp {
    let mut spec = Spawn::new(backend)
        .set("digests.tick_interval", "1s")
        .set("delivery.poll_interval", "1s");
    spec.background = true;
    TestApp::spawn_with(spec).await
}

/// A relay that serves fewer sessions at once than herald has workers (relays limit the
/// connections of each client): a worker that has had nothing to send for
/// `mail.idle_timeout` hangs up, so whichever worker has the next mail can connect. Before,
/// the idle worker kept its session for ever and the other one timed out connecting.
async fn idle_workers_leave_the_relays_connection_slots_free(backend: Backend) {
    let relay = common::SmtpServer::start_limited(Behaviour::default(), 1);
    let mut spec = Spawn::new(backend)
        .set("delivery.poll_interval", "1s")
        .set("delivery.connections", "2")
        .set("mail.idle_timeout", "1s")
        .set("mail.connect_timeout", "2s");
    spec.background = true;
    spec.smtp_port = Some(relay.port);
    let app = TestApp::spawn_with(spec).await;
    app.add_section("wmd", "WMD").await;
    // Each mail goes to whichever of the two workers claims it first: over six rounds,
    // both (almost surely) send some.
    for round in 0..6 {
        let email = format!("round{round}@example.com");
        assert_eq!(app.signup(&email, &["wmd"]).await.status(), 200);
        let mut arrived = false;
        for _ in 0..60 {
            if relay.to(&email).len() == 1 {
                arrived = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let stuck = sends_in(&app, "retrying").await;
        assert!(arrived && stuck.is_empty(), "round {round}: {stuck:?}");
        // Both workers idle past mail.idle_timeout.
        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    }
    assert_eq!(relay.count(), 6);
}
both_backends!(idle_workers_leave_the_relays_connection_slots_free);

/// `herald serve`'s jobs run for real here. A scheduler that cannot read its table makes
/// /healthz say 503 and why; once the table is back the tick recovers by itself, and so
/// does /healthz. Meanwhile the delivery workers keep delivering: jobs are independent.
async fn healthz_tells_the_truth_about_background_jobs(backend: Backend) {
    let app = with_background_jobs(backend).await;
    app.add_section("wmd", "WMD").await;
    let (status, body) = app.wait_health(5, |s, _| s == 200).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    app.execute("ALTER TABLE schedules RENAME TO schedules_gone")
        .await;
    let (status, body) = app
        .wait_health(10, |s, b| s == 503 && b.contains("scheduler: failing"))
        .await;
    assert_eq!(status, 503, "{body}");
    // Delivery is not held up by the broken scheduler.
    assert_eq!(app.signup("new@example.com", &["wmd"]).await.status(), 200);
    let mut delivered = false;
    for _ in 0..100 {
        if app.smtp().count() > 0 {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        delivered,
        "the confirmation went out while the scheduler failed"
    );
    app.execute("ALTER TABLE schedules_gone RENAME TO schedules")
        .await;
    let (status, body) = app.wait_health(10, |s, _| s == 200).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}
both_backends!(healthz_tells_the_truth_about_background_jobs);

/// `herald serve`'s scheduler job writes the rows of an issue left half-written (as a crash
/// between two chunks leaves it) and the workers deliver them: every reader once.
async fn the_scheduler_job_finishes_a_half_written_issue(backend: Backend) {
    let app = with_background_jobs(backend).await;
    app.add_section("wmd", "WMD").await;
    for i in 0..7 {
        app.reader(&format!("r{i}@example.com"), &["wmd"]).await;
    }
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    let issue = app.services.digests.run_now("m").await.unwrap();
    assert!(issue.filling);
    let store = &app.services.store;
    let step = store
        .fill_issue(issue.id, 2, app.clock.now())
        .await
        .unwrap();
    assert!(!step.done);
    for _ in 0..100 {
        if app.smtp().count() >= 7 && store.issues_filling().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for i in 0..7 {
        assert_eq!(app.smtp().to(&format!("r{i}@example.com")).len(), 1, "r{i}");
    }
    let issue = store.issue(issue.id).await.unwrap().unwrap();
    assert_eq!((issue.filling, issue.send_count), (false, 7));
}
both_backends!(the_scheduler_job_finishes_a_half_written_issue);

/// A claim continues where the last one ended (PostgreSQL keeps a cursor so it does not
/// step over the dead index entries of rows already claimed). A row that becomes due behind
/// that point must still go out.
async fn a_row_behind_the_claim_cursor_is_still_sent(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("delivery.batch_size", "2")).await;
    issue_for(&app, 4).await;
    let engine = &app.services.engine;
    let batch = engine.claim(&engine.holder("A")).await.unwrap();
    assert_eq!(batch.len(), 2);
    // A mail queued "earlier" than the rows already claimed (another instance's clock, or a
    // transaction that took its id before and committed after).
    app.clock.set(common::t0());
    assert_eq!(app.signup("late@example.com", &["wmd"]).await.status(), 200);
    app.set_time(2026, 3, 2, 7, 0, 0);
    let mut sender = engine.transport().sender();
    engine.send_batch(batch, &mut sender).await.unwrap();
    assert_eq!(app.deliver().await, 3, "two digests and the confirmation");
    assert_eq!(app.smtp().to("late@example.com").len(), 1);
    exactly_one_each(&app, 4).await;
}
both_backends!(a_row_behind_the_claim_cursor_is_still_sent);

/// An instance whose heartbeat has gone stale (others may already have taken its rows) must
/// neither send nor claim: claiming would only lease the queue away from live instances.
async fn a_stale_heartbeat_claims_nothing(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("delivery.instance_timeout", "3s")).await;
    issue_for(&app, 3).await;
    let engine = &app.services.engine;
    engine.beat().await.unwrap();
    // The heartbeat is real time: half the timeout passes without one.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert!(engine.claim(&engine.holder("A")).await.unwrap().is_empty());
    assert_eq!(app.deliver().await, 0);
    let leased = sends_in(&app, "sending").await;
    assert!(leased.is_empty(), "nothing was leased away: {leased:?}");
    engine.beat().await.unwrap();
    assert_eq!(app.deliver().await, 3);
    exactly_one_each(&app, 3).await;
}
both_backends!(a_stale_heartbeat_claims_nothing);

/// A heartbeat that goes stale in the middle of a batch stops the sending, and the rows
/// not yet offered go back to the queue at once, not when their lease ends minutes later;
/// each reader still gets one copy.
async fn rows_a_stale_worker_did_not_send_return_at_once(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("delivery.instance_timeout", "3s")).await;
    issue_for(&app, 3).await;
    let engine = &app.services.engine;
    engine.beat().await.unwrap();
    let batch = engine.claim(&engine.holder("A")).await.unwrap();
    assert_eq!(batch.len(), 3);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let mut sender = engine.transport().sender();
    let report = engine.send_batch(batch, &mut sender).await.unwrap();
    assert_eq!((report.settled, report.lost), (0, 3));
    assert_eq!(app.smtp().count(), 0);
    assert!(sends_in(&app, "sending").await.is_empty(), "handed back");
    // The clock has not moved: without the hand-back they would wait out the lease.
    engine.beat().await.unwrap();
    assert_eq!(app.deliver().await, 3);
    exactly_one_each(&app, 3).await;
    let rows = app
        .services
        .store
        .send_log(&herald::store::LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        rows.iter().all(|r| r.attempts == 1),
        "the hand-back undid its claim's attempt: {rows:?}"
    );
}
both_backends!(rows_a_stale_worker_did_not_send_return_at_once);

/// Returned mail, end to end: each digest's envelope sender names its send (VERP) and its
/// List-Unsubscribe mailto is the reader's own; a real SMTP client (lettre) then delivers
/// to herald's listener a Postfix DSN (hard), an ARF abuse report, a vacation reply and a
/// mail to one reader's unsubscribe address. The dead address is suppressed, the
/// complainer unsubscribed and suppressed, the vacationer untouched, the one who wrote
/// unsubscribed; the next digest goes to the vacationer alone. Mail for any other address,
/// or with a forged reference, changes nothing.
async fn returned_mail_is_read_and_acted_on(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).returned_mail()).await;
    app.digest_to(&["gone", "angry", "away", "leaving"]).await;
    let verp = |r: &str| app.verp(&format!("{r}@example.com"));
    for r in ["gone", "angry", "away", "leaving"] {
        let from = verp(r);
        assert!(
            from.starts_with("bounces+") && from.ends_with("@bounces.herald.example"),
            "{from}"
        );
    }
    assert_ne!(verp("gone"), verp("angry"), "one address per send");
    let unsubscribe = app.unsubscribe_address("leaving@example.com");
    assert!(unsubscribe.starts_with("unsubscribe+"), "{unsubscribe}");

    let send = |to: String, name: &str| {
        let raw = fixture(name).replace("bounces+REF@news.herald.example", &to);
        let app = &app;
        async move { app.send_returned(&to, &raw).await }
    };
    send(verp("gone"), "postfix-hard.eml")
        .await
        .expect("a DSN is taken");
    send(verp("angry"), "arf-complaint.eml")
        .await
        .expect("an ARF report is taken");
    send(verp("away"), "vacation.eml")
        .await
        .expect("an auto-reply is taken");
    send(unsubscribe.clone(), "unrelated.eml")
        .await
        .expect("mail to an unsubscribe address");
    assert!(
        send("someone@bounces.herald.example".into(), "postfix-hard.eml")
            .await
            .is_err(),
        "not one of herald's addresses: refused at RCPT"
    );
    let forged = verp("away").replacen("bounces+", "bounces+9", 1);
    assert!(
        send(forged, "postfix-hard.eml").await.is_err(),
        "a reference whose MAC does not verify: refused at RCPT, nothing stored"
    );

    assert_eq!(
        app.subscriber_status("gone@example.com").await.as_deref(),
        Some("bounced")
    );
    assert_eq!(
        app.subscriber_status("angry@example.com").await.as_deref(),
        Some("complained")
    );
    assert_eq!(
        app.subscriber_status("away@example.com").await.as_deref(),
        Some("active")
    );
    assert_eq!(
        app.subscriber_status("leaving@example.com")
            .await
            .as_deref(),
        Some("unsubscribed")
    );
    let log = app
        .dump_table("SELECT kind || ' ' || action FROM returned ORDER BY id")
        .await;
    for expected in [
        "hard",
        "suppressed: the address failed",
        "complaint",
        "unsubscribed and suppressed",
        "auto_reply",
        "ignored",
        "unsubscribe",
    ] {
        assert!(log.contains(expected), "{expected} in\n{log}");
    }
    let sends = app
        .dump_table(
            "SELECT status || ' ' || COALESCE(last_reply, '') FROM sends WHERE email = 'gone@example.com'",
        )
        .await;
    assert!(
        sends.contains("bounced") && sends.contains("5.1.1"),
        "{sends}"
    );
    // What an operator reads (`herald bounces list|show`).
    let store = app.services.store.as_ref();
    let hard = store
        .list_returned(None, Some(herald::store::ReturnedKind::Hard), 10)
        .await
        .unwrap();
    assert_eq!(hard.len(), 1, "the forged one was never taken");
    assert_eq!(hard[0].email.as_deref(), Some("gone@example.com"));
    assert_eq!(hard[0].status.as_deref(), Some("5.1.1"));
    let (_, raw) = store.returned(hard[0].id).await.unwrap().unwrap();
    assert!(raw.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{raw}");

    // The next issue goes to the one left.
    app.add_article("wmd", "Second story", "https://news.example.org/2", "s")
        .await;
    app.set_time(2026, 3, 3, 7, 0, 0);
    app.tick().await;
    let before = app.smtp().count();
    app.deliver().await;
    let after: Vec<String> = app.smtp().all()[before..]
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    assert_eq!(after, vec!["away@example.com".to_string()]);

    // Lifting a suppression subscribes nobody: the reader may sign up and confirm anew.
    assert!(
        store
            .remove_suppression("gone@example.com", app.clock.now(), "test")
            .await
            .unwrap()
    );
    assert_eq!(
        app.subscriber_status("gone@example.com").await.as_deref(),
        Some("unsubscribed")
    );
    assert!(
        !store
            .remove_suppression("gone@example.com", app.clock.now(), "test")
            .await
            .unwrap()
    );

    // Past bounces.keep_raw the raw text goes; the record of what happened stays.
    let cutoff = app.clock.now() - Duration::days(90);
    assert_eq!(
        store.drop_returned_raw(cutoff).await.unwrap(),
        0,
        "nothing that old"
    );
    app.clock.advance(Duration::days(91));
    let cutoff = app.clock.now() - Duration::days(90);
    assert_eq!(
        store.drop_returned_raw(cutoff).await.unwrap(),
        4,
        "one raw text per message"
    );
    let (row, raw) = store.returned(hard[0].id).await.unwrap().unwrap();
    assert_eq!((row.kind.as_str(), raw.as_str()), ("hard", ""));
}
both_backends!(returned_mail_is_read_and_acted_on);

/// Complaint loops send every report to the one address the sender registered, not to the
/// VERP address of the send (Yahoo's, Microsoft's JMRP). Mailed to the plain return path,
/// a Yahoo-style report that names nobody (the reader's address blanked, no envelope
/// sender) still finds its reader by the quoted Message-ID, and a JMRP-style one by the
/// quoted `Return-Path`; both readers are unsubscribed and suppressed. A report quoting a
/// Message-ID made up from one's own (another reader's id, a guessed random part) names
/// nobody.
async fn complaints_to_the_plain_return_path_find_their_reader(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).returned_mail()).await;
    app.digest_to(&["yahoo", "hotmail", "victim", "attacker"])
        .await;
    let plain = common::returned::RETURN_PATH;
    let send = |raw: String| {
        let app = &app;
        async move { app.send_returned(plain, &raw).await.unwrap() }
    };
    let message_id = |r: &str| {
        app.smtp()
            .last_to(&format!("{r}@example.com"))
            .unwrap()
            .message_id()
    };
    // Yahoo-style: no envelope sender of ours anywhere, only the quoted Message-ID.
    let yahoo = fixture("yahoo-complaint.eml")
        .replace(
            "Original-Mail-From: <bounces+REF@news.herald.example>\n",
            "",
        )
        .replace("bounces+REF@news.herald.example", plain)
        .replace(
            "YahooComplaintIdentifier@news.herald.example",
            &message_id("yahoo"),
        );
    assert!(!yahoo.contains("bounces+"), "names no VERP address");
    send(yahoo).await;
    // JMRP-style: the quoted message keeps our Return-Path.
    let jmrp = fixture("jmrp-complaint.eml")
        .replace("bounces@news.herald.example", plain)
        .replace(
            "bounces+REF@news.herald.example",
            &app.verp("hotmail@example.com"),
        );
    send(jmrp).await;
    // A reader forging one for another: their own Message-ID with the other's id in it.
    let own = message_id("attacker");
    let (issue, rest) = own.trim_start_matches('d').split_once('.').unwrap();
    let (_, tail) = rest.split_once('.').unwrap();
    let victim_id = app
        .dump_table("SELECT CAST(id AS TEXT) FROM subscribers WHERE email = 'victim@example.com'")
        .await;
    let forged = format!("d{issue}.{}.{tail}", victim_id.trim());
    assert_ne!(forged, message_id("victim"));
    let forged_report = fixture("yahoo-complaint.eml")
        .replace(
            "Original-Mail-From: <bounces+REF@news.herald.example>\n",
            "",
        )
        .replace("bounces+REF@news.herald.example", plain)
        .replace("YahooComplaintIdentifier@news.herald.example", &forged);
    send(forged_report).await;

    app.assert_statuses(&[
        ("yahoo", "complained"),
        ("hotmail", "complained"),
        ("victim", "active"),
        ("attacker", "active"),
    ])
    .await;
    let log = app
        .dump_table("SELECT kind || ' ' || action FROM returned ORDER BY id")
        .await;
    assert_eq!(
        log.matches("complaint unsubscribed and suppressed").count(),
        2,
        "{log}"
    );
    assert!(log.contains("complaint kept: names no send"), "{log}");
    let raws = app
        .dump_table("SELECT CAST(COUNT(*) AS TEXT) FROM returned_messages")
        .await;
    assert_eq!(raws.trim(), "2", "the one that names nobody is not kept");
}
both_backends!(complaints_to_the_plain_return_path_find_their_reader);

/// Anyone who can mail the bounce domain cannot fill the disk: 4 messages, each for 100
/// recipients whose references are forged (another send's id with a made-up MAC, or none),
/// are refused at RCPT, so their data (250 kB each in the attack this replays) is never
/// taken; the database does not grow by a row.
async fn forged_returned_mail_is_refused_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).returned_mail()).await;
    app.digest_to(&["reader"]).await;
    let real = app.verp("reader@example.com");
    let size = || {
        let app = &app;
        async move {
            app.dump_table(
                "SELECT CAST((SELECT COUNT(*) FROM returned) + (SELECT COUNT(*) FROM returned_messages) AS TEXT)",
            )
            .await
        }
    };
    let before = size().await;
    let (mut smtp, greeting) = app.listener_session().await;
    assert!(greeting.starts_with("220"));
    assert!(smtp.say("EHLO attacker.example").await.starts_with("250"));
    let (id, _) = real.trim_start_matches("bounces+").split_once('-').unwrap();
    for m in 0..4 {
        assert!(smtp.say("MAIL FROM:<>").await.starts_with("250"));
        for n in 0..100 {
            // Forged the ways one would: another send's id with a made-up MAC, no MAC.
            let rcpt = if n % 2 == 0 {
                format!(
                    "bounces+{}-{:016x}@bounces.herald.example",
                    id.parse::<i64>().unwrap() + n,
                    m * 1000 + n
                )
            } else {
                format!("bounces+{n}@bounces.herald.example")
            };
            let reply = smtp.say(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(reply.starts_with("550"), "{rcpt}: {reply}");
        }
        assert!(
            smtp.say("DATA").await.starts_with("503"),
            "no recipient was taken"
        );
        assert!(smtp.say("RSET").await.starts_with("250"));
    }
    assert_eq!(size().await, before, "no row added");
}
both_backends!(forged_returned_mail_is_refused_and_stores_nothing);

/// A returned-mail fixture as the site's MTA would have put it into a mailbox: addressed to
/// `to` (in place of the fixture's VERP placeholder) with a `Delivered-To` line on top.
fn delivered_fixture(name: &str, to: &str) -> Vec<u8> {
    let raw = fixture(name).replace("bounces+REF@news.herald.example", to);
    format!("Delivered-To: {to}\r\n{raw}").into_bytes()
}

/// A mail server whose certificate comes from a private CA (made by openssl): with
/// `bounces.imap_tls_ca_file` naming that CA, returned mail is read over TLS from the first
/// byte (`imaps://`) and over STARTTLS (`?tls=required`); without it, or with another CA,
/// the read fails saying so, and the mailbox is left as it was.
async fn the_mailbox_is_read_over_tls_with_a_private_ca(backend: Backend) {
    if !common::tool_available("Dovecot", &["test", "-x", "/usr/sbin/dovecot"])
        || !common::tool_available("openssl", &["openssl", "version"])
    {
        return;
    }
    let pki = common::pki::Pki::new("Herald Test Mail CA");
    let other = common::pki::Pki::new("Someone Else's CA");
    let dovecot = common::dovecot::Dovecot::start_tls(&[("herald", "pw")], &pki.cert, &pki.key);
    let imaps = format!(
        "imaps://herald:pw@127.0.0.1:{}/INBOX",
        dovecot.imaps_port.unwrap()
    );
    let starttls = format!(
        "imap://herald:pw@127.0.0.1:{}/INBOX?tls=required",
        dovecot.port
    );
    let mut first = true;
    for (url, ca, trusted) in [
        (&imaps, None, false),
        (&starttls, None, false),
        (&imaps, Some(&other.ca), false),
        (&starttls, Some(&other.ca), false),
        (&imaps, Some(&pki.ca), true),
        (&starttls, Some(&pki.ca), true),
    ] {
        let mut spec = Spawn::new(backend)
            .set("mail.return_path", "bounces@bounces.herald.example")
            .set("bounces.imap_url", url);
        if let Some(ca) = ca {
            spec = spec.set("bounces.imap_tls_ca_file", ca.to_str().unwrap());
        }
        let app = TestApp::spawn_with(spec).await;
        app.digest_to(&["gone"]).await;
        // Each run's database is new, so its first send has the same reference: one bounce
        // waits in the box until a trusted run reads it, then the next trusted run gets one.
        let verp = app.verp("gone@example.com");
        if first || (trusted && url == &starttls) {
            dovecot.deliver("herald", &delivered_fixture("postfix-hard.eml", &verp));
            first = false;
        }
        let case = format!("{url} with CA {ca:?}");
        let reader = app.services.imap.clone().expect("bounces.imap_url");
        match reader.read_once().await {
            Ok(report) => {
                assert!(trusted, "{case}: read from an untrusted server");
                // (A new database has read nothing yet: it may take the bounce an earlier
                // run read too; it is the same send's.)
                assert!(
                    report.acted >= 1 && report.read == report.acted,
                    "{case}: {report:?}"
                );
                assert_eq!(
                    app.subscriber_status("gone@example.com").await.as_deref(),
                    Some("bounced"),
                    "{case}"
                );
            }
            Err(e) => {
                assert!(!trusted, "{case}: {e}");
                let why = e.to_string();
                assert!(
                    why.to_lowercase().contains("certificate") || why.contains("TLS"),
                    "{case}: {why}"
                );
                assert_eq!(
                    app.subscriber_status("gone@example.com").await.as_deref(),
                    Some("active"),
                    "{case}"
                );
                let inbox = dovecot.messages("herald", "");
                assert!(
                    inbox.iter().all(|(f, _)| !f.contains('S')),
                    "{case}: untouched"
                );
            }
        }
    }
    // Every message delivered was read by one of the two trusted runs, or left unread.
    let inbox = dovecot.messages("herald", "");
    assert_eq!(inbox.iter().filter(|(f, _)| f.contains('S')).count(), 2);
    // A CA file with plain-text IMAP is a mistake in the configuration, said at start.
    let plain = format!("imap://herald:pw@127.0.0.1:{}/INBOX", dovecot.port);
    let err = herald::config::Config::defaults_with(&[
        ("mail.return_path", "bounces@bounces.herald.example"),
        ("bounces.imap_url", &plain),
        ("bounces.imap_tls_ca_file", pki.ca.to_str().unwrap()),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("bounces.imap_tls_ca_file"), "{err}");
}
both_backends!(the_mailbox_is_read_over_tls_with_a_private_ca, tools);

/// Returned mail read from a mailbox on a real IMAP server (Debian's Dovecot): each message
/// for one of herald's addresses is acted on as the listener would, then marked read (or
/// moved away, with `bounces.imap_move_to`); mail for other addresses and mail herald cannot
/// read stay exactly as they were; a second read takes nothing twice.
async fn returned_mail_is_read_from_a_mailbox(backend: Backend) {
    if !common::tool_available("Dovecot", &["test", "-x", "/usr/sbin/dovecot"]) {
        return;
    }
    let dovecot = common::dovecot::Dovecot::start(&[("herald", "s3cret+pw"), ("moved", "pw")]);
    let url = |user: &str, pw: &str| {
        format!(
            "imap://{user}:{}@127.0.0.1:{}/INBOX",
            common::urlencode(pw),
            dovecot.port
        )
    };
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("mail.return_path", "bounces@bounces.herald.example")
            .set("bounces.imap_url", &url("herald", "s3cret+pw")),
    )
    .await;
    app.digest_to(&["gone", "angry", "away", "leaving", "full"])
        .await;
    let verp = |r: &str| app.verp(&format!("{r}@example.com"));
    let unsubscribe = app.unsubscribe_address("leaving@example.com");

    let box_ = "herald";
    dovecot.deliver(box_, &delivered_fixture("postfix-hard.eml", &verp("gone")));
    dovecot.deliver(
        box_,
        &delivered_fixture("arf-complaint.eml", &verp("angry")),
    );
    dovecot.deliver(box_, &delivered_fixture("vacation.eml", &verp("away")));
    dovecot.deliver(box_, &delivered_fixture("gmail-soft.eml", &verp("full")));
    dovecot.deliver(box_, &delivered_fixture("unrelated.eml", &unsubscribe));
    // Not herald's: the office's own mail in the same box, even a bounce of theirs.
    dovecot.deliver(
        box_,
        &delivered_fixture("postfix-hard.eml", "office@bounces.herald.example"),
    );
    // Herald's plain return path, but nothing herald can make sense of.
    dovecot.deliver(
        box_,
        &delivered_fixture("unrelated.eml", "bounces@bounces.herald.example"),
    );

    let reader = app.services.imap.clone().expect("bounces.imap_url");
    let report = reader.read_once().await.expect("the mailbox is read");
    assert_eq!(
        (report.read, report.acted, report.left),
        (7, 5, 2),
        "{report:?}"
    );
    app.assert_statuses(&[
        ("gone", "bounced"),
        ("angry", "complained"),
        ("away", "active"),
        ("leaving", "unsubscribed"),
        ("full", "active"),
    ])
    .await;
    let inbox = dovecot.messages(box_, "");
    assert_eq!(inbox.len(), 7, "nothing deleted");
    let seen = |needle: &str| {
        inbox
            .iter()
            .filter(|(_, raw)| String::from_utf8_lossy(raw).contains(needle))
            .map(|(flags, _)| flags.contains('S'))
            .collect::<Vec<_>>()
    };
    assert_eq!(seen(&verp("gone")), [true], "acted on: marked read");
    assert_eq!(
        seen("Delivered-To: office@"),
        [false],
        "not herald's: untouched"
    );
    assert_eq!(
        seen("Delivered-To: bounces@bounces.herald.example"),
        [false],
        "not understood: untouched"
    );
    let returned = app
        .dump_table("SELECT kind FROM returned ORDER BY id")
        .await;

    // Nothing is taken twice; what arrives later is.
    let again = reader.read_once().await.unwrap();
    assert_eq!(again.read, 0, "{again:?}");
    assert_eq!(
        app.dump_table("SELECT kind FROM returned ORDER BY id")
            .await,
        returned
    );
    dovecot.deliver(box_, &delivered_fixture("gmail-soft.eml", &verp("full")));
    let later = reader.read_once().await.unwrap();
    assert_eq!((later.read, later.acted), (1, 1), "{later:?}");

    // With bounces.imap_move_to, what herald acted on leaves the inbox for that folder.
    let mover = TestApp::spawn_with(
        Spawn::new(backend)
            .set("mail.return_path", "bounces@bounces.herald.example")
            .set("bounces.imap_url", &url("moved", "pw"))
            .set("bounces.imap_move_to", "Processed"),
    )
    .await;
    mover.digest_to(&["gone"]).await;
    let gone = mover.verp("gone@example.com");
    dovecot.deliver("moved", &delivered_fixture("postfix-hard.eml", &gone));
    dovecot.deliver(
        "moved",
        &delivered_fixture("postfix-hard.eml", "office@bounces.herald.example"),
    );
    let r = mover
        .services
        .imap
        .clone()
        .unwrap()
        .read_once()
        .await
        .unwrap();
    assert_eq!((r.read, r.acted, r.left), (2, 1, 1), "{r:?}");
    assert_eq!(
        mover.subscriber_status("gone@example.com").await.as_deref(),
        Some("bounced")
    );
    let left: Vec<String> = dovecot
        .messages("moved", "")
        .iter()
        .map(|(_, raw)| String::from_utf8_lossy(raw).into_owned())
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("Delivered-To: office@"));
    assert_eq!(dovecot.messages("moved", "Processed").len(), 1);
}
both_backends!(returned_mail_is_read_from_a_mailbox, tools);

/// The whole loop with a real MTA: herald relays through Postfix, which takes every digest
/// (250). The next hop for one reader's domain refuses the mailbox (550 5.1.1); another's
/// refuses our mail as blocklisted (550 5.7.1). Postfix writes its own DSN for each to the
/// VERP return path and routes it to herald's listener with the README's `transport_maps`
/// line (`bounces.herald.example smtp:[127.0.0.1]:PORT`). herald marks the 5.1.1 send
/// bounced and suppresses that address; the 5.7.1 send is failed with the provider's words
/// and its reader stays active; the third reader's digest arrives.
async fn a_real_postfix_returns_its_bounce_to_herald(backend: Backend) {
    if !common::postfix::Postfix::available() {
        return;
    }
    // herald sends to Postfix, Postfix returns to herald's listener: pick Postfix's port
    // first, start herald, then Postfix with the listener's port in its transport table.
    let pf_port = common::postfix::free_port();
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .returned_mail()
            .set("mail.url", &format!("smtp://127.0.0.1:{pf_port}")),
    )
    .await;
    let listener = app.bounces_addr.unwrap();
    // The reader's own mail server, which does not know them.
    let next_hop = common::SmtpServer::start(Behaviour {
        reject_rcpt: Some((
            "gone@example.org".into(),
            550,
            "5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table".into(),
        )),
        ..Default::default()
    });
    // A provider that has us on a blocklist.
    let listing = common::SmtpServer::start(Behaviour {
        reject_rcpt: Some((
            "@blocked.example".into(),
            550,
            "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
                .into(),
        )),
        ..Default::default()
    });
    let postfix = common::postfix::Postfix::start(
        pf_port,
        &[
            (
                "bounces.herald.example",
                format!("smtp:[127.0.0.1]:{}", listener.port()),
            ),
            ("example.org", format!("smtp:[127.0.0.1]:{}", next_hop.port)),
            (
                "blocked.example",
                format!("smtp:[127.0.0.1]:{}", listing.port),
            ),
            (
                "example.net",
                format!("smtp:[127.0.0.1]:{}", app.smtp().port),
            ),
        ],
    );
    app.digest_to(&[
        "gone@example.org",
        "fine@example.net",
        "listed@blocked.example",
    ])
    .await;
    assert_eq!(
        sends_in(&app, "sent").await.len(),
        3,
        "Postfix took all three"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = app.subscriber_status("gone@example.org").await;
        let arrived = app.smtp().last_to("fine@example.net").is_some();
        let refused = app
            .dump_table("SELECT status FROM sends WHERE email = 'listed@blocked.example'")
            .await;
        if status.as_deref() == Some("bounced") && arrived && refused.contains("failed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no bounce came back (status {status:?}, fine's digest arrived: {arrived}); Postfix said:\n{}",
            postfix.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sends = app
        .dump_table(
            "SELECT status || ' ' || COALESCE(last_reply, '') FROM sends WHERE email = 'gone@example.org'",
        )
        .await;
    assert!(
        sends.contains("bounced") && sends.contains("5.1.1"),
        "{sends}"
    );
    let returned = app
        .dump_table("SELECT kind || ' ' || action FROM returned")
        .await;
    assert!(
        returned.contains("hard") && returned.contains("suppressed"),
        "the DSN came back through the listener: {returned}"
    );
    assert!(
        returned.contains("refused failed: the message was refused"),
        "{returned}"
    );
    assert_eq!(
        app.subscriber_status("listed@blocked.example")
            .await
            .as_deref(),
        Some("active"),
        "a blocklisting suppresses nobody"
    );
    let listed = app
        .dump_table("SELECT last_reply FROM sends WHERE email = 'listed@blocked.example'")
        .await;
    assert!(
        listed.contains("5.7.1") && listed.contains("zen.spamhaus.org"),
        "the provider's words: {listed}"
    );
    let fine = app.smtp().last_to("fine@example.net").unwrap();
    let raw = String::from_utf8_lossy(&fine.raw).into_owned();
    assert!(
        raw.contains("by mx.herald.test (Postfix)"),
        "relayed by Postfix:\n{}",
        &raw[..raw.len().min(600)]
    );
}
both_backends!(a_real_postfix_returns_its_bounce_to_herald, tools);

/// The returned-mail listener speaks SMTP as an MTA relaying to it expects: the null
/// sender, commands out of order refused with the right codes, a forged reference refused
/// at RCPT, dot-stuffing undone, an overlong line refused; and no client holds more than
/// its share of the sessions.
async fn the_returned_mail_listener_speaks_smtp(backend: Backend) {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(Spawn::new(backend).returned_mail()).await;
    app.digest_to(&["reader"]).await;
    let verp = app.verp("reader@example.com");
    let (mut smtp, greeting) = app.listener_session().await;
    assert!(greeting.starts_with("220 "));
    assert!(smtp.say("EHLO mx.example.net").await.starts_with("250-"));
    assert!(
        smtp.say(&format!("RCPT TO:<{verp}>"))
            .await
            .starts_with("503")
    );
    assert!(
        smtp.say("MAIL FROM:<>").await.starts_with("250"),
        "the null sender"
    );
    assert!(smtp.say("DATA").await.starts_with("503"));
    assert!(
        smtp.say("RCPT TO:<postmaster@elsewhere.example>")
            .await
            .starts_with("550")
    );
    assert!(
        smtp.say("RCPT TO:<bounces+1-0000000000000000@bounces.herald.example>")
            .await
            .starts_with("550"),
        "a reference whose MAC does not verify"
    );
    assert!(
        smtp.say("RCPT TO:<bounces+1@bounces.herald.example>")
            .await
            .starts_with("550"),
        "a reference without its MAC"
    );
    assert!(
        smtp.say(&format!("RCPT TO:<{}>", verp.to_ascii_uppercase()))
            .await
            .starts_with("250"),
        "a server that upper-cases the address"
    );
    assert!(smtp.say("DATA").await.starts_with("354"));
    assert!(
        smtp.say("Subject: hello\r\n\r\n..hidden behind a dot\r\n.")
            .await
            .starts_with("250")
    );
    let raw = app.dump_table("SELECT raw FROM returned_messages").await;
    assert!(
        raw.contains("\n.hidden behind a dot") && !raw.contains("..hidden"),
        "{raw}"
    );
    assert!(
        smtp.say(&"NOOP".repeat(400)).await.starts_with("500"),
        "an overlong line"
    );

    // Eight sessions from one client that say nothing hold only that client's share: the
    // ninth is told to come back later at once, and a slot comes free when one leaves.
    let addr = app.bounces_addr.unwrap();
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 4];
        c.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"220 ");
        idle.push(c);
    }
    let mut ninth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        ninth.read_to_string(&mut answer),
    )
    .await
    .expect("answered at once")
    .unwrap();
    assert!(answer.starts_with("421 "), "{answer}");
    drop(idle.pop());
    let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0u8; 4];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        again.read_exact(&mut greeting).await.unwrap();
        if &greeting == b"220 " {
            break;
        }
        // The freed slot may not be back yet: try again.
        assert!(std::time::Instant::now() < deadline, "no slot came free");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        again = tokio::net::TcpStream::connect(addr).await.unwrap();
    }
}
both_backends!(the_returned_mail_listener_speaks_smtp);

/// Temporary failures count: `bounces.soft_limit` of them for one address within
/// `bounces.soft_window` suppress it; fewer, or older ones, do not. A full mailbox (5.2.2)
/// is such a failure; a DSN that says the mail is delayed, delivered or relayed is
/// recorded and counts for nothing, however many come.
async fn repeated_temporary_failures_suppress(backend: Backend) {
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .returned_mail()
            .set("bounces.soft_limit", "2")
            .set("bounces.soft_window", "7d"),
    )
    .await;
    app.digest_to(&["full", "slow", "waiting"]).await;
    let delayed = fixture("gmail-soft.eml");
    // The same report once the provider gave up on the full mailbox, and once it passed
    // the mail on.
    let full = delayed
        .replace("Action: delayed", "Action: failed")
        .replace("Status: 4.2.2", "Status: 5.2.2")
        .replace("452 4.2.2", "552 5.2.2");
    let relayed = delayed
        .replace("Action: delayed", "Action: relayed")
        .replace("Status: 4.2.2", "Status: 2.0.0")
        .replace(
            "452 4.2.2 The recipient's inbox is out of storage",
            "250 2.0.0 OK",
        );
    let delivered = relayed.replace("Action: relayed", "Action: delivered");
    let report = |reader: &str, raw: &str| {
        let to = app.verp(&format!("{reader}@example.com"));
        let (app, raw) = (&app, raw.to_string());
        async move { app.send_returned(&to, &raw).await.unwrap() }
    };
    report("slow", &full).await;
    // Older than the window by the time of the next one: it does not count.
    app.clock.advance(Duration::days(8));
    report("slow", &full).await;
    report("full", &full).await;
    assert_eq!(
        app.subscriber_status("full@example.com").await.as_deref(),
        Some("active")
    );
    report("full", &full).await;
    assert_eq!(
        app.subscriber_status("full@example.com").await.as_deref(),
        Some("bounced")
    );
    assert_eq!(
        app.subscriber_status("slow@example.com").await.as_deref(),
        Some("active")
    );
    let log = app
        .dump_table("SELECT action FROM returned ORDER BY id")
        .await;
    assert!(
        log.ends_with("suppressed: too many temporary failures"),
        "{log}"
    );
    for raw in [
        &delayed, &relayed, &delivered, &delayed, &relayed, &delivered,
    ] {
        report("waiting", raw).await;
    }
    assert_eq!(
        app.subscriber_status("waiting@example.com")
            .await
            .as_deref(),
        Some("active"),
        "delays and successes count for nothing"
    );
    let waiting = app
        .dump_table(
            "SELECT r.kind || ' ' || r.action FROM returned r JOIN sends s ON s.id = r.send_id \
             WHERE s.email = 'waiting@example.com' ORDER BY r.id",
        )
        .await;
    assert_eq!(waiting.matches("delayed recorded").count(), 2, "{waiting}");
    assert_eq!(
        waiting.matches("delivered recorded").count(),
        4,
        "{waiting}"
    );
    let send = app
        .dump_table("SELECT status FROM sends WHERE email = 'waiting@example.com'")
        .await;
    assert!(send.contains("sent"), "the send stays sent: {send}");
}
both_backends!(repeated_temporary_failures_suppress);

/// What recording one report three times answers: counted once, then known.
const COUNTED_ONCE: [&str; 3] = [
    "counted: a temporary failure",
    "ignored: this message was received before",
    "ignored: this message was received before",
];

/// Relays that report by HTTP: `POST /api/v1/webhooks/returned` with an operator's token records a
/// hard bounce, a complaint or an unsubscribe for an address, as returned mail would.
async fn relays_report_returned_mail_by_webhook(backend: Backend) {
    use serde_json::json;
    let app = TestApp::spawn(backend).await;
    app.set_time(2026, 3, 2, 7, 30, 0);
    app.add_section("wmd", "WMD").await;
    for r in ["dead", "angry", "fine", "blocked", "greylisted"] {
        app.reader(&format!("{r}@example.com"), &["wmd"]).await;
    }
    let store = app.services.store.as_ref();
    let token = |name: &str, role| {
        let now = app.clock.now();
        let name = name.to_string();
        async move {
            herald::access::issue_token(store, &name, role, now)
                .await
                .unwrap()
        }
    };
    let relay = token("relay", herald::store::Role::Webhook).await;
    let ops = token("watcher", herald::store::Role::Operator).await;
    let report = |body: serde_json::Value| {
        let relay = relay.clone();
        let app = &app;
        async move {
            app.api_post("/api/v1/webhooks/returned", &relay, Some(&body))
                .await
        }
    };
    // A read-only token cannot unsubscribe anyone; a webhook token can read nothing.
    for path in ["/api/v1/webhooks/returned", "/api/v1/webhooks/postmark"] {
        let r = app
            .api_post(
                path,
                &ops,
                Some(&json!({"type": "complaint", "email": "fine@example.com"})),
            )
            .await;
        assert_eq!(r.status(), 403, "{path}: an operator token");
    }
    let r = app
        .http
        .get(format!("{}/api/v1/sends", app.base))
        .bearer_auth(&relay)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a webhook token reads nothing");
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );

    let r = report(
        json!({"type": "hard", "email": "Dead@Example.com", "status": "5.1.1",
        "diagnostic": "550 5.1.1 user unknown"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["action"], "suppressed: the address failed");
    // A relay calling a blocklisting "hard": its code says what it is.
    let v: serde_json::Value = report(json!({"type": "hard", "email": "blocked@example.com",
        "status": "5.7.1", "diagnostic": "550 5.7.1 blocked using zen.spamhaus.org"}))
    .await
    .json()
    .await
    .unwrap();
    assert!(
        v["action"].as_str().unwrap().contains("nobody suppressed"),
        "{v}"
    );
    assert_eq!(
        report(json!({"type": "complaint", "email": "angry@example.com"}))
            .await
            .status(),
        200
    );
    let v: serde_json::Value = report(json!({"type": "hard", "email": "stranger@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["action"], "kept: names no send of a known reader");
    // One report posted three times (a relay's retries, or a replay) counts once: with
    // bounces.soft_limit 3 it would otherwise suppress.
    let soft = json!({"type": "soft", "email": "greylisted@example.com", "status": "4.2.2",
        "id": "evt-77", "at": "2026-03-02T07:20:00Z"});
    let mut actions = Vec::new();
    for _ in 0..3 {
        let v: serde_json::Value = report(soft.clone()).await.json().await.unwrap();
        actions.push(v["action"].as_str().unwrap().to_string());
    }
    assert_eq!(actions, COUNTED_ONCE);
    assert_eq!(
        app.subscriber_status("greylisted@example.com")
            .await
            .as_deref(),
        Some("active")
    );
    let r = report(json!({"type": "complaint", "email": "fine@example.com",
        "id": "evt-1", "at": "2026-03-02T06:00:00Z"}))
    .await;
    assert_eq!(r.status(), 422, "over an hour old");
    assert!(r.text().await.unwrap().contains("over an hour ago"));
    assert_eq!(
        app.subscriber_status("dead@example.com").await.as_deref(),
        Some("bounced")
    );
    assert_eq!(
        app.subscriber_status("blocked@example.com")
            .await
            .as_deref(),
        Some("active")
    );
    assert_eq!(
        app.subscriber_status("angry@example.com").await.as_deref(),
        Some("complained")
    );
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );
    for (bad, why) in [
        (
            json!({"type": "weird", "email": "fine@example.com"}),
            "type must be",
        ),
        (json!({"type": "hard", "email": "not an address"}), ""),
        (
            json!({"type": "hard", "email": "fine@example.com", "extra": 1}),
            "extra",
        ),
    ] {
        let r = report(bad).await;
        assert_eq!(r.status(), 422);
        assert!(r.text().await.unwrap().contains(why));
    }
    let r = app
        .http
        .post(format!("{}/api/v1/webhooks/returned", app.base))
        .json(&json!({"type": "hard", "email": "fine@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );

    // Postmark's own webhook payloads (many more fields than read here).
    app.reader("pm-dead@example.com", &["wmd"]).await;
    app.reader("pm-spam@example.com", &["wmd"]).await;
    let postmark = |body: serde_json::Value| {
        let relay = relay.clone();
        let app = &app;
        async move {
            app.api_post("/api/v1/webhooks/postmark", &relay, Some(&body))
                .await
        }
    };
    let hard = json!({"RecordType": "Bounce", "ID": 4323372036854775807u64, "Type": "HardBounce",
        "TypeCode": 1, "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "pm-dead@example.com", "From": "news@herald.example", "BouncedAt": "2026-03-02T07:00:05Z",
        "Inactive": true, "CanActivate": true, "Subject": "Herald News"});
    let r = postmark(hard.clone()).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = postmark(hard).await.json().await.unwrap();
    assert_eq!(v["action"], "ignored: this message was received before");
    app.reader("pm-blocked@example.com", &["wmd"]).await;
    let v: serde_json::Value = postmark(
        json!({"RecordType": "Bounce", "ID": 99, "Type": "HardBounce",
        "Details": "smtp;550 5.7.1 Message rejected due to local policy",
        "Email": "pm-blocked@example.com", "BouncedAt": "2026-03-02T07:00:05Z"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        v["action"].as_str().unwrap().contains("nobody suppressed"),
        "{v}"
    );
    assert_eq!(
        app.subscriber_status("pm-blocked@example.com")
            .await
            .as_deref(),
        Some("active")
    );
    let r = postmark(
        json!({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 512,
        "Email": "pm-spam@example.com", "BouncedAt": "2026-03-02T07:10:00Z"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value =
        postmark(json!({"RecordType": "Delivery", "Recipient": "fine@example.com"}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(v["action"], "ignored: not a bounce or complaint");
    assert_eq!(
        app.subscriber_status("pm-dead@example.com")
            .await
            .as_deref(),
        Some("bounced")
    );
    assert_eq!(
        app.subscriber_status("pm-spam@example.com")
            .await
            .as_deref(),
        Some("complained")
    );
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );
    let kept = store
        .list_returned(None, Some(herald::store::ReturnedKind::Hard), 10)
        .await
        .unwrap();
    assert!(kept.iter().any(|r| {
        r.diagnostic
            .as_deref()
            .is_some_and(|d| d.contains("5.1.1 The email account"))
    }));

    // The same record and the suppressions under /api/v1.
    let get = |path: &str| {
        let (ops, url) = (ops.clone(), format!("{}{path}", app.base));
        let http = app.http.clone();
        async move { http.get(url).bearer_auth(ops).send().await.unwrap() }
    };
    let listed: serde_json::Value = get("/api/v1/returned?type=hard")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["email"] == "pm-dead@example.com"),
        "{listed}"
    );
    assert_eq!(get("/api/v1/returned?type=nonsense").await.status(), 422);
    assert_eq!(get("/api/v1/returned?since=soon").await.status(), 422);
    let suppressed: serde_json::Value = get("/api/v1/suppressions").await.json().await.unwrap();
    assert!(suppressed.as_array().unwrap().len() >= 4, "{suppressed}");
    let staff =
        herald::access::issue_token(store, "desk", herald::store::Role::Staff, app.clock.now())
            .await
            .unwrap();
    let body = json!({"email": "fine@example.com", "reason": "legal"});
    assert_eq!(
        app.api_post("/api/v1/suppressions", &ops, Some(&body))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.api_post("/api/v1/suppressions", &staff, Some(&body))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("unsubscribed")
    );
    let delete = |who: String| {
        let url = format!("{}/api/v1/suppressions/pm-dead@example.com", app.base);
        let http = app.http.clone();
        async move {
            http.delete(url)
                .bearer_auth(who)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(delete(ops.clone()).await, 403, "operators read only");
    assert_eq!(delete(staff.clone()).await, 200);
    let lifts = store.suppression_lifts(10).await.unwrap();
    assert_eq!(lifts[0].lifted_by, "api:desk", "{lifts:?}");
    assert_eq!(delete(staff.clone()).await, 404, "not suppressed any more");
    assert_eq!(
        app.subscriber_status("pm-dead@example.com")
            .await
            .as_deref(),
        Some("unsubscribed")
    );
}
both_backends!(relays_report_returned_mail_by_webhook);

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// An SNS message signed as SNS signs it (the fields AWS lists, in order), by openssl with
/// `key`: version "1" is SHA1withRSA, "2" SHA256withRSA.
fn sns_signed(key: &std::path::Path, version: &str, fields: &[(&str, &str)]) -> serde_json::Value {
    let order: &[&str] = if fields.iter().any(|(k, _)| *k == "Token") {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    };
    let mut text = String::new();
    for k in order {
        if let Some((_, v)) = fields.iter().find(|(f, _)| f == k) {
            text.push_str(&format!("{k}\n{v}\n"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("signed.txt");
    std::fs::write(&input, &text).unwrap();
    let digest = if version == "1" { "-sha1" } else { "-sha256" };
    let out = std::process::Command::new("openssl")
        .args(["dgst", digest, "-sign"])
        .arg(key)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    use base64::Engine;
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    m.insert("SignatureVersion".into(), version.into());
    m.insert(
        "Signature".into(),
        base64::engine::general_purpose::STANDARD
            .encode(out.stdout)
            .into(),
    );
    m.insert(
        "SigningCertURL".into(),
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem".into(),
    );
    serde_json::Value::Object(m)
}

/// Amazon SES reports through SNS: a signed bounce suppresses, a signed complaint
/// unsubscribes; a message changed after signing, one from another topic, or one signed by
/// another key changes nothing (403). The signatures are made by openssl with a key whose
/// certificate herald was given, as an operator gives it SNS's.
async fn ses_reports_by_sns_are_verified_before_they_count(backend: Backend) {
    if !common::tool_available("openssl", &["openssl", "version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("sns.key"), dir.path().join("sns.pem"));
    let (other_key, other_cert) = (dir.path().join("other.key"), dir.path().join("other.pem"));
    for (k, c) in [(&key, &cert), (&other_key, &other_cert)] {
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=sns.us-east-1.amazonaws.com", "-keyout"])
            .arg(k)
            .arg("-out")
            .arg(c)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let topic = "arn:aws:sns:us-east-1:123456789012:herald-bounces";
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("bounces.sns_certificates", cert.to_str().unwrap())
            .set("bounces.sns_topics", topic),
    )
    .await;
    app.set_time(2026, 3, 2, 7, 30, 0);
    app.add_section("wmd", "WMD").await;
    for r in ["dead", "angry", "fine"] {
        app.reader(&format!("{r}@example.com"), &["wmd"]).await;
    }
    let bounce = |email: &str| {
        format!(
            r#"{{"notificationType":"Bounce","bounce":{{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{{"emailAddress":"{email}","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}}],"timestamp":"2026-03-02T07:00:05.000Z"}},"mail":{{"messageId":"0100017b-ses","destination":["{email}"]}}}}"#
        )
    };
    let notification = |message: &str, topic: &str| {
        vec![
            ("Type".to_string(), "Notification".to_string()),
            (
                "MessageId".into(),
                "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".into(),
            ),
            ("TopicArn".into(), topic.to_string()),
            (
                "Subject".into(),
                "Amazon SES Email Event Notification".into(),
            ),
            ("Message".into(), message.to_string()),
            ("Timestamp".into(), "2026-03-02T07:00:06.000Z".into()),
        ]
    };
    let post = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/api/v1/webhooks/ses", app.base))
                .header("x-amz-sns-message-type", "Notification")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };

    let ok = post(sns_signed(
        &key,
        "2",
        &as_refs(&notification(&bounce("dead@example.com"), topic)),
    ))
    .await;
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    assert_eq!(
        app.subscriber_status("dead@example.com").await.as_deref(),
        Some("bounced")
    );
    let complaint = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"angry@example.com"}],"complaintFeedbackType":"abuse","timestamp":"2026-03-02T08:00:00.000Z"},"mail":{"messageId":"x"}}"#;
    let ok = post(sns_signed(
        &key,
        "1",
        &as_refs(&notification(complaint, topic)),
    ))
    .await;
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    assert_eq!(
        app.subscriber_status("angry@example.com").await.as_deref(),
        Some("complained")
    );

    // SNS delivers a message again when it is not sure it arrived, and anyone who saw one
    // can post it again: one signed soft bounce posted three times counts once (with
    // bounces.soft_limit 3 it would otherwise suppress).
    let full = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull","bouncedRecipients":[{"emailAddress":"fine@example.com","action":"failed","status":"5.2.2","diagnosticCode":"smtp; 552 5.2.2 mailbox full"}],"timestamp":"2026-03-02T07:00:05.000Z"},"mail":{"messageId":"y"}}"#;
    let mut soft = notification(full, topic);
    soft[1].1 = "7d3c1a52-soft-bounce-once".into();
    let soft = sns_signed(&key, "2", &as_refs(&soft));
    let mut actions = Vec::new();
    for _ in 0..3 {
        let r = post(soft.clone()).await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        actions.push(v["actions"][0].as_str().unwrap().to_string());
    }
    assert_eq!(actions, COUNTED_ONCE);
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );
    // A signed message from long ago (a replay of one kept since): refused.
    let mut old = notification(&bounce("fine@example.com"), topic);
    old[1].1 = "0f6a-old".into();
    old[5].1 = "2020-06-01T07:00:06.000Z".into();
    let r = post(sns_signed(&key, "2", &as_refs(&old))).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("over an hour ago"));

    // Changed after signing: another address put in.
    let mut forged = sns_signed(
        &key,
        "2",
        &as_refs(&notification(&bounce("dead@example.com"), topic)),
    );
    forged["Message"] = bounce("fine@example.com").into();
    assert_eq!(post(forged).await.status(), 403);
    // Signed by a key herald was not given.
    let stranger = sns_signed(
        &other_key,
        "2",
        &as_refs(&notification(&bounce("fine@example.com"), topic)),
    );
    assert_eq!(post(stranger).await.status(), 403);
    // Properly signed, but from a topic someone else made.
    let elsewhere = sns_signed(
        &key,
        "2",
        &as_refs(&notification(
            &bounce("fine@example.com"),
            "arn:aws:sns:us-east-1:999999999999:theirs",
        )),
    );
    assert_eq!(post(elsewhere).await.status(), 403);
    assert_eq!(
        app.subscriber_status("fine@example.com").await.as_deref(),
        Some("active")
    );
    // A subscription confirmation is answered (and logged for the operator), not acted on.
    let confirm = sns_signed(
        &key,
        "2",
        &[
            ("Type", "SubscriptionConfirmation"),
            ("MessageId", "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"),
            (
                "Token",
                "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
            ),
            ("TopicArn", topic),
            ("Message", "You have chosen to subscribe to the topic."),
            (
                "SubscribeURL",
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=y",
            ),
            ("Timestamp", "2026-03-02T06:00:00.000Z"),
        ],
    );
    assert_eq!(post(confirm).await.status(), 200);
    assert_eq!(post(serde_json::json!({"not": "sns"})).await.status(), 400);

    // Not configured: there is no such endpoint.
    let plain = TestApp::spawn(backend).await;
    let r = plain
        .http
        .post(format!("{}/api/v1/webhooks/ses", plain.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
both_backends!(ses_reports_by_sns_are_verified_before_they_count, tools);

/// Postfix's smtp-sink as the relay: it offers PIPELINING, so herald sends MAIL, RCPT and
/// DATA in one write and each message with its final dot in one more. Every reader gets
/// exactly one copy, whole: text lines that begin with a dot come out as written (the
/// dot-stuffing is undone by a server we did not write), and the DKIM signature made over
/// the message still verifies with dkimpy after the trip.
async fn a_pipelining_relay_gets_every_message_once_and_whole(backend: Backend) {
    if !common::tool_available(
        "Postfix's smtp-sink",
        &["test", "-x", "/usr/sbin/smtp-sink"],
    ) || !common::tool_available("dkimpy", &["/usr/bin/python3", "-c", "import dkim"])
        || !common::tool_available("openssl", &["openssl", "version"])
    {
        return;
    }
    let sink = common::SmtpSink::start();
    let key = sink.dir.path().join("dkim.key");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("mail.url", &format!("smtp://127.0.0.1:{}", sink.port))
            .set("delivery.connections", "2")
            .set("mail.dkim.key_file", key.to_str().unwrap())
            .set("mail.dkim.selector", "s2026"),
    )
    .await;
    app.add_section("wmd", "WMD").await;
    let readers = 12;
    let mut csv = String::from("email\n");
    for i in 0..readers {
        csv.push_str(&format!("r{i}@example.com\n"));
    }
    app.services
        .subs
        .import_csv(csv.as_bytes(), &["wmd".to_string()], true)
        .await
        .unwrap();
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    // A summary that is a line of dots in the text part: SMTP must stuff it.
    let dots = ".".repeat(120);
    app.add_article("wmd", "... and so on", "https://news.example.org/a", &dots)
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    assert_eq!(sends_in(&app, "sent").await.len(), readers);

    let got = sink.messages(readers);
    let mut to: Vec<String> = got.iter().map(|m| m.rcpt.clone()).collect();
    to.sort();
    let mut want: Vec<String> = (0..readers).map(|i| format!("r{i}@example.com")).collect();
    want.sort();
    assert_eq!(to, want, "one copy per reader");
    for m in &got {
        let parsed = mail_parser::MessageParser::default().parse(&m.raw).unwrap();
        let text = parsed.body_text(0).unwrap();
        assert!(
            text.lines().any(|l| l.trim_end() == dots),
            "the line of dots arrives as written:\n{text}"
        );
        assert!(parsed.subject().unwrap().contains("WMD"));
    }
    let raws: Vec<Vec<u8>> = got.into_iter().map(|m| m.raw).collect();
    if let Err(e) = dkimpy_verifies(&key, &raws) {
        panic!("after smtp-sink, dkimpy rejected {e}");
    }
}
both_backends!(a_pipelining_relay_gets_every_message_once_and_whole, tools);

/// A relay that offers PIPELINING and answers nothing until it has MAIL, RCPT and DATA
/// (a client that waits for each reply would hang here and time out). Its refusals come
/// back together; herald judges by the first one, not by the DATA refusal that follows
/// it: an unknown mailbox bounces, a 450 is retried later, the others are sent, and no
/// message body goes to a recipient that was refused.
async fn pipelined_refusals_are_read_in_order(backend: Backend) {
    let relay = common::ScriptedRelay::start(|rcpt| match rcpt {
        "gone@example.com" => {
            "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
        }
        "busy@example.com" => "450 4.2.1 <busy@example.com>: Mailbox busy, try again later",
        _ => "250 2.1.5 Ok",
    });
    let app = TestApp::spawn_with(
        Spawn::new(backend).set("mail.url", &format!("smtp://127.0.0.1:{}", relay.port)),
    )
    .await;
    app.digest_to(&["first", "gone", "busy", "last"]).await;

    assert!(
        relay.pipelined(),
        "MAIL, RCPT and DATA arrived before any reply"
    );
    let mut delivered = relay.delivered();
    delivered.sort();
    assert_eq!(delivered, ["first@example.com", "last@example.com"]);
    let reply_of = |rows: &[herald::store::SendRecord], who: &str| {
        rows.iter()
            .find(|r| r.email.as_deref() == Some(who))
            .and_then(|r| r.last_reply.clone())
            .unwrap_or_else(|| panic!("no row for {who}"))
    };
    let bounced = sends_in(&app, "bounced").await;
    assert!(
        reply_of(&bounced, "gone@example.com").contains("5.1.1"),
        "{bounced:?}"
    );
    let retrying = sends_in(&app, "retrying").await;
    let busy = reply_of(&retrying, "busy@example.com");
    assert!(busy.contains("4.2.1"), "{busy}");
    assert_eq!(sends_in(&app, "sent").await.len(), 2);
    assert_eq!(
        app.subscriber_status("gone@example.com").await.as_deref(),
        Some("bounced")
    );
}
both_backends!(pipelined_refusals_are_read_in_order);

/// Python's own SMTP server (the standard library's `smtpd`, behind bench/greylist_sink.py)
/// answers a second EHLO with "503 Duplicate HELO/EHLO". herald asks twice to learn about
/// PIPELINING; such a server must still get every message, one command at a time (it once
/// failed all 20,000 of an issue, permanently).
async fn a_relay_that_refuses_a_second_ehlo_still_gets_every_message(backend: Backend) {
    if !common::tool_available(
        "Python's smtpd module",
        &["/usr/bin/python3", "-W", "ignore", "-c", "import smtpd"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = std::process::Command::new("/usr/bin/python3")
        .arg(format!(
            "{}/bench/greylist_sink.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(port.to_string())
        .arg(dir.path())
        .arg("0")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let app = TestApp::spawn_with(
        Spawn::new(backend).set("mail.url", &format!("smtp://127.0.0.1:{port}")),
    )
    .await;
    issue_for(&app, 5).await;
    app.deliver().await;
    let sent = sends_in(&app, "sent").await.len();
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    let _ = sink.kill();
    let _ = sink.wait();
    assert_eq!(
        (sent, files),
        (5, 5),
        "{:?}",
        sends_in(&app, "failed").await
    );
}
both_backends!(
    a_relay_that_refuses_a_second_ehlo_still_gets_every_message,
    tools
);

/// An internal relay with a certificate from a private CA (made by openssl, as operators
/// do): with `mail.tls_ca_file` naming that CA, mail goes out over STARTTLS
/// (`?tls=required`) and over TLS from the first byte (`smtps://`); without it, or with
/// another CA, the certificate is refused and nothing is sent (there is no "accept any
/// certificate" switch).
async fn a_private_ca_is_trusted_only_when_named(backend: Backend) {
    if !common::tool_available("openssl", &["openssl", "version"]) {
        return;
    }
    let pki = common::pki::Pki::new("Herald Test Relay CA");
    let other = common::pki::Pki::new("Someone Else's CA");
    let relay = common::SmtpServer::start_tls(
        Behaviour::default(),
        pki.cert.to_str().unwrap(),
        pki.key.to_str().unwrap(),
    );
    let plain = common::SmtpServer::start(Behaviour::default());
    let smtps = common::relays::TlsFront::start(&pki.cert, &pki.key, plain.port);
    let starttls_url = format!("smtp://127.0.0.1:{}?tls=required", relay.port);
    let smtps_url = format!("smtps://127.0.0.1:{}", smtps.port);
    for (url, ca, delivered) in [
        (&starttls_url, Some(&pki.ca), true),
        (&smtps_url, Some(&pki.ca), true),
        (&starttls_url, None, false),
        (&smtps_url, None, false),
        (&starttls_url, Some(&other.ca), false),
        (&smtps_url, Some(&other.ca), false),
    ] {
        let mut spec = Spawn::new(backend).set("mail.url", url);
        if let Some(ca) = ca {
            spec = spec.set("mail.tls_ca_file", ca.to_str().unwrap());
        }
        let app = TestApp::spawn_with(spec).await;
        let before = relay.count() + plain.count();
        issue_for(&app, 1).await;
        app.deliver().await;
        let got = relay.count() + plain.count() - before;
        let case = format!("{url} with CA {ca:?}");
        if delivered {
            assert_eq!(got, 1, "{case}");
            assert_eq!(sends_in(&app, "sent").await.len(), 1, "{case}");
        } else {
            assert_eq!(got, 0, "{case}: nothing may go to an untrusted relay");
            let retrying = sends_in(&app, "retrying").await;
            assert_eq!(retrying.len(), 1, "{case}");
            let why = retrying[0].last_reply.clone().unwrap_or_default();
            assert!(
                why.to_lowercase().contains("certificate") || why.contains("TLS"),
                "{case}: {why}"
            );
        }
    }
}
both_backends!(a_private_ca_is_trusted_only_when_named, tools);

/// A relay that takes `ms` to answer each message, and an app delivering as `herald serve`
/// does (4 connections) an issue of `n` readers to it; returns once the relay has `at_least`.
async fn mid_send(backend: Backend, n: usize, ms: u64, at_least: usize) -> (TestApp, i64) {
    let mut spec = Spawn::new(backend)
        .set("delivery.poll_interval", "1s")
        .set("delivery.connections", "4")
        .set("delivery.batch_size", "50");
    spec.background = true;
    let app = TestApp::spawn_with(spec).await;
    app.smtp().set_behaviour(Behaviour {
        on_message: Some(Hook(Arc::new(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms))
        }))),
        ..Default::default()
    });
    issue_for(&app, n).await;
    let id = app.services.store.list_issues(None, 1).await.unwrap()[0].id;
    app.services.engine.wake();
    for _ in 0..600 {
        if app.smtp().count() >= at_least {
            return (app, id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the relay got {} of {n}", app.smtp().count());
}

/// What the ledger says of an issue's sends, by status.
async fn issue_counts(app: &TestApp, id: i64) -> std::collections::BTreeMap<String, i64> {
    app.services
        .store
        .issue_status_counts(id)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The ledger of a stopped issue of `readers`: `sent` for exactly what the relay received,
/// `cancelled` for everyone else, nothing in any other state.
async fn the_ledger_says_what_the_relay_got(app: &TestApp, id: i64, readers: i64, received: usize) {
    let counts = issue_counts(app, id).await;
    let of = |s: &str| counts.get(s).copied().unwrap_or(0);
    assert_eq!(of("sent"), received as i64, "{counts:?}");
    assert_eq!(of("cancelled"), readers - received as i64, "{counts:?}");
    assert_eq!(counts.len(), 2, "only sent and cancelled: {counts:?}");
}

/// Once the relay has received nothing for a second, its count.
async fn relay_settled(app: &TestApp) -> usize {
    let mut last = app.smtp().count();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let now = app.smtp().count();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Stopping an issue mid-send (the API, in the process that delivers): the relay receives
/// at most the one message per connection already handed to it, nothing after; the ledger
/// says `sent` for exactly what the relay received and `cancelled` for every other reader;
/// the issue is `stopped`, and neither a second stop nor a retry sends anything more.
async fn a_stopped_issue_sends_nothing_more(backend: Backend) {
    let (app, id) = mid_send(backend, 400, 30, 20).await;
    let store = app.services.store.as_ref();
    let token =
        herald::access::issue_token(store, "desk", herald::store::Role::Staff, app.clock.now())
            .await
            .unwrap();
    let r = app
        .api_post(&format!("/api/v1/issues/{id}/stop"), &token, None)
        .await;
    let at_stop = app.smtp().count();
    assert_eq!(r.status(), 200);
    let said: serde_json::Value = r.json().await.unwrap();
    assert_eq!(said["already"], false, "{said}");
    assert_eq!(said["stopped_by"], "token desk", "{said}");
    let received = relay_settled(&app).await;
    assert!(
        received <= at_stop + 4,
        "{at_stop} at the stop, {received} in the end: more than the 4 in flight"
    );
    assert!(
        received < 200,
        "the stop came too late to prove anything: {received}"
    );
    the_ledger_says_what_the_relay_got(&app, id, 400, received).await;
    // Every reader who got it got it once.
    let mut to: Vec<String> = app.smtp().all().iter().flat_map(|c| c.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), received);

    // The issue says so, to the API and in the console's terms.
    let issue = herald::digests::issue_with_counts(store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(issue.state, "stopped");
    assert_eq!(issue.issue.stopped_by.as_deref(), Some("token desk"));
    // Again: nothing changes, and it says when it was stopped.
    let again: serde_json::Value = app
        .api_post(&format!("/api/v1/issues/{id}/stop"), &token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["already"].clone(), again["cancelled"].clone()),
        (true.into(), 0.into())
    );
    // A retry of a stopped issue puts nothing back in the queue.
    assert_eq!(
        store
            .requeue_failed_sends(id, app.clock.now())
            .await
            .unwrap(),
        0
    );
    // No such issue: 404.
    let r = app.api_post("/api/v1/issues/999/stop", &token, None).await;
    assert_eq!(r.status(), 404);
    // A read-only token may not stop anything.
    let ops =
        herald::access::issue_token(store, "ops", herald::store::Role::Operator, app.clock.now())
            .await
            .unwrap();
    let r = app
        .api_post(&format!("/api/v1/issues/{id}/stop"), &ops, None)
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(relay_settled(&app).await, received);
}
both_backends!(a_stopped_issue_sends_nothing_more);

/// A stop made by another process (`herald issues stop`, another instance) reaches the
/// workers through the ledger within a quarter second. Whatever the relay took meanwhile
/// is recorded as `sent` — the ledger never says `cancelled` for mail that went out.
async fn a_stop_from_another_process_reaches_the_workers(backend: Backend) {
    let (app, id) = mid_send(backend, 400, 30, 20).await;
    // The store directly: this process's workers are not told, as with the CLI.
    let r = app
        .services
        .store
        .stop_issue(id, "cli (someone)", app.clock.now())
        .await
        .unwrap()
        .unwrap();
    let at_stop = app.smtp().count();
    assert!(r.cancelled > 0 && !r.already);
    let received = relay_settled(&app).await;
    // 4 connections at ~30 ms a message for at most 250 ms, and the 4 in flight.
    assert!(
        received <= at_stop + 4 * 10 + 4,
        "{at_stop} at the stop, {received} in the end"
    );
    the_ledger_says_what_the_relay_got(&app, id, 400, received).await;
}
both_backends!(a_stop_from_another_process_reaches_the_workers);

/// The outcome fence and a stop: a row cancelled while its worker held it takes `sent` from
/// that worker (the mail went out) but no other outcome, and nothing from anyone else; a
/// stop during filling ends the filling, and the rows written are cancelled.
async fn a_stop_is_fenced_like_any_outcome(backend: Backend) {
    use herald::store::{SendOutcome, SendResult};
    let app = TestApp::spawn(backend).await;
    issue_for(&app, 3).await;
    let store = app.services.store.as_ref();
    let id = store.list_issues(None, 1).await.unwrap()[0].id;
    let holder = LeaseHolder {
        owner: "i1/w0".into(),
        instance: "i1".into(),
    };
    let now = app.clock.now();
    let jobs = store
        .claim_sends(&holder, now, now + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    let r = store.stop_issue(id, "ann", now).await.unwrap().unwrap();
    assert_eq!((r.cancelled, r.sent, r.already), (3, 0, false));
    // Claimed rows are no longer held: a renewal returns none of them.
    assert!(
        store
            .renew_leases(&holder.owner, now + Duration::minutes(5), now)
            .await
            .unwrap()
            .is_empty()
    );
    let result = |i: usize, owner: &str, outcome: SendOutcome| SendResult {
        send_id: jobs[i].id,
        lease_owner: owner.into(),
        outcome,
    };
    let written = store
        .complete_sends(
            &[
                result(
                    0,
                    "i1/w0",
                    SendOutcome::Sent {
                        reply: "250 ok".into(),
                    },
                ),
                result(
                    1,
                    "i1/w0",
                    SendOutcome::Failed {
                        reply: "550 no".into(),
                    },
                ),
                result(
                    2,
                    "i2/w9",
                    SendOutcome::Sent {
                        reply: "250 ok".into(),
                    },
                ),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(written, 1);
    let counts = issue_counts(&app, id).await;
    assert_eq!(counts.get("sent"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("cancelled"), Some(&2), "{counts:?}");
    // Nothing of it is claimed again.
    assert!(
        store
            .claim_sends(&holder, now, now + Duration::minutes(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.issue_stops().await.unwrap() >= 1);

    // An issue still being filled: the stop ends the filling.
    app.add_article("wmd", "B", "https://news.example.org/b", "")
        .await;
    app.set_time(2026, 3, 3, 7, 0, 0);
    let made = app.services.digests.run_tick().await.unwrap();
    let second = made[0].issue.id;
    assert!(store.issue(second).await.unwrap().unwrap().filling);
    let step = store.fill_issue(second, 1, app.clock.now()).await.unwrap();
    assert!(!step.done);
    let r = store
        .stop_issue(second, "ann", app.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.cancelled, 1);
    let issue = store.issue(second).await.unwrap().unwrap();
    assert!(!issue.filling && issue.stopped_at.is_some());
    let step = store.fill_issue(second, 10, app.clock.now()).await.unwrap();
    assert_eq!((step.written, step.done), (0, true));
    assert_eq!(issue_counts(&app, second).await.get("cancelled"), Some(&1));
    assert!(store.stop_issue(9999, "ann", now).await.unwrap().is_none());
}
both_backends!(a_stop_is_fenced_like_any_outcome);

/// A ledger written before `cancelled` existed (migrations up to 0014, rows in every state)
/// is upgraded in place by `herald migrate`: every row kept, `cancelled` now allowed, a state
/// herald does not know still refused; on SQLite the database stays whole. This is the path
/// the schema-text edit of migration 0015 takes on every existing SQLite install.
async fn an_older_ledger_learns_cancelled_in_place(backend: Backend) {
    use sqlx::migrate::Migrator;
    let (url, _guard) = common::fresh_database(backend).await;
    let dialect = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
    let mut old = Migrator::new(std::path::Path::new(&dir)).await.unwrap();
    old.migrations.to_mut().retain(|m| m.version <= 14);
    const ROWS: &str = "INSERT INTO sends (kind, message_id, status, attempts, next_attempt_at, \
        created_at, updated_at) SELECT 'welcome', '<m' || s || '@x>', s, 0, CURRENT_TIMESTAMP, \
        CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM (SELECT 'queued' AS s UNION ALL SELECT \
        'sending' UNION ALL SELECT 'sent' UNION ALL SELECT 'retrying' UNION ALL SELECT 'failed' \
        UNION ALL SELECT 'bounced' UNION ALL SELECT 'suppressed') AS states";
    // How many rows, whether `cancelled` may be written, whether a made-up state may.
    macro_rules! check {
        ($pool:expr) => {{
            let rows: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sends")
                .fetch_one($pool)
                .await
                .unwrap();
            let cancelled =
                sqlx::query("UPDATE sends SET status = 'cancelled' WHERE status = 'queued'")
                    .execute($pool)
                    .await
                    .is_ok();
            let bogus = sqlx::query("UPDATE sends SET status = 'bogus' WHERE status = 'sent'")
                .execute($pool)
                .await
                .is_ok();
            (rows.0, cancelled, bogus)
        }};
    }
    let migrate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("migrate")
            .env("HERALD_DATABASE__URL", &url)
            .env(
                "HERALD_SECRET_KEY",
                "migrate-test-secret-migrate-test-secret-01",
            )
            .env_remove("HERALD_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    if dialect == "sqlite" {
        let made = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(made).await.unwrap();
        old.run(&pool).await.unwrap();
        sqlx::query(ROWS).execute(&pool).await.unwrap();
        // Before: `cancelled` is refused.
        assert_eq!(check!(&pool), (7, false, false));
        pool.close().await;
        migrate();
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        assert_eq!(check!(&pool), (7, true, false));
        let whole: (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(whole.0, "ok");
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        old.run(&pool).await.unwrap();
        sqlx::query(ROWS).execute(&pool).await.unwrap();
        assert_eq!(check!(&pool), (7, false, false));
        pool.close().await;
        migrate();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        assert_eq!(check!(&pool), (7, true, false));
    }
}
both_backends!(an_older_ledger_learns_cancelled_in_place);

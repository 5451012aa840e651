//! Digests end to end: schedules, the scheduler tick, per-reader rendering, the delivery
//! ledger under faults, and exactly-once across ticks and instances.

mod common;
use chrono::Duration;
use common::{Backend, Behaviour, Spawn, TestApp};

async fn newsroom(app: &TestApp) {
    app.add_section("wmd", "Weapons of Mass Destruction (WMD)")
        .await;
    app.add_section("cyber", "Cyber").await;
    app.reader("wmd-only@example.com", &["wmd"]).await;
    app.reader("cyber-only@example.com", &["cyber"]).await;
    app.reader("both@example.com", &["wmd", "cyber"]).await;
}

/// Count how often `needle` occurs.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

async fn the_digest_story(backend: Backend) {
    // The look comes from config, without a rebuild.
    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("site.accent_color", "#8a1c1c")
            .set("site.logo_url", "https://news.example.org/logo.png")
            .set("mail.list_help", "https://news.example.org/newsletter/help"),
    )
    .await;
    newsroom(&app).await;
    app.services
        .digests
        .add_schedule(
            "morning",
            "0 7 * * *",
            &["wmd".into(), "cyber".into()],
            None,
            None,
            None,
        )
        .await
        .unwrap();
    app.add_article(
        "wmd",
        "Lavrov Says Russia Targeting Only Terrorists in Syria",
        "https://news.example.org/wmd/lavrov",
        "<p>Lavrov sought to <b>soften</b> disagreements.</p>",
    )
    .await;
    app.add_article(
        "cyber",
        "Pentagon Weighs Active Defence",
        "https://news.example.org/cyber/defence",
        "Rules for intrusions.",
    )
    .await;
    // One story published in both sections.
    app.add_article(
        "wmd",
        "Syria Strikes and Cyber Warfare",
        "https://news.example.org/shared/syria-cyber",
        "In two sections.",
    )
    .await;
    app.add_article(
        "cyber",
        "Syria Strikes and Cyber Warfare",
        "https://news.example.org/shared/syria-cyber",
        "In two sections.",
    )
    .await;

    // Not due before 07:00.
    assert!(app.tick().await.is_empty());
    app.set_time(2026, 3, 2, 7, 0, 0);
    let made = app.tick().await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].issue.send_count, 3);
    assert_eq!(made[0].issue.article_count, 4);
    assert_eq!(app.deliver().await, 3);

    let wmd = app.smtp().last_to("wmd-only@example.com").unwrap();
    let cyber = app.smtp().last_to("cyber-only@example.com").unwrap();
    let both = app.smtp().last_to("both@example.com").unwrap();
    for (mail, yes, no) in [
        (
            &wmd,
            vec!["Lavrov Says", "Syria Strikes"],
            vec!["Pentagon Weighs"],
        ),
        (
            &cyber,
            vec!["Pentagon Weighs", "Syria Strikes"],
            vec!["Lavrov Says"],
        ),
        (
            &both,
            vec!["Lavrov Says", "Pentagon Weighs", "Syria Strikes"],
            vec![],
        ),
    ] {
        let (text, html) = (mail.text(), mail.html());
        let html = without_preheader(html);
        for t in &yes {
            assert_eq!(count(&text, t), 1, "{t} once in the text part:\n{text}");
            assert_eq!(count(&html, t), 1, "{t} once in the HTML part");
        }
        for t in &no {
            assert!(
                !text.contains(t) && !html.contains(t),
                "{t} must not be there"
            );
        }
        assert!(text.contains("1 Example Street") && html.contains("1 Example Street"));
        assert!(text.contains("/unsubscribe/") && text.contains("/preferences/"));
        // At the top as well as in the footer, in both parts (as the README says).
        let top: String = text.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(
            top.contains("Unsubscribe: http") && top.contains("Your sections: http"),
            "{top}"
        );
        // The subject names the reader's own sections, not every section of the schedule.
        let subject = mail.subject();
        let (has_wmd, has_cyber) = (
            yes.contains(&"Lavrov Says"),
            yes.contains(&"Pentagon Weighs"),
        );
        let expected = match (has_wmd, has_cyber) {
            (true, true) => "Herald News: Cyber, Weapons of Mass Destruction (WMD) — 2 March 2026",
            (true, false) => "Herald News: Weapons of Mass Destruction (WMD) — 2 March 2026",
            _ => "Herald News: Cyber — 2 March 2026",
        };
        assert_eq!(subject, expected);
        for h in [
            "Message-ID",
            "Date",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "Auto-Submitted",
        ] {
            assert!(mail.header(h).is_some(), "missing {h}");
        }
        // What mailbox providers are told about list mail.
        assert_eq!(mail.header("Precedence").as_deref(), Some("bulk"));
        let feedback = mail.header("Feedback-ID").unwrap();
        assert!(
            feedback.starts_with(&format!("{}:morning:", made[0].issue.id)),
            "{feedback}"
        );
        assert_eq!(
            mail.header("List-Subscribe"),
            Some(format!("<{}/subscribe>", app.base))
        );
        assert_eq!(
            mail.header("List-Archive"),
            Some(format!("<{}/archive/morning>", app.base))
        );
        assert_eq!(
            mail.header("List-Help").as_deref(),
            Some("<https://news.example.org/newsletter/help>")
        );
        assert!(mail.parsed().date().is_some(), "Date parses");
        assert!(
            mail.header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative")
        );
    }
    // Grouped by section, in both parts: the reader of both sees both headings.
    let text = both.text();
    let (c, w) = (
        text.find("== Cyber ==").unwrap(),
        text.find("== Weapons of Mass Destruction (WMD) ==")
            .unwrap(),
    );
    assert!(c < text.find("Pentagon Weighs").unwrap() && text.find("Pentagon Weighs").unwrap() < w);
    assert!(w < text.find("Lavrov Says").unwrap());
    let html = without_preheader(both.html());
    let pos = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in HTML"))
    };
    assert!(pos(">Cyber</h2>") < pos("Pentagon Weighs"));
    assert!(pos("Pentagon Weighs") < pos(">Weapons of Mass Destruction (WMD)</h2>"));
    assert!(pos(">Weapons of Mass Destruction (WMD)</h2>") < pos("Lavrov Says"));
    assert!(html.contains("#8a1c1c"));
    assert!(
        html.contains(r#"<img src="https://news.example.org/logo.png" alt="Herald News" width="200" height="48""#),
        "the logo has its alt text and size"
    );
    assert!(
        both.html().contains("<b>soften</b>"),
        "safe HTML kept in the HTML part"
    );
    assert!(
        text.contains("Lavrov sought to soften disagreements."),
        "plain text in the text part"
    );

    // The RFC 8058 POST from the header stops the next digest.
    let url = wmd.one_click_url();
    assert_eq!(
        app.post(&url, "List-Unsubscribe=One-Click").await.status(),
        200
    );

    app.add_article(
        "wmd",
        "Iran Deal Inspections Begin",
        "https://news.example.org/wmd/iran",
        "Inspectors arrive.",
    )
    .await;
    app.set_time(2026, 3, 3, 7, 0, 0);
    let made = app.tick().await;
    assert_eq!(
        made[0].issue.article_count, 1,
        "only what arrived since the last issue"
    );
    assert_eq!(
        made[0].issue.send_count, 1,
        "only the reader of both; wmd-only left"
    );
    app.deliver().await;
    assert_eq!(app.smtp().to("wmd-only@example.com").len(), 1);
    let again = app.smtp().last_to("both@example.com").unwrap();
    assert!(again.text().contains("Iran Deal") && !again.text().contains("Lavrov"));
    assert_ne!(again.message_id(), both.message_id());

    // No new articles: recorded as skipped, nothing sent.
    let before = app.smtp().count();
    app.set_time(2026, 3, 4, 7, 0, 0);
    let made = app.tick().await;
    assert_eq!(made[0].issue.status.as_str(), "skipped");
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.smtp().count(), before);
}
both_backends!(the_digest_story);

async fn one_tick_one_issue(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    newsroom(&app).await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.set_time(2026, 3, 2, 7, 0, 30);

    // A second instance on the same database, sending to the same SMTP server.
    let mut spec = Spawn::new(backend);
    spec.db_url = Some(app.db_url.clone());
    spec.smtp_port = Some(app.smtp().port);
    let other = TestApp::spawn_with(spec).await;
    other.clock.set(app.clock.now());

    let (a, b) = tokio::join!(app.tick(), other.tick());
    assert_eq!(a.len() + b.len(), 1, "exactly one instance made the issue");
    // The same tick again, from either instance: nothing new.
    assert!(app.tick().await.is_empty());
    assert!(other.tick().await.is_empty());
    let (x, y) = tokio::join!(app.deliver(), other.deliver());
    assert_eq!(x + y, 2);
    assert_eq!(app.smtp().to("wmd-only@example.com").len(), 1);
    assert_eq!(app.smtp().to("both@example.com").len(), 1);
    assert_eq!(app.smtp().count(), 2);
    let issues = app.services.store.list_issues(None, 10).await.unwrap();
    assert_eq!(issues.len(), 1);
}
both_backends!(one_tick_one_issue);

async fn downtime_makes_one_catch_up_or_none(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("digests.max_lateness", "6h")).await;
    newsroom(&app).await;
    app.add_schedule("hourly", "0 * * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    // Down from 06:00 to 09:30: the 07:00, 08:00 and 09:00 ticks are missed.
    app.set_time(2026, 3, 2, 9, 30, 0);
    let made = app.tick().await;
    assert_eq!(made.len(), 1, "one catch-up issue, not three");
    assert_eq!(app.tick().await.len(), 0);
    app.deliver().await;
    assert_eq!(app.smtp().to("wmd-only@example.com").len(), 1);

    // Down for two days: the late tick is skipped, not sent stale; its article waits.
    app.add_article("wmd", "B", "https://news.example.org/b", "")
        .await;
    app.set_time(2026, 3, 4, 12, 30, 0);
    let made = app.tick().await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].issue.status.as_str(), "skipped");
    app.deliver().await;
    assert_eq!(
        app.smtp().to("wmd-only@example.com").len(),
        1,
        "nothing stale sent"
    );
    app.set_time(2026, 3, 4, 13, 0, 0);
    let made = app.tick().await;
    assert_eq!(
        made[0].issue.article_count, 1,
        "B goes out with the next issue"
    );
    app.deliver().await;
    assert!(
        app.smtp()
            .last_to("wmd-only@example.com")
            .unwrap()
            .text()
            .contains("\nB\n")
    );
}
both_backends!(downtime_makes_one_catch_up_or_none);

async fn setup_issue(app: &TestApp) {
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    assert_eq!(app.tick().await.len(), 1);
}

async fn send_of(app: &TestApp, email: &str) -> herald::store::SendRecord {
    let x = app
        .services
        .subs
        .export_subscriber(email)
        .await
        .unwrap()
        .unwrap();
    x.sends
        .into_iter()
        .find(|s| s.kind.as_str() == "digest")
        .unwrap()
}

async fn temporary_failure_then_success(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    setup_issue(&app).await;
    app.smtp().set_behaviour(Behaviour {
        fail_first: Some((1, 451, "4.3.0 try again later".into())),
        ..Default::default()
    });
    app.deliver().await;
    let s = send_of(&app, "r@example.com").await;
    assert_eq!(s.status.as_str(), "retrying");
    assert!(
        s.last_reply.as_deref().unwrap_or("").contains("451"),
        "{:?}",
        s.last_reply
    );
    assert_eq!(app.smtp().count(), 0);
    app.clock.advance(Duration::minutes(2));
    app.deliver().await;
    let s = send_of(&app, "r@example.com").await;
    assert_eq!((s.status.as_str(), s.attempts), ("sent", 2));
    assert_eq!(app.smtp().to("r@example.com").len(), 1);
}
both_backends!(temporary_failure_then_success);

async fn permanent_failure_is_not_retried(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    setup_issue(&app).await;
    app.smtp().set_behaviour(Behaviour {
        reject_rcpt: Some((
            "r@example.com".into(),
            550,
            "5.1.1 <r@example.com>: user unknown".into(),
        )),
        ..Default::default()
    });
    app.deliver().await;
    let s = send_of(&app, "r@example.com").await;
    assert_eq!(s.status.as_str(), "bounced");
    assert!(s.last_reply.unwrap().contains("5.1.1"));
    app.clock.advance(Duration::days(1));
    assert_eq!(app.deliver().await, 0, "no retry");
    assert_eq!(send_of(&app, "r@example.com").await.attempts, 1);
    // 5.1.x suppresses the address.
    assert_eq!(
        app.subscriber_status("r@example.com").await.as_deref(),
        Some("bounced")
    );
    assert!(
        app.services
            .store
            .is_suppressed(&herald::domain::sha256_hex("r@example.com"))
            .await
            .unwrap()
    );
}
both_backends!(permanent_failure_is_not_retried);

async fn other_5xx_fails_without_suppression(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    setup_issue(&app).await;
    app.smtp().set_behaviour(Behaviour {
        fail_first: Some((1, 554, "5.7.1 message refused".into())),
        ..Default::default()
    });
    app.deliver().await;
    assert_eq!(
        send_of(&app, "r@example.com").await.status.as_str(),
        "failed"
    );
    assert_eq!(
        app.subscriber_status("r@example.com").await.as_deref(),
        Some("active")
    );
    // The operator retries the failed sends of the issue.
    let issue = app.services.store.list_issues(None, 1).await.unwrap()[0].id;
    assert_eq!(
        app.services
            .store
            .requeue_failed_sends(issue, app.clock.now())
            .await
            .unwrap(),
        1
    );
    app.deliver().await;
    assert_eq!(send_of(&app, "r@example.com").await.status.as_str(), "sent");
}
both_backends!(other_5xx_fails_without_suppression);

async fn dropped_after_data_is_retried_with_the_same_message_id(backend: Backend) {
    let raw = common::smtp::RawSmtp::start(1);
    let app = TestApp::spawn_with(
        Spawn::new(backend).set("mail.url", &format!("smtp://127.0.0.1:{}", raw.port)),
    )
    .await;
    setup_issue(&app).await;
    let queued_id = send_of(&app, "r@example.com").await.message_id;
    app.deliver().await;
    let s = send_of(&app, "r@example.com").await;
    assert_eq!(s.status.as_str(), "retrying", "{:?}", s.last_reply);
    app.clock.advance(Duration::minutes(2));
    app.deliver().await;
    let s = send_of(&app, "r@example.com").await;
    assert_eq!((s.status.as_str(), s.attempts), ("sent", 2));
    let got = raw.all();
    assert_eq!(got.len(), 1);
    assert_eq!(
        format!("<{}>", got[0].message_id()),
        queued_id,
        "same Message-ID on the resend"
    );
}
both_backends!(dropped_after_data_is_retried_with_the_same_message_id);

async fn a_dead_worker_loses_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    for i in 0..5 {
        app.reader(&format!("r{i}@example.com"), &["wmd"]).await;
    }
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    // A worker claims three sends and dies before recording anything.
    let now = app.clock.now();
    let dead = herald::store::LeaseHolder {
        owner: "dead-worker".into(),
        instance: "gone".into(),
    };
    let claimed = app
        .services
        .store
        .claim_sends(&dead, now, now + Duration::minutes(5), 3)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        app.deliver().await,
        2,
        "the others go out; the claimed ones wait for the lease"
    );
    app.clock.advance(Duration::minutes(6));
    assert_eq!(app.deliver().await, 3, "the lease expired: taken over");
    for i in 0..5 {
        assert_eq!(app.smtp().to(&format!("r{i}@example.com")).len(), 1);
    }
    // The dead worker cannot overwrite the outcome afterwards.
    let late = herald::store::SendResult {
        send_id: claimed[0].id,
        lease_owner: dead.owner.clone(),
        outcome: herald::store::SendOutcome::Failed {
            reply: "late".into(),
        },
    };
    app.services
        .store
        .complete_sends(&[late], app.clock.now())
        .await
        .unwrap();
    let issue = app.services.store.list_issues(None, 1).await.unwrap()[0].id;
    let counts = app.services.store.issue_status_counts(issue).await.unwrap();
    assert_eq!(counts, vec![("sent".to_string(), 5)]);
}
both_backends!(a_dead_worker_loses_nothing);

async fn bodies_and_headers_arrive_intact(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    let long = "word ".repeat(400);
    app.add_article(
        "wmd",
        ".NET flaw: a title that starts with a dot",
        "https://news.example.org/dot",
        &long,
    )
    .await;
    app.add_article(
        "wmd",
        "Breaking\r\nBcc: victim@example.org",
        "https://news.example.org/crlf",
        "x",
    )
    .await;
    app.add_article(
        "wmd",
        "=?utf-8?q?=0D=0ABcc:_victim2@example.org?=",
        "https://news.example.org/ew",
        "y",
    )
    .await;
    // Section names and subjects with line breaks are refused outright.
    assert!(
        herald::articles::add_section(
            app.services.store.as_ref(),
            "evil",
            "Evil\r\nBcc: x@example.org",
            "",
            None,
            app.clock.now()
        )
        .await
        .is_err()
    );
    assert!(
        app.services
            .digests
            .add_schedule(
                "bad",
                "0 7 * * *",
                &["wmd".into()],
                None,
                Some("Hi\r\nBcc: x@example.org"),
                None,
            )
            .await
            .is_err()
    );
    app.services
        .digests
        .add_schedule(
            "m",
            "0 7 * * *",
            &["wmd".into()],
            None,
            Some("=?utf-8?q?Hello=0D=0ABcc:_victim3@example.org?="),
            None,
        )
        .await
        .unwrap();
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let all = app.smtp().all();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(
        m.to,
        vec!["r@example.com".to_string()],
        "no extra recipients"
    );
    assert!(m.parsed().header_raw("Bcc").is_none());
    let text = m.text();
    assert!(
        text.contains("\n.NET flaw: a title that starts with a dot\n"),
        "{text}"
    );
    // 2,000 characters of summary arrive whole, wrapped at 78 columns (the encoder's own
    // long-line handling is checked in src/delivery/encode.rs).
    assert_eq!(
        text.matches("word").count(),
        long.matches("word").count(),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| l.chars().count() <= 78 || l.contains("http"))
    );
    assert!(
        text.contains("Breaking Bcc: victim@example.org"),
        "CR/LF folded into the title"
    );
}
both_backends!(bodies_and_headers_arrive_intact);

async fn feeds_import_and_reimport(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    let store = app.services.store.as_ref();
    let now = app.clock.now();
    let rss = include_bytes!("fixtures/wmd.rss.xml");
    let atom = include_bytes!("fixtures/cyber.atom.xml");
    let json = include_bytes!("fixtures/shared.feed.json");
    let import = |slug: &'static str, bytes: &'static [u8]| async move {
        let o = herald::articles::import_feed(store, slug, bytes, None, now)
            .await
            .unwrap();
        (
            o.report.items,
            o.report.skipped(),
            o.written.added,
            o.written.updated,
        )
    };
    assert_eq!(
        import("wmd", rss).await,
        (3, 1, 2, 0),
        "the link-less item is skipped"
    );
    assert_eq!(
        import("wmd", rss).await,
        (3, 1, 0, 0),
        "re-import adds nothing"
    );
    assert_eq!(import("cyber", atom).await, (2, 0, 2, 0));
    assert_eq!(import("wmd", json).await, (2, 0, 2, 0));
    let wmd = herald::articles::section_by_slug(store, "wmd")
        .await
        .unwrap();
    let list = store.list_articles(Some(wmd.id), 100).await.unwrap();
    let lavrov = list.iter().find(|a| a.title.starts_with("Lavrov")).unwrap();
    assert_eq!(lavrov.guid, "wmd-2015-10-01-lavrov");
    assert_eq!(lavrov.author.as_deref(), Some("Pamela Dockins"));
    assert!(lavrov.published_at.is_some());
    assert!(
        lavrov.summary_html.contains("<em>")
            && !lavrov.summary_html.contains("script")
            && !lavrov.summary_html.contains("tracker")
    );
    assert!(!lavrov.summary_text.contains('<'));
    let kerry = list.iter().find(|a| a.title.starts_with("Kerry")).unwrap();
    assert_eq!(
        kerry.guid, "https://news.example.org/wmd/kerry-talks",
        "no guid: keyed by link"
    );
    assert_eq!(
        kerry.title,
        "Kerry: \"Not Yet Where We Need to Be\" & Talks Continue"
    );
    assert!(kerry.published_at.is_none(), "missing dates stay missing");

    let before = store.list_articles(None, 1000).await.unwrap().len();
    let broken = include_bytes!("fixtures/not-a-feed.html");
    assert!(
        herald::articles::import_feed(store, "wmd", broken, None, now)
            .await
            .is_err()
    );
    let truncated = &rss[..rss.len() / 2];
    assert!(
        herald::articles::import_feed(store, "wmd", truncated, None, now)
            .await
            .is_err()
    );
    assert_eq!(
        store.list_articles(None, 1000).await.unwrap().len(),
        before,
        "a broken feed changes nothing"
    );
}
both_backends!(feeds_import_and_reimport);

async fn api_tokens_and_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    let store = app.services.store.as_ref();
    let staff =
        herald::access::issue_token(store, "cms", herald::store::Role::Staff, app.clock.now())
            .await
            .unwrap();
    let ops = herald::access::issue_token(
        store,
        "grafana",
        herald::store::Role::Operator,
        app.clock.now(),
    )
    .await
    .unwrap();
    // Only the hash is kept.
    let stored = app.dump_table("SELECT token_hash FROM api_tokens").await;
    assert!(!stored.contains(&staff) && !stored.contains(&ops));

    let url = format!("{}/api/v1/articles", app.base);
    let body = serde_json::json!({"section": "wmd", "title": "Via API", "url": "https://news.example.org/api"});
    let post = |token: Option<String>| {
        let mut r = app.http.post(&url).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("hrld_wrong".into())).await.unwrap().status(), 401);
    assert_eq!(
        post(Some(ops.clone())).await.unwrap().status(),
        403,
        "operator is read-only"
    );
    assert_eq!(post(Some(staff.clone())).await.unwrap().status(), 201);
    assert_eq!(
        post(Some(staff.clone())).await.unwrap().status(),
        200,
        "same article again: no duplicate"
    );
    let list: serde_json::Value = app
        .http
        .get(&url)
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let get = |path: &str| {
        app.http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&ops)
            .send()
    };
    assert_eq!(get("/api/v1/issues").await.unwrap().status(), 200);
    assert_eq!(
        get("/api/v1/sends?email=R%40Example.com")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/v1/sends?email=not-an-address")
            .await
            .unwrap()
            .status(),
        422
    );
    // Query values are checked as the CLI checks its flags, with the allowed values named.
    for (path, says) in [
        ("/api/v1/sends?status=bogus", "queued"),
        ("/api/v1/sends?status=sent&stauts=x", "stauts"),
        ("/api/v1/sends?limit=many", "limit"),
        ("/api/v1/issues?limit=-x", "limit"),
        ("/api/v1/articles?sektion=wmd", "sektion"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 422, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{path}: {msg}");
    }
    let sent: serde_json::Value = get("/api/v1/sends?status=sent")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(sent.is_array(), "{sent}");

    let bad = serde_json::json!({"section": "nosuch", "title": "x", "url": "https://e.example/"});
    let r = app
        .http
        .post(&url)
        .bearer_auth(&staff)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let bad_cron = serde_json::json!({"name": "x", "cron": "0 7 * *", "sections": ["wmd"]});
    let r = app
        .api_post("/api/v1/schedules", &staff, Some(&bad_cron))
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("invalid cron expression"));
    let good = serde_json::json!({"name": "m", "cron": "0 7 * * 1-5", "sections": ["wmd"], "timezone": "Europe/Berlin"});
    assert_eq!(
        app.api_post("/api/v1/schedules", &staff, Some(&good))
            .await
            .status(),
        201
    );
    let m = app
        .services
        .store
        .schedule_by_name("m")
        .await
        .unwrap()
        .unwrap();
    assert!(m.images, "pictures on by default");
    let plain = serde_json::json!({"name": "plain", "cron": "0 7 * * 1-5", "sections": ["wmd"], "images": false});
    assert_eq!(
        app.api_post("/api/v1/schedules", &staff, Some(&plain))
            .await
            .status(),
        201
    );
    let plain = app
        .services
        .store
        .schedule_by_name("plain")
        .await
        .unwrap()
        .unwrap();
    assert!(!plain.images);
    assert_eq!(
        app.api_post("/api/v1/schedules/m/pause", &staff, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.api_post("/api/v1/schedules/nope/pause", &staff, None)
            .await
            .status(),
        404
    );

    // A revoked token stops working.
    store
        .revoke_api_token("cms", app.clock.now())
        .await
        .unwrap();
    assert_eq!(post(Some(staff)).await.unwrap().status(), 401);
}
both_backends!(api_tokens_and_roles);

async fn paused_schedules_do_not_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    newsroom(&app).await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.services.digests.pause("m").await.unwrap();
    app.set_time(2026, 3, 2, 7, 0, 0);
    assert!(app.tick().await.is_empty());
    app.set_time(2026, 3, 2, 8, 0, 0);
    app.services.digests.resume("m").await.unwrap();
    assert!(
        app.tick().await.is_empty(),
        "resuming does not send the missed tick"
    );
    app.set_time(2026, 3, 3, 7, 0, 0);
    assert_eq!(app.tick().await.len(), 1);
    let preview = app
        .services
        .digests
        .preview("m", Some("both@example.com"))
        .await;
    assert!(
        matches!(
            preview,
            Err(herald::digests::DigestError::NothingToPreview(_))
        ),
        "nothing new after the issue"
    );
}
both_backends!(paused_schedules_do_not_run);

async fn feed_polling_is_conditional_and_survives_errors(backend: Backend) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let broken = Arc::new(AtomicBool::new(false));
    let (seen2, broken2) = (seen.clone(), broken.clone());
    let feed = axum::Router::new().route(
        "/wmd.xml",
        axum::routing::get(move |headers: HeaderMap| {
            let (seen, broken) = (seen2.clone(), broken2.clone());
            async move {
                let inm = headers
                    .get("if-none-match")
                    .map(|v| v.to_str().unwrap().to_string());
                seen.lock().unwrap().push(inm.clone());
                if broken.load(Ordering::SeqCst) {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("etag", "\"v1\"")],
                        Vec::new(),
                    );
                }
                if inm.as_deref() == Some("\"v1\"") {
                    return (StatusCode::NOT_MODIFIED, [("etag", "\"v1\"")], Vec::new());
                }
                (
                    StatusCode::OK,
                    [("etag", "\"v1\"")],
                    include_bytes!("fixtures/wmd.rss.xml").to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wmd.xml", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, feed).await });

    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    let store = app.services.store.as_ref();
    herald::articles::set_feed(store, "wmd", Some(&url))
        .await
        .unwrap();
    assert_eq!(app.services.feeds.poll_all().await.unwrap(), 2);
    let said = store.section_feeds().await.unwrap()[0].feed_report.clone();
    assert_eq!(
        said.as_deref(),
        Some("3 items, 1 skipped (1 with no http(s) link), 2 new, 0 updated"),
        "what the poll found is kept for `sections list`"
    );
    assert_eq!(app.services.feeds.poll_all().await.unwrap(), 0);
    assert_eq!(
        seen.lock().unwrap()[1].as_deref(),
        Some("\"v1\""),
        "conditional GET"
    );

    broken.store(true, Ordering::SeqCst);
    assert_eq!(app.services.feeds.poll_all().await.unwrap(), 0);
    let state = store
        .section_feeds()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.slug == "wmd")
        .unwrap();
    assert!(
        state.feed_error.as_deref().unwrap().contains("500"),
        "{state:?}"
    );
    assert_eq!(
        store.list_articles(None, 100).await.unwrap().len(),
        2,
        "nothing lost or half-imported"
    );

    broken.store(false, Ordering::SeqCst);
    app.services.feeds.poll_all().await.unwrap();
    let state = store
        .section_feeds()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.slug == "wmd")
        .unwrap();
    assert!(state.feed_error.is_none());
    // A bad feed URL is refused up front.
    assert!(
        herald::articles::set_feed(store, "wmd", Some("file:///etc/passwd"))
            .await
            .is_err()
    );
}
both_backends!(feed_polling_is_conditional_and_survives_errors);

/// Feeds as a feed reader reads them, seen in the mail: a windows-1252 feed without an
/// XML declaration, named only by its HTTP charset; a feed sent gzip-compressed (herald
/// asks for gzip); titles with character references and Windows-1252 numeric references.
async fn feeds_arrive_in_the_mail_as_a_feed_reader_shows_them(backend: Backend) {
    use axum::http::HeaderMap;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let cp1252_feed = "<rss version=\"2.0\"><channel><title>c</title><link>https://c.example/</link>\
        <item><title>Caf\u{e9} \u{2014} \u{201c}na\u{ef}ve\u{201d}</title><link>https://c.example/1</link>\
        <description>Stra\u{df}e &amp;amp; Br\u{fc}cke</description></item></channel></rss>";
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(cp1252_feed);
    let cp1252 = cp1252.into_owned();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(include_bytes!(
        "fixtures/feeds/windows-1252-references.rss.xml"
    ))
    .unwrap();
    let gzipped = gz.finish().unwrap();
    let accept: Arc<Mutex<Option<String>>> = Arc::default();
    let accept2 = accept.clone();
    let feeds = axum::Router::new()
        .route(
            "/cp1252.xml",
            axum::routing::get(move || {
                let body = cp1252.clone();
                async move {
                    (
                        [("content-type", "application/rss+xml; charset=windows-1252")],
                        body,
                    )
                }
            }),
        )
        .route(
            "/gz.xml",
            axum::routing::get(move |headers: HeaderMap| {
                let (body, accept) = (gzipped.clone(), accept2.clone());
                async move {
                    *accept.lock().unwrap() = headers
                        .get("accept-encoding")
                        .map(|v| v.to_str().unwrap().to_string());
                    (
                        [
                            ("content-type", "application/rss+xml"),
                            ("content-encoding", "gzip"),
                        ],
                        body,
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, feeds).await });

    let app = TestApp::spawn(backend).await;
    app.add_section("cafe", "Cafe").await;
    app.add_section("quotes", "Quotes").await;
    let store = app.services.store.as_ref();
    herald::articles::set_feed(store, "cafe", Some(&format!("http://{at}/cp1252.xml")))
        .await
        .unwrap();
    herald::articles::set_feed(store, "quotes", Some(&format!("http://{at}/gz.xml")))
        .await
        .unwrap();
    assert_eq!(app.services.feeds.poll_all().await.unwrap(), 3);
    assert!(
        accept
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|a| a.contains("gzip")),
        "gzip is asked for: {:?}",
        accept.lock().unwrap()
    );
    app.reader("reader@example.com", &["cafe", "quotes"]).await;
    app.add_schedule("m", "0 7 * * *", &["cafe", "quotes"])
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let mail = app.smtp().last_to("reader@example.com").expect("a digest");
    let (text, html) = (mail.text(), mail.html());
    for title in [
        "Café — “naïve”",
        "don’t “quote” €5",
        "Café society — a review",
    ] {
        assert!(text.contains(title), "{title:?} in the text part:\n{text}");
        assert!(html.contains(title), "{title:?} in the HTML part");
    }
    assert!(text.contains("Straße & Brücke"), "{text}");
    assert!(!text.contains("&eacute;") && !text.contains("&#"), "{text}");
}
both_backends!(feeds_arrive_in_the_mail_as_a_feed_reader_shows_them);

/// An issue fixes its readers at the tick; their `sends` rows are written afterwards in
/// chunks, each its own transaction. Readers who join after the tick are not in it, readers
/// who leave before their chunk get nothing, two instances filling at once write one row per
/// reader, and the issue counts as unsettled until the last chunk is in.
async fn an_issue_is_written_in_chunks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    for i in 0..12 {
        app.reader(&format!("r{i:02}@example.com"), &["wmd"]).await;
    }
    app.reader("cyber-only@example.com", &["cyber"]).await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    let made = app.services.digests.run_tick().await.unwrap();
    assert_eq!(made.len(), 1);
    let issue = made[0].issue.clone();
    assert!(issue.filling);
    assert_eq!(issue.send_count, 0);
    let store = &app.services.store;
    assert_eq!(store.issues_filling().await.unwrap(), vec![issue.id]);
    assert_eq!(
        store.unsettled_sends_of_issue(issue.id).await.unwrap(),
        1,
        "an issue being written is not settled"
    );

    // After the tick: one reader joins, one leaves before their chunk is written.
    app.reader("late@example.com", &["wmd"]).await;
    app.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'r09@example.com'")
        .await;

    let now = app.clock.now();
    let step = store.fill_issue(issue.id, 5, now).await.unwrap();
    assert_eq!((step.written, step.done), (5, false));
    // The first chunk can go out before the rest is written.
    assert_eq!(app.deliver().await, 5);
    // Two instances write the rest at once, in chunks of 2.
    let fill_all = || async {
        loop {
            if store.fill_issue(issue.id, 2, now).await.unwrap().done {
                break;
            }
        }
    };
    tokio::join!(fill_all(), fill_all());
    assert!(store.issues_filling().await.unwrap().is_empty());
    let issue = store.issue(issue.id).await.unwrap().unwrap();
    assert!(!issue.filling);
    assert_eq!(issue.send_count, 11, "12 readers at the tick, one left");
    app.deliver().await;
    assert_eq!(store.unsettled_sends_of_issue(issue.id).await.unwrap(), 0);
    for i in 0..12 {
        let to = format!("r{i:02}@example.com");
        let want = usize::from(i != 9);
        assert_eq!(app.smtp().to(&to).len(), want, "{to}");
    }
    assert!(app.smtp().to("late@example.com").is_empty());
    assert!(app.smtp().to("cyber-only@example.com").is_empty());
    assert_eq!(app.smtp().count(), 11);
    // Nothing is left to write: a further fill does nothing.
    let step = store.fill_issue(issue.id, 5, now).await.unwrap();
    assert_eq!((step.written, step.done), (0, true));
}
both_backends!(an_issue_is_written_in_chunks);

/// Feed items reach the reader as a feed reader shows them: text titles keep their angle
/// brackets (escaped in the HTML part, not swallowed as tags), relative links arrive
/// absolute, bylines are names.
async fn feed_items_arrive_faithfully_in_the_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    let store = app.services.store.as_ref();
    let now = app.clock.now();
    for fixture in [
        &include_bytes!("fixtures/feeds/text_titles.rss.xml")[..],
        include_bytes!("fixtures/feeds/relative_links.rss.xml"),
        include_bytes!("fixtures/feeds/authors.rss.xml"),
    ] {
        herald::articles::import_feed(store, "wmd", fixture, None, now)
            .await
            .unwrap();
    }
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let all = app.smtp().all();
    assert_eq!(all.len(), 1);
    let (text, html) = (all[0].text(), all[0].html());
    // Escaped either way askama or ammonia writes it.
    let html = html.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
    assert!(
        text.contains("Vector<T> and Option<Box<dyn Error>> in Rust"),
        "{text}"
    );
    assert!(
        html.contains("Vector&lt;T&gt; and Option&lt;Box&lt;dyn Error&gt;&gt; in Rust"),
        "{html}"
    );
    assert!(text.contains("https://rel.example.org/r/1"), "{text}");
    assert!(
        html.contains(r#"href="https://rel.example.org/r/1""#)
            && html.contains(r#"href="https://rel.example.org/r/1/photos""#)
            && !html.contains(r#"href="/r/"#),
        "{html}"
    );
    assert!(
        text.contains("Jane Doe") && !text.contains("(Jane Doe)"),
        "{text}"
    );
    assert!(!text.contains("Script link") && !html.contains("javascript:"));
}
both_backends!(feed_items_arrive_faithfully_in_the_mail);

/// An item that comes again with its guid and a changed title corrects the stored article
/// until an issue carries it; after that the article stays as it was mailed.
async fn corrected_items_update_unmailed_articles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    let store = app.services.store.as_ref();
    let now = app.clock.now();
    let feed = |title: &str| {
        format!(
            r#"<rss version="2.0"><channel><title>t</title><link>https://x.example/</link>
<item><title>{title}</title><link>https://x.example/story</link><guid>story-1</guid></item>
</channel></rss>"#
        )
    };
    let import = |doc: String| async move {
        herald::articles::import_feed(store, "wmd", doc.as_bytes(), None, now)
            .await
            .unwrap()
    };
    let o = import(feed("Minister resigns")).await;
    assert_eq!((o.written.added, o.written.updated), (1, 0));
    let o = import(feed("Minister resigns")).await;
    assert_eq!((o.written.added, o.written.updated), (0, 0), "unchanged");
    let o = import(feed("Minister does not resign")).await;
    assert_eq!((o.written.added, o.written.updated), (0, 1), "{o}");
    assert!(o.to_string().ends_with("0 new, 1 updated"), "{o}");

    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    assert!(
        app.smtp().all()[0]
            .text()
            .contains("Minister does not resign")
    );

    let o = import(feed("Minister resigns after all")).await;
    assert_eq!((o.written.added, o.written.updated), (0, 0), "mailed: kept");
    let stored = store.list_articles(None, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].title, "Minister does not resign");
}
both_backends!(corrected_items_update_unmailed_articles);

/// A feed server that never ends its body is cut off at `feeds.max_size`, one that never
/// answers is reported as a timeout; both are recorded on the section and nothing is
/// imported.
async fn endless_and_silent_feeds_are_cut_off(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Endless: a chunked body of 64 kB chunks, forever.
    let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless_url = format!("http://{}/feed.xml", endless.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = endless.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let head = "<rss version=\"2.0\"><channel><title>";
                let _ = c
                    .write_all(format!("{:x}\r\n{head}\r\n", head.len()).as_bytes())
                    .await;
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                while c.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    // Silent: accepts, reads the request, says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/feed.xml", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            held.push(c);
        }
    });

    let app = TestApp::spawn_with(
        Spawn::new(backend)
            .set("feeds.max_size", "2MB")
            .set("feeds.timeout", "2s"),
    )
    .await;
    app.add_section("big", "Big").await;
    app.add_section("quiet", "Quiet").await;
    let store = app.services.store.as_ref();
    herald::articles::set_feed(store, "big", Some(&endless_url))
        .await
        .unwrap();
    herald::articles::set_feed(store, "quiet", Some(&silent_url))
        .await
        .unwrap();
    assert_eq!(app.services.feeds.poll_all().await.unwrap(), 0);
    let feeds = store.section_feeds().await.unwrap();
    let error_of = |slug: &str| {
        feeds
            .iter()
            .find(|f| f.slug == slug)
            .and_then(|f| f.feed_error.clone())
            .unwrap_or_default()
    };
    assert!(
        error_of("big").contains("larger than 2MB (feeds.max_size)"),
        "{}",
        error_of("big")
    );
    assert!(
        error_of("quiet").contains("timed out after 2s (feeds.timeout)"),
        "{}",
        error_of("quiet")
    );
    assert!(store.list_articles(None, 10).await.unwrap().is_empty());
}
both_backends!(endless_and_silent_feeds_are_cut_off);

/// At most `digests.max_articles` per section, newest first, then "and N more in Section"
/// linking to the section's page; the subject names the reader's own sections; the mail
/// says its language, its colour scheme and a preview line.
async fn digests_cap_each_section_and_name_the_readers_sections(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("digests.max_articles", "3")).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    app.reader("r@example.com", &["wmd"]).await;
    let store = app.services.store.as_ref();
    herald::articles::set_page(store, "wmd", Some("https://news.example.org/wmd/"))
        .await
        .unwrap();
    for i in 1..=5 {
        app.clock.advance(Duration::minutes(1));
        app.add_article(
            "wmd",
            &format!("Story {i}"),
            &format!("https://news.example.org/wmd/{i}"),
            "s",
        )
        .await;
    }
    app.add_article("cyber", "Cyber story", "https://news.example.org/c/1", "c")
        .await;
    app.add_schedule("m", "0 7 * * *", &["wmd", "cyber"]).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let all = app.smtp().all();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(
        m.subject(),
        "Herald News: WMD — 2 March 2026",
        "only their sections"
    );
    let (text, html) = (m.text(), m.html());
    for shown in ["Story 5", "Story 4", "Story 3"] {
        assert!(text.contains(shown), "{text}");
    }
    assert!(
        !text.contains("Story 2") && !text.contains("Story 1"),
        "{text}"
    );
    assert!(
        text.contains("and 2 more in WMD: https://news.example.org/wmd/"),
        "{text}"
    );
    assert!(
        html.contains(r#"<a href="https://news.example.org/wmd/""#)
            && html.contains("and 2 more in WMD"),
        "{html}"
    );
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(html.contains(r#"<meta name="color-scheme" content="light">"#));
    let preheader_at = html.find("display:none").expect("a preheader");
    assert!(
        html[preheader_at..].starts_with(
            "display:none;max-height:0;overflow:hidden;mso-hide:all\">Story 5 · Story 4"
        ),
        "{}",
        &html[preheader_at..preheader_at + 120]
    );
}
both_backends!(digests_cap_each_section_and_name_the_readers_sections);

/// A digest's HTML after its hidden preview line (which repeats the first titles).
fn without_preheader(html: String) -> String {
    html.split_once("mso-hide:all\">")
        .and_then(|(_, rest)| rest.split_once("</div>"))
        .map(|(_, body)| body.to_string())
        .unwrap_or(html)
}

/// A worst-case issue (2,000 articles with the longest titles, links and summaries herald
/// takes, in ten sections) still makes an HTML part under Gmail's clip, with the
/// unsubscribe link before the first article, and every article either shown or counted.
async fn a_huge_issue_fits_under_the_clip(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("digests.max_articles", "1000")).await;
    let store = app.services.store.as_ref();
    let mut slugs = Vec::new();
    for s in 0..10 {
        let slug = format!("s{s}");
        app.add_section(&slug, &format!("Section {s}")).await;
        slugs.push(slug);
    }
    let slug_refs: Vec<&str> = slugs.iter().map(String::as_str).collect();
    app.reader("r@example.com", &slug_refs).await;
    let summary = format!("<p>{}</p>", "word ".repeat(395));
    for (s, slug) in slugs.iter().enumerate() {
        let section = herald::articles::section_by_slug(store, slug)
            .await
            .unwrap();
        let articles: Vec<herald::store::NewArticle> = (0..200)
            .map(|i| herald::store::NewArticle {
                guid: format!("{s}-{i}"),
                title: format!("{s}-{i} {}", "T".repeat(490)),
                url: format!("https://news.example.org/{s}/{i}/{}", "p".repeat(900)),
                summary_html: summary.clone(),
                summary_text: summary.clone(),
                author: Some("A".repeat(200)),
                published_at: None,
                image_url: Some(format!(
                    "https://img.example.org/{s}/{i}/{}.jpg",
                    "i".repeat(900)
                )),
            })
            .collect();
        store
            .insert_articles(section.id, &articles, app.clock.now())
            .await
            .unwrap();
    }
    app.add_schedule("m", "0 7 * * *", &slug_refs).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let all = app.smtp().all();
    assert_eq!(all.len(), 1);
    let html = all[0].html();
    assert!(
        html.len() <= herald::digests::HTML_BUDGET,
        "HTML part of {} bytes",
        html.len()
    );
    let unsubscribe = html.find("Unsubscribe").unwrap();
    let first_article = html.find("https://news.example.org/0/").unwrap();
    assert!(
        unsubscribe < first_article,
        "the unsubscribe link comes first too"
    );
    assert!(html.contains("1 Example Street"), "the footer is there");
    // Every article is shown or counted in its section's "and N more".
    let text = all[0].text();
    let shown = text.matches("https://news.example.org/").count();
    let more: usize = text
        .lines()
        .filter_map(|l| l.strip_prefix("… and "))
        .map(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(shown + more, 2_000, "{text}");
    assert!(shown > 0);
}
both_backends!(a_huge_issue_fits_under_the_clip);

/// A feed's pictures are shown as thumbnails with alt text and a fixed size; a schedule can
/// turn them off.
async fn digests_show_pictures_unless_turned_off(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("pics", "Pictures").await;
    app.reader("r@example.com", &["pics"]).await;
    let store = app.services.store.as_ref();
    herald::articles::import_feed(
        store,
        "pics",
        include_bytes!("fixtures/feeds/images.rss.xml"),
        None,
        app.clock.now(),
    )
    .await
    .unwrap();
    app.add_schedule("with", "0 7 * * *", &["pics"]).await;
    app.add_schedule("without", "0 7 * * *", &["pics"]).await;
    app.services
        .digests
        .set_images("without", false)
        .await
        .unwrap();
    assert!(
        app.services
            .digests
            .set_images("nope", false)
            .await
            .is_err()
    );
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let all = app.smtp().all();
    assert_eq!(all.len(), 2);
    let (with, without): (Vec<_>, Vec<_>) = all
        .iter()
        .map(|m| m.html())
        .partition(|h| h.contains("<img"));
    assert_eq!(
        (with.len(), without.len()),
        (1, 1),
        "one digest with pictures, one without"
    );
    let html = &with[0];
    assert!(
        html.contains(r#"<img src="https://cdn.example.org/1-thumb.jpg" alt="Thumbnail" width="120" height="80""#),
        "{html}"
    );
    assert!(html.contains(r#"src="https://cdn.example.org/2.png""#));
    assert!(!html.contains("insecure.example.org") && !html.contains(".mp3"));
}
both_backends!(digests_show_pictures_unless_turned_off);

/// Each digest links its issue in the public archive, which shows every section of the
/// issue and nobody's unsubscribe link; an index per schedule lists the issues. Off with
/// `digests.archive = false`.
async fn issues_are_archived_on_the_web(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    app.reader("r@example.com", &["wmd"]).await;
    app.add_article(
        "wmd",
        "Arms talks resume",
        "https://news.example.org/w/1",
        "w",
    )
    .await;
    app.add_article(
        "cyber",
        "Patch Tuesday",
        "https://news.example.org/c/1",
        "c",
    )
    .await;
    app.add_schedule("morning", "0 7 * * *", &["wmd", "cyber"])
        .await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let mail = &app.smtp().all()[0];
    let link = mail.link_with("/archive/").expect("a View in browser link");
    assert!(link.starts_with(&app.base), "{link}");
    assert!(mail.html().contains(&format!(
        r#"<a href="{link}" style="color:#666">View in browser</a>"#
    )));

    let page = app.get(&link).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Arms talks resume") && html.contains("Patch Tuesday"),
        "{html}"
    );
    assert!(
        !html.contains("/unsubscribe/") && !html.contains("/preferences/"),
        "nobody's links in the archive"
    );
    assert!(html.contains("1 Example Street"));

    let index = app.get("/archive/morning").await;
    assert_eq!(index.status(), 200);
    let index = index.text().await.unwrap();
    assert!(index.contains(&link), "{index}");
    assert!(index.contains("2 March 2026"));

    let id = link.rsplit('/').next().unwrap();
    for missing in [
        format!("/archive/evening/{id}"),
        format!("/archive/morning/0{id}"),
        "/archive/morning/999999".to_string(),
        "/archive/nosuch".to_string(),
    ] {
        assert_eq!(app.get(&missing).await.status(), 404, "{missing}");
    }

    let off = TestApp::spawn_with(Spawn::new(backend).set("digests.archive", "false")).await;
    off.add_section("wmd", "WMD").await;
    off.reader("r@example.com", &["wmd"]).await;
    off.add_article(
        "wmd",
        "Arms talks resume",
        "https://news.example.org/w/1",
        "w",
    )
    .await;
    off.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    off.set_time(2026, 3, 2, 7, 0, 0);
    off.tick().await;
    off.deliver().await;
    let mail = &off.smtp().all()[0];
    assert!(mail.link_with("/archive/").is_none());
    assert!(!mail.html().contains("View in browser"));
    assert_eq!(off.get("/archive/morning").await.status(), 404);
    assert_eq!(off.get("/archive/morning/1").await.status(), 404);
}
both_backends!(issues_are_archived_on_the_web);

/// Every mail a reader gets lays out within a phone's width in a real browser (Debian's
/// chromium through playwright-core, `tests/browser/layout.js`): no sideways scrolling at
/// 390 px, even with a bare confirmation link and long unbroken words in titles and links.
async fn mails_fit_a_phone_screen_in_a_real_browser(backend: Backend) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/layout.js");
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/playwright-core"
    );
    if !common::tool_available("chromium", &["chromium", "--version"])
        || !common::tool_available("node", &["node", "--version"])
        || !common::tool_available(
            "playwright-core (npm install in tests/browser)",
            &["test", "-d", modules],
        )
    {
        return;
    }
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "Weapons of Mass Destruction (WMD)")
        .await;
    let welcome = app
        .subscribe_and_confirm("reader@example.com", &["wmd"])
        .await;
    let confirmation = app
        .smtp()
        .all()
        .into_iter()
        .find(|m| m.link_with("/confirm/").is_some())
        .expect("the confirmation mail");
    let long_word = "Nonproliferationtreatyreviewconference".repeat(4);
    app.add_article(
        "wmd",
        &format!("{long_word} ends"),
        &format!("https://news.example.org/wmd/{long_word}"),
        &format!("<p>See https://news.example.org/{long_word}/{long_word} for more.</p>"),
    )
    .await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let digest = app.smtp().last_to("reader@example.com").unwrap();
    assert!(digest.subject().contains("Weapons"), "{}", digest.subject());

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, mail) in [
        ("confirm", &confirmation),
        ("welcome", &welcome),
        ("digest", &digest),
    ] {
        let path = dir.path().join(format!("{name}.html"));
        std::fs::write(&path, mail.html()).unwrap();
        files.push(path.to_string_lossy().to_string());
    }
    let out = std::process::Command::new("node")
        .arg(script)
        .arg("390")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["scrollWidth"].as_i64() <= v["clientWidth"].as_i64(),
            "wider than the phone: {line}"
        );
        assert_eq!(
            v["clipped"].as_array().map(Vec::len),
            Some(0),
            "words cut off: {line}"
        );
    }
}
both_backends!(mails_fit_a_phone_screen_in_a_real_browser, browser);

/// The archive reads as a publication: the index is titled with its schedule and lists
/// one line per issue with its time (three issues of one day told apart, the date said
/// once); an issue page has its heading, time, sections, the way back to the index and to
/// the signup page, and rel=prev/next to its neighbours; an Atom feed that an independent
/// parser (feed-rs) reads lists them.
async fn the_archive_can_be_browsed_and_followed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    app.add_schedule("morning", "0 7,12,18 * * *", &["wmd"])
        .await;
    for (n, hour) in [7, 12, 18].into_iter().enumerate() {
        app.add_article(
            "wmd",
            &format!("Story {n}"),
            &format!("https://news.example.org/w/{n}"),
            "w",
        )
        .await;
        app.set_time(2026, 3, 2, hour, 0, 0);
        app.tick().await;
        app.deliver().await;
    }
    let ids: Vec<String> = app
        .smtp()
        .all()
        .iter()
        .map(|m| {
            let link = m.link_with("/archive/").unwrap();
            link.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3);
    let index = app.get("/archive/morning").await.text().await.unwrap();
    assert!(
        index.contains("<title>Herald News: morning — past issues"),
        "{index}"
    );
    for (id, time) in ids.iter().zip(["07:00", "12:00", "18:00"]) {
        let line = index
            .lines()
            .find(|l| l.contains(&format!("/archive/morning/{id}\"")))
            .unwrap_or_else(|| panic!("a line for issue {id}: {index}"));
        assert!(
            line.contains(&format!("2 March 2026, {time} UTC")),
            "{line}"
        );
        assert_eq!(line.matches("2 March 2026").count(), 1, "{line}");
        assert!(line.contains(">WMD</a>"), "{line}");
    }
    assert!(index.contains(r#"type="application/atom+xml""#));

    let url = |id: &str| format!("{}/archive/morning/{id}", app.base);
    let middle = app.get(&url(&ids[1])).await.text().await.unwrap();
    assert!(middle.contains("<h1"), "a heading");
    assert!(
        middle.contains(
            r#"<time datetime="2026-03-02T12:00:00+00:00">2 March 2026, 12:00 UTC</time> · WMD"#
        ),
        "{middle}"
    );
    assert!(middle.contains(&format!(r#"<link rel="prev" href="{}">"#, url(&ids[0]))));
    assert!(middle.contains(&format!(r#"<link rel="next" href="{}">"#, url(&ids[2]))));
    assert!(
        middle.contains(&format!(r#"href="{}/archive/morning""#, app.base)),
        "the way back"
    );
    assert!(middle.contains(&format!(r#"href="{}/subscribe""#, app.base)));
    assert!(middle.contains("Join the mailing list"));
    let first = app.get(&url(&ids[0])).await.text().await.unwrap();
    assert!(!first.contains(r#"rel="prev""#) && first.contains(r#"<link rel="next""#));
    let last = app.get(&url(&ids[2])).await.text().await.unwrap();
    assert!(last.contains(r#"<link rel="prev""#) && !last.contains(r#"rel="next""#));
    // The mails themselves carry none of the page's chrome.
    assert!(!app.smtp().all()[0].html().contains("Join the mailing list"));

    let res = app.get("/archive/morning/feed.xml").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/atom+xml")
    );
    let body = res.bytes().await.unwrap();
    let feed = feed_rs::parser::parse(&body[..]).expect("an Atom feed feed-rs reads");
    assert_eq!(feed.entries.len(), 3);
    let links: Vec<&str> = feed
        .entries
        .iter()
        .map(|e| e.links[0].href.as_str())
        .collect();
    assert_eq!(
        links,
        [url(&ids[2]), url(&ids[1]), url(&ids[0])],
        "newest first"
    );
    assert!(
        feed.entries[0]
            .summary
            .as_ref()
            .unwrap()
            .content
            .contains("Story 2"),
        "{:?}",
        feed.entries[0].summary
    );
    assert_eq!(app.get("/archive/nosuch/feed.xml").await.status(), 404);
}
both_backends!(the_archive_can_be_browsed_and_followed);

/// The archive dates an issue as its schedule's zone does (as its subject does).
async fn the_archive_dates_issues_in_the_schedules_zone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    app.add_article("wmd", "Late story", "https://news.example.org/w/late", "w")
        .await;
    app.services
        .digests
        .add_schedule(
            "evening",
            "0 23 * * *",
            &["wmd".into()],
            Some("America/Los_Angeles"),
            None,
            None,
        )
        .await
        .unwrap();
    // 23:00 in Los Angeles on 1 March is 07:00 UTC on 2 March.
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    assert!(app.smtp().all()[0].subject().ends_with("— 1 March 2026"));
    let index = app.get("/archive/evening").await.text().await.unwrap();
    assert!(
        index.contains("1 March 2026, 23:00 PST") && !index.contains("2 March 2026"),
        "{index}"
    );
}
both_backends!(the_archive_dates_issues_in_the_schedules_zone);

/// The text part reads as the HTML part does: paragraphs apart by a blank line, list items
/// on lines of their own with a bullet, `<br>` as a line break, a link's URL after its
/// words (once, when the words are the URL), lines of at most 78 columns with URLs whole;
/// the signature separator is "-- " (RFC 3676 §4.3, so mail programs fold the footer).
/// Digests also say where the issue is archived (RFC 5064 `Archived-At`) and that nobody
/// can post to the list (`List-Post: NO`), and their preheader's filler is long enough that
/// the inbox preview never runs on into "View in browser".
async fn the_text_part_reads_as_paragraphs_bullets_and_links(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.add_section("wmd", "WMD").await;
    app.reader("reader@example.com", &["wmd"]).await;
    let long = "A sentence long enough to need wrapping at seventy-eight columns, and then some more words.";
    app.add_article(
        "wmd",
        "Talks resume",
        "https://news.example.org/talks",
        &format!(
            "<p>One.</p><p>Two.</p><ul><li>A</li><li>B</li></ul>x<br>y\
             <p>Read <a href=\"https://news.example.org/report\">the report</a> or \
             <a href=\"https://news.example.org/faq\">https://news.example.org/faq</a>.</p><p>{long}</p>"
        ),
    )
    .await;
    app.add_schedule("m", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let mail = app.smtp().last_to("reader@example.com").unwrap();
    let text = mail.text();
    assert!(
        text.contains("One.\n\nTwo.\n\n* A\n* B\n\nx\ny\n\nRead the report <https://news.example.org/report> or\nhttps://news.example.org/faq.\n\nA sentence"),
        "{text}"
    );
    assert!(
        !text.contains("faq <https://news.example.org/faq>"),
        "a URL once: {text}"
    );
    let summary = text
        .split("https://news.example.org/talks\n")
        .nth(1)
        .unwrap()
        .split("\n-- \n")
        .next()
        .unwrap();
    assert!(
        summary.lines().all(|l| l.chars().count() <= 78),
        "{summary}"
    );
    assert!(
        text.contains("\n-- \n"),
        "the signature separator: {text:?}"
    );
    let issue = app
        .dump_table("SELECT CAST(MAX(id) AS TEXT) FROM issues")
        .await;
    assert_eq!(
        mail.header("Archived-At"),
        Some(format!("<{}/archive/m/{}>", app.base, issue.trim()))
    );
    assert_eq!(mail.header("List-Post").as_deref(), Some("NO"));
    let html = mail.html();
    let hidden = html
        .split("mso-hide:all\">")
        .nth(1)
        .unwrap()
        .split("</div>")
        .next()
        .unwrap();
    // The preview pane (up to 200 characters) is filled by the preheader and its filler.
    let units = hidden.matches("&#8199;&#847;").count();
    let preheader = hidden.split("&#8199;").next().unwrap();
    assert!(
        units > 0 && preheader.chars().count() + units >= 200,
        "filler: {hidden}"
    );
}
both_backends!(the_text_part_reads_as_paragraphs_bullets_and_links);

/// A feed that hangs holds up no other: two feeds whose server does not answer, polled before
/// sixteen others (their sections come first), do not keep those from being fetched in the
/// same poll. The hanging server answers only once all sixteen have been asked for (or after
/// 5 s, when the poll would have been one feed after another); every good feed's articles
/// arrive. Feeds of one host are still asked one at a time.
async fn a_hanging_feed_holds_up_no_other(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let good_asked = Arc::new(AtomicUsize::new(0));
    let all_asked = Arc::new(tokio::sync::Notify::new());
    let in_time = Arc::new(AtomicBool::new(true));
    let good = {
        let (asked, all) = (good_asked.clone(), all_asked.clone());
        axum::Router::new().route(
            "/{name}",
            axum::routing::get(move || {
                let (asked, all) = (asked.clone(), all.clone());
                async move {
                    if asked.fetch_add(1, Ordering::SeqCst) + 1 == 16 {
                        all.notify_waiters();
                    }
                    include_bytes!("fixtures/wmd.rss.xml").to_vec()
                }
            }),
        )
    };
    let hanging = {
        let (asked, all, in_time) = (good_asked.clone(), all_asked.clone(), in_time.clone());
        axum::Router::new().route(
            "/feed.xml",
            axum::routing::get(move || {
                let (asked, all, in_time) = (asked.clone(), all.clone(), in_time.clone());
                async move {
                    let wait = all.notified();
                    if asked.load(Ordering::SeqCst) < 16
                        && tokio::time::timeout(std::time::Duration::from_secs(5), wait)
                            .await
                            .is_err()
                    {
                        in_time.store(false, Ordering::SeqCst);
                    }
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                }
            }),
        )
    };
    let serve = |router: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    };
    let good_addr = serve(good).await;
    let hanging_a = serve(hanging.clone()).await;
    let hanging_b = serve(hanging).await;

    let app = TestApp::spawn_with(Spawn::new(backend).set("feeds.timeout", "20s")).await;
    let store = app.services.store.as_ref();
    for (slug, url) in [
        ("aslow", format!("http://{hanging_a}/feed.xml")),
        ("bslow", format!("http://{hanging_b}/feed.xml")),
    ] {
        app.add_section(slug, slug).await;
        herald::articles::set_feed(store, slug, Some(&url))
            .await
            .unwrap();
    }
    for i in 0..16 {
        let slug = format!("good{i:02}");
        app.add_section(&slug, &slug).await;
        herald::articles::set_feed(
            store,
            &slug,
            Some(&format!("http://{good_addr}/{slug}.xml")),
        )
        .await
        .unwrap();
    }
    let added = app.services.feeds.poll_all().await.unwrap();
    assert!(
        in_time.load(Ordering::SeqCst),
        "the good feeds waited for the hanging ones (asked: {})",
        good_asked.load(Ordering::SeqCst)
    );
    assert_eq!(added, 16 * 2, "every good feed's two articles");
    let feeds = store.section_feeds().await.unwrap();
    for f in &feeds {
        if f.slug.ends_with("slow") {
            assert!(f.feed_error.is_some(), "{}: {:?}", f.slug, f.feed_error);
        } else {
            assert!(f.feed_error.is_none(), "{}: {:?}", f.slug, f.feed_error);
        }
    }
}
both_backends!(a_hanging_feed_holds_up_no_other);

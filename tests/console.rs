//! The staff and operator console at /admin, over HTTP as a browser speaks it: logging in
//! and out, sessions that outlive a restart and end when they should, CSRF on every
//! change, roles, failed logins limited, the console's own CSP, everything escaped.

mod common;
use chrono::Duration;
use common::{Backend, Spawn, TestApp};
use herald::store::Role;

const ED: (&str, &str) = ("ed", "staff password 1");
const OLGA: (&str, &str) = ("olga", "operator password 2");

async fn with_users(app: &TestApp) {
    let store = app.services.store.as_ref();
    for ((name, pw), role) in [(ED, Role::Staff), (OLGA, Role::Operator)] {
        let hash = herald::access::hash_password(pw).unwrap();
        store
            .add_user(name, role, &hash, app.clock.now())
            .await
            .unwrap();
    }
}

/// The value of cookie `name` in a response's Set-Cookie headers, and the header itself.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_string();
            (value, v.to_string())
        })
}

/// The hidden `csrf` field of a page's (first) form.
fn csrf_of(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .expect("a csrf field")
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// A browser's view: the cookies it holds.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: Vec<(String, String)>,
    /// The client's address as a trusted proxy says it (`X-Forwarded-For`), if any.
    from: Option<&'static str>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: Vec::new(),
            from: None,
        }
    }

    /// Behind a trusted proxy that says the client is at `address`.
    fn from(app: &'a TestApp, address: &'static str) -> Self {
        Self {
            from: Some(address),
            ..Self::new(app)
        }
    }

    fn forwarded(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.from {
            Some(a) => r.header("x-forwarded-for", a),
            None => r,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie").iter() {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() && !attrs.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let r = self
            .forwarded(self.app.http.get(format!("{}{path}", self.app.base)))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", common::urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .forwarded(self.app.http.post(format!("{}{path}", self.app.base)))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        r
    }

    async fn post_owned(&mut self, path: &str, form: Vec<(&str, String)>) -> reqwest::Response {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.post(path, &pairs).await
    }

    /// Open the login page and log in; the response to the login.
    async fn log_in(&mut self, (name, password): (&str, &str)) -> reqwest::Response {
        let page = self.get("/admin/login").await.text().await.unwrap();
        let csrf = csrf_of(&page);
        self.post(
            "/admin/login",
            &[("name", name), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

async fn logging_in_and_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    // Not logged in: to the login page.
    let r = b.get("/admin").await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/admin/login", app.base)
    );
    // The console's address with a slash goes to the one without.
    let r = b.get("/admin/").await;
    assert_eq!(r.status(), 308);
    // Relative, so it stays under a path the site puts herald behind.
    assert_eq!(r.headers()["location"].to_str().unwrap(), "../admin");
    // An unknown user and a wrong password get one answer.
    let unknown = b.log_in(("nobody", "whatever password")).await;
    assert_eq!(unknown.status(), 401);
    let unknown = unknown.text().await.unwrap();
    let wrong = b.log_in((ED.0, "not his password")).await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    assert!(wrong.contains("The name or the password is wrong."));
    let error_of = |page: &str| {
        page.split("role=\"alert\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(error_of(&unknown), error_of(&wrong));
    // The login form's own token: without it, or with another, no login.
    let r = b
        .post(
            "/admin/login",
            &[("name", ED.0), ("password", ED.1), ("csrf", "forged")],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b.log_in(ED).await;
    assert_eq!(r.status(), 303);
    let (_, header) = set_cookie(&r, "herald_session").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/admin", "Max-Age=43200"] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    assert!(!header.contains("Secure"), "plain http here: {header}");
    let r = b.get("/admin").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("style-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Dashboard") && page.contains("<bdi>ed</bdi> (staff)"),
        "{page}"
    );
    // The stylesheet the CSP allows.
    assert_eq!(b.get("/admin/console.css").await.status(), 200);

    // The session is in the database: another instance (a restart) knows it.
    let other = TestApp::spawn_with(Spawn::new(backend).db(&app.db_url)).await;
    let mut same = Browser::new(&other);
    same.cookies = b.cookies.clone();
    assert_eq!(same.get("/admin").await.status(), 200);

    // Logging out needs the session's token, and ends the session everywhere.
    let csrf = csrf_of(&b.get("/admin").await.text().await.unwrap());
    let kept = b.cookies.clone();
    assert_eq!(
        b.post("/admin/logout", &[("csrf", "wrong")]).await.status(),
        403
    );
    let r = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(b.get("/admin").await.status(), 303);
    same.cookies = kept;
    assert_eq!(
        same.get("/admin").await.status(),
        303,
        "ended for the other instance too"
    );
}
both_backends!(logging_in_and_out);

async fn sessions_end_when_idle_or_old_or_the_password_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.log_in(ED).await.status(), 303);
    // Used every hour: alive, until 12 h after the login.
    for _ in 0..11 {
        app.clock.advance(Duration::hours(1));
        assert_eq!(b.get("/admin").await.status(), 200);
    }
    app.clock.advance(Duration::hours(1) + Duration::minutes(1));
    assert_eq!(
        b.get("/admin").await.status(),
        303,
        "past console.session_lifetime"
    );
    // Unused for longer than console.session_idle (2 h).
    assert_eq!(b.log_in(ED).await.status(), 303);
    app.clock.advance(Duration::hours(2) + Duration::minutes(1));
    assert_eq!(b.get("/admin").await.status(), 303, "idle too long");
    // A new password ends every session of that user.
    assert_eq!(b.log_in(ED).await.status(), 303);
    let hash = herald::access::hash_password("a brand new password").unwrap();
    app.services
        .store
        .set_user_password(ED.0, &hash, app.clock.now())
        .await
        .unwrap();
    assert_eq!(b.get("/admin").await.status(), 303);
    assert_eq!(b.log_in(ED).await.status(), 401, "the old password is gone");
    assert_eq!(b.log_in((ED.0, "a brand new password")).await.status(), 303);
}
both_backends!(sessions_end_when_idle_or_old_or_the_password_changes);

async fn failed_logins_are_limited_per_account_and_per_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    for _ in 0..5 {
        assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 401);
    }
    // Now even the right password waits: the account is being guessed at.
    let r = b.log_in(ED).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many failed logins. Try again in a second.")
    );
    // The same client is limited for every name, known or not (it says nothing of which
    // names exist).
    assert_eq!(b.log_in(OLGA).await.status(), 429);
    assert_eq!(b.log_in(("nobody", "anything at all")).await.status(), 429);
    // Each further try waits twice as long after the one before: 1 s, 2 s, 4 s … up to the
    // window. A refused try is not counted (it checked nothing).
    let mut waits = Vec::new();
    for _ in 0..12 {
        let r = b.log_in((ED.0, "guessing wrong")).await;
        assert_eq!(r.status(), 429);
        let wait: i64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        waits.push(wait);
        app.clock.advance(Duration::seconds(wait - 1));
        assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 429);
        app.clock.advance(Duration::seconds(1));
        assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 401);
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    let r = b.log_in(ED).await;
    assert!(r.text().await.unwrap().contains("Try again in 15 minutes."));
    // The window passes; the right password.
    app.clock.advance(Duration::minutes(16));
    assert_eq!(b.log_in(ED).await.status(), 303);
}
both_backends!(failed_logins_are_limited_per_account_and_per_client);

/// Guessing at an account from one address throttles that address, never the account's
/// owner elsewhere; `herald users unlock` (and a new password) lets them in at once, from
/// the guessed-at address too.
async fn guesses_from_one_address_lock_nobody_out(backend: Backend) {
    let app =
        TestApp::spawn_with(Spawn::new(backend).set("http.trusted_proxies", "127.0.0.1")).await;
    with_users(&app).await;
    let mut attacker = Browser::from(&app, "198.51.100.7");
    for i in 0..20 {
        let s = attacker.log_in((ED.0, "guessing wrong")).await.status();
        assert_eq!(s, if i < 5 { 401 } else { 429 }, "guess {i}");
    }
    assert_eq!(attacker.log_in(ED).await.status(), 429);
    // The owner, from the office: in.
    let mut owner = Browser::from(&app, "203.0.113.9");
    assert_eq!(owner.log_in(ED).await.status(), 303);
    // A colleague at the guessed-at address is throttled with it, until an unlock.
    let mut colleague = Browser::from(&app, "198.51.100.7");
    assert_eq!(colleague.log_in(OLGA).await.status(), 429);
    let out = herald_cli(&app, &["users", "unlock", ED.0]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed logins forgotten"));
    assert_eq!(colleague.log_in(OLGA).await.status(), 303);
    assert_eq!(attacker.log_in(ED).await.status(), 303);
    // A new password forgets the failures too.
    let mut shared = Browser::from(&app, "192.0.2.44");
    for _ in 0..6 {
        shared.log_in((OLGA.0, "guessing wrong")).await;
    }
    assert_eq!(shared.log_in(OLGA).await.status(), 429);
    let mut passwd = herald_command(&app, &["users", "passwd", OLGA.0, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"a brand new password 3\n")
        .unwrap();
    assert!(passwd.wait().unwrap().success());
    let r = shared.log_in((OLGA.0, "a brand new password 3")).await;
    assert_eq!(r.status(), 303);
}
both_backends!(guesses_from_one_address_lock_nobody_out);

/// A new login in a browser ends the session it had (someone else's, on a shared computer),
/// and a short `session_idle` (1 minute, the least allowed) never ends a session in use.
async fn sessions_follow_their_browser_and_their_use(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("console.session_idle", "1m")).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.log_in(ED).await.status(), 303);
    let eds = b.cookies.clone();
    assert_eq!(b.log_in(OLGA).await.status(), 303);
    let mut stolen = Browser::new(&app);
    stolen.cookies = eds;
    assert_eq!(
        stolen.get("/admin").await.status(),
        303,
        "ed's session ended"
    );
    assert_eq!(b.get("/admin").await.status(), 200, "olga's goes on");
    // In use every 40 seconds for three minutes: never idle for a minute.
    for _ in 0..5 {
        app.clock.advance(Duration::seconds(40));
        assert_eq!(b.get("/admin").await.status(), 200);
    }
    app.clock.advance(Duration::seconds(61));
    assert_eq!(
        b.get("/admin").await.status(),
        303,
        "idle for a minute: ended"
    );
}
both_backends!(sessions_follow_their_browser_and_their_use);

/// Logging in goes back to the console page that was asked for, and only ever to one of the
/// console's pages.
async fn a_login_returns_to_the_page_asked_for(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    let r = b.get("/admin/log?status=failed").await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        to,
        format!("{}/admin/login?next=%2Flog%3Fstatus%3Dfailed", app.base)
    );
    for (next, lands) in [
        ("/log?status=failed", "/admin/log?status=failed"),
        ("//evil.example/x", "/admin"),
        ("/\\evil.example", "/admin"),
    ] {
        let mut b = Browser::new(&app);
        let page = b
            .get(&format!("/admin/login?next={}", common::urlencode(next)))
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);
        let r = b
            .post(
                "/admin/login",
                &[
                    ("name", ED.0),
                    ("password", ED.1),
                    ("csrf", &csrf),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("{}{lands}", app.base),
            "{next}"
        );
    }
}
both_backends!(a_login_returns_to_the_page_asked_for);

/// Guesses sent all at once count against each other (each is noted before its password is
/// checked), a second instance on the same database counts the same attempts, and logging
/// in successfully over and over is never limited.
async fn logins_are_limited_for_bursts_and_across_instances(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    // Twenty guesses at ed's password at the same moment, each from a fresh browser.
    let mut browsers: Vec<Browser> = (0..20).map(|_| Browser::new(&app)).collect();
    let mut tokens = Vec::new();
    for b in browsers.iter_mut() {
        let page = b.get("/admin/login").await.text().await.unwrap();
        tokens.push(csrf_of(&page));
    }
    let answers = futures_util::future::join_all(browsers.iter_mut().zip(&tokens).map(
        |(b, csrf)| async move {
            b.post(
                "/admin/login",
                &[
                    ("name", ED.0),
                    ("password", "guessing wrong"),
                    ("csrf", csrf),
                ],
            )
            .await
            .status()
            .as_u16()
        },
    ))
    .await;
    let checked = answers.iter().filter(|s| **s == 401).count();
    let limited = answers.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + limited, 20, "{answers:?}");
    assert!(
        checked <= 5,
        "only console.login_limit (5) guesses are checked: {answers:?}"
    );
    // Guesses that refused each other in flight are not failures: top up to the limit.
    assert!(checked >= 1, "{answers:?}");
    let mut b = Browser::new(&app);
    for _ in checked..5 {
        assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 401);
    }
    assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 429);
    // Another instance on the same database: the account is limited there too.
    let other = TestApp::spawn_with(Spawn::new(backend).db(&app.db_url)).await;
    let mut b = Browser::new(&other);
    assert_eq!(b.log_in(ED).await.status(), 429);
    // The failures are forgotten: four windows pass (on both instances' clocks).
    app.clock.advance(Duration::minutes(61));
    other.clock.advance(Duration::minutes(61));
    // Success after success from one client (one below the limit already) is never
    // limited: a success forgets its own attempt, and the account's failures.
    let mut b = Browser::new(&app);
    for _ in 0..4 {
        assert_eq!(b.log_in((ED.0, "guessing wrong")).await.status(), 401);
    }
    for _ in 0..8 {
        assert_eq!(Browser::new(&app).log_in(ED).await.status(), 303);
    }
    let since = app.clock.now() - Duration::minutes(60);
    let store = &app.services.store;
    assert_eq!(
        store
            .login_attempts("user:ed", since, i64::MAX)
            .await
            .unwrap()
            .0,
        0
    );
    assert_eq!(
        store
            .login_attempts("ip:127.0.0.1", since, i64::MAX)
            .await
            .unwrap()
            .0,
        4
    );
    // The purge job forgets attempts once four windows have passed (the client's five
    // from before and its four since).
    app.clock.advance(Duration::minutes(61));
    let logins = herald::access::LoginLimiter::new(5, Duration::minutes(15));
    assert_eq!(
        logins.prune(store.as_ref(), app.clock.now()).await.unwrap(),
        9
    );
    let ever = common::t0() - Duration::days(1);
    assert_eq!(
        store
            .login_attempts("ip:127.0.0.1", ever, i64::MAX)
            .await
            .unwrap()
            .0,
        0
    );
}
both_backends!(logins_are_limited_for_bursts_and_across_instances);

async fn changes_need_the_staff_role_and_the_sessions_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut staff = Browser::new(&app);
    assert_eq!(staff.log_in(ED).await.status(), 303);
    let page = staff.get("/admin/sections").await.text().await.unwrap();
    assert!(page.contains("Add a section"));
    let csrf = csrf_of(&page);
    let add = |slug: &'static str, name: &'static str, csrf: String| {
        vec![
            ("csrf", csrf),
            ("slug", slug.to_string()),
            ("name", name.to_string()),
            ("description", String::new()),
            ("feed", String::new()),
        ]
    };
    // Without the session's token: refused, nothing written.
    let r = staff
        .post_owned("/admin/sections", add("wmd", "WMD", "forged".into()))
        .await;
    assert_eq!(r.status(), 403);
    assert!(app.services.store.list_sections().await.unwrap().is_empty());
    // With it: added. A name that carries markup is shown as text, never run.
    let r = staff
        .post_owned(
            "/admin/sections",
            add(
                "wmd",
                "<script>alert(1)</script> & <b>WMD</b>",
                csrf.clone(),
            ),
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = staff.get("/admin/sections").await.text().await.unwrap();
    assert!(
        !page.contains("<script>alert(1)") && !page.contains("<b>WMD"),
        "{page}"
    );
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#60;b&#62;WMD&#60;/b&#62;"),
        "shown as text: {page}"
    );
    // A bad slug: the form comes back with what is wrong, and what was typed.
    let r = staff
        .post_owned("/admin/sections", add("Not A Slug", "Odd", csrf.clone()))
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("role=\"alert\"") && page.contains("value=\"Not A Slug\""),
        "{page}"
    );

    // An operator sees, is not offered the form, and is refused if they post anyway.
    let mut operator = Browser::new(&app);
    assert_eq!(operator.log_in(OLGA).await.status(), 303);
    let page = operator.get("/admin/sections").await.text().await.unwrap();
    assert!(page.contains("<code>wmd</code>") && !page.contains("Add a section"));
    let their_csrf = csrf_of(&operator.get("/admin").await.text().await.unwrap());
    let r = operator
        .post_owned("/admin/sections", add("cyber", "Cyber", their_csrf))
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("may look, not change"));
    assert_eq!(app.services.store.list_sections().await.unwrap().len(), 1);
    // One session's token is no good in another's.
    let r = operator
        .post_owned("/admin/sections", add("cyber", "Cyber", csrf))
        .await;
    assert_eq!(r.status(), 403);
}
both_backends!(changes_need_the_staff_role_and_the_sessions_token);

/// Every POST route of the console, read from the router's own source (so a route added
/// tomorrow is in this test without anyone remembering it), refuses a forged token, an
/// operator and a visitor without a session, and changes nothing for them. Only the login
/// form is exempt (its double-submit token is tested on its own).
async fn every_console_post_is_checked_for_token_and_role(backend: Backend) {
    let source = include_str!("../src/web/console/mod.rs");
    let router = &source[source.find("pub fn router(").unwrap()..];
    let router = &router[..router.find("\n}\n").unwrap()];
    let mut posts = Vec::new();
    for chunk in router.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).unwrap();
        // The route's own text, up to the next route.
        if chunk.contains("post(") && path != "/login" {
            posts.push(path.to_string());
        }
    }
    assert!(posts.len() >= 14, "POST routes found: {posts:?}");

    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.reader("r@example.com", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "s")
        .await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    let store = app.services.store.as_ref();
    let snapshot = || async {
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            store.list_sections().await.unwrap().len(),
            store
                .list_schedules()
                .await
                .unwrap()
                .iter()
                .map(|s| (s.name.clone(), s.enabled, s.cron.clone()))
                .collect::<Vec<_>>(),
            store.list_articles(None, 100).await.unwrap().len(),
            store.list_issues(None, 100).await.unwrap().len(),
            app.subscriber_status("r@example.com").await,
        )
    };
    let before = snapshot().await;

    let mut staff = Browser::new(&app);
    assert_eq!(staff.log_in(ED).await.status(), 303);
    let mut operator = Browser::new(&app);
    assert_eq!(operator.log_in(OLGA).await.status(), 303);
    let their_csrf = csrf_of(&operator.get("/admin").await.text().await.unwrap());
    let mut nobody = Browser::new(&app);
    // Every field a console form has, so that only the token or the role can be the reason.
    let fields = |csrf: &str| -> Vec<(&'static str, String)> {
        [
            ("csrf", csrf),
            ("slug", "cyber"),
            ("name", "Cyber"),
            ("cron", "0 8 * * *"),
            ("sections", "wmd"),
            ("timezone", "UTC"),
            ("confirm", "morning"),
            ("really", "yes"),
            ("email", "r@example.com"),
            ("title", "B"),
            ("url", "https://news.example.org/b"),
            ("section", "wmd"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    };
    for path in &posts {
        let path = format!(
            "/admin{}",
            path.replace("{slug}", "wmd")
                .replace("{name}", "morning")
                .replace("{id}", "1")
        );
        let r = staff.post_owned(&path, fields("forged")).await;
        assert_eq!(r.status(), 403, "{path}: a forged token");
        assert!(
            r.text().await.unwrap().contains("This form has expired"),
            "{path}"
        );
        if !path.ends_with("/logout") {
            let r = operator.post_owned(&path, fields(&their_csrf)).await;
            assert_eq!(r.status(), 403, "{path}: an operator");
            assert!(
                r.text().await.unwrap().contains("may look, not change"),
                "{path}"
            );
        }
        let r = nobody.post_owned(&path, fields("forged")).await;
        assert_eq!(r.status(), 303, "{path}: nobody logged in");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .ends_with("/admin/login"),
            "{path}"
        );
    }
    assert_eq!(snapshot().await, before, "nothing changed");
    // The staff session is still good for a real change.
    let csrf = csrf_of(&staff.get("/admin").await.text().await.unwrap());
    let r = staff
        .post_owned("/admin/schedules/morning/pause", fields(&csrf))
        .await;
    assert_eq!(r.status(), 303);
    assert_ne!(snapshot().await, before);
}
both_backends!(every_console_post_is_checked_for_token_and_role);

/// What a handler refuses (nothing by that number, a query or form that does not fit) is a
/// page in the console's frame, with the viewer's name and the way out, and the right
/// status: the layer renders every handler's error, so none can fall back to a bare 500.
async fn refusals_are_pages_in_the_viewers_frame(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let framed = |page: &str| page.contains("<bdi>ed</bdi> (staff)") && page.contains("Log out");
    let r = b.get("/admin/issues/424242").await;
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(framed(&page) && page.contains("no issue #424242"), "{page}");
    for path in ["/admin/log?before=yesterday", "/admin/issues?before=x1"] {
        let r = b.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let page = r.text().await.unwrap();
        assert!(
            framed(&page) && page.contains("could not be read"),
            "{path}: {page}"
        );
    }
    // Blank and padded values are what they were before: empty means "any", spaces go.
    let r = b.get("/admin/log?before=&status=%20sent%20&live=").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"value="sent" selected"#));
    // Nobody logged in: the login page, not an error page.
    let r = Browser::new(&app).get("/admin/issues/424242").await;
    assert_eq!(r.status(), 303);
}
both_backends!(refusals_are_pages_in_the_viewers_frame);

/// `site.timezone`: the console shows every time in the newsroom's zone with the zone named
/// and UTC on hover, and reads the times typed into its filters in that zone.
async fn times_are_the_newsrooms(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).set("site.timezone", "Europe/Berlin")).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    // 07:00:05 UTC on 2 March is 08:00:05 in Berlin (CET, UTC+1).
    app.set_time(2026, 3, 2, 7, 0, 5);
    app.subscribe_and_confirm("r@example.com", &["wmd"]).await;
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let id = app
        .services
        .store
        .subscriber_by_email("r@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let page = b
        .get(&format!("/admin/subscribers/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            r#"<time datetime="2026-03-02T07:00:05Z" title="2026-03-02 07:00:05 UTC">2026-03-02 08:00:05 CET</time>"#
        ),
        "{page}"
    );
    assert!(
        !page.contains("07:00:05 UTC</dd>"),
        "no bare UTC times left"
    );
    // The log's filter in Berlin time: from 08:00 Berlin finds the confirmation mail (sent
    // at 07:00:05 UTC); from 08:01 Berlin does not, though 07:01 UTC would have been before.
    let from_eight = b.get("/admin/log?since=2026-03-02T08%3A00").await;
    assert!(!from_eight.text().await.unwrap().contains("No send matches"));
    let none = b.get("/admin/log?since=2026-03-02T08%3A01").await;
    let none = none.text().await.unwrap();
    assert!(none.contains("No send matches these filters"), "{none}");
    assert!(none.contains("Changed from (Europe/Berlin time)"));
    // Summer time: the same wall-clock hour is UTC+2 (CEST).
    app.set_time(2026, 7, 1, 6, 30, 0);
    app.subscribe_and_confirm("s@example.com", &["wmd"]).await;
    // (Months later: the session has ended.)
    b.log_in(ED).await;
    let list = b.get("/admin/subscribers").await.text().await.unwrap();
    assert!(list.contains("2026-07-01 08:30 CEST"), "{list}");
    assert!(list.contains("2026-03-02 08:00 CET"), "{list}");
}
both_backends!(times_are_the_newsrooms);

/// Text from feeds and forms is isolated (`<bdi>`): a right-to-left override in a section
/// name, or an Arabic title, cannot reorder the console's own words around it.
async fn user_text_cannot_reorder_the_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD \u{202E}sdrawkcab").await;
    app.add_article(
        "wmd",
        "\u{627}\u{644}\u{623}\u{633}\u{644}\u{62D}\u{629} WMD",
        "https://news.example.com/ar",
        "Nothing.",
    )
    .await;
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let sections = b.get("/admin/sections").await.text().await.unwrap();
    assert!(
        sections.contains("<bdi>WMD \u{202E}sdrawkcab</bdi>"),
        "{sections}"
    );
    let name = "WMD \u{202E}sdrawkcab";
    assert_eq!(
        sections.matches(name).count(),
        sections.matches(&format!("<bdi>{name}</bdi>")).count(),
        "never bare: {sections}"
    );
    let articles = b.get("/admin/articles").await.text().await.unwrap();
    assert!(
        articles.contains("<bdi>\u{627}\u{644}\u{623}\u{633}\u{644}\u{62D}\u{629} WMD</bdi>"),
        "{articles}"
    );
}
both_backends!(user_text_cannot_reorder_the_page);

/// Behind https and a path, the cookie is `__Secure-` and Secure, scoped to the console's
/// path; at the root of https it is `__Host-`, Path=/.
async fn cookies_take_the_strongest_prefix_the_address_allows(backend: Backend) {
    for (public, name, path) in [
        (
            "https://news.example.com/newsletter",
            "__Secure-herald_session",
            "Path=/newsletter/admin",
        ),
        (
            "https://news.example.com",
            "__Host-herald_session",
            "Path=/;",
        ),
    ] {
        let app = TestApp::spawn_with(Spawn::new(backend).set("http.public_url", public)).await;
        with_users(&app).await;
        // The login form's own token cookie takes the same prefix: no sibling subdomain or
        // port can set it for us.
        let login_name = name.replace("session", "login");
        let form = Browser::new(&app).get("/admin/login").await;
        assert!(
            set_cookie(&form, &login_name).is_some(),
            "{login_name} for {public}"
        );
        let mut b = Browser::new(&app);
        let r = b.log_in(ED).await;
        assert_eq!(r.status(), 303, "{public}");
        let (_, header) = set_cookie(&r, name).unwrap_or_else(|| panic!("{name} for {public}"));
        assert!(
            header.contains(path) && header.contains("Secure"),
            "{header}"
        );
    }
}
both_backends!(cookies_take_the_strongest_prefix_the_address_allows);

/// A login form posted from another origin (a sibling subdomain or port that tossed its own
/// token cookie in) is refused, whatever token it carries.
async fn a_login_from_another_origin_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    for (origin, fetch_site, status) in [
        ("http://evil.example", "cross-site", 403),
        ("http://127.0.0.1:1", "same-site", 403),
        // With no referrer (herald's policy) a browser may say "null": the fetch metadata
        // still tells a sibling from us.
        ("null", "same-site", 403),
        ("null", "same-origin", 303),
        (app.base.as_str(), "same-origin", 303),
    ] {
        let mut b = Browser::new(&app);
        let page = b.get("/admin/login").await.text().await.unwrap();
        let csrf = csrf_of(&page);
        let body = format!(
            "name={}&password={}&csrf={}",
            ED.0,
            common::urlencode(ED.1),
            common::urlencode(&csrf)
        );
        let r = app
            .http
            .post(format!("{}/admin/login", app.base))
            .header("cookie", b.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .header("sec-fetch-site", fetch_site)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{origin} {fetch_site}");
    }
}
both_backends!(a_login_from_another_origin_is_refused);

/// What a page says between `start` and the end of that element's line: for assertions
/// about one part of a page.
/// Claim the next due send and record `outcome` for it, as a worker would: one send
/// settled without a relay. Returns it.
async fn settle_next(app: &TestApp, outcome: herald::store::SendOutcome) -> herald::store::SendJob {
    let store = &app.services.store;
    let holder = herald::store::LeaseHolder {
        owner: "i/w".into(),
        instance: "i".into(),
    };
    let now = app.clock.now();
    let mut one = store
        .claim_sends(&holder, now, now + Duration::minutes(5), 1)
        .await
        .unwrap();
    let job = one.pop().expect("a send due");
    let result = herald::store::SendResult {
        send_id: job.id,
        lease_owner: holder.owner,
        outcome,
    };
    assert_eq!(store.complete_sends(&[result], now).await.unwrap(), 1);
    job
}

fn after<'p>(page: &'p str, start: &str) -> &'p str {
    let i = page
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not on the page:\n{page}"));
    &page[i..]
}

/// A staff member schedules a weekday-morning digest in their zone from the console: a bad
/// cron comes back with the error next to it and what was typed, "Check the times" shows
/// the next runs in the zone, saving makes the schedule; its page previews the next digest
/// (text here, HTML on its own page under its own CSP), and "send now" sends only once
/// confirmed.
async fn staff_schedule_preview_and_send_a_digest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "Weapons of Mass Destruction").await;
    app.add_section("cyber", "Cyber").await;
    for r in ["ann@example.com", "bob@example.com"] {
        app.reader(r, &["wmd"]).await;
    }
    app.reader("cy@example.com", &["cyber"]).await;
    app.add_article(
        "wmd",
        "Inspectors <img src=x onerror=alert(1)> return",
        "https://news.example.com/a1",
        "They found <script>alert(2)</script> nothing.",
    )
    .await;
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b.get("/admin/schedules").await.text().await.unwrap();
    assert!(page.contains("No schedule yet") && page.contains("New schedule"));
    let csrf = csrf_of(&page);
    let form = |cron: &str, action: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "morning".to_string()),
            ("cron", cron.to_string()),
            ("timezone", "Europe/Berlin".to_string()),
            ("sections", "wmd".to_string()),
            ("subject", String::new()),
            ("do", action.to_string()),
        ]
    };
    // A bad cron: refused, the error beside the field, what was typed kept, nothing saved.
    let r = b
        .post_owned("/admin/schedules", form("0 7 * * mon-fry", "save"))
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    let at_cron = after(&page, "id=\"cron\"");
    assert!(at_cron.contains("aria-invalid=\"true\""), "{at_cron}");
    assert!(
        at_cron[..at_cron.find("id=\"timezone\"").unwrap()].contains("invalid cron expression"),
        "the error is next to the cron field: {at_cron}"
    );
    assert!(page.contains("value=\"0 7 * * mon-fry\"") && page.contains("value=\"Europe/Berlin\""));
    assert!(
        app.services
            .store
            .list_schedules()
            .await
            .unwrap()
            .is_empty()
    );
    // An unknown zone: beside the zone field.
    let mut bad_zone = form("0 7 * * 1-5", "save");
    bad_zone[3].1 = "Europe/Atlantis".into();
    let page = b
        .post_owned("/admin/schedules", bad_zone)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        after(&page, "id=\"timezone\"").contains("unknown time zone"),
        "{page}"
    );
    // "Check the times": the next five runs, in Berlin time (t0 is in winter: CET, UTC+1),
    // and still nothing saved.
    let r = b
        .post_owned("/admin/schedules", form("0 7 * * 1-5", "check"))
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let check = after(&page, "id=\"cron-check\"");
    assert!(check.contains("07:00"), "{check}");
    assert_eq!(check.matches("<li>").count(), 5, "{check}");
    assert!(check.contains("07:00 CET (06:00 UTC)"), "{check}");
    assert!(
        app.services
            .store
            .list_schedules()
            .await
            .unwrap()
            .is_empty()
    );
    // The fragment console.js asks for as one types says the same.
    let frag = b
        .get("/admin/schedules/check?cron=0+7+*+*+1-5&timezone=Europe%2FBerlin")
        .await
        .text()
        .await
        .unwrap();
    assert!(frag.contains("07:00 CET (06:00 UTC)") && frag.matches("<li>").count() == 5);
    let frag = b
        .get("/admin/schedules/check?cron=0+7+*+*&timezone=UTC")
        .await
        .text()
        .await
        .unwrap();
    assert!(frag.contains("expected 5 fields"), "{frag}");
    // Saved: to the schedule's page.
    let r = b
        .post_owned("/admin/schedules", form("0 7 * * 1-5", "save"))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/admin/schedules/morning", app.base)
    );
    let s = app
        .services
        .store
        .schedule_by_name("morning")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.cron.as_str(), s.timezone.as_str()),
        ("0 7 * * 1-5", "Europe/Berlin")
    );
    let list = b.get("/admin/schedules").await.text().await.unwrap();
    // The times a cron gives are shown beside the cron and zone fields, not below the form.
    let (check, sections) = (
        list.find(r#"id="cron-check""#).unwrap(),
        list.find("<legend>Sections</legend>").unwrap(),
    );
    assert!(check < sections, "the cron check comes before the sections");
    assert!(
        list.contains("/admin/schedules/morning\"><bdi>morning</bdi></a>"),
        "{list}"
    );
    assert!(
        list.contains("At 07:00, on Monday, Tuesday, Wednesday, Thursday, and Friday")
            && list.contains("07:00 CET (06:00 UTC)"),
        "the cron in words, the next run in the zone: {list}"
    );
    // The same name again: refused beside the name.
    let page = b
        .post_owned("/admin/schedules", form("0 8 * * *", "save"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        after(&page, "id=\"name\"").contains("already exists"),
        "{page}"
    );

    // Its page: the next runs and the next digest as its first reader gets it; markup from
    // the feed is text.
    let page = b
        .get("/admin/schedules/morning")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("To <strong><bdi>ann@example.com</bdi></strong>"),
        "{page}"
    );
    assert!(
        page.contains("Inspectors &#60;img src=x onerror=alert(1)&#62; return"),
        "{page}"
    );
    assert!(!page.contains("<img src=x") && !page.contains("<script>alert(2)"));
    // As another reader; and one who is not a subscriber is said so.
    let page = b
        .get("/admin/schedules/morning?to=bob%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("To <strong><bdi>bob@example.com</bdi></strong>"));
    let page = b
        .get("/admin/schedules/morning?to=nobody%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("no subscriber"), "{page}");
    // A reader who gets nothing is not shown a digest: why, instead.
    app.reader("dee@example.com", &["wmd"]).await;
    let store = &app.services.store;
    let dee = store
        .subscriber_by_email("dee@example.com")
        .await
        .unwrap()
        .unwrap();
    store.unsubscribe(dee.id, app.clock.now()).await.unwrap();
    let page = b
        .get("/admin/schedules/morning?to=dee%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("dee@example.com receives no digest: the reader has unsubscribed"),
        "{page}"
    );
    assert!(!page.contains("To <strong><bdi>dee@example.com"));
    // The HTML part on its own page, under a CSP that runs no script and sends no form.
    let r = b
        .get("/admin/schedules/morning/preview.html?to=ann%40example.com")
        .await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("sandbox")
            && !csp.contains("script-src")
            && csp.contains("default-src 'none'")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("Inspectors") && !html.contains("<script>alert(2)"));
    assert_eq!(
        b.get("/admin/schedules/nope").await.status(),
        404,
        "an unknown schedule"
    );

    // Send now: it says whom it would reach (active readers of its sections only: not
    // dee, who has not confirmed, nor cy, who reads another section) …
    let page = b
        .get("/admin/schedules/morning")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<strong id="send-readers">2 readers</strong>"#)
            && page.contains("Yes, send this issue to its 2 readers now"),
        "{page}"
    );
    // … and does nothing without the box ticked.
    let csrf = csrf_of(&page);
    let r = b
        .post("/admin/schedules/morning/send", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Tick the box"));
    assert!(
        app.services
            .store
            .list_issues(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Ticked: an issue, to its page; every reader of wmd gets it, nobody else. The form
    // carries a one-time token: a double click (the same form posted twice) makes one issue,
    // and the second post lands on the same page.
    let once = after(&page, r#"name="once" value=""#)["name=\"once\" value=\"".len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(once.len() >= 20, "{once:?}");
    let send = [
        ("csrf", csrf.as_str()),
        ("confirm", "yes"),
        ("once", once.as_str()),
    ];
    let r = b.post("/admin/schedules/morning/send", &send).await;
    assert_eq!(r.status(), 303);
    let again = b.post("/admin/schedules/morning/send", &send).await;
    assert_eq!(again.status(), 303);
    let issues = app.services.store.list_issues(None, 10).await.unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    for r in [&r, &again] {
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("{}/admin/issues/{}", app.base, issues[0].id)
        );
    }
    // Its readers' rows are written in the background.
    for _ in 0..100 {
        if !app
            .services
            .store
            .issue(issues[0].id)
            .await
            .unwrap()
            .unwrap()
            .filling
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.deliver().await;
    let smtp = app.smtp();
    assert_eq!(smtp.to("ann@example.com").len(), 1);
    assert_eq!(smtp.to("bob@example.com").len(), 1);
    assert!(smtp.to("cy@example.com").is_empty());
}
both_backends!(staff_schedule_preview_and_send_a_digest);

/// Pause, resume and edit from the console; an operator sees the schedules but is offered
/// none of it, and is refused if they post.
async fn schedules_are_paused_resumed_and_changed_by_staff_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    let store = app.services.store.clone();
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b.get("/admin/schedules").await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post("/admin/schedules/morning/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 303);
    // Said plainly: a pause makes no new issue, and stops none already on its way.
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let said = b
        .get(to.trim_start_matches(&app.base))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        said.contains("An issue already on its way is not stopped"),
        "{said}"
    );
    assert!(
        !store
            .schedule_by_name("morning")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    let page = b.get("/admin/schedules").await.text().await.unwrap();
    assert!(page.contains("paused") && page.contains("/admin/schedules/morning/resume"));
    assert_eq!(
        b.post("/admin/schedules/morning/resume", &[("csrf", &csrf)])
            .await
            .status(),
        303
    );
    assert!(
        store
            .schedule_by_name("morning")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    // Edit: new times, zone and sections; the next run follows the new times.
    // The edit form as a browser sends it, with the pictures box ticked or not.
    let edit = |pictures: bool| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("name", "morning".to_string()),
            ("cron", "30 6 * * 1-5".to_string()),
            ("timezone", "America/New_York".to_string()),
            ("sections", "wmd".to_string()),
            ("sections", "cyber".to_string()),
            ("subject", "The morning brief".to_string()),
        ];
        if pictures {
            f.push(("images", "on".to_string()));
        }
        f
    };
    let r = b.post_owned("/admin/schedules/morning", edit(false)).await;
    assert_eq!(r.status(), 303);
    let s = store.schedule_by_name("morning").await.unwrap().unwrap();
    assert_eq!(
        (s.cron.as_str(), s.timezone.as_str(), s.subject.as_deref()),
        (
            "30 6 * * 1-5",
            "America/New_York",
            Some("The morning brief")
        )
    );
    let next = herald::domain::CronSchedule::parse("30 6 * * 1-5", "America/New_York")
        .unwrap()
        .next_after(app.clock.now())
        .unwrap();
    assert_eq!(s.next_run_at, next);
    assert_eq!(store.schedule_sections(s.id).await.unwrap().len(), 2);
    // The pictures box was left unticked: the digests go without pictures; ticked, with.
    assert!(!s.images);
    let page = b
        .get("/admin/schedules/morning")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Pictures left out") && !page.contains(r#"value="on" checked"#));
    let r = b.post_owned("/admin/schedules/morning", edit(true)).await;
    assert_eq!(r.status(), 303);
    assert!(
        store
            .schedule_by_name("morning")
            .await
            .unwrap()
            .unwrap()
            .images
    );
    // A new schedule's form starts with pictures on, as the CLI's and the API's default.
    let page = b.get("/admin/schedules").await.text().await.unwrap();
    assert!(page.contains(r#"name="images" value="on" checked"#));
    // An edit with no section: refused beside the sections, nothing changed.
    let r = b
        .post(
            "/admin/schedules/morning",
            &[("csrf", &csrf), ("cron", "0 9 * * *"), ("timezone", "UTC")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(after(&page, "<legend>Sections").contains("at least one section"));
    assert_eq!(
        store
            .schedule_by_name("morning")
            .await
            .unwrap()
            .unwrap()
            .cron,
        "30 6 * * 1-5"
    );

    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let page = o.get("/admin/schedules").await.text().await.unwrap();
    assert!(page.contains("/admin/schedules/morning") && !page.contains("New schedule"));
    assert!(!page.contains("/pause\"") && !page.contains("Pause"));
    let page = o
        .get("/admin/schedules/morning")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Send now") && !page.contains("Change the schedule"));
    let theirs = csrf_of(&page);
    for path in [
        "/admin/schedules/morning/pause",
        "/admin/schedules/morning/send",
        "/admin/schedules/morning/remove",
        "/admin/schedules",
    ] {
        let r = o
            .post(
                path,
                &[
                    ("csrf", &theirs),
                    ("confirm", "yes"),
                    ("confirm_name", "morning"),
                    ("name", "x"),
                    ("cron", "0 1 * * *"),
                    ("sections", "wmd"),
                ],
            )
            .await;
        assert_eq!(r.status(), 403, "{path}");
    }
    assert!(
        store
            .schedule_by_name("morning")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert!(!page.contains("Remove the schedule"));
    assert!(store.list_issues(None, 5).await.unwrap().is_empty());
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);

    // Removal: staff type the name again; its issues stay in the log.
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    app.reader("r@example.com", &["wmd"]).await;
    let issue = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(issue.clone()).await.unwrap();
    let page = b
        .get("/admin/schedules/morning")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<label for="confirm_name">"#));
    for (token, typed, status) in [
        (csrf.as_str(), "", 422),
        (csrf.as_str(), "Morning", 422),
        ("forged", "morning", 403),
    ] {
        let r = b
            .post(
                "/admin/schedules/morning/remove",
                &[("csrf", token), ("confirm_name", typed)],
            )
            .await;
        assert_eq!(r.status(), status, "{typed:?}");
        if status == 422 {
            let page = r.text().await.unwrap();
            assert!(
                after(&page, r#"id="confirm_name""#).contains("name exactly to remove it"),
                "the reason beside the field"
            );
            // The form is at the foot of a long page: the browser goes to the field.
            let field = after(&page, r#"id="confirm_name""#)
                .split('>')
                .next()
                .unwrap();
            assert!(field.contains("autofocus"), "{field}");
            // Keyboard users can skip the navigation, first thing on the page.
            let body = &after(&page, "<body>")["<body>".len()..];
            assert!(
                body.trim_start()
                    .starts_with(r##"<a class="skip" href="#main">"##)
            );
        }
        assert_eq!(store.list_schedules().await.unwrap().len(), 1);
    }
    let r = b
        .post(
            "/admin/schedules/morning/remove",
            &[("csrf", &csrf), ("confirm_name", "morning")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(store.list_schedules().await.unwrap().is_empty());
    let page = b.get("/admin/schedules/morning").await;
    assert_eq!(page.status(), 404);
    let kept = b
        .get(&format!("/admin/issues/{}", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(kept.contains("1 reader"), "{kept}");
    assert_eq!(
        b.get(&format!("/admin/log?issue={}", issue.id))
            .await
            .status(),
        200
    );
}
both_backends!(schedules_are_paused_resumed_and_changed_by_staff_only);

/// An issue's page shows where its delivery stands and staff retry what failed; the log
/// pages through every send without repeating one, finds one address's mail, shows SMTP
/// replies as text, and says what is wrong with a filter beside it.
async fn issues_and_the_delivery_log_show_what_happened(backend: Backend) {
    use common::smtp::Behaviour;
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    let csv: String = std::iter::once("email".to_string())
        .chain((0..60).map(|i| format!("r{i:02}@example.com")))
        .collect::<Vec<_>>()
        .join("\n");
    app.services
        .subs
        .import_csv(csv.as_bytes(), &["wmd".to_string()], true)
        .await
        .unwrap();
    app.add_article(
        "wmd",
        "Inspectors return",
        "https://news.example.com/a1",
        "Nothing.",
    )
    .await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 7, 0, 5);
    let issue = app.tick().await.remove(0).issue;
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    // Before delivery: on its way, the page reloads itself.
    let page = b
        .get(&format!("/admin/issues/{}", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("http-equiv=\"refresh\"") && page.contains("delivering"),
        "{page}"
    );
    // Only a browser without script reloads the page (it can ask not to): with script,
    // the progress alone is fetched again, with a control to pause it.
    let head = &page[..page.find("</head>").unwrap()];
    assert!(
        head.contains(r#"<noscript><meta http-equiv="refresh""#),
        "{head}"
    );
    let progress = format!("/admin/issues/{}/progress", issue.id);
    assert!(page.contains(&format!(r#"data-live="{}{progress}""#, app.base)));
    assert!(page.contains(r#"id="live-toggle" aria-pressed="false""#));
    assert!(page.contains(r#"aria-live="polite""#));
    let still = b
        .get(&format!("/admin/issues/{}?still=1", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(!still.contains("http-equiv=\"refresh\""));
    // The list likewise: its table is kept up to date by script, reloaded without it.
    let list = b.get("/admin/issues").await.text().await.unwrap();
    assert!(
        list.contains(r#"<noscript><meta http-equiv="refresh""#)
            && list.contains(r#"<div id="issues-list" data-live-page>"#)
            && list.contains(r#"id="live-toggle""#),
        "{list}"
    );
    let list = b.get("/admin/issues?still=1").await.text().await.unwrap();
    assert!(!list.contains("http-equiv=\"refresh\"") && list.contains("data-live-page"));
    let fragment = b.get(&progress).await;
    assert_eq!(fragment.status(), 200);
    let fragment = fragment.text().await.unwrap();
    assert!(
        fragment.contains("<strong>delivering</strong>: 0 of 60 settled (0%).")
            && fragment.contains(">queued</a></td><td>60<")
            && !fragment.contains("<html"),
        "{fragment}"
    );
    // Not for anyone who is not logged in.
    let anon = app.get(&progress).await;
    assert_ne!(anon.status(), 200);
    app.smtp().set_behaviour(Behaviour {
        reject_rcpt: Some((
            "r07@example.com".into(),
            554,
            "5.7.1 <b>blocked</b> <script>alert(3)</script>".into(),
        )),
        ..Default::default()
    });
    app.deliver().await;
    let page = b
        .get(&format!("/admin/issues/{}", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "settled: no reload"
    );
    let list = b.get("/admin/issues").await.text().await.unwrap();
    assert!(!list.contains("data-live-page") && !list.contains("live-toggle"));
    assert!(page.contains("<strong>settled</strong>"), "{page}");
    assert!(page.contains("60 of 60 settled"), "{page}");
    // The fragment says it is settled: the script stops asking.
    let fragment = b.get(&progress).await.text().await.unwrap();
    assert!(
        fragment.contains(r#"<p id="progress-summary" data-settled>"#),
        "{fragment}"
    );
    let counts = after(&page, "<table class=\"counts\">");
    assert!(
        counts.contains(">sent</a></td><td>59<") && counts.contains(">failed</a></td><td>1<"),
        "{counts}"
    );
    assert!(!after(&page, "<dt>Finished</dt>").starts_with("<dt>Finished</dt><dd>not yet"));
    assert!(page.contains("Retry the 1 failed"));
    let issues = b.get("/admin/issues").await.text().await.unwrap();
    assert!(
        issues.contains("60 / 60") && issues.contains("1 failed"),
        "{issues}"
    );

    // The log, newest first, 50 a page; the next page starts where this one stopped.
    let first = b.get("/admin/log").await.text().await.unwrap();
    let ids = |page: &str| -> Vec<String> {
        page.match_indices("<code>&#60;d")
            .map(|(i, _)| page[i..].split("</code>").next().unwrap().to_string())
            .collect()
    };
    let one = ids(&first);
    assert_eq!(one.len(), 50, "{first}");
    let older = after(&first, "before=")
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let second = b
        .get(&format!("/admin/log?{older}"))
        .await
        .text()
        .await
        .unwrap();
    let second = if second.contains("<table") {
        second
    } else {
        panic!("{older}: {second}")
    };
    let two = ids(&second);
    assert_eq!(two.len(), 10);
    assert!(two.iter().all(|m| !one.contains(m)), "no row twice");
    assert!(second.contains(">Newest</a>") && !second.contains("before="));
    // By status: the one failure, its reply as text.
    let failed = b
        .get("/admin/log?status=failed")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&failed).len(), 1);
    assert!(failed.contains("r07@example.com"));
    assert!(
        failed.contains("&#60;script&#62;alert(3)&#60;/script&#62;")
            && !failed.contains("<script>alert(3)")
    );
    // By address: that reader's mail only, with a link to their page.
    let theirs = b
        .get("/admin/log?address=R07%40Example.com")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&theirs).len(), 1, "{theirs}");
    assert!(theirs.contains("/admin/subscribers/"));
    let nobody = b
        .get("/admin/log?address=who%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(nobody.contains("No subscriber has the address who@example.com"));
    // Bad filters: 400, the reason beside each field.
    let r = b
        .get("/admin/log?address=not-an-address&issue=twelve&since=yesterday")
        .await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(after(&page, "id=\"address\"").contains("address-error"));
    assert!(after(&page, "id=\"issue\"").contains("An issue number"));
    assert!(after(&page, "id=\"since\"").contains("A date and time"));
    // By issue and time: everything was changed at 07:00:05, nothing after 07:01.
    let by_issue = b
        .get(&format!("/admin/log?issue={}&status=sent", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&by_issue).len(), 50);
    let later = b
        .get("/admin/log?since=2026-03-02T07%3A01")
        .await
        .text()
        .await
        .unwrap();
    assert!(later.contains("No send matches these filters"), "{later}");
    let window = b
        .get("/admin/log?since=2026-03-02T07%3A00&until=2026-03-02T07%3A01&status=failed")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(ids(&window).len(), 1);
    // Follow live: the first page's rows are replaced in place by script, with a pause
    // control; without script it reloads itself.
    let live = b.get("/admin/log?live=1").await.text().await.unwrap();
    assert!(
        live.contains(r#"<noscript><meta http-equiv="refresh""#)
            && live.contains(r#"<div id="log-rows" data-live-page>"#)
            && live.contains(r#"id="live-toggle""#),
        "{live}"
    );
    let still = b.get("/admin/log").await.text().await.unwrap();
    assert!(!still.contains("data-live-page") && !still.contains("http-equiv=\"refresh\""));
    // The dashboard's tiles: red only for a problem that happened, each a link to what it
    // counts (the failed send, in the log, since 24 hours before).
    let dash = b.get("/admin").await.text().await.unwrap();
    let tile = |status: &str| {
        let at = dash
            .find(&format!("/log?status={status}&amp;since="))
            .unwrap_or_else(|| panic!("no {status} tile in {dash}"));
        dash[..at].rsplit("<a ").next().unwrap().to_string()
    };
    assert!(tile("failed").contains(r#"class="tile problem""#), "{dash}");
    assert!(tile("sent").contains(r#"class="tile""#), "{dash}");
    // The chart's numbers, as a table a screen reader can read: the 60 mails of 2 March.
    let days = after(&dash, "The numbers, day by day");
    assert!(
        days.contains(r#"<th scope="row">Mon 2 Mar</th><td>59</td>"#),
        "{days}"
    );
    // No complaint came: zero, not red.
    let complaints = dash
        .split("<a ")
        .find(|a| a.contains("complaints in 24 h"))
        .unwrap();
    assert!(complaints.starts_with(r#"class="tile" "#), "{complaints}");
    assert!(
        complaints.contains(r#"<span class="n">0</span>"#),
        "{complaints}"
    );
    let href = dash
        .split("href=\"")
        .map(|h| h.split('"').next().unwrap())
        .find(|h| h.contains("/log?status=failed"))
        .unwrap()
        .replace("&amp;", "&");
    let path = href.trim_start_matches(&app.base);
    let failed = b.get(path).await.text().await.unwrap();
    assert_eq!(ids(&failed).len(), 1, "{href}: {failed}");

    // An operator sees the issue but cannot retry.
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let page = o
        .get(&format!("/admin/issues/{}", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Retry the"));
    let theirs = csrf_of(&page);
    let r = o
        .post(
            &format!("/admin/issues/{}/retry", issue.id),
            &[("csrf", &theirs)],
        )
        .await;
    assert_eq!(r.status(), 403);
    // Staff retry: the failed send is queued again, and goes out once the server takes it.
    let csrf = csrf_of(&b.get("/admin/issues").await.text().await.unwrap());
    let r = b
        .post(
            &format!("/admin/issues/{}/retry", issue.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = b
        .get(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .trim_start_matches(&app.base),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("1 failed send is queued again"), "{page}");
    assert!(page.contains("<dt>Finished</dt><dd>not yet"), "re-opened");
    app.smtp().set_behaviour(Behaviour::default());
    app.deliver().await;
    let page = b
        .get(&format!("/admin/issues/{}", issue.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<strong>sent</strong>"), "{page}");
    assert_eq!(app.smtp().to("r07@example.com").len(), 1);
    assert_eq!(
        b.get("/admin/issues/999999").await.status(),
        404,
        "an unknown issue"
    );
}
both_backends!(issues_and_the_delivery_log_show_what_happened);

/// Subscribers found by part of their address and by status; one subscriber's page shows
/// consent, mail and what came back; bounces show why; a suppression is lifted only
/// deliberately; export and erasure are staff's alone, erasure only with the address typed.
async fn subscribers_bounces_and_suppressions(backend: Backend) {
    let app = TestApp::spawn_with(Spawn::new(backend).returned_mail()).await;
    with_users(&app).await;
    app.digest_to(&["gone", "stay"]).await;
    app.subscribe_and_confirm("ann@example.net", &["wmd"]).await;
    app.return_fixture(&app.verp("gone@example.com"), "postfix-hard.eml")
        .await;
    let store = app.services.store.clone();
    let gone = store
        .subscriber_by_email("gone@example.com")
        .await
        .unwrap()
        .unwrap();
    for _ in 0..100 {
        if store
            .subscriber_by_id(gone.id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str()
            == "bounced"
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ann = store
        .subscriber_by_email("ann@example.net")
        .await
        .unwrap()
        .unwrap();

    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b.get("/admin/subscribers").await.text().await.unwrap();
    let tiles = after(&page, "aria-label=\"Subscribers by status\"");
    assert!(
        tiles.contains("<span class=\"n\">2</span> active")
            && tiles.contains("<span class=\"n\">1</span> bounced"),
        "{tiles}"
    );
    assert!(
        after(&page, "Active readers per section").contains("<td>2</td>"),
        "{page}"
    );
    let found = b
        .get("/admin/subscribers?q=GON")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        found.contains("gone@example.com")
            && !found.contains("stay@example.com")
            && !found.contains(">ann@")
    );
    // The start of an address, or "@domain" for a whole domain; LIKE's wildcards are
    // literal ("@%" is no domain here).
    let none = b
        .get("/admin/subscribers?q=example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        none.contains("No subscriber matches"),
        "only the start: {none}"
    );
    let domain = b
        .get("/admin/subscribers?q=%40Example.NET")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        domain.contains(">ann@example.net<") && !domain.contains("gone@"),
        "{domain}"
    );
    let none = b
        .get("/admin/subscribers?q=%40%25")
        .await
        .text()
        .await
        .unwrap();
    assert!(none.contains("No subscriber matches"), "{none}");
    let bounced = b
        .get("/admin/subscribers?status=bounced")
        .await
        .text()
        .await
        .unwrap();
    assert!(bounced.contains("gone@example.com") && !bounced.contains("stay@example.com"));
    assert_eq!(
        b.get("/admin/subscribers?status=asleep").await.status(),
        400
    );
    // Ann's page: her consent (the form she used, from where) and her two mails.
    let page = b
        .get(&format!("/admin/subscribers/{}", ann.id))
        .await
        .text()
        .await
        .unwrap();
    let consent = after(&page, "<h2>Consent</h2>");
    assert!(consent.contains("from 127.0.0.1"), "{consent}");
    assert!(!consent.contains("<dt>Confirmed</dt><dd>not yet"));
    assert!(
        page.contains("Mail sent (2)") && page.contains(">confirm<") && page.contains(">welcome<"),
        "{page}"
    );
    // Gone's page: suppressed, and the bounce with its diagnostic shown as text.
    let page = b
        .get(&format!("/admin/subscribers/{}", gone.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Suppressed (bounced"), "{page}");
    assert!(
        page.contains("What came back (1)") && page.contains("&#60;gone@example.org&#62;"),
        "{page}"
    );
    let bounces = b.get("/admin/bounces").await.text().await.unwrap();
    assert!(
        bounces.contains("gone@example.com") && bounces.contains(">hard<"),
        "{bounces}"
    );
    let id = after(&bounces, "/admin/bounces/")["/admin/bounces/".len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let raw = b
        .get(&format!("/admin/bounces/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains("Final-Recipient: rfc822; gone@example.org")
            && raw.contains("5.1.1 &#60;gone@example.org&#62;"),
        "{raw}"
    );
    // From the returned message to the mail it answers, its reader and its line in the log.
    let answers = after(&raw, "<dt>Mail it answers</dt>");
    let answers = &answers[..answers.find("</dd>").unwrap()];
    assert!(
        answers.contains("now bounced")
            && answers.contains("address=gone%40example.com\">in the delivery log</a>"),
        "{answers}"
    );
    assert!(raw.contains(&format!("/admin/subscribers/{}", gone.id)));
    assert_eq!(b.get("/admin/bounces?kind=bogus").await.status(), 400);
    assert!(
        b.get("/admin/bounces?kind=complaint")
            .await
            .text()
            .await
            .unwrap()
            .contains("Nothing has come back")
    );

    // Suppressions: look up, lift only with the box ticked.
    let page = b
        .get("/admin/suppressions?address=gone%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("is suppressed (bounced") && page.contains("Lift the suppression"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/admin/suppressions/lift",
            &[("csrf", &csrf), ("address", "gone@example.com")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Tick the box"));
    assert!(
        store
            .is_suppressed(&herald::domain::sha256_hex("gone@example.com"))
            .await
            .unwrap()
    );
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let theirs = o
        .get("/admin/suppressions?address=gone%40example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(!theirs.contains("Lift the suppression") && !theirs.contains("Suppress an address"));
    let theirs = csrf_of(&theirs);
    for (path, form) in [
        (
            "/admin/suppressions/lift",
            vec![
                ("csrf", theirs.as_str()),
                ("address", "gone@example.com"),
                ("confirm", "yes"),
            ],
        ),
        (
            "/admin/suppressions",
            vec![("csrf", theirs.as_str()), ("address", "stay@example.com")],
        ),
        (
            &format!("/admin/subscribers/{}/erase", ann.id) as &str,
            vec![("csrf", theirs.as_str()), ("confirm", "ann@example.net")],
        ),
    ] {
        assert_eq!(o.post(path, &form).await.status(), 403, "{path}");
    }
    assert_eq!(
        o.get(&format!("/admin/subscribers/{}/export.json", ann.id))
            .await
            .status(),
        403
    );
    let r = b
        .post(
            "/admin/suppressions/lift",
            &[
                ("csrf", &csrf),
                ("address", "gone@example.com"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(
        !store
            .is_suppressed(&herald::domain::sha256_hex("gone@example.com"))
            .await
            .unwrap()
    );
    assert_eq!(
        app.subscriber_status("gone@example.com").await.as_deref(),
        Some("unsubscribed")
    );
    // Suppress by hand: a bad reason is refused beside it.
    let r = b
        .post(
            "/admin/suppressions",
            &[
                ("csrf", &csrf),
                ("address", "stay@example.com"),
                ("reason", "two words"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(after(&r.text().await.unwrap(), "id=\"reason\"").contains("One word"));
    let r = b
        .post(
            "/admin/suppressions",
            &[
                ("csrf", &csrf),
                ("address", "stay@example.com"),
                ("reason", "legal"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.subscriber_status("stay@example.com").await.as_deref(),
        Some("unsubscribed")
    );

    // Export: everything, as a download.
    let r = b
        .get(&format!("/admin/subscribers/{}/export.json", ann.id))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["email"], "ann@example.net");
    assert_eq!(json["sends"].as_array().unwrap().len(), 2);
    // Erase: not without the address typed; then gone, the log keeping no address.
    let r = b
        .post(
            &format!("/admin/subscribers/{}/erase", ann.id),
            &[("csrf", &csrf), ("confirm", "ann@")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(store.subscriber_by_id(ann.id).await.unwrap().is_some());
    // Her vacation reply came back, quoting her address: erasure takes that too.
    let to = app.verp("ann@example.net");
    let raw =
        common::returned::fixture("vacation.eml").replace("bounces+REF@news.herald.example", &to);
    app.send_returned(&to, &format!("X-Original-From: ann@example.net\r\n{raw}"))
        .await
        .unwrap();
    assert!(
        app.dump_table("SELECT raw FROM returned_messages")
            .await
            .contains("ann@example.net")
    );
    let r = b
        .post(
            &format!("/admin/subscribers/{}/erase", ann.id),
            &[("csrf", &csrf), ("confirm", "Ann@Example.net")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(store.subscriber_by_id(ann.id).await.unwrap().is_none());
    let kept = app.dump_table("SELECT raw FROM returned_messages").await;
    assert!(!kept.contains("ann@example.net"), "{kept}");
    assert_eq!(
        b.get(&format!("/admin/subscribers/{}", ann.id))
            .await
            .status(),
        404
    );
    let log = b.get("/admin/log").await.text().await.unwrap();
    assert!(!log.contains("ann@example.net") && log.contains("<em>erased</em>"));
}
both_backends!(subscribers_bounces_and_suppressions);

/// `herald domains …` against the test's database, as an operator would run it.
fn domains_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    herald_cli(app, &[&["domains"], args].concat())
}

/// `herald …` against the test's database.
fn herald_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    herald_command(app, args).output().unwrap()
}

/// The command [`herald_cli`] runs, for a caller that needs more of it (standard input).
fn herald_command(app: &TestApp, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    c.args(args)
        .env("HERALD_DATABASE__URL", &app.db_url)
        .env(
            "HERALD_SECRET_KEY",
            "domains-test-secret-domains-test-secret-01",
        )
        .env("HERALD_MAIL__URL", "maildir:outbox")
        .env_remove("HERALD_CONFIG");
    c
}

/// A blocklisting pauses its domain; it never purges its readers. 30 readers at one domain
/// whose server refuses every recipient with `550 5.7.1 … blocked using zen.spamhaus.org`:
/// after 20 refusals (of the last 100 sends there) the domain is paused, the other 10 wait
/// in the queue, nobody is suppressed, and the pause shows on /healthz, the dashboard and
/// `herald domains list`. When the relay accepts again, the waiting mail goes after the
/// back-off by itself; a pause that comes back within a day lasts twice as long, and
/// `herald domains resume` lifts it at once.
async fn a_blocklisting_pauses_its_domain_and_purges_nobody(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // On the wall clock: `herald domains` (another process) reads it too.
    app.clock.set(chrono::Utc::now());
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    for i in 0..30 {
        app.reader(&format!("r{i:02}@blocked.example"), &["wmd"])
            .await;
    }
    app.reader("fine@example.com", &["wmd"]).await;
    let words = "5.7.1 Service unavailable; client [192.0.2.10] blocked using zen.spamhaus.org";
    let blocklisted = || common::Behaviour {
        reject_rcpt: Some(("@blocked.example".into(), 550, words.into())),
        ..Default::default()
    };
    app.smtp().set_behaviour(blocklisted());
    app.add_article("wmd", "First story", "https://news.example.org/1", "s")
        .await;
    app.add_schedule("m", "* * * * *", &["wmd"]).await;
    app.clock.advance(Duration::minutes(1));
    app.tick().await;
    app.deliver().await;

    let count = |status: &'static str| {
        let app = &app;
        async move {
            app.dump_table(match status {
                "failed" => "SELECT CAST(COUNT(*) AS TEXT) FROM sends WHERE email LIKE '%@blocked.example' AND status = 'failed'",
                "waiting" => "SELECT CAST(COUNT(*) AS TEXT) FROM sends WHERE email LIKE '%@blocked.example' AND status IN ('queued', 'retrying')",
                _ => "SELECT CAST(COUNT(*) AS TEXT) FROM sends WHERE email LIKE '%@blocked.example' AND status = 'sent'",
            })
            .await
            .trim()
            .to_string()
        }
    };
    assert_eq!(count("failed").await, "20");
    assert_eq!(count("waiting").await, "10", "the rest wait, not failed");
    let failed = app
        .dump_table("SELECT last_reply FROM sends WHERE status = 'failed' LIMIT 1")
        .await;
    assert!(
        failed.contains("zen.spamhaus.org"),
        "the provider's words: {failed}"
    );
    assert!(
        app.smtp().last_to("fine@example.com").is_some(),
        "other domains go on"
    );
    let statuses = app
        .dump_table("SELECT DISTINCT status FROM subscribers")
        .await;
    assert_eq!(statuses.trim(), "active", "nobody suppressed");
    assert_eq!(
        app.dump_table("SELECT CAST(COUNT(*) AS TEXT) FROM suppressions")
            .await
            .trim(),
        "0"
    );

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200, "degraded is still up");
    let health = health.text().await.unwrap();
    assert!(
        health.starts_with("degraded\n") && health.contains("blocked.example"),
        "{health}"
    );
    let mut b = Browser::new(&app);
    b.log_in(OLGA).await;
    let dashboard = b.get("/admin").await.text().await.unwrap();
    assert!(
        after(&dashboard, "Paused domains").contains("blocked.example"),
        "{dashboard}"
    );
    // An operator may not retry its failed mail; staff see the button for it.
    assert!(!dashboard.contains("Retry its failed digests"));
    let mut s = Browser::new(&app);
    s.log_in(ED).await;
    let dashboard = s.get("/admin").await.text().await.unwrap();
    assert!(
        after(&dashboard, "Paused domains").contains(
            r#"<input type="hidden" name="domain" value="blocked.example"><button type="submit" class="secondary">Retry its failed digests</button>"#
        ),
        "{dashboard}"
    );
    let listed = domains_cli(&app, &["list"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && out.contains("blocked.example"),
        "{out}"
    );
    assert!(
        out.contains("20 refusals") && out.contains("zen.spamhaus.org"),
        "{out}"
    );

    // Still paused: nothing is tried.
    app.clock.advance(Duration::minutes(10));
    app.deliver().await;
    assert_eq!(count("waiting").await, "10");
    // The listing is lifted, and the back-off (15 min) has passed: the mail goes.
    app.smtp().set_behaviour(common::Behaviour::default());
    app.clock.advance(Duration::minutes(6));
    app.deliver().await;
    assert_eq!(count("waiting").await, "0");
    assert_eq!(count("sent").await, "10");
    let sent = app
        .dump_table("SELECT DISTINCT CAST(attempts AS TEXT) FROM sends WHERE email LIKE '%@blocked.example' AND status = 'sent'")
        .await;
    assert_eq!(sent.trim(), "1", "waiting for a pause is not an attempt");
    assert_eq!(app.get("/healthz").await.text().await.unwrap(), "ok\n");

    // Listed again the same day: the pause doubles, and an operator lifts it by hand.
    app.smtp().set_behaviour(blocklisted());
    app.add_article("wmd", "Second story", "https://news.example.org/2", "s")
        .await;
    app.clock.advance(Duration::minutes(1));
    app.tick().await;
    app.deliver().await;
    let json = domains_cli(&app, &["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["domain"], "blocked.example");
    assert_eq!(v[0]["backoff_secs"], 1800, "{v}");
    app.smtp().set_behaviour(common::Behaviour::default());
    let resumed = domains_cli(&app, &["resume", "blocked.example"]);
    assert!(resumed.status.success(), "{resumed:?}");
    let again = domains_cli(&app, &["resume", "blocked.example"]);
    assert_eq!(again.status.code(), Some(1), "not paused any more");
    app.services.engine.domains().invalidate();
    app.deliver().await;
    assert_eq!(count("waiting").await, "0", "sent at once after the resume");
}
both_backends!(a_blocklisting_pauses_its_domain_and_purges_nobody);

/// Sections are edited (the slug stays); articles are listed per section, found by title,
/// and added by hand, with a bad field refused beside it; markup in them stays text.
async fn sections_are_edited_and_articles_added_by_hand(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.add_section("cyber", "Cyber").await;
    app.add_article(
        "wmd",
        "Inspectors return",
        "https://news.example.com/a1",
        "Nothing found.",
    )
    .await;
    app.add_article(
        "cyber",
        "Worm spreads",
        "https://news.example.com/c1",
        "Patch now.",
    )
    .await;
    let store = app.services.store.clone();
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b.get("/admin/sections/wmd").await.text().await.unwrap();
    assert!(page.contains("Change it") && page.contains("value=\"WMD\""));
    let csrf = csrf_of(&page);
    let r = b
        .post(
            "/admin/sections/wmd",
            &[
                ("csrf", &csrf),
                ("name", "Weapons"),
                ("description", "What inspectors find"),
                ("feed", "ftp://nope"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(
        after(&page, "id=\"feed\"").contains("must be an http(s) URL"),
        "{page}"
    );
    assert!(page.contains("value=\"Weapons\""), "what was typed is kept");
    let r = b
        .post(
            "/admin/sections/wmd",
            &[
                ("csrf", &csrf),
                ("name", "Weapons"),
                ("description", "What inspectors find"),
                ("feed", "https://news.example.com/wmd.rss"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let wmd = store
        .list_sections()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.slug == "wmd")
        .unwrap();
    assert_eq!(
        (wmd.name.as_str(), wmd.description.as_str()),
        ("Weapons", "What inspectors find")
    );
    assert_eq!(
        wmd.feed_url.as_deref(),
        Some("https://news.example.com/wmd.rss")
    );
    // An error page keeps the navigation bar and the way out.
    let r = b.get("/admin/sections/nope").await;
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(r#"<nav aria-label="Console">"#) && page.contains("Log out"),
        "{page}"
    );

    // Articles: all, per section, by title.
    let all = b.get("/admin/articles").await.text().await.unwrap();
    assert!(all.contains("Inspectors return") && all.contains("Worm spreads"));
    let cyber = b
        .get("/admin/articles?section=cyber")
        .await
        .text()
        .await
        .unwrap();
    assert!(cyber.contains("Worm spreads") && !cyber.contains("Inspectors return"));
    let found = b
        .get("/admin/articles?q=INSPECT")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains("Inspectors return") && !found.contains("Worm spreads"));
    assert_eq!(b.get("/admin/articles?section=nope").await.status(), 400);
    // Added by hand; a bad URL is refused beside the field.
    let r = b
        .post(
            "/admin/articles",
            &[
                ("csrf", &csrf),
                ("section", "cyber"),
                ("title", "Breach"),
                ("url", "javascript:alert(1)"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(after(&r.text().await.unwrap(), "id=\"url\"").contains("must be an http(s) URL"));
    let r = b
        .post(
            "/admin/articles",
            &[
                ("csrf", &csrf),
                ("section", "cyber"),
                ("title", "Breach <script>alert(4)</script>"),
                ("url", "https://news.example.com/c2"),
                ("summary", "<p onclick=\"x()\">Details</p>"),
                ("author", "Pat"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = b
        .get("/admin/articles?section=cyber")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Breach &#60;script&#62;alert(4)&#60;/script&#62;")
            && !page.contains("<script>alert(4)")
    );
    let cyber_id = store
        .list_sections()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.slug == "cyber")
        .unwrap()
        .id;
    let stored = store.list_articles(Some(cyber_id), 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        !stored[0].summary_html.contains("onclick"),
        "{}",
        stored[0].summary_html
    );

    // An operator reads, is offered no form, and may not post.
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let page = o.get("/admin/articles").await.text().await.unwrap();
    assert!(page.contains("Breach") && !page.contains("Add an article by hand"));
    let theirs = csrf_of(&page);
    let page = o.get("/admin/sections/wmd").await.text().await.unwrap();
    assert!(!page.contains("Change it"));
    for path in ["/admin/articles", "/admin/sections/wmd"] {
        let r = o
            .post(
                path,
                &[
                    ("csrf", &theirs),
                    ("section", "cyber"),
                    ("name", "X"),
                    ("title", "T"),
                    ("url", "https://news.example.com/x"),
                ],
            )
            .await;
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(store.list_articles(None, 10).await.unwrap().len(), 3);
}
both_backends!(sections_are_edited_and_articles_added_by_hand);

/// "Stop this issue": staff type the issue's number; what was not sent is cancelled and the
/// page says how much went out before. A mistyped number is refused beside the field; an
/// operator sees no form. Pausing its schedule links the stop. `herald issues stop` does
/// the same from a shell.
async fn an_issue_is_stopped_from_its_page_or_the_shell(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    for i in 0..5 {
        app.reader(&format!("r{i}@example.com"), &["wmd"]).await;
    }
    let issue = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(issue.clone()).await.unwrap();
    let path = format!("/admin/issues/{}", issue.id);
    let store = app.services.store.clone();

    // An operator sees where it stands but no stop.
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let page = o.get(&path).await.text().await.unwrap();
    assert!(
        page.contains("delivering") && !page.contains("Stop this issue"),
        "{page}"
    );

    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    // Pausing the schedule says it does not stop this issue, and links the stop.
    let csrf = csrf_of(&b.get("/admin/schedules").await.text().await.unwrap());
    let r = b
        .post("/admin/schedules/morning/pause", &[("csrf", &csrf)])
        .await;
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let said = b
        .get(to.trim_start_matches(&app.base))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        said.contains(&format!(
            r##"/admin/issues/{}#stop">Stop issue #{}"##,
            issue.id, issue.id
        )),
        "{said}"
    );
    let page = b.get(&path).await.text().await.unwrap();
    assert!(
        page.contains(r#"<h2 id="stop">Stop this issue</h2>"#),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let stop = format!("{path}/stop");
    for typed in ["", "12345", "morning"] {
        let r = b
            .post(&stop, &[("csrf", &csrf), ("confirm_id", typed)])
            .await;
        assert_eq!(r.status(), 422, "{typed:?}");
        let page = r.text().await.unwrap();
        let field = after(&page, r#"id="confirm_id""#);
        assert!(field.contains("number exactly to stop it"), "{field}");
        assert!(field.split('>').next().unwrap().contains("autofocus"));
    }
    assert_eq!(
        herald::digests::issue_with_counts(store.as_ref(), issue.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        "delivering"
    );
    // One of the five went out before the stop (as a worker records it).
    settle_next(
        &app,
        herald::store::SendOutcome::Sent {
            reply: "250 ok".into(),
        },
    )
    .await;
    let r = b
        .post(
            &stop,
            &[("csrf", &csrf), ("confirm_id", &issue.id.to_string())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = b.get(&path).await.text().await.unwrap();
    assert!(
        page.contains("This issue was stopped: 1 went out before the stop; 4 were cancelled"),
        "{page}"
    );
    assert!(page.contains("<strong>stopped</strong>") && page.contains("by <bdi>ed</bdi>"));
    assert!(!page.contains("Stop this issue</h2>") && !page.contains("http-equiv=\"refresh\""));
    assert_eq!(app.deliver().await, 0);
    assert_eq!(app.smtp().count(), 0);

    // From a shell: a second issue, stopped by number; again says it was; unknown: exit 1.
    app.add_article("wmd", "B", "https://news.example.org/b", "")
        .await;
    app.clock.advance(chrono::Duration::minutes(1));
    let second = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(second.clone()).await.unwrap();
    let id = second.id.to_string();
    let out = herald_cli(&app, &["issues", "stop", &id]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains(&format!(
            "issue #{id} stopped: 0 sent before the stop, 5 cancelled"
        )),
        "{said}"
    );
    let out = herald_cli(&app, &["issues", "stop", &id, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["already"].clone(), json["cancelled"].clone()),
        (true.into(), 0.into())
    );
    assert!(
        json["stopped_by"].as_str().unwrap().starts_with("cli ("),
        "{json}"
    );
    let out = herald_cli(&app, &["issues", "stop", "9999"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no issue #9999"),
        "{out:?}"
    );
    let list = herald_cli(&app, &["issues", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("stopped"),
        "{list:?}"
    );
    assert_eq!(app.deliver().await, 0);

    // An issue that has sent everything has nothing to stop, and stays as it finished.
    app.add_article("wmd", "C", "https://news.example.org/c", "")
        .await;
    app.clock.advance(chrono::Duration::minutes(1));
    let third = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(third.clone()).await.unwrap();
    assert_eq!(app.deliver().await, 5);
    let out = herald_cli(&app, &["issues", "stop", &third.id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has nothing left to send"),
        "{out:?}"
    );
    let r = b
        .post(
            &format!("/admin/issues/{}/stop", third.id),
            &[("csrf", &csrf), ("confirm_id", &third.id.to_string())],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("Nothing to stop"));
    let third = herald::digests::issue_with_counts(store.as_ref(), third.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.state, "sent");
}
both_backends!(an_issue_is_stopped_from_its_page_or_the_shell);

/// Who did what, when and from where: a login and a refused one, changes in the console
/// (and a change the role refused), through the API and with the CLI, an export of a
/// reader's data — each one line of the audit log, readable at /admin/audit, filtered,
/// as CSV, and with `herald audit`; reads are not in it, and no line holds an address.
async fn every_change_is_in_the_audit_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    app.reader("ann@example.com", &["wmd"]).await;
    let store = app.services.store.clone();
    let mut b = Browser::new(&app);
    assert_eq!(b.log_in((ED.0, "not it")).await.status(), 401);
    assert_eq!(b.log_in(ED).await.status(), 303);
    let csrf = csrf_of(&b.get("/admin/schedules").await.text().await.unwrap());
    let r = b
        .post("/admin/schedules/morning/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 303);
    let r = b
        .post(
            "/admin/suppressions",
            &[
                ("csrf", &csrf),
                ("address", "bob@example.com"),
                ("reason", "manual"),
            ],
        )
        .await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let ann = store
        .subscriber_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    let r = b
        .get(&format!("/admin/subscribers/{}/export.json", ann.id))
        .await;
    assert_eq!(r.status(), 200);
    // A form refused for what was typed changed nothing: not in the log.
    let r = b
        .post(
            "/admin/schedules/morning/remove",
            &[("csrf", &csrf), ("confirm_name", "no")],
        )
        .await;
    assert_eq!(r.status(), 422);
    // An operator trying a change: refused, and in the log.
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let theirs = csrf_of(&o.get("/admin/schedules").await.text().await.unwrap());
    let r = o
        .post("/admin/schedules/morning/resume", &[("csrf", &theirs)])
        .await;
    assert_eq!(r.status(), 403);
    // The API and the CLI.
    let token = herald::access::issue_token(
        store.as_ref(),
        "cms",
        herald::store::Role::Staff,
        app.clock.now(),
    )
    .await
    .unwrap();
    let r = app
        .api_post("/api/v1/schedules/morning/resume", &token, None)
        .await;
    assert_eq!(r.status(), 200);
    let out = herald_cli(&app, &["schedules", "pause", "morning"]);
    assert!(out.status.success(), "{out:?}");
    let out = herald_cli(&app, &["schedules", "list"]);
    assert!(out.status.success(), "{out:?}");
    let out = herald_cli(&app, &["suppressions", "add", "carl@example.com"]);
    assert!(out.status.success(), "{out:?}");

    let all = store
        .audit_log(&herald::audit::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let lines: Vec<(String, String, String, String, String)> = all
        .iter()
        .rev()
        .map(|e| {
            (
                e.actor.clone(),
                e.via.to_string(),
                e.action.clone(),
                e.subject.clone(),
                e.outcome.clone(),
            )
        })
        .collect();
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown user".into());
    let cli = format!("cli ({user})");
    let l = |a: &str, v: &str, act: &str, s: &str, o: &str| {
        (
            a.to_string(),
            v.to_string(),
            act.to_string(),
            s.to_string(),
            o.to_string(),
        )
    };
    assert_eq!(
        lines,
        vec![
            l(
                "ed",
                "console",
                "console login",
                "",
                "refused: wrong name or password"
            ),
            l("ed", "console", "console login", "", "ok"),
            l(
                "ed",
                "console",
                "schedules pause",
                "morning",
                "ok, then /admin/schedules?paused=morning"
            ),
            l(
                "ed",
                "console",
                "suppressions add",
                "",
                "ok, then /admin/suppressions?done=added"
            ),
            l(
                "ed",
                "console",
                "subscribers export",
                &ann.id.to_string(),
                "ok"
            ),
            l("olga", "console", "console login", "", "ok"),
            l(
                "olga",
                "console",
                "schedules resume",
                "morning",
                "refused: not staff"
            ),
            l(
                "token cms",
                "api",
                "schedules resume",
                "morning",
                "ok (200)"
            ),
            l(&cli, "cli", "schedules pause", "morning", "ok"),
            l(&cli, "cli", "suppressions add", "<address>", "ok"),
        ]
    );
    assert!(
        all.iter()
            .all(|e| e.address.as_deref().is_none_or(|a| a == "127.0.0.1"))
    );
    assert!(
        all.iter()
            .filter(|e| e.via != herald::audit::Via::Cli)
            .all(|e| e.address.is_some())
    );
    let text = format!("{all:?}");
    assert!(!text.contains('@'), "an address in the audit log: {text}");

    // The console's page, filtered; and as CSV.
    let page = b
        .get("/admin/audit?action=schedules&who=ed")
        .await
        .text()
        .await
        .unwrap();
    let table = after(&page, "<table class=\"log\">");
    assert_eq!(table.matches("<tr>").count(), 2, "{table}");
    assert!(table.contains("schedules pause") && !table.contains("suppressions"));
    let r = b.get("/admin/audit.csv?who=olga").await;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("id,at,actor,via,address,action,subject,outcome\n"));
    assert!(csv.contains(",olga,console,127.0.0.1,schedules resume,morning,refused: not staff"));
    // `herald audit`, as JSON and filtered.
    let out = herald_cli(
        &app,
        &["audit", "--action", "console login", "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    let bad = herald_cli(&app, &["audit", "--format", "xml"]);
    assert_eq!(bad.status.code(), Some(2));
}
both_backends!(every_change_is_in_the_audit_log);

/// One address's or one domain's failed digests, across issues, back in the queue: from
/// the log (an address), the dashboard or `herald sends retry --domain` — never a stopped
/// issue's, never mail that was sent; the relay then gets exactly what failed.
async fn failed_digests_are_retried_by_address_or_domain(backend: Backend) {
    use common::smtp::Behaviour;
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    for r in ["a@blocked.example", "b@blocked.example", "c@fine.example"] {
        app.reader(r, &["wmd"]).await;
    }
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    app.smtp().set_behaviour(Behaviour {
        reject_rcpt: Some(("@blocked.example".into(), 554, "5.7.1 blocked".into())),
        ..Default::default()
    });
    // Issue 1: a and b fail, c is sent.
    app.add_article("wmd", "A", "https://news.example.org/a", "")
        .await;
    let first = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(first.clone()).await.unwrap();
    assert_eq!(app.deliver().await, 3);
    // Issue 2: a fails, then the issue is stopped (b and c cancelled).
    app.add_article("wmd", "B", "https://news.example.org/b", "")
        .await;
    app.clock.advance(chrono::Duration::minutes(1));
    let second = app.services.digests.run_now("morning").await.unwrap();
    app.services.digests.fill(second.clone()).await.unwrap();
    let store = app.services.store.clone();
    let one = settle_next(
        &app,
        herald::store::SendOutcome::Failed {
            reply: "554 5.7.1 blocked".into(),
        },
    )
    .await;
    assert_eq!(one.email.as_deref(), Some("a@blocked.example"));
    app.services
        .digests
        .stop_issue(second.id, "ed")
        .await
        .unwrap();

    // The log of a's mail offers the retry; it takes issue 1's row only.
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b
        .get("/admin/log?address=a%40blocked.example")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Retry the failed digests to <bdi>a@blocked.example</bdi>"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    app.smtp().set_behaviour(Behaviour::default());
    let r = b
        .post(
            "/admin/sends/retry",
            &[("csrf", &csrf), ("address", "A@Blocked.Example")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let said = b
        .get(to.trim_start_matches(&app.base))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        said.contains("1 failed digest to a@blocked.example is queued again."),
        "{said}"
    );
    // The rest of the domain from the shell: b's row of issue 1.
    let out = herald_cli(&app, &["sends", "retry", "--domain", "Blocked.Example"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 failed send to blocked.example re-queued"),
        "{out:?}"
    );
    // Nothing left to retry; nothing of fine.example ever failed.
    let r = b
        .post(
            "/admin/sends/retry",
            &[("csrf", &csrf), ("domain", "fine.example")],
        )
        .await;
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let said = b
        .get(to.trim_start_matches(&app.base))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        said.contains("Nothing to retry: no digest to addresses at fine.example"),
        "{said}"
    );
    // Neither a domain nor an address: refused, and so is a bare command.
    let r = b
        .post(
            "/admin/sends/retry",
            &[("csrf", &csrf), ("domain", "not a domain")],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(herald_cli(&app, &["sends", "retry"]).status.code(), Some(2));
    // The relay gets issue 1 for a and b, and nothing of the stopped issue 2.
    let before = app.smtp().count();
    // The CLI queued b's row at its own (the wall clock's) time: deliver from then on.
    app.clock.set(chrono::Utc::now() + Duration::seconds(1));
    let delivered = app.deliver().await;
    let log = store
        .send_log(&herald::store::LogQuery {
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    let log: Vec<String> = log
        .iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?} {:?}",
                r.issue_id, r.email, r.status, r.last_reply
            )
        })
        .collect();
    assert_eq!(delivered, 2, "{log:#?}");
    let got: Vec<String> = app.smtp().all()[before..]
        .iter()
        .map(|c| format!("{} {}", c.to[0], c.subject()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().all(|g| g.contains("@blocked.example")),
        "{got:?}"
    );
    let counts: std::collections::BTreeMap<String, i64> = store
        .issue_status_counts(second.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts.get("failed"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("cancelled"), Some(&2), "{counts:?}");
    let first_counts: std::collections::BTreeMap<String, i64> = store
        .issue_status_counts(first.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(first_counts.get("sent"), Some(&3), "{first_counts:?}");
}
both_backends!(failed_digests_are_retried_by_address_or_domain);

/// Staff correct an article before it is mailed, hold one back until a time, withdraw one:
/// the digest that goes carries the correction and neither of the others; the held one
/// goes in the first digest after its time, the withdrawn one never (until put back). A
/// mailed article stays as it was mailed.
async fn articles_are_corrected_held_and_withdrawn(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_users(&app).await;
    app.add_section("wmd", "WMD").await;
    app.reader("ann@example.com", &["wmd"]).await;
    app.add_schedule("morning", "0 7 * * *", &["wmd"]).await;
    app.set_time(2026, 3, 2, 6, 0, 0);
    for (title, url) in [
        ("Tpyo in the title", "https://news.example.org/1"),
        ("Embargoed until Tuesday", "https://news.example.org/2"),
        ("Pulled by legal", "https://news.example.org/3"),
    ] {
        app.add_article("wmd", title, url, "").await;
    }
    let store = app.services.store.clone();
    let id_of =
        |rows: &[herald::store::Article], t: &str| rows.iter().find(|a| a.title == t).unwrap().id;
    let rows = store.list_articles(None, 10).await.unwrap();
    let (typo, embargo, pulled) = (
        id_of(&rows, "Tpyo in the title"),
        id_of(&rows, "Embargoed until Tuesday"),
        id_of(&rows, "Pulled by legal"),
    );
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let page = b
        .get(&format!("/admin/articles/{typo}"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    // A correction, checked as a new article is.
    let r = b
        .post(
            &format!("/admin/articles/{typo}"),
            &[
                ("csrf", &csrf),
                ("title", "Typo in the title"),
                ("summary", "<b>Fixed</b><script>x</script>"),
                ("image", "http://insecure.example/p.jpg"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(after(&r.text().await.unwrap(), r#"id="image""#).contains("must be an https URL"));
    let r = b
        .post(
            &format!("/admin/articles/{typo}"),
            &[
                ("csrf", &csrf),
                ("title", "Typo in the title"),
                ("summary", "<b>Fixed</b><script>x</script>"),
                ("image", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    // Held until Tuesday 07:30 (the newsroom's zone, UTC here).
    let r = b
        .post(
            &format!("/admin/articles/{embargo}/hold"),
            &[("csrf", &csrf), ("until", "2026-03-03T07:30")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = b
        .post(
            &format!("/admin/articles/{embargo}/hold"),
            &[("csrf", &csrf), ("until", "Tuesday")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = b
        .post(
            &format!("/admin/articles/{pulled}/withdraw"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let list = b.get("/admin/articles").await.text().await.unwrap();
    assert!(
        list.contains("<strong class=\"problem\">withdrawn</strong>")
            && list.contains("held until"),
        "{list}"
    );

    // Monday 07:00: only the correction goes.
    app.set_time(2026, 3, 2, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let mail = app.smtp().last_to("ann@example.com").unwrap();
    let text = mail.text();
    assert!(
        text.contains("Typo in the title") && text.contains("Fixed"),
        "{text}"
    );
    assert!(
        !text.contains("script") && !text.contains("Embargoed") && !text.contains("Pulled"),
        "{text}"
    );
    // Mailed: it stays as it was mailed.
    let r = b
        .post(
            &format!("/admin/articles/{typo}"),
            &[
                ("csrf", &csrf),
                ("title", "Something else"),
                ("summary", ""),
                ("image", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("it stays as it was mailed")
    );
    assert_eq!(
        store.article(typo).await.unwrap().unwrap().title,
        "Typo in the title"
    );
    // Tuesday 07:00, before the hold ends: nothing new to send.
    app.set_time(2026, 3, 3, 7, 0, 0);
    let made = app.tick().await;
    assert_eq!(made[0].issue.article_count, 0, "held until 07:30");
    // Wednesday: the embargoed story goes; the withdrawn one does not, until put back.
    app.set_time(2026, 3, 4, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let text = app.smtp().last_to("ann@example.com").unwrap().text();
    assert!(
        text.contains("Embargoed until Tuesday") && !text.contains("Pulled"),
        "{text}"
    );
    // Days have passed: a new session.
    let mut b = Browser::new(&app);
    b.log_in(ED).await;
    let csrf = csrf_of(&b.get("/admin/articles").await.text().await.unwrap());
    let r = b
        .post(
            &format!("/admin/articles/{pulled}/restore"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("?done=restored")
    );
    app.set_time(2026, 3, 5, 7, 0, 0);
    app.tick().await;
    app.deliver().await;
    let text = app.smtp().last_to("ann@example.com").unwrap().text();
    assert!(text.contains("Pulled by legal"), "{text}");
    // Operators see where an article stands, and no form.
    let mut o = Browser::new(&app);
    o.log_in(OLGA).await;
    let page = o
        .get(&format!("/admin/articles/{pulled}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Withdraw it") && !page.contains("Hold until then"));
    assert_eq!(o.get("/admin/articles/999").await.status(), 404);
}
both_backends!(articles_are_corrected_held_and_withdrawn);

//! The staff and operator console at /admin, over HTTP as a browser speaks it: logging in
//! and out, sessions that outlive a restart and end when they should, CSRF on every
//! change, roles, failed logins limited, the console's own CSP, everything escaped.

mod common;
use chrono::Duration;
use common::{Backend, Spawn, TestApp};
use herald::store::ApiRole;

const ED: (&str, &str) = ("ed", "staff password 1");
const OLGA: (&str, &str) = ("olga", "operator password 2");

async fn with_users(app: &TestApp) {
    let store = app.services.store.as_ref();
    for ((name, pw), role) in [(ED, ApiRole::Staff), (OLGA, ApiRole::Operator)] {
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
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: Vec::new(),
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
            .app
            .http
            .get(format!("{}{path}", self.app.base))
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
            .app
            .http
            .post(format!("{}{path}", self.app.base))
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
        page.contains("Dashboard") && page.contains("ed (staff)"),
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
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
    // The same client is limited for every name, known or not (it says nothing of which
    // names exist).
    assert_eq!(b.log_in(OLGA).await.status(), 429);
    assert_eq!(b.log_in(("nobody", "anything at all")).await.status(), 429);
    // The window passes.
    app.clock.advance(Duration::minutes(16));
    assert_eq!(b.log_in(ED).await.status(), 303);
}
both_backends!(failed_logins_are_limited_per_account_and_per_client);

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

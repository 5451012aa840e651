//! The configuration's rules, each with the key its error names.

use super::fields::{parse_imap_url, parse_mail_url};
use super::*;

#[test]
fn defaults_load() {
    let c = Config::defaults_with(&[]).unwrap();
    assert_eq!(c.database.url, "sqlite:var/herald.db");
    assert_eq!(
        c.mail.transport,
        MailTransportConfig::Maildir("var/outbox".into())
    );
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.mail.domain, "herald.example");
    assert!(c.secret_key.is_none());
}

#[test]
fn env_overrides_and_types() {
    let c = Config::defaults_with(&[
        (
            "mail.url",
            "smtp://news+relay:p%40ss+w@relay.example:587?tls=required",
        ),
        ("delivery.connections", "3"),
        ("http.trusted_proxies", "127.0.0.1, ::1"),
    ])
    .unwrap();
    assert_eq!(
        c.mail.transport,
        MailTransportConfig::Smtp {
            host: "relay.example".into(),
            port: 587,
            tls: Tls::StartTls,
            // A `+` is a plus in a URL's user part, not a space (as in a form).
            credentials: Some(("news+relay".into(), Secret::new("p@ss+w"))),
        }
    );
    assert_eq!(c.delivery.connections, 3);
    assert_eq!(c.http.trusted_proxies.len(), 2);
}

/// The error of these settings, or of the key files they name (the step after).
fn err_of(overrides: &[(&str, &str)]) -> String {
    Config::defaults_with(overrides)
        .and_then(|c| crate::keys::Keys::load(&c).map(|_| c))
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_the_key() {
    assert!(err_of(&[("http.listen", "nope")]).contains("http.listen"));
    assert!(err_of(&[("mail.url", "ftp://x")]).contains("mail.url"));
    assert!(err_of(&[("database.url", "mysql://x")]).contains("database.url"));
    assert!(err_of(&[("delivery.connections", "many")]).contains("delivery.connections"));
    assert!(err_of(&[("subscriptions.confirm_ttl", "soon")]).contains("confirm_ttl"));
    assert!(err_of(&[("secret_key", "short")]).contains("secret_key"));
    assert!(err_of(&[("nosuch.key", "1")]).contains("nosuch.key"));
    assert!(err_of(&[("site.url", "javascript:alert(1)")]).contains("site.url"));
    assert!(err_of(&[("site.accent_color", "red;x")]).contains("site.accent_color"));
}

/// `mail.url` and `bounces.imap_url` read `tls=` the same way (one parser).
#[test]
fn both_server_urls_read_tls_alike() {
    for (plain, implicit) in [
        ("smtp://u:p@h", "smtps://u:p@h"),
        ("imap://u:p@h", "imaps://u:p@h"),
    ] {
        let tls_of = |url: &str| -> Result<Tls, String> {
            if url.starts_with("smtp") {
                match parse_mail_url(url)? {
                    MailTransportConfig::Smtp { tls, .. } => Ok(tls),
                    MailTransportConfig::Maildir(_) => unreachable!(),
                }
            } else {
                Ok(parse_imap_url(url)?.tls)
            }
        };
        assert_eq!(tls_of(plain).unwrap(), Tls::None);
        assert_eq!(tls_of(&format!("{plain}?tls=none")).unwrap(), Tls::None);
        assert_eq!(
            tls_of(&format!("{plain}?tls=required")).unwrap(),
            Tls::StartTls
        );
        assert_eq!(tls_of(implicit).unwrap(), Tls::Implicit);
        assert_eq!(
            tls_of(&format!("{implicit}?tls=required")).unwrap(),
            Tls::Implicit
        );
        let e = tls_of(&format!("{implicit}?tls=none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls=\"none\""), "{e}");
        let e = tls_of(&format!("{plain}?tls=maybe"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls=required"), "{e}");
    }
    let imap = parse_imap_url("imaps://a%40b:p%2Fw@mail.example/Bounces%20In").unwrap();
    assert_eq!(
        (imap.user.as_str(), imap.password.0.as_str()),
        ("a@b", "p/w")
    );
    assert_eq!((imap.mailbox.as_str(), imap.port), ("Bounces In", 993));
}

#[test]
fn links_follow_the_listener_when_public_url_is_left_alone() {
    let c = Config::defaults_with(&[("http.listen", "0.0.0.0:9000")]).unwrap();
    assert_eq!(c.http.public_url, "http://127.0.0.1:9000");
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("http.public_url is not set")),
        "{:?}",
        c.warnings()
    );
    let c = Config::defaults_with(&[("http.listen", "[::]:9001")]).unwrap();
    assert_eq!(c.http.public_url, "http://[::1]:9001");
    let c = Config::defaults_with(&[("http.listen", "127.0.0.1:9002")]).unwrap();
    assert_eq!(c.http.public_url, "http://127.0.0.1:9002");
    let c = Config::defaults_with(&[
        ("http.listen", "0.0.0.0:9000"),
        ("http.public_url", "https://news.example.com/newsletter/"),
    ])
    .unwrap();
    assert_eq!(c.http.public_url, "https://news.example.com/newsletter");
    assert!(
        !c.warnings()
            .iter()
            .any(|w| w.contains("http.public_url is not set"))
    );
    let c = Config::defaults_with(&[]).unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn returned_mail_sources_are_checked() {
    let rp = ("mail.return_path", "bounces@bounces.example.com");
    let c = Config::defaults_with(&[
        rp,
        (
            "bounces.imap_url",
            "imaps://bounces%2Bnews%40example.com:p%40ss+1@imap.example.com/Bounces%20In",
        ),
        ("bounces.imap_move_to", "Done"),
    ])
    .unwrap();
    let imap = c.bounces.imap.unwrap();
    assert_eq!(
        (
            imap.host.as_str(),
            imap.port,
            imap.tls,
            imap.user.as_str(),
            imap.password.expose()
        ),
        (
            "imap.example.com",
            993,
            Tls::Implicit,
            "bounces+news@example.com",
            "p@ss+1"
        )
    );
    assert_eq!(imap.mailbox, "Bounces In");
    assert_eq!(imap.move_to.as_deref(), Some("Done"));
    assert!(
        !format!("{imap:?}").contains("p@ss"),
        "the password is redacted"
    );
    let plain = Config::defaults_with(&[rp, ("bounces.imap_url", "imap://u:p@127.0.0.1/")])
        .unwrap()
        .bounces
        .imap
        .unwrap();
    assert_eq!(
        (plain.port, plain.tls, plain.mailbox.as_str()),
        (143, Tls::None, "INBOX")
    );
    let starttls =
        Config::defaults_with(&[rp, ("bounces.imap_url", "imap://u:p@h?tls=required")]).unwrap();
    assert_eq!(starttls.bounces.imap.unwrap().tls, Tls::StartTls);
    for (k, v, why) in [
        ("bounces.imap_url", "pop3://u:p@h", "unknown scheme"),
        ("bounces.imap_url", "imaps://h/INBOX", "needs a user"),
        ("bounces.imap_url", "imaps://u:p@h?tls=maybe", "tls="),
    ] {
        let e = err_of(&[rp, (k, v)]);
        assert!(e.contains(k) && e.contains(why), "{e}");
    }
    let e = err_of(&[("bounces.imap_url", "imaps://u:p@h/INBOX")]);
    assert!(e.contains("mail.return_path"), "{e}");
    let e = err_of(&[
        rp,
        ("bounces.imap_url", "imaps://u:p@h/INBOX"),
        ("bounces.imap_move_to", "inbox"),
    ]);
    assert!(e.contains("bounces.imap_move_to"), "{e}");
    // SES by SNS needs both the certificates and the topics, and a readable certificate.
    let e = err_of(&[("bounces.sns_topics", "arn:aws:sns:us-east-1:1:t")]);
    assert!(e.contains("bounces.sns_certificates"), "{e}");
    let e = err_of(&[("bounces.sns_certificates", "/nonexistent/sns.pem")]);
    assert!(e.contains("bounces.sns_topics"), "{e}");
    let e = err_of(&[
        ("bounces.sns_certificates", "/nonexistent/sns.pem"),
        ("bounces.sns_topics", "arn:aws:sns:us-east-1:1:t"),
    ]);
    assert!(e.contains("cannot read"), "{e}");
    // List-Help: an https URL or a mailto address, nothing that could break the header.
    for ok in [
        "https://news.example.com/help",
        "mailto:help@news.example.com",
    ] {
        let c = Config::defaults_with(&[("mail.list_help", ok)]).unwrap();
        assert_eq!(c.mail.list_help.as_deref(), Some(ok));
    }
    for bad in [
        "help",
        "javascript:alert(1)",
        "mailto:nobody",
        "https://x.example/a>, <b",
    ] {
        assert!(
            err_of(&[("mail.list_help", bad)]).contains("mail.list_help"),
            "{bad}"
        );
    }
}

/// Nothing secret reaches a log through `Debug`: passwords in the database and relay
/// URLs, the secret key, the metrics token, the mailbox password.
#[test]
fn secrets_are_redacted_in_debug_output() {
    let c = Config::defaults_with(&[
        (
            "database.url",
            "postgres://herald:db-pass-1@db.example/herald",
        ),
        (
            "mail.url",
            "smtp://news:relay-pass-2@relay.example:587?tls=required",
        ),
        ("secret_key", "secret-key-secret-key-secret-key-3333"),
        ("http.metrics_token", "metrics-token-4444-4444"),
        ("mail.return_path", "bounces@bounces.example.com"),
        (
            "bounces.imap_url",
            "imaps://b:imap-pass-5@imap.example.com/INBOX",
        ),
    ])
    .unwrap();
    let shown = format!("{c:?}");
    for secret in [
        "db-pass-1",
        "relay-pass-2",
        "secret-key-secret",
        "metrics-token-4444",
        "imap-pass-5",
    ] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    assert!(shown.contains("[redacted]"));
    assert!(shown.contains("db.example"), "the rest stays readable");
}

#[test]
fn file_keys_are_checked() {
    let e = Config::from_sources(Some(("f.toml", "[http]\nlisen = \"x\"\n")), &[]).unwrap_err();
    assert!(e.to_string().contains("http.lisen"), "{e}");
    let e = Config::from_sources(Some(("f.toml", "[http\n")), &[]).unwrap_err();
    assert!(e.to_string().contains("f.toml"), "{e}");
}

/// Ed25519 keys as the base64 of their seed: no openssl needed in a unit test.
fn seed_file(dir: &std::path::Path, name: &str, byte: u8) -> String {
    use base64::Engine;
    let p = dir.join(name);
    std::fs::write(
        &p,
        base64::engine::general_purpose::STANDARD.encode([byte; 32]),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn several_dkim_keys_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (seed_file(dir.path(), "a", 1), seed_file(dir.path(), "b", 2));
    let file = format!(
        "[mail.dkim]\nkey_file = \"{a}\"\nselector = \"old\"\n\
         [[mail.dkim.keys]]\nselector = \"new\"\nkey_file = \"{b}\"\ndomain = \"other.example\"\n"
    );
    let c = Config::from_sources(Some(("f.toml", &file)), &[]).unwrap();
    let names: Vec<String> = crate::keys::Keys::load(&c)
        .unwrap()
        .dkim
        .unwrap()
        .keys()
        .iter()
        .map(|k| k.dns_name())
        .collect();
    assert_eq!(
        names,
        [
            "old._domainkey.herald.example",
            "new._domainkey.other.example"
        ]
    );
    let c = Config::defaults_with(&[("mail.dkim.keys", &format!("x:{a},y:{b}"))]).unwrap();
    let signer = crate::keys::Keys::load(&c).unwrap().dkim.unwrap();
    assert_eq!(signer.keys().len(), 2);
    // Wrong ones say which key of the list is wrong.
    let e = err_of(&[("mail.dkim.keys", &format!("x:{a},y:/nonexistent/key"))]);
    assert!(
        e.contains("mail.dkim.keys[1]") && e.contains("/nonexistent/key"),
        "{e}"
    );
    let e = err_of(&[("mail.dkim.keys", &format!("x:{a},x:{b}"))]);
    assert!(e.contains("listed twice"), "{e}");
    let e = err_of(&[("mail.dkim.keys", "bad selector!:/k")]);
    assert!(e.contains("mail.dkim.keys[0]"), "{e}");
    let e = Config::from_sources(
        Some((
            "f.toml",
            "[[mail.dkim.keys]]\nselector = \"s\"\nkeyfile = \"k\"\n",
        )),
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("mail.dkim"), "{e}");
}

#[test]
fn the_site_url_follows_the_public_address_when_left_alone() {
    let c = Config::defaults_with(&[("http.public_url", "https://news.example.com/newsletter")])
        .unwrap();
    assert_eq!(c.site.url, "https://news.example.com/");
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("site.url is not set"))
    );
    let c = Config::defaults_with(&[("http.listen", "0.0.0.0:9000")]).unwrap();
    assert_eq!(
        c.site.url, "http://127.0.0.1:9000/",
        "public_url followed listen"
    );
    let c = Config::defaults_with(&[
        ("http.public_url", "https://news.example.com/newsletter"),
        ("site.url", "https://www.example.com/"),
    ])
    .unwrap();
    assert_eq!(c.site.url, "https://www.example.com/");
    assert!(!c.warnings().iter().any(|w| w.contains("site.url")));
    let c = Config::defaults_with(&[]).unwrap();
    assert_eq!(
        c.site.url, "http://127.0.0.1:8080",
        "the trial set-up stays as it is"
    );
}

#[test]
fn domain_pauses_and_helo_are_checked() {
    assert!(err_of(&[("delivery.pause_window", "200")]).contains("delivery.pause_window"));
    assert!(err_of(&[("delivery.pause_after", "0")]).contains("delivery.pause_after"));
    assert!(
        err_of(&[("delivery.pause_first", "2h"), ("delivery.pause_max", "1h")])
            .contains("delivery.pause_max")
    );
    let c = Config::defaults_with(&[("http.public_url", "https://news.example.com/newsletter")])
        .unwrap();
    assert_eq!(c.mail.helo_name.as_deref(), Some("news.example.com"));
    let c = Config::defaults_with(&[("http.public_url", "http://192.0.2.7:8080")]).unwrap();
    assert_eq!(
        c.mail.helo_name, None,
        "an address is no name: the machine's"
    );
    let c = Config::defaults_with(&[("mail.helo_name", "mx1.news.example.com")]).unwrap();
    assert_eq!(c.mail.helo_name.as_deref(), Some("mx1.news.example.com"));
}

/// Every rule of a single value (`fields.rs`) fails at its own key, with what is wrong,
/// whether the value comes from the file or the environment.
#[test]
fn each_value_is_checked_where_it_is_read() {
    let cases: &[(&str, &str, &str)] = &[
        ("secret_key", "short", "at least"),
        ("database.url", "mysql://x", "neither"),
        ("database.max_connections", "0", "at least 1"),
        ("http.listen", "8080", "address:port"),
        ("http.metrics_listen", "localhost", "address:port"),
        (
            "http.trusted_proxies",
            "10.0.0.1,proxy",
            "\"proxy\" is not an IP address",
        ),
        ("http.metrics_token", "short", "16 printable"),
        ("http.header_timeout", "0s", "more than 0s"),
        ("site.name", " ", "must not be empty"),
        ("site.postal_address", "a\r\nBcc: x", "line breaks"),
        ("site.logo_url", "ftp://x/logo.png", "http(s) URL"),
        ("site.accent_color", "#12345g", "colour"),
        ("site.language", "en_GB", "language tag"),
        ("site.logo_width", "0", "1 to 2000"),
        ("site.timezone", "Berlin", "not a time zone"),
        ("mail.url", "ftp://x", "unknown scheme"),
        ("mail.from", "nobody", "mailbox"),
        ("mail.domain", "exa mple.com", "domain name"),
        ("mail.list_id", "news letter", "letters, digits"),
        ("mail.unsubscribe_mailto", "nobody", "email address"),
        ("mail.list_help", "javascript:x", "mailto:ADDRESS"),
        ("mail.return_path", "b+x@example.com", "without '+'"),
        ("mail.send_timeout", "0s", "more than 0s"),
        ("bounces.listen", "2525", "address:port"),
        ("bounces.imap_url", "imaps://host/INBOX", "needs a user"),
        ("bounces.soft_limit", "0", "at least 1"),
        ("console.login_limit", "0", "at least 1"),
        ("console.session_idle", "30s", "at least 1m"),
        ("digests.max_articles", "1001", "1 to 1000"),
        ("feeds.max_size", "10B", "at least 1kB"),
        ("subscriptions.rate_limit_per_ip", "0", "at least 1"),
        ("delivery.connections", "0", "1 to 1000"),
        ("delivery.batch_size", "10001", "1 to 10000"),
        ("delivery.pause_window", "129", "1 to 128"),
        ("delivery.instance_timeout", "2s", "at least 3s"),
        ("delivery.shutdown_grace", "11m", "at most 10m"),
    ];
    for (key, value, why) in cases {
        let from_env = err_of(&[(key, value)]);
        assert!(
            from_env.contains(&format!("`{key}`")) && from_env.contains(why),
            "{key}={value:?}: {from_env}"
        );
        // The same value written in a file names the same key.
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        let defaults = toml::Value::Table(DEFAULTS.parse().unwrap());
        let default = key
            .split('.')
            .try_fold(&defaults, |v, k| v.get(k))
            .expect("a key of the defaults");
        let quoted = if default.is_integer() {
            value.to_string()
        } else if *key == "http.trusted_proxies" {
            format!("{:?}", value.split(',').collect::<Vec<_>>())
        } else {
            format!("{value:?}")
        };
        let text = if section.is_empty() {
            format!("{name} = {quoted}\n")
        } else {
            format!("[{section}]\n{name} = {quoted}\n")
        };
        let from_file = Config::from_sources(Some(("f.toml", &text)), &[])
            .unwrap_err()
            .to_string();
        assert!(
            from_file.contains(&format!("`{key}`")) && from_file.contains(why),
            "{key}={value:?} in a file: {from_file}"
        );
    }
}

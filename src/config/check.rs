//! The rules that need more than one key: values made from others when left at their
//! defaults (`http.public_url`, `site.url`, `mail.domain`, the HELO name), settings that only
//! make sense together (returned mail needs `mail.return_path`; the SNS certificates and
//! topics come in pairs) and limits set by other values (a lease must outlast two SMTP
//! exchanges). Single values were checked as they were read (`fields.rs`); files are read
//! later, by `keys::Keys::load`.

use super::*;

impl RawConfig {
    pub(super) fn check(mut self) -> Result<Config, ConfigError> {
        let listen = self.http.listen;
        // Left at the default while the listener moved: links follow the listener (an
        // unspecified address becomes loopback, with a warning) instead of pointing at a
        // port nothing listens on.
        let default_listen: SocketAddr = "127.0.0.1:8080".parse().expect("a valid address");
        let public_url_derived = self.http.public_url.trim_end_matches('/')
            == "http://127.0.0.1:8080"
            && listen != default_listen;
        if public_url_derived {
            let ip = match listen.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            self.http.public_url = format!("http://{}", SocketAddr::new(ip, listen.port()));
        }
        let public = url::Url::parse(&self.http.public_url).map_err(|e| {
            invalid(
                "http.public_url",
                format!("{:?} is not a URL: {e}", self.http.public_url),
            )
        })?;
        if !matches!(public.scheme(), "http" | "https") || public.host_str().is_none() {
            return Err(invalid(
                "http.public_url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if self.http.metrics_listen == Some(listen) {
            return Err(invalid(
                "http.metrics_listen",
                "must differ from http.listen (metrics are not for the public)",
            ));
        }

        // Left at its default while the public address is elsewhere: the site's home is
        // the public address's origin, not herald's default port on loopback.
        if self.site.url.trim_end_matches('/') == "http://127.0.0.1:8080" {
            let origin = public.origin().ascii_serialization();
            if origin != "http://127.0.0.1:8080" {
                self.site.url = format!("{origin}/");
                self.site.url_derived = true;
            }
        }
        let site_ok =
            url::Url::parse(&self.site.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !site_ok {
            return Err(invalid(
                "site.url",
                format!("{:?} is not an http(s) URL", self.site.url),
            ));
        }

        let domain = if self.mail.domain.is_empty() {
            self.mail.from.email.domain().to_string()
        } else {
            self.mail.domain.clone()
        };
        let dns_like = |d: &str| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        };
        if !dns_like(&domain) {
            return Err(invalid(
                "mail.domain",
                format!("{domain:?} (the domain of mail.from) is not a domain name"),
            ));
        }
        let return_path = self.mail.return_path.clone();
        if self.bounces.listen.is_some() && return_path.is_none() {
            return Err(invalid(
                "bounces.listen",
                "needs mail.return_path (the address returned mail is sent to)",
            ));
        }
        let imap = match self.bounces.imap_url.take() {
            None => None,
            Some(mut c) => {
                if return_path.is_none() {
                    return Err(invalid(
                        "bounces.imap_url",
                        "needs mail.return_path (herald reads only mail sent to its addresses)",
                    ));
                }
                c.interval = self.bounces.imap_interval.0;
                c.move_to = match self.bounces.imap_move_to.take() {
                    Some(f) if f.eq_ignore_ascii_case(&c.mailbox) => {
                        return Err(invalid(
                            "bounces.imap_move_to",
                            "must be another folder than the one read",
                        ));
                    }
                    f => f,
                };
                c.ca_file = self.bounces.imap_tls_ca_file.take();
                if c.ca_file.is_some() && c.tls == Tls::None {
                    return Err(invalid(
                        "bounces.imap_tls_ca_file",
                        "is for TLS: use imaps://, or imap://…?tls=required",
                    ));
                }
                Some(c)
            }
        };
        let (certificates, topics) = (
            std::mem::take(&mut self.bounces.sns_certificates),
            std::mem::take(&mut self.bounces.sns_topics),
        );
        let sns = match (certificates.is_empty(), topics.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(invalid(
                    "bounces.sns_topics",
                    "name the SNS topic ARNs to accept (anyone can make a topic AWS signs)",
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "bounces.sns_certificates",
                    "name the certificate file(s) SNS signs with (its SigningCertURL)",
                ));
            }
            (false, false) => Some(SnsSpec {
                certificates,
                topics,
            }),
        };
        // EHLO names the site, as its public address does; a bare machine name (or an IP
        // address in public_url) says nothing a receiver can check, so then the machine's.
        let helo_name = self.mail.helo_name.take().or_else(|| {
            public
                .host_str()
                .filter(|h| {
                    h.contains('.')
                        && h.parse::<IpAddr>().is_err()
                        && !h.starts_with('[')
                        && *h != "localhost"
                })
                .map(str::to_string)
        });
        let dkim_keys = dkim_keys(&self.mail.dkim, &domain)?;

        // A worker sends a message only while at least one full exchange (connect + send
        // timeouts) is left on its lease, and renews the lease at half-time: a lease shorter
        // than two exchanges could not fence anything.
        let exchange = self.mail.connect_timeout.0 + self.mail.send_timeout.0;
        if self.delivery.lease.0 < exchange * 2 {
            return Err(invalid(
                "delivery.lease",
                format!(
                    "must be at least twice mail.connect_timeout + mail.send_timeout ({}s here), \
                     so a send always ends before the lease it runs under",
                    (exchange * 2).as_secs()
                ),
            ));
        }
        if self.delivery.pause_after > self.delivery.pause_window {
            return Err(invalid(
                "delivery.pause_after",
                "must be at least 1 and at most delivery.pause_window",
            ));
        }
        if self.delivery.pause_max.0 < self.delivery.pause_first.0 {
            return Err(invalid(
                "delivery.pause_max",
                "delivery.pause_first must be above zero and pause_max at least pause_first",
            ));
        }

        Ok(Config {
            secret_key: self.secret_key,
            database: self.database,
            http: HttpConfig {
                listen,
                public_url: self.http.public_url.trim_end_matches('/').to_string(),
                trusted_proxies: self.http.trusted_proxies,
                metrics_listen: self.http.metrics_listen,
                metrics_token: self.http.metrics_token,
                header_timeout: self.http.header_timeout.0,
                request_timeout: self.http.request_timeout.0,
                public_url_derived,
            },
            site: self.site,
            mail: MailConfig {
                transport: self.mail.url,
                from: self.mail.from,
                domain,
                list_id: self.mail.list_id,
                unsubscribe_mailto: self.mail.unsubscribe_mailto,
                list_help: self.mail.list_help,
                return_path,
                send_timeout: self.mail.send_timeout,
                connect_timeout: self.mail.connect_timeout,
                idle_timeout: self.mail.idle_timeout,
                helo_name,
                tls_ca_file: self.mail.tls_ca_file,
                dkim_keys,
            },
            subscriptions: self.subscriptions,
            delivery: self.delivery,
            digests: self.digests,
            feeds: self.feeds,
            bounces: ReturnedConfig {
                listen: self.bounces.listen,
                imap,
                sns,
                soft_limit: self.bounces.soft_limit,
                soft_window: self.bounces.soft_window,
                keep_raw: self.bounces.keep_raw,
            },
            console: self.console,
        })
    }
}

/// The DKIM keys `mail.dkim` names, in order: `key_file` with `selector` first, then each
/// of `keys`; a key's domain defaults to `mail.dkim.domain`, then to the mail's domain.
fn dkim_keys(dkim: &RawDkim, mail_domain: &str) -> Result<Vec<DkimKeySpec>, ConfigError> {
    let default_domain = if dkim.domain.is_empty() {
        mail_domain
    } else {
        &dkim.domain
    };
    let mut wanted: Vec<DkimKeySpec> = Vec::new();
    if !dkim.key_file.is_empty() {
        if dkim.selector.is_empty() {
            return Err(invalid("mail.dkim.selector", "must not be empty"));
        }
        wanted.push(DkimKeySpec {
            key: "mail.dkim.key_file".into(),
            selector: dkim.selector.clone(),
            key_file: dkim.key_file.clone(),
            domain: default_domain.to_string(),
        });
    }
    for (i, k) in dkim.keys.iter().enumerate() {
        let key = format!("mail.dkim.keys[{i}]");
        let (selector, key_file, domain) = match k {
            RawDkimKey::Table(t) => (t.selector.clone(), t.key_file.clone(), t.domain.clone()),
            RawDkimKey::Short(text) => {
                let mut parts = text.splitn(3, ':').map(|p| p.trim().to_string());
                let mut next = || parts.next().unwrap_or_default();
                (next(), next(), next())
            }
        };
        let selector_ok = !selector.is_empty()
            && selector
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !selector_ok {
            return Err(invalid(
                &key,
                format!(
                    "selector {selector:?} must be letters, digits, dots, dashes or underscores"
                ),
            ));
        }
        if key_file.is_empty() {
            return Err(invalid(&key, "key_file must not be empty"));
        }
        let domain = if domain.is_empty() {
            default_domain.to_string()
        } else {
            domain
        };
        if wanted
            .iter()
            .any(|w| w.selector == selector && w.domain == domain)
        {
            return Err(invalid(
                &key,
                format!("selector {selector:?} of {domain} is listed twice"),
            ));
        }
        wanted.push(DkimKeySpec {
            key,
            selector,
            key_file,
            domain,
        });
    }
    Ok(wanted)
}

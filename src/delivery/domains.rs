//! Pausing a receiving domain that refuses herald's mail for policy reasons, instead of
//! failing (or worse, suppressing) its readers one by one.
//!
//! A blocklisting (`550 5.7.1 … blocked using zen.spamhaus.org`), a DMARC failure of our own,
//! or a provider's rate limit is about herald, not about the reader: every send to that
//! provider fails alike until it is fixed. When `delivery.pause_after` of the last
//! `delivery.pause_window` outcomes for one domain are such refusals (at send time or in
//! DSNs), the domain is paused: its sends wait in the queue, their attempt undone, until
//! the pause runs out; each pause that follows within a day of the last doubles, up to
//! `delivery.pause_max`. The pause is written to the database, so every instance honours
//! it and `herald domains list|resume` see and lift it; the window of recent outcomes is
//! each instance's own (in memory, and only for domains that refused something lately, so
//! memory follows the trouble, not the list).

use crate::clock::Clock;
use crate::returned::ReturnedStore;
use crate::store::DomainPause;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the pauses other instances (or `herald domains resume`) wrote are read again.
const RELOAD: Duration = Duration::from_secs(2);

/// The last outcomes for one domain, newest in bit 0: 1 = a policy refusal.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    bits: u128,
}

impl Window {
    fn push(&mut self, refused: bool, size: u32) {
        self.bits = (self.bits << 1) | u128::from(refused);
        if size < 128 {
            self.bits &= (1u128 << size) - 1;
        }
    }

    fn refusals(&self) -> u32 {
        self.bits.count_ones()
    }
}

#[derive(Debug, Clone)]
pub struct PauseSettings {
    pub after: u32,
    pub window: u32,
    pub first: Duration,
    pub max: Duration,
}

impl PauseSettings {
    pub fn from_config(d: &crate::config::DeliveryConfig) -> Self {
        Self {
            after: d.pause_after,
            window: d.pause_window,
            first: d.pause_first.0,
            max: d.pause_max.0,
        }
    }
}

struct Cache {
    /// Domain → paused until, as last read or written.
    pauses: HashMap<String, DomainPause>,
    loaded: Option<Instant>,
}

impl Cache {
    /// `herald_domains_paused`: the pauses in force at `now`.
    fn report(&self, now: DateTime<Utc>) {
        metrics::gauge!("herald_domains_paused").set(
            self.pauses
                .values()
                .filter(|p| p.paused_until > now)
                .count() as f64,
        );
    }
}

/// Watches outcomes per receiving domain and keeps the pauses; shared by the delivery
/// workers and the returned-mail intake of one process.
pub struct DomainWatch {
    store: Arc<dyn ReturnedStore>,
    clock: Clock,
    settings: PauseSettings,
    windows: Mutex<HashMap<String, Window>>,
    cache: Mutex<Cache>,
}

/// The domain of an address, lower case.
fn domain_of(email: &str) -> Option<String> {
    email
        .rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

impl DomainWatch {
    pub fn new(store: Arc<dyn ReturnedStore>, clock: Clock, settings: PauseSettings) -> Self {
        Self {
            store,
            clock,
            settings,
            windows: Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache {
                pauses: HashMap::new(),
                loaded: None,
            }),
        }
    }

    /// Read the pauses again if the copy is older than a moment.
    async fn refresh(&self) {
        let due = {
            let c = self.cache.lock().expect("pause cache");
            c.loaded.is_none_or(|t| t.elapsed() >= RELOAD)
        };
        if !due {
            return;
        }
        match self.store.domain_pauses().await {
            Ok(list) => {
                let mut c = self.cache.lock().expect("pause cache");
                c.pauses = list.into_iter().map(|p| (p.domain.clone(), p)).collect();
                c.loaded = Some(Instant::now());
                c.report(self.clock.now());
            }
            Err(e) => tracing::warn!(error = %e, "could not read the domain pauses"),
        }
    }

    /// Forget the copy, so the next look reads the database (after `domains resume`).
    pub fn invalidate(&self) {
        self.cache.lock().expect("pause cache").loaded = None;
    }

    /// Until when sends to `email`'s domain wait, if its domain is paused now.
    pub async fn paused_until(&self, email: &str) -> Option<DateTime<Utc>> {
        self.refresh().await;
        let c = self.cache.lock().expect("pause cache");
        // The usual case, asked once per message: nothing paused, nothing to look up.
        if c.pauses.is_empty() {
            return None;
        }
        let domain = domain_of(email)?;
        let now = self.clock.now();
        c.pauses
            .get(&domain)
            .map(|p| p.paused_until)
            .filter(|until| *until > now)
    }

    /// The domains paused now.
    pub async fn paused_now(&self) -> Vec<DomainPause> {
        self.refresh().await;
        let now = self.clock.now();
        let c = self.cache.lock().expect("pause cache");
        let mut list: Vec<DomainPause> = c
            .pauses
            .values()
            .filter(|p| p.paused_until > now)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.domain.cmp(&b.domain));
        list
    }

    /// One outcome for a send to `email`: `refused` for a policy refusal (`words` being
    /// the provider's). Pauses the domain when the window fills with refusals.
    pub async fn record(&self, email: &str, refused: bool, words: &str) {
        // The usual case, once per message: a success while no domain is being watched.
        if !refused && self.windows.lock().expect("domain windows").is_empty() {
            return;
        }
        let Some(domain) = domain_of(email) else {
            return;
        };
        let tripped = {
            let mut windows = self.windows.lock().expect("domain windows");
            // Only domains that refused something lately are watched: a success for any
            // other changes nothing worth remembering.
            if !refused && !windows.contains_key(&domain) {
                return;
            }
            let w = windows.entry(domain.clone()).or_default();
            w.push(refused, self.settings.window);
            let n = w.refusals();
            if n == 0 {
                windows.remove(&domain);
                None
            } else if n >= self.settings.after {
                // A new window starts after the pause.
                windows.remove(&domain);
                Some(n)
            } else {
                None
            }
        };
        if let Some(refusals) = tripped {
            self.pause(&domain, refusals, words).await;
        }
    }

    async fn pause(&self, domain: &str, refusals: u32, words: &str) {
        let now = self.clock.now();
        self.refresh().await;
        let previous = self
            .cache
            .lock()
            .expect("pause cache")
            .pauses
            .get(domain)
            .cloned();
        if previous.as_ref().is_some_and(|p| p.paused_until > now) {
            return; // paused already (another worker tripped it a moment ago)
        }
        // Back again within a day of the last pause: twice as long.
        let backoff = match &previous {
            Some(p) if now - p.paused_until < chrono::Duration::days(1) => {
                Duration::from_secs((p.backoff_secs.max(1) as u64).saturating_mul(2))
                    .min(self.settings.max)
            }
            _ => self.settings.first,
        };
        let pause = DomainPause {
            domain: domain.to_string(),
            paused_at: now,
            paused_until: now
                + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::hours(1)),
            backoff_secs: backoff.as_secs() as i64,
            refusals: i64::from(refusals),
            reason: crate::articles::one_line(words, 300),
        };
        tracing::warn!(
            domain,
            refusals,
            window = self.settings.window,
            until = %pause.paused_until,
            provider_said = %pause.reason,
            "pausing delivery to this domain: it refuses our mail for policy reasons; its sends wait in the queue"
        );
        metrics::counter!("herald_domain_pauses_total").increment(1);
        if let Err(e) = self.store.pause_domain(&pause).await {
            tracing::error!(error = %e, domain, "could not record the domain pause");
        }
        let mut c = self.cache.lock().expect("pause cache");
        c.pauses.insert(domain.to_string(), pause);
        c.report(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_only_the_last_outcomes() {
        let mut w = Window::default();
        for _ in 0..20 {
            w.push(true, 100);
        }
        assert_eq!(w.refusals(), 20);
        for _ in 0..80 {
            w.push(false, 100);
        }
        assert_eq!(w.refusals(), 20, "still within the last 100");
        w.push(false, 100);
        assert_eq!(w.refusals(), 19, "the oldest fell out");
        let mut full = Window::default();
        for _ in 0..300 {
            full.push(true, 128);
        }
        assert_eq!(full.refusals(), 128);
    }

    #[test]
    fn domains_are_read_from_addresses() {
        assert_eq!(domain_of("A@Example.ORG").as_deref(), Some("example.org"));
        assert_eq!(domain_of("nobody"), None);
    }
}

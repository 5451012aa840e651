//! Per-client limit on signup requests, so herald cannot be used to mail-bomb someone or
//! be flooded. A sliding window per IP (IPv6 per /64: one host usually owns a whole /64).
//! In memory: each instance limits on its own, which is the right order of magnitude for
//! a handful of instances behind one proxy.

use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

pub struct IpLimiter {
    max: usize,
    window: Duration,
    hits: Mutex<HashMap<IpAddr, VecDeque<DateTime<Utc>>>>,
}

impl IpLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max as usize,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut seg = v6.segments();
                    seg[4..].fill(0);
                    IpAddr::V6(seg.into())
                }
            },
        }
    }

    /// Count a request; Err(seconds to wait) when over the limit.
    pub fn check(&self, ip: IpAddr, now: DateTime<Utc>) -> Result<(), u64> {
        let mut hits = self.hits.lock().expect("limiter lock");
        if hits.len() > 100_000 {
            // Bound memory under a spray of addresses: forget windows that have passed.
            hits.retain(|_, q| q.back().is_some_and(|t| *t > now - self.window));
        }
        let q = hits.entry(Self::key(ip)).or_default();
        while q.front().is_some_and(|t| *t <= now - self.window) {
            q.pop_front();
        }
        if q.len() >= self.max {
            let oldest = *q.front().expect("non-empty when over the limit");
            let wait = (oldest + self.window - now).num_seconds().max(1);
            return Err(wait as u64);
        }
        q.push_back(now);
        Ok(())
    }

    pub fn prune(&self, now: DateTime<Utc>) {
        let mut hits = self.hits.lock().expect("limiter lock");
        hits.retain(|_, q| q.back().is_some_and(|t| *t > now - self.window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_window_and_per_v6_prefix() {
        let l = IpLimiter::new(2, Duration::minutes(10));
        let t = Utc::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(l.check(a, t).is_ok());
        assert!(l.check(b, t).is_ok());
        assert_eq!(l.check(a, t), Err(600));
        assert!(l.check("192.0.2.1".parse().unwrap(), t).is_ok());
        assert!(l.check(a, t + Duration::minutes(11)).is_ok());
    }
}

//! How fast and how often: the rate limit across all workers, and when a temporary failure
//! is tried again.

use crate::store::{SendJob, SendOutcome};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::Mutex;

/// Exponential backoff for temporary failures, until `max_age` after the row was queued.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_age: Duration,
}

impl RetryPolicy {
    /// When to try again after `attempts` attempts, or None to give up.
    pub fn next_attempt(
        &self,
        attempts: i32,
        queued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let exp = attempts.clamp(1, 30) as u32 - 1;
        let delay = self
            .initial
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max);
        let next = now + chrono::Duration::from_std(delay).ok()?;
        let deadline = queued_at + chrono::Duration::from_std(self.max_age).ok()?;
        (next <= deadline).then_some(next)
    }

    /// What a temporary failure of `job` comes to at `now`: another try later, or, past
    /// `max_age` since it was queued, a failure that says how many tries it had.
    pub(super) fn after_failure(
        &self,
        job: &SendJob,
        reply: String,
        now: DateTime<Utc>,
    ) -> SendOutcome {
        // `attempts` counts the earlier ones; this is one more.
        match self.next_attempt(job.attempts + 1, job.created_at, now) {
            Some(next_attempt_at) => SendOutcome::Retry {
                reply,
                next_attempt_at,
            },
            None => SendOutcome::Failed {
                reply: format!("gave up after {} attempts: {reply}", job.attempts + 1),
            },
        }
    }
}

/// Spaces sends evenly to stay under `rate_per_second` across all workers.
pub(super) struct RateLimiter {
    pub(super) interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    pub(super) async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// `per_second` sends a second across all workers; None for no limit.
    pub(super) fn per_second(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second as f64),
            next: Mutex::new(tokio::time::Instant::now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_gives_up() {
        let p = RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            max_age: Duration::from_secs(3 * 86_400),
        };
        let t0 = Utc::now();
        assert_eq!(
            p.next_attempt(1, t0, t0),
            Some(t0 + chrono::Duration::seconds(60))
        );
        assert_eq!(
            p.next_attempt(2, t0, t0),
            Some(t0 + chrono::Duration::seconds(120))
        );
        assert_eq!(
            p.next_attempt(10, t0, t0),
            Some(t0 + chrono::Duration::seconds(3600))
        );
        let late = t0 + chrono::Duration::days(3);
        assert_eq!(p.next_attempt(50, t0, late), None);
    }
}

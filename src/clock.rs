//! Time as herald sees it. `herald serve` uses the system clock; tests use a manual one
//! they set and advance, so retries, expiries and schedules are tested without sleeping.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    pub fn system() -> Self {
        Clock(None)
    }

    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock(Some(Arc::new(Mutex::new(start.trunc_subsecs(6)))))
    }

    /// Now, to the microsecond: what PostgreSQL keeps, so a time read back compares equal.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now().trunc_subsecs(6),
            Some(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Move a manual clock; no effect on the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Some(t) = &self.0 {
            *t.lock().expect("clock lock") = to.trunc_subsecs(6);
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Some(t) = &self.0 {
            let mut g = t.lock().expect("clock lock");
            *g += by;
        }
    }
}

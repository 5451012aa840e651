//! A digest schedule's timing: a standard 5-field crontab expression evaluated in an IANA
//! time zone. croner, not `cron`: `cron` refuses the 5-field form people type, numbers
//! weekdays from Sunday=1, and fires twice on the autumn DST change.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    tz: Tz,
    cron: Cron,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "invalid cron expression {expr:?}: {reason} (use 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 7 * * 1-5\")"
    )]
    Cron { expr: String, reason: String },
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/Berlin or America/New_York)")]
    TimeZone(String),
}

fn parse_five(expr: &str) -> Result<Cron, croner::errors::CronError> {
    // Seconds and years disallowed: otherwise croner also takes 6- and 7-field input.
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
}

/// croner's reason ("Number out of bounds") with the field it is about, found by trying
/// each field alone: `hour "25": Number out of bounds (0-23)`.
fn explain(expr: &str, reason: &str) -> String {
    const FIELDS: [(&str, &str); 5] = [
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day of month", "1-31"),
        ("month", "1-12 or JAN-DEC"),
        ("day of week", "0-7 or SUN-SAT, 0 and 7 are Sunday"),
    ];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    for (i, (name, range)) in FIELDS.iter().enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = fields[i];
        if let Err(e) = parse_five(&alone.join(" ")) {
            let shown: String = fields[i].chars().take(40).collect();
            return format!("{name} field {shown:?}: {e} (allowed: {range})");
        }
    }
    reason.to_string()
}

impl CronSchedule {
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let tz: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::TimeZone(timezone.chars().take(60).collect()))?;
        let expr = expr.trim();
        let bad = |reason: String| ScheduleError::Cron {
            expr: expr.chars().take(100).collect(),
            reason,
        };
        if expr.split_whitespace().count() != 5 {
            return Err(bad(format!(
                "expected 5 fields, got {}",
                expr.split_whitespace().count()
            )));
        }
        let cron = parse_five(expr).map_err(|e| bad(explain(expr, &e.to_string())))?;
        Ok(Self {
            expr: expr.to_string(),
            tz,
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next `n` ticks after `after`, in the schedule's time zone.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next.with_timezone(&self.tz));
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// In words, e.g. "At 07:00, Monday through Friday".
    pub fn describe(&self) -> String {
        // croner ends its sentence with a period; pages and the CLI punctuate it themselves
        // ("…and Friday.. The next runs" otherwise).
        self.cron.describe().trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        for (expr, said) in [
            ("0 25 * * *", "hour field \"25\""),
            ("61 7 * * *", "minute field \"61\""),
            ("0 7 32 * *", "day of month field \"32\""),
            ("0 7 * 13 *", "month field \"13\""),
            ("0 7 * * MONDAY", "day of week field \"MONDAY\""),
        ] {
            let e = CronSchedule::parse(expr, "UTC").unwrap_err().to_string();
            assert!(e.contains(said), "{expr}: {e}");
        }
    }

    #[test]
    fn five_fields_only() {
        assert!(CronSchedule::parse("0 7 * * 1-5", "UTC").is_ok());
        for bad in [
            "0 0 7 * * 1-5",
            "* * * *",
            "61 * * * *",
            "0 25 * * *",
            "0 7 * * 8",
            "bogus",
        ] {
            let e = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert!(
                e.to_string().contains("invalid cron expression"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            CronSchedule::parse("0 7 * * *", "Mars/Olympus").unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
    }

    #[test]
    fn weekdays_are_monday_to_friday() {
        let s = CronSchedule::parse("0 7 * * 1-5", "UTC").unwrap();
        // Friday 2026-03-06 08:00 → next is Monday 03-09 07:00.
        assert_eq!(
            s.next_after(utc(2026, 3, 6, 8, 0)),
            Some(utc(2026, 3, 9, 7, 0))
        );
        let sun = CronSchedule::parse("0 9 * * 0", "UTC").unwrap();
        assert_eq!(
            sun.next_after(utc(2026, 3, 6, 8, 0)),
            Some(utc(2026, 3, 8, 9, 0))
        );
        assert!(s.describe().contains("07:00"), "{}", s.describe());
        assert!(!s.describe().ends_with('.'), "{}", s.describe());
    }

    #[test]
    fn time_zones_and_dst() {
        let s = CronSchedule::parse("0 7 * * *", "Europe/Berlin").unwrap();
        // Winter: 07:00 CET = 06:00 UTC. Summer: 07:00 CEST = 05:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 3, 27, 12, 0)),
            Some(utc(2026, 3, 28, 6, 0))
        );
        // 2026-03-29 is the spring change in Europe.
        assert_eq!(
            s.next_after(utc(2026, 3, 28, 12, 0)),
            Some(utc(2026, 3, 29, 5, 0))
        );
        // 02:30 does not exist on the spring day: the run still happens once that day.
        let spring = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let ticks = spring.upcoming(utc(2026, 3, 28, 12, 0), 2);
        assert_eq!(ticks.len(), 2);
        assert_eq!(ticks[1].with_timezone(&Utc), utc(2026, 3, 30, 0, 30));
        // Autumn (2026-10-25): 02:30 happens twice locally; it must fire once.
        let autumn = spring.upcoming(utc(2026, 10, 24, 12, 0), 2);
        assert_eq!(
            autumn[0].date_naive(),
            chrono::NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()
        );
        assert_eq!(
            autumn[1].date_naive(),
            chrono::NaiveDate::from_ymd_opt(2026, 10, 26).unwrap()
        );
        // US spring change (2026-03-08), New York.
        let ny = CronSchedule::parse("0 7 * * *", "America/New_York").unwrap();
        assert_eq!(
            ny.next_after(utc(2026, 3, 7, 13, 0)),
            Some(utc(2026, 3, 8, 11, 0))
        );
    }
}

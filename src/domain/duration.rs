//! Durations as people write them in config: `30s`, `10m`, `48h`, `7d`, or combined `1h30m`.

use std::{fmt, str::FromStr, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: write a number and a unit, e.g. 30s, 10m, 48h, 7d")]
pub struct ParseDurationError(pub String);

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError(s.to_string());
        let s = s.trim();
        if s.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u64 = num.parse().map_err(|_| err())?;
            num.clear();
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(err()),
            };
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        if !num.is_empty() {
            return Err(err());
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }
}

impl HumanDuration {
    pub fn as_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s.is_multiple_of(86_400) && s > 0 {
            write!(f, "{}d", s / 86_400)
        } else if s.is_multiple_of(3600) && s > 0 {
            write!(f, "{}h", s / 3600)
        } else if s.is_multiple_of(60) && s > 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("30s".parse::<HumanDuration>().unwrap().0.as_secs(), 30);
        assert_eq!("10m".parse::<HumanDuration>().unwrap().0.as_secs(), 600);
        assert_eq!("48h".parse::<HumanDuration>().unwrap().0.as_secs(), 172_800);
        assert_eq!("1h30m".parse::<HumanDuration>().unwrap().0.as_secs(), 5400);
        for bad in ["", "10", "m", "10x", "-5m", "1.5h"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "accepted {bad:?}");
        }
    }
}

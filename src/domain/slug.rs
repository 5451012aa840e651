//! A section's URL- and CLI-friendly identifier, e.g. `wmd`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SectionSlug(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid section slug {0:?}: use 1 to 64 lower-case letters, digits and dashes, starting with a letter or digit"
)]
pub struct SlugError(pub String);

impl SectionSlug {
    pub fn parse(input: &str) -> Result<Self, SlugError> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && input
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !input.starts_with('-');
        if ok {
            Ok(Self(input.to_string()))
        } else {
            // Keep the echo short and printable: it ends up in an HTML page or a terminal.
            let shown: String = input.chars().take(40).filter(|c| !c.is_control()).collect();
            Err(SlugError(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SectionSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(SectionSlug::parse("wmd").is_ok());
        assert!(SectionSlug::parse("middle-east-2").is_ok());
        for bad in ["", "-x", "WMD", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(SectionSlug::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}

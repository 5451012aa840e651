//! A subscriber's email address, normalised (trimmed, lower-cased) so that one person is
//! one row whatever case they type.

use std::fmt;
use validator::ValidateEmail;

/// RFC 5321 caps a forward path at 256 octets including the angle brackets.
const MAX_LEN: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    #[error("Please enter your email address.")]
    Empty,
    #[error("That email address is too long (at most 254 characters).")]
    TooLong,
    #[error("That does not look like an email address. Please check it and try again.")]
    Malformed,
}

impl EmailError {
    /// The same, worded for an operator (CLI, CSV import, API) rather than a reader at the
    /// signup form.
    pub fn plain(&self) -> &'static str {
        match self {
            EmailError::Empty => "no address",
            EmailError::TooLong => "longer than 254 characters",
            EmailError::Malformed => "not an email address",
        }
    }
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // A CR/LF anywhere, even trailing, is refused rather than trimmed: it is what a
        // header-injection attempt looks like, and the reader should see it fail.
        if super::has_control_chars(input) {
            return Err(EmailError::Malformed);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if trimmed.contains(char::is_whitespace) {
            return Err(EmailError::Malformed);
        }
        // One spelling per mailbox: the domain in its ASCII (IDNA) form, so
        // `x@bücher.example` and `x@xn--bcher-kva.example` are one subscriber, not two.
        let (local, domain) = trimmed.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Malformed)?;
        let normalised = format!("{}@{domain}", local.to_lowercase());
        if normalised.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if !normalised.validate_email() {
            return Err(EmailError::Malformed);
        }
        // validator accepts `user@localhost`; a newsletter only ever mails public domains,
        // so the domain must have a dot and must not end with one.
        let (_, domain) = normalised.rsplit_once('@').ok_or(EmailError::Malformed)?;
        if !domain.contains('.') || domain.ends_with('.') || domain.starts_with('.') {
            return Err(EmailError::Malformed);
        }
        // lettre builds the envelope from this; what it refuses we refuse at the door.
        if normalised.parse::<lettre::Address>().is_err() {
            return Err(EmailError::Malformed);
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_lettre(&self) -> lettre::Address {
        self.0.parse().expect("validated at construction")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A receiving domain as typed ("Example.COM", "@example.com", "bücher.example"), as herald
/// writes it in addresses: lower case, its ASCII (IDNA) form; None if it is not one.
pub fn mail_domain(typed: &str) -> Option<String> {
    let d = typed.trim().trim_start_matches('@');
    if d.is_empty() || d.contains(char::is_whitespace) || d.contains('@') {
        return None;
    }
    let d = idna::domain_to_ascii(d).ok()?;
    (d.contains('.') && !d.starts_with('.') && !d.ends_with('.')).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let e = EmailAddress::parse("  Reader@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "reader@example.com");
    }

    #[test]
    fn one_spelling_per_internationalised_domain() {
        let a = EmailAddress::parse("x@bücher.example").unwrap();
        let b = EmailAddress::parse("x@xn--bcher-kva.example").unwrap();
        let c = EmailAddress::parse("X@BÜCHER.Example").unwrap();
        assert_eq!(a.as_str(), "x@xn--bcher-kva.example");
        assert_eq!(a, b);
        assert_eq!(a, c);
        // Not a valid IDNA label: refused, not stored as typed.
        assert!(EmailAddress::parse("x@xn--a.example").is_err());
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@example.com\r\nBcc: victim@example.org",
            "a@example.com\n",
            "a@exa mple.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn a_mail_domain_is_written_as_addresses_write_it() {
        assert_eq!(
            mail_domain(" @Example.COM ").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            mail_domain("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        for bad in [
            "",
            "localhost",
            "a b.example",
            "x@example.com",
            ".example.com",
            "example.",
        ] {
            assert_eq!(mail_domain(bad), None, "{bad:?}");
        }
    }
}

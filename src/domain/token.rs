//! Secrets in links.
//!
//! * [`RandomToken`]: confirmation links. 256 bits from the OS RNG; the database keeps only
//!   its SHA-256 ([`TokenHash`]), so a leaked database confirms nobody.
//! * [`ManageToken`]: long-lived unsubscribe/preferences links. `ID.MAC` where MAC is
//!   HMAC-SHA256(secret key, purpose | id | email). Nothing is stored; rotating the secret key
//!   revokes every link at once; erasing a subscriber invalidates theirs (the email is gone).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Which link a token opens. Part of the MAC input, so an unsubscribe token cannot be
/// replayed as a preferences token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Confirm,
    Unsubscribe,
    Preferences,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Confirm => "confirm",
            TokenPurpose::Unsubscribe => "unsubscribe",
            TokenPurpose::Preferences => "preferences",
        }
    }
}

/// A fresh random token, shown once (in a mail) and never stored.
pub struct RandomToken(String);

impl RandomToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// `N` bytes from the OS random number generator (a salt, say).
    pub fn generate_bytes<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        bytes
    }

    pub fn from_string(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

// Never print a token by accident (logs, panics).
impl fmt::Debug for RandomToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomToken(…)")
    }
}

/// SHA-256 of a token, hex-encoded: what the database stores and looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(hex(&Sha256::digest(token.as_bytes())))
    }
}

/// Also used to keep an erased address on the suppression list without keeping the address.
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The server's secret for MACs. At least 32 bytes.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= Self::MIN_LEN).then_some(Self(bytes))
    }

    /// A new random key, as text suitable for a config file.
    pub fn generate_text() -> String {
        RandomToken::generate().0
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for p in parts {
            // Length-prefix each part so ("ab","c") and ("a","bc") differ.
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m
    }

    /// Seal a confirmation token so the outbox row can carry it until the mail is sent
    /// without the database holding it in the clear: XOR with HMAC(key, "seal", label), where
    /// the label (the mail's Message-ID) is unique, so no keystream is ever reused.
    pub fn seal(&self, label: &str, token: &RandomToken) -> String {
        let raw = URL_SAFE_NO_PAD
            .decode(token.as_str())
            .expect("tokens are base64url");
        let pad = self
            .mac(&[b"seal", label.as_bytes()])
            .finalize()
            .into_bytes();
        let sealed: Vec<u8> = raw.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect();
        URL_SAFE_NO_PAD.encode(sealed)
    }

    pub fn unseal(&self, label: &str, sealed: &str) -> Option<RandomToken> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() != 32 {
            return None;
        }
        let pad = self
            .mac(&[b"seal", label.as_bytes()])
            .finalize()
            .into_bytes();
        let open: Vec<u8> = raw.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect();
        Some(RandomToken(URL_SAFE_NO_PAD.encode(open)))
    }
}

/// A send's reference inside an address herald hands out per message: the envelope sender
/// (VERP, `bounces+<ref>@…`) and the per-recipient `List-Unsubscribe` mailto
/// (`unsubscribe+<ref>@…`). `<send id>-<16 hex digits of HMAC(key, "send-ref", purpose,
/// id)>`: short enough for a local part, lower case (some servers lower-case local parts),
/// and not forgeable, so returned mail names its send without guessing.
pub struct SendRef;

impl SendRef {
    pub const BOUNCE: &'static str = "bounce";
    pub const UNSUBSCRIBE: &'static str = "unsubscribe";

    pub fn issue(key: &SecretKey, purpose: &str, send_id: i64) -> String {
        let tag = key
            .mac(&[b"send-ref", purpose.as_bytes(), &send_id.to_be_bytes()])
            .finalize()
            .into_bytes();
        let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{send_id}-{hex}")
    }

    /// The send id, if `text` is a reference this key issued for this purpose.
    pub fn verify(key: &SecretKey, purpose: &str, text: &str) -> Option<i64> {
        let (id, hex) = text
            .trim()
            .to_ascii_lowercase()
            .split_once('-')
            .map(|(a, b)| (a.to_string(), b.to_string()))?;
        if hex.len() != 16
            || id.is_empty()
            || id.len() > 19
            || !id.chars().all(|c| c.is_ascii_digit())
            || id.starts_with('0')
        {
            return None;
        }
        let send_id: i64 = id.parse().ok()?;
        let tag: Vec<u8> = (0..8)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        key.mac(&[b"send-ref", purpose.as_bytes(), &send_id.to_be_bytes()])
            .verify_truncated_left(&tag)
            .ok()
            .map(|_| send_id)
    }
}

/// A long-lived link token for one subscriber and one purpose.
pub struct ManageToken;

impl ManageToken {
    pub fn issue(key: &SecretKey, purpose: TokenPurpose, id: i64, email: &str) -> String {
        let tag = key
            .mac(&[
                purpose.as_str().as_bytes(),
                &id.to_be_bytes(),
                email.as_bytes(),
            ])
            .finalize()
            .into_bytes();
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The subscriber id the token claims. Only [`ManageToken::verify`] says whether to
    /// believe it.
    pub fn claimed_id(token: &str) -> Option<i64> {
        let (id, tag) = token.split_once('.')?;
        if tag.len() != 43 {
            return None;
        }
        canonical_id(id)
    }

    /// Constant-time check that the token was issued for this subscriber and purpose.
    pub fn verify(
        key: &SecretKey,
        purpose: TokenPurpose,
        token: &str,
        id: i64,
        email: &str,
    ) -> bool {
        let Some((claimed, tag)) = token.split_once('.') else {
            return false;
        };
        if canonical_id(claimed) != Some(id) {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        key.mac(&[
            purpose.as_str().as_bytes(),
            &id.to_be_bytes(),
            email.as_bytes(),
        ])
        .verify_slice(&tag)
        .is_ok()
    }
}

/// A positive id written the one way [`ManageToken::issue`] writes it: decimal digits, no
/// sign, no leading zero. `+7` and `07` would otherwise be further spellings of one link.
fn canonical_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_refs_name_their_send_and_resist_tampering() {
        let key = SecretKey::new(vec![7; 32]).unwrap();
        let other = SecretKey::new(vec![8; 32]).unwrap();
        let r = SendRef::issue(&key, SendRef::BOUNCE, 123_456);
        assert!(r.starts_with("123456-") && r.len() == 7 + 16, "{r}");
        assert_eq!(SendRef::verify(&key, SendRef::BOUNCE, &r), Some(123_456));
        assert_eq!(
            SendRef::verify(&key, SendRef::BOUNCE, &r.to_ascii_uppercase()),
            Some(123_456),
            "a server that upper-cases the local part"
        );
        assert_eq!(
            SendRef::verify(&key, SendRef::UNSUBSCRIBE, &r),
            None,
            "another purpose"
        );
        assert_eq!(
            SendRef::verify(&other, SendRef::BOUNCE, &r),
            None,
            "another key"
        );
        let forged = r.replacen("123456", "123457", 1);
        assert_eq!(SendRef::verify(&key, SendRef::BOUNCE, &forged), None);
        for bad in [
            "",
            "-",
            "123456",
            "0123456-0000000000000000",
            "+1-0000000000000000",
            "1-zz",
        ] {
            assert_eq!(SendRef::verify(&key, SendRef::BOUNCE, bad), None, "{bad:?}");
        }
    }

    fn key() -> SecretKey {
        SecretKey::new(vec![7u8; 32]).unwrap()
    }

    #[test]
    fn random_tokens_are_256_bits_and_distinct() {
        let a = RandomToken::generate();
        let b = RandomToken::generate();
        assert_eq!(URL_SAFE_NO_PAD.decode(a.as_str()).unwrap().len(), 32);
        assert_ne!(a.as_str(), b.as_str());
        assert_ne!(a.hash().0, a.as_str());
        assert_eq!(a.hash().0.len(), 64);
    }

    #[test]
    fn manage_tokens_verify_only_unchanged() {
        let k = key();
        let t = ManageToken::issue(&k, TokenPurpose::Unsubscribe, 42, "a@example.com");
        assert_eq!(ManageToken::claimed_id(&t), Some(42));
        assert!(ManageToken::verify(
            &k,
            TokenPurpose::Unsubscribe,
            &t,
            42,
            "a@example.com"
        ));
        assert!(!ManageToken::verify(
            &k,
            TokenPurpose::Preferences,
            &t,
            42,
            "a@example.com"
        ));
        assert!(!ManageToken::verify(
            &k,
            TokenPurpose::Unsubscribe,
            &t,
            43,
            "a@example.com"
        ));
        assert!(!ManageToken::verify(
            &k,
            TokenPurpose::Unsubscribe,
            &t,
            42,
            "b@example.com"
        ));
        let other = SecretKey::new(vec![8u8; 32]).unwrap();
        assert!(!ManageToken::verify(
            &other,
            TokenPurpose::Unsubscribe,
            &t,
            42,
            "a@example.com"
        ));
        // Flip one character of the tag.
        let mut tampered = t.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!ManageToken::verify(
            &k,
            TokenPurpose::Unsubscribe,
            &tampered,
            42,
            "a@example.com"
        ));
        // The id has one spelling: with a sign or a leading zero the link is not the link.
        let tag = t.split_once('.').unwrap().1;
        for other in [
            format!("042.{tag}"),
            format!("+42.{tag}"),
            format!("0.{tag}"),
        ] {
            assert_eq!(ManageToken::claimed_id(&other), None, "{other}");
            assert!(!ManageToken::verify(
                &k,
                TokenPurpose::Unsubscribe,
                &other,
                42,
                "a@example.com"
            ));
        }
    }

    #[test]
    fn seal_round_trips_and_hides() {
        let k = key();
        let t = RandomToken::generate();
        let sealed = k.seal("<1@x>", &t);
        assert_ne!(sealed, t.as_str());
        assert_eq!(k.unseal("<1@x>", &sealed).unwrap().as_str(), t.as_str());
        assert_ne!(k.unseal("<2@x>", &sealed).unwrap().as_str(), t.as_str());
    }
}

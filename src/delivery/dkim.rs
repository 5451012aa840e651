//! DKIM signatures (RFC 6376, relaxed/relaxed, SHA-256; RSA and Ed25519 per RFC 8463),
//! computed over the exact bytes that go on the wire.
//!
//! Why not lettre's signer: it hashes the message's own header map, but a multipart body
//! writes its `Content-Type` (and lettre writes `MIME-Version`) outside that map, so a
//! signature listing them never verified (dkimpy, opendkim and SpamAssassin all said
//! "body hash / signature did not verify"). It also cannot over-sign a header and reads only
//! PKCS#1 RSA keys. Signing the final bytes makes what is hashed exactly what is sent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// Headers signed, in this order. Each is listed once more than it occurs (over-signing,
/// RFC 6376 §8.15), so a copy added in transit — a second `List-Unsubscribe` pointing at a
/// phishing page, another `Subject`, a `Content-Type` prepended — makes the signature fail:
/// a verifier reads headers bottom-up and the extra listing stands for "no more of these".
/// The last four are usually absent; listing them signs their absence, so nobody can add
/// a `Reply-To`, `Cc`, `Sender` or `In-Reply-To` under our signature.
const SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    // List mail: Gmail's feedback loop counts a Feedback-ID only under the sender's signature.
    "Feedback-ID",
    "Precedence",
    "List-Subscribe",
    "List-Archive",
    "List-Help",
    "List-Post",
    "Archived-At",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "Cc",
    "Sender",
    "In-Reply-To",
];

#[derive(Debug, thiserror::Error)]
pub enum DkimKeyError {
    #[error(
        "not a private key herald can read: expected an RSA key in PEM (`BEGIN RSA PRIVATE KEY` \
         or `BEGIN PRIVATE KEY`, as openssl and opendkim-genkey write) or an Ed25519 key (PKCS#8 \
         PEM from `openssl genpkey -algorithm ed25519`, or the base64 of its 32-byte seed)"
    )]
    Unreadable,
    #[error("the RSA key has {0} bits; DKIM verifiers require at least 1024 (use 2048)")]
    TooShort(usize),
}

enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A key, a domain and a selector.
pub struct DkimKey {
    domain: String,
    selector: String,
    key: Key,
}

/// One or more keys: each adds its own `DKIM-Signature` over the same message, so RSA and
/// Ed25519 go side by side (verifiers that know only RSA still pass), and an old and a new
/// selector both verify during a key rotation.
pub struct DkimSigner {
    keys: Vec<DkimKey>,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("d={}, s={}", k.domain, k.selector))
            .collect();
        write!(f, "DkimSigner({})", list.join("; "))
    }
}

/// The DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): what follows is the seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn parse_key(text: &str) -> Result<Key, DkimKeyError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let text = text.trim();
    let rsa_key = if text.contains("BEGIN RSA PRIVATE KEY") {
        Some(rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(|_| DkimKeyError::Unreadable)?)
    } else if text.contains("BEGIN PRIVATE KEY") {
        match rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            Ok(k) => Some(k),
            Err(_) => {
                // Not RSA: an Ed25519 key in PKCS#8.
                let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = B64
                    .decode(body.trim())
                    .map_err(|_| DkimKeyError::Unreadable)?;
                let seed = der
                    .strip_prefix(&ED25519_PKCS8_PREFIX[..])
                    .ok_or(DkimKeyError::Unreadable)?;
                return ed25519_from_seed(seed);
            }
        }
    } else {
        None
    };
    match rsa_key {
        Some(k) if k.size() * 8 < 1024 => Err(DkimKeyError::TooShort(k.size() * 8)),
        Some(k) => Ok(Key::Rsa(Box::new(k))),
        None => {
            let seed = B64.decode(text).map_err(|_| DkimKeyError::Unreadable)?;
            ed25519_from_seed(&seed)
        }
    }
}

fn ed25519_from_seed(seed: &[u8]) -> Result<Key, DkimKeyError> {
    let seed: [u8; 32] = seed.try_into().map_err(|_| DkimKeyError::Unreadable)?;
    Ok(Key::Ed25519(Box::new(
        ed25519_dalek::SigningKey::from_bytes(&seed),
    )))
}

impl DkimKey {
    pub fn new(key_text: &str, domain: &str, selector: &str) -> Result<Self, DkimKeyError> {
        Ok(Self {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key: parse_key(key_text)?,
        })
    }

    /// The TXT record to publish at `dns_name()`.
    pub fn dns_record(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        match &self.key {
            Key::Rsa(k) => {
                let der = k
                    .to_public_key()
                    .to_public_key_der()
                    .expect("an RSA public key encodes");
                format!("v=DKIM1; k=rsa; p={}", B64.encode(der.as_bytes()))
            }
            Key::Ed25519(k) => format!(
                "v=DKIM1; k=ed25519; p={}",
                B64.encode(k.verifying_key().as_bytes())
            ),
        }
    }

    /// The record as a zone file takes it: one TXT value may hold several strings of at
    /// most 255 characters each (RFC 1035 §3.3.14), which resolvers join; a 2048-bit RSA
    /// key's record (~410 characters) written as one string is refused by zone files.
    pub fn dns_record_strings(&self) -> String {
        txt_strings(&self.dns_record())
    }

    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The RSA key's size when it is under the 2048 bits RFC 8301 asks signers to use.
    pub fn weak_rsa_bits(&self) -> Option<usize> {
        use rsa::traits::PublicKeyParts;
        match &self.key {
            Key::Rsa(k) if k.size() * 8 < 2048 => Some(k.size() * 8),
            _ => None,
        }
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The `DKIM-Signature` header (with its CRLF) for a message whose headers are
    /// `headers` and whose relaxed body hash is `bh`.
    fn signature(&self, headers: &[&[u8]], bh: &str, unix_time: i64) -> Vec<u8> {
        // The h= list and the header data it covers, picking instances bottom-up; each
        // name once more than it occurs (the extra one covers the empty string).
        let mut names: Vec<&str> = Vec::new();
        let mut data = Vec::new();
        for want in SIGNED {
            for h in headers
                .iter()
                .rev()
                .filter(|h| header_name(h).eq_ignore_ascii_case(want.as_bytes()))
            {
                names.push(want);
                data.extend_from_slice(&relaxed_header(h));
            }
            names.push(want);
        }
        let h = names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(":");
        let algorithm = match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        };
        // Folded at tag boundaries (and inside h=, which is long), before hashing: the
        // verifier hashes it as sent.
        let h_folded = fold_list(&h, 70);
        let unsigned = format!(
            "DKIM-Signature: v=1; a={algorithm}; c=relaxed/relaxed; d={}; s={};\r\n\tt={unix_time}; h={h_folded};\r\n\tbh={bh};\r\n\tb=",
            self.domain, self.selector
        );
        let canon = relaxed_header(unsigned.as_bytes());
        // Without its trailing CRLF (RFC 6376 §3.7).
        data.extend_from_slice(&canon[..canon.len() - 2]);
        let digest = Sha256::digest(&data);
        let signature = match &self.key {
            Key::Rsa(k) => k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
                .expect("RSA signing with a valid key"),
            Key::Ed25519(k) => {
                use ed25519_dalek::Signer;
                // RFC 8463: Ed25519 signs the SHA-256 hash.
                k.sign(&digest).to_bytes().to_vec()
            }
        };
        let b = B64.encode(signature);
        let mut out = Vec::with_capacity(unsigned.len() + b.len() + 16);
        out.extend_from_slice(unsigned.as_bytes());
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n\t");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// `"…" "…"`: a TXT value as strings of at most 255 characters.
fn txt_strings(record: &str) -> String {
    record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).expect("an ASCII record")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A colon-separated list folded (CRLF + tab) after a colon so no line runs past `width`.
/// Folding whitespace inside h= is allowed (RFC 6376 §3.5) and ignored by the relaxed form.
fn fold_list(list: &str, width: usize) -> String {
    let mut out = String::with_capacity(list.len() + 16);
    let mut line = 0;
    for (i, item) in list.split(':').enumerate() {
        if i > 0 {
            out.push(':');
            line += 1;
            if line + item.len() > width {
                out.push_str("\r\n\t");
                line = 0;
            }
        }
        out.push_str(item);
        line += item.len();
    }
    out
}

impl DkimSigner {
    /// One key (`mail.dkim.key_file`).
    pub fn new(key_text: &str, domain: &str, selector: &str) -> Result<Self, DkimKeyError> {
        Ok(Self {
            keys: vec![DkimKey::new(key_text, domain, selector)?],
        })
    }

    /// Several keys, each signing (none: None).
    pub fn with_keys(keys: Vec<DkimKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    pub fn keys(&self) -> &[DkimKey] {
        &self.keys
    }

    /// `message` (CRLF line ends, headers then a blank line then the body) with a
    /// `DKIM-Signature` header per key in front.
    pub fn sign(&self, message: &[u8], unix_time: i64) -> Vec<u8> {
        let split = find(message, b"\r\n\r\n").map(|i| i + 2);
        let (head, body) = match split {
            Some(i) => (&message[..i], &message[i + 2..]),
            None => (message, &b""[..]),
        };
        let headers = split_headers(head);
        let bh = B64.encode(Sha256::digest(relaxed_body(body)));
        let mut out = Vec::with_capacity(message.len() + 1024 * self.keys.len());
        for key in &self.keys {
            out.extend_from_slice(&key.signature(&headers, &bh, unix_time));
        }
        out.extend_from_slice(message);
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Each header with its continuation lines and final CRLF.
fn split_headers(head: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        if head[i] == b'\n' {
            let next = head.get(i + 1);
            if !matches!(next, Some(b' ' | b'\t')) {
                out.push(&head[start..=i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < head.len() {
        out.push(&head[start..]);
    }
    out
}

fn header_name(h: &[u8]) -> &[u8] {
    let end = h.iter().position(|&c| c == b':').unwrap_or(h.len());
    let mut name = &h[..end];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    name
}

/// RFC 6376 §3.4.2: lower-case name, unfolded value, runs of whitespace as one space,
/// none around the colon or at the end.
fn relaxed_header(h: &[u8]) -> Vec<u8> {
    let colon = h.iter().position(|&c| c == b':').unwrap_or(h.len());
    let mut out: Vec<u8> = header_name(h).to_ascii_lowercase();
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &c in h.get(colon + 1..).unwrap_or_default() {
        match c {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = true,
            _ => {
                if pending_space && started {
                    out.push(b' ');
                }
                pending_space = false;
                started = true;
                out.push(c);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.4: whitespace runs as one space, none at line ends, no empty lines at the
/// end, and a final CRLF if there is any content.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut blank_run = 0usize;
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    for line in body.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut canon = Vec::with_capacity(line.len());
        let mut space = false;
        for &c in line {
            if c == b' ' || c == b'\t' {
                space = true;
            } else {
                if space {
                    canon.push(b' ');
                }
                space = false;
                canon.push(c);
            }
        }
        if canon.is_empty() {
            blank_run += 1;
        } else {
            for _ in 0..blank_run {
                out.extend_from_slice(b"\r\n");
            }
            blank_run = 0;
            out.extend_from_slice(&canon);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_follows_rfc_6376_examples() {
        // RFC 6376 §3.4.6.
        assert_eq!(relaxed_header(b"A: X\r\n"), b"a:X\r\n");
        assert_eq!(relaxed_header(b"B : Y\t\r\n\tZ  \r\n"), b"b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
    }

    #[test]
    fn reads_the_key_forms_the_standard_tools_write() {
        let seed = B64.encode([7u8; 32]);
        assert!(matches!(parse_key(&seed), Ok(Key::Ed25519(_))));
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&[7u8; 32]);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            B64.encode(&der)
        );
        assert!(matches!(parse_key(&pem), Ok(Key::Ed25519(_))));
        assert!(matches!(
            parse_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
            Err(DkimKeyError::Unreadable)
        ));
        assert!(parse_key("not a key").is_err());
    }

    #[test]
    fn long_records_are_split_into_strings_a_zone_file_takes() {
        // The length of a 2048-bit RSA key's record.
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let strings = txt_strings(&record);
        let parts: Vec<&str> = strings
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap()
            .split("\" \"")
            .collect();
        assert_eq!(parts.len(), 2, "{strings}");
        let mut joined = String::new();
        for inner in &parts {
            assert!(inner.len() <= 255);
            joined.push_str(inner);
        }
        assert_eq!(joined, record);
        assert_eq!(
            txt_strings("v=DKIM1; k=ed25519; p=abc"),
            "\"v=DKIM1; k=ed25519; p=abc\""
        );
    }

    #[test]
    fn h_lists_fold_without_changing_the_list() {
        let h = "from:from:to:to:subject:subject:date:date:message-id:message-id:list-id";
        let folded = fold_list(h, 20);
        assert!(folded.lines().all(|l| l.trim().len() <= 21), "{folded}");
        assert_eq!(folded.replace("\r\n\t", ""), h);
    }
}

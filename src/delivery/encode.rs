//! A mail body's transfer encoding, chosen and written in one pass over the text.
//!
//! lettre can do this itself, but for every message it scans the body once per candidate
//! encoding, converts line ends by inserting each CR in place, and quoted-printable-encodes
//! through a general encoder: a profile of a 100,000-reader delivery put 16% of herald's
//! time there (`quoted_printable::_encode` 6.0%, our CRLF pass 5.3%, lettre's `encode_crlf`
//! 2.5%, its encoding chooser 1.9%). Here one scan decides, one pass writes CRLF-terminated
//! output, and lettre is handed the finished bytes.
//!
//! The choice (RFC 2045 §6): `7bit` when the text is ASCII with lines of at most 998
//! octets, else the smaller of quoted-printable (mostly-ASCII text: a stray `·` or `é`) and
//! base64 (text mostly in another script, where quoted-printable would triple its size).

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// The longest line 7bit allows (RFC 5322 §2.1.1), without its CRLF.
const MAX_7BIT_LINE: usize = 998;
/// Quoted-printable lines are at most 76 characters, the soft break's `=` included.
const QP_LINE: usize = 76;
/// Input bytes per base64 line (76 characters of output).
const B64_CHUNK: usize = 57;

/// `text` as a body lettre sends as it is, every line ending in CRLF.
pub fn body(text: &str) -> Body {
    let bytes = text.as_bytes();
    let scan = Scan::of(bytes);
    if scan.escapes == 0 && scan.longest_line <= MAX_7BIT_LINE && !scan.lone_cr {
        return Body::dangerous_pre_encoded(crlf(bytes), ContentTransferEncoding::SevenBit);
    }
    // Every escaped byte becomes three characters, and each line of output holds at most
    // 75 of them plus the soft break.
    let qp = bytes.len() + 2 * scan.escapes;
    let qp = qp + 3 * (qp / (QP_LINE - 1));
    let b64 = bytes.len().div_ceil(3) * 4;
    let b64 = b64 + 2 * b64.div_ceil(QP_LINE);
    if qp <= b64 {
        Body::dangerous_pre_encoded(
            quoted_printable(bytes),
            ContentTransferEncoding::QuotedPrintable,
        )
    } else {
        Body::dangerous_pre_encoded(base64(bytes), ContentTransferEncoding::Base64)
    }
}

/// What one look at the text says about it.
struct Scan {
    /// Bytes quoted-printable must write as `=XX`: non-ASCII, `=`, controls but tab.
    escapes: usize,
    longest_line: usize,
    /// A CR not followed by LF: 7bit cannot carry it.
    lone_cr: bool,
}

impl Scan {
    /// Each count is its own pass, written so the compiler vectorises it (or done by
    /// memchr): at a million readers every pass over every body costs seconds.
    fn of(bytes: &[u8]) -> Self {
        let unprintable = bytes
            .iter()
            .map(|&b| !is_literal(b) as usize)
            .sum::<usize>();
        let lf = memchr::memchr_iter(b'\n', bytes).count();
        let cr = memchr::memchr_iter(b'\r', bytes).count();
        let crlf = if cr == 0 {
            0
        } else {
            memchr::memmem::find_iter(bytes, b"\r\n").count()
        };
        let mut longest_line = 0;
        let mut line_start = 0;
        for i in memchr::memchr_iter(b'\n', bytes) {
            longest_line = longest_line.max(i - line_start);
            line_start = i + 1;
        }
        longest_line = longest_line.max(bytes.len() - line_start);
        Self {
            // Line breaks are not escaped; a lone CR is.
            escapes: unprintable - lf - crlf,
            // With CRLF line ends each line counted its CR: close enough for the 998 limit.
            longest_line,
            lone_cr: cr > crlf,
        }
    }
}

/// Printable ASCII but `=`, and space and tab: what quoted-printable writes as it is
/// (space and tab only inside a line).
#[inline]
fn is_literal(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b'=' || b == b'\t'
}

/// The lines of `bytes` without their LF or CRLF; a text ending in a line break has no
/// empty last line, and a CR is part of the line unless an LF follows it.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        Some(match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                line.strip_suffix(b"\r").unwrap_or(line)
            }
            None => std::mem::take(&mut rest),
        })
    })
}

/// Every line ending as CRLF (7bit text: nothing else changes).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    for line in lines(bytes) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 2045 §6.7: printable ASCII as it is, everything else `=XX`; spaces and tabs as they
/// are except at the end of a line; soft breaks (`=` CRLF) keep lines to 76 characters and
/// never split an escape or a UTF-8 character. A line starting `From ` gets its `F`
/// escaped, so an mbox on the way cannot add a `>` and break a DKIM signature.
fn quoted_printable(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 16);
    for line in lines(bytes) {
        qp_line(line, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn qp_line(line: &[u8], out: &mut Vec<u8>) {
    let n = line.len();
    let ws = |b: u8| b == b' ' || b == b'\t';
    let from = line.starts_with(b"From ");
    // Most lines of a digest: short and plain, copied whole.
    if n <= QP_LINE
        && !from
        && line.iter().all(|&b| is_literal(b))
        && !line.last().is_some_and(|&b| ws(b))
    {
        out.extend_from_slice(line);
        return;
    }
    let mut col = 0;
    let mut i = 0;
    while i < n {
        let b = line[i];
        let literal = is_literal(b) && !(ws(b) && i + 1 == n) && !(from && i == 0);
        if literal {
            // A run of literal bytes, copied in pieces that fit the line; trailing
            // whitespace at the end of the line is left to be escaped.
            let mut j = i + 1;
            while j < n && is_literal(line[j]) {
                j += 1;
            }
            if j == n && ws(line[n - 1]) {
                j -= 1;
            }
            while i < j {
                let left = j - i;
                let take = if j == n && col + left <= QP_LINE {
                    left
                } else {
                    left.min((QP_LINE - 1).saturating_sub(col))
                };
                if take == 0 {
                    out.extend_from_slice(b"=\r\n");
                    col = 0;
                    continue;
                }
                out.extend_from_slice(&line[i..i + take]);
                col += take;
                i += take;
            }
            continue;
        }
        // One unit: a whole UTF-8 character, so no soft break falls inside it.
        let unit = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        }
        .min(n - i);
        let width = 3 * unit;
        // Room for the soft break's `=` unless this is the line's last unit.
        let limit = if i + unit == n { QP_LINE } else { QP_LINE - 1 };
        if col + width > limit {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        for &c in &line[i..i + unit] {
            out.extend_from_slice(&[b'=', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        }
        col += width;
        i += unit;
    }
}

/// Base64 in lines of 76 characters.
fn base64(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4 * 78 / 76 + 4);
    let mut buf = [0u8; 76];
    for chunk in bytes.chunks(B64_CHUNK) {
        let n = engine
            .encode_slice(chunk, &mut buf)
            .expect("57 bytes fit in 76 characters");
        out.extend_from_slice(&buf[..n]);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::SinglePart;

    /// What a reader's mail program gets back, decoded by a parser we did not write.
    fn round_trip(text: &str) -> (String, String) {
        let part = SinglePart::plain(body(text));
        let raw = part.formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a MIME part");
        let cte = String::from_utf8_lossy(&raw)
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Transfer-Encoding: ")
                    .map(str::to_string)
            })
            .unwrap();
        (parsed.body_text(0).unwrap().into_owned(), cte)
    }

    fn normalised(text: &str) -> String {
        text.replace("\r\n", "\n")
    }

    #[test]
    fn each_kind_of_text_arrives_as_written() {
        let long_ascii = "word ".repeat(400);
        let cases: Vec<(String, &str)> = vec![
            ("Hello\nworld\n".into(), "7bit"),
            ("a plain line, no break".into(), "7bit"),
            (long_ascii.clone(), "quoted-printable"),
            (
                "Café in Zürich reopens, says the mayor · 1 December\n".repeat(50),
                "quoted-printable",
            ),
            ("Zürich · 1 — “quotes” ü\n".repeat(50), "base64"),
            (
                "Новости недели: что случилось в мире\n".repeat(40),
                "base64",
            ),
            ("日本語のニュース\n".repeat(40), "base64"),
            (
                "a = b\nends with a space \nends with a tab\t\n".into(),
                "quoted-printable",
            ),
            ("From the desk\n.\n..leading dots\n".into(), "7bit"),
            ("x".repeat(998), "7bit"),
            ("x".repeat(999), "quoted-printable"),
            (
                format!("{}é{}\n", "a".repeat(74), "b".repeat(80)),
                "quoted-printable",
            ),
            (
                "emoji 🎉 at the end of a long line ".repeat(3) + "🎉",
                "quoted-printable",
            ),
            ("lone\rcarriage return".into(), "quoted-printable"),
            ("windows\r\nline\r\nends\r\n".into(), "7bit"),
        ];
        for (text, cte) in cases {
            let (got, used) = round_trip(&text);
            assert_eq!(used, cte, "encoding for {text:?}");
            // Parsers may drop the final line break; compare the text itself.
            assert_eq!(
                normalised(&got).trim_end_matches('\n'),
                normalised(&text).trim_end_matches('\n'),
                "{cte}"
            );
        }
    }

    #[test]
    fn quoted_printable_lines_stay_short_and_whole() {
        let text = format!(
            "{}\nFrom here\ntrailing space \n{}",
            "é".repeat(100),
            "=".repeat(200)
        );
        let out = String::from_utf8(quoted_printable(text.as_bytes())).unwrap();
        assert!(out.is_ascii());
        for line in out.split("\r\n") {
            assert!(line.len() <= QP_LINE, "{line:?} is {} long", line.len());
            // A soft break never splits an escape or a character's escapes.
            let body = line.strip_suffix('=').unwrap_or(line);
            assert!(!body.ends_with("=C3"), "{line:?} splits é");
            let tail = &body[body.len().saturating_sub(2)..];
            assert!(!tail.contains('='), "{line:?} splits an escape");
        }
        assert!(out.contains("\r\n=46rom here\r\n"), "{out}");
        assert!(out.contains("trailing space=20\r\n"), "{out}");
    }

    #[test]
    fn every_line_ends_in_crlf() {
        for text in ["a\nb\n", "a\r\nb", "a\n\n\nb\n"] {
            for enc in [crlf(text.as_bytes()), quoted_printable(text.as_bytes())] {
                let s = String::from_utf8(enc).unwrap();
                assert!(s.ends_with("\r\n"));
                assert!(!s.replace("\r\n", "").contains(['\r', '\n']), "{s:?}");
            }
        }
        assert!(crlf(b"").is_empty());
        assert_eq!(crlf(b"a\n\nb"), b"a\r\n\r\nb\r\n");
    }
}

//! A feed document's bytes as UTF-8 before the feed parser sees them. The parser reads
//! UTF-8 and what an XML declaration names; the rest is ours: UTF-16 (which it panicked
//! on), the charset of the HTTP `Content-Type` for a document that declares none (a
//! windows-1252 feed without an XML declaration failed every poll), and a document that is
//! not UTF-8 and says nothing, read as windows-1252 as feed readers and browsers do.

use std::borrow::Cow;

/// The document as UTF-8 (or as it is when its XML declaration names its encoding, which
/// the XML reader honours). `http_charset` is the `charset` of the response's
/// Content-Type, if any.
pub fn to_utf8<'a>(bytes: &'a [u8], http_charset: Option<&str>) -> Cow<'a, [u8]> {
    if let Some(text) = utf16_to_utf8(bytes) {
        return Cow::Owned(text.into_bytes());
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") || declared_encoding(bytes).is_some() {
        return Cow::Borrowed(bytes);
    }
    let named = http_charset.and_then(|c| {
        encoding_rs::Encoding::for_label(c.trim().trim_matches(['"', '\'']).as_bytes())
    });
    let encoding = match named {
        Some(e) if e != encoding_rs::UTF_8 => e,
        // UTF-8 or nothing said: UTF-8 if it is, else what a Western feed most likely is.
        _ if std::str::from_utf8(bytes).is_ok() => return Cow::Borrowed(bytes),
        _ => encoding_rs::WINDOWS_1252,
    };
    let (text, _, _) = encoding.decode(bytes);
    Cow::Owned(text.into_owned().into_bytes())
}

/// The `encoding` an XML declaration at the start of the document names.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(200)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = head[start..].strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let after = &decl[decl.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = after[1..].split(quote).next()?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The `charset` parameter of a Content-Type value.
pub fn charset_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// A UTF-16 document (either byte order, with or without a byte-order mark) as UTF-8, with
/// its XML declaration saying so; None for anything else. The feed parser reads UTF-8 (and
/// what its XML reader transcodes), and panicked on UTF-16.
fn utf16_to_utf8(bytes: &[u8]) -> Option<String> {
    let (big_endian, body) = match bytes {
        [0xFE, 0xFF, rest @ ..] => (true, rest),
        [0xFF, 0xFE, rest @ ..] => (false, rest),
        // No mark: an XML document starts with '<' (or whitespace), one zero byte beside it.
        [0, b, ..] if *b != 0 => (true, bytes),
        [b, 0, ..] if *b != 0 => (false, bytes),
        _ => return None,
    };
    let units = body.chunks_exact(2).map(|c| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    });
    let text: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    // <?xml version="1.0" encoding="UTF-16"?> would now be a lie.
    if let Some(rest) = text.strip_prefix("<?xml")
        && let Some(end) = rest.find("?>")
    {
        let decl = &rest[..end];
        let decl = match decl.find("encoding") {
            Some(i) => {
                let after = &decl[i..];
                let quote_at = after.find(['"', '\'']);
                match quote_at {
                    Some(q) => {
                        let quote = after.as_bytes()[q] as char;
                        let close = after[q + 1..].find(quote).map(|c| q + 1 + c);
                        match close {
                            Some(c) => format!(
                                "{} encoding=\"UTF-8\"{}",
                                &decl[..i].trim_end(),
                                &after[c + 1..]
                            ),
                            None => decl.to_string(),
                        }
                    }
                    None => decl.to_string(),
                }
            }
            None => decl.to_string(),
        };
        return Some(format!("<?xml{decl}{}", &rest[end..]));
    }
    Some(text)
}

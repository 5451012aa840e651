//! Atom 0.3 (2003) read as Atom 1.0, its successor: the namespace, the dates (`issued` is
//! `published`, `modified` is `updated`), `tagline` and `copyright` renamed, and each text
//! construct's `type` (a MIME type in 0.3) and `mode` (`xml`, `escaped`, `base64`) turned
//! into 1.0's `text`, `html` or `xhtml`, base64 decoded. feed-rs reads only 1.0: it refused
//! a document with `type="text/plain"` and showed base64 as it came.

use base64::Engine;
use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

use super::xmlfacts::ATOM03_NS;

const ATOM10_NS: &str = "http://www.w3.org/2005/Atom";

/// The document as Atom 1.0; on XML it cannot read, the namespace swapped and nothing else
/// (feed-rs then says what is wrong).
pub fn to_atom10(bytes: &[u8]) -> String {
    convert(bytes).unwrap_or_else(|| String::from_utf8_lossy(bytes).replace(ATOM03_NS, ATOM10_NS))
}

const TEXT_CONSTRUCTS: &[&str] = &[
    "title",
    "tagline",
    "subtitle",
    "summary",
    "content",
    "copyright",
    "rights",
    "info",
];

fn renamed(name: &str) -> &str {
    match name {
        "issued" => "published",
        "modified" => "updated",
        "tagline" => "subtitle",
        "copyright" => "rights",
        other => other,
    }
}

fn convert(bytes: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut writer = Writer::new(Vec::with_capacity(bytes.len()));
    let mut buf = Vec::new();
    // The name of the element whose base64 text is being collected, and the text.
    let mut base64: Option<(String, String)> = None;
    loop {
        let event = reader.read_event_into(&mut buf).ok()?;
        match event {
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) if base64.is_some() => {}
            Event::Start(ref e) | Event::Empty(ref e) => {
                let (start, decode) = rewrite_start(e);
                if matches!(event, Event::Start(_)) {
                    if decode {
                        base64 = Some((e.name().0.to_string(), String::new()));
                    }
                    writer.write_event(Event::Start(start)).ok()?;
                } else {
                    writer.write_event(Event::Empty(start)).ok()?;
                }
            }
            Event::Text(ref t) if base64.is_some() => {
                if let Some((_, text)) = base64.as_mut() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::End(ref e) => {
                let name = e.name().0.to_string();
                match base64.take() {
                    Some((open, text)) if open == name => {
                        let clean: String =
                            text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(clean.as_bytes())
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        writer
                            .write_event(Event::Text(BytesText::new(&decoded)))
                            .ok()?;
                    }
                    // Inside base64 text: nothing else is written.
                    Some(collecting) => {
                        base64 = Some(collecting);
                        buf.clear();
                        continue;
                    }
                    None => {}
                }
                let (prefix, local) = split(&name);
                let new = format!("{prefix}{}", renamed(local));
                writer.write_event(Event::End(BytesEnd::new(new))).ok()?;
            }
            _ if base64.is_some() => {}
            other => writer.write_event(other).ok()?,
        }
        buf.clear();
    }
    String::from_utf8(writer.into_inner()).ok()
}

fn split(qualified: &str) -> (&str, &str) {
    match qualified.rfind(':') {
        Some(i) => (&qualified[..=i], &qualified[i + 1..]),
        None => ("", qualified),
    }
}

/// The start tag renamed, its namespace and text-construct attributes as Atom 1.0 has
/// them; true when its content is base64 to decode.
fn rewrite_start(e: &BytesStart) -> (BytesStart<'static>, bool) {
    let name = e.name().0.to_string();
    let (prefix, local) = split(&name);
    let mut out = BytesStart::new(format!("{prefix}{}", renamed(local)));
    let (mut mime, mut mode) = (None, None);
    let construct = TEXT_CONSTRUCTS.contains(&local);
    for a in e.attributes().flatten() {
        let key = a.key.0.to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_default();
        match key.as_str() {
            "type" if construct => mime = Some(value.trim().to_ascii_lowercase()),
            "mode" if construct => mode = Some(value.trim().to_ascii_lowercase()),
            _ if value.trim() == ATOM03_NS => out.push_attribute((key.as_str(), ATOM10_NS)),
            _ => out.push_attribute((key.as_str(), value.as_str())),
        }
    }
    if !construct {
        return (out, false);
    }
    let mode = mode.as_deref().unwrap_or("xml");
    let markup = matches!(
        mime.as_deref(),
        Some("text/html" | "html" | "application/xhtml+xml" | "xhtml")
    );
    let textual = markup
        || mime
            .as_deref()
            .is_none_or(|m| m == "text" || m.starts_with("text/"));
    let kind = match (mode, markup) {
        _ if !textual => {
            // Not text (an image in base64, say): kept as its MIME type, not decoded.
            out.push_attribute(("type", mime.as_deref().unwrap_or("text")));
            return (out, false);
        }
        ("escaped" | "base64", true) => "html",
        (_, true) => "xhtml",
        (_, false) => "text",
    };
    out.push_attribute(("type", kind));
    (out, mode == "base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_types_become_atom_1_0() {
        let doc = format!(
            r#"<feed version="0.3" xmlns="{ATOM03_NS}"><entry><issued>2026-01-01T00:00:00Z</issued>
<title type="text/plain">A &amp; B</title>
<summary type="text/html" mode="escaped">&lt;p&gt;Hi&lt;/p&gt;</summary>
<content type="application/xhtml+xml" mode="xml"><div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content>
<tagline mode="base64">SGVsbG8gPHdvcmxkPg==</tagline></entry></feed>"#
        );
        let out = to_atom10(doc.as_bytes());
        assert!(out.contains(ATOM10_NS), "{out}");
        assert!(
            out.contains(r#"<title type="text">A &amp; B</title>"#),
            "{out}"
        );
        assert!(
            out.contains(r#"<summary type="html">&lt;p&gt;Hi&lt;/p&gt;</summary>"#),
            "{out}"
        );
        assert!(out.contains(r#"<content type="xhtml"><div"#), "{out}");
        assert!(
            out.contains(r#"<subtitle type="text">Hello &lt;world&gt;</subtitle>"#),
            "{out}"
        );
        assert!(
            out.contains("<published>2026-01-01T00:00:00Z</published>"),
            "{out}"
        );
    }
}

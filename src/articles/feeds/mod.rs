//! RSS 2.0, Atom and JSON Feed: parsing (feed-rs) and polling each section's feed URL with
//! conditional GET. A feed that fails is logged, counted, shown by `herald sections list`,
//! and retried at the next poll; it never stops herald and never half-imports.

use super::xmlfacts::{self, EntryFacts, XmlFacts};
use super::{
    atom03, charset, cp1252_controls, decode_entities, escape_html, html_to_plain, html_to_text,
    jsonfeed, one_line, sanitize_html_with_base,
};
use crate::clock::Clock;
use crate::store::{NewArticle, SectionFeed};
use feed_rs::model::FeedType;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("not a feed (RSS, Atom or JSON Feed): {0}")]
    Parse(String),
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the feed is larger than {limit} (feeds.max_size)")]
    TooLarge { limit: crate::domain::ByteSize },
}

/// The largest summary kept (the API's limit too); a longer one is cut, and the cut counted.
pub const MAX_SUMMARY: usize = 100_000;

/// A feed document read into articles, with what was left out and why.
#[derive(Debug, Default)]
pub struct ParsedFeed {
    pub articles: Vec<NewArticle>,
    pub report: FeedReport,
    /// The feed's own link (the section's page on the site), if it gives one.
    pub page_url: Option<String>,
}

/// What one feed document held: items, and those skipped by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedReport {
    pub items: usize,
    /// No link, or a relative one with nothing to resolve it against.
    pub no_link: usize,
    /// A link that is not http(s) (`javascript:`, `data:` …) or not a URL at all.
    pub unsafe_link: usize,
    /// The same guid earlier in the same document.
    pub duplicate: usize,
    /// Summaries cut to [`MAX_SUMMARY`].
    pub summaries_cut: usize,
}

impl FeedReport {
    pub fn skipped(&self) -> usize {
        self.no_link + self.unsafe_link + self.duplicate
    }
}

impl std::fmt::Display for FeedReport {
    /// "12 items, 3 skipped (2 with no http(s) link, 1 duplicate)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(f, "{} item{}", self.items, plural(self.items))?;
        let reasons: Vec<String> = [
            (self.no_link, "with no http(s) link"),
            (self.unsafe_link, "with an unsafe or malformed link"),
            (self.duplicate, "repeated in the feed"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
        write!(f, ", {} skipped", self.skipped())?;
        if !reasons.is_empty() {
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.summaries_cut > 0 {
            write!(
                f,
                ", {} summar{} cut to {} kB",
                self.summaries_cut,
                if self.summaries_cut == 1 { "y" } else { "ies" },
                MAX_SUMMARY / 1000
            )?;
        }
        Ok(())
    }
}

/// Parse a feed document into articles. `document_url` is where it was fetched from (none
/// for a file), the second base for relative links after the item's `xml:base` and before
/// the channel's own link. Items are keyed by their guid/id, else their link.
pub fn parse_feed(bytes: &[u8], document_url: Option<&str>) -> Result<ParsedFeed, FeedError> {
    parse_feed_as(bytes, document_url, None)
}

/// [`parse_feed`] for a document fetched over HTTP, whose Content-Type said `charset`.
pub fn parse_feed_as(
    bytes: &[u8],
    document_url: Option<&str>,
    http_charset: Option<&str>,
) -> Result<ParsedFeed, FeedError> {
    let utf8 = charset::to_utf8(bytes, http_charset);
    let mut bytes: &[u8] = &utf8;
    let document_url = document_url.and_then(|u| Url::parse(u).ok());
    let is_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
        == Some(&b'{');
    let mut json_facts = Vec::new();
    let mended_json;
    if is_json {
        let start = bytes.iter().position(|b| *b == b'{').unwrap_or(0);
        if let Some((doc, facts)) = jsonfeed::normalise(&bytes[start..]) {
            mended_json = doc;
            bytes = &mended_json;
            json_facts = facts;
        }
    }
    let facts = if is_json {
        XmlFacts::default()
    } else {
        xmlfacts::scan(bytes, document_url.as_ref())
    };
    // `<rss>` without a version (or one feed-rs does not list) is read as RSS 2.0, as
    // every feed reader reads it; feed-rs would call it no feed at all.
    let versioned;
    if let Some((at, written)) = &facts.rss_unversioned {
        versioned = with_rss_version(bytes, *at, written.is_some());
        bytes = &versioned;
    }
    // Atom 0.3 is Atom 1.0's draft: read it as 1.0 (src/articles/atom03.rs).
    let atom03;
    if facts.atom03 {
        atom03 = atom03::to_atom10(bytes);
        bytes = atom03.as_bytes();
    }
    let parser = feed_rs::parser::Builder::new()
        .base_uri(document_url.as_ref().map(Url::as_str))
        // Without a guid, key by the link: feed-rs would otherwise hash link+title, and a
        // corrected title would then import the same story twice.
        .id_generator(|links, title, _| {
            links
                .first()
                .map(|l| l.href.clone())
                .or_else(|| title.as_ref().map(|t| format!("title:{}", t.content)))
                .unwrap_or_default()
        })
        .build();
    let feed = parse_guarded(|| parser.parse(bytes))?;
    if feed.entries.is_empty() && !facts.entries.is_empty() {
        return Err(FeedError::Parse(format!(
            "{} items found but none could be read{}",
            facts.entries.len(),
            if facts.atom03 { " (Atom 0.3)" } else { "" }
        )));
    }
    // Per-item facts only when both readings agree on the items.
    let entry_facts: Vec<EntryFacts> =
        if facts.complete && facts.entries.len() == feed.entries.len() {
            facts.entries
        } else {
            vec![EntryFacts::default(); feed.entries.len()]
        };
    // RSS titles and (pre-2.0) descriptions are HTML-ish text: feeds write `&eacute;` or
    // `&amp;eacute;` in them and readers show "é". JSON Feed titles too, in practice.
    let html_ish = matches!(
        feed.feed_type,
        FeedType::RSS0 | FeedType::RSS1 | FeedType::RSS2 | FeedType::JSON
    );
    // RSS 0.9x and 1.0 descriptions carry escaped HTML as 2.0's do (feed-rs calls them text).
    let html_descriptions = matches!(feed.feed_type, FeedType::RSS0 | FeedType::RSS1);
    let channel_link = feed
        .links
        .iter()
        .filter(|l| is_page_link(l))
        .find_map(|l| Url::parse(l.href.trim()).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let feed_author = feed
        .authors
        .iter()
        .find_map(person_name)
        .or_else(|| facts.channel_author.as_deref().and_then(byline));
    let mut report = FeedReport {
        items: feed.entries.len(),
        ..FeedReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, (e, ef)) in feed.entries.into_iter().zip(entry_facts).enumerate() {
        let bases: Vec<&Url> = [
            ef.base.as_ref(),
            document_url.as_ref(),
            channel_link.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        // An Atom entry without an alternate link: its id, when that is a web address
        // (as an RSS guid without isPermaLink is).
        let atom_id = (feed.feed_type == FeedType::Atom)
            .then(|| e.id.trim())
            .filter(|id| id.starts_with("https://") || id.starts_with("http://"))
            .map(str::to_string);
        let candidate = e
            .links
            .iter()
            .find(|l| is_page_link(l))
            .map(|l| l.href.clone())
            .or(ef.permalink.clone())
            .or(atom_id);
        let url = match candidate.as_deref().map(|h| resolve_link(h, &bases)) {
            Some(LinkCheck::Ok(u)) => u,
            Some(LinkCheck::Unsafe) => {
                report.unsafe_link += 1;
                continue;
            }
            Some(LinkCheck::Missing) | None => {
                report.no_link += 1;
                continue;
            }
        };
        let guid = if e.id.trim().is_empty() {
            url.clone()
        } else {
            one_line(&e.id, 1000)
        };
        if !seen.insert(guid.clone()) {
            report.duplicate += 1;
            continue;
        }
        let title = e
            .title
            .as_ref()
            .map(|t| text_of(t, html_ish))
            .unwrap_or_default();
        let title = one_line(&title, 500);
        let title = if title.is_empty() { url.clone() } else { title };
        // Inside the summary or content, its own xml:base comes first.
        let content_bases: Vec<&Url> = ef
            .content_base
            .iter()
            .chain(bases.iter().copied())
            .collect();
        let jf = json_facts.get(i).cloned().unwrap_or_default();
        let declared: Vec<String> = ef.images.iter().chain(&jf.images).cloned().collect();
        let image_url = image_of(&e, &declared, &content_bases);
        let (summary, summary_is_html) = match (&e.summary, &e.content) {
            (Some(s), _) if !s.content.trim().is_empty() => (
                s.content.as_str(),
                html_descriptions || is_html(&s.content_type),
            ),
            (_, Some(c)) => (c.body.as_deref().unwrap_or(""), is_html(&c.content_type)),
            (Some(s), None) => (s.content.as_str(), is_html(&s.content_type)),
            (None, None) => ("", false),
        };
        // `&#146;` read by the XML reader is U+0092: the ’ its writer meant.
        let mut summary = cp1252_controls(summary).into_owned();
        if summary.len() > MAX_SUMMARY {
            let mut cut = MAX_SUMMARY;
            while !summary.is_char_boundary(cut) {
                cut -= 1;
            }
            summary.truncate(cut);
            report.summaries_cut += 1;
        }
        let (summary_html, summary_text) = if summary_is_html {
            // The text part reads what the HTML part shows: links resolved, nothing unsafe.
            let html = sanitize_html_with_base(&summary, bases.first().copied());
            let mut text = html_to_plain(&html);
            // Line breaks and link addresses add to the text: it keeps the same bound.
            if text.len() > MAX_SUMMARY {
                let mut cut = MAX_SUMMARY;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            (html, text)
        } else {
            let text = if html_ish {
                decode_entities(&summary)
            } else {
                summary
            };
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            (escape_html(&text), text)
        };
        let author = jf
            .author
            .or_else(|| e.authors.iter().find_map(person_name))
            .or_else(|| ef.author_name.as_deref().and_then(byline))
            .or_else(|| feed_author.clone());
        out.push(NewArticle {
            guid,
            title,
            summary_html,
            summary_text,
            author,
            published_at: e.published.or(e.updated),
            url,
            image_url,
        });
    }
    Ok(ParsedFeed {
        articles: out,
        report,
        page_url: channel_link.map(|u| u.to_string()),
    })
}

/// A link to the item's page: Atom `rel="alternate"` or no rel (never `edit`, `self`,
/// `enclosure` …), and not an RSS comments link.
fn is_page_link(l: &feed_rs::model::Link) -> bool {
    l.rel
        .as_deref()
        .is_none_or(|r| r.eq_ignore_ascii_case("alternate"))
        && l.target.is_none()
}

enum LinkCheck {
    Ok(String),
    Missing,
    Unsafe,
}

/// An absolute http(s) URL for `href`: as it is, or resolved against the first base.
fn resolve_link(href: &str, bases: &[&Url]) -> LinkCheck {
    let href = href.trim();
    if href.is_empty() {
        return LinkCheck::Missing;
    }
    let web = |u: Url| {
        if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) {
            LinkCheck::Ok(u.to_string())
        } else {
            LinkCheck::Unsafe
        }
    };
    match Url::parse(href) {
        Ok(u) => web(u),
        Err(url::ParseError::RelativeUrlWithoutBase) => match bases.first() {
            Some(b) => b.join(href).map_or(LinkCheck::Unsafe, web),
            None => LinkCheck::Missing,
        },
        Err(_) => LinkCheck::Unsafe,
    }
}

fn is_html(t: &impl std::fmt::Display) -> bool {
    let t = t.to_string().to_ascii_lowercase();
    t.starts_with("text/html") || t.contains("xhtml")
}

/// A title or summary as text: HTML only when the feed declares it HTML (an RSS title or an
/// Atom `type="text"` is text, so `Vector<T>` stays `Vector<T>`).
/// `html_ish`: the feed's format writes character references in text (RSS, JSON Feed).
fn text_of(t: &feed_rs::model::Text, html_ish: bool) -> String {
    if is_html(&t.content_type) {
        html_to_text(&cp1252_controls(&t.content))
    } else if html_ish {
        decode_entities(&t.content)
    } else {
        cp1252_controls(&t.content).into_owned()
    }
}

/// The document with its `<rss>` root (at byte `at`) saying `version="2.0"`: the attribute
/// added, or its value replaced when `has_version`.
fn with_rss_version(bytes: &[u8], at: usize, has_version: bool) -> Vec<u8> {
    let tag_end = bytes[at..]
        .iter()
        .position(|b| *b == b'>')
        .map_or(bytes.len(), |e| at + e);
    let mut out = Vec::with_capacity(bytes.len() + 16);
    if has_version
        && let Some(v) = bytes[at..tag_end]
            .windows(7)
            .position(|w| w == b"version")
            .map(|v| at + v + 7)
        && let Some(q) = bytes[v..tag_end]
            .iter()
            .position(|b| *b == b'"' || *b == b'\'')
            .map(|q| v + q)
        && let Some(close) = bytes[q + 1..tag_end]
            .iter()
            .position(|b| *b == bytes[q])
            .map(|c| q + 1 + c)
    {
        out.extend_from_slice(&bytes[..q + 1]);
        out.extend_from_slice(b"2.0");
        out.extend_from_slice(&bytes[close..]);
        return out;
    }
    let name_end = at + "<rss".len();
    out.extend_from_slice(&bytes[..name_end]);
    out.extend_from_slice(b" version=\"2.0\"");
    out.extend_from_slice(&bytes[name_end..]);
    out
}

/// The name to show for a person: `desk@example.com (Jane Doe)` is "Jane Doe"; a bare
/// address is no byline (it is not a name, and not ours to print).
fn person_name(p: &feed_rs::model::Person) -> Option<String> {
    p.name.as_deref().and_then(byline)
}

pub(super) fn byline(raw: &str) -> Option<String> {
    let mut name = raw.trim();
    // "desk@example.com (Jane Doe)" as RSS writes it, if it reaches us whole.
    if let (Some(open), true) = (name.find('('), name.ends_with(')'))
        && name[..open].contains('@')
    {
        name = &name[open..];
    }
    let name = name.trim_start_matches('(').trim_end_matches(')').trim();
    let name = one_line(name, 200);
    (!name.is_empty() && !name.contains('@')).then_some(name)
}

/// Run the feed parser so that whatever a document does, the answer is "not a feed", never
/// the end of herald: its XML reader has panicked on input it should have refused (UTF-16
/// handed to it raw).
fn parse_guarded<T, E: std::fmt::Display>(
    parse: impl FnOnce() -> Result<T, E>,
) -> Result<T, FeedError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .map_err(|p| {
            FeedError::Parse(format!(
                "the feed reader failed on this document ({})",
                crate::jobs::panic_message(p)
            ))
        })?
        .map_err(|e| FeedError::Parse(e.to_string()))
}

mod pictures;
mod poll;
#[cfg(test)]
mod tests;

use pictures::image_of;
pub use poll::FeedPoller;

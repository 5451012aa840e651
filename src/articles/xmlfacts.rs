//! One pass over a feed's XML for what the feed parser (feed-rs) drops: the `xml:base` in
//! effect for each item, whether an RSS guid is the item's permalink, the channel's own
//! byline, and whether the document is Atom 0.3. feed-rs stays the authority on the
//! document; when this pass disagrees with it (a different number of items, or XML it cannot
//! read), its per-item facts are not used.

use quick_xml::events::Event;
use url::Url;

/// The Atom 0.3 namespace (2003); feed-rs reads only Atom 1.0's.
pub const ATOM03_NS: &str = "http://purl.org/atom/ns#";

#[derive(Debug, Default)]
pub struct XmlFacts {
    pub entries: Vec<EntryFacts>,
    /// `dc:creator` or `author` directly in an RSS channel.
    pub channel_author: Option<String>,
    pub atom03: bool,
    /// An `<rss>` root whose `version` feed-rs does not know (none, or "0.90", "2.01" …):
    /// the byte offset of its `<` and the version written, if any.
    pub rss_unversioned: Option<(usize, Option<String>)>,
    /// The pass read the whole document.
    pub complete: bool,
}

#[derive(Debug, Default, Clone)]
pub struct EntryFacts {
    /// The item's base URL: its `xml:base` (or an ancestor's), resolved against the document.
    pub base: Option<Url>,
    /// The RSS guid when it is the item's permalink: `isPermaLink="true"`, or no such
    /// attribute and an absolute http(s) URL (RSS 2.0: the attribute defaults to true).
    pub permalink: Option<String>,
    /// Pictures the item declares, in the order found: `media:thumbnail`, `media:content`
    /// of an image, an image `enclosure` (feed-rs keeps a thumbnail only inside media
    /// content). Resolved against the item's base; not yet checked.
    pub images: Vec<String>,
    /// The base in effect on the item's summary or content (an `xml:base` may sit there).
    pub content_base: Option<Url>,
    /// `<author><name>…</name></author>` in an RSS item, as Google's feeds write it
    /// (feed-rs reads an RSS author as text only).
    pub author_name: Option<String>,
}

/// What text is being collected.
#[derive(Clone, Copy, PartialEq)]
enum Capture {
    None,
    Guid { permalink: Option<bool> },
    ChannelAuthor,
    ItemAuthorName,
}

pub fn scan(bytes: &[u8], document_url: Option<&Url>) -> XmlFacts {
    let mut facts = XmlFacts::default();
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    // (local name, base in effect) of each open element.
    let mut stack: Vec<(String, Option<Url>)> = Vec::new();
    let mut capture = Capture::None;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let at = reader.buffer_position() as usize;
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(_) => return facts,
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local: String = e.local_name().into_inner().to_string();
                let parent_base = stack.last().map_or(document_url.cloned(), |s| s.1.clone());
                let mut base = parent_base.clone();
                let mut permalink_attr = None;
                let (mut url_attr, mut type_attr, mut medium_attr) = (None, None, None);
                let mut version_attr = None;
                for a in e.attributes().flatten() {
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map(|v| v.into_owned())
                        .unwrap_or_default();
                    match a.key.0 {
                        "xml:base" => {
                            base = match &parent_base {
                                Some(p) => p.join(value.trim()).ok(),
                                None => Url::parse(value.trim()).ok(),
                            }
                            .or(parent_base.clone());
                        }
                        "isPermaLink" => {
                            permalink_attr = Some(value.trim().eq_ignore_ascii_case("true"))
                        }
                        // `href` for itunes:image.
                        "url" | "href" => url_attr = Some(value.trim().to_string()),
                        "version" if stack.is_empty() && local == "rss" => {
                            version_attr = Some(value.trim().to_string())
                        }
                        "type" => type_attr = Some(value.trim().to_ascii_lowercase()),
                        "medium" => medium_attr = Some(value.trim().to_ascii_lowercase()),
                        "version" if stack.is_empty() && local == "feed" => {
                            facts.atom03 |= value.trim() == "0.3"
                        }
                        "xmlns" if stack.is_empty() && local == "feed" => {
                            facts.atom03 |= value.trim() == ATOM03_NS
                        }
                        _ => {}
                    }
                }
                if stack.is_empty()
                    && local == "rss"
                    && !matches!(version_attr.as_deref(), Some("2.0" | "" | "0.91" | "0.92"))
                {
                    facts.rss_unversioned = Some((at, version_attr.clone()));
                }
                let parent = stack.last().map(|s| s.0.as_str());
                let is_entry = matches!(
                    (local.as_str(), parent),
                    ("item", Some("channel" | "RDF" | "rss")) | ("entry", Some("feed"))
                );
                let qualified = e.name().0.to_string();
                let is_image = type_attr
                    .as_deref()
                    .is_some_and(|t| t.starts_with("image/"))
                    || medium_attr.as_deref() == Some("image");
                let picture = match qualified.as_str() {
                    "media:thumbnail" => true,
                    // Item-level only: a channel's itunes:image is the show's cover.
                    "itunes:image" => matches!(parent, Some("item")),
                    "media:content" | "enclosure" => is_image,
                    _ => false,
                };
                if is_entry {
                    facts.entries.push(EntryFacts {
                        base: base.clone(),
                        ..EntryFacts::default()
                    });
                } else if matches!(
                    local.as_str(),
                    "summary" | "content" | "description" | "encoded"
                ) && matches!(parent, Some("item" | "entry"))
                {
                    if let Some(entry) = facts.entries.last_mut()
                        && entry.content_base.is_none()
                    {
                        entry.content_base = base.clone();
                    }
                } else if picture
                    && let (Some(u), Some(entry)) = (url_attr, facts.entries.last_mut())
                {
                    let resolved = match &base {
                        Some(b) => b.join(&u).map(|x| x.to_string()).unwrap_or(u),
                        None => u,
                    };
                    entry.images.push(resolved);
                } else if local == "guid" && matches!(parent, Some("item")) && !empty {
                    capture = Capture::Guid {
                        permalink: permalink_attr,
                    };
                    text.clear();
                } else if local == "name"
                    && !empty
                    && matches!(parent, Some("author"))
                    && stack.len() >= 2
                    && stack[stack.len() - 2].0 == "item"
                {
                    capture = Capture::ItemAuthorName;
                    text.clear();
                } else if matches!(local.as_str(), "creator" | "author")
                    && matches!(parent, Some("channel"))
                    && facts.channel_author.is_none()
                    && !empty
                {
                    capture = Capture::ChannelAuthor;
                    text.clear();
                }
                if !empty {
                    stack.push((local, base));
                }
            }
            Event::Text(t) if capture != Capture::None => text.push_str(&t.xml10_content()),
            Event::CData(t) if capture != Capture::None => text.push_str(&t),
            Event::GeneralRef(r) if capture != Capture::None => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    text.push_str(s);
                }
            }
            Event::End(_) => {
                let Some((local, base)) = stack.pop() else {
                    return facts;
                };
                match capture {
                    Capture::Guid { permalink } if local == "guid" => {
                        let guid = text.trim();
                        let url = match permalink {
                            Some(false) => None,
                            Some(true) => match &base {
                                Some(b) => b.join(guid).ok(),
                                None => Url::parse(guid).ok(),
                            },
                            None => Url::parse(guid).ok(),
                        };
                        if let Some(entry) = facts.entries.last_mut() {
                            entry.permalink = url
                                .filter(|u| matches!(u.scheme(), "http" | "https"))
                                .map(|u| u.to_string());
                        }
                        capture = Capture::None;
                    }
                    Capture::ItemAuthorName if local == "name" => {
                        let name = text.trim();
                        if let Some(entry) = facts.entries.last_mut()
                            && !name.is_empty()
                        {
                            entry.author_name = Some(name.to_string());
                        }
                        capture = Capture::None;
                    }
                    Capture::ChannelAuthor if matches!(local.as_str(), "creator" | "author") => {
                        let name = text.trim();
                        if !name.is_empty() {
                            facts.channel_author = Some(name.to_string());
                        }
                        capture = Capture::None;
                    }
                    _ => {}
                }
            }
            Event::Eof => {
                facts.complete = stack.is_empty();
                return facts;
            }
            _ => {}
        }
        buf.clear();
    }
}

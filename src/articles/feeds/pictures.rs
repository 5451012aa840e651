//! An item's picture: what the feed declares, else a picture of its text that is not a
//! tracking pixel, and never one from a known tracker.

use super::{LinkCheck, resolve_link};
use url::Url;

/// The item's picture as an absolute https URL. What the feed declares comes first
/// (`media:thumbnail`, an image in `media:content` or an enclosure, item `itunes:image`,
/// JSON Feed `image`/`banner_image`); then an `<img>` of its summary or content, if it is
/// not a tracking pixel ([`inline_pictures`]). No candidate from a known tracker is ever
/// taken ([`is_tracker`]): each open of the digest would report the reader to whoever
/// counts them. (http pictures are left out: mail clients block or warn about them.)
pub(super) fn image_of(
    e: &feed_rs::model::Entry,
    declared: &[String],
    bases: &[&Url],
) -> Option<String> {
    let declared = declared.iter().cloned();
    let thumbnails = e
        .media
        .iter()
        .flat_map(|m| m.thumbnails.iter().map(|t| t.image.uri.clone()));
    let contents = e.media.iter().flat_map(|m| {
        m.content
            .iter()
            .filter(|c| match &c.content_type {
                Some(t) => t.to_string().starts_with("image/"),
                None => c.url.as_ref().is_some_and(|u| looks_like_image(u.path())),
            })
            .filter_map(|c| c.url.as_ref().map(Url::to_string))
    });
    let inline = [
        e.summary.as_ref().map(|s| s.content.as_str()),
        e.content.as_ref().and_then(|c| c.body.as_deref()),
    ]
    .into_iter()
    .flatten()
    .flat_map(inline_pictures);
    declared
        .chain(thumbnails)
        .chain(contents)
        .chain(inline)
        .find_map(|c| match resolve_link(&c, bases) {
            LinkCheck::Ok(u) if u.starts_with("https://") && u.len() <= 2000 && !is_tracker(&u) => {
                Some(u)
            }
            _ => None,
        })
}

pub(super) fn looks_like_image(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif"]
        .iter()
        .any(|ext| p.ends_with(ext))
}

/// The smallest side, in CSS pixels, of an inline image worth showing as the picture.
pub(super) const MIN_PICTURE_SIDE: u32 = 100;

/// The `src` of each `<img>` in an HTML fragment that may be a picture, in order (entities
/// in it decoded): none whose `width` or `height` (attribute or inline style) is under
/// [`MIN_PICTURE_SIDE`], so no 1×1 pixel, no icon; an image of unknown size may be one.
pub(super) fn inline_pictures(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<img") {
        let start = from + at;
        let end = lower[start..].find('>').map_or(lower.len(), |e| start + e);
        let tag = &html[start..end];
        let tag_lower = &lower[start..end];
        from = end;
        let small = ["width", "height"]
            .iter()
            .any(|side| size_of(tag_lower, side).is_some_and(|px| px < MIN_PICTURE_SIDE));
        if small {
            continue;
        }
        if let Some(value) = attribute(tag, tag_lower, "src") {
            found.push(value.replace("&amp;", "&"));
        }
    }
    found
}

/// The value of attribute `name` in one tag (`tag_lower` is `tag` lowercased).
fn attribute<'a>(tag: &'a str, tag_lower: &str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = tag_lower[from..].find(name) {
        let i = from + i;
        from = i + name.len();
        // A whole attribute name: `src`, not `data-src` or `srcset`.
        let before = tag_lower[..i].chars().next_back();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or("")
                .trim_end_matches('/'),
        };
        return (!value.is_empty()).then_some(value);
    }
    None
}

/// A side of an `<img>` in pixels, from its attribute or its inline style.
pub(super) fn size_of(tag_lower: &str, side: &str) -> Option<u32> {
    let number = |v: &str| {
        let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    };
    if let Some(v) = attribute(tag_lower, tag_lower, side)
        && !v.contains('%')
        && let Some(n) = number(v)
    {
        return Some(n);
    }
    let style = attribute(tag_lower, tag_lower, "style")?;
    style.split(';').find_map(|decl| {
        let (k, v) = decl.split_once(':')?;
        (k.trim() == side && v.trim().ends_with("px"))
            .then(|| number(v))
            .flatten()
    })
}

/// A URL of a known counter of opens rather than a picture: analytics and ad hosts,
/// feed-proxy beacons, and the usual names of pixel images.
pub(super) fn is_tracker(url: &str) -> bool {
    let Ok(u) = Url::parse(url) else {
        return true;
    };
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    let path = u.path().to_ascii_lowercase();
    let query = u.query().unwrap_or("").to_ascii_lowercase();
    // Anywhere in the host name.
    const HOST_WORDS: &[&str] = &[
        "matomo",
        "piwik",
        "doubleclick",
        "google-analytics",
        "googletagmanager",
        "feedsportal",
        "stats.wordpress.com",
        "pixel.wp.com",
        "scorecardresearch",
        "quantserve",
        "chartbeat",
        "mc.yandex",
    ];
    // As a whole label of the host name.
    const HOST_LABELS: &[&str] = &[
        "analytics",
        "pixel",
        "tracking",
        "track",
        "beacon",
        "counter",
        "stat",
        "stats",
    ];
    const PATHS: &[&str] = &[
        "matomo.php",
        "piwik.php",
        "/~r/",
        "/~ff/",
        "/~a/",
        "1x1",
        "spacer.gif",
        "blank.gif",
        "clear.gif",
        "transparent.gif",
        "pixel.gif",
        "pixel.png",
        "/pixel",
        "/beacon",
        "/track/",
        "/tracking/",
        "/open.gif",
        "/count.gif",
        "/hit.gif",
    ];
    HOST_WORDS.iter().any(|w| host.contains(w))
        || host.split('.').any(|label| HOST_LABELS.contains(&label))
        || PATHS.iter().any(|p| path.contains(p))
        || (query.contains("idsite=") && query.contains("rec="))
}

//! Sections and their articles: add by hand or API, import RSS 2.0 / Atom / JSON Feed files,
//! and poll each section's feed URL inside `herald serve`. Summaries keep safe HTML only
//! (ammonia) for the HTML part and become plain text for the text part.

mod atom03;
mod charset;
mod feeds;
mod jsonfeed;
mod plain;
mod store;
mod xmlfacts;
pub use store::ArticleStore;

pub use feeds::{FeedError, FeedPoller, FeedReport, MAX_SUMMARY, ParsedFeed, parse_feed};
pub use plain::{TEXT_WIDTH, cp1252_controls, decode_entities, html_to_plain, html_to_text};

use crate::domain::{SectionSlug, has_control_chars};
use crate::store::{ArticleWrite, NewArticle, Section, StoreError};
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    #[error(transparent)]
    Slug(#[from] crate::domain::SlugError),
    #[error("the section name must be 1 to 200 characters on one line")]
    BadName,
    #[error("the description must be at most 2000 characters without control characters")]
    BadDescription,
    #[error("unknown section {0:?} (see `herald sections list`)")]
    Unknown(String),
    #[error("the feed URL must be an http(s) URL: {0:?}")]
    BadFeedUrl(String),
    #[error("the page URL must be an http(s) URL: {0:?}")]
    BadPageUrl(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Add a section, optionally with the feed `herald serve` polls for it. Everything is
/// checked before anything is written.
pub async fn add_section(
    store: &dyn ArticleStore,
    slug: &str,
    name: &str,
    description: &str,
    feed: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Section, SectionError> {
    let slug = SectionSlug::parse(slug)?;
    if let Some(u) = feed {
        check_feed_url(u)?;
    }
    let (name, description) = check_name_description(name, description)?;
    let section = store
        .add_section(slug.as_str(), name, description, now)
        .await?;
    if let Some(u) = feed {
        store.set_section_feed(section.id, Some(u)).await?;
    }
    Ok(Section {
        feed_url: feed.map(str::to_string),
        ..section
    })
}

/// A section's name and description, trimmed, or what is wrong with them.
fn check_name_description<'a>(
    name: &'a str,
    description: &'a str,
) -> Result<(&'a str, &'a str), SectionError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || has_control_chars(name) {
        return Err(SectionError::BadName);
    }
    let description = description.trim();
    if description.chars().count() > 2000
        || description.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(SectionError::BadDescription);
    }
    Ok((name, description))
}

/// Change a section's name, description and feed (None: no feed). Its slug stays: readers'
/// links and schedules name it. Everything is checked before anything is written.
pub async fn edit_section(
    store: &dyn ArticleStore,
    slug: &str,
    name: &str,
    description: &str,
    feed: Option<&str>,
) -> Result<Section, SectionError> {
    let section = section_by_slug(store, slug).await?;
    if let Some(u) = feed {
        check_feed_url(u)?;
    }
    let (name, description) = check_name_description(name, description)?;
    if !store
        .update_section(section.id, name, description, feed)
        .await?
    {
        return Err(SectionError::Unknown(slug.chars().take(64).collect()));
    }
    section_by_slug(store, slug).await
}

/// An absolute http(s) URL with a host, on one line.
fn is_web_url(u: &str) -> bool {
    !has_control_chars(u)
        && url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some())
}

fn check_feed_url(u: &str) -> Result<(), SectionError> {
    if is_web_url(u) {
        Ok(())
    } else {
        Err(SectionError::BadFeedUrl(u.chars().take(200).collect()))
    }
}

pub async fn section_by_slug(
    store: &dyn ArticleStore,
    slug: &str,
) -> Result<Section, SectionError> {
    store
        .list_sections()
        .await?
        .into_iter()
        .find(|s| s.slug == slug)
        .ok_or_else(|| SectionError::Unknown(slug.chars().take(64).collect()))
}

/// The ids of the sections named by `slugs`, each once, in the order given.
/// `Ok(Err(slug))` names the first unknown one (printable, shortened for display).
pub async fn section_ids(
    store: &dyn ArticleStore,
    slugs: &[String],
) -> Result<Result<Vec<i64>, String>, StoreError> {
    Ok(pick_section_ids(&store.list_sections().await?, slugs))
}

/// The ids of `slugs` among `all` (each once, in order), or the first slug that is not
/// there (cleaned, to be shown).
pub fn pick_section_ids(
    all: &[crate::store::Section],
    slugs: &[String],
) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for s in slugs {
        match all.iter().find(|x| x.slug == *s) {
            Some(sec) if !ids.contains(&sec.id) => ids.push(sec.id),
            Some(_) => {}
            None => return Err(s.chars().filter(|c| !c.is_control()).take(40).collect()),
        }
    }
    Ok(ids)
}

pub async fn set_feed(
    store: &dyn ArticleStore,
    slug: &str,
    url: Option<&str>,
) -> Result<(), SectionError> {
    let section = section_by_slug(store, slug).await?;
    if let Some(u) = url {
        check_feed_url(u)?;
    }
    Ok(store.set_section_feed(section.id, url).await?)
}

/// Set or clear a section's page on the site.
pub async fn set_page(
    store: &dyn ArticleStore,
    slug: &str,
    url: Option<&str>,
) -> Result<(), SectionError> {
    let section = section_by_slug(store, slug).await?;
    if let Some(u) = url {
        check_page_url(u)?;
    }
    Ok(store.set_section_page(section.id, url, false).await?)
}

fn check_page_url(u: &str) -> Result<(), SectionError> {
    if is_web_url(u) {
        Ok(())
    } else {
        Err(SectionError::BadPageUrl(u.chars().take(200).collect()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    /// Which field of the article is wrong, and how.
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Section(#[from] SectionError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An article as staff or a CMS submit it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ArticleInput {
    pub section: String,
    pub title: String,
    pub url: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub published: Option<DateTime<Utc>>,
    /// Defaults to the URL.
    #[serde(default)]
    pub guid: Option<String>,
    /// The article's picture: an absolute https URL.
    #[serde(default)]
    pub image: Option<String>,
}

/// One line, no control characters, bounded: titles and names end up next to headers.
pub fn one_line(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(max).collect()
}

/// Safe HTML for the HTML part: formatting and links only, no scripts, styles or images
/// that track. Links get rel=noopener. A relative link is dropped: in a mail it has nothing
/// to be relative to.
pub fn sanitize_html(html: &str) -> String {
    sanitize_html_with_base(html, None)
}

/// [`sanitize_html`], with relative links resolved against `base` (a feed item's).
pub fn sanitize_html_with_base(html: &str, base: Option<&url::Url>) -> String {
    let relative = match base {
        Some(b) => ammonia::UrlRelative::RewriteWithBase(b.clone()),
        None => ammonia::UrlRelative::Deny,
    };
    let mut builder = ammonia::Builder::default();
    // A heading inside a summary is a line of the story, not a headline over the digest.
    for h in ["h1", "h2", "h3", "h4", "h5", "h6"] {
        builder.set_tag_attribute_value(h, "style", "font-size:1em;margin:0.8em 0 0.4em");
    }
    builder.set_tag_attribute_value("pre", "style", "white-space:pre-wrap");
    builder.set_tag_attribute_value("figure", "style", "margin:0");
    builder
        .url_relative(relative)
        // Block elements stay (without attributes): dropping `<div>` glued "members." to
        // "Now" in both parts. Tables are not kept: a mail column has no room for them.
        .tags(maplit_tags(&[
            "a",
            "b",
            "strong",
            "i",
            "em",
            "p",
            "br",
            "ul",
            "ol",
            "li",
            "blockquote",
            "code",
            "pre",
            "div",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "hr",
            "figure",
            "figcaption",
            "dl",
            "dt",
            "dd",
            "sub",
            "sup",
            "q",
            "cite",
        ]))
        .url_schemes(maplit_tags(&["http", "https", "mailto"]))
        .clean(&close_raw_text_elements(html))
        .to_string()
}

/// `<iframe …/>` (Blogger writes them) as `<iframe …></iframe>`. In HTML the `/` means
/// nothing for these elements, so everything after one was read as its content: the rest
/// of the summary vanished, or showed as literal `</p>`.
fn close_raw_text_elements(html: &str) -> std::borrow::Cow<'_, str> {
    const NAMES: &[&str] = &[
        "iframe", "script", "style", "textarea", "title", "noscript", "noembed", "noframes", "xmp",
        "video", "audio", "object",
    ];
    let lower = html.to_ascii_lowercase();
    if !NAMES.iter().any(|n| lower.contains(&format!("<{n}"))) {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len() + 32);
    let mut from = 0;
    while let Some(at) = lower[from..].find('<') {
        let start = from + at;
        let name = NAMES.iter().find(|n| {
            lower[start + 1..].starts_with(**n)
                && lower[start + 1 + n.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_whitespace() || c == '/' || c == '>')
        });
        let end = lower[start..].find('>').map(|e| start + e);
        match (name, end) {
            (Some(name), Some(end)) if html[start..end].ends_with('/') => {
                out.push_str(&html[from..end - 1]);
                out.push_str("></");
                out.push_str(name);
                out.push('>');
                from = end + 1;
            }
            _ => {
                out.push_str(&html[from..start + 1]);
                from = start + 1;
            }
        }
    }
    out.push_str(&html[from..]);
    std::borrow::Cow::Owned(out)
}

/// Text as HTML: the five characters that mean something there, escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn maplit_tags(tags: &[&'static str]) -> std::collections::HashSet<&'static str> {
    tags.iter().copied().collect()
}

impl ArticleInput {
    pub fn into_new_article(self) -> Result<(String, NewArticle), ArticleError> {
        let title = one_line(&self.title, 500);
        if title.is_empty() {
            return Err(ArticleError::Invalid(
                "title",
                "an article needs a title".into(),
            ));
        }
        let url_ok =
            url::Url::parse(self.url.trim()).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !url_ok || has_control_chars(&self.url) {
            return Err(ArticleError::Invalid(
                "url",
                format!(
                    "the article URL must be an http(s) URL, got {:?}",
                    self.url.chars().take(200).collect::<String>()
                ),
            ));
        }
        let summary = self.summary.unwrap_or_default();
        if summary.len() > MAX_SUMMARY {
            return Err(ArticleError::Invalid(
                "summary",
                "the summary is too long (100 kB at most)".into(),
            ));
        }
        let url = self.url.trim().to_string();
        let image_url = match self
            .image
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            Some(i) => {
                let ok = url::Url::parse(i)
                    .is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
                if !ok || has_control_chars(i) || i.len() > 2000 {
                    return Err(ArticleError::Invalid(
                        "image",
                        format!(
                            "the image must be an https URL, got {:?}",
                            i.chars().take(200).collect::<String>()
                        ),
                    ));
                }
                Some(i.to_string())
            }
            None => None,
        };
        Ok((
            self.section,
            NewArticle {
                guid: self
                    .guid
                    .map(|g| one_line(&g, 1000))
                    .filter(|g| !g.is_empty())
                    .unwrap_or_else(|| url.clone()),
                title,
                summary_text: html_to_plain(&sanitize_html(&summary)),
                summary_html: sanitize_html(&summary),
                author: self
                    .author
                    .map(|a| one_line(&a, 200))
                    .filter(|a| !a.is_empty()),
                published_at: self.published,
                url,
                image_url,
            },
        ))
    }
}

/// Add one article. The same guid again adds nothing, or corrects the stored article if it
/// changed and has not been mailed yet.
pub async fn add_article(
    store: &dyn ArticleStore,
    input: ArticleInput,
    now: DateTime<Utc>,
) -> Result<ArticleWrite, ArticleError> {
    let (slug, article) = input.into_new_article()?;
    let section = section_by_slug(store, &slug).await?;
    let written = store.insert_articles(section.id, &[article], now).await?;
    if written.added > 0 {
        metrics::counter!("herald_articles_added_total", "via" => "api").increment(1);
    }
    Ok(written)
}

/// A stored article corrected by hand: its title, summary and picture, checked as a new
/// one is. Refused (a store `Conflict`) once an issue carries it: it stays as it was mailed.
/// The summary is the HTML as typed (sanitised like any other).
pub async fn edit_article(
    store: &dyn ArticleStore,
    id: i64,
    title: &str,
    summary: &str,
    image: &str,
) -> Result<crate::store::Article, ArticleError> {
    let mailed = || {
        ArticleError::Store(StoreError::Conflict(
            "This article went out in an issue: it stays as it was mailed.".into(),
        ))
    };
    let a = store
        .article(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("There is no article #{id}.")))?;
    if a.mailed {
        return Err(mailed());
    }
    let section = store
        .list_sections()
        .await?
        .into_iter()
        .find(|s| s.id == a.section_id)
        .ok_or_else(|| StoreError::NotFound(format!("There is no article #{id}.")))?;
    // The same article (section, guid, link, byline, date), with what was changed: the
    // store's correction path, which looks at `mailed` again inside its transaction.
    let input = ArticleInput {
        section: section.slug,
        title: title.to_string(),
        url: a.url.clone(),
        summary: Some(summary.to_string()),
        author: a.author.clone(),
        published: a.published_at,
        guid: Some(a.guid.clone()),
        image: Some(image.to_string()),
    };
    let (_, article) = input.into_new_article()?;
    let unchanged = article.title == a.title
        && article.summary_html == a.summary_html
        && article.image_url == a.image_url;
    if !unchanged
        && store
            .insert_articles(a.section_id, &[article], a.created_at)
            .await?
            .updated
            == 0
    {
        // An issue took it meanwhile.
        return Err(mailed());
    }
    Ok(store
        .article(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("There is no article #{id}.")))?)
}

/// What importing one feed document did.
#[derive(Debug)]
pub struct ImportOutcome {
    pub report: FeedReport,
    pub written: ArticleWrite,
}

impl std::fmt::Display for ImportOutcome {
    /// "12 items, 3 skipped (2 with no http(s) link, 1 repeated in the feed), 8 new, 1 updated".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} new, {} updated",
            self.report, self.written.added, self.written.updated
        )
    }
}

/// Import a feed document into a section. All or nothing: a document that is not a feed
/// imports nothing. `document_url` is where the document came from, if known (the base of
/// its relative links after any `xml:base`; the channel's own link comes last).
pub async fn import_feed(
    store: &dyn ArticleStore,
    slug: &str,
    bytes: &[u8],
    document_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ImportOutcome, ArticleError> {
    let section = section_by_slug(store, slug).await?;
    let parsed = parse_feed(bytes, document_url)?;
    let written = store
        .insert_articles(section.id, &parsed.articles, now)
        .await?;
    if written.added > 0 {
        metrics::counter!("herald_articles_added_total", "via" => "import")
            .increment(written.added);
    }
    Ok(ImportOutcome {
        report: parsed.report,
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_and_flattens() {
        let html = r#"<p>Hello <b>world</b> &amp; <script>alert(1)</script><img src="https://t.example/p.gif"><a href="javascript:x()">bad</a> <a href="https://ok.example/">ok</a></p>"#;
        let safe = sanitize_html(html);
        assert!(
            !safe.contains("script") && !safe.contains("img") && !safe.contains("javascript"),
            "{safe}"
        );
        assert!(
            safe.contains("<b>world</b>") && safe.contains(r#"href="https://ok.example/""#),
            "{safe}"
        );
        assert_eq!(html_to_text(html), "Hello world & bad ok");
    }

    #[test]
    fn blocks_stay_apart_and_self_closed_iframes_end() {
        let html = "<div>Open to members.</div><div>Now for everyone.</div>";
        assert_eq!(
            html_to_plain(&sanitize_html(html)),
            "Open to members.\nNow for everyone."
        );
        // Blogger's embed, as its feeds write it.
        let blogger = r#"<p>One</p><iframe allowfullscreen="" src="https://www.youtube.com/embed/x" width="320"/><p>Two.</p>"#;
        let clean = sanitize_html(blogger);
        assert_eq!(clean, "<p>One</p><p>Two.</p>");
        assert_eq!(html_to_plain(&clean), "One\n\nTwo.");
        assert_eq!(sanitize_html("a <IFRAME src=x />b"), "a b");
        assert_eq!(
            sanitize_html("<p>x <em>y</em> z</p>"),
            "<p>x <em>y</em> z</p>"
        );
        assert_eq!(
            sanitize_html(r#"<h1 class="big" style="font-size:9em">Inside</h1>"#),
            r#"<h1 style="font-size:1em;margin:0.8em 0 0.4em">Inside</h1>"#
        );
    }

    #[test]
    fn titles_are_one_line() {
        assert_eq!(
            one_line("Breaking\r\nBcc: x@example.org", 100),
            "Breaking Bcc: x@example.org"
        );
    }
}

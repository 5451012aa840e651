//! RSS 2.0, Atom and JSON Feed: parsing (feed-rs) and polling each section's feed URL with
//! conditional GET. A feed that fails is logged, counted, shown by `herald sections list`,
//! and retried at the next poll; it never stops herald and never half-imports.

use super::{html_to_text, one_line, sanitize_html};
use crate::clock::Clock;
use crate::store::{NewArticle, SectionFeed, Store};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("not a feed (RSS, Atom or JSON Feed): {0}")]
    Parse(String),
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
}

/// Parse a feed document into articles. Items are keyed by their guid/id, else their link;
/// items without a link are skipped (a digest entry needs somewhere to go).
pub fn parse_feed(bytes: &[u8]) -> Result<Vec<NewArticle>, FeedError> {
    let parser = feed_rs::parser::Builder::new()
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
    let utf8;
    let bytes = match utf16_to_utf8(bytes) {
        Some(text) => {
            utf8 = text;
            utf8.as_bytes()
        }
        None => bytes,
    };
    let feed = parse_guarded(|| parser.parse(bytes))?;
    let mut out = Vec::new();
    for e in feed.entries {
        let link = e
            .links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .or(e.links.first())
            .map(|l| l.href.trim().to_string());
        let Some(url) = link.filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        else {
            continue;
        };
        let title = e
            .title
            .map(|t| one_line(&html_to_text(&t.content), 500))
            .unwrap_or_default();
        let title = if title.is_empty() { url.clone() } else { title };
        let summary = e
            .summary
            .map(|s| s.content)
            .or_else(|| e.content.and_then(|c| c.body))
            .unwrap_or_default();
        let guid = if e.id.trim().is_empty() {
            url.clone()
        } else {
            one_line(&e.id, 1000)
        };
        out.push(NewArticle {
            guid,
            title,
            summary_html: sanitize_html(&summary),
            summary_text: html_to_text(&summary),
            author: e
                .authors
                .first()
                .and_then(|a| a.name.as_deref())
                .map(|n| one_line(n, 200))
                .filter(|a| !a.is_empty()),
            published_at: e.published.or(e.updated),
            url,
        });
    }
    Ok(out)
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

/// Polls every section that has a feed URL.
pub struct FeedPoller {
    store: Arc<dyn Store>,
    clock: Clock,
    http: reqwest::Client,
}

impl FeedPoller {
    pub fn new(store: Arc<dyn Store>, clock: Clock, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!(
                "herald/",
                env!("CARGO_PKG_VERSION"),
                " (newsletter)"
            ))
            .build()
            .expect("HTTP client");
        Self { store, clock, http }
    }

    /// Poll all feeds once; returns how many new articles arrived. A feed that fails is
    /// recorded on its section and counted; only a database error fails the whole poll.
    pub async fn poll_all(&self) -> Result<u64, crate::store::StoreError> {
        let feeds = self.store.section_feeds().await?;
        let mut added = 0;
        for f in feeds.into_iter().filter(|f| f.feed_url.is_some()) {
            match self.poll_one(&f).await {
                Ok(n) => added += n,
                Err(e) => {
                    metrics::counter!("herald_feed_poll_errors_total", "section" => f.slug.clone())
                        .increment(1);
                    tracing::warn!(section = %f.slug, error = %e, "feed poll failed; will retry at the next poll");
                    let _ = self
                        .store
                        .record_feed_poll(f.id, self.clock.now(), None, None, Some(&e.to_string()))
                        .await;
                }
            }
        }
        Ok(added)
    }

    async fn poll_one(&self, f: &SectionFeed) -> Result<u64, FeedError> {
        let url = f.feed_url.clone().unwrap_or_default();
        let fetch_err = |message: String| FeedError::Fetch {
            url: url.clone(),
            message,
        };
        let mut req = self.http.get(&url);
        if let Some(etag) = &f.feed_etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &f.feed_last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let res = req.send().await.map_err(|e| fetch_err(e.to_string()))?;
        let header = |name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            self.store
                .record_feed_poll(
                    f.id,
                    self.clock.now(),
                    f.feed_etag.as_deref(),
                    f.feed_last_modified.as_deref(),
                    None,
                )
                .await
                .map_err(|e| fetch_err(e.to_string()))?;
            return Ok(0);
        }
        if !res.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", res.status())));
        }
        let body = res.bytes().await.map_err(|e| fetch_err(e.to_string()))?;
        let articles = parse_feed(&body)?;
        let now = self.clock.now();
        let added = self
            .store
            .insert_articles(f.id, &articles, now)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        self.store
            .record_feed_poll(f.id, now, etag.as_deref(), last_modified.as_deref(), None)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if added > 0 {
            metrics::counter!("herald_articles_added_total", "via" => "feed").increment(added);
            tracing::info!(section = %f.slug, added, "feed polled");
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: &str = r#"<?xml version="1.0" encoding="UTF-16"?>
<rss version="2.0"><channel><title>WMD</title><link>https://news.example.org/</link>
<item><title>Lavrov: « nuclear » talks – día 2</title><link>https://news.example.org/a</link>
<guid>a</guid><description>Ω summary</description></item>
</channel></rss>"#;

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let units = (bom.then_some(0xFEFF_u16))
            .into_iter()
            .chain(text.encode_utf16());
        for u in units {
            out.extend_from_slice(&if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_feeds_import_in_every_byte_order() {
        for big_endian in [true, false] {
            for bom in [true, false] {
                let got = parse_feed(&utf16(RSS, big_endian, bom))
                    .unwrap_or_else(|e| panic!("be={big_endian} bom={bom}: {e}"));
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].title, "Lavrov: « nuclear » talks – día 2");
                assert_eq!(got[0].summary_text.trim(), "Ω summary");
            }
        }
    }

    #[test]
    fn a_parser_panic_is_not_a_feed() {
        let got: Result<(), FeedError> = parse_guarded(|| -> Result<(), String> {
            panic!("set_encoding() called after prefix buffer was drained")
        });
        match got {
            Err(FeedError::Parse(why)) => assert!(why.contains("set_encoding"), "{why}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        for doc in [
            &b"\xFE\xFF\x00<\x00?"[..],
            b"\xFF\xFE<",
            b"\0\0\0\0",
            b"<rss><channel><item>",
        ] {
            assert!(matches!(parse_feed(doc), Err(FeedError::Parse(_)) | Ok(_)));
        }
    }
}

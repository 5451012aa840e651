//! Polling each section's feed URL with conditional GET, feeds of different hosts a few at a
//! time and one host's in turn; a feed that fails is logged, counted, shown by
//! `herald sections list`, and retried at the next poll.

use super::*;

/// Polls every section that has a feed URL.
/// Feeds (of different hosts) one poll fetches at once.
const POLL_CONCURRENCY: usize = 4;

pub struct FeedPoller {
    store: Arc<dyn crate::articles::ArticleStore>,
    clock: Clock,
    http: reqwest::Client,
    timeout: Duration,
    max_size: crate::domain::ByteSize,
}

/// What one poll of one feed did.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub report: FeedReport,
    pub written: crate::store::ArticleWrite,
}

impl FeedPoller {
    pub fn new(
        store: Arc<dyn crate::articles::ArticleStore>,
        clock: Clock,
        timeout: Duration,
        max_size: crate::domain::ByteSize,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!(
                "herald/",
                env!("CARGO_PKG_VERSION"),
                " (newsletter)"
            ))
            .build()
            .expect("HTTP client");
        Self {
            store,
            clock,
            http,
            timeout,
            max_size,
        }
    }

    /// Poll all feeds once; returns how many new articles arrived. A feed that fails is
    /// recorded on its section and counted; only a database error fails the whole poll.
    ///
    /// Feeds of different hosts are fetched [`POLL_CONCURRENCY`] at a time, those of one
    /// host one after another (a site is asked one thing at a time): a feed that hangs
    /// until `feeds.timeout` holds up only the feeds of its own host, not every later one.
    pub async fn poll_all(&self) -> Result<u64, crate::store::StoreError> {
        use futures_util::StreamExt;
        let feeds = self.store.section_feeds().await?;
        let mut by_host: std::collections::BTreeMap<String, Vec<SectionFeed>> = Default::default();
        for f in feeds.into_iter().filter(|f| f.feed_url.is_some()) {
            let host = f
                .feed_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .map(|u| {
                    format!(
                        "{}:{}",
                        u.host_str().unwrap_or(""),
                        u.port_or_known_default().unwrap_or(0)
                    )
                })
                .unwrap_or_default()
                .to_ascii_lowercase();
            by_host.entry(host).or_default().push(f);
        }
        let added = futures_util::stream::iter(by_host.into_values())
            .map(|group| async move {
                let mut added = 0;
                for f in group {
                    added += self.poll_and_record(&f).await;
                }
                added
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .fold(0u64, |sum, n| async move { sum + n })
            .await;
        Ok(added)
    }

    /// Poll one feed; a failure is recorded on its section, counted and logged. Returns
    /// how many new articles arrived.
    async fn poll_and_record(&self, f: &SectionFeed) -> u64 {
        match self.poll_one(f).await {
            Ok(n) => n.written.added,
            Err(e) => {
                metrics::counter!("herald_feed_poll_errors_total", "section" => f.slug.clone())
                    .increment(1);
                tracing::warn!(section = %f.slug, error = %e, "feed poll failed; will retry at the next poll");
                let _ = self
                    .store
                    .record_feed_poll(f.id, self.clock.now(), None, None, Some(&e.to_string()))
                    .await;
                0
            }
        }
    }

    /// What reqwest says, in words an operator can act on: a timeout is named a timeout.
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "timed out after {}s (feeds.timeout)",
                self.timeout.as_secs()
            )
        } else if e.is_connect() {
            format!("cannot connect: {}", crate::telemetry::error_chain(e))
        } else {
            crate::telemetry::error_chain(e)
        }
    }

    pub async fn poll_one(&self, f: &SectionFeed) -> Result<PollOutcome, FeedError> {
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
        let mut res = req.send().await.map_err(|e| fetch_err(self.describe(&e)))?;
        let header = |name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let http_charset = header(reqwest::header::CONTENT_TYPE)
            .as_deref()
            .and_then(charset::charset_of);
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
            return Ok(PollOutcome::default());
        }
        if !res.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", res.status())));
        }
        // Where the document came from after redirects: the base for its relative links.
        let document_url = res.url().to_string();
        let limit = self.max_size;
        if res.content_length().is_some_and(|n| n > limit.0) {
            return Err(FeedError::TooLarge { limit });
        }
        // Counted while read: a chunked body that never ends stops here, not in memory.
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| fetch_err(self.describe(&e)))?
        {
            if body.len() + chunk.len() > limit.0 as usize {
                return Err(FeedError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        let parsed = parse_feed_as(&body, Some(&document_url), http_charset.as_deref())?;
        let now = self.clock.now();
        let written = self
            .store
            .insert_articles(f.id, &parsed.articles, now)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        let said = format!(
            "{}, {} new, {} updated",
            parsed.report, written.added, written.updated
        );
        self.store
            .record_feed_report(f.id, &said)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if let Some(page) = &parsed.page_url {
            self.store
                .set_section_page(f.id, Some(page), true)
                .await
                .map_err(|e| fetch_err(e.to_string()))?;
        }
        self.store
            .record_feed_poll(f.id, now, etag.as_deref(), last_modified.as_deref(), None)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if written.added > 0 {
            metrics::counter!("herald_articles_added_total", "via" => "feed")
                .increment(written.added);
        }
        if written.added > 0 || written.updated > 0 || parsed.report.skipped() > 0 {
            tracing::info!(
                section = %f.slug,
                report = %parsed.report,
                new = written.added,
                updated = written.updated,
                "feed polled"
            );
        }
        Ok(PollOutcome {
            report: parsed.report,
            written,
        })
    }
}

//! What sections, articles and feeds need of the store, declared here. `store::Store` has
//! it as a supertrait; the SQL is in `store/sql/articles.rs`, written once for both dialects.

#[allow(unused_imports)]
use crate::store::*;
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
pub trait ArticleStore: Send + Sync + 'static {
    async fn add_section(
        &self,
        slug: &str,
        name: &str,
        description: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Section>;
    async fn list_sections(&self) -> StoreResult<Vec<Section>>;
    // --- articles and feeds
    /// Store articles of one section in one transaction. An article whose guid the section
    /// already has replaces the stored one when its title, link, summary or byline changed
    /// and no issue carries it yet (a correction); once mailed, it stays as mailed.
    async fn insert_articles(
        &self,
        section_id: i64,
        articles: &[NewArticle],
        now: DateTime<Utc>,
    ) -> StoreResult<ArticleWrite>;
    async fn list_articles(&self, section_id: Option<i64>, limit: i64)
    -> StoreResult<Vec<Article>>;
    async fn set_section_feed(&self, section_id: i64, url: Option<&str>) -> StoreResult<()>;
    /// Change a section's name, description and feed in one statement; a changed feed URL
    /// forgets the old feed's validators and error. False if there is no such section.
    async fn update_section(
        &self,
        section_id: i64,
        name: &str,
        description: &str,
        feed_url: Option<&str>,
    ) -> StoreResult<bool>;
    /// Articles newest first (by arrival), of one section or all, whose title contains
    /// `search` (any case), below `before` (an article id) for the next page.
    async fn article_page(
        &self,
        section_id: Option<i64>,
        search: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Article>>;
    async fn article(&self, id: i64) -> StoreResult<Option<Article>>;
    /// Hold the article back until a time, withdraw it, or neither (None, None): issues
    /// made from now on follow it; one that already carries it keeps it. False if there is
    /// no such article.
    async fn set_article_release(
        &self,
        id: i64,
        hold_until: Option<DateTime<Utc>>,
        withdrawn_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;
    /// Set (or clear) the section's page; with `only_if_unset`, only where none is set.
    async fn set_section_page(
        &self,
        section_id: i64,
        url: Option<&str>,
        only_if_unset: bool,
    ) -> StoreResult<()>;
    async fn section_feeds(&self) -> StoreResult<Vec<SectionFeed>>;
    async fn record_feed_poll(
        &self,
        section_id: i64,
        now: DateTime<Utc>,
        etag: Option<&str>,
        last_modified: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// Keep what the last successful read of a section's feed found.
    async fn record_feed_report(&self, section_id: i64, report: &str) -> StoreResult<()>;
}

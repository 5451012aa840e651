//! The SQL of [`crate::articles::ArticleStore`], written once for both dialects (see `mod.rs`).

use super::prelude::*;
use crate::store::shared::StoredArticle;

#[async_trait::async_trait]
impl crate::articles::ArticleStore for Backend {
    async fn add_section(
        &self,
        slug: &str,
        name: &str,
        description: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Section> {
        let r = sqlx::query_as::<Db, Section>(
            "INSERT INTO sections (slug, name, description, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, slug, name, description, feed_url, page_url, created_at",
        )
        .bind(slug)
        .bind(name)
        .bind(description)
        .bind(now)
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(s) => Ok(s),
            Err(e) => Err(crate::store::shared::conflict_on_unique(e, || {
                format!("a section with slug {slug:?} already exists")
            })),
        }
    }

    async fn list_sections(&self) -> StoreResult<Vec<Section>> {
        Ok(sqlx::query_as::<Db, Section>(
            "SELECT id, slug, name, description, feed_url, page_url, created_at FROM sections \
             ORDER BY name, slug",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_articles(
        &self,
        section_id: i64,
        articles: &[NewArticle],
        now: DateTime<Utc>,
    ) -> StoreResult<ArticleWrite> {
        let mut tx = self.begin_write().await?;
        let mut out = ArticleWrite::default();
        for a in articles {
            let stored = sqlx::query_as::<Db, StoredArticle>(
                "SELECT a.id, a.title, a.url, a.summary_html, a.summary_text, a.author, \
                 a.image_url, EXISTS (SELECT 1 FROM issue_articles ia WHERE ia.article_id = a.id) \
                 AS mailed FROM articles a WHERE a.section_id = $1 AND a.guid = $2",
            )
            .bind(section_id)
            .bind(&a.guid)
            .fetch_optional(&mut *tx)
            .await?;
            match stored {
                None => {
                    out.added += sqlx::query::<Db>(
                        "INSERT INTO articles (section_id, guid, title, url, summary_html, \
                         summary_text, author, published_at, created_at, image_url) VALUES ($1, \
                         $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (section_id, guid) DO \
                         NOTHING",
                    )
                    .bind(section_id)
                    .bind(&a.guid)
                    .bind(&a.title)
                    .bind(&a.url)
                    .bind(&a.summary_html)
                    .bind(&a.summary_text)
                    .bind(&a.author)
                    .bind(a.published_at)
                    .bind(now)
                    .bind(&a.image_url)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                Some(s) => {
                    let changed = s.title != a.title
                        || s.url != a.url
                        || s.summary_html != a.summary_html
                        || s.summary_text != a.summary_text
                        || s.author != a.author
                        || s.image_url != a.image_url;
                    if changed && !s.mailed {
                        // Its arrival time stays: it is the same story, corrected.
                        out.updated += sqlx::query::<Db>(
                            "UPDATE articles SET title = $2, url = $3, summary_html = $4, \
                             summary_text = $5, author = $6, published_at = COALESCE($7, \
                             published_at), image_url = $8 WHERE id = $1",
                        )
                        .bind(s.id)
                        .bind(&a.title)
                        .bind(&a.url)
                        .bind(&a.summary_html)
                        .bind(&a.summary_text)
                        .bind(&a.author)
                        .bind(a.published_at)
                        .bind(&a.image_url)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn list_articles(
        &self,
        section_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Article>> {
        Ok(
            sqlx::query_as::<Db, Article>(crate::store::shared::select_article!(
                "WHERE ($1 IS NULL OR section_id = $1) ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(section_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn set_section_feed(&self, section_id: i64, url: Option<&str>) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE sections SET feed_url = $2, feed_etag = NULL, feed_last_modified = NULL, \
             feed_error = NULL WHERE id = $1",
        )
        .bind(section_id)
        .bind(url)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_section(
        &self,
        section_id: i64,
        name: &str,
        description: &str,
        feed_url: Option<&str>,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        Ok(sqlx::query::<Db>(
            "UPDATE sections SET name = $2, description = $3, feed_etag = CASE WHEN feed_url IS \
             NOT DISTINCT FROM $4 THEN feed_etag END, feed_last_modified = CASE WHEN feed_url IS \
             NOT DISTINCT FROM $4 THEN feed_last_modified END, feed_error = CASE WHEN feed_url IS \
             NOT DISTINCT FROM $4 THEN feed_error END, feed_url = $4 WHERE id = $1",
        )
        .bind(section_id)
        .bind(name)
        .bind(description)
        .bind(feed_url)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn article_page(
        &self,
        section_id: Option<i64>,
        search: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Article>> {
        let mut qb =
            sqlx::QueryBuilder::<Db>::new(crate::store::shared::select_article!("WHERE 1 = 1"));
        if let Some(id) = section_id {
            qb.push(" AND section_id = ").push_bind(id);
        }
        if let Some(text) = search {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            qb.push(" AND LOWER(title) LIKE ")
                .push_bind(format!("%{escaped}%"))
                .push(" ESCAPE '\\'");
        }
        if let Some(b) = before {
            qb.push(" AND id < ").push_bind(b);
        }
        // Ids grow with arrival, so id order is arrival order and a page boundary
        // is one id.
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        Ok(qb.build_query_as::<Article>().fetch_all(&self.pool).await?)
    }

    async fn article(&self, id: i64) -> StoreResult<Option<Article>> {
        Ok(
            sqlx::query_as::<Db, Article>(crate::store::shared::select_article!("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_article_release(
        &self,
        id: i64,
        hold_until: Option<DateTime<Utc>>,
        withdrawn_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        Ok(sqlx::query::<Db>(
            "UPDATE articles SET hold_until = $2, withdrawn_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(hold_until)
        .bind(withdrawn_at)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn set_section_page(
        &self,
        section_id: i64,
        url: Option<&str>,
        only_if_unset: bool,
    ) -> StoreResult<()> {
        sqlx::query::<Db>(
            "UPDATE sections SET page_url = $2 WHERE id = $1 AND ($3 = FALSE OR page_url IS NULL)",
        )
        .bind(section_id)
        .bind(url)
        .bind(only_if_unset)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn section_feeds(&self) -> StoreResult<Vec<SectionFeed>> {
        Ok(sqlx::query_as::<Db, SectionFeed>(
            "SELECT id, slug, feed_url, feed_etag, feed_last_modified, feed_checked_at, \
             feed_error, feed_report FROM sections ORDER BY slug",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_feed_poll(
        &self,
        section_id: i64,
        now: DateTime<Utc>,
        etag: Option<&str>,
        last_modified: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        // On error keep the validators of the last good fetch.
        sqlx::query::<Db>(
            "UPDATE sections SET feed_checked_at = $2, feed_error = $5, feed_etag = CASE WHEN $5 \
             IS NULL THEN $3 ELSE feed_etag END, feed_last_modified = CASE WHEN $5 IS NULL THEN $4 \
             ELSE feed_last_modified END WHERE id = $1",
        )
        .bind(section_id)
        .bind(now)
        .bind(etag)
        .bind(last_modified)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_feed_report(&self, section_id: i64, report: &str) -> StoreResult<()> {
        sqlx::query::<Db>("UPDATE sections SET feed_report = $2 WHERE id = $1")
            .bind(section_id)
            .bind(report)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

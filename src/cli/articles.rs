//! `herald articles`: add one, import a feed file, list.

use super::{CliResult, Failure, Format, print_list};
use clap::Subcommand;
use herald::Services;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Cmd {
    /// Add one article to a section.
    Add {
        /// The section's slug.
        #[arg(long)]
        section: String,
        #[arg(long)]
        title: String,
        /// The article's page (http or https).
        #[arg(long)]
        url: String,
        /// A teaser; HTML is sanitised, plain text kept as text.
        #[arg(long)]
        summary: Option<String>,
        /// The byline.
        #[arg(long)]
        author: Option<String>,
        /// When it was published, RFC 3339, e.g. 2015-10-01T14:00:00Z.
        #[arg(long, value_name = "TIME")]
        published: Option<String>,
        /// The article's picture (an https URL), shown in digests as a thumbnail.
        #[arg(long, value_name = "URL")]
        image: Option<String>,
    },
    /// Import an RSS, Atom or JSON Feed file into a section.
    Import {
        /// The section's slug.
        #[arg(long)]
        section: String,
        file: PathBuf,
        /// Where the feed is published: relative links in it are resolved against this
        /// (after any xml:base, before the channel's own link).
        #[arg(long, value_name = "URL")]
        base: Option<String>,
    },
    /// List articles, newest first.
    List {
        /// Only this section's (slug).
        #[arg(long)]
        section: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Add {
            section,
            title,
            url,
            summary,
            author,
            published,
            image,
        } => {
            let published = match published {
                Some(p) => Some(
                    chrono::DateTime::parse_from_rfc3339(&p)
                        .map_err(|e| {
                            Failure::usage(format!(
                                "--published {p:?} is not RFC 3339 (2015-10-01T14:00:00Z): {e}"
                            ))
                        })?
                        .with_timezone(&chrono::Utc),
                ),
                None => None,
            };
            let input = herald::articles::ArticleInput {
                section,
                title,
                url,
                summary,
                author,
                published,
                guid: None,
                image,
            };
            let w = herald::articles::add_article(s.store.as_ref(), input, s.clock.now()).await?;
            if w.added > 0 {
                println!("article added");
            } else if w.updated > 0 {
                println!("article corrected (same URL/guid in this section, not mailed yet)");
            } else {
                println!(
                    "already there (same URL/guid in this section, unchanged or already mailed): nothing changed"
                );
            }
        }
        Cmd::Import {
            section,
            file,
            base,
        } => {
            if let Some(b) = &base
                && !url::Url::parse(b).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                return Err(Failure::usage(format!(
                    "--base must be an http(s) URL, got {b:?}"
                )));
            }
            // Counted while read, one byte past the limit at most: a pipe or a device
            // (`/dev/stdin`, `/dev/zero`) has no size to look at first, and a file's size
            // can change between the look and the read.
            let limit = s.config.feeds.max_size;
            let cannot =
                |e: std::io::Error| Failure(1, format!("cannot read {}: {e}", file.display()));
            let mut bytes = Vec::new();
            {
                use std::io::Read;
                std::fs::File::open(&file)
                    .map_err(cannot)?
                    .take(limit.0.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(cannot)?;
            }
            if bytes.len() as u64 > limit.0 {
                return Err(Failure(
                    1,
                    format!(
                        "{}: the feed is larger than {limit} (feeds.max_size)",
                        file.display()
                    ),
                ));
            }
            let outcome = herald::articles::import_feed(
                s.store.as_ref(),
                &section,
                &bytes,
                base.as_deref(),
                s.clock.now(),
            )
            .await
            .map_err(|e| Failure(1, format!("{}: {e}", file.display())))?;
            println!("{outcome} in {section}");
        }
        Cmd::List {
            section,
            limit,
            format,
        } => {
            let section_id = match section {
                Some(slug) => Some(
                    herald::articles::section_by_slug(s.store.as_ref(), &slug)
                        .await?
                        .id,
                ),
                None => None,
            };
            let list = s.store.list_articles(section_id, limit).await?;
            print_list(&list, format, ("article", "articles"), |a| {
                format!(
                    "{} {}  {}",
                    a.created_at.format("%Y-%m-%d %H:%M"),
                    a.title,
                    a.url
                )
            })?;
        }
    }
    Ok(())
}

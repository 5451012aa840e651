//! `herald sections`: what readers can subscribe to, and where their articles come from.

use super::{CliResult, Failure, Format, count, print_json};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Add a section.
    Add {
        /// Its short name in URLs and commands: lower-case letters, digits and dashes.
        slug: String,
        /// The name readers see, e.g. "Weapons of Mass Destruction (WMD)".
        #[arg(long)]
        name: String,
        /// A line shown under the name on the signup form.
        #[arg(long, default_value = "")]
        description: String,
        /// A feed URL (RSS, Atom or JSON Feed) `herald serve` polls for new articles.
        #[arg(long, value_name = "URL")]
        feed: Option<String>,
    },
    /// Set (or with --clear remove) a section's feed URL.
    SetFeed {
        slug: String,
        url: Option<String>,
        /// Remove the feed.
        #[arg(long, conflicts_with = "url")]
        clear: bool,
    },
    /// Set (or with --clear remove) the section's page on the site, where a digest's
    /// "and N more in Section" links. Without one, the section's feed gives it.
    SetPage {
        slug: String,
        url: Option<String>,
        /// Remove the page.
        #[arg(long, conflicts_with = "url")]
        clear: bool,
    },
    /// List sections, with what the last read of each feed found.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Add {
            slug,
            name,
            description,
            feed,
        } => {
            let sec = herald::articles::add_section(
                s.store.as_ref(),
                &slug,
                &name,
                &description,
                feed.as_deref(),
                s.clock.now(),
            )
            .await?;
            println!("added section {} ({})", sec.slug, sec.name);
        }
        Cmd::SetFeed { slug, url, clear } => {
            if url.is_none() && !clear {
                return Err(Failure::usage("give a feed URL, or --clear"));
            }
            herald::articles::set_feed(s.store.as_ref(), &slug, url.as_deref()).await?;
            println!("{slug}: feed {}", url.as_deref().unwrap_or("removed"));
        }
        Cmd::SetPage { slug, url, clear } => {
            if url.is_none() && !clear {
                return Err(Failure::usage("give the page URL, or --clear"));
            }
            herald::articles::set_page(s.store.as_ref(), &slug, url.as_deref()).await?;
            println!("{slug}: page {}", url.as_deref().unwrap_or("removed"));
        }
        Cmd::List { format } => list(&s, format).await?,
    }
    Ok(())
}

async fn list(s: &Services, format: Format) -> CliResult {
    let list = s.store.list_sections().await?;
    let feeds = s.store.section_feeds().await?;
    if format == Format::Json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|sec| {
                let mut v = serde_json::to_value(sec).unwrap_or_default();
                if let Some(f) = feeds.iter().find(|f| f.id == sec.id) {
                    v["feed_checked_at"] =
                        serde_json::to_value(f.feed_checked_at).unwrap_or_default();
                    v["feed_error"] = serde_json::to_value(&f.feed_error).unwrap_or_default();
                    v["feed_report"] = serde_json::to_value(&f.feed_report).unwrap_or_default();
                }
                v
            })
            .collect();
        return print_json(&v);
    }
    if list.is_empty() {
        eprintln!(
            "no sections yet: readers cannot sign up until there is one (`herald sections add`)"
        );
        return Ok(());
    }
    for sec in &list {
        let state = match feeds.iter().find(|f| f.id == sec.id) {
            Some(f) if f.feed_url.is_some() => match (&f.feed_error, f.feed_checked_at) {
                (Some(e), _) => format!("  feed FAILING: {e}"),
                (None, Some(t)) => format!(
                    "  feed ok, checked {}{}",
                    t.format("%Y-%m-%d %H:%M"),
                    f.feed_report
                        .as_deref()
                        .map(|r| format!("; last read: {r}"))
                        .unwrap_or_default()
                ),
                (None, None) => "  feed not polled yet".to_string(),
            },
            _ => String::new(),
        };
        println!("{:<24} {}{state}", sec.slug, sec.name);
    }
    eprintln!("{}", count(list.len() as i64, "section", "sections"));
    Ok(())
}

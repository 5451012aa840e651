//! One reader's digest: the issue's articles in the sections *they* chose, grouped by
//! section, each article once; rendered from `templates/email/digest.{html,txt}`.

use super::DigestError;
use crate::config::SiteConfig;
use crate::delivery::{ComposeError, Composed, Composer, OutgoingMail};
use crate::store::{IssueArticle, SendJob};
use crate::subscriptions::Subscriptions;
use askama::Template;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Item {
    /// The article's picture, when the schedule shows them.
    image_url: Option<String>,
    title: String,
    url: String,
    byline: String,
    summary_html: String,
    summary_text: String,
}

struct Group {
    name: String,
    items: Vec<Item>,
    /// Articles of this section in the issue that are not shown.
    more: usize,
    /// Where "and N more" links: the section's page, else the site.
    more_url: String,
}

struct DigestData<'a> {
    site: &'a SiteConfig,
    subject: &'a str,
    /// Hidden preview text (the first titles), shown by mail clients beside the subject.
    preheader: String,
    /// Invisible characters after it (HTML, not escaped), so the inbox preview ends there
    /// instead of running on into "View in browser · Your sections · Unsubscribe".
    preheader_filler: &'static str,
    groups: Vec<Group>,
    /// Empty in the web archive, which is nobody's own copy.
    preferences_url: String,
    unsubscribe_url: String,
    /// The issue in the public archive ("view in browser"); empty when there is none.
    archive_url: String,
    /// Set when this is the issue's page in the public archive.
    page: Option<&'a ArchiveChrome>,
}

/// What an issue's page in the public archive shows around the digest: where it stands
/// among the schedule's issues, when it went out, and the way in for a new reader.
#[derive(Debug, Clone)]
pub struct ArchiveChrome {
    /// The schedule's name, as its archive is titled.
    pub schedule: String,
    /// When the issue was scheduled, in the schedule's zone ("2 March 2026, 07:00 CET").
    pub when: String,
    /// The same instant as RFC 3339, for `<time datetime>`.
    pub when_iso: String,
    pub index_url: String,
    pub feed_url: String,
    pub subscribe_url: String,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
}

/// The HTML part stays under this many bytes. Gmail clips a message whose HTML passes
/// ~102 kB and hides the rest behind "View entire message" (the footer with the unsubscribe
/// link and postal address included); the margin covers the transfer encoding.
pub const HTML_BUDGET: usize = 80_000;

/// A summary whose HTML is longer than this is shown as a text teaser.
const SUMMARY_HTML_MAX: usize = 2_000;
/// The text part carries a summary whole up to this many characters (it is not clipped,
/// but a 100 kB summary is no digest entry).
const SUMMARY_TEXT_MAX: usize = 5_000;
/// Teaser lengths (characters): at first, and when the digest is still over budget.
const TEASER: usize = 400;
const SHORT_TEASER: usize = 160;

/// What a schedule decides about its digests' look.
#[derive(Debug, Clone)]
pub struct IssueLook {
    pub subject: SubjectRule,
    /// Show article pictures.
    pub images: bool,
}

/// How a digest's subject is made.
#[derive(Debug, Clone)]
pub enum SubjectRule {
    /// The schedule's own subject.
    Fixed(String),
    /// "Site: the reader's sections in this issue — date".
    Sections { date: String },
}

/// Text cut to `max` characters at a word boundary, with an ellipsis when cut.
/// A preview pane shows at most this many characters (Outlook's longest; Gmail and Apple
/// Mail show fewer): the preheader and its filler together fill it.
const PREVIEW_CHARS: usize = 200;

/// One filler unit: a figure space (a character clients do not collapse) and a combining
/// grapheme joiner (invisible), written as entities so the HTML part stays 7-bit.
const FILLER_UNIT: &str = "&#8199;&#847;";

/// Filler for `preheader`: as many units as the preview has room left, sliced from one
/// static string (no allocation per message, and no more bytes than needed: the first
/// version's fixed 150 units added 2 kB to every digest and cost ~10% of delivery speed).
fn preheader_filler(preheader: &str) -> &'static str {
    static FILLER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let all = FILLER.get_or_init(|| FILLER_UNIT.repeat(PREVIEW_CHARS));
    let units = PREVIEW_CHARS.saturating_sub(preheader.chars().count());
    &all[..units * FILLER_UNIT.len()]
}

fn teaser(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

#[derive(Template)]
#[template(path = "email/digest.html")]
struct DigestHtml<'a> {
    d: &'a DigestData<'a>,
}

#[derive(Template)]
#[template(path = "email/digest.txt")]
struct DigestText<'a> {
    d: &'a DigestData<'a>,
}

/// A rendered digest (also what `herald digests preview` prints).
#[derive(Debug, Clone)]
pub struct RenderedDigest {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe_url: String,
}

/// Issue data shared by all of its sends; cached so a million sends read it once.
struct IssueData {
    look: IssueLook,
    articles: Vec<IssueArticle>,
    /// Its page in the public archive, if the archive is on.
    archive_url: Option<String>,
    /// What its mails tell mailbox providers about the list.
    list: crate::delivery::ListMail,
}

pub struct DigestComposer {
    store: Arc<dyn super::DigestStore>,
    subs: Arc<Subscriptions>,
    /// The site's look (`[site]` in config), so it changes without a rebuild.
    site: SiteConfig,
    cache: Mutex<HashMap<i64, Arc<IssueData>>>,
    max_articles: usize,
    /// The public archive's root (`{public_url}/archive`), if it is on.
    archive_root: Option<String>,
    /// `mail.list_help`, for `List-Help`.
    list_help: Option<String>,
}

impl DigestComposer {
    pub fn new(
        store: Arc<dyn super::DigestStore>,
        subs: Arc<Subscriptions>,
        site: SiteConfig,
        max_articles: u32,
        archive_root: Option<String>,
        list_help: Option<String>,
    ) -> Self {
        Self {
            store,
            subs,
            site,
            cache: Mutex::new(HashMap::new()),
            max_articles: max_articles as usize,
            archive_root,
            list_help,
        }
    }

    pub fn site(&self) -> &SiteConfig {
        &self.site
    }

    /// The public archive's root (`{public_url}/archive`), when it is on.
    pub fn archive_root(&self) -> Option<&str> {
        self.archive_root.as_deref()
    }

    /// What the archive page of `issue` shows around it; `prev`/`next` are the ids of the
    /// schedule's issues before and after it.
    pub fn archive_chrome(
        &self,
        issue: &crate::store::Issue,
        schedule: Option<&crate::store::Schedule>,
        prev: Option<i64>,
        next: Option<i64>,
    ) -> ArchiveChrome {
        let root = self
            .archive_root
            .clone()
            .unwrap_or_else(|| format!("{}/archive", self.subs.public_url().trim_end_matches('/')));
        let index_url = format!("{root}/{}", issue.schedule_name);
        ArchiveChrome {
            schedule: issue.schedule_name.clone(),
            when: super::time_label(schedule, issue.scheduled_for),
            when_iso: issue.scheduled_for.to_rfc3339(),
            feed_url: format!("{index_url}/feed.xml"),
            subscribe_url: format!("{}/subscribe", self.subs.public_url().trim_end_matches('/')),
            prev_url: prev.map(|id| format!("{index_url}/{id}")),
            next_url: next.map(|id| format!("{index_url}/{id}")),
            index_url,
        }
    }

    async fn issue_data(&self, issue_id: i64) -> Result<Arc<IssueData>, ComposeError> {
        if let Some(d) = self.cache.lock().expect("cache lock").get(&issue_id) {
            return Ok(d.clone());
        }
        let issue = self
            .store
            .issue(issue_id)
            .await?
            .ok_or_else(|| ComposeError::Missing(format!("issue #{issue_id}")))?;
        let articles = self.store.issue_articles(issue_id).await?;
        // The schedule's own subject is the one stored on the issue; without one, each
        // reader's subject names their own sections. A removed schedule keeps what was stored.
        let schedule = self
            .store
            .schedule_by_name(&issue.schedule_name)
            .await?
            .filter(|s| Some(s.id) == issue.schedule_id);
        let images = schedule.as_ref().is_none_or(|s| s.images);
        let subject = match schedule {
            Some(s) if s.subject.is_none() => SubjectRule::Sections {
                date: super::date_label(&s, issue.scheduled_for),
            },
            _ => SubjectRule::Fixed(issue.subject),
        };
        let archive_url = self
            .archive_root
            .as_ref()
            .map(|root| format!("{root}/{}/{}", issue.schedule_name, issue.id));
        let list = crate::delivery::ListMail {
            campaign: format!("{}:{}", issue.id, issue.schedule_name),
            subscribe_url: Some(format!(
                "{}/subscribe",
                self.subs.public_url().trim_end_matches('/')
            )),
            archive_url: self
                .archive_root
                .as_ref()
                .map(|root| format!("{root}/{}", issue.schedule_name)),
            help_url: self.list_help.clone(),
            archived_at: archive_url.clone(),
        };
        let data = Arc::new(IssueData {
            look: IssueLook { subject, images },
            articles,
            archive_url,
            list,
        });
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 32 {
            cache.clear();
        }
        cache.insert(issue_id, data.clone());
        Ok(data)
    }

    /// Render for one reader; None when none of the articles is in their sections.
    pub async fn render_for(
        &self,
        look: &IssueLook,
        articles: &[IssueArticle],
        subscriber_id: i64,
        email: &str,
    ) -> Result<Option<RenderedDigest>, DigestError> {
        let mine: HashSet<i64> = self
            .store
            .subscriber_section_ids(subscriber_id)
            .await?
            .into_iter()
            .collect();
        self.render_with(
            look,
            articles,
            Some((subscriber_id, email)),
            None,
            &mine,
            None,
        )
    }

    /// An issue as the public archive shows it: every section, the issue's own subject, no
    /// reader's links. None when it has no articles.
    pub async fn render_archive(
        &self,
        issue: &crate::store::Issue,
        chrome: &ArchiveChrome,
    ) -> Result<Option<String>, DigestError> {
        let data = self
            .issue_data(issue.id)
            .await
            .map_err(|e| DigestError::Render(e.to_string()))?;
        let all: HashSet<i64> = data.articles.iter().map(|a| a.section_id).collect();
        let look = IssueLook {
            subject: SubjectRule::Fixed(issue.subject.clone()),
            images: data.look.images,
        };
        Ok(self
            .render_with(&look, &data.articles, None, None, &all, Some(chrome))?
            .map(|r| r.html))
    }

    fn render_with(
        &self,
        look: &IssueLook,
        articles: &[IssueArticle],
        reader: Option<(i64, &str)>,
        archive_url: Option<&str>,
        mine: &HashSet<i64>,
        page: Option<&ArchiveChrome>,
    ) -> Result<Option<RenderedDigest>, DigestError> {
        // The reader's articles by section, newest first within each (the query's order);
        // an article in several sections is shown under the first the reader chose.
        let mut seen = HashSet::new();
        let mut sections: Vec<(&IssueArticle, Vec<&IssueArticle>)> = Vec::new();
        for a in articles.iter().filter(|a| mine.contains(&a.section_id)) {
            if !seen.insert(a.url.as_str()) {
                continue;
            }
            match sections.last_mut() {
                Some((first, list)) if first.section_id == a.section_id => list.push(a),
                _ => sections.push((a, vec![a])),
            }
        }
        if sections.is_empty() {
            return Ok(None);
        }
        let subject = match &look.subject {
            SubjectRule::Fixed(s) => s.clone(),
            SubjectRule::Sections { date } => crate::articles::one_line(
                &format!(
                    "{}: {} — {date}",
                    self.site.name,
                    sections
                        .iter()
                        .map(|(first, _)| first.section_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                300,
            ),
        };
        let preheader = teaser(
            &sections
                .iter()
                .flat_map(|(_, list)| list.iter().map(|a| a.title.as_str()))
                .take(4)
                .collect::<Vec<_>>()
                .join(" · "),
            150,
        );
        let links = match reader {
            Some((id, email)) => self.subs.links(id, email),
            None => crate::subscriptions::ManageLinks {
                unsubscribe_url: String::new(),
                preferences_url: String::new(),
            },
        };
        // Fit the mailbox: at most `max_articles` per section; then, while the HTML is over
        // budget, shorter teasers, then fewer articles. Whatever is left out is counted in
        // "and N more", so nothing is lost without a word.
        let mut shown: Vec<usize> = sections
            .iter()
            .map(|(_, list)| list.len().min(self.max_articles))
            .collect();
        let mut short = false;
        loop {
            let groups = sections
                .iter()
                .zip(&shown)
                .map(|((first, list), &n)| Group {
                    name: first.section_name.clone(),
                    items: list[..n]
                        .iter()
                        .map(|a| self.item(a, short, look.images))
                        .collect(),
                    more: list.len() - n,
                    more_url: first
                        .section_page_url
                        .clone()
                        .unwrap_or_else(|| self.site.url.clone()),
                })
                .collect();
            let d = DigestData {
                site: &self.site,
                subject: &subject,
                preheader_filler: preheader_filler(&preheader),
                preheader: preheader.clone(),
                groups,
                preferences_url: links.preferences_url.clone(),
                unsubscribe_url: links.unsubscribe_url.clone(),
                archive_url: archive_url.unwrap_or_default().to_string(),
                page,
            };
            let html = DigestHtml { d: &d }
                .render()
                .map_err(|e| DigestError::Render(e.to_string()))?;
            let nothing_left = shown.iter().all(|n| *n == 0);
            if html.len() > HTML_BUDGET && !nothing_left {
                if !short {
                    short = true;
                } else {
                    for n in shown.iter_mut() {
                        *n = *n * 3 / 4;
                    }
                }
                continue;
            }
            let text = DigestText { d: &d }
                .render()
                .map_err(|e| DigestError::Render(e.to_string()))?;
            return Ok(Some(RenderedDigest {
                to: reader.map(|r| r.1.to_string()).unwrap_or_default(),
                subject: subject.clone(),
                text,
                html,
                unsubscribe_url: links.unsubscribe_url,
            }));
        }
    }

    /// One article as shown: a summary longer than [`SUMMARY_HTML_MAX`] (or any, when
    /// `short`) becomes a text teaser in both parts.
    fn item(&self, a: &IssueArticle, short: bool, images: bool) -> Item {
        let date = a
            .published_at
            .unwrap_or(a.created_at)
            .format("%-d %B %Y")
            .to_string();
        let byline = match &a.author {
            Some(author) => format!("by {author} · {date}"),
            None => date,
        };
        let max = if short { SHORT_TEASER } else { TEASER };
        let (summary_html, summary_text) = if !short && a.summary_html.len() <= SUMMARY_HTML_MAX {
            (
                a.summary_html.clone(),
                teaser(&a.summary_text, SUMMARY_TEXT_MAX),
            )
        } else {
            let t = teaser(&a.summary_text, max);
            (crate::articles::escape_html(&t), t)
        };
        Item {
            // Pictures go first when the digest must shrink.
            image_url: a.image_url.clone().filter(|_| images && !short),
            title: a.title.clone(),
            url: a.url.clone(),
            byline,
            summary_html,
            summary_text,
        }
    }
}

#[async_trait::async_trait]
impl Composer for DigestComposer {
    async fn compose(&self, job: &SendJob) -> Result<Composed, ComposeError> {
        let (Some(subscriber_id), Some(email), Some(issue_id)) =
            (job.subscriber_id, job.email.as_deref(), job.issue_id)
        else {
            return Ok(Composed::Skip("subscriber erased".into()));
        };
        // They may have left since the issue was made.
        if job.subscriber_status != Some(crate::domain::SubscriberStatus::Active) {
            return Ok(Composed::Skip(format!(
                "not subscribed ({})",
                job.subscriber_status
                    .map_or("erased", crate::domain::SubscriberStatus::as_str)
            )));
        }
        let to: lettre::Address = email
            .parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address(e.to_string()))?;
        let data = self.issue_data(issue_id).await?;
        let mine: HashSet<i64> = job.section_ids().into_iter().collect();
        match self
            .render_with(
                &data.look,
                &data.articles,
                Some((subscriber_id, email)),
                data.archive_url.as_deref(),
                &mine,
                None,
            )
            .map_err(|e| ComposeError::Render(e.to_string()))?
        {
            Some(r) => Ok(Composed::Mail {
                mail: OutgoingMail {
                    to,
                    subject: r.subject,
                    text: r.text,
                    html: r.html,
                    list: Some(data.list.clone()),
                },
                unsubscribe_url: Some(r.unsubscribe_url),
            }),
            None => Ok(Composed::Skip(
                "no articles left in the reader's sections".into(),
            )),
        }
    }
}

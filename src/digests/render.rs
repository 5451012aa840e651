//! One reader's digest: the issue's articles in the sections *they* chose, grouped by
//! section, each article once; rendered from `templates/email/digest.{html,txt}`.

use super::DigestError;
use crate::config::SiteConfig;
use crate::delivery::{Composed, Composer, OutgoingMail};
use crate::store::{IssueArticle, SendJob, Store};
use crate::subscriptions::Subscriptions;
use askama::Template;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Item {
    title: String,
    url: String,
    byline: String,
    summary_html: String,
    summary_text: String,
}

struct Group {
    name: String,
    items: Vec<Item>,
}

struct DigestData<'a> {
    site: &'a SiteConfig,
    subject: &'a str,
    groups: Vec<Group>,
    preferences_url: String,
    unsubscribe_url: String,
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
    subject: String,
    articles: Vec<IssueArticle>,
}

pub struct DigestComposer {
    store: Arc<dyn Store>,
    subs: Arc<Subscriptions>,
    /// The site's look (`[site]` in config), so it changes without a rebuild.
    site: SiteConfig,
    cache: Mutex<HashMap<i64, Arc<IssueData>>>,
}

impl DigestComposer {
    pub fn new(store: Arc<dyn Store>, subs: Arc<Subscriptions>, site: SiteConfig) -> Self {
        Self {
            store,
            subs,
            site,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn site(&self) -> &SiteConfig {
        &self.site
    }

    async fn issue_data(&self, issue_id: i64) -> Result<Arc<IssueData>, String> {
        if let Some(d) = self.cache.lock().expect("cache lock").get(&issue_id) {
            return Ok(d.clone());
        }
        let issue = self
            .store
            .issue(issue_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("issue {issue_id} not found"))?;
        let articles = self
            .store
            .issue_articles(issue_id)
            .await
            .map_err(|e| e.to_string())?;
        let data = Arc::new(IssueData {
            subject: issue.subject,
            articles,
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
        subject: &str,
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
        self.render_with(subject, articles, subscriber_id, email, &mine)
    }

    fn render_with(
        &self,
        subject: &str,
        articles: &[IssueArticle],
        subscriber_id: i64,
        email: &str,
        mine: &HashSet<i64>,
    ) -> Result<Option<RenderedDigest>, DigestError> {
        let mut seen = HashSet::new();
        let mut groups: Vec<Group> = Vec::new();
        // Articles come ordered by section name; an article in several sections is shown
        // under the first of them that the reader chose.
        for a in articles.iter().filter(|a| mine.contains(&a.section_id)) {
            if !seen.insert(a.url.as_str()) {
                continue;
            }
            let date = a
                .published_at
                .unwrap_or(a.created_at)
                .format("%-d %B %Y")
                .to_string();
            let byline = match &a.author {
                Some(author) => format!("by {author} · {date}"),
                None => date,
            };
            let item = Item {
                title: a.title.clone(),
                url: a.url.clone(),
                byline,
                summary_html: a.summary_html.clone(),
                summary_text: a.summary_text.clone(),
            };
            match groups.last_mut() {
                Some(g) if g.name == a.section_name => g.items.push(item),
                _ => groups.push(Group {
                    name: a.section_name.clone(),
                    items: vec![item],
                }),
            }
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let links = self.subs.links(subscriber_id, email);
        let d = DigestData {
            site: &self.site,
            subject,
            groups,
            preferences_url: links.preferences_url,
            unsubscribe_url: links.unsubscribe_url.clone(),
        };
        let html = DigestHtml { d: &d }
            .render()
            .map_err(|e| DigestError::Render(e.to_string()))?;
        let text = DigestText { d: &d }
            .render()
            .map_err(|e| DigestError::Render(e.to_string()))?;
        Ok(Some(RenderedDigest {
            to: email.to_string(),
            subject: subject.to_string(),
            text,
            html,
            unsubscribe_url: links.unsubscribe_url,
        }))
    }
}

#[async_trait::async_trait]
impl Composer for DigestComposer {
    async fn compose(&self, job: &SendJob) -> Result<Composed, String> {
        let (Some(subscriber_id), Some(email), Some(issue_id)) =
            (job.subscriber_id, job.email.as_deref(), job.issue_id)
        else {
            return Ok(Composed::Skip("subscriber erased".into()));
        };
        // They may have left since the issue was made.
        if job.subscriber_status.as_deref() != Some("active") {
            return Ok(Composed::Skip(format!(
                "not subscribed ({})",
                job.subscriber_status.as_deref().unwrap_or("erased")
            )));
        }
        let to: lettre::Address = email
            .parse()
            .map_err(|e| format!("bad stored address: {e}"))?;
        let data = self.issue_data(issue_id).await?;
        let mine: HashSet<i64> = job.section_ids().into_iter().collect();
        match self
            .render_with(&data.subject, &data.articles, subscriber_id, email, &mine)
            .map_err(|e| e.to_string())?
        {
            Some(r) => Ok(Composed::Mail {
                mail: OutgoingMail {
                    to,
                    subject: r.subject,
                    text: r.text,
                    html: r.html,
                },
                unsubscribe_url: Some(r.unsubscribe_url),
            }),
            None => Ok(Composed::Skip(
                "no articles left in the reader's sections".into(),
            )),
        }
    }
}

//! The transactional mails of the reader's story: confirmation, "already subscribed", and
//! welcome. Rendered at send time from `templates/email/` (text + HTML). A confirmation
//! mail holds nothing the signup form supplied except the address itself.

use super::Subscriptions;
use crate::config::SiteConfig;
use crate::delivery::{ComposeError, Composed, Composer, OutgoingMail};
use crate::store::{SendJob, SendKind};
use askama::Template;
use std::sync::Arc;

struct ConfirmData<'a> {
    site: &'a SiteConfig,
    email: &'a str,
    confirm_url: String,
    valid_hours: i64,
}

#[derive(Template)]
#[template(path = "email/confirm.txt")]
struct ConfirmText<'a> {
    d: &'a ConfirmData<'a>,
}

#[derive(Template)]
#[template(path = "email/confirm.html")]
struct ConfirmHtml<'a> {
    d: &'a ConfirmData<'a>,
}

struct ManageData<'a> {
    site: &'a SiteConfig,
    email: &'a str,
    sections: Vec<String>,
    preferences_url: String,
    unsubscribe_url: String,
}

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    d: &'a ManageData<'a>,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    d: &'a ManageData<'a>,
}

#[derive(Template)]
#[template(path = "email/already_subscribed.txt")]
struct AlreadyText<'a> {
    d: &'a ManageData<'a>,
}

#[derive(Template)]
#[template(path = "email/already_subscribed.html")]
struct AlreadyHtml<'a> {
    d: &'a ManageData<'a>,
}

/// Composes confirm / already_subscribed / welcome rows for the delivery workers.
pub struct TransactionalComposer {
    subs: Arc<Subscriptions>,
    site: SiteConfig,
}

impl TransactionalComposer {
    pub fn new(subs: Arc<Subscriptions>, site: SiteConfig) -> Self {
        Self { subs, site }
    }
}

fn render<T: Template>(t: &T) -> Result<String, ComposeError> {
    t.render().map_err(|e| ComposeError::Render(e.to_string()))
}

#[async_trait::async_trait]
impl Composer for TransactionalComposer {
    async fn compose(&self, job: &SendJob) -> Result<Composed, ComposeError> {
        let (Some(subscriber_id), Some(email)) = (job.subscriber_id, job.email.as_deref()) else {
            return Ok(Composed::Skip("subscriber erased".into()));
        };
        let to: lettre::Address = email
            .parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address(e.to_string()))?;
        use crate::domain::SubscriberStatus as S;
        let status = job.subscriber_status;
        let state = status.map_or("erased", S::as_str);
        let links = self.subs.links(subscriber_id, email);
        let site = &self.site.name;
        let (subject, text, html) = match job.kind {
            SendKind::Confirm => {
                // Pending, or a former subscriber asking to come back. Never an address
                // that bounced or complained since the link was queued.
                if !matches!(status, Some(S::Pending | S::Unsubscribed)) {
                    return Ok(Composed::Skip(format!("no longer pending ({state})")));
                }
                let sealed = job
                    .sealed_token
                    .as_deref()
                    .ok_or(ComposeError::Token("its token is missing"))?;
                let token =
                    self.subs
                        .key()
                        .unseal(&job.message_id, sealed)
                        .ok_or(ComposeError::Token(
                            "its token cannot be unsealed (was the secret key changed?)",
                        ))?;
                let d = ConfirmData {
                    site: &self.site,
                    email,
                    confirm_url: format!("{}/confirm/{}", self.subs.public_url(), token.as_str()),
                    valid_hours: self.subs.confirm_ttl().num_hours(),
                };
                (
                    format!("{site}: please confirm your subscription"),
                    render(&ConfirmText { d: &d })?,
                    render(&ConfirmHtml { d: &d })?,
                )
            }
            SendKind::AlreadySubscribed | SendKind::Welcome => {
                if status != Some(S::Active) {
                    return Ok(Composed::Skip(format!("not subscribed ({state})")));
                }
                let sections = self
                    .subs
                    .subscriber_sections(subscriber_id)
                    .await?
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                let d = ManageData {
                    site: &self.site,
                    email,
                    sections,
                    preferences_url: links.preferences_url.clone(),
                    unsubscribe_url: links.unsubscribe_url.clone(),
                };
                if job.kind == SendKind::Welcome {
                    (
                        format!("Welcome to {site}"),
                        render(&WelcomeText { d: &d })?,
                        render(&WelcomeHtml { d: &d })?,
                    )
                } else {
                    (
                        format!("{site}: you are already subscribed"),
                        render(&AlreadyText { d: &d })?,
                        render(&AlreadyHtml { d: &d })?,
                    )
                }
            }
            SendKind::Digest => {
                return Err(ComposeError::Render(
                    "a digest row reached the transactional composer".into(),
                ));
            }
        };
        Ok(Composed::Mail {
            mail: OutgoingMail {
                to,
                subject,
                text,
                html,
                // Confirmation and welcome mails answer the reader's own action.
                list: None,
            },
            unsubscribe_url: Some(links.unsubscribe_url),
        })
    }
}

//! Page types for `templates/pages/`. Handlers fill these; askama escapes every value.

use askama::Template;
use askama_web::WebTemplate;

pub struct SectionChoice {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/subscribe.html")]
pub struct SubscribePage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    /// `{public_url}/subscribe`.
    pub form_action: String,
    pub sections: Vec<SectionChoice>,
    pub email: String,
    pub error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/message.html")]
pub struct MessagePage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub link: Option<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/confirm.html")]
pub struct ConfirmPage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    pub email: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/preferences.html")]
pub struct PreferencesPage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    pub email: String,
    pub sections: Vec<SectionChoice>,
    pub error: Option<String>,
    pub unsubscribe_url: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/unsubscribe.html")]
pub struct UnsubscribePage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    pub email: String,
}

pub struct ArchiveEntry {
    pub url: String,
    /// "2 March 2026, 07:00 CET", in the schedule's zone.
    pub when: String,
    pub when_iso: String,
    /// The subject without what the line already says (site name, date).
    pub subject: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/archive.html")]
pub struct ArchivePage {
    pub site_name: String,
    pub lang: String,
    pub site_url: String,
    pub subscribe_url: String,
    pub heading: String,
    pub feed_url: String,
    pub issues: Vec<ArchiveEntry>,
}

//! `/admin/articles`: what the next digests will carry — per section, searchable by title,
//! newest first, keyset-paged — and, for staff, a form to add one by hand (what a feed or
//! the API would add).

use super::{Change, Chrome, ConsoleError, FieldErrors, Page, Query, Viewer, html, see_other};
use crate::articles::{ArticleError, ArticleInput, SectionError};
use crate::store::Article;
use crate::web::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;

const PAGE: i64 = 50;

#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Form {
    pub section: String,
    pub title: String,
    pub url: String,
    pub summary: String,
    pub author: String,
    pub image: String,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Filters {
    pub section: String,
    pub q: String,
    #[serde(deserialize_with = "super::number")]
    pub before: Option<i64>,
    #[serde(deserialize_with = "super::flag")]
    pub added: bool,
}

impl Filters {
    pub fn query(&self) -> String {
        super::query_string(&[("section", &self.section), ("q", &self.q)])
    }

    pub fn any(&self) -> bool {
        !self.query().is_empty()
    }
}

pub(crate) struct Row {
    pub a: Article,
    pub section: String,
}

#[derive(Template)]
#[template(path = "console/articles.html")]
struct ArticlesPage {
    chrome: Chrome,
    f: Filters,
    sections: Vec<(String, String)>,
    rows: Vec<Row>,
    older: Option<i64>,
    form: Form,
    errors: FieldErrors,
}

async fn render(
    st: &AppState,
    v: &Viewer,
    status: StatusCode,
    f: Filters,
    form: Form,
    errors: FieldErrors,
) -> Page {
    let all = st.store.list_sections().await?;
    let mut errors = errors;
    let section_id = match f.section.as_str() {
        "" => None,
        slug => match all.iter().find(|s| s.slug == slug) {
            Some(s) => Some(s.id),
            None => {
                errors = FieldErrors::one("filter-section", "Pick a section from the list.");
                None
            }
        },
    };
    let status = if errors.get("filter-section").is_some() {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let search = Some(f.q.as_str()).filter(|q| !q.is_empty());
    let rows: Vec<Row> = if errors.get("filter-section").is_some() {
        Vec::new()
    } else {
        st.store
            .article_page(section_id, search, f.before, PAGE)
            .await?
            .into_iter()
            .map(|a| Row {
                section: all
                    .iter()
                    .find(|s| s.id == a.section_id)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                a,
            })
            .collect()
    };
    let older = super::next_page(&rows, PAGE, |r| r.a.id);
    let mut form = form;
    if form.section.is_empty() {
        form.section = f.section.clone();
    }
    html(
        status,
        ArticlesPage {
            chrome: v.chrome(st, "articles"),
            f,
            sections: all.into_iter().map(|s| (s.slug, s.name)).collect(),
            rows,
            older,
            form,
            errors,
        },
    )
}

pub(super) async fn list(
    State(st): State<AppState>,
    v: Viewer,
    Query(mut f): Query<Filters>,
) -> Page {
    f.q = f.q.chars().take(200).collect();
    render(
        &st,
        &v,
        StatusCode::OK,
        f,
        Form::default(),
        FieldErrors::default(),
    )
    .await
}

pub(super) async fn add(State(st): State<AppState>, Change { v, form }: Change<Form>) -> Page {
    let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let input = ArticleInput {
        section: form.section.clone(),
        title: form.title.clone(),
        url: form.url.clone(),
        summary: opt(&form.summary),
        author: opt(&form.author),
        published: None,
        guid: None,
        image: opt(&form.image),
    };
    match crate::articles::add_article(st.store.as_ref(), input, st.clock.now()).await {
        Ok(_) => {
            tracing::info!(user = %v.session.name, section = %form.section, "article added in the console");
            see_other(
                &st,
                &format!(
                    "/articles?{}",
                    super::query_string(&[("added", "1"), ("section", &form.section)])
                ),
            )
        }
        Err(e) => {
            let field = match &e {
                ArticleError::Invalid(field, _) => *field,
                ArticleError::Section(SectionError::Unknown(_)) => "section",
                _ => return Err(ConsoleError::internal(e)),
            };
            let f = Filters {
                section: form.section.clone(),
                ..Default::default()
            };
            let errors = FieldErrors::one(field, e.to_string());
            render(&st, &v, StatusCode::UNPROCESSABLE_ENTITY, f, form, errors).await
        }
    }
}

/// One article: where it stands (held, withdrawn, mailed) and, for staff, its correction
/// (title, summary, picture: until an issue carries it), holding it back until a time,
/// withdrawing it and putting it back.
#[derive(Template)]
#[template(path = "console/article.html")]
struct ArticlePage {
    chrome: Chrome,
    a: Article,
    section: String,
    /// The correction form, as stored or as typed.
    edit: EditForm,
    errors: FieldErrors,
    /// The hold's time as the field shows it (the newsroom's zone).
    until: String,
    notice: Option<String>,
}

/// The correction form.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct EditForm {
    title: String,
    summary: String,
    image: String,
}

impl From<Article> for EditForm {
    /// The form as the article reads now.
    fn from(a: Article) -> Self {
        Self {
            title: a.title,
            summary: a.summary_html,
            image: a.image_url.unwrap_or_default(),
        }
    }
}

/// The hold form: a time in the newsroom's zone, or nothing to release it.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct HoldForm {
    until: String,
}

/// `?done=…`: what was just done, said on the page.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Done {
    done: String,
}

fn unknown(id: i64) -> ConsoleError {
    ConsoleError::NotFound(format!("There is no article #{id}."))
}

async fn article_page(
    st: &AppState,
    v: &Viewer,
    id: i64,
    status: StatusCode,
    edit: Option<(EditForm, FieldErrors)>,
    notice: Option<String>,
) -> Page {
    let Some(a) = st.store.article(id).await? else {
        return Err(unknown(id));
    };
    let section = st
        .store
        .list_sections()
        .await?
        .into_iter()
        .find(|s| s.id == a.section_id)
        .map(|s| s.name)
        .unwrap_or_default();
    let chrome = v.chrome(st, "articles");
    let until = a
        .hold_until
        .map(|t| {
            t.with_timezone(&chrome.zone)
                .format("%Y-%m-%dT%H:%M")
                .to_string()
        })
        .unwrap_or_default();
    let (edit, errors) =
        edit.unwrap_or_else(|| (EditForm::from(a.clone()), FieldErrors::default()));
    html(
        status,
        ArticlePage {
            chrome,
            a,
            section,
            edit,
            errors,
            until,
            notice,
        },
    )
}

pub(super) async fn show(
    State(st): State<AppState>,
    v: Viewer,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Query(Done { done }): Query<Done>,
) -> Page {
    let notice = match done.as_str() {
        "edited" => Some("Corrected: the next digest carries it as it reads now."),
        "held" => Some("Held back: no issue made before that time carries it."),
        "released" => Some("No longer held: the next digest carries it."),
        "withdrawn" => Some("Withdrawn: no digest will carry it."),
        "restored" => Some("Put back: the next digest carries it."),
        _ => None,
    };
    article_page(&st, &v, id, StatusCode::OK, None, notice.map(Into::into)).await
}

/// Correct the title, summary or picture of an article no issue carries yet.
pub(super) async fn edit(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Change { v, form }: Change<EditForm>,
) -> Page {
    match crate::articles::edit_article(
        st.store.as_ref(),
        id,
        &form.title,
        &form.summary,
        &form.image,
    )
    .await
    {
        Ok(_) => {
            tracing::info!(user = %v.session.name, article = id, "article corrected in the console");
            see_other(&st, &format!("/articles/{id}?done=edited"))
        }
        Err(ArticleError::Invalid(field, why)) => {
            let errors = FieldErrors::one(field, why);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            article_page(&st, &v, id, status, Some((form, errors)), None).await
        }
        Err(ArticleError::Store(crate::store::StoreError::Conflict(why))) => {
            article_page(&st, &v, id, StatusCode::CONFLICT, None, Some(why)).await
        }
        Err(ArticleError::Store(crate::store::StoreError::NotFound(_))) => Err(unknown(id)),
        Err(e) => Err(ConsoleError::internal(e)),
    }
}

/// Hold the article back until a time (the newsroom's), or release it (no time).
pub(super) async fn hold(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Change { v, form }: Change<HoldForm>,
) -> Page {
    let mut errors = Vec::new();
    let until = v
        .chrome(&st, "articles")
        .read_time_field("until", &form.until, &mut errors);
    if !errors.is_empty() {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        let edit = st.store.article(id).await?.map(EditForm::from);
        let errors = FieldErrors::from(errors);
        return article_page(&st, &v, id, status, edit.map(|e| (e, errors)), None).await;
    }
    release(
        &st,
        &v,
        id,
        until,
        None,
        if until.is_some() { "held" } else { "released" },
    )
    .await
}

pub(super) async fn withdraw(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Change { v, .. }: Change,
) -> Page {
    let now = st.clock.now();
    release(&st, &v, id, None, Some(now), "withdrawn").await
}

pub(super) async fn restore(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Change { v, .. }: Change,
) -> Page {
    release(&st, &v, id, None, None, "restored").await
}

async fn release(
    st: &AppState,
    v: &Viewer,
    id: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
    withdrawn: Option<chrono::DateTime<chrono::Utc>>,
    done: &str,
) -> Page {
    if !st.store.set_article_release(id, until, withdrawn).await? {
        return Err(unknown(id));
    }
    tracing::info!(user = %v.session.name, article = id, done, "article release changed in the console");
    see_other(st, &format!("/articles/{id}?done={done}"))
}

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
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| r.a.id))
        .flatten();
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

//! `/admin/sections`: what readers can subscribe to, with each feed's state; staff add.

use super::{Change, Chrome, ConsoleError, FieldErrors, Page, Viewer, html, see_other};
use crate::articles::SectionError;
use crate::web::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;

pub(crate) struct Row {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub feed_url: Option<String>,
    pub feed_state: String,
    pub feed_failing: bool,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct AddForm {
    slug: String,
    name: String,
    description: String,
    feed: String,
}

#[derive(Template)]
#[template(path = "console/sections.html")]
struct SectionsPage {
    chrome: Chrome,
    sections: Vec<Row>,
    form: AddForm,
    errors: FieldErrors,
}

/// The sections as the console lists them, each with its feed's state in words.
fn rows_of(
    sections: Vec<crate::store::Section>,
    feeds: &[crate::store::SectionFeed],
    zone: chrono_tz::Tz,
) -> Vec<Row> {
    sections
        .into_iter()
        .map(|s| {
            let f = feeds.iter().find(|f| f.id == s.id);
            let (feed_state, feed_failing) = match f {
                Some(f) if f.feed_url.is_some() => match (&f.feed_error, f.feed_checked_at) {
                    (Some(e), _) => (format!("failing: {e}"), true),
                    (None, Some(t)) => (
                        format!(
                            "ok, read {}{}",
                            t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z"),
                            f.feed_report
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                        false,
                    ),
                    (None, None) => ("not read yet".into(), false),
                },
                _ => ("no feed".into(), false),
            };
            Row {
                feed_url: s.feed_url.clone(),
                slug: s.slug,
                name: s.name,
                description: s.description,
                feed_state,
                feed_failing,
            }
        })
        .collect()
}

async fn render(
    st: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: AddForm,
    errors: FieldErrors,
) -> Page {
    let sections = st.store.list_sections().await?;
    let feeds = st.store.section_feeds().await?;
    html(
        status,
        SectionsPage {
            chrome: v.chrome(st, "sections"),
            sections: rows_of(sections, &feeds, st.config.site.timezone),
            form,
            errors,
        },
    )
}

pub(super) async fn page(State(st): State<AppState>, v: Viewer) -> Page {
    render(
        &st,
        &v,
        StatusCode::OK,
        AddForm::default(),
        FieldErrors::default(),
    )
    .await
}

pub(super) async fn add(
    State(st): State<AppState>,
    Change { v, form: f }: Change<AddForm>,
) -> Page {
    let feed = Some(f.feed.trim()).filter(|u| !u.is_empty());
    match crate::articles::add_section(
        st.store.as_ref(),
        f.slug.trim(),
        &f.name,
        &f.description,
        feed,
        st.clock.now(),
    )
    .await
    {
        Ok(s) => {
            tracing::info!(user = %v.session.name, section = %s.slug, "section added in the console");
            see_other(&st, "/sections")
        }
        Err(e) => match field_of(&e) {
            Some(field) => {
                let errors = FieldErrors::one(field, e.to_string());
                render(&st, &v, StatusCode::UNPROCESSABLE_ENTITY, f, errors).await
            }
            None => Err(ConsoleError::internal(e)),
        },
    }
}

/// Which field a refusal is about.
fn field_of(e: &SectionError) -> Option<&'static str> {
    Some(match e {
        SectionError::Slug(_) => "slug",
        SectionError::BadName => "name",
        SectionError::BadDescription => "description",
        SectionError::BadFeedUrl(_) => "feed",
        SectionError::Store(crate::store::StoreError::Conflict(_)) => "slug",
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "console/section.html")]
struct EditPage {
    chrome: Chrome,
    s: Row,
    form: AddForm,
    errors: FieldErrors,
}

async fn edit_page(
    st: &AppState,
    v: &Viewer,
    slug: &str,
    status: StatusCode,
    form: Option<AddForm>,
    errors: FieldErrors,
) -> Page {
    let sections = st.store.list_sections().await?;
    let Some(section) = sections.iter().find(|s| s.slug == slug) else {
        return Err(ConsoleError::NotFound(format!(
            "There is no section {slug:?}."
        )));
    };
    let feeds = st.store.section_feeds().await?;
    let row = rows_of(vec![section.clone()], &feeds, st.config.site.timezone)
        .pop()
        .expect("one section");
    let form = form.unwrap_or_else(|| AddForm {
        slug: row.slug.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        feed: row.feed_url.clone().unwrap_or_default(),
    });
    html(
        status,
        EditPage {
            chrome: v.chrome(st, "sections"),
            s: row,
            form,
            errors,
        },
    )
}

pub(super) async fn show(State(st): State<AppState>, v: Viewer, Path(slug): Path<String>) -> Page {
    edit_page(&st, &v, &slug, StatusCode::OK, None, FieldErrors::default()).await
}

pub(super) async fn edit(
    State(st): State<AppState>,
    Path(slug): Path<String>,
    Change { v, form: f }: Change<AddForm>,
) -> Page {
    let feed = Some(f.feed.trim()).filter(|u| !u.is_empty());
    match crate::articles::edit_section(st.store.as_ref(), &slug, &f.name, &f.description, feed)
        .await
    {
        Ok(s) => {
            tracing::info!(user = %v.session.name, section = %s.slug, "section changed in the console");
            see_other(&st, &format!("/sections/{}", s.slug))
        }
        Err(SectionError::Unknown(_)) => Err(ConsoleError::NotFound(format!(
            "There is no section {slug:?}."
        ))),
        Err(e) => match field_of(&e) {
            Some(field) => {
                let errors = FieldErrors::one(field, e.to_string());
                edit_page(
                    &st,
                    &v,
                    &slug,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(f),
                    errors,
                )
                .await
            }
            None => Err(ConsoleError::internal(e)),
        },
    }
}

//! `/admin/sections`: what readers can subscribe to, with each feed's state; staff add.

use super::{Chrome, ConsoleError, Page, Viewer, answer, root};
use crate::store::ApiRole;
use crate::web::AppState;
use askama::Template;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

pub(crate) struct Row {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub feed_url: Option<String>,
    pub feed_state: String,
    pub feed_failing: bool,
}

#[derive(Default, serde::Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    feed: String,
}

#[derive(Template)]
#[template(path = "console/sections.html")]
struct SectionsPage {
    chrome: Chrome,
    sections: Vec<Row>,
    staff: bool,
    csrf: String,
    form: AddForm,
    error: Option<String>,
}

async fn render(
    st: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: AddForm,
    error: Option<String>,
) -> Page {
    let sections = st.store.list_sections().await?;
    let feeds = st.store.section_feeds().await?;
    let rows = sections
        .into_iter()
        .map(|s| {
            let f = feeds.iter().find(|f| f.id == s.id);
            let (feed_state, feed_failing) = match f {
                Some(f) if f.feed_url.is_some() => match (&f.feed_error, f.feed_checked_at) {
                    (Some(e), _) => (format!("failing: {e}"), true),
                    (None, Some(t)) => (
                        format!(
                            "ok, read {}{}",
                            t.format("%Y-%m-%d %H:%M UTC"),
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
        .collect();
    let body = SectionsPage {
        chrome: v.chrome(st, "sections"),
        sections: rows,
        staff: v.session.role == ApiRole::Staff,
        csrf: v.session.csrf.clone(),
        form,
        error,
    }
    .render()
    .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok((status, Html(body)).into_response())
}

pub(super) async fn page(State(st): State<AppState>, v: Viewer) -> Response {
    let page = render(&st, &v, StatusCode::OK, AddForm::default(), None).await;
    answer(&st, page)
}

pub(super) async fn add(State(st): State<AppState>, v: Viewer, Form(f): Form<AddForm>) -> Response {
    let page = async {
        v.may_change(&f.csrf)?;
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
                Ok((
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, format!("{}/sections", root(&st)))],
                )
                    .into_response())
            }
            Err(crate::articles::SectionError::Store(e))
                if !matches!(e, crate::store::StoreError::Conflict(_)) =>
            {
                Err(e.into())
            }
            Err(e) => {
                let message = e.to_string();
                render(&st, &v, StatusCode::UNPROCESSABLE_ENTITY, f, Some(message)).await
            }
        }
    };
    answer(&st, page.await)
}

//! The public archive of digests: `/archive/{schedule}` lists a schedule's issues and
//! `/archive/{schedule}/{issue}` shows one, rendered from the digest's own template with
//! every section and without anyone's unsubscribe or preferences links. Off with
//! `digests.archive = false` (then both answer "not found", like any unknown page).

use super::AppState;
use super::pages::{ArchiveEntry, ArchivePage};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

/// Archive pages change only when an issue is made: let browsers and proxies keep them a
/// while (every other page is `no-store`).
const CACHE: &str = "public, max-age=300";

fn cached(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    res
}

pub async fn index(State(st): State<AppState>, Path(schedule): Path<String>) -> Response {
    if !st.config.digests.archive {
        return super::public::not_found(State(st)).await;
    }
    let issues = match st.digests.archive_index(&schedule).await {
        Ok(i) => i,
        Err(e) => return super::public::internal_error(&st, e),
    };
    let known = match st.store.schedule_by_name(&schedule).await {
        Ok(s) => s,
        Err(e) => return super::public::internal_error(&st, e),
    };
    if issues.is_empty() && known.is_none() {
        return super::public::not_found(State(st)).await;
    }
    let root = st.config.http.public_url.trim_end_matches('/').to_string();
    let page = ArchivePage {
        site_name: st.config.site.name.clone(),
        lang: st.config.site.language.clone(),
        site_url: st.config.site.url.clone(),
        subscribe_url: st.public_url("/subscribe"),
        heading: format!("{}: past issues", st.config.site.name),
        issues: issues
            .into_iter()
            .map(|i| ArchiveEntry {
                url: format!("{root}/archive/{}/{}", i.schedule_name, i.id),
                // In the schedule's zone, as its subjects say it.
                date: match &known {
                    Some(s) => crate::digests::date_label(s, i.scheduled_for),
                    None => i.scheduled_for.format("%-d %B %Y").to_string(),
                },
                subject: i.subject,
            })
            .collect(),
    };
    cached(page.into_response())
}

pub async fn issue(
    State(st): State<AppState>,
    Path((schedule, issue)): Path<(String, String)>,
) -> Response {
    // Digits only, no sign or leading zero: one address per issue.
    let id = issue
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && id.to_string() == issue);
    let Some(id) = id.filter(|_| st.config.digests.archive) else {
        return super::public::not_found(State(st)).await;
    };
    match st.digests.archive_issue(&schedule, id).await {
        Ok(Some(html)) => cached(Html(html).into_response()),
        Ok(None) => super::public::not_found(State(st)).await,
        Err(e) => super::public::internal_error(&st, e),
    }
}

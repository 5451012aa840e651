//! The public archive of digests: `/archive/{schedule}` lists a schedule's issues and
//! `/archive/{schedule}/{issue}` shows one, rendered from the digest's own template with
//! every section and without anyone's unsubscribe or preferences links, with its heading,
//! time, links to the issues before and after it, to the index and to the signup page;
//! `/archive/{schedule}/feed.xml` is the schedule's last issues as an Atom feed. Off with
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
    let (issues, known, index_url) = match listed(&st, &schedule, 500).await {
        Ok(Some(found)) => found,
        Ok(None) => return super::public::not_found(State(st)).await,
        Err(res) => return res,
    };
    let page = ArchivePage {
        site_name: st.config.site.name.clone(),
        lang: st.config.site.language.to_string(),
        site_url: st.config.site.url.clone(),
        subscribe_url: st.public_url("/subscribe"),
        heading: format!("{}: {schedule} — past issues", st.config.site.name),
        feed_url: format!("{index_url}/feed.xml"),
        issues: issues
            .into_iter()
            .map(|i| ArchiveEntry {
                url: format!("{index_url}/{}", i.id),
                // In the schedule's zone, as its subjects say it; with the time, so issues
                // of one day are told apart.
                when: crate::digests::time_label(known.as_ref(), i.scheduled_for),
                when_iso: i.scheduled_for.to_rfc3339(),
                subject: subject_line(&st.config.site.name, &i.subject),
            })
            .collect(),
    };
    cached(page.into_response())
}

/// A schedule's last `limit` issues, the schedule (gone if it was removed, its issues kept)
/// and its archive's address; None when there is neither (a 404).
async fn listed(
    st: &AppState,
    schedule: &str,
    limit: i64,
) -> Result<
    Option<(
        Vec<crate::store::Issue>,
        Option<crate::store::Schedule>,
        String,
    )>,
    Response,
> {
    let issues = st
        .store
        .schedule_issues(schedule, limit)
        .await
        .map_err(|e| super::public::internal_error(st, e))?;
    let known = st
        .store
        .schedule_by_name(schedule)
        .await
        .map_err(|e| super::public::internal_error(st, e))?;
    if issues.is_empty() && known.is_none() {
        return Ok(None);
    }
    let root = st.config.http.public_url.trim_end_matches('/');
    Ok(Some((issues, known, format!("{root}/archive/{schedule}"))))
}

/// An issue's subject for a line that already shows its date: "Herald News: Cafe, Quotes —
/// 2 March 2026" is listed as "Cafe, Quotes".
fn subject_line(site: &str, subject: &str) -> String {
    let s = subject
        .strip_prefix(site)
        .and_then(|s| s.strip_prefix(": "))
        .unwrap_or(subject);
    let s = match s.rsplit_once(" — ") {
        Some((head, date))
            if date.split(' ').count() == 3 && date.ends_with(|c: char| c.is_ascii_digit()) =>
        {
            head
        }
        _ => s,
    };
    if s.trim().is_empty() {
        subject.to_string()
    } else {
        s.to_string()
    }
}

/// The schedule's last issues as an Atom feed (RFC 4287), for readers who follow the
/// archive in a feed reader instead of by mail.
async fn feed(st: AppState, schedule: String) -> Response {
    let (issues, _, index_url) = match listed(&st, &schedule, 20).await {
        Ok(Some(found)) => found,
        Ok(None) => return super::public::not_found(State(st)).await,
        Err(res) => return res,
    };
    let x = crate::articles::escape_html;
    let updated_of = |i: &crate::store::Issue| i.finished_at.unwrap_or(i.created_at);
    let updated = issues
        .iter()
        .map(updated_of)
        .max()
        .unwrap_or_else(|| st.clock.now());
    let title = format!("{}: {schedule}", st.config.site.name);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{}\">\n\
         <id>{}</id>\n<title>{}</title>\n<updated>{}</updated>\n<author><name>{}</name></author>\n\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"{}/feed.xml\"/>\n<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n",
        x(&st.config.site.language),
        x(&index_url),
        x(&title),
        updated.to_rfc3339(),
        x(&st.config.site.name),
        x(&index_url),
        x(&index_url),
    );
    for i in &issues {
        let url = format!("{index_url}/{}", i.id);
        let titles = match st.store.issue_articles(i.id).await {
            Ok(a) => a
                .into_iter()
                .map(|a| a.title)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(" · "),
            Err(e) => return super::public::internal_error(&st, e),
        };
        out.push_str(&format!(
            "<entry>\n<id>{}</id>\n<title>{}</title>\n<published>{}</published>\n<updated>{}</updated>\n\
             <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n<summary type=\"text\">{}</summary>\n</entry>\n",
            x(&url),
            x(&i.subject),
            i.scheduled_for.to_rfc3339(),
            updated_of(i).to_rfc3339(),
            x(&url),
            x(&titles),
        ));
    }
    out.push_str("</feed>\n");
    let mut res = (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        out,
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    res
}

pub async fn issue(
    State(st): State<AppState>,
    Path((schedule, issue)): Path<(String, String)>,
) -> Response {
    if issue == "feed.xml" && st.config.digests.archive {
        return feed(st, schedule).await;
    }
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

//! `/admin/issues`: each digest run with where its delivery stands — counts by status and a
//! bar drawn on the server, when it was made and when its last send settled — and, for
//! staff, "retry failed" and "stop this issue". While an issue is on its way, `console.js`
//! asks for its progress again (`/issues/{id}/progress`; the list, the list itself) and
//! replaces it in place, with a pause control; without script the page reloads itself (a
//! meta refresh inside `<noscript>`, `?still=1` to stop).

use super::{Change, Query};
use super::{Chrome, ConsoleError, Page, Viewer, html, see_other};
use crate::digests::IssueWithCounts;
use crate::store::{IssueArticle, SendStatus};
use crate::web::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;

const PAGE: i64 = 25;
/// Seconds between reloads of a page whose issue is still being delivered.
pub(crate) const REFRESH_SECS: u32 = 5;

/// One stretch of the progress bar, in thousandths of its width (SVG attributes, not
/// inline style: the console's CSP allows none).
pub(crate) struct Segment {
    pub status: &'static str,
    pub x: i64,
    pub w: i64,
    pub n: i64,
}

/// An issue as the console shows it.
pub(crate) struct View {
    pub i: IssueWithCounts,
    /// Every status in a fixed order, with its count (zeros included).
    pub counts: Vec<(&'static str, i64)>,
    pub bar: Vec<Segment>,
    /// Of its readers, how many are settled (sent, bounced, suppressed, failed, cancelled).
    pub done: i64,
    pub total: i64,
    pub percent: i64,
    pub failed: i64,
    pub sent: i64,
    pub cancelled: i64,
    pub live: bool,
}

/// The order of the bar: settled first, then what is still moving.
const ORDER: [SendStatus; 8] = [
    SendStatus::Sent,
    SendStatus::Bounced,
    SendStatus::Suppressed,
    SendStatus::Failed,
    SendStatus::Cancelled,
    SendStatus::Retrying,
    SendStatus::Sending,
    SendStatus::Queued,
];

pub(crate) fn view(i: IssueWithCounts) -> View {
    let of = |s: SendStatus| i.counts.get(s.as_str()).copied().unwrap_or(0);
    let counts: Vec<(&'static str, i64)> = ORDER.iter().map(|s| (s.as_str(), of(*s))).collect();
    let rows: i64 = counts.iter().map(|(_, n)| n).sum();
    // While rows are still being written, the readers not yet written count as queued.
    let total = rows.max(i64::from(i.issue.send_count));
    let mut bar = Vec::new();
    let mut x = 0;
    for &(status, n) in &counts {
        if n == 0 || total == 0 {
            continue;
        }
        let w = (n * 1000 / total).max(2);
        bar.push(Segment { status, x, w, n });
        x += w;
    }
    let done: i64 = [
        SendStatus::Sent,
        SendStatus::Bounced,
        SendStatus::Suppressed,
        SendStatus::Failed,
        SendStatus::Cancelled,
    ]
    .iter()
    .map(|s| of(*s))
    .sum();
    let failed = of(SendStatus::Failed);
    let sent = of(SendStatus::Sent);
    let cancelled = of(SendStatus::Cancelled);
    let live = matches!(i.state, "queueing" | "delivering");
    View {
        percent: if total > 0 { done * 100 / total } else { 100 },
        i,
        counts,
        bar,
        done,
        total,
        failed,
        sent,
        cancelled,
        live,
    }
}

#[derive(Template)]
#[template(path = "console/issues.html")]
struct ListPage {
    chrome: Chrome,
    issues: Vec<View>,
    older: Option<i64>,
    newest: bool,
    refresh: Option<u32>,
    /// An issue on the first page is on its way: the table is kept up to date.
    live: bool,
}

/// `?before=ID`: the page of issues older than that one; `?still=1`: no reloading (for a
/// browser without script).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Older {
    #[serde(deserialize_with = "super::number")]
    before: Option<i64>,
    #[serde(deserialize_with = "super::flag")]
    still: bool,
}

/// `?retried=N`: how many failed sends a retry queued again; `?still=1`: do not reload the
/// page (for a browser without script; with it, the page never reloads).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct IssueQuery {
    #[serde(deserialize_with = "super::number")]
    retried: Option<i64>,
    #[serde(deserialize_with = "super::flag")]
    still: bool,
}

/// The stop form: the issue's number typed again.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct StopForm {
    confirm_id: String,
}

pub(super) async fn list(
    State(st): State<AppState>,
    v: Viewer,
    Query(Older { before, still }): Query<Older>,
) -> Page {
    let issues: Vec<View> = crate::digests::issues_with_counts(st.store.as_ref(), before, PAGE)
        .await?
        .into_iter()
        .map(view)
        .collect();
    let older = super::next_page(&issues, PAGE, |v| v.i.issue.id);
    let live = before.is_none() && issues.iter().any(|i| i.live);
    let refresh = (live && !still).then_some(REFRESH_SECS);
    html(
        StatusCode::OK,
        ListPage {
            chrome: v.chrome(&st, "issues"),
            issues,
            older,
            newest: before.is_none(),
            refresh,
            live,
        },
    )
}

#[derive(Template)]
#[template(path = "console/issue.html")]
struct IssuePage {
    chrome: Chrome,
    v: View,
    articles: Vec<IssueArticle>,
    notice: Option<String>,
    refresh: Option<u32>,
    /// Why the stop form was refused, shown beside it.
    stop_error: Option<&'static str>,
}

pub(super) async fn show(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<i64>,
    Query(IssueQuery { retried, still }): Query<IssueQuery>,
) -> Page {
    let notice = retried.map(|n| match n {
        0 => "Nothing was queued again: no send of this issue has failed, or it was stopped."
            .to_string(),
        1 => "1 failed send is queued again.".to_string(),
        n => format!("{n} failed sends are queued again."),
    });
    let shown = if still { Shown::Still } else { Shown::Live };
    page(&st, &v, id, StatusCode::OK, notice, shown).await
}

/// How the issue's page is shown: reloading itself (without script) while the issue is
/// on its way, not reloading (asked, or under a refused form), or with the stop form's error.
enum Shown {
    Live,
    Still,
    StopRefused(&'static str),
}

#[derive(Template)]
#[template(path = "console/issue_progress.html")]
struct ProgressFragment {
    chrome: Chrome,
    v: View,
}

/// Where the issue's delivery stands, as the part of its page `console.js` replaces.
pub(super) async fn progress(State(st): State<AppState>, v: Viewer, Path(id): Path<i64>) -> Page {
    let Some(i) = crate::digests::issue_with_counts(st.store.as_ref(), id).await? else {
        return Err(ConsoleError::NotFound(format!("There is no issue #{id}.")));
    };
    html(
        StatusCode::OK,
        ProgressFragment {
            chrome: v.chrome(&st, "issues"),
            v: view(i),
        },
    )
}

/// The issue's page, with a notice or the stop form's error.
async fn page(
    st: &AppState,
    v: &Viewer,
    id: i64,
    status: StatusCode,
    notice: Option<String>,
    shown: Shown,
) -> Page {
    let Some(i) = crate::digests::issue_with_counts(st.store.as_ref(), id).await? else {
        return Err(ConsoleError::NotFound(format!("There is no issue #{id}.")));
    };
    let articles = st.store.issue_articles(id).await?;
    let view = view(i);
    html(
        status,
        IssuePage {
            chrome: v.chrome(st, "issues"),
            // No reloading under a form the user is typing into.
            refresh: (view.live && matches!(shown, Shown::Live)).then_some(REFRESH_SECS),
            v: view,
            articles,
            notice,
            stop_error: match shown {
                Shown::StopRefused(why) => Some(why),
                _ => None,
            },
        },
    )
}

/// Stop the issue once its number is typed again: what has not gone out is cancelled at
/// once (see `IssueStore::stop_issue`).
pub(super) async fn stop(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Change { v, form }: Change<StopForm>,
) -> Page {
    if form.confirm_id.trim().trim_start_matches('#') != id.to_string() {
        let why = "Type the issue's number exactly to stop it.";
        return page(
            &st,
            &v,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Shown::StopRefused(why),
        )
        .await;
    }
    match st.digests.stop_issue(id, &v.session.name).await {
        Ok(r) => {
            tracing::info!(user = %v.session.name, issue = id, cancelled = r.cancelled, "issue stopped in the console");
            see_other(&st, &format!("/issues/{id}#stopped"))
        }
        Err(crate::digests::DigestError::UnknownIssue(_)) => {
            Err(ConsoleError::NotFound(format!("There is no issue #{id}.")))
        }
        Err(crate::digests::DigestError::NothingToStop(_)) => {
            let said = "Nothing to stop: every send of this issue had already settled.";
            page(
                &st,
                &v,
                id,
                StatusCode::CONFLICT,
                Some(said.into()),
                Shown::Still,
            )
            .await
        }
        Err(e) => Err(ConsoleError::internal(e)),
    }
}

/// Put the issue's failed sends back in the queue (only `failed`: see
/// `SendStatus::why_not_retried`) and wake the workers.
pub(super) async fn retry(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Change { v, .. }: Change,
) -> Page {
    if st.store.issue(id).await?.is_none() {
        return Err(ConsoleError::NotFound(format!("There is no issue #{id}.")));
    }
    let n = st.store.requeue_failed_sends(id, st.clock.now()).await?;
    if n > 0 {
        st.engine.wake();
    }
    tracing::info!(user = %v.session.name, issue = id, requeued = n, "failed sends retried from the console");
    see_other(&st, &format!("/issues/{id}?retried={n}"))
}

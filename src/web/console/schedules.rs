//! `/admin/schedules`: when digests go out. The list with each cron in words and its next
//! run; a form to make one whose times are checked before saving (the "Check the times"
//! button, a GET, works without script; `console.js` asks the same question as one types);
//! a schedule's page with its next runs, the next digest as a chosen reader would get it
//! (text here, the HTML part on a page of its own), editing, pause and resume, and "send
//! now" behind a confirmation.

use super::{Change, Query};
use super::{Chrome, ConsoleError, FieldErrors, Page, Viewer, html, see_other};
use crate::digests::DigestError;
use crate::domain::{CronSchedule, ScheduleError};
use crate::web::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;

/// How many runs the form and the schedule's page show.
const NEXT_RUNS: usize = 5;

/// The schedule form's fields, as typed (kept to show them again next to an error); also
/// the query of the preview (`to`) and of the live cron check.
#[derive(Default, Debug, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ScheduleForm {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub subject: String,
    /// The sections' checkboxes: one `sections=SLUG` each.
    pub sections: Vec<String>,
    #[serde(deserialize_with = "super::flag")]
    confirm: bool,
    /// Article pictures in the digests (a checkbox: absent is off).
    #[serde(deserialize_with = "super::flag")]
    pub images: bool,
    /// The schedule's name typed again, to remove it.
    confirm_name: String,
    to: String,
    /// "check": show the times, save nothing (the form's "Check the times" button).
    #[serde(rename = "do")]
    action: String,
    /// "Send now"'s one-time token: a second post of the same form makes no second issue.
    once: String,
}

impl ScheduleForm {
    fn zone(&self) -> &str {
        Some(self.timezone.trim())
            .filter(|z| !z.is_empty())
            .unwrap_or("UTC")
    }
}

pub(crate) struct Choice {
    pub slug: String,
    pub name: String,
    pub checked: bool,
}

/// The cron expression in words and its next runs, or why it is wrong.
pub(crate) type Check = Result<(String, Vec<String>), String>;

fn check(cron: &str, zone: &str, now: chrono::DateTime<chrono::Utc>) -> Check {
    let c = CronSchedule::parse(cron, zone).map_err(|e| e.to_string())?;
    let next: Vec<String> = c
        .upcoming(now, NEXT_RUNS)
        .iter()
        .map(|t| in_zone(t.with_timezone(&chrono::Utc), zone))
        .collect();
    if next.is_empty() {
        return Err("this cron expression never fires".into());
    }
    Ok((c.describe(), next))
}

/// The times to show under the form: none while the cron or the zone has its own error.
fn times_unless_refused(
    form: &ScheduleForm,
    errors: &FieldErrors,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Check> {
    let refused = errors.get("cron").is_some() || errors.get("timezone").is_some();
    (!refused && !form.cron.trim().is_empty()).then(|| check(&form.cron, form.zone(), now))
}

/// `at` in `zone`, with UTC beside it when that differs.
pub(crate) fn in_zone(at: chrono::DateTime<chrono::Utc>, zone: &str) -> String {
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) if tz != chrono_tz::UTC => format!(
            "{} ({} UTC)",
            at.with_timezone(&tz).format("%a %-d %b %Y %H:%M %Z"),
            at.format("%H:%M")
        ),
        _ => at.format("%a %-d %b %Y %H:%M UTC").to_string(),
    }
}

/// Which field a refusal is about.
fn field_error(e: &DigestError) -> Option<(&'static str, String)> {
    let field = match e {
        DigestError::Schedule(ScheduleError::Cron { .. }) => "cron",
        DigestError::Schedule(ScheduleError::TimeZone(_)) => "timezone",
        DigestError::UnknownSection(_) => "sections",
        DigestError::Field(f, _) => f,
        DigestError::Store(crate::store::StoreError::Conflict(_)) => "name",
        _ => return None,
    };
    Some((field, e.to_string()))
}

pub(crate) struct Row {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub words: String,
    pub sections: String,
    pub next: String,
    pub enabled: bool,
}

/// What the form partial needs, for a new schedule and for an edit.
pub(crate) struct FormView {
    pub form: ScheduleForm,
    pub errors: FieldErrors,
    pub check: Option<Check>,
    pub sections: Vec<Choice>,
    pub zones: &'static [chrono_tz::Tz],
    /// Editing: the name cannot change.
    pub editing: bool,
    pub action: String,
    pub submit: &'static str,
}

#[derive(Template)]
#[template(path = "console/schedules.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    notice: Option<Notice>,
    f: FormView,
}

/// What was just done, said on the list; after a pause, the schedule's issues still on
/// their way, each linked to its page (where it can be stopped).
struct Notice {
    text: String,
    on_way: Vec<i64>,
}

#[derive(Template)]
#[template(path = "console/cron_check.html")]
struct CheckFragment {
    f: CheckOnly,
}

struct CheckOnly {
    check: Option<Check>,
}

async fn choices(st: &AppState, checked: &[String]) -> Result<Vec<Choice>, ConsoleError> {
    let all = st.store.list_sections().await?;
    let lone = all.len() == 1;
    Ok(all
        .into_iter()
        .map(|s| Choice {
            checked: lone || checked.contains(&s.slug),
            slug: s.slug,
            name: s.name,
        })
        .collect())
}

async fn list(
    st: &AppState,
    v: &Viewer,
    status: StatusCode,
    form: ScheduleForm,
    errors: FieldErrors,
    notice: Option<Notice>,
) -> Page {
    let views = st
        .digests
        .list_schedules()
        .await
        .map_err(ConsoleError::internal)?;
    let rows = views
        .into_iter()
        .map(|v| Row {
            next: if v.schedule.enabled {
                in_zone(v.schedule.next_run_at, &v.schedule.timezone)
            } else {
                "paused".into()
            },
            words: v.description,
            sections: v.sections.join(", "),
            name: v.schedule.name,
            cron: v.schedule.cron,
            timezone: v.schedule.timezone,
            enabled: v.schedule.enabled,
        })
        .collect();
    let check = times_unless_refused(&form, &errors, st.clock.now());
    let sections = choices(st, &form.sections).await?;
    html(
        status,
        ListPage {
            chrome: v.chrome(st, "schedules"),
            rows,
            notice,
            f: FormView {
                form,
                errors,
                check,
                sections,
                zones: &chrono_tz::TZ_VARIANTS,
                editing: false,
                action: format!("{}/schedules", super::root(st)),
                submit: "Save the schedule",
            },
        },
    )
}

/// The list, and the new-schedule form.
/// `?paused=NAME` / `?resumed=NAME`: what was just done, said on the list.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Done {
    paused: String,
    resumed: String,
}

pub(super) async fn page(State(st): State<AppState>, v: Viewer, Query(done): Query<Done>) -> Page {
    let form = ScheduleForm {
        cron: "0 7 * * 1-5".into(),
        images: true,
        ..Default::default()
    };
    let notice = match (done.paused.as_str(), done.resumed.as_str()) {
        ("", "") => None,
        (name, "") => {
            let on_way = crate::digests::issues_of_schedule(st.store.as_ref(), name, 5)
                .await?
                .into_iter()
                .filter(|i| matches!(i.state, "queueing" | "delivering"))
                .map(|i| i.issue.id)
                .collect();
            Some(Notice {
                text: format!(
                    "Paused {name}: it makes no new issue until you resume it. An issue \
                     already on its way is not stopped by this: its mail keeps going out."
                ),
                on_way,
            })
        }
        (_, name) => Some(Notice {
            text: format!("Resumed {name}: its next issue is at its next time."),
            on_way: Vec::new(),
        }),
    };
    list(
        &st,
        &v,
        StatusCode::OK,
        form,
        FieldErrors::default(),
        notice,
    )
    .await
}

/// The times of a cron expression, as the form's fragment (for `console.js`).
pub(super) async fn check_fragment(
    State(st): State<AppState>,
    // Only for someone logged in.
    _v: Viewer,
    Query(form): Query<ScheduleForm>,
) -> Page {
    let check =
        (!form.cron.trim().is_empty()).then(|| check(&form.cron, form.zone(), st.clock.now()));
    html(
        StatusCode::OK,
        CheckFragment {
            f: CheckOnly { check },
        },
    )
}

pub(super) async fn add(
    State(st): State<AppState>,
    Change { v, form }: Change<ScheduleForm>,
) -> Page {
    let v = &v;
    if form.action == "check" {
        return list(&st, v, StatusCode::OK, form, FieldErrors::default(), None).await;
    }
    let subject = Some(form.subject.as_str());
    match st
        .digests
        .add_schedule(
            &form.name,
            &form.cron,
            &form.sections,
            Some(form.zone()),
            subject,
            Some(form.images),
        )
        .await
    {
        Ok(s) => {
            tracing::info!(user = %v.session.name, schedule = %s.name, "schedule added in the console");
            see_other(&st, &format!("/schedules/{}", s.name))
        }
        Err(e) => match field_error(&e) {
            Some((field, message)) => {
                list(
                    &st,
                    v,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    form,
                    FieldErrors::one(field, message),
                    None,
                )
                .await
            }
            None => Err(ConsoleError::internal(e)),
        },
    }
}

#[derive(Template)]
#[template(path = "console/schedule.html")]
struct SchedulePage {
    chrome: Chrome,
    name: String,
    words: String,
    cron: String,
    timezone: String,
    sections: String,
    enabled: bool,
    images: bool,
    next: Vec<String>,
    to: String,
    preview: Result<crate::digests::RenderedDigest, String>,
    issues: Vec<crate::digests::IssueWithCounts>,
    f: FormView,
    /// "Send now" was posted without its confirmation.
    send_error: Option<&'static str>,
    /// "Remove" was posted without the name typed again.
    remove_error: Option<&'static str>,
    /// The one-time token of this page's "Send now" form.
    once: String,
    /// Active readers of its sections: whom "Send now" would mail.
    readers: i64,
}

/// Which form on a schedule's page was refused, and why.
enum Refused {
    Send(&'static str),
    Remove(&'static str),
}

fn unknown(name: &str) -> ConsoleError {
    ConsoleError::NotFound(format!("There is no schedule {name:?}."))
}

/// What an unexpected failure about schedule `name` shows: "no such schedule", or the
/// error page (and the log) for anything else.
fn failed(name: &str, e: DigestError) -> ConsoleError {
    match e {
        DigestError::UnknownSchedule(_) => unknown(name),
        e => ConsoleError::internal(e),
    }
}

async fn schedule_page(
    st: &AppState,
    v: &Viewer,
    name: &str,
    status: StatusCode,
    edit: Option<(ScheduleForm, FieldErrors)>,
    to: String,
    refused: Option<Refused>,
) -> Page {
    let Some(s) = st.store.schedule_by_name(name).await? else {
        return Err(unknown(name));
    };
    let section_list = st.store.schedule_sections(s.id).await?;
    let slugs: Vec<String> = section_list.iter().map(|x| x.slug.clone()).collect();
    let cron = CronSchedule::parse(&s.cron, &s.timezone);
    let now = st.clock.now();
    let (words, next) = match &cron {
        Ok(c) => (
            c.describe(),
            c.upcoming(now, NEXT_RUNS)
                .iter()
                .map(|t| in_zone(t.with_timezone(&chrono::Utc), &s.timezone))
                .collect(),
        ),
        Err(e) => (e.to_string(), vec![]),
    };
    let to_arg = Some(to.trim()).filter(|t| !t.is_empty());
    let preview = match st.digests.preview(&s.name, to_arg).await {
        Ok(p) => Ok(p),
        Err(
            e @ (DigestError::NothingToPreview(_)
            | DigestError::Invalid(_)
            | DigestError::Field(..)),
        ) => Err(e.to_string()),
        Err(e) => return Err(ConsoleError::internal(e)),
    };
    let issues = crate::digests::issues_of_schedule(st.store.as_ref(), &s.name, 10).await?;
    // Only staff see "Send now", where the number is said.
    let readers = if v.session.role.may_change() {
        let ids: Vec<i64> = section_list.iter().map(|x| x.id).collect();
        st.store.readers_of(&ids).await?
    } else {
        0
    };
    let (form, errors) = edit.unwrap_or_else(|| {
        (
            ScheduleForm {
                name: s.name.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                subject: s.subject.clone().unwrap_or_default(),
                sections: slugs.clone(),
                images: s.images,
                ..Default::default()
            },
            FieldErrors::default(),
        )
    });
    let check = times_unless_refused(&form, &errors, now);
    let sections = choices(st, &form.sections).await?;
    html(
        status,
        SchedulePage {
            chrome: v.chrome(st, "schedules"),
            once: crate::domain::RandomToken::generate().as_str().to_string(),
            name: s.name.clone(),
            words,
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            sections: section_list
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            enabled: s.enabled,
            images: s.images,
            next,
            to,
            preview,
            issues,
            readers,
            f: FormView {
                form,
                errors,
                check,
                sections,
                zones: &chrono_tz::TZ_VARIANTS,
                editing: true,
                action: format!("{}/schedules/{}", super::root(st), s.name),
                submit: "Save the changes",
            },
            send_error: match refused {
                Some(Refused::Send(m)) => Some(m),
                _ => None,
            },
            remove_error: match refused {
                Some(Refused::Remove(m)) => Some(m),
                _ => None,
            },
        },
    )
}

pub(super) async fn show(
    State(st): State<AppState>,
    v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<ScheduleForm>,
) -> Page {
    schedule_page(&st, &v, &name, StatusCode::OK, None, q.to, None).await
}

impl ScheduleForm {
    fn clone_fields(&self) -> Self {
        Self {
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            subject: self.subject.clone(),
            sections: self.sections.clone(),
            images: self.images,
            ..Default::default()
        }
    }
}

pub(super) async fn edit(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Change { v, form }: Change<ScheduleForm>,
) -> Page {
    let v = &v;
    if form.action == "check" {
        let edit = Some((form.clone_fields(), FieldErrors::default()));
        return schedule_page(&st, v, &name, StatusCode::OK, edit, String::new(), None).await;
    }
    match st
        .digests
        .edit_schedule(
            &name,
            &form.cron,
            &form.sections,
            Some(form.zone()),
            Some(form.subject.as_str()),
            Some(form.images),
        )
        .await
    {
        Ok(s) => {
            tracing::info!(user = %v.session.name, schedule = %s.name, cron = %s.cron, timezone = %s.timezone, "schedule changed in the console");
            see_other(&st, &format!("/schedules/{}", s.name))
        }
        Err(DigestError::UnknownSchedule(_)) => Err(unknown(&name)),
        Err(e) => match field_error(&e) {
            Some((field, message)) => {
                schedule_page(
                    &st,
                    v,
                    &name,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some((form.clone_fields(), FieldErrors::one(field, message))),
                    String::new(),
                    None,
                )
                .await
            }
            None => Err(ConsoleError::internal(e)),
        },
    }
}

/// The HTML part of the next digest, alone on its page as a mail client would show it.
/// Its own CSP: the mail's inline styles and remote pictures, no script, no forms, in a
/// sandbox (a digest is built from feed content).
pub(super) async fn preview_html(
    State(st): State<AppState>,
    // Only for someone logged in.
    _v: Viewer,
    Path(name): Path<String>,
    Query(q): Query<ScheduleForm>,
) -> Page {
    let to = Some(q.to.trim()).filter(|t| !t.is_empty());
    match st.digests.preview(&name, to).await {
        Ok(p) => {
            let mut res = axum::response::Html(p.html).into_response();
            res.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; \
                     frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox",
                ),
            );
            Ok(res)
        }
        Err(DigestError::UnknownSchedule(_)) => Err(unknown(&name)),
        Err(
            e @ (DigestError::NothingToPreview(_)
            | DigestError::Invalid(_)
            | DigestError::Field(..)),
        ) => Err(ConsoleError::NotFound(e.to_string())),
        Err(e) => Err(ConsoleError::internal(e)),
    }
}

/// Pause or resume (`on`).
async fn set_enabled(st: AppState, change: Change, name: String, on: bool) -> Page {
    let v = &change.v;
    let r = if on {
        st.digests.resume(&name).await
    } else {
        st.digests.pause(&name).await
    };
    match r {
        Ok(()) => {
            tracing::info!(user = %v.session.name, schedule = %name, resumed = on, "schedule paused or resumed in the console");
            let done = if on { "resumed" } else { "paused" };
            see_other(
                &st,
                &format!("/schedules?{}", super::query_string(&[(done, &name)])),
            )
        }
        Err(e) => Err(failed(&name, e)),
    }
}

pub(super) async fn pause(
    State(st): State<AppState>,
    Path(name): Path<String>,
    change: Change,
) -> Page {
    set_enabled(st, change, name, false).await
}

pub(super) async fn resume(
    State(st): State<AppState>,
    Path(name): Path<String>,
    change: Change,
) -> Page {
    set_enabled(st, change, name, true).await
}

/// The schedule's page again, saying why the button did nothing.
async fn refused(st: &AppState, v: &Viewer, name: &str, why: Refused) -> Page {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    schedule_page(st, v, name, status, None, String::new(), Some(why)).await
}

/// "Send now": an issue outside the cron times, once the box saying so is ticked. Its
/// readers' rows are written here in the background (the scheduler job would also pick
/// them up on its next tick), waking the delivery workers after each chunk.
pub(super) async fn send_now(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Change { v, form }: Change<ScheduleForm>,
) -> Page {
    let v = &v;
    if !form.confirm {
        return refused(
            &st,
            v,
            &name,
            Refused::Send("Tick the box to say you mean it: this sends mail to every reader."),
        )
        .await;
    }
    // A double click, or a reload that posts again: the issue the first one made, not a
    // second (which would find nothing new and be "skipped").
    if !form.once.is_empty()
        && !st
            .store
            .first_use("send-now", &form.once, st.clock.now())
            .await?
    {
        let made = crate::digests::issues_of_schedule(st.store.as_ref(), &name, 1).await?;
        return match made.first() {
            Some(i) => see_other(&st, &format!("/issues/{}", i.issue.id)),
            None => see_other(&st, &format!("/schedules/{name}")),
        };
    }
    let issue = match st.digests.run_now(&name).await {
        Ok(i) => i,
        Err(e) => return Err(failed(&name, e)),
    };
    tracing::info!(user = %v.session.name, schedule = %name, issue = issue.id, articles = issue.article_count, "issue sent now from the console");
    if issue.filling {
        let (digests, engine, stop) =
            (st.digests.clone(), st.engine.clone(), st.tasks.stop.clone());
        // Tracked, so a stop ends it between chunks (each its own transaction); the
        // scheduler job's fill resumes whatever is left.
        st.tasks.tracker.spawn(async move {
            let fill = digests.fill_pending(std::time::Duration::MAX, |_| engine.wake());
            tokio::select! {
                r = fill => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "writing the readers of an issue failed; the scheduler job resumes it");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    see_other(&st, &format!("/issues/{}", issue.id))
}

/// Remove a schedule, once its name is typed again. Its issues and their sends stay in the
/// log (under the schedule's name); nothing more is sent for it.
pub(super) async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Change { v, form }: Change<ScheduleForm>,
) -> Page {
    let v = &v;
    if form.confirm_name.trim() != name {
        return refused(
            &st,
            v,
            &name,
            Refused::Remove("Type the schedule's name exactly to remove it."),
        )
        .await;
    }
    match st.digests.remove(&name).await {
        Ok(()) => {
            tracing::info!(user = %v.session.name, schedule = %name, "schedule removed in the console");
            see_other(&st, "/schedules")
        }
        Err(e) => Err(failed(&name, e)),
    }
}

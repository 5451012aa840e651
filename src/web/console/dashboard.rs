//! `/admin/`: what is happening now — sends of the last day, the last week hour by hour (an
//! SVG chart drawn here, no script), the queue, returned mail, failing feeds, the next
//! digests in their schedules' zones.

use super::{Chrome, ConsoleError, Page, Viewer};
use crate::store::{ReturnedKind, SendStatus};
use crate::web::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse};
use chrono::{Duration, DurationRound};

pub(crate) struct Bar {
    pub x: u32,
    pub y: u32,
    pub h: u32,
    pub n: i64,
    pub label: String,
}

pub(crate) struct Chart {
    pub width: u32,
    pub height: u32,
    pub bar_width: u32,
    pub bars: Vec<Bar>,
    pub max: i64,
    pub total: i64,
    /// The days the bars cover, in the newsroom's zone, with what was sent on each (the
    /// axis under the chart, and its numbers as a table).
    pub days: Vec<(String, i64)>,
}

pub(crate) struct NextDigest {
    pub name: String,
    pub when: String,
    pub sections: String,
}

pub(crate) struct Dashboard {
    /// 24 hours ago as the log's "changed from" filter takes it (the newsroom's time), for
    /// the tiles' links.
    pub since: String,
    pub queue: i64,
    pub last_day: Vec<(&'static str, i64)>,
    pub bounces: i64,
    pub complaints: i64,
    pub chart: Chart,
    pub next: Vec<NextDigest>,
    pub failing_feeds: Vec<(String, String)>,
    /// Receiving domains paused for policy refusals.
    pub paused_domains: Vec<crate::store::DomainPause>,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    d: Dashboard,
}

/// One bar per hour of the last 7 days (168), scaled to the busiest hour.
fn chart(
    now: chrono::DateTime<chrono::Utc>,
    per_hour: &[(chrono::DateTime<chrono::Utc>, i64)],
    zone: chrono_tz::Tz,
) -> Chart {
    const HOURS: i64 = 7 * 24;
    let (bar_width, height) = (4u32, 100u32);
    let start = now.duration_trunc(Duration::hours(1)).unwrap_or(now) - Duration::hours(HOURS - 1);
    let mut counts = vec![0i64; HOURS as usize];
    for (hour, n) in per_hour {
        let i = (*hour - start).num_hours();
        if (0..HOURS).contains(&i) {
            counts[i as usize] += n;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0);
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let h = if max == 0 {
                0
            } else {
                (n * height as i64 / max) as u32
            };
            Bar {
                x: i as u32 * (bar_width + 1),
                y: height - h,
                h,
                n,
                // Hours in the newsroom's zone (a zone off by half an hour shows :30).
                label: (start + Duration::hours(i as i64))
                    .with_timezone(&zone)
                    .format("%a %d %b %H:%M %Z")
                    .to_string(),
            }
        })
        .collect();
    let mut days: Vec<(String, i64)> = Vec::new();
    for (i, n) in counts.iter().enumerate() {
        let day = (start + Duration::hours(i as i64))
            .with_timezone(&zone)
            .format("%a %-d %b")
            .to_string();
        match days.last_mut() {
            Some((d, total)) if *d == day => *total += n,
            _ => days.push((day, *n)),
        }
    }
    Chart {
        days,
        width: HOURS as u32 * (bar_width + 1),
        height,
        bar_width,
        bars,
        max,
        total: counts.iter().sum(),
    }
}

async fn build(st: &AppState) -> Result<Dashboard, ConsoleError> {
    let now = st.clock.now();
    let day = now - Duration::hours(24);
    let counts = st.store.send_counts_since(day).await?;
    let last_day = SendStatus::ALL
        .iter()
        .filter_map(|s| {
            counts
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| (s.as_str(), *n))
        })
        .collect();
    let returned = st.store.returned_counts_since(day).await?;
    let of = |kind: ReturnedKind| {
        returned
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    };
    let per_hour = st.store.sent_per_hour(now - Duration::days(7)).await?;
    let next = st
        .digests
        .list_schedules()
        .await
        .map_err(ConsoleError::internal)?
        .into_iter()
        .filter(|v| v.schedule.enabled)
        .filter_map(|v| {
            Some(NextDigest {
                when: v.upcoming.first()?.clone(),
                name: v.schedule.name,
                sections: v.sections.join(", "),
            })
        })
        .collect();
    let failing_feeds = st
        .store
        .section_feeds()
        .await?
        .into_iter()
        .filter_map(|f| Some((f.slug, f.feed_error?)))
        .collect();
    Ok(Dashboard {
        since: day
            .with_timezone(&st.config.site.timezone)
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
        queue: st.store.pending_send_count().await?,
        last_day,
        bounces: of(ReturnedKind::Hard) + of(ReturnedKind::Soft),
        complaints: of(ReturnedKind::Complaint),
        chart: chart(now, &per_hour, st.config.site.timezone),
        next,
        failing_feeds,
        paused_domains: st.engine.domains().paused_now().await,
    })
}

pub(super) async fn page(State(st): State<AppState>, v: Viewer) -> Page {
    let body = DashboardPage {
        chrome: v.chrome(&st, "dashboard"),
        d: build(&st).await?,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(body).into_response())
}

//! `herald issues`: digest runs with their delivery counts.

use super::{CliResult, Format, print_list};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Issues, newest first, with their sends counted by status.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Stop an issue: what has not gone out is cancelled at once and never sent (running
    /// `herald serve` workers notice within a quarter of a second). Sent mail stays sent.
    Stop {
        /// The issue's number (see `herald issues list`).
        id: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    let (limit, format) = match cmd {
        Cmd::List { limit, format } => (limit, format),
        Cmd::Stop { id, format } => return stop(&s, id, format).await,
    };
    let issues = herald::digests::issues_with_counts(s.store.as_ref(), None, limit).await?;
    print_list(&issues, format, ("issue", "issues"), |i| {
        let counts: Vec<String> = i.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "#{:<5} {:<16} {} {:<10} articles={:<4} sends={:<7} {}",
            i.issue.id,
            i.issue.schedule_name,
            i.issue.scheduled_for.format("%Y-%m-%d %H:%M"),
            i.state,
            i.issue.article_count,
            i.issue.send_count,
            counts.join(" ")
        )
    })
}

async fn stop(s: &Services, id: i64, format: Format) -> CliResult {
    let by = format!("cli ({})", super::login_name());
    let r = s.digests.stop_issue(id, &by).await?;
    if format == Format::Json {
        return super::print_json(&r);
    }
    if r.already {
        let at = r
            .stopped_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        println!(
            "issue #{id} was already stopped ({} by {}): {} sent before the stop",
            at.unwrap_or_default(),
            r.stopped_by.unwrap_or_default(),
            r.sent
        );
    } else {
        println!(
            "issue #{id} stopped: {} sent before the stop, {} cancelled",
            r.sent, r.cancelled
        );
    }
    Ok(())
}

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
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    let Cmd::List { limit, format } = cmd;
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

//! `herald audit`: who did what, when and from where, newest first.

use super::{CliResult, Failure, Format, print_list, since};
use herald::Services;
use herald::audit::AuditQuery;

#[derive(clap::Args)]
pub struct Args {
    /// Only what this one did: a console user's name, "token NAME", "cli (USER)".
    #[arg(long)]
    who: Option<String>,
    /// Only actions starting with this: "schedules", "issues stop", "console login".
    #[arg(long)]
    action: Option<String>,
    /// Only within this long, e.g. 24h, 7d.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// text, json, or csv (a header line, then one line each).
    #[arg(long, default_value = "text")]
    format: String,
}

pub async fn run(a: Args, s: Services) -> CliResult {
    if a.limit < 1 {
        return Err(Failure::usage("--limit: at least 1"));
    }
    let q = AuditQuery {
        actor: a.who,
        action: a.action,
        since: since(a.since.as_deref(), s.clock.now())?,
        limit: a.limit,
        ..Default::default()
    };
    let entries = s.store.audit_log(&q).await?;
    let format = match a.format.as_str() {
        "csv" => {
            let bytes = herald::audit::to_csv(&entries)?;
            print!("{}", String::from_utf8_lossy(&bytes));
            return Ok(());
        }
        "json" => Format::Json,
        "text" => Format::Text,
        other => {
            return Err(Failure::usage(format!(
                "--format {other:?}: text, json or csv"
            )));
        }
    };
    print_list(&entries, format, ("entry", "entries"), |e| {
        format!(
            "{} {:<7} {:<20} {:<16} {:<22} {} {}",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.via,
            e.actor,
            e.address.as_deref().unwrap_or("-"),
            e.action,
            if e.subject.is_empty() {
                "-"
            } else {
                &e.subject
            },
            e.outcome
        )
    })
}

//! `herald bounces`: mail that came back, and what herald did about it.

use super::{CliResult, Failure, Format, count, print_json, since};
use clap::Subcommand;
use herald::Services;
use herald::store::ReturnedKind;

#[derive(Subcommand)]
pub enum Cmd {
    /// Returned messages, newest first, with what herald did about each.
    List {
        /// Only those received within this long, e.g. 24h, 7d.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Only this kind.
        #[arg(long = "type", value_enum)]
        kind: Option<ReturnedKind>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One returned message: what herald did, and the provider's own words.
    Show { id: i64 },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::List {
            since: within,
            kind,
            limit,
            format,
        } => {
            let from = since(within.as_deref(), s.clock.now())?;
            let rows = s
                .store
                .list_returned(from, kind, limit.clamp(1, 100_000))
                .await?;
            if format == Format::Json {
                return print_json(&rows);
            }
            for r in &rows {
                println!(
                    "#{:<6} {}  {:<12} {:<28} {}{}",
                    r.id,
                    r.received_at.format("%Y-%m-%d %H:%M"),
                    r.kind,
                    r.email.as_deref().or(r.recipient.as_deref()).unwrap_or("-"),
                    r.action,
                    r.status
                        .as_deref()
                        .map(|st| format!(" [{st}]"))
                        .unwrap_or_default()
                );
            }
            eprintln!(
                "{}",
                count(rows.len() as i64, "returned message", "returned messages")
            );
        }
        Cmd::Show { id } => {
            let Some((r, raw)) = s.store.returned(id).await? else {
                return Err(Failure(1, format!("no returned message #{id}")));
            };
            println!("#{} received {}", r.id, r.received_at.to_rfc3339());
            println!("kind:       {}", r.kind);
            println!("action:     {}", r.action);
            println!("reader:     {}", r.email.as_deref().unwrap_or("-"));
            println!("recipient:  {}", r.recipient.as_deref().unwrap_or("-"));
            println!("status:     {}", r.status.as_deref().unwrap_or("-"));
            println!("diagnostic: {}", r.diagnostic.as_deref().unwrap_or("-"));
            println!(
                "send:       {}",
                r.send_id.map(|i| i.to_string()).unwrap_or("-".into())
            );
            println!();
            if raw.is_empty() {
                println!("(the raw message is no longer kept: bounces.keep_raw)");
            } else {
                println!("{raw}");
            }
        }
    }
    Ok(())
}

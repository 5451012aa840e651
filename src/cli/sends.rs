//! `herald sends`: the delivery log, and `sends retry`.

use super::{CliResult, Failure, Format, address, count, since};
use clap::Subcommand;
use herald::Services;
use herald::domain::mail_domain;
use herald::store::{RetryScope, SendStatus};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    retry: Option<Cmd>,
    /// Only this issue's sends.
    #[arg(long)]
    issue: Option<i64>,
    /// Only sends in this state.
    #[arg(long, value_enum)]
    status: Option<SendStatus>,
    /// Only mail to this address.
    #[arg(long)]
    email: Option<String>,
    /// Only sends updated within this long, e.g. 2h, 30m, 7d.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Keep printing sends as they change (Ctrl-C to stop).
    #[arg(long)]
    follow: bool,
    /// At most this many (per poll with --follow).
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Re-queue the failed sends of an issue. Only `failed` can be retried: a sent mail
    /// would be delivered twice, one in flight taken from its worker, a queued or retrying
    /// one is already in the queue, and a bounced or suppressed address must not get mail.
    /// With --address or --domain: that address's (or every address at that domain's)
    /// failed digests across issues, e.g. once a blocklisting is lifted.
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["issue", "address", "domain"])))]
    Retry {
        #[arg(long)]
        issue: Option<i64>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, value_enum, default_value = "failed")]
        status: SendStatus,
    },
}

pub async fn run(args: Args, s: Services) -> CliResult {
    if let Some(Cmd::Retry {
        issue,
        address: to,
        domain,
        status,
    }) = args.retry
    {
        if let Some(why) = status.why_not_retried() {
            return Err(Failure::usage(format!(
                "only failed sends can be retried, not {status}: {why}"
            )));
        }
        let now = s.clock.now();
        let (n, whose) = if let Some(issue) = issue {
            let n = s.store.requeue_failed_sends(issue, now).await?;
            (n, format!("of issue #{issue}"))
        } else if let Some(to) = to {
            let to = address("--address ", &to)?;
            let n = s
                .store
                .requeue_failed_sends_to(&RetryScope::Address(to.clone()), now)
                .await?;
            (n, format!("to {to}"))
        } else {
            let d = mail_domain(domain.as_deref().unwrap_or_default())
                .ok_or_else(|| Failure::usage("--domain: name a domain, e.g. example.com"))?;
            let n = s
                .store
                .requeue_failed_sends_to(&RetryScope::Domain(d.clone()), now)
                .await?;
            (n, format!("to {d}"))
        };
        println!(
            "{} {whose} re-queued; `herald serve` delivers them",
            count(n as i64, "failed send", "failed sends")
        );
        return Ok(());
    }
    let email = match &args.email {
        Some(e) => Some(address("--email ", e)?),
        None => None,
    };
    let mut filter = herald::store::SendFilter {
        issue_id: args.issue,
        status: args.status,
        email,
        updated_since: since(args.since.as_deref(), s.clock.now())?,
        limit: Some(args.limit),
    };
    let mut seen: std::collections::HashSet<(i64, chrono::DateTime<chrono::Utc>)> =
        Default::default();
    let mut shown = 0i64;
    loop {
        let rows = s.store.list_sends(&filter).await?;
        for r in &rows {
            if !seen.insert((r.id, r.updated_at)) {
                continue;
            }
            shown += 1;
            if args.format == Format::Json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!(
                    "{} #{:<6} issue={:<5} {:<18} {:<32} {:<10} attempts={} {}",
                    r.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    r.id,
                    r.issue_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.kind,
                    r.email.as_deref().unwrap_or("(erased)"),
                    r.status,
                    r.attempts,
                    r.last_reply.as_deref().unwrap_or("")
                );
            }
        }
        if !args.follow {
            if shown == 0 {
                eprintln!("no sends match");
            }
            return Ok(());
        }
        if let Some(last) = rows.last() {
            filter.updated_since = Some(last.updated_at);
        } else if filter.updated_since.is_none() {
            filter.updated_since = Some(s.clock.now());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

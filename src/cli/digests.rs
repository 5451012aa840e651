//! `herald digests`: preview the next digest, or make and deliver an issue now.

use super::{CliResult, Failure, count};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Print the next digest of a schedule as a reader would get it; sends nothing.
    Preview {
        /// The schedule.
        name: String,
        /// As this subscriber would get it (default: the first reader of its sections).
        #[arg(long, value_name = "EMAIL")]
        to: Option<String>,
        /// Print the HTML part instead of the text part.
        #[arg(long)]
        html: bool,
    },
    /// Make an issue of a schedule now and deliver it: one pass over every send, then a
    /// summary; sends the relay deferred are left to `herald serve` (or --wait).
    Run {
        /// The schedule.
        name: String,
        /// Only make the issue and queue its sends; `herald serve` delivers them.
        #[arg(long, conflicts_with = "wait")]
        queue_only: bool,
        /// Keep delivering until every send is settled, retries included (they may take
        /// as long as delivery.max_age, days).
        #[arg(long)]
        wait: bool,
    },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Preview { name, to, html } => {
            let r = s.digests.preview(&name, to.as_deref()).await?;
            println!("To: {}\nSubject: {}\n", r.to, r.subject);
            println!("{}", if html { &r.html } else { &r.text });
            Ok(())
        }
        Cmd::Run {
            name,
            queue_only,
            wait,
        } => run_issue(&s, &name, queue_only, wait).await,
    }
}

async fn run_issue(s: &Services, name: &str, queue_only: bool, wait: bool) -> CliResult {
    let started = std::time::Instant::now();
    let issue = s.digests.run_now(name).await?;
    if issue.status == herald::store::IssueStatus::Skipped {
        println!("issue #{}: no new articles, nothing to send", issue.id);
        return Ok(());
    }
    let made = started.elapsed();
    let issue = s.digests.fill(issue).await?;
    if queue_only {
        println!(
            "issue #{}: {}, made in {:.3}s; {} queued in {:.2}s",
            issue.id,
            super::count(issue.article_count, "article", "articles"),
            made.as_secs_f64(),
            super::count(issue.send_count, "send", "sends"),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    // Which transport this command uses: not necessarily the one a running `herald serve`
    // was started with (an environment variable set only in its shell).
    eprintln!(
        "issue #{}: {}, {}; delivering by {}",
        issue.id,
        count(issue.article_count, "article", "articles"),
        count(issue.send_count, "reader", "readers"),
        s.engine.transport().describe()
    );
    let total = issue.send_count as i64;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        s.engine.deliver_due().await?;
        let left = s.store.unsettled_sends_of_issue(issue.id).await?;
        if tty {
            let done = total - left;
            let width: i64 = 40;
            let filled = if total > 0 {
                done * width / total
            } else {
                width
            } as usize;
            eprint!(
                "\r[{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
        }
        if left == 0 || !wait {
            break;
        }
        // Some sends wait for a retry (the server deferred them): sleep until the earliest
        // is due. Another herald may be delivering them meanwhile.
        let pause = match s.store.next_due_at().await? {
            Some(t) => (t - s.clock.now()).to_std().unwrap_or_default(),
            None => std::time::Duration::from_secs(1),
        };
        tokio::time::sleep(pause.clamp(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(30),
        ))
        .await;
    }
    if tty {
        eprintln!();
    }
    let counts = s.store.issue_status_counts(issue.id).await?;
    let text: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let retrying = counts
        .iter()
        .find(|(k, _)| k == "retrying")
        .map(|(_, v)| *v)
        .unwrap_or(0);
    if retrying == 0 {
        println!("issue #{} settled: {}", issue.id, text.join(" "));
        return Ok(());
    }
    println!("issue #{}: {}", issue.id, text.join(" "));
    let why = s
        .store
        .list_sends(&herald::store::SendFilter {
            issue_id: Some(issue.id),
            status: Some(herald::store::SendStatus::Retrying),
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.last_reply)
        .unwrap_or_default();
    let next = s
        .store
        .next_due_at()
        .await?
        .map(|t| format!(", the next at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    eprintln!(
        "{} to be tried again later (the server said: {why}){next}; `herald serve` delivers them, \
         or run this with --wait to keep going here",
        count(retrying, "send is", "sends are")
    );
    if counts.iter().any(|(k, v)| k == "sent" && *v > 0) {
        Ok(())
    } else {
        Err(Failure(
            1,
            format!("issue #{}: nothing could be delivered yet", issue.id),
        ))
    }
}

//! `herald domains`: receiving domains herald has paused because they refused its mail for
//! policy reasons (a blocklisting), and lifting such a pause by hand.

use super::{CliResult, Failure, Format, print_list};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Paused domains: until when, how many refusals tripped it, and the provider's words.
    List {
        /// Also the pauses that have run out (kept to lengthen the next one).
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Send to this domain again now (its waiting sends go at the next claim).
    Resume { domain: String },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::List { all, format } => {
            let now = s.clock.now();
            let list: Vec<_> = s
                .store
                .domain_pauses()
                .await?
                .into_iter()
                .filter(|p| all || p.paused_until > now)
                .collect();
            print_list(&list, format, ("paused domain", "paused domains"), |p| {
                format!(
                    "{:<28} {} until {}  {} refusals  {}",
                    p.domain,
                    if p.paused_until > now {
                        "paused"
                    } else {
                        "ran out"
                    },
                    p.paused_until.format("%Y-%m-%d %H:%M UTC"),
                    p.refusals,
                    p.reason
                )
            })
        }
        Cmd::Resume { domain } => {
            let domain = domain.trim().trim_start_matches('@').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(char::is_whitespace) {
                return Err(Failure::usage("name a domain, e.g. example.com"));
            }
            if !s.store.resume_domain(&domain, s.clock.now()).await? {
                return Err(Failure(1, format!("{domain} is not paused")));
            }
            println!(
                "{domain} resumed: its waiting sends go out again (a running herald serve sees it within seconds)"
            );
            Ok(())
        }
    }
}

//! `herald suppressions`: addresses herald sends nothing to, and why.

use super::{CliResult, Failure, Format, address, count, print_json, print_list};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Suppressed addresses, shown as hashes unless a subscriber still has the address.
    List {
        /// The suppressions lifted instead: when, by whom, and why they had been suppressed.
        #[arg(long)]
        lifted: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Send nothing more to this address; a subscriber with it is unsubscribed.
    Add {
        email: String,
        /// One word saying why, e.g. manual or legal.
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Lift a suppression. Nobody is subscribed again by it: they may sign up anew.
    Remove { email: String },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::List {
            lifted: true,
            format,
        } => {
            let list = s.store.suppression_lifts(1000).await?;
            return print_list(
                &list,
                format,
                ("lifted suppression", "lifted suppressions"),
                |l| {
                    format!(
                        "sha256:{}…  {:<11} since {}  lifted {} by {}",
                        &l.email_hash[..12],
                        l.reason,
                        l.suppressed_at.format("%Y-%m-%d %H:%M"),
                        l.lifted_at.format("%Y-%m-%d %H:%M"),
                        l.lifted_by
                    )
                },
            );
        }
        Cmd::List { format, .. } => {
            let list = s.store.list_suppressions().await?;
            // The address, where a subscriber row still has it (erased ones have only the hash).
            let mut known = std::collections::HashMap::new();
            use herald::domain::SubscriberStatus as S;
            for status in [S::Bounced, S::Complained, S::Unsubscribed] {
                let filter = herald::store::SubscriberFilter {
                    status: Some(status),
                    section_id: None,
                };
                for sub in s.store.list_subscribers(&filter).await? {
                    known.insert(herald::domain::sha256_hex(&sub.email), sub.email);
                }
            }
            if format == Format::Json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|x| {
                        serde_json::json!({
                            "email": known.get(&x.email_hash),
                            "email_hash": x.email_hash,
                            "reason": x.reason,
                            "created_at": x.created_at,
                        })
                    })
                    .collect();
                return print_json(&v);
            }
            for x in &list {
                println!(
                    "{:<32} {:<11} {}",
                    known
                        .get(&x.email_hash)
                        .cloned()
                        .unwrap_or_else(|| format!("sha256:{}…", &x.email_hash[..12])),
                    x.reason,
                    x.created_at.format("%Y-%m-%d %H:%M")
                );
            }
            eprintln!(
                "{}",
                count(
                    list.len() as i64,
                    "suppressed address",
                    "suppressed addresses"
                )
            );
        }
        Cmd::Add { email, reason } => {
            let email = address("", &email)?;
            if !herald::store::valid_suppression_reason(&reason) {
                return Err(Failure::usage("--reason is a word such as manual or legal"));
            }
            if s.store
                .add_suppression(&email, &reason, s.clock.now())
                .await?
            {
                println!("{email} suppressed ({reason})");
            } else {
                println!("{email} was suppressed already");
            }
        }
        Cmd::Remove { email } => {
            let email = address("", &email)?;
            let by = format!(
                "cli:{}",
                std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "unknown".into())
            );
            if !s
                .store
                .remove_suppression(&email, s.clock.now(), &by)
                .await?
            {
                return Err(Failure(1, format!("{email} is not suppressed")));
            }
            println!("{email} no longer suppressed (not subscribed again: they may sign up anew)");
        }
    }
    Ok(())
}

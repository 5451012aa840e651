//! `herald subscribers`: import, list, show, export, erase.

use super::{CliResult, Failure, Format, count, print_json, print_list};
use clap::Subcommand;
use herald::Services;
use herald::domain::SubscriberStatus;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Cmd {
    /// Import a CSV file with an `email` column (other columns are ignored).
    Import {
        file: PathBuf,
        /// Comma-separated section slugs they subscribe to.
        #[arg(long, value_delimiter = ',', required = true, value_name = "SLUGS")]
        sections: Vec<String>,
        /// Make them active at once (migrating from another system that did the opt-in);
        /// without it each gets a confirmation mail.
        #[arg(long)]
        preconfirmed: bool,
    },
    /// List subscribers, oldest first.
    List {
        /// Only those in this state.
        #[arg(long, value_enum)]
        status: Option<SubscriberStatus>,
        /// Only those subscribed to this section (slug).
        #[arg(long)]
        section: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One subscriber: status, sections, consent, the mails sent to them.
    Show {
        email: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Everything herald holds about one person, as JSON (a data subject request).
    Export { email: String },
    /// Erase one person's data; only a hash of the address stays, on the suppression list.
    Delete { email: String },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Import {
            file,
            sections,
            preconfirmed,
        } => {
            let f = std::fs::File::open(&file)
                .map_err(|e| Failure(1, format!("cannot open {}: {e}", file.display())))?;
            let summary = s
                .subs
                .import_csv(std::io::BufReader::new(f), &sections, preconfirmed)
                .await
                .map_err(|e| Failure(1, format!("{}: {e}", file.display())))?;
            for (line, why) in &summary.bad_rows {
                eprintln!("{}:{line}: skipped: {why}", file.display());
            }
            let r = &summary.report;
            println!(
                "read {}: {} new, {} merged with existing, {} in the file twice, {} bad, \
                 {} skipped (unsubscribed), {} skipped (erased/suppressed); {} queued",
                count(summary.rows_read as i64, "row", "rows"),
                r.new_subscribers,
                r.merged,
                summary.duplicates_in_file,
                summary.bad_rows.len(),
                r.skipped_unsubscribed,
                r.skipped_suppressed,
                count(
                    r.confirmations_queued as i64,
                    "confirmation mail",
                    "confirmation mails"
                )
            );
            if r.confirmations_queued > 0 {
                eprintln!("`herald serve` delivers the confirmation mails.");
            }
        }
        Cmd::List {
            status,
            section,
            format,
        } => {
            let list = s.subs.list_subscribers(status, section.as_deref()).await?;
            print_list(&list, format, ("subscriber", "subscribers"), |sub| {
                format!(
                    "{:<40} {:<13} {}",
                    sub.email,
                    sub.status,
                    sub.created_at.format("%Y-%m-%d %H:%M")
                )
            })?;
        }
        Cmd::Show { email, format } => {
            let Some(x) = s.subs.export_subscriber(&email).await? else {
                return Err(Failure(1, format!("no subscriber {email:?}")));
            };
            if format == Format::Json {
                return print_json(&x);
            }
            let sub = &x.subscriber;
            println!("email:     {}", sub.email);
            println!("status:    {}", sub.status);
            println!("sections:  {}", x.sections.join(", "));
            println!(
                "signed up: {} from {} via {}",
                sub.created_at,
                sub.signup_ip.as_deref().unwrap_or("-"),
                sub.signup_form.as_deref().unwrap_or("-")
            );
            match sub.consent_at {
                Some(t) => println!(
                    "consent:   {t} from {} via {}",
                    sub.consent_ip.as_deref().unwrap_or("-"),
                    sub.consent_form.as_deref().unwrap_or("-")
                ),
                None => println!("consent:   not given yet"),
            }
            if x.sends.is_empty() {
                println!("mails:     none yet");
            } else {
                println!("mails:");
            }
            for m in &x.sends {
                println!(
                    "  {} {:<18} {:<10} attempts={} {}",
                    m.created_at.format("%Y-%m-%d %H:%M"),
                    m.kind,
                    m.status,
                    m.attempts,
                    m.last_reply.as_deref().unwrap_or("")
                );
            }
        }
        Cmd::Export { email } => match s.subs.export_subscriber(&email).await? {
            Some(x) => return print_json(&x),
            None => return Err(Failure(1, format!("no subscriber {email:?}"))),
        },
        Cmd::Delete { email } => {
            if !s.subs.erase_subscriber(&email).await? {
                return Err(Failure(1, format!("no subscriber {email:?}")));
            }
            println!("erased {email}; a hash of the address stays on the suppression list");
        }
    }
    Ok(())
}

//! `herald schedules`: when digests go out, and of which sections.

use super::{CliResult, Format, count, print_json};
use clap::Subcommand;
use herald::Services;

#[derive(Subcommand)]
pub enum Cmd {
    /// Add a schedule: a standard 5-field cron expression, in --timezone.
    Add {
        /// Its name, e.g. morning (letters, digits, dots, dashes, underscores).
        name: String,
        /// Minute, hour, day of month, month, day of week, e.g. "0 7 * * 1-5".
        #[arg(long)]
        cron: String,
        /// Comma-separated section slugs its digests cover.
        #[arg(long, value_delimiter = ',', required = true, value_name = "SLUGS")]
        sections: Vec<String>,
        /// An IANA time zone, e.g. Europe/Berlin (default UTC).
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
        /// A fixed subject; by default it names the reader's sections and the date.
        #[arg(long)]
        subject: Option<String>,
        /// Leave article pictures out of its digests (see `schedules images`).
        #[arg(long)]
        no_images: bool,
    },
    /// List schedules with their cron in words and the next runs.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Stop making issues of a schedule until it is resumed.
    Pause { name: String },
    /// Make issues of a paused schedule again, from its next run on.
    Resume { name: String },
    /// Show article pictures in this schedule's digests (on by default), or not.
    Images {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Remove a schedule (its issues stay in the delivery log).
    Remove { name: String },
}

/// `at` in the schedule's zone, with UTC beside it when that differs.
fn in_zone(at: chrono::DateTime<chrono::Utc>, zone: &str) -> String {
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) if tz != chrono_tz::UTC => format!(
            "{} ({} UTC)",
            at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            at.format("%H:%M")
        ),
        _ => at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    let d = &s.digests;
    match cmd {
        Cmd::Add {
            name,
            cron,
            sections,
            timezone,
            subject,
            no_images,
        } => {
            let sched = d
                .add_schedule(
                    &name,
                    &cron,
                    &sections,
                    timezone.as_deref(),
                    subject.as_deref(),
                    no_images.then_some(false),
                )
                .await?;
            println!(
                "added schedule {} ({} {}), next run {}",
                sched.name,
                sched.cron,
                sched.timezone,
                in_zone(sched.next_run_at, &sched.timezone)
            );
        }
        Cmd::List { format } => {
            let list = d.list_schedules().await?;
            if format == Format::Json {
                return print_json(&list);
            }
            for v in &list {
                let sc = &v.schedule;
                println!(
                    "{:<16} {:<14} {:<16} {} [{}]{}",
                    sc.name,
                    sc.cron,
                    sc.timezone,
                    v.description,
                    v.sections.join(","),
                    if sc.enabled { "" } else { " PAUSED" }
                );
                for u in &v.upcoming {
                    println!("{:<16} next: {u}", "");
                }
            }
            eprintln!("{}", count(list.len() as i64, "schedule", "schedules"));
        }
        Cmd::Pause { name } => {
            d.pause(&name).await?;
            println!("{name} paused");
        }
        Cmd::Resume { name } => {
            d.resume(&name).await?;
            println!("{name} resumed");
        }
        Cmd::Images { name, state } => {
            d.set_images(&name, state == "on").await?;
            println!("{name}: pictures {state}");
        }
        Cmd::Remove { name } => {
            d.remove(&name).await?;
            println!("{name} removed");
        }
    }
    Ok(())
}

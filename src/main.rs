//! The `herald` command: parses arguments, loads config, calls into the library, prints.
//! Exit codes: 0 ok, 1 the operation failed (bad input, conflict, runtime error),
//! 2 usage or configuration error.

use clap::{Parser, Subcommand, ValueEnum};
use herald::config::Config;
use herald::{App, Services, clock::Clock};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Newsletter subscription and delivery daemon"
)]
struct Cli {
    /// Config file (TOML); only the keys it sets override the embedded defaults.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HERALD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server and the delivery workers until SIGINT/SIGTERM.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a new random secret key for `secret_key` / HERALD_SECRET_KEY.
    Secret,
    /// Print the effective configuration check result.
    CheckConfig,
    /// Sections readers can subscribe to.
    #[command(subcommand)]
    Sections(SectionsCmd),
    /// Subscribers: import, list, show, export, delete.
    #[command(subcommand)]
    Subscribers(SubscribersCmd),
    /// Articles: add, import a feed file, list.
    #[command(subcommand)]
    Articles(ArticlesCmd),
    /// Digest schedules (cron).
    #[command(subcommand)]
    Schedules(SchedulesCmd),
    /// Preview or run a digest now.
    #[command(subcommand)]
    Digests(DigestsCmd),
    /// Issues (digest runs) with their delivery counts.
    #[command(subcommand)]
    Issues(IssuesCmd),
    /// The delivery log; `sends retry` re-queues failed sends.
    Sends(SendsArgs),
    /// API tokens for /api/v1.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Mail that came back: bounces, complaints, unsubscribes by mail, auto-replies.
    #[command(subcommand)]
    Bounces(BouncesCmd),
    /// Addresses herald sends nothing to, and why.
    #[command(subcommand)]
    Suppressions(SuppressionsCmd),
}

#[derive(Subcommand)]
enum BouncesCmd {
    /// Returned messages, newest first, with what herald did about each.
    List {
        /// Only those received within this long, e.g. 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// hard, soft, complaint, unsubscribe, auto_reply or unrecognised.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One returned message, with what the provider wrote.
    Show { id: i64 },
}

#[derive(Subcommand)]
enum SuppressionsCmd {
    /// Suppressed addresses (as hashes; with the address while a subscriber has it).
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Send nothing more to this address; a subscriber with it is unsubscribed.
    Add {
        email: String,
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Lift a suppression. Nobody is subscribed again by it: they may sign up anew.
    Remove { email: String },
}

#[derive(Subcommand)]
enum ArticlesCmd {
    /// Add one article.
    Add {
        #[arg(long)]
        section: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        summary: Option<String>,
        #[arg(long)]
        author: Option<String>,
        /// RFC 3339, e.g. 2015-10-01T14:00:00Z
        #[arg(long)]
        published: Option<String>,
        /// The article's picture (an https URL), shown in digests as a thumbnail.
        #[arg(long)]
        image: Option<String>,
    },
    /// Import an RSS 2.0, Atom or JSON Feed file into a section.
    Import {
        #[arg(long)]
        section: String,
        file: PathBuf,
        /// Where the feed is published: relative links in it are resolved against this
        /// (after any xml:base, before the channel's own link).
        #[arg(long)]
        base: Option<String>,
    },
    /// List articles, newest first.
    List {
        #[arg(long)]
        section: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum SchedulesCmd {
    /// Add a schedule: standard 5-field cron, evaluated in --timezone (IANA, default UTC).
    Add {
        name: String,
        #[arg(long)]
        cron: String,
        #[arg(long, value_delimiter = ',', required = true)]
        sections: Vec<String>,
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        subject: Option<String>,
    },
    /// List schedules with their cron in words and next runs.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Show article pictures in this schedule's digests (on by default), or not.
    Images {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
enum DigestsCmd {
    /// Print the next digest of a schedule as a reader would get it; sends nothing.
    Preview {
        name: String,
        #[arg(long)]
        to: Option<String>,
        /// Print the HTML part instead of the text part.
        #[arg(long)]
        html: bool,
    },
    /// Make an issue now and deliver it; exits 0 when every send is settled.
    Run {
        name: String,
        /// Only make the issue and queue its sends; `herald serve` delivers them.
        #[arg(long)]
        queue_only: bool,
    },
}

#[derive(Subcommand)]
enum IssuesCmd {
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SendsArgs {
    #[command(subcommand)]
    retry: Option<SendsCmd>,
    #[arg(long)]
    issue: Option<i64>,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// Only sends updated in this past duration, e.g. 2h, 30m, 7d.
    #[arg(long)]
    since: Option<String>,
    /// Keep printing new events.
    #[arg(long)]
    follow: bool,
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Subcommand)]
enum SendsCmd {
    /// Re-queue the failed sends of an issue. Only `failed` can be retried: a sent mail
    /// would be delivered twice, one in flight taken from its worker, a queued or retrying
    /// one is already in the queue, and a bounced or suppressed address must not get mail.
    Retry {
        #[arg(long)]
        issue: i64,
        #[arg(long, default_value = "failed")]
        status: String,
    },
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Create a token; it is printed once, only its hash is kept.
    Add {
        name: String,
        #[arg(long, value_parser = ["staff", "operator"])]
        role: String,
    },
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    Revoke {
        name: String,
    },
}

#[derive(Subcommand)]
enum SectionsCmd {
    /// Add a section.
    Add {
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A feed URL `herald serve` polls for new articles.
        #[arg(long)]
        feed: Option<String>,
    },
    /// Set (or with --clear remove) a section's feed URL.
    SetFeed {
        slug: String,
        url: Option<String>,
        #[arg(long, conflicts_with = "url")]
        clear: bool,
    },
    /// Set (or with --clear remove) the section's page on the site, where a digest's
    /// "and N more in Section" links. Without one, the section's feed gives it.
    SetPage {
        slug: String,
        url: Option<String>,
        #[arg(long, conflicts_with = "url")]
        clear: bool,
    },
    /// List sections.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum SubscribersCmd {
    /// Import a CSV with an `email` column.
    Import {
        file: PathBuf,
        /// Comma-separated section slugs.
        #[arg(long, value_delimiter = ',', required = true)]
        sections: Vec<String>,
        /// Make them active at once (migrating from another system that did the opt-in).
        #[arg(long)]
        preconfirmed: bool,
    },
    /// List subscribers.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        section: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One subscriber: status, sections, consent, mails sent.
    Show {
        email: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Everything herald holds about one person, as JSON.
    Export { email: String },
    /// Erase one person's data; keep only a hash of the address on the suppression list.
    Delete { email: String },
}

/// A failure with its exit code.
struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, e.to_string())
    }
}

use herald::store::ReturnedKind;

fn main() -> ExitCode {
    let cli = Cli::parse();
    herald::telemetry::init_logging(matches!(cli.log_format, LogFormat::Json));
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("herald: {msg}");
            ExitCode::from(code)
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(command: Command, config: Config) -> Result<(), Failure> {
    match command {
        Command::Secret => {
            println!("{}", herald::domain::SecretKey::generate_text());
            Ok(())
        }
        Command::CheckConfig => {
            println!("configuration ok");
            for w in config.warnings() {
                println!("warning: {w}");
            }
            if let Some(signer) = &config.mail.dkim {
                println!("DKIM: publish this TXT record");
                println!("  {}  TXT  \"{}\"", signer.dns_name(), signer.dns_record());
            }
            Ok(())
        }
        Command::Serve => {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            Services::open(config, Clock::system()).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Sections(cmd) => {
            let s = Services::open(config, Clock::system()).await?;
            match cmd {
                SectionsCmd::Add {
                    slug,
                    name,
                    description,
                    feed,
                } => {
                    let sec = herald::articles::add_section(
                        s.store.as_ref(),
                        &slug,
                        &name,
                        &description,
                        feed.as_deref(),
                        s.clock.now(),
                    )
                    .await?;
                    println!("added section {} ({})", sec.slug, sec.name);
                }
                SectionsCmd::SetFeed { slug, url, clear } => {
                    if url.is_none() && !clear {
                        return Err(Failure(2, "give a feed URL, or --clear".into()));
                    }
                    herald::articles::set_feed(s.store.as_ref(), &slug, url.as_deref()).await?;
                    println!("{slug}: feed {}", url.as_deref().unwrap_or("removed"));
                }
                SectionsCmd::SetPage { slug, url, clear } => {
                    if url.is_none() && !clear {
                        return Err(Failure(2, "give the page URL, or --clear".into()));
                    }
                    herald::articles::set_page(s.store.as_ref(), &slug, url.as_deref()).await?;
                    println!("{slug}: page {}", url.as_deref().unwrap_or("removed"));
                }
                SectionsCmd::List { format } => sections_list(&s, format).await?,
            }
            Ok(())
        }
        Command::Subscribers(cmd) => {
            subscribers(cmd, Services::open(config, Clock::system()).await?).await
        }
        Command::Articles(cmd) => {
            articles(cmd, Services::open(config, Clock::system()).await?).await
        }
        Command::Schedules(cmd) => {
            schedules(cmd, Services::open(config, Clock::system()).await?).await
        }
        Command::Digests(cmd) => digests(cmd, Services::open(config, Clock::system()).await?).await,
        Command::Issues(IssuesCmd::List { limit, format }) => {
            issues_list(
                Services::open(config, Clock::system()).await?,
                limit,
                format,
            )
            .await
        }
        Command::Sends(args) => sends(args, Services::open(config, Clock::system()).await?).await,
        Command::Tokens(cmd) => tokens(cmd, Services::open(config, Clock::system()).await?).await,
        Command::Bounces(cmd) => bounces(cmd, Services::open(config, Clock::system()).await?).await,
        Command::Suppressions(cmd) => {
            suppressions(cmd, Services::open(config, Clock::system()).await?).await
        }
    }
}

async fn bounces(cmd: BouncesCmd, s: Services) -> Result<(), Failure> {
    match cmd {
        BouncesCmd::List {
            since,
            kind,
            limit,
            format,
        } => {
            let since = match since {
                Some(d) => Some(
                    s.clock.now()
                        - d.parse::<herald::domain::HumanDuration>()
                            .map_err(|e| Failure(2, format!("--since: {e}")))?
                            .as_chrono(),
                ),
                None => None,
            };
            let kind = match kind.as_deref().map(ReturnedKind::parse) {
                Some(None) => {
                    return Err(Failure(
                        2,
                        format!("--type must be one of {}", ReturnedKind::names()),
                    ));
                }
                Some(k) => k,
                None => None,
            };
            let rows = s
                .store
                .list_returned(since, kind, limit.clamp(1, 100_000))
                .await?;
            if format == Format::Json {
                return print_json(&rows);
            }
            for r in rows {
                println!(
                    "#{:<6} {}  {:<12} {:<28} {}{}",
                    r.id,
                    r.received_at.format("%Y-%m-%d %H:%M"),
                    r.kind,
                    r.email.as_deref().or(r.recipient.as_deref()).unwrap_or("-"),
                    r.action,
                    r.status.map(|st| format!(" [{st}]")).unwrap_or_default()
                );
            }
            Ok(())
        }
        BouncesCmd::Show { id } => {
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
            println!("{raw}");
            Ok(())
        }
    }
}

async fn suppressions(cmd: SuppressionsCmd, s: Services) -> Result<(), Failure> {
    let address = |e: &str| {
        herald::domain::EmailAddress::parse(e)
            .map(|a| a.as_str().to_string())
            .map_err(|err| Failure(2, format!("{e:?}: {err}")))
    };
    match cmd {
        SuppressionsCmd::List { format } => {
            let list = s.store.list_suppressions().await?;
            // The address, where a subscriber row still has it (erased ones have only the hash).
            let mut known = std::collections::HashMap::new();
            for status in ["bounced", "complained", "unsubscribed"] {
                let filter = herald::store::SubscriberFilter {
                    status: Some(status.into()),
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
            for x in list {
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
            Ok(())
        }
        SuppressionsCmd::Add { email, reason } => {
            let email = address(&email)?;
            if !herald::store::valid_suppression_reason(&reason) {
                return Err(Failure(
                    2,
                    "--reason is a word such as manual or legal".into(),
                ));
            }
            if s.store
                .add_suppression(&email, &reason, s.clock.now())
                .await?
            {
                println!("{email} suppressed ({reason})");
            } else {
                println!("{email} was suppressed already");
            }
            Ok(())
        }
        SuppressionsCmd::Remove { email } => {
            let email = address(&email)?;
            if s.store.remove_suppression(&email, s.clock.now()).await? {
                println!(
                    "{email} no longer suppressed (not subscribed again: they may sign up anew)"
                );
                Ok(())
            } else {
                Err(Failure(1, format!("{email} is not suppressed")))
            }
        }
    }
}

async fn subscribers(cmd: SubscribersCmd, s: Services) -> Result<(), Failure> {
    match cmd {
        SubscribersCmd::Import {
            file,
            sections,
            preconfirmed,
        } => {
            let f = std::fs::File::open(&file)
                .map_err(|e| Failure(1, format!("cannot open {}: {e}", file.display())))?;
            let summary = s
                .subs
                .import_csv(std::io::BufReader::new(f), &sections, preconfirmed)
                .await?;
            for (line, why) in &summary.bad_rows {
                eprintln!("{}:{line}: skipped: {why}", file.display());
            }
            let r = &summary.report;
            println!(
                "read {} rows: {} new, {} merged with existing, {} duplicates in file, {} bad, \
                 {} skipped (unsubscribed), {} skipped (erased/suppressed); {} confirmation mails queued",
                summary.rows_read,
                r.new_subscribers,
                r.merged,
                summary.duplicates_in_file,
                summary.bad_rows.len(),
                r.skipped_unsubscribed,
                r.skipped_suppressed,
                r.confirmations_queued
            );
            if r.confirmations_queued > 0 {
                println!("`herald serve` delivers the confirmation mails.");
            }
            Ok(())
        }
        SubscribersCmd::List {
            status,
            section,
            format,
        } => {
            if let Some(st) = &status
                && herald::domain::SubscriberStatus::parse(st).is_none()
            {
                return Err(Failure(
                    2,
                    format!(
                        "unknown status {st:?}: use pending, active, unsubscribed, bounced or complained"
                    ),
                ));
            }
            let list = s
                .subs
                .list_subscribers(status.as_deref(), section.as_deref())
                .await?;
            if format == Format::Json {
                return print_json(&list);
            }
            for sub in &list {
                println!(
                    "{:<40} {:<13} {}",
                    sub.email,
                    sub.status,
                    sub.created_at.format("%Y-%m-%d %H:%M")
                );
            }
            eprintln!("{} subscribers", list.len());
            Ok(())
        }
        SubscribersCmd::Show { email, format } => {
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
            println!("mails:");
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
            Ok(())
        }
        SubscribersCmd::Export { email } => match s.subs.export_subscriber(&email).await? {
            Some(x) => print_json(&x),
            None => Err(Failure(1, format!("no subscriber {email:?}"))),
        },
        SubscribersCmd::Delete { email } => {
            if s.subs.erase_subscriber(&email).await? {
                println!("erased {email}; a hash of the address stays on the suppression list");
                Ok(())
            } else {
                Err(Failure(1, format!("no subscriber {email:?}")))
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn sections_list(s: &Services, format: Format) -> Result<(), Failure> {
    let list = s.store.list_sections().await?;
    let feeds = s.store.section_feeds().await?;
    if format == Format::Json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|sec| {
                let mut v = serde_json::to_value(sec).unwrap_or_default();
                if let Some(f) = feeds.iter().find(|f| f.id == sec.id) {
                    v["feed_checked_at"] =
                        serde_json::to_value(f.feed_checked_at).unwrap_or_default();
                    v["feed_error"] = serde_json::to_value(&f.feed_error).unwrap_or_default();
                    v["feed_report"] = serde_json::to_value(&f.feed_report).unwrap_or_default();
                }
                v
            })
            .collect();
        return print_json(&v);
    }
    for sec in list {
        let state = match feeds.iter().find(|f| f.id == sec.id) {
            Some(f) if f.feed_url.is_some() => match (&f.feed_error, f.feed_checked_at) {
                (Some(e), _) => format!("  feed FAILING: {e}"),
                (None, Some(t)) => format!(
                    "  feed ok, checked {}{}",
                    t.format("%Y-%m-%d %H:%M"),
                    f.feed_report
                        .as_deref()
                        .map(|r| format!("; last read: {r}"))
                        .unwrap_or_default()
                ),
                (None, None) => "  feed not polled yet".to_string(),
            },
            _ => String::new(),
        };
        println!("{:<24} {}{state}", sec.slug, sec.name);
    }
    Ok(())
}

async fn issues_list(s: Services, limit: i64, format: Format) -> Result<(), Failure> {
    let issues = herald::digests::issues_with_counts(s.store.as_ref(), limit).await?;
    if format == Format::Json {
        return print_json(&issues);
    }
    for i in issues {
        let counts: Vec<String> = i.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "#{:<5} {:<16} {} {:<8} articles={:<4} sends={:<7} {}",
            i.issue.id,
            i.issue.schedule_name,
            i.issue.scheduled_for.format("%Y-%m-%d %H:%M"),
            i.issue.status,
            i.issue.article_count,
            i.issue.send_count,
            counts.join(" ")
        );
    }
    Ok(())
}

async fn articles(cmd: ArticlesCmd, s: Services) -> Result<(), Failure> {
    match cmd {
        ArticlesCmd::Add {
            section,
            title,
            url,
            summary,
            author,
            published,
            image,
        } => {
            let published = match published {
                Some(p) => Some(
                    chrono::DateTime::parse_from_rfc3339(&p)
                        .map_err(|e| {
                            Failure(
                                1,
                                format!(
                                    "--published {p:?} is not RFC 3339 (2015-10-01T14:00:00Z): {e}"
                                ),
                            )
                        })?
                        .with_timezone(&chrono::Utc),
                ),
                None => None,
            };
            let input = herald::articles::ArticleInput {
                section,
                title,
                url,
                summary,
                author,
                published,
                guid: None,
                image,
            };
            let w = herald::articles::add_article(s.store.as_ref(), input, s.clock.now()).await?;
            if w.added > 0 {
                println!("article added");
            } else if w.updated > 0 {
                println!("article corrected (same URL/guid in this section, not mailed yet)");
            } else {
                println!(
                    "already there (same URL/guid in this section, unchanged or already mailed): nothing changed"
                );
            }
            Ok(())
        }
        ArticlesCmd::Import {
            section,
            file,
            base,
        } => {
            if let Some(b) = &base
                && !url::Url::parse(b).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                return Err(Failure(
                    2,
                    format!("--base must be an http(s) URL, got {b:?}"),
                ));
            }
            let limit = s.config.feeds.max_size;
            let size = std::fs::metadata(&file)
                .map_err(|e| Failure(1, format!("cannot read {}: {e}", file.display())))?
                .len();
            if size > limit.0 {
                return Err(Failure(
                    1,
                    format!(
                        "{}: the feed is larger than {limit} (feeds.max_size)",
                        file.display()
                    ),
                ));
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| Failure(1, format!("cannot read {}: {e}", file.display())))?;
            let outcome = herald::articles::import_feed(
                s.store.as_ref(),
                &section,
                &bytes,
                base.as_deref(),
                s.clock.now(),
            )
            .await
            .map_err(|e| Failure(1, format!("{}: {e}", file.display())))?;
            println!("{outcome} in {section}");
            Ok(())
        }
        ArticlesCmd::List {
            section,
            limit,
            format,
        } => {
            let section_id = match section {
                Some(slug) => Some(
                    herald::articles::section_by_slug(s.store.as_ref(), &slug)
                        .await?
                        .id,
                ),
                None => None,
            };
            let list = s.store.list_articles(section_id, limit).await?;
            if format == Format::Json {
                return print_json(&list);
            }
            for a in list {
                println!(
                    "{} {}  {}",
                    a.created_at.format("%Y-%m-%d %H:%M"),
                    a.title,
                    a.url
                );
            }
            Ok(())
        }
    }
}

async fn schedules(cmd: SchedulesCmd, s: Services) -> Result<(), Failure> {
    let d = &s.digests;
    match cmd {
        SchedulesCmd::Add {
            name,
            cron,
            sections,
            timezone,
            subject,
        } => {
            let sched = d
                .add_schedule(
                    &name,
                    &cron,
                    &sections,
                    timezone.as_deref(),
                    subject.as_deref(),
                )
                .await?;
            println!(
                "added schedule {} ({} {}), next run {}",
                sched.name, sched.cron, sched.timezone, sched.next_run_at
            );
        }
        SchedulesCmd::List { format } => {
            let list = d.list_schedules().await?;
            if format == Format::Json {
                return print_json(&list);
            }
            for v in list {
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
        }
        SchedulesCmd::Pause { name } => {
            d.pause(&name).await?;
            println!("{name} paused");
        }
        SchedulesCmd::Resume { name } => {
            d.resume(&name).await?;
            println!("{name} resumed");
        }
        SchedulesCmd::Images { name, state } => {
            d.set_images(&name, state == "on").await?;
            println!("{name}: pictures {state}");
        }
        SchedulesCmd::Remove { name } => {
            d.remove(&name).await?;
            println!("{name} removed");
        }
    }
    Ok(())
}

async fn digests(cmd: DigestsCmd, s: Services) -> Result<(), Failure> {
    match cmd {
        DigestsCmd::Preview { name, to, html } => {
            let r = s.digests.preview(&name, to.as_deref()).await?;
            println!("To: {}\nSubject: {}\n", r.to, r.subject);
            println!("{}", if html { &r.html } else { &r.text });
            Ok(())
        }
        DigestsCmd::Run { name, queue_only } => {
            let started = std::time::Instant::now();
            let issue = s.digests.run_now(&name).await?;
            if issue.status == "skipped" {
                println!("issue #{}: no new articles, nothing to send", issue.id);
                return Ok(());
            }
            let made = started.elapsed();
            let issue = s.digests.fill(issue).await?;
            if queue_only {
                println!(
                    "issue #{}: {} articles, made in {:.3}s; {} sends queued in {:.2}s",
                    issue.id,
                    issue.article_count,
                    made.as_secs_f64(),
                    issue.send_count,
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            eprintln!(
                "issue #{}: {} articles, {} readers",
                issue.id, issue.article_count, issue.send_count
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
                if left == 0 {
                    break;
                }
                // Some sends wait for a retry (the server deferred them): sleep until the
                // earliest is due. Another herald may be delivering them meanwhile.
                let wait = match s.store.next_due_at().await? {
                    Some(t) => (t - s.clock.now()).to_std().unwrap_or_default(),
                    None => std::time::Duration::from_secs(1),
                };
                tokio::time::sleep(wait.clamp(
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
            println!("issue #{} settled: {}", issue.id, text.join(" "));
            Ok(())
        }
    }
}

fn status_ok(st: &str) -> Result<(), Failure> {
    if herald::store::SendStatus::parse(st).is_none() {
        return Err(Failure(
            2,
            format!(
                "unknown send status {st:?}: use queued, sending, sent, retrying, failed, bounced or suppressed"
            ),
        ));
    }
    Ok(())
}

async fn sends(args: SendsArgs, s: Services) -> Result<(), Failure> {
    if let Some(SendsCmd::Retry { issue, status }) = args.retry {
        status_ok(&status)?;
        if status != herald::store::SendStatus::Failed.as_str() {
            return Err(Failure(
                2,
                format!(
                    "only failed sends can be retried (not {status:?}): sent mail would be delivered twice, \
                     queued, retrying and sending ones are still being delivered, and bounced or suppressed \
                     addresses must not get mail"
                ),
            ));
        }
        let n = s.store.requeue_sends(issue, &status, s.clock.now()).await?;
        println!("{n} sends of issue #{issue} re-queued; `herald serve` delivers them");
        return Ok(());
    }
    if let Some(st) = &args.status {
        status_ok(st)?;
    }
    let since = match &args.since {
        Some(d) => {
            let d: herald::domain::HumanDuration =
                d.parse().map_err(|e| Failure(2, format!("--since: {e}")))?;
            Some(s.clock.now() - d.as_chrono())
        }
        None => None,
    };
    let email = match &args.email {
        Some(e) => Some(
            herald::domain::EmailAddress::parse(e)
                .map_err(|err| Failure(2, format!("--email: {err}")))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let mut filter = herald::store::SendFilter {
        issue_id: args.issue,
        status: args.status.clone(),
        email,
        updated_since: since,
        limit: Some(args.limit),
    };
    let mut seen: std::collections::HashSet<(i64, chrono::DateTime<chrono::Utc>)> =
        Default::default();
    loop {
        let rows = s.store.list_sends(&filter).await?;
        for r in &rows {
            if !seen.insert((r.id, r.updated_at)) {
                continue;
            }
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

async fn tokens(cmd: TokensCmd, s: Services) -> Result<(), Failure> {
    match cmd {
        TokensCmd::Add { name, role } => {
            let token =
                herald::web::api::issue_token(s.store.as_ref(), &name, &role, s.clock.now())
                    .await?;
            println!("{token}");
            eprintln!(
                "token {name} ({role}) created; it is shown only now: keep it somewhere safe"
            );
        }
        TokensCmd::List { format } => {
            let list = s.store.list_api_tokens().await?;
            if format == Format::Json {
                return print_json(&list);
            }
            for t in list {
                println!(
                    "{:<24} {:<9} created {}{}",
                    t.name,
                    t.role,
                    t.created_at.format("%Y-%m-%d"),
                    t.revoked_at
                        .map(|r| format!(", revoked {}", r.format("%Y-%m-%d")))
                        .unwrap_or_default()
                );
            }
        }
        TokensCmd::Revoke { name } => {
            if !s.store.revoke_api_token(&name, s.clock.now()).await? {
                return Err(Failure(1, format!("no active token named {name:?}")));
            }
            println!("token {name} revoked");
        }
    }
    Ok(())
}

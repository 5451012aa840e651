//! The `herald` command line: one module per command group, each with its clap arguments
//! and its `run`; `main.rs` only parses and dispatches.
//!
//! Conventions: data goes to stdout (tables, JSON), what a person reads about it (counts,
//! "nothing found", what to do next) to stderr, so `herald sends --format json | jq` sees
//! only data. Exit codes: 0 ok, 1 the operation failed (bad input, conflict, runtime
//! error), 2 usage or configuration error.

mod articles;
mod audit;
mod bounces;
mod digests;
mod domains;
mod issues;
mod schedules;
mod sections;
mod sends;
mod subscribers;
mod suppressions;
mod tokens;
mod users;

use clap::{Parser, Subcommand, ValueEnum};
use herald::config::Config;
use herald::{App, Services, clock::Clock};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Newsletter subscription and delivery daemon",
    long_about = "Newsletter subscription and delivery daemon.\n\n\
        Settings come from the embedded defaults, then --config FILE, then HERALD_* \
        variables (e.g. HERALD_DATABASE__URL). Every command but `serve` and `migrate` \
        works on an existing database."
)]
pub struct Cli {
    /// Config file (TOML); only the keys it sets override the embedded defaults.
    #[arg(
        long,
        global = true,
        env = "HERALD_CONFIG",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
    /// How log lines are written to stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HERALD_LOG_FORMAT",
        help_heading = "Global options"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How a listing is printed.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    /// A table for people.
    #[default]
    Text,
    /// JSON for programs.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the web server, the scheduler and the delivery workers until SIGINT/SIGTERM.
    Serve,
    /// Create the database if it is missing, apply migrations, and exit.
    Migrate,
    /// Print a new random secret key for `secret_key` / HERALD_SECRET_KEY.
    Secret,
    /// Check the configuration, say which database and mail transport it names, and print
    /// the DKIM record to publish.
    CheckConfig,
    /// Sections readers can subscribe to.
    #[command(subcommand)]
    Sections(sections::Cmd),
    /// Subscribers: import, list, show, export, delete.
    #[command(subcommand)]
    Subscribers(subscribers::Cmd),
    /// Articles: add, import a feed file, list.
    #[command(subcommand)]
    Articles(articles::Cmd),
    /// Digest schedules (cron).
    #[command(subcommand)]
    Schedules(schedules::Cmd),
    /// Preview or run a digest now.
    #[command(subcommand)]
    Digests(digests::Cmd),
    /// Issues (digest runs) with their delivery counts.
    #[command(subcommand)]
    Issues(issues::Cmd),
    /// The delivery log; `sends retry` re-queues failed sends.
    Sends(sends::Args),
    /// API tokens for /api/v1.
    #[command(subcommand)]
    Tokens(tokens::Cmd),
    /// Mail that came back: bounces, complaints, unsubscribes by mail, auto-replies.
    #[command(subcommand)]
    Bounces(bounces::Cmd),
    /// Addresses herald sends nothing to, and why.
    #[command(subcommand)]
    Suppressions(suppressions::Cmd),
    /// Receiving domains paused for refusing our mail (blocklists), and resuming them.
    #[command(subcommand)]
    Domains(domains::Cmd),
    /// People who log in to the web console at /admin.
    #[command(subcommand)]
    Users(users::Cmd),
    /// Who did what, when and from where (console, API, CLI), newest first.
    Audit(audit::Args),
}

/// A failure with its exit code.
pub struct Failure(pub u8, pub String);

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure(2, msg.into())
    }
}

/// A failed operation (exit 1), said with its causes ("database error: … : disk full"),
/// not only the outermost message.
impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, herald::telemetry::error_chain(&e))
    }
}

pub type CliResult = Result<(), Failure>;

pub fn print_json<T: serde::Serialize>(v: &T) -> CliResult {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A listing as every `list` command prints it: JSON with `--format json`; otherwise a line
/// per item on stdout and the count ("3 users") on stderr.
pub fn print_list<T: serde::Serialize>(
    list: &[T],
    format: Format,
    (one, many): (&str, &str),
    line: impl Fn(&T) -> String,
) -> CliResult {
    if format == Format::Json {
        return print_json(&list);
    }
    for item in list {
        println!("{}", line(item));
    }
    eprintln!("{}", count(list.len() as i64, one, many));
    Ok(())
}

/// "1 subscriber", "2 subscribers".
pub fn count(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `--since 7d` as the instant that long ago.
pub fn since(
    flag: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Failure> {
    match flag {
        Some(d) => {
            let d: herald::domain::HumanDuration = d
                .parse()
                .map_err(|e| Failure::usage(format!("--since: {e}")))?;
            Ok(Some(now - d.as_chrono()))
        }
        None => Ok(None),
    }
}

/// An address given on the command line, normalised as the store keeps it.
pub fn address(flag: &str, e: &str) -> Result<String, Failure> {
    herald::domain::EmailAddress::parse(e)
        .map(|a| a.as_str().to_string())
        .map_err(|err| Failure::usage(format!("{flag}{e:?}: {}", err.plain())))
}

async fn open(config: Config) -> Result<Services, Failure> {
    Ok(Services::open_existing(config, Clock::system()).await?)
}

pub async fn run(command: Command, config: Config) -> CliResult {
    match command {
        Command::Secret => {
            println!("{}", herald::domain::SecretKey::generate_text());
            Ok(())
        }
        Command::CheckConfig => {
            let keys = herald::keys::Keys::load(&config)
                .map_err(|e| Failure::usage(format!("configuration error: {e}")))?;
            println!("configuration ok");
            println!("database: {}", herald::database_label(&config.database.url));
            println!(
                "mail: {}",
                herald::delivery::Transport::from_config(&config.mail, None).describe()
            );
            println!("public URL: {}", config.http.public_url);
            // Every address a mail carries, so a wrong one is seen before the first digest.
            let public = config.http.public_url.trim_end_matches('/');
            println!("URLs in mails:");
            println!(
                "  site (masthead, footer, \"and N more\"): {}",
                config.site.url
            );
            println!(
                "  confirm, preferences, unsubscribe: {public}/confirm/…, {public}/preferences/…, {public}/unsubscribe/…"
            );
            println!("  signup form (List-Subscribe): {public}/subscribe");
            if config.digests.archive {
                println!(
                    "  archive (View in browser, List-Archive, Archived-At): {public}/archive/…"
                );
            }
            if !config.site.logo_url.is_empty() {
                println!("  logo: {}", config.site.logo_url);
            }
            for w in config.warnings().into_iter().chain(keys.warnings()) {
                println!("warning: {w}");
            }
            if let Some(signer) = &keys.dkim {
                let keys = signer.keys();
                println!(
                    "DKIM: publish {} (each value as written: strings of at most 255 characters, which resolvers join)",
                    if keys.len() == 1 {
                        "this TXT record"
                    } else {
                        "these TXT records"
                    }
                );
                for key in keys {
                    println!("  {}  TXT  {}", key.dns_name(), key.dns_record_strings());
                }
            }
            Ok(())
        }
        Command::Serve => {
            let app = App::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            let label = herald::database_label(&config.database.url);
            Services::open(config, Clock::system()).await?;
            println!("migrations applied to {label}");
            Ok(())
        }
        Command::Sections(cmd) => audited(config, "sections", |s| sections::run(cmd, s)).await,
        Command::Subscribers(cmd) => {
            audited(config, "subscribers", |s| subscribers::run(cmd, s)).await
        }
        Command::Articles(cmd) => audited(config, "articles", |s| articles::run(cmd, s)).await,
        Command::Schedules(cmd) => audited(config, "schedules", |s| schedules::run(cmd, s)).await,
        Command::Digests(cmd) => audited(config, "digests", |s| digests::run(cmd, s)).await,
        Command::Issues(cmd) => audited(config, "issues", |s| issues::run(cmd, s)).await,
        Command::Sends(args) => audited(config, "sends", |s| sends::run(args, s)).await,
        Command::Tokens(cmd) => audited(config, "tokens", |s| tokens::run(cmd, s)).await,
        Command::Bounces(cmd) => audited(config, "bounces", |s| bounces::run(cmd, s)).await,
        Command::Suppressions(cmd) => {
            audited(config, "suppressions", |s| suppressions::run(cmd, s)).await
        }
        Command::Domains(cmd) => audited(config, "domains", |s| domains::run(cmd, s)).await,
        Command::Users(cmd) => audited(config, "users", |s| users::run(cmd, s)).await,
        Command::Audit(args) => audit::run(args, open(config).await?).await,
    }
}

/// Run a command of `group` against the database; if it changed something (any verb but
/// list, show, preview and help, so a new command is audited unless it only reads) and
/// succeeded, write it to the audit log: who ran it (the login name), the words typed after
/// the verb (any holding an address written as "<address>").
async fn audited<F, Fut>(config: Config, group: &str, run: F) -> CliResult
where
    F: FnOnce(Services) -> Fut,
    Fut: std::future::Future<Output = CliResult>,
{
    let s = open(config).await?;
    let (store, clock) = (s.store.clone(), s.clock.clone());
    let result = run(s).await;
    if result.is_ok()
        && let Some((action, subject)) = cli_action(group, std::env::args().skip(1))
    {
        let entry = herald::audit::NewAudit {
            at: clock.now(),
            actor: format!("cli ({})", login_name()),
            via: herald::audit::Via::Cli,
            address: None,
            action,
            subject,
            outcome: "ok".into(),
        };
        herald::audit::record(store.as_ref(), entry).await;
    }
    result
}

/// The action ("schedules pause") and subject (the rest, "morning") of a command line, or
/// None for one that only reads.
fn cli_action(group: &str, args: impl Iterator<Item = String>) -> Option<(String, String)> {
    let mut args = args.skip_while(|a| a != group).skip(1);
    let verb = args.next().filter(|v| !v.starts_with('-'))?;
    if matches!(verb.as_str(), "list" | "show" | "preview" | "help") {
        return None;
    }
    let rest: Vec<String> = args
        .map(|a| {
            if a.contains('@') {
                "<address>".into()
            } else {
                a
            }
        })
        .collect();
    let subject: String = rest.join(" ").chars().take(200).collect();
    Some((format!("{group} {verb}"), subject))
}

/// Who runs the command, as the environment says.
pub fn login_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown user".into())
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

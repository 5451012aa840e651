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
                } => {
                    let sec = herald::articles::add_section(
                        s.store.as_ref(),
                        &slug,
                        &name,
                        &description,
                        s.clock.now(),
                    )
                    .await?;
                    println!("added section {} ({})", sec.slug, sec.name);
                }
                SectionsCmd::List { format } => {
                    let list = s.store.list_sections().await?;
                    if format == Format::Json {
                        return print_json(&list);
                    }
                    for sec in list {
                        println!("{:<24} {}", sec.slug, sec.name);
                    }
                }
            }
            Ok(())
        }
        Command::Subscribers(cmd) => {
            subscribers(cmd, Services::open(config, Clock::system()).await?).await
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

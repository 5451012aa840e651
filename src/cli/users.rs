//! `herald users`: the people who log in to the console at `/admin`.

use super::{CliResult, Failure, Format, print_list};
use clap::Subcommand;
use herald::Services;
use herald::store::Role;

#[derive(Subcommand)]
pub enum Cmd {
    /// Add a console user. The password is asked for (twice, not shown), or read from
    /// standard input with --password-stdin.
    Add {
        /// Their login name.
        name: String,
        /// operator: reads everything; staff: also changes and sends.
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from standard input (its first line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List console users (never their passwords).
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Remove a user; their sessions end at once.
    Remove { name: String },
    /// Let a user whose failed logins are being throttled log in again at once (from every
    /// address).
    Unlock { name: String },
    /// Set a new password; every session of that user ends, and their failed logins are
    /// forgotten.
    Passwd {
        name: String,
        /// Read the password from standard input (its first line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Add {
            name,
            role,
            password_stdin,
        } => {
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                return Err(Failure::usage(
                    "a user name is 1 to 64 letters, digits, dots, dashes, underscores or @",
                ));
            }
            if role == Role::Webhook {
                return Err(Failure::usage(
                    "a console user is staff or operator; webhook is a role of API tokens (herald tokens add)",
                ));
            }
            let hash = new_password(password_stdin)?;
            s.store.add_user(&name, role, &hash, s.clock.now()).await?;
            println!(
                "added {name} ({role}); they log in at {}/admin",
                s.config.http.public_url
            );
        }
        Cmd::List { format } => {
            let list = s.store.list_users().await?;
            print_list(&list, format, ("user", "users"), |u| {
                format!(
                    "{:<24} {:<9} since {}",
                    u.name,
                    u.role,
                    u.created_at.format("%Y-%m-%d")
                )
            })?;
        }
        Cmd::Remove { name } => {
            if !s.store.remove_user(&name).await? {
                return Err(Failure(1, format!("no user named {name:?}")));
            }
            println!("{name} removed; their sessions have ended");
        }
        Cmd::Passwd {
            name,
            password_stdin,
        } => {
            if s.store.user_login(&name).await?.is_none() {
                return Err(Failure(1, format!("no user named {name:?}")));
            }
            let hash = new_password(password_stdin)?;
            s.store
                .set_user_password(&name, &hash, s.clock.now())
                .await?;
            herald::access::unlock(s.store.as_ref(), &name).await?;
            println!("{name}: password changed; their sessions have ended");
        }
        Cmd::Unlock { name } => {
            if s.store.user_login(&name).await?.is_none() {
                return Err(Failure(1, format!("no user named {name:?}")));
            }
            let n = herald::access::unlock(s.store.as_ref(), &name).await?;
            println!(
                "{name}: {} forgotten; they may log in again",
                super::count(n as i64, "failed login", "failed logins")
            );
        }
    }
    Ok(())
}

/// A new password, hashed: from standard input, or asked for twice at the terminal.
fn new_password(from_stdin: bool) -> Result<String, Failure> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Failure(1, format!("cannot read the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = prompt("Password: ")?;
        let again = prompt("Again: ")?;
        if first != again {
            return Err(Failure(1, "the two passwords differ".into()));
        }
        first
    };
    herald::access::hash_password(&password).map_err(Failure::usage)
}

/// Read a line at the terminal without showing it.
fn prompt(what: &str) -> Result<String, Failure> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to ask for a password: use --password-stdin",
        ));
    }
    eprint!("{what}");
    // SAFETY: termios calls on standard input, a terminal (checked above); the old
    // settings are put back before returning.
    let old = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return Err(Failure(1, "cannot read the terminal's settings".into()));
        }
        let old = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        old
    };
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    // SAFETY: as above.
    unsafe {
        libc::tcsetattr(0, libc::TCSANOW, &old);
    }
    eprintln!();
    read.map_err(|e| Failure(1, format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

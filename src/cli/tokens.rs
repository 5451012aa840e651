//! `herald tokens`: bearer tokens for `/api/v1`.

use super::{CliResult, Failure, Format, print_list};
use clap::Subcommand;
use herald::Services;
use herald::store::Role;

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a token; it is printed once, only its hash is kept.
    Add {
        /// A name to know it by (e.g. the CMS that uses it).
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

pub async fn run(cmd: Cmd, s: Services) -> CliResult {
    match cmd {
        Cmd::Add { name, role } => {
            let token =
                herald::access::issue_token(s.store.as_ref(), &name, role, s.clock.now()).await?;
            println!("{token}");
            eprintln!(
                "token {name} ({role}) created; it is shown only now: keep it somewhere safe"
            );
        }
        Cmd::List { format } => {
            let list = s.store.list_api_tokens().await?;
            print_list(&list, format, ("token", "tokens"), |t| {
                format!(
                    "{:<24} {:<9} created {}{}",
                    t.name,
                    t.role,
                    t.created_at.format("%Y-%m-%d"),
                    t.revoked_at
                        .map(|r| format!(", revoked {}", r.format("%Y-%m-%d")))
                        .unwrap_or_default()
                )
            })?;
        }
        Cmd::Revoke { name } => {
            if !s.store.revoke_api_token(&name, s.clock.now()).await? {
                return Err(Failure(1, format!("no active token named {name:?}")));
            }
            println!("token {name} revoked");
        }
    }
    Ok(())
}

//! Getting mail out. The workers (`worker.rs`) drain the `sends` ledger through the slice
//! of the store they declare (`ledger.rs`), with parts that have one job each: the lease
//! keeper (`lease.rs`), the message builder (`builder.rs`: the composer's mail with every
//! header herald mails carry, `mail.rs`, `encode.rs`, signed by `dkim.rs`), the transports
//! (`transport.rs`: maildir, SMTP over our own NODELAY connections; it knows nothing of the
//! store), pacing and retries (`pacing.rs`), the outcome log and the gate that holds a
//! message until the previous outcome is written (`outcomes.rs`, `journal.rs`), and the
//! receiving domains' pauses (`domains.rs`).

mod builder;
mod dkim;
mod domains;
mod encode;
pub mod journal;
mod lease;
mod ledger;
mod mail;
mod outcomes;
mod pacing;
mod transport;
mod worker;

pub use builder::{ComposeError, Composed, Composer};
pub use dkim::{DkimKey, DkimKeyError, DkimSigner};
pub use domains::{DomainWatch, PauseSettings};
pub use lease::{Batch, IssueStops};
pub use ledger::Ledger;
pub use mail::{BuildError, ListMail, MailHeaders, OutgoingMail, build_message, new_message_id};
pub use outcomes::Gate;
pub use pacing::RetryPolicy;
pub(crate) use transport::tls_client_config;
pub use transport::{Handover, MailSender, SendError, Transport};
pub use worker::{BatchReport, DeliveryEngine, Stop, Workers};

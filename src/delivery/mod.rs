//! Getting mail out: building the message with every header herald mails carry
//! (`mail.rs`), signing it (`dkim.rs`), the transports (`transport.rs`: maildir, SMTP over our own NODELAY
//! connections), and the workers that drain the `sends` ledger with leases, retries and
//! rate limits (`worker.rs`), through the slice of the store they declare (`ledger.rs`).

mod dkim;
mod domains;
mod encode;
pub mod journal;
mod ledger;
mod mail;
mod transport;
mod worker;

pub use dkim::{DkimKey, DkimKeyError, DkimSigner};
pub use domains::{DomainWatch, PauseSettings};
pub use ledger::Ledger;
pub use mail::{BuildError, ListMail, MailHeaders, OutgoingMail, build_message, new_message_id};
pub(crate) use transport::tls_client_config;
pub use transport::{Gate, MailSender, SendError, Transport};
pub use worker::{
    Batch, BatchReport, ComposeError, Composed, Composer, DeliveryEngine, RetryPolicy, Stop,
    Workers,
};

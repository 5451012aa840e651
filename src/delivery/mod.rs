//! Getting mail out: building the message with every header herald mails carry
//! (`mail.rs`), the transports (`transport.rs`: maildir, SMTP over our own NODELAY
//! connections), and the workers that drain the `sends` ledger with leases, retries and
//! rate limits (`worker.rs`).

mod mail;
mod transport;
mod worker;

pub use mail::{
    BuildError, MailHeaders, OutgoingMail, build_message, dkim_config, dkim_signing_key,
    new_message_id,
};
pub use transport::{MailSender, SendError, Transport};
pub use worker::{Batch, BatchReport, Composed, Composer, DeliveryEngine, RetryPolicy};

//! What comes back after the relay said 250: delivery status notifications (RFC 3464) and
//! the common non-standard bounces, abuse reports (RFC 5965 ARF), and auto-replies, which
//! are never bounces. This module reads one returned message and says which it is and
//! whom and what it is about; deciding what to do with it is the caller's.

mod classify;
mod imap;
mod inbound;
pub mod listener;
pub mod sns;
mod store;
pub use store::{ReturnedStore, SuppressionStore};

pub use classify::{Bounce, Complaint, Returned, classify};
pub use imap::{ImapError, ImapReader, ImapReport};
pub use inbound::Inbound;

//! The SQL both dialects share, written once and compiled once per backend: `sqlite.rs` and
//! `postgres.rs` each include this folder as their `sql` module after naming themselves
//! `Backend` and their sqlx database `Db`, so every `impl … for Backend` here is an impl for
//! that backend. The few statements a dialect writes its own way are inherent `dialect_*`
//! methods of the backend, which these impls forward to.
//!
//! Placeholders are `$N` (SQLite accepts them too, by number). Every write transaction
//! starts with the backend's `begin_write()` (`BEGIN IMMEDIATE` on SQLite).

mod access;
mod articles;
mod audit;
mod issues;
mod ledger;
mod returned;
mod schedules;
mod store;
mod subscriber_admin;
mod subscribers;
mod suppressions;

/// What every file here names without a path.
mod prelude {
    pub(super) use super::super::{Backend, Db};
    pub(super) use crate::store::*;
    pub(super) use chrono::{DateTime, Duration, Utc};
}

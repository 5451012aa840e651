//! Plain types that are valid by construction. A value of one of these types can only
//! exist if it passed parsing, so nothing downstream checks it again.

mod duration;
mod email;
mod returned;
mod role;
mod schedule;
mod send_status;
mod signup;
mod size;
mod slug;
mod token;
mod verdict;

pub use duration::{HumanDuration, ParseDurationError};
pub use email::{EmailAddress, EmailError, mail_domain};
pub use returned::{ReturnedEffect, ReturnedKind, soft_limit_reached};
pub use role::Role;
pub use schedule::{CronSchedule, ScheduleError};
pub use send_status::SendStatus;
pub use signup::{SignupAction, SubscriberStatus};
pub use size::{ByteSize, ParseSizeError};
pub use slug::{SectionSlug, SlugError};
pub use token::{
    ManageToken, RandomToken, SecretKey, SendRef, TokenHash, TokenPurpose, sha256_hex,
};
pub use verdict::{StatusCode, Verdict, judge, judge_reply};

/// Reject any control character (CR/LF above all): such values would end up in mail
/// headers or logs, where a line break is an injection.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

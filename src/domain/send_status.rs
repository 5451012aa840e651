//! Where a send is in its life, and what may happen to it next: a rule of herald's, not of
//! its storage (rows carry the state as text, see `store::text_column!`).

use serde::{Deserialize, Serialize};

/// Where a send is in its life. `Sent` only after the server's 250.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum SendStatus {
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
    Bounced,
    Suppressed,
    /// Its issue was stopped before it went out: final, never sent, never retried.
    Cancelled,
}

impl SendStatus {
    pub const ALL: [SendStatus; 8] = [
        SendStatus::Queued,
        SendStatus::Sending,
        SendStatus::Sent,
        SendStatus::Retrying,
        SendStatus::Failed,
        SendStatus::Bounced,
        SendStatus::Suppressed,
        SendStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Queued => "queued",
            SendStatus::Sending => "sending",
            SendStatus::Sent => "sent",
            SendStatus::Retrying => "retrying",
            SendStatus::Failed => "failed",
            SendStatus::Bounced => "bounced",
            SendStatus::Suppressed => "suppressed",
            SendStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Why sends in this state may not be put back in the queue, or None for `failed`,
    /// the only ones that may (the rule `herald sends retry` and any other caller share).
    pub fn why_not_retried(self) -> Option<&'static str> {
        match self {
            SendStatus::Failed => None,
            SendStatus::Sent => Some("sent mail would be delivered twice"),
            SendStatus::Sending => Some("one in flight would be taken from its worker"),
            SendStatus::Queued | SendStatus::Retrying => Some("it is still in the queue"),
            SendStatus::Bounced | SendStatus::Suppressed => {
                Some("a bounced or suppressed address must not get mail")
            }
            SendStatus::Cancelled => Some("its issue was stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a failed send goes back in the queue: a sent one would arrive twice, one in
    /// flight would be taken from its worker, a bounced or suppressed address gets nothing.
    #[test]
    fn only_failed_sends_may_be_retried() {
        let retriable: Vec<SendStatus> = SendStatus::ALL
            .into_iter()
            .filter(|s| s.why_not_retried().is_none())
            .collect();
        assert_eq!(retriable, [SendStatus::Failed]);
    }
}

//! What a signup does to an address, decided from its current state alone. Pure, so the
//! store can apply it inside one transaction and tests can read it as a table.

use chrono::{DateTime, Duration, Utc};

/// A subscriber's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum SubscriberStatus {
    Pending,
    Active,
    Unsubscribed,
    Bounced,
    Complained,
}

impl SubscriberStatus {
    pub const ALL: [SubscriberStatus; 5] = [
        SubscriberStatus::Pending,
        SubscriberStatus::Active,
        SubscriberStatus::Unsubscribed,
        SubscriberStatus::Bounced,
        SubscriberStatus::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Pending => "pending",
            SubscriberStatus::Active => "active",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Bounced => "bounced",
            SubscriberStatus::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What to do for a signup request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupAction {
    /// Make (or keep) the address pending with the chosen sections and mail a confirmation link.
    SendConfirmation,
    /// Make (or keep) it pending with the chosen sections, but mail nothing: one went out
    /// within the cooldown (mail-bombing guard).
    PendingWithinCooldown,
    /// Already confirmed: mail a "you are subscribed — manage here" note.
    SendAlreadySubscribed,
    /// Already confirmed and noted within the cooldown: nothing.
    Nothing,
    /// The address is suppressed (it hard-bounced, its owner complained, an operator
    /// suppressed it, or it was erased): nothing is written and nothing is mailed (a
    /// stranger's signup must not reach it; the caller's answer is the same).
    Suppressed,
}

impl SignupAction {
    /// `existing`: the address's status and when it was last sent a signup notice;
    /// `suppressed`: the address is on the suppression list, for whatever reason.
    ///
    /// A former subscriber (unsubscribed) gets a fresh confirmation link but stays
    /// unsubscribed until they click it: an anonymous signup never undoes an unsubscribe.
    pub fn decide(
        existing: Option<(SubscriberStatus, Option<DateTime<Utc>>)>,
        suppressed: bool,
        now: DateTime<Utc>,
        cooldown: Duration,
    ) -> Self {
        let cooling = |last: Option<DateTime<Utc>>| last.is_some_and(|t| now < t + cooldown);
        if suppressed {
            return SignupAction::Suppressed;
        }
        match existing {
            None => SignupAction::SendConfirmation,
            Some((SubscriberStatus::Bounced | SubscriberStatus::Complained, _)) => {
                SignupAction::Suppressed
            }
            Some((SubscriberStatus::Active, last)) => {
                if cooling(last) {
                    SignupAction::Nothing
                } else {
                    SignupAction::SendAlreadySubscribed
                }
            }
            // Pending, or a former subscriber signing up anew: a fresh double opt-in.
            Some((_, last)) => {
                if cooling(last) {
                    SignupAction::PendingWithinCooldown
                } else {
                    SignupAction::SendConfirmation
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SignupAction::*;
    use SubscriberStatus::*;

    #[test]
    fn decision_table() {
        let now = Utc::now();
        let cd = Duration::minutes(10);
        let recent = Some(now - Duration::minutes(3));
        let old = Some(now - Duration::minutes(30));
        assert_eq!(SignupAction::decide(None, false, now, cd), SendConfirmation);
        assert_eq!(
            SignupAction::decide(Some((Pending, recent)), false, now, cd),
            PendingWithinCooldown
        );
        assert_eq!(
            SignupAction::decide(Some((Pending, old)), false, now, cd),
            SendConfirmation
        );
        assert_eq!(
            SignupAction::decide(Some((Unsubscribed, None)), false, now, cd),
            SendConfirmation
        );
        assert_eq!(
            SignupAction::decide(Some((Active, None)), false, now, cd),
            SendAlreadySubscribed
        );
        assert_eq!(
            SignupAction::decide(Some((Active, recent)), false, now, cd),
            Nothing
        );
        for st in [Bounced, Complained] {
            assert_eq!(
                SignupAction::decide(Some((st, old)), false, now, cd),
                Suppressed
            );
        }
        assert_eq!(SignupAction::decide(None, true, now, cd), Suppressed);
    }
}

//! Who may do what: the roles console users and API tokens have. A rule of herald's, not
//! of its storage (rows carry the role as text, see `store::text_column!`).

use serde::{Deserialize, Serialize};

/// What a console user or an API token may do (one name for both: they share the roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read and write: articles, schedules, suppressions, returned mail.
    Staff,
    /// Read only.
    Operator,
    /// Only report returned mail (a relay's webhook): it can unsubscribe and suppress
    /// readers, so no reading token may, and this one may do nothing else. API tokens
    /// only; console users are staff or operators.
    Webhook,
}

impl Role {
    /// Staff change and send; operators only look; a webhook token only reports returned
    /// mail. The console's gate and the API ask this, not the variant.
    pub fn may_change(self) -> bool {
        self == Role::Staff
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Operator => "operator",
            Role::Webhook => "webhook",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Role::Staff, Role::Operator, Role::Webhook]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

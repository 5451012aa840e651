//! The audit log: who did what, when and from where. Every change made in the console (the
//! console's gate writes it after each POST, so a new form cannot forget it), through the
//! API (its authorisation layer, likewise) or with the CLI (its dispatcher, for the commands
//! that change something or take readers' data out), and every console login and refused
//! login. Actions are named as the CLI names them: group and verb ("schedules pause").
//! Readers' addresses are never written: erasing a reader must leave no address behind.

use crate::store::StoreResult;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where an action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Console,
    Api,
    Cli,
}

impl Via {
    pub const ALL: [Via; 3] = [Via::Console, Via::Api, Via::Cli];
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Api => "api",
            Via::Cli => "cli",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}
// Read and written as text: `store::text_column!`.

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub via: Via,
    pub address: Option<String>,
    pub action: String,
    pub subject: String,
    pub outcome: String,
}

/// A line to write.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub via: Via,
    pub address: Option<String>,
    pub action: String,
    pub subject: String,
    pub outcome: String,
}

/// Which lines: newest first, below `before` (an id), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Actions starting with this ("schedules" finds every schedule change).
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// What the audit log needs of the store; the SQL is in `store/sql/audit.rs`.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn record_audit(&self, entry: &NewAudit) -> StoreResult<()>;
    async fn audit_log(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
}

/// Write a line. The action it records has already happened: a failure to write is an
/// error in the log and a metric (`herald_audit_failures_total`), not a failed action.
pub async fn record(store: &dyn AuditStore, entry: NewAudit) {
    if let Err(e) = store.record_audit(&entry).await {
        metrics::counter!("herald_audit_failures_total").increment(1);
        tracing::error!(error = %e, actor = %entry.actor, action = %entry.action, "the audit log could not be written");
    }
}

/// The lines as CSV (RFC 4180, a header line first), for an auditor's spreadsheet.
pub fn to_csv(entries: &[AuditEntry]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id", "at", "actor", "via", "address", "action", "subject", "outcome",
    ])?;
    for e in entries {
        w.write_record([
            e.id.to_string().as_str(),
            &e.at.to_rfc3339(),
            // A leading =, +, - or @ would be a formula to a spreadsheet; a name typed at
            // the login form can be anything.
            &defused(&e.actor),
            e.via.as_str(),
            e.address.as_deref().unwrap_or(""),
            &e.action,
            &defused(&e.subject),
            &e.outcome,
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// A cell a spreadsheet will not run as a formula (OWASP's advice: a leading quote).
fn defused(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// The action and subject of a change made by `method` on `path` (the console's or the
/// API's, below their prefix): "/schedules/morning/pause" is "schedules pause" of
/// "morning"; a collection is added to, an item edited (POST) or removed (DELETE). Parts
/// that hold an address are written as "<address>".
pub fn action_of(method: &str, path: &str) -> (String, String) {
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|p| {
            let p = percent_decoded(p);
            if p.contains('@') {
                "<address>".into()
            } else {
                p
            }
        })
        .collect();
    // A last part that is a verb names the action; what stands between it and the group
    // is the subject.
    const VERBS: [&str; 13] = [
        "pause", "resume", "send", "remove", "stop", "retry", "lift", "erase", "images", "edit",
        "hold", "withdraw", "restore",
    ];
    let (action, subject) = match (method, parts.as_slice()) {
        ("POST", [one]) if one == "logout" => ("console logout".to_string(), String::new()),
        (_, [group, middle @ .., verb]) if VERBS.contains(&verb.as_str()) => {
            (format!("{group} {verb}"), middle.join("/"))
        }
        ("POST", [group]) => (format!("{group} add"), String::new()),
        ("POST", [group, item]) => (format!("{group} edit"), item.clone()),
        ("DELETE", [group, item]) => (format!("{group} remove"), item.clone()),
        _ => (format!("{method} {path}"), String::new()),
    };
    (action, subject)
}

/// A console path and query as the audit log keeps it: the site's address taken off, and
/// any query parameter holding an address left out.
pub fn page_of(location: &str) -> String {
    let path = location
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(location);
    let Some((path, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !percent_decoded(pair).contains('@'))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_as_the_cli_names_them() {
        let a = |m, p| action_of(m, p);
        let s = |x: &str, y: &str| (x.to_string(), y.to_string());
        assert_eq!(
            a("POST", "/schedules/morning/pause"),
            s("schedules pause", "morning")
        );
        assert_eq!(a("POST", "/schedules"), s("schedules add", ""));
        assert_eq!(
            a("POST", "/schedules/morning"),
            s("schedules edit", "morning")
        );
        assert_eq!(
            a("DELETE", "/schedules/morning"),
            s("schedules remove", "morning")
        );
        assert_eq!(a("POST", "/issues/42/stop"), s("issues stop", "42"));
        assert_eq!(a("POST", "/logout"), s("console logout", ""));
        assert_eq!(a("POST", "/suppressions/lift"), s("suppressions lift", ""));
        // An address in the path is never written.
        assert_eq!(
            a("DELETE", "/suppressions/ann%40example.com"),
            s("suppressions remove", "<address>")
        );
        assert_eq!(a("POST", "/sends/retry"), s("sends retry", ""));
        assert_eq!(a("POST", "/a/b/c/d"), s("POST /a/b/c/d", ""));
        assert_eq!(
            page_of("https://news.example/admin/suppressions?done=added&address=ann%40x.org"),
            "/admin/suppressions?done=added"
        );
        assert_eq!(
            page_of("/admin/issues/4#stopped"),
            "/admin/issues/4#stopped"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        let e = AuditEntry {
            id: 1,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            actor: "=HYPERLINK(\"x\")".into(),
            via: Via::Console,
            address: Some("192.0.2.1".into()),
            action: "console login".into(),
            subject: "a, \"b\"".into(),
            outcome: "refused: wrong name or password".into(),
        };
        let out = String::from_utf8(to_csv(&[e]).unwrap()).unwrap();
        assert_eq!(
            out,
            "id,at,actor,via,address,action,subject,outcome\n\
             1,1970-01-01T00:00:00+00:00,\"'=HYPERLINK(\"\"x\"\")\",console,192.0.2.1,\
             console login,\"a, \"\"b\"\"\",refused: wrong name or password\n"
        );
    }
}

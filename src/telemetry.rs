//! Logs (tracing: readable, or JSON for machines) and the process-wide Prometheus recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder is global to the process; install it once (tests start many apps).
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0])
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

/// Describe the metrics and make the counters exist from the start, so dashboards and
/// alerts see zeros rather than gaps.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("herald_signups_total", "Signup requests, by outcome");
    describe_counter!("herald_confirmations_total", "Subscriptions confirmed");
    describe_counter!("herald_unsubscribes_total", "Unsubscribes, by way");
    describe_counter!(
        "herald_mails_total",
        "Delivery attempts, by mail kind and resulting status"
    );
    describe_counter!(
        "herald_http_requests_total",
        "HTTP requests, by route pattern and status"
    );
    describe_gauge!("herald_send_queue_depth", "Sends not yet settled");
    describe_counter!(
        "herald_smtp_replies_total",
        "SMTP outcomes by reply class (2xx, 4xx, 5xx, connection)"
    );
    describe_gauge!(
        "herald_scheduler_lag_seconds",
        "How late the last due tick was picked up"
    );
    describe_counter!("herald_issues_total", "Digest issues made, by status");
    describe_counter!(
        "herald_feed_poll_errors_total",
        "Failed feed polls, by section"
    );
    describe_counter!("herald_articles_added_total", "New articles, by way in");
    describe_histogram!(
        "herald_send_duration_seconds",
        "Time to hand one message to the transport"
    );
    metrics::counter!("herald_signups_total", "outcome" => "confirmation_sent").absolute(0);
    metrics::counter!("herald_confirmations_total").absolute(0);
    metrics::counter!("herald_smtp_replies_total", "class" => "2xx").absolute(0);
    metrics::gauge!("herald_scheduler_lag_seconds").set(0.0);
    metrics::counter!("herald_unsubscribes_total", "via" => "link").absolute(0);
    metrics::counter!("herald_mails_total", "kind" => "confirm", "status" => "sent").absolute(0);
    metrics::counter!("herald_mails_total", "kind" => "confirm", "status" => "failed").absolute(0);
}

/// Install the log subscriber. `json` for machines; the level from HERALD_LOG or RUST_LOG.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colour only for a person at a terminal, and never with NO_COLOR set
    // (https://no-color.org): a log file or journald gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// An error with its causes ("error sending request: connection refused"), for logs and
/// health reports: the outermost message alone often names no cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot write the outcome")]
        Write(#[source] Middle),
        #[error("the ledger: {0}")]
        Says(#[source] Middle),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("database error")]
    struct Middle(#[source] std::io::Error);

    /// Every cause is said once, outermost first; one an outer message already quotes is
    /// not said again.
    #[test]
    fn causes_are_said_once_each() {
        let disk = || Middle(std::io::Error::other("disk full"));
        assert_eq!(
            error_chain(&Outer::Write(disk())),
            "cannot write the outcome: database error: disk full"
        );
        assert_eq!(
            error_chain(&Outer::Says(disk())),
            "the ledger: database error: disk full"
        );
    }
}

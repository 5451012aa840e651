//! Operator tools for subscribers: bulk import from CSV, listing, one person's record,
//! export (everything herald holds about them) and erasure.

use super::Subscriptions;
use crate::delivery::new_message_id;
use crate::domain::{EmailAddress, RandomToken, sha256_hex};
use crate::store::{ImportReport, ImportRow, SendRecord, StoreError, Subscriber, SubscriberFilter};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the CSV has no `email` column (its header is: {0})")]
    NoEmailColumn(String),
    #[error("the CSV cannot be parsed: {0}")]
    Csv(String),
    #[error("unknown section {0:?} (see `herald sections list`)")]
    UnknownSection(String),
    #[error("give at least one section with --sections")]
    NoSections,
    #[error("no valid rows to import")]
    NothingValid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of an import: what the store did, and the rows that were refused.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub rows_read: usize,
    pub duplicates_in_file: usize,
    /// (line number, reason)
    pub bad_rows: Vec<(u64, String)>,
    pub report: ImportReport,
}

/// Everything herald keeps about one person (GDPR Art. 15 / 20).
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberExport {
    #[serde(flatten)]
    pub subscriber: Subscriber,
    pub sections: Vec<String>,
    pub sends: Vec<SendRecord>,
}

impl Subscriptions {
    pub async fn section_ids_for(&self, slugs: &[String]) -> Result<Vec<i64>, ImportError> {
        let ids = crate::articles::section_ids(self.store.as_ref(), slugs)
            .await?
            .map_err(ImportError::UnknownSection)?;
        if ids.is_empty() {
            return Err(ImportError::NoSections);
        }
        Ok(ids)
    }

    /// Import a CSV with an `email` column. Bad rows are reported and skipped; the good ones
    /// are imported in one transaction; duplicates merge. Without `preconfirmed` each new
    /// address gets a confirmation mail (double opt-in still applies).
    pub async fn import_csv<R: std::io::Read>(
        &self,
        input: R,
        section_slugs: &[String],
        preconfirmed: bool,
    ) -> Result<ImportSummary, ImportError> {
        let section_ids = self.section_ids_for(section_slugs).await?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| ImportError::Csv(e.to_string()))?
            .clone();
        let col = headers
            .iter()
            .position(|h| {
                h.trim_start_matches('\u{feff}')
                    .eq_ignore_ascii_case("email")
            })
            .ok_or_else(|| {
                ImportError::NoEmailColumn(headers.iter().collect::<Vec<_>>().join(","))
            })?;
        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        let mut bad_rows = Vec::new();
        let mut rows_read = 0;
        let mut duplicates_in_file = 0;
        for record in reader.records() {
            rows_read += 1;
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    bad_rows.push((line, format!("unreadable row: {e}")));
                    continue;
                }
            };
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let raw = record.get(col).unwrap_or("");
            match EmailAddress::parse(raw) {
                Ok(email) => {
                    if !seen.insert(email.clone()) {
                        duplicates_in_file += 1;
                        continue;
                    }
                    let token = RandomToken::generate();
                    let message_id = new_message_id(&self.mail_domain);
                    rows.push(ImportRow {
                        email_hash: sha256_hex(email.as_str()),
                        email: email.as_str().to_string(),
                        sealed_token: self.key.seal(&message_id, &token),
                        token_hash: token.hash().0,
                        message_id,
                    });
                }
                Err(e) => {
                    let shown: String = raw.chars().take(60).filter(|c| !c.is_control()).collect();
                    bad_rows.push((line, format!("{shown:?}: {}", e.plain())));
                }
            }
        }
        if rows.is_empty() {
            return Err(ImportError::NothingValid);
        }
        let form = if preconfirmed {
            "import:preconfirmed"
        } else {
            "import"
        };
        let report = self
            .store
            .import_subscribers(
                &rows,
                &section_ids,
                preconfirmed,
                form,
                self.clock.now(),
                self.confirm_ttl,
            )
            .await?;
        Ok(ImportSummary {
            rows_read,
            duplicates_in_file,
            bad_rows,
            report,
        })
    }

    pub async fn list_subscribers(
        &self,
        status: Option<crate::domain::SubscriberStatus>,
        section: Option<&str>,
    ) -> Result<Vec<Subscriber>, ImportError> {
        let section_id = match section {
            Some(s) => Some(self.section_ids_for(&[s.to_string()]).await?[0]),
            None => None,
        };
        Ok(self
            .store
            .list_subscribers(&SubscriberFilter { status, section_id })
            .await?)
    }

    /// One person's record, by address (any case).
    pub async fn export_subscriber(
        &self,
        email: &str,
    ) -> Result<Option<SubscriberExport>, StoreError> {
        let Ok(email) = EmailAddress::parse(email) else {
            return Ok(None);
        };
        let Some(subscriber) = self.store.subscriber_by_email(email.as_str()).await? else {
            return Ok(None);
        };
        let sections = self
            .store
            .subscriber_sections(subscriber.id)
            .await?
            .into_iter()
            .map(|s| s.slug)
            .collect();
        let sends = self.store.sends_for_subscriber(subscriber.id).await?;
        Ok(Some(SubscriberExport {
            subscriber,
            sections,
            sends,
        }))
    }

    /// Erase a person: their row, sections and tokens go; their ledger rows lose the address;
    /// a hash of the address stays on the suppression list. Returns false if unknown.
    pub async fn erase_subscriber(&self, email: &str) -> Result<bool, StoreError> {
        let Ok(email) = EmailAddress::parse(email) else {
            return Ok(false);
        };
        let Some(sub) = self.store.subscriber_by_email(email.as_str()).await? else {
            return Ok(false);
        };
        self.store
            .erase_subscriber(sub.id, &sha256_hex(email.as_str()), self.clock.now())
            .await?;
        tracing::info!(subscriber = sub.id, "subscriber erased");
        Ok(true)
    }
}

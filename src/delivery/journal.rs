//! The outcome journal: where `herald serve` on SQLite records each send's outcome the
//! moment the server has answered, before the next message goes, so that the ledger write
//! itself can happen a few milliseconds later, in bulk, off the path of every message.
//!
//! Why: the promise is that a crash doubles at most the one message per connection in
//! flight, so each outcome must be recorded before the next message is handed over. On
//! SQLite that record was an UPDATE through sqlx's connection thread: two thread hops per
//! message on the critical path, a third of the delivery rate (measured: 11,700 msg/s with
//! it, 17,400 with the write skipped). An append to a local file survives `kill -9` just
//! as well (the kernel keeps written pages), costs one `write(2)` on the worker's own
//! thread, and needs no other process. It does not survive a power cut or a kernel crash —
//! nor does SQLite's WAL with `synchronous = NORMAL`, which herald uses anyway; a message
//! whose outcome is lost that way is sent again with the same Message-ID.
//!
//! Files, beside the database: `{db}.outcomes.{instance}.lock` (held with an exclusive
//! `flock` while the process lives; its first line is the instance id) and segments
//! `{db}.outcomes.{instance}.{n}`, one JSON outcome per line. A segment is deleted once
//! every outcome in it is in the ledger. A lock file nobody holds belongs to a process that
//! died: its segments are replayed into the ledger (each outcome only where the row is
//! still `sending` under the worker that sent it, as always) before that instance's rows
//! are taken back, so a crash leaves nothing to send again but what was in flight.
//!
//! Only SQLite: its database, and so every process that can take over a row, is on this
//! machine. PostgreSQL serves instances on several machines, none of which could read
//! another's journal; there the outcome is written to the database before the next message
//! (with `synchronous_commit = off`, see RELIABILITY.md).

use super::Ledger;
use crate::store::{SendResult, StoreResult};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed and a new one started past this size, so flushed outcomes can be
/// deleted while the issue goes on.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Outcomes replayed per ledger write.
const REPLAY_CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
#[error("outcome journal {path}: {source}")]
pub struct JournalError {
    path: String,
    source: std::io::Error,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError {
        path: path.display().to_string(),
        source,
    }
}

/// This process's journal.
pub struct Journal {
    /// `{db}.outcomes.`: every journal of this database starts so.
    prefix: PathBuf,
    /// `{prefix}{instance}`.
    base: PathBuf,
    /// Held (locked) for the life of the process.
    _lock: File,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    segment: u64,
    bytes: u64,
    /// The sequence number of the last outcome written (see `OutcomeLog`).
    last_seq: u64,
    /// Closed segments and the last sequence number each holds.
    sealed: Vec<(u64, u64)>,
}

/// File names carry the instance id with anything but `[A-Za-z0-9._-]` replaced.
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `{db file}.outcomes.` for a `sqlite:` database URL; None for anything else.
pub fn prefix_for(database_url: &str) -> Option<PathBuf> {
    let path = database_url
        .strip_prefix("sqlite:")?
        .trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    Some(PathBuf::from(format!("{path}.outcomes.")))
}

impl Journal {
    /// Start this instance's journal (and take its lock).
    pub fn open(prefix: PathBuf, instance: &str) -> Result<Self, JournalError> {
        let base = PathBuf::from(format!("{}{}", prefix.display(), file_safe(instance)));
        let lock_path = PathBuf::from(format!("{}.lock", base.display()));
        // Locked under another name first, then put in place: a lock file that exists is
        // always either held or abandoned, never one about to be taken.
        let staging = PathBuf::from(format!("{}.lock.new", base.display()));
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&staging)
            .map_err(io_err(&staging))?;
        lock.lock().map_err(io_err(&staging))?;
        writeln!(lock, "{instance}").map_err(io_err(&staging))?;
        std::fs::rename(&staging, &lock_path).map_err(io_err(&lock_path))?;
        let first = segment_path(&base, 0);
        let file = open_segment(&first)?;
        Ok(Self {
            prefix,
            base,
            _lock: lock,
            inner: Mutex::new(Inner {
                file,
                segment: 0,
                bytes: 0,
                last_seq: 0,
                sealed: Vec::new(),
            }),
        })
    }

    /// Record one outcome, numbered `seq` by the caller; the two happen under one lock so
    /// the file holds outcomes in sequence order. Returns once the line is written.
    pub fn append(
        &self,
        seq: impl FnOnce() -> u64,
        result: &SendResult,
    ) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(result).expect("outcomes serialise");
        line.push(b'\n');
        let mut inner = self.inner.lock().expect("journal lock");
        let seq = seq();
        let path = segment_path(&self.base, inner.segment);
        if let Err(e) = inner.file.write_all(&line) {
            // Never leave half a line for the next one to be appended to.
            let keep = inner.bytes;
            let _ = inner.file.set_len(keep);
            return Err(io_err(&path)(e));
        }
        inner.bytes += line.len() as u64;
        inner.last_seq = seq;
        if inner.bytes >= SEGMENT_BYTES {
            let next = segment_path(&self.base, inner.segment + 1);
            let file = open_segment(&next)?;
            let (segment, last) = (inner.segment, inner.last_seq);
            inner.sealed.push((segment, last));
            inner.file = file;
            inner.segment += 1;
            inner.bytes = 0;
        }
        Ok(())
    }

    /// Every outcome up to `seq` is in the ledger: drop what holds only those.
    pub fn flushed(&self, seq: u64) {
        let mut inner = self.inner.lock().expect("journal lock");
        let base = self.base.clone();
        inner.sealed.retain(|(segment, last)| {
            if *last <= seq {
                let _ = std::fs::remove_file(segment_path(&base, *segment));
                false
            } else {
                true
            }
        });
        if inner.sealed.is_empty() && inner.last_seq <= seq && inner.bytes > 0 {
            // Everything in the open segment is in the ledger too: start it over (appends
            // go to the end, which is now 0).
            if inner.file.set_len(0).is_ok() {
                inner.bytes = 0;
            }
        }
    }

    /// A clean stop, once every outcome is in the ledger: remove this journal.
    pub fn remove(&self) {
        let inner = self.inner.lock().expect("journal lock");
        for (segment, _) in &inner.sealed {
            let _ = std::fs::remove_file(segment_path(&self.base, *segment));
        }
        let _ = std::fs::remove_file(segment_path(&self.base, inner.segment));
        let _ = std::fs::remove_file(format!("{}.lock", self.base.display()));
    }

    /// Replay the journals of processes that died (their lock is free), oldest outcome
    /// first, and remove them. Returns the ids of those instances, whose rows may now be
    /// taken back at once.
    pub async fn replay_dead(
        &self,
        store: &dyn Ledger,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<String>> {
        replay_dead(&self.prefix, Some(&self.base), store, now).await
    }
}

/// Replay every dead journal under `prefix` (a process starting up, or one with no journal
/// of its own); `own` is skipped.
pub async fn replay_dead(
    prefix: &Path,
    own: Option<&Path>,
    store: &dyn Ledger,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<String>> {
    let mut revived = Vec::new();
    let dir = prefix
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = prefix
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(revived);
    };
    let own_lock = own.map(|b| format!("{}.lock", b.display()));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(instance_part) = name
            .strip_prefix(&stem)
            .and_then(|rest| rest.strip_suffix(".lock"))
        else {
            continue;
        };
        let lock_path = entry.path();
        if own_lock.as_deref() == Some(&*lock_path.to_string_lossy()) {
            continue;
        }
        let Ok(lock) = OpenOptions::new().read(true).write(true).open(&lock_path) else {
            continue;
        };
        // Held: that process is alive.
        if lock.try_lock().is_err() {
            continue;
        }
        let mut instance = String::new();
        let _ = BufReader::new(&lock).read_line(&mut instance);
        let base = PathBuf::from(format!("{}{instance_part}", prefix.display()));
        let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        let rest = n.strip_prefix(&*base.file_name()?.to_string_lossy())?;
                        let number = rest.strip_prefix('.')?.parse::<u64>().ok()?;
                        Some((number, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        segments.sort();
        let mut replayed = 0;
        for (_, path) in &segments {
            let results = read_segment(path);
            for chunk in results.chunks(REPLAY_CHUNK) {
                store.complete_sends(chunk, now).await?;
            }
            replayed += results.len();
        }
        for (_, path) in &segments {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(&lock_path);
        let instance = instance.trim().to_string();
        tracing::warn!(
            instance = %instance,
            outcomes = replayed,
            "recorded the outcomes a stopped herald had journaled but not yet written"
        );
        revived.push(instance);
    }
    Ok(revived)
}

fn segment_path(base: &Path, n: u64) -> PathBuf {
    PathBuf::from(format!("{}.{n}", base.display()))
}

fn open_segment(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// The outcomes of one segment; a line cut short (the disk filled mid-write) is skipped.
fn read_segment(path: &Path) -> Vec<SendResult> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<SendResult>(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SendOutcome;

    fn sent(id: i64) -> SendResult {
        SendResult {
            send_id: id,
            lease_owner: "host:1:abc/worker0".into(),
            outcome: SendOutcome::Sent {
                reply: "250 2.0.0 Ok".into(),
            },
        }
    }

    #[test]
    fn outcomes_are_read_back_and_dropped_once_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = prefix_for(&format!("sqlite:{}/h.db", dir.path().display())).unwrap();
        let j = Journal::open(prefix.clone(), "host:1:abc").unwrap();
        let mut n = 0;
        for id in 1..=3 {
            j.append(
                || {
                    n += 1;
                    n
                },
                &sent(id),
            )
            .unwrap();
        }
        let seg = segment_path(&j.base, 0);
        assert_eq!(read_segment(&seg), [sent(1), sent(2), sent(3)]);
        j.flushed(2);
        assert_eq!(
            read_segment(&seg).len(),
            3,
            "seq 3 is not in the ledger yet"
        );
        j.flushed(3);
        assert!(
            read_segment(&seg).is_empty(),
            "all in the ledger: started over"
        );
        j.append(|| 4, &sent(4)).unwrap();
        assert_eq!(read_segment(&seg), [sent(4)]);
        // Another process sees the lock held: this journal is not a dead one.
        let lock = File::open(format!("{}.lock", j.base.display())).unwrap();
        assert!(lock.try_lock().is_err());
        j.remove();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.0");
        let mut text = serde_json::to_string(&sent(7)).unwrap();
        text.push('\n');
        text.push_str(r#"{"send_id":8,"lease_ow"#);
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_segment(&path), [sent(7)]);
    }
}

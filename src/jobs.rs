//! The background jobs of `herald serve` (digest tick, feed polls, purge, delivery workers)
//! and what `/healthz` knows of them.
//!
//! Each job is its own task on its own interval, and each run is a task of its own: a panic
//! or an error in one run is caught, logged and counted (`herald_job_panics_total`,
//! `herald_job_errors_total`), and the job runs again at its next interval. One job never
//! waits for another (a hanging feed once delayed every digest tick by 53 s, and a feed that
//! made the XML reader panic stopped the digests for good while `/healthz` said 200).
//! [`JobHealth`] keeps, per job, whether its last run failed and when it last succeeded, so
//! `/healthz` can answer 503 with the reason while a job is failing or has stalled.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The tasks of one process that are not jobs or workers, tracked so that a stop can tell
/// them to end (`stop`) and wait for them (`tracker`).
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    pub tracker: tokio_util::task::TaskTracker,
    pub stop: tokio_util::sync::CancellationToken,
}

#[derive(Debug, Clone)]
struct JobState {
    /// A job that has not succeeded for this long has stalled.
    stale_after: Duration,
    since: Instant,
    last_ok: Option<Instant>,
    failing: Option<String>,
}

/// The health of every registered job. Jobs that are not running (tests, CLI) are simply
/// not registered.
#[derive(Debug, Default)]
pub struct JobHealth {
    jobs: Mutex<BTreeMap<&'static str, JobState>>,
}

impl JobHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn register(&self, job: &'static str, stale_after: Duration) {
        self.jobs.lock().expect("job health lock").insert(
            job,
            JobState {
                stale_after,
                since: Instant::now(),
                last_ok: None,
                failing: None,
            },
        );
    }

    pub fn ok(&self, job: &'static str) {
        if let Some(s) = self.jobs.lock().expect("job health lock").get_mut(job) {
            s.last_ok = Some(Instant::now());
            s.failing = None;
        }
    }

    pub fn failed(&self, job: &'static str, why: String) {
        if let Some(s) = self.jobs.lock().expect("job health lock").get_mut(job) {
            s.failing = Some(why);
        }
    }

    /// What is wrong now, one line per job; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let jobs = self.jobs.lock().expect("job health lock");
        let mut out = Vec::new();
        for (name, s) in jobs.iter() {
            if let Some(why) = &s.failing {
                out.push(format!("{name}: failing: {why}"));
                continue;
            }
            let quiet = s.last_ok.unwrap_or(s.since).elapsed();
            if quiet > s.stale_after {
                out.push(format!(
                    "{name}: no successful run for {}s (expected within {}s)",
                    quiet.as_secs(),
                    s.stale_after.as_secs()
                ));
            }
        }
        out
    }
}

/// Run `run(ctx.clone())` every `every` until `stop` turns true; each run is its own task,
/// so its panic or error is reported and the job goes on. A run still going at shutdown is
/// abandoned.
pub fn spawn_job<C, F, Fut>(
    health: Arc<JobHealth>,
    name: &'static str,
    every: Duration,
    stale_after: Duration,
    mut stop: watch::Receiver<bool>,
    ctx: C,
    run: F,
) -> tokio::task::JoinHandle<()>
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    health.register(name, stale_after);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => break,
            }
            tokio::select! {
                // Dropping the run at shutdown aborts its task.
                _ = run_guarded(&health, name, run(ctx.clone())) => {}
                _ = stop.changed() => break,
            }
        }
    })
}

/// What a job run that failed says: any error, its causes kept for the log.
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// How a guarded run went wrong.
#[derive(Debug)]
pub enum RunFailure {
    Error(String),
    Panic(String),
}

/// Run `work` as a task of its own and report it as job `name`: a success marks the job
/// healthy; an error or a panic is logged, counted and marks it failing, and the caller goes
/// on. Dropping the returned future aborts the task.
pub async fn run_guarded<T, E>(
    health: &JobHealth,
    name: &'static str,
    work: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, RunFailure>
where
    T: Send + 'static,
    E: Into<JobError> + Send + 'static,
{
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    // Whatever the run logs says which job it was.
    let task = tokio::spawn(tracing::Instrument::instrument(
        work,
        tracing::info_span!("job", job = name),
    ));
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(Ok(v)) => {
            health.ok(name);
            Ok(v)
        }
        Ok(Err(e)) => {
            let e = crate::telemetry::error_chain(e.into().as_ref());
            tracing::error!(job = name, error = %e, "background job failed; it goes on");
            metrics::counter!("herald_job_errors_total", "job" => name).increment(1);
            health.failed(name, e.clone());
            Err(RunFailure::Error(e))
        }
        Err(e) => {
            let why = if e.is_panic() {
                panic_message(e.into_panic())
            } else {
                "cancelled".into()
            };
            tracing::error!(job = name, panic = %why, "background job panicked; it goes on");
            metrics::counter!("herald_job_panics_total", "job" => name).increment(1);
            health.failed(name, format!("panicked: {why}"));
            Err(RunFailure::Panic(why))
        }
    }
}

pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A failed run's reason keeps its causes (health, log): "poll failed: cannot connect:
    /// connection refused", not "poll failed".
    #[tokio::test]
    async fn a_failure_is_reported_with_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("poll failed")]
        struct Outer(#[source] std::io::Error);
        let health = JobHealth::new();
        health.register("feeds", Duration::from_secs(60));
        let r = run_guarded(&health, "feeds", async {
            Err::<(), _>(Outer(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )))
        })
        .await;
        assert!(
            matches!(r, Err(RunFailure::Error(ref e)) if e == "poll failed: connection refused"),
            "{r:?}"
        );
        assert!(
            health
                .problems()
                .iter()
                .any(|p| p.contains("poll failed: connection refused")),
            "{:?}",
            health.problems()
        );
    }

    #[tokio::test]
    async fn a_job_survives_its_panics_and_errors_and_health_says_so() {
        let health = JobHealth::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let r = runs.clone();
        let job = spawn_job(
            health.clone(),
            "flaky",
            Duration::from_millis(20),
            Duration::from_secs(60),
            stop_rx,
            r,
            |r: Arc<AtomicU32>| {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 => panic!("first run explodes"),
                        1 => Err("second run fails".into()),
                        _ => Ok(()),
                    }
                }
            },
        );
        let mut seen = Vec::new();
        for _ in 0..200 {
            let p = health.problems();
            if seen.last() != Some(&p) {
                seen.push(p);
            }
            if runs.load(Ordering::SeqCst) >= 4 && health.problems().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(runs.load(Ordering::SeqCst) >= 3, "the job kept running");
        assert!(health.problems().is_empty(), "healthy after a good run");
        let all: Vec<String> = seen.concat();
        assert!(
            all.iter()
                .any(|p| p.contains("panicked: first run explodes")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|p| p.contains("second run fails")),
            "{all:?}"
        );
        stop_tx.send(true).unwrap();
        job.await.unwrap();
    }

    #[test]
    fn a_job_that_never_succeeds_goes_stale() {
        let h = JobHealth::default();
        h.register("tick", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(h.problems()[0].starts_with("tick: no successful run"));
        h.ok("tick");
        h.register("other", Duration::from_secs(60));
        assert!(h.problems().iter().all(|p| !p.starts_with("other")));
    }
}

//! herald: a newsletter subscription and delivery daemon.
//!
//! [`App::build`] wires config, store, delivery and web; [`App::run_until_stopped`] serves
//! until a shutdown signal. Tests start the same app on port 0 with a manual clock and no
//! background tasks, and drive time and queues themselves.

pub mod access;
pub mod articles;
pub mod audit;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digests;
pub mod domain;
pub mod jobs;
pub mod keys;
pub mod returned;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod web;

use clock::Clock;
use config::Config;
use delivery::DeliveryEngine;
use domain::SecretKey;
use std::net::SocketAddr;
use std::sync::Arc;
use store::{Store, StoreError};
use subscriptions::{Subscriptions, TransactionalComposer};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(key, source))]
    Bind {
        addr: SocketAddr,
        /// The configuration key that names the address.
        key: &'static str,
        source: std::io::Error,
    },
    #[error("secret key: {0}")]
    Secret(String),
    /// A key or certificate file the configuration names (see `keys.rs`).
    #[error("configuration error: {0}")]
    Keys(#[from] config::ConfigError),
}

/// What to do about an address herald cannot listen on: which key to change.
fn bind_hint(key: &str, e: &std::io::Error) -> String {
    let env = format!("HERALD_{}", key.to_ascii_uppercase().replace('.', "__"));
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            " (another program, or another herald, is listening there: stop it, or set `{key}` / {env} to a free address)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(" (ports below 1024 need privileges: set `{key}` / {env} to a port above 1023)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!(" (no interface of this machine has that address: check `{key}` / {env})")
        }
        _ => format!(" (set by `{key}` / {env})"),
    }
}

/// How to run: tests turn off the background tasks and use a manual clock.
#[derive(Debug)]
pub struct AppOptions {
    pub clock: Clock,
    /// Delivery workers and periodic jobs. Off in tests, which drain queues explicitly.
    pub background: bool,
    /// A socket already bound (tests bind port 0 first so `public_url` can name the port).
    pub listener: Option<std::net::TcpListener>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: Clock::system(),
            background: true,
            listener: None,
        }
    }
}

/// The parts of a running herald, shared by the web server, the background tasks, the CLI
/// and tests.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub subs: Arc<Subscriptions>,
    pub digests: Arc<digests::Digests>,
    pub engine: Arc<DeliveryEngine>,
    pub feeds: Arc<articles::FeedPoller>,
    /// What handles returned mail, when `mail.return_path` is set.
    pub inbound: Option<Arc<returned::Inbound>>,
    /// The mailbox returned mail is read from (`bounces.imap_url`), if any.
    pub imap: Option<Arc<returned::ImapReader>>,
    pub clock: Clock,
    /// What the background jobs report, for `/healthz`.
    pub health: Arc<jobs::JobHealth>,
    /// The DKIM keys and SNS certificates, read at start.
    pub keys: Arc<keys::Keys>,
    /// Tasks started on the way (the returned-mail listener, an issue filled after "Send
    /// now"), stopped and awaited (within `delivery.shutdown_grace`) when `serve` stops.
    pub tasks: jobs::Tasks,
}

/// Sends each ledger row to the module that knows how to write it.
struct HeraldComposer {
    transactional: TransactionalComposer,
    digest: Arc<digests::DigestComposer>,
}

#[async_trait::async_trait]
impl delivery::Composer for HeraldComposer {
    async fn compose(
        &self,
        job: &store::SendJob,
    ) -> Result<delivery::Composed, delivery::ComposeError> {
        if job.kind == store::SendKind::Digest {
            self.digest.compose(job).await
        } else {
            self.transactional.compose(job).await
        }
    }
}

impl Services {
    /// Open the database (making it if missing), apply migrations, resolve the secret key,
    /// build the engine: what `serve` and `migrate` do.
    pub async fn open(config: Config, clock: Clock) -> Result<Self, StartError> {
        Self::open_with(config, clock, true).await
    }

    /// The same for a database that must exist already: every other command.
    pub async fn open_existing(config: Config, clock: Clock) -> Result<Self, StartError> {
        Self::open_with(config, clock, false).await
    }

    async fn open_with(config: Config, clock: Clock, create: bool) -> Result<Self, StartError> {
        // Before the database: a key file that cannot be read is a configuration error.
        let keys = Arc::new(keys::Keys::load(&config)?);
        let store = store::open(
            &config.database.url,
            config.database.max_connections,
            create,
        )
        .await?;
        store.migrate().await?;
        let key = resolve_secret(&config, store.as_ref()).await?;
        let subs = Arc::new(Subscriptions::new(
            &config,
            store.clone(),
            key.clone(),
            clock.clone(),
        ));
        let digest_composer = Arc::new(digests::DigestComposer::new(
            store.clone(),
            subs.clone(),
            config.site.clone(),
            config.digests.max_articles,
            config
                .digests
                .archive
                .then(|| format!("{}/archive", config.http.public_url.trim_end_matches('/'))),
            config.mail.list_help.clone(),
        ));
        let composer = Arc::new(HeraldComposer {
            transactional: TransactionalComposer::new(subs.clone(), config.site.clone()),
            digest: digest_composer.clone(),
        });
        let engine = Arc::new(DeliveryEngine::new(
            &config,
            store.clone(),
            composer,
            clock.clone(),
            key.clone(),
            keys.dkim.clone(),
            keys.mail_ca.clone(),
        ));
        let digests = Arc::new(digests::Digests::new(
            &config,
            store.clone(),
            clock.clone(),
            digest_composer,
            engine.issue_stops(),
        ));
        let feeds = Arc::new(articles::FeedPoller::new(
            store.clone(),
            clock.clone(),
            config.feeds.timeout.0,
            config.feeds.max_size,
        ));
        let inbound = config.mail.return_path.as_ref().map(|return_path| {
            Arc::new(
                returned::Inbound::new(
                    store.clone(),
                    key.clone(),
                    clock.clone(),
                    return_path,
                    &config.mail.domain,
                    &config.bounces,
                )
                .with_domain_watch(engine.domains()),
            )
        });
        let imap = match (&config.bounces.imap, &inbound) {
            (Some(c), Some(inbound)) => Some(Arc::new(returned::ImapReader::new(
                c.clone(),
                keys.imap_ca.clone(),
                inbound.clone(),
                store.clone(),
            ))),
            _ => None,
        };
        Ok(Self {
            config: Arc::new(config),
            store,
            subs,
            digests,
            engine,
            feeds,
            inbound,
            imap,
            clock,
            health: jobs::JobHealth::new(),
            keys,
            tasks: jobs::Tasks::default(),
        })
    }
}

/// The database a URL names, for the start line: the SQLite file's absolute path, or the
/// PostgreSQL host and database (never its password).
pub fn database_label(url: &str) -> String {
    match url.strip_prefix("sqlite:") {
        Some(p) => {
            let p = p.trim_start_matches("//");
            let file = p.split('?').next().unwrap_or(p);
            let shown = std::path::absolute(file)
                .map(|a| a.display().to_string())
                .unwrap_or_else(|_| file.to_string());
            format!("SQLite {shown}")
        }
        None => match url::Url::parse(url) {
            Ok(u) => format!(
                "PostgreSQL {}:{}{}",
                u.host_str().unwrap_or("localhost"),
                u.port().unwrap_or(5432),
                u.path()
            ),
            Err(_) => "PostgreSQL".into(),
        },
    }
}

/// The secret for link MACs: from config, else one generated once and kept — in a file
/// next to the SQLite database, or in the database's settings table for PostgreSQL (so
/// several instances share it).
async fn resolve_secret(config: &Config, store: &dyn Store) -> Result<SecretKey, StartError> {
    if let Some(k) = &config.secret_key {
        return SecretKey::new(k.expose().as_bytes().to_vec())
            .ok_or_else(|| StartError::Secret("too short".into()));
    }
    let fresh = SecretKey::generate_text();
    let text = if let Some(path) = config.database.url.strip_prefix("sqlite:") {
        let file = std::path::Path::new(path.trim_start_matches("//"))
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("secret_key");
        match std::fs::read_to_string(&file) {
            Ok(s) if s.trim().len() >= SecretKey::MIN_LEN => s.trim().to_string(),
            Ok(_) => {
                return Err(StartError::Secret(format!(
                    "{} is too short",
                    file.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(&file, &fresh).map_err(|e| {
                    StartError::Secret(format!("cannot write {}: {e}", file.display()))
                })?;
                tracing::warn!(
                    file = %file.display(),
                    "no secret_key configured: generated one and saved it; set HERALD_SECRET_KEY in production"
                );
                fresh
            }
            Err(e) => {
                return Err(StartError::Secret(format!(
                    "cannot read {}: {e}",
                    file.display()
                )));
            }
        }
    } else {
        let stored = store.setting_or_insert("secret_key", &fresh).await?;
        if stored == fresh {
            tracing::warn!(
                "no secret_key configured: generated one and stored it in the database; set HERALD_SECRET_KEY in production"
            );
        }
        stored
    };
    SecretKey::new(text.into_bytes())
        .ok_or_else(|| StartError::Secret("stored key is too short".into()))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// A herald server, bound and ready.
pub struct App {
    services: Services,
    listener: TcpListener,
    addr: SocketAddr,
    /// `http.metrics_listen`, bound at start so a taken port is a start-up error.
    metrics_listener: Option<TcpListener>,
    /// Where returned mail is taken (`bounces.listen`), if anywhere; it serves from start.
    bounces_addr: Option<SocketAddr>,
    background: bool,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, AppOptions::default()).await
    }

    pub async fn build_with(config: Config, opts: AppOptions) -> Result<Self, StartError> {
        let listen = config.http.listen;
        let services = Services::open(config, opts.clock).await?;
        let bind_err = |source| StartError::Bind {
            addr: listen,
            key: "http.listen",
            source,
        };
        let listener = match opts.listener {
            Some(l) => {
                l.set_nonblocking(true).map_err(bind_err)?;
                TcpListener::from_std(l).map_err(bind_err)?
            }
            None => TcpListener::bind(listen).await.map_err(bind_err)?,
        };
        let addr = listener.local_addr().map_err(bind_err)?;
        let metrics_listener = match services.config.http.metrics_listen {
            Some(m) => Some(
                TcpListener::bind(m)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: m,
                        key: "http.metrics_listen",
                        source,
                    })?,
            ),
            None => None,
        };
        let bounces_addr = match (
            services.config.bounces.listen,
            services.config.mail.return_path.as_ref(),
            services.inbound.clone(),
        ) {
            (Some(at), Some(return_path), Some(inbound)) => {
                let bind = |source| StartError::Bind {
                    addr: at,
                    key: "bounces.listen",
                    source,
                };
                let l = TcpListener::bind(at).await.map_err(bind)?;
                let bound = l.local_addr().map_err(bind)?;
                let stop = services.tasks.stop.clone();
                services.tasks.tracker.spawn(returned::listener::serve(
                    l,
                    inbound,
                    return_path.domain().to_string(),
                    stop,
                ));
                tracing::info!(addr = %bound, return_path = %return_path, "returned mail listening");
                Some(bound)
            }
            _ => None,
        };
        Ok(Self {
            services,
            listener,
            addr,
            metrics_listener,
            bounces_addr,
            background: opts.background,
        })
    }

    /// Where returned mail is taken (`bounces.listen`), if anywhere.
    pub fn bounces_addr(&self) -> Option<SocketAddr> {
        self.bounces_addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served (`http.metrics_listen`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serve until `shutdown` completes; then stop taking requests, let the delivery workers
    /// finish their batch, and return.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let s = self.services;
        let state = web::AppState {
            services: s.clone(),
            limiter: Arc::new(web::ratelimit::IpLimiter::new(
                s.config.subscriptions.rate_limit_per_ip,
                s.config.subscriptions.rate_limit_window.as_chrono(),
            )),
            metrics: telemetry::metrics_handle(),
            logins: Arc::new(access::LoginLimiter::new(
                s.config.console.login_limit,
                s.config.console.login_window.as_chrono(),
            )),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut workers = Vec::new();
        if self.background {
            // The first heartbeat before the workers start: the rows of a predecessor that
            // died are taken back now, not after their lease.
            if let Err(e) = s.engine.beat().await {
                tracing::error!(error = %e, "first heartbeat failed; will retry");
            }
            let spawned = s.engine.spawn_workers(s.health.clone(), stop_rx.clone());
            workers.extend(spawned.senders);
            // The flusher stops with the other tasks, after the workers: it writes what
            // they record while they finish.
            tasks.extend(spawned.flusher);
            tasks.push(s.engine.spawn_heartbeat(s.health.clone(), stop_rx.clone()));
            tasks.extend(spawn_periodic_jobs(
                &s,
                state.limiter.clone(),
                state.logins.clone(),
                &stop_rx,
            ));
            tracing::info!(transport = %s.engine.transport().describe(), workers = s.config.delivery.connections, "delivery started");
        }
        tracing::info!(addr = %self.addr, public_url = %s.config.http.public_url, database = %database_label(&s.config.database.url), "herald listening");
        for w in s.config.warnings().into_iter().chain(s.keys.warnings()) {
            tracing::warn!("{w}");
        }
        if s.store.list_sections().await.is_ok_and(|l| l.is_empty()) {
            tracing::warn!(
                "no sections yet: nobody can sign up until there is one (`herald sections add SLUG --name NAME`)"
            );
        }
        if let Some(m) = self.metrics_listener {
            if let Ok(a) = m.local_addr() {
                tracing::info!(addr = %a, "metrics listening");
            }
            let mut stop = stop_rx.clone();
            let metrics = web::metrics_router(state.clone());
            let header_timeout = s.config.http.header_timeout;
            tasks.push(tokio::spawn(async move {
                let served = web::server::serve(m, metrics, header_timeout, async move {
                    let _ = stop.changed().await;
                })
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }));
        }
        let result = web::server::serve(
            self.listener,
            web::router(state),
            s.config.http.header_timeout,
            async move {
                shutdown.await;
                tracing::info!("shutting down");
            },
        )
        .await;
        // Workers first, while the heartbeat still says this instance lives: each finishes
        // the exchange under way and hands the rest of its batch back. A server that has
        // not answered within `delivery.shutdown_grace` is not waited for.
        let grace = s.config.delivery.shutdown_grace.0;
        let stop = s.engine.stop().clone();
        stop.stopping.cancel();
        let abandon = stop.abandon.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abandon.cancel();
        });
        // The grace, then a moment to write the outcomes of the exchanges given up.
        let deadline = tokio::time::Instant::now() + grace + std::time::Duration::from_secs(5);
        await_or_abort(workers, deadline, "delivery worker").await;
        timer.abort();
        let _ = stop_tx.send(true);
        // Jobs end at their next check; one in the middle of a run (a feed fetch, an issue
        // fill: each step its own transaction) gets the same grace.
        let deadline = tokio::time::Instant::now() + grace;
        await_or_abort(tasks, deadline, "background task").await;
        // The rest: the returned-mail listener, issues being filled after "Send now".
        s.tasks.stop.cancel();
        s.tasks.tracker.close();
        if tokio::time::timeout(grace, s.tasks.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = s.tasks.tracker.len(),
                "tasks still running at the end of the stop"
            );
        }
        if self.background {
            s.engine.release().await;
        }
        result
    }
}

/// Wait for `tasks` until `deadline`; abort (and name) those still running then, so a stop
/// never waits on a stuck task for ever.
async fn await_or_abort(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    deadline: tokio::time::Instant,
    what: &str,
) {
    for mut t in tasks {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            tracing::warn!("a {what} did not stop in time and was cut off");
            t.abort();
            let _ = t.await;
        }
    }
}

/// The digest tick, feed polls, the purge and metrics upkeep: each its own job (see
/// `jobs.rs`), so a slow feed never delays a tick and a panic in one stops none of them.
fn spawn_periodic_jobs(
    s: &Services,
    limiter: Arc<web::ratelimit::IpLimiter>,
    logins: Arc<access::LoginLimiter>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use std::time::Duration;
    let c = &s.config;
    let tick = c.digests.tick_interval.0;
    let poll = c.feeds.poll_interval.0;
    let purge = c.subscriptions.purge_interval.0;
    let (h, stop) = (&s.health, stop);
    let scheduler = jobs::spawn_job(
        h.clone(),
        "scheduler",
        tick,
        (tick * 4).max(Duration::from_secs(60)),
        stop.clone(),
        s.clone(),
        move |s: Services| async move {
            s.digests.run_tick().await?;
            // Rows of new issues (and of any a crash left half-written) go out as each chunk
            // commits. A large list takes several runs; a run stays well inside the job's
            // stall limit.
            let budget = tick.min(Duration::from_secs(30));
            s.digests.fill_pending(budget, |_| s.engine.wake()).await?;
            Ok(())
        },
    );
    // A poll fetches feeds of different hosts four at once, each under feeds.timeout.
    let feeds = jobs::spawn_job(
        h.clone(),
        "feeds",
        poll,
        poll * 3 + Duration::from_secs(600),
        stop.clone(),
        s.clone(),
        |s: Services| async move {
            s.feeds.poll_all().await?;
            Ok(())
        },
    );
    let purger = jobs::spawn_job(
        h.clone(),
        "purge",
        purge,
        purge * 3,
        stop.clone(),
        (s.clone(), limiter, logins),
        |(s, limiter, logins): (
            Services,
            Arc<web::ratelimit::IpLimiter>,
            Arc<access::LoginLimiter>,
        )| async move {
            let now = s.clock.now();
            limiter.prune(now);
            logins.prune(s.store.as_ref(), now).await?;
            // Console sessions past their lifetime, or idle too long.
            let idle_before = now - s.config.console.session_idle.as_chrono();
            s.store.purge_sessions(now, idle_before).await?;
            s.subs.purge_expired_pending().await?;
            // Returned mail keeps its raw text (the provider's words, a copy of our mail
            // with the reader's address) only for bounces.keep_raw.
            let cutoff = s.clock.now() - s.config.bounces.keep_raw.as_chrono();
            let dropped = s.store.drop_returned_raw(cutoff).await?;
            if dropped > 0 {
                tracing::info!(dropped, "raw returned mail past bounces.keep_raw dropped");
            }
            // Webhook message ids are kept to refuse a second delivery; reports over an
            // hour old are refused anyway, so a day covers every retry.
            s.store
                .purge_webhook_seen(now - chrono::Duration::days(1))
                .await?;
            Ok(())
        },
    );
    let upkeep = jobs::spawn_job(
        h.clone(),
        "metrics",
        Duration::from_secs(10),
        Duration::from_secs(60),
        stop.clone(),
        (),
        |()| async {
            telemetry::metrics_handle().run_upkeep();
            Ok(())
        },
    );
    let mut all = vec![scheduler, feeds, purger, upkeep];
    if let Some(reader) = &s.imap {
        let every = reader.interval();
        all.push(jobs::spawn_job(
            h.clone(),
            "returned-mail mailbox",
            every,
            every * 3 + Duration::from_secs(120),
            stop.clone(),
            reader.clone(),
            |reader: Arc<returned::ImapReader>| async move {
                let report = reader.read_once().await?;
                if report.read > 0 {
                    tracing::info!(
                        read = report.read,
                        acted = report.acted,
                        left = report.left,
                        "returned-mail mailbox read"
                    );
                }
                Ok(())
            },
        ));
    }
    all
}

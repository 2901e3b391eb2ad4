//! `sr-faker`: an Armis API emulator for demos, tests and benchmarks of the sync service.
//!
//! It serves `POST /api/v1/access_token/` and `GET /api/v1/search/` the way Armis does
//! (CONTRACT.md §6): tokens that expire, pages of at most 1000 devices with `next` reaching 0
//! exactly at the end, a small AQL subset ([`aql`]), and devices computed from their index
//! ([`generator`]), so a million devices cost no memory and the same seed gives the same
//! devices on every start. Optional IP churn ([`churn`]) swaps the primary IPs of a fraction
//! of device pairs per epoch.
//!
//! It owns no database and talks to no NATS. Tests run it in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sr_faker::Error> {
//! let faker = sr_faker::Faker::start(sr_faker::Config::local(5_003)).await?;
//! let base_url = faker.base_url(); // http://127.0.0.1:<port>
//! faker.advance_churn();
//! assert_eq!(faker.stats().unauthorized, 0);
//! faker.stop().await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod aql;
pub mod churn;
pub mod cli;
pub mod config;
pub mod error;
pub mod generator;
pub mod metrics;
pub mod tokens;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sr_runtime::{OpsServer, Readiness, SharedClock, SystemClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use aql::Query;
pub use config::Config;
pub use error::{Error, Result};
pub use generator::{Device, Generator, MAX_DEVICES};
pub use metrics::Stats;

/// How many distinct filtered queries keep their device list in memory.
const SELECTION_CACHE: usize = 32;

/// The devices one query selects, in id order.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// Every device.
    All(u64),
    /// The indices of the selected devices (`MAX_DEVICES` < 2^32).
    Subset(Arc<Vec<u32>>),
}

impl Selection {
    fn total(&self) -> u64 {
        match self {
            Self::All(n) => *n,
            Self::Subset(v) => v.len() as u64,
        }
    }

    /// The device index at `position` (< total).
    fn index(&self, position: u64) -> u64 {
        match self {
            Self::All(_) => position,
            Self::Subset(v) => usize::try_from(position)
                .ok()
                .and_then(|p| v.get(p))
                .map_or(u64::MAX, |i| u64::from(*i)),
        }
    }
}

#[derive(Debug, Default)]
struct SelectionCache {
    entries: HashMap<Query, Arc<Vec<u32>>>,
    order: VecDeque<Query>,
}

/// State shared by the routes, the churn timer and every handle.
pub(crate) struct Shared {
    config: Config,
    generator: Generator,
    clock: SharedClock,
    tokens: tokens::Tokens,
    epoch: AtomicU64,
    failing: AtomicU64,
    metrics: metrics::Metrics,
    selections: Mutex<SelectionCache>,
}

impl Shared {
    fn churn_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn advance_churn(&self) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics
            .churn_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        tracing::debug!(epoch, "Churn epoch advanced");
        epoch
    }

    /// Consumes one injected failure, if any is pending.
    fn take_injected_failure(&self) -> bool {
        self.failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The devices `query` selects; filtered lists are computed once (off the async workers)
    /// and cached, because paging asks for the same query many times.
    async fn select(self: &Arc<Self>, query: Query) -> Selection {
        if query.is_all() {
            return Selection::All(self.generator.count());
        }
        if let Some(hit) = self.cache().entries.get(&query) {
            return Selection::Subset(hit.clone());
        }
        let generator = self.generator;
        let q = query.clone();
        let computed = tokio::task::spawn_blocking(move || {
            (0..generator.count())
                .filter(|&i| q.matches(i + 1, &generator.traits(i)))
                .filter_map(|i| u32::try_from(i).ok())
                .collect::<Vec<u32>>()
        })
        .await;
        let list = Arc::new(computed.unwrap_or_default());
        let mut cache = self.cache();
        if !cache.entries.contains_key(&query) {
            if cache.order.len() >= SELECTION_CACHE
                && let Some(old) = cache.order.pop_front()
            {
                cache.entries.remove(&old);
            }
            cache.order.push_back(query.clone());
            cache.entries.insert(query, list.clone());
        }
        Selection::Subset(list)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SelectionCache> {
        self.selections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A cheap, cloneable handle on a faker's state: the generator, the churn epoch, tokens,
/// injected failures and counters. It stays usable while the faker runs.
#[derive(Clone)]
pub struct FakerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakerHandle")
            .field("generator", &self.shared.generator)
            .field("churn_epoch", &self.churn_epoch())
            .finish_non_exhaustive()
    }
}

impl FakerHandle {
    /// The device generator (pure; `device(i, epoch)` needs no server).
    #[must_use]
    pub fn generator(&self) -> Generator {
        self.shared.generator
    }

    /// Number of devices served by `in:devices`.
    #[must_use]
    pub fn device_count(&self) -> u64 {
        self.shared.generator.count()
    }

    /// Device `i` (0-based; its Armis id is `i + 1`) as the API shows it now, in the current
    /// churn epoch; `None` past the end.
    #[must_use]
    pub fn device(&self, i: u64) -> Option<Device> {
        self.shared.generator.device(i, self.churn_epoch())
    }

    /// Device `i` as shown in churn epoch `epoch`.
    #[must_use]
    pub fn device_at(&self, i: u64, epoch: u64) -> Option<Device> {
        self.shared.generator.device(i, epoch)
    }

    /// The current churn epoch (0 until the first advance; epoch 0 has no swapped IPs).
    #[must_use]
    pub fn churn_epoch(&self) -> u64 {
        self.shared.churn_epoch()
    }

    /// Moves to the next churn epoch now (no waiting for the timer) and returns it.
    pub fn advance_churn(&self) -> u64 {
        self.shared.advance_churn()
    }

    /// Forgets every access token: the next search with an old token gets 401.
    pub fn invalidate_tokens(&self) {
        self.shared.tokens.invalidate_all();
    }

    /// The next `n` authenticated search requests answer 503 (retry and circuit-breaker
    /// tests); calls add up.
    pub fn fail_next_searches(&self, n: u64) {
        self.shared.failing.fetch_add(n, Ordering::SeqCst);
    }

    /// What has been served so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.metrics.stats()
    }

    /// The configured secret key clients exchange for a token.
    #[must_use]
    pub fn secret_key(&self) -> &str {
        &self.shared.config.auth.secret_key
    }
}

/// A built faker: listener bound, not yet serving. [`Faker::run_until`] serves it;
/// [`Faker::spawn`] serves it on a task. Derefs to its [`FakerHandle`].
pub struct Faker {
    handle: FakerHandle,
    http: OpsServer,
    addr: SocketAddr,
}

impl std::ops::Deref for Faker {
    type Target = FakerHandle;
    fn deref(&self) -> &FakerHandle {
        &self.handle
    }
}

impl Faker {
    /// Validates `config` and binds its listener (`127.0.0.1:0` in tests; see
    /// [`Config::local`]), with the system clock.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config, [`Error::Io`] when the address cannot be bound.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Faker::build`], with a given clock: token expiry follows it, so a test moves a
    /// `ManualClock` past the TTL instead of waiting.
    ///
    /// # Errors
    /// As [`Faker::build`].
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self> {
        config.validate()?;
        let metrics = metrics::Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let shared = Arc::new(Shared {
            generator: Generator::new(
                config.devices.seed,
                config.devices.count,
                config.churn.fraction,
            ),
            tokens: tokens::Tokens::new(config.auth.token_ttl_secs),
            clock,
            epoch: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            metrics,
            selections: Mutex::new(SelectionCache::default()),
            config,
        });
        let listen = shared.config.http.listen;
        let http = OpsServer::bind(
            listen,
            Arc::new(registry),
            Readiness::new(),
            api::router(shared.clone()),
        )
        .await
        .map_err(|e| Error::io(format!("cannot bind {listen}"), e))?;
        let addr = http
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(Self {
            handle: FakerHandle { shared },
            http,
            addr,
        })
    }

    /// Builds and [spawns](Faker::spawn) in one step.
    ///
    /// # Errors
    /// As [`Faker::build`].
    pub async fn start(config: Config) -> Result<RunningFaker> {
        Ok(Self::build(config).await?.spawn())
    }

    /// The bound address (port 0 resolved).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the Armis `endpoint` to configure in a client.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle that outlives [`Faker::run_until`] taking `self`.
    #[must_use]
    pub fn handle(&self) -> FakerHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` is cancelled, advancing the churn epoch on its timer when
    /// `churn.interval_secs` > 0, then finishes requests in flight (bounded to 10 s).
    ///
    /// # Errors
    /// The HTTP server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        let Self { handle, http, addr } = self;
        let shared = handle.shared;
        tracing::info!(
            %addr,
            devices = shared.generator.count(),
            seed = shared.generator.seed(),
            churn_interval_secs = shared.config.churn.interval_secs,
            "Faker serving the Armis API"
        );
        let internal = CancellationToken::new();
        let ticker = (shared.config.churn.interval_secs > 0).then(|| {
            let every = Duration::from_secs(shared.config.churn.interval_secs);
            let token = internal.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        _ = tick.tick() => { shared.advance_churn(); }
                    }
                }
            })
        });
        let mut server = tokio::spawn(http.run(internal.clone()));
        // The server ends on its own only after an I/O error; then there is nothing to drain.
        let ended_early = tokio::select! {
            () = shutdown.cancelled() => None,
            r = &mut server => Some(r),
        };
        internal.cancel();
        if let Some(t) = ticker {
            let _ = t.await;
        }
        let outcome = match ended_early {
            Some(r) => Some(r),
            None => tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .ok(),
        };
        match outcome {
            Some(Ok(r)) => r.map_err(|e| Error::io("HTTP server", e))?,
            Some(Err(e)) => tracing::warn!(error = %e, "Faker HTTP task failed"),
            None => tracing::warn!("Faker shutdown drain timed out"),
        }
        tracing::info!("Faker stopped");
        Ok(())
    }

    /// Serves on a new task until the returned [`RunningFaker`] is stopped or dropped.
    /// Must be called inside a tokio runtime.
    #[must_use]
    pub fn spawn(self) -> RunningFaker {
        let shutdown = CancellationToken::new();
        let handle = self.handle();
        let addr = self.addr;
        let task = tokio::spawn(self.run_until(shutdown.clone()));
        RunningFaker {
            handle,
            addr,
            shutdown,
            task: Some(task),
        }
    }
}

/// A faker serving on its own task. Dropping it stops the server; [`RunningFaker::stop`]
/// also waits for it. Derefs to its [`FakerHandle`].
pub struct RunningFaker {
    handle: FakerHandle,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<()>>>,
}

impl std::ops::Deref for RunningFaker {
    type Target = FakerHandle;
    fn deref(&self) -> &FakerHandle {
        &self.handle
    }
}

impl RunningFaker {
    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the faker's state.
    #[must_use]
    pub fn handle(&self) -> FakerHandle {
        self.handle.clone()
    }

    /// Stops serving and waits for the server to finish.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningFaker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

//! The events service: the OCSF event store. A durable JetStream consumer (`events`) on
//! `SR_EVENTS` validates every event, stores it once per (tenant, event uid) in
//! `ocsf_events`, quarantines what it cannot store in `quarantined_events` (terminating the
//! message), and acks only after the commit. It serves a read API for a tenant's events and
//! quarantine, and deletes events older than the retention age.
//!
//! It owns the Postgres schema `events` and reads no other service's tables; it publishes
//! nothing (events about quarantined messages are written straight into its own store).

pub mod api;
pub mod config;
pub mod consumer;
pub mod decode;
pub mod error;
pub mod metrics;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use sr_runtime::{OpsServer, Readiness, SharedClock, SystemClock};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use store::Store;

/// Embedded migrations of the `events` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long shutdown waits for batches in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// A built events service: database migrated, stream and durable consumer ensured, HTTP
/// listener bound. Call [`App::run_until`] to consume and serve.
pub struct App {
    store: Store,
    consumer: consumer::Consumer,
    pull: PullConsumer,
    http: OpsServer,
    http_addr: SocketAddr,
    nats: async_nats::Client,
    metrics: Metrics,
    clock: SharedClock,
    retention_every: Duration,
}

impl App {
    /// Builds with the system clock.
    ///
    /// # Errors
    /// Invalid config, unreachable Postgres or NATS, JetStream refusing the stream or
    /// consumer, bind failure.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds with a given clock (retention and quarantine times follow it).
    ///
    /// # Errors
    /// As [`App::build`].
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::Startup(e.to_string()))?;
        let pool = sr_runtime::db::connect_and_migrate(&config.database, &MIGRATOR)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let started = Self::connect(config, pool.clone(), clock).await;
        if started.is_err() {
            pool.close().await;
        }
        started
    }

    async fn connect(config: Config, pool: sqlx::PgPool, clock: SharedClock) -> Result<Self> {
        let nats = sr_runtime::jetstream::connect(&config.nats, "sr-events")
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let js = async_nats::jetstream::new(nats.clone());
        let pull = consumer::ensure(&js, &config.nats, &config.consumer).await?;

        let metrics = Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let store = Store::new(
            pool.clone(),
            metrics.clone(),
            config.nats.subjects().events_stream(),
            config.retention.max_age(),
            config.retention.delete_batch,
        );
        let consumer = consumer::Consumer::new(
            store.clone(),
            js,
            config.nats.clone(),
            config.consumer.clone(),
            metrics.clone(),
            clock.clone(),
        );
        let readiness = Readiness::new().with_postgres(pool).with_nats(nats.clone());
        let http = OpsServer::bind(
            config.http.listen,
            Arc::new(registry),
            readiness,
            api::router(store.clone(), &config.api.token),
        )
        .await
        .map_err(|e| Error::Startup(format!("cannot bind {}: {e}", config.http.listen)))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| Error::Startup(format!("local address: {e}")))?;
        Ok(Self {
            store,
            consumer,
            pull,
            http,
            http_addr,
            nats,
            metrics,
            clock,
            retention_every: config.retention.interval(),
        })
    }

    /// Address of the read API and ops endpoints.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store (tests and benchmarks run retention and queries directly).
    #[must_use]
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The metrics (shared handles).
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Consumes, serves and runs retention until `shutdown` is cancelled, then stops
    /// pulling, finishes the batches in flight (bounded) and closes the pool.
    ///
    /// # Errors
    /// The HTTP server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            store,
            consumer,
            pull,
            http,
            http_addr,
            nats,
            metrics: _,
            clock,
            retention_every,
        } = self;
        tracing::info!(%http_addr, "Events service running");
        let internal = CancellationToken::new();
        let consuming = tokio::spawn(consumer.run(pull, internal.clone()));
        let retention = {
            let (store, token) = (store.clone(), internal.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(retention_every);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    match store.run_retention(clock.now()).await {
                        Ok(r) if r.events + r.quarantined > 0 => {
                            tracing::info!(
                                events = r.events,
                                quarantined = r.quarantined,
                                "Retention removed old rows"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "Retention failed; will retry"),
                    }
                }
            })
        };
        let server = tokio::spawn(http.run(internal.clone()));
        shutdown.cancelled().await;
        tracing::info!("Events service stopping");
        internal.cancel();
        let drain = async {
            let _ = consuming.await;
            let _ = retention.await;
            server.await
        };
        let served = match tokio::time::timeout(DRAIN, drain).await {
            Ok(Ok(r)) => r.map_err(|e| Error::Startup(format!("read API server: {e}"))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Read API task failed");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("Shutdown drain timed out");
                Ok(())
            }
        };
        // Acks are buffered in the client; make sure they reach the server.
        let _ = nats.flush().await;
        store.pool().close().await;
        served
    }
}

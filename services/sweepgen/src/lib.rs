//! The sweepgen service: turns the canonical inventory into per-agent sweep configs. It
//! consumes DIRE's inventory changes (`SR_INVENTORY`, durable consumer `sweepgen`) into its
//! own projection of sweep targets in Postgres (schema `sweepgen`), compiles each agent's
//! `SweepConfig` with `sr-sweep` from an in-memory index per (tenant, partition), answers the
//! gateway's agent-config requests over NATS (`sr.rpc.sweepgen.agent_config`, queue group
//! `sweepgen`), and serves a read API with the compiled config, its version and warnings.
//!
//! It owns the Postgres schema `sweepgen` and reads no other service's tables. Any number of
//! replicas answer identically (see [`configs`] for how they stay current).

pub mod api;
pub mod config;
pub mod configs;
pub mod consumer;
pub mod error;
pub mod metrics;
pub mod projection;
pub mod responder;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sr_runtime::jetstream::{self, StreamKind};
use sr_runtime::{OpsServer, Readiness};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};

/// Embedded migrations of the `sweepgen` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often every replica purges old tombstones (idempotent across replicas).
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A built sweepgen service: database migrated, durable consumer created, responder
/// subscribed, HTTP listener bound. Call [`App::run_until`] to serve.
pub struct App {
    config: Config,
    store: store::Store,
    configs: Arc<configs::Configs>,
    metrics: metrics::Metrics,
    consumer: consumer::Consumer,
    http: OpsServer,
    http_addr: SocketAddr,
    nats: async_nats::Client,
    responder: JoinHandle<()>,
    internal: CancellationToken,
}

impl App {
    /// Builds the service.
    ///
    /// # Errors
    /// Invalid config, unreachable Postgres or NATS, bind failure.
    pub async fn build(config: Config) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::Startup(e.to_string()))?;
        if config.api.token.is_empty() {
            tracing::warn!("api.token is empty: the read API refuses every request");
        }
        let pool = sr_runtime::db::connect_and_migrate(&config.database, &MIGRATOR)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let built = Self::build_with_pool(config, pool.clone()).await;
        if built.is_err() {
            pool.close().await;
        }
        built
    }

    async fn build_with_pool(config: Config, pool: sqlx::PgPool) -> Result<Self> {
        let nats = jetstream::connect(&config.nats, "sr-sweepgen")
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let js = async_nats::jetstream::new(nats.clone());
        let inventory = jetstream::ensure_stream(&js, &config.nats, StreamKind::Inventory)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        jetstream::ensure_stream(&js, &config.nats, StreamKind::Events)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let subjects = config.nats.subjects();
        let durable = consumer::durable(&inventory, &subjects, &config.consumer).await?;

        let max_payload = nats.server_info().max_payload;
        let reply_limit = max_payload.saturating_sub(config.rpc.reply_reserve_bytes);
        tracing::info!(
            max_payload,
            reply_limit,
            max_config_bytes = config.rpc.max_config_bytes,
            "Agent config reply limits"
        );

        let metrics = metrics::Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let store = store::Store::new(pool.clone());
        let configs = Arc::new(configs::Configs::new(
            store.clone(),
            config.compile.options(),
            config.rpc.max_config_bytes,
            Duration::from_millis(config.rpc.load_wait_ms),
            metrics.clone(),
        ));

        let internal = CancellationToken::new();
        let (c, m) = (configs.clone(), metrics.clone());
        let responder = sr_runtime::rpc::serve(
            nats.clone(),
            subjects.sweepgen_agent_config(),
            sr_core::subjects::SWEEPGEN_QUEUE.to_owned(),
            config.rpc.concurrency,
            internal.clone(),
            move |msg| responder::handle(c.clone(), m.clone(), reply_limit, msg),
        )
        .await
        .map_err(|e| {
            Error::Startup(format!(
                "cannot subscribe to {}: {e}",
                subjects.sweepgen_agent_config()
            ))
        })?;
        // Make sure the subscription reached the server before anyone is told we are up.
        nats.flush()
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;

        let consumer = consumer::Consumer {
            consumer: durable,
            js,
            subjects,
            cfg: config.consumer.clone(),
            store: store.clone(),
            configs: configs.clone(),
            metrics: metrics.clone(),
        };
        let readiness = Readiness::new().with_postgres(pool).with_nats(nats.clone());
        let api = api::router(api::ApiState {
            configs: configs.clone(),
            metrics: metrics.clone(),
            token_hash: (!config.api.token.is_empty()).then(|| api::token_hash(&config.api.token)),
        });
        let http = OpsServer::bind(config.http.listen, Arc::new(registry), readiness, api)
            .await
            .map_err(|e| Error::io(format!("cannot bind {}", config.http.listen), e))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(Self {
            config,
            store,
            configs,
            metrics,
            consumer,
            http,
            http_addr,
            nats,
            responder,
            internal,
        })
    }

    /// Address of the read API and ops endpoints.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Metrics (tests read counters).
    #[must_use]
    pub fn metrics(&self) -> metrics::Metrics {
        self.metrics.clone()
    }

    /// The compiled configs (tests ask directly).
    #[must_use]
    pub fn configs(&self) -> Arc<configs::Configs> {
        self.configs.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops pulling, answers requests in flight
    /// and closes the pool (bounded to 10 s).
    ///
    /// # Errors
    /// The HTTP server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            config,
            store,
            configs: _,
            metrics: _,
            consumer,
            http,
            http_addr,
            nats,
            responder,
            internal,
        } = self;
        tracing::info!(%http_addr, durable = %config.consumer.durable, "Sweepgen service running");
        let consumer = tokio::spawn(consumer.run(internal.clone()));
        let purge = {
            let store = store.clone();
            let token = internal.clone();
            let keep = chrono::Duration::seconds(
                i64::try_from(config.consumer.tombstone_retention_secs).unwrap_or(i64::MAX / 2),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(PURGE_EVERY) => {}
                    }
                    match store.purge_tombstones(chrono::Utc::now() - keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, "Old tombstones purged"),
                        Err(e) => tracing::warn!(error = %e, "Tombstone purge failed"),
                    }
                }
            })
        };
        let server = tokio::spawn(http.run(internal.clone()));
        shutdown.cancelled().await;
        tracing::info!("Sweepgen service stopping");
        internal.cancel();
        let drain = async {
            let _ = responder.await;
            let _ = consumer.await;
            let _ = purge.await;
            server.await
        };
        match tokio::time::timeout(Duration::from_secs(10), drain).await {
            Ok(Ok(r)) => r.map_err(|e| Error::io("read API server", e))?,
            Ok(Err(e)) => tracing::warn!(error = %e, "Read API task failed"),
            Err(_) => tracing::warn!("Shutdown drain timed out"),
        }
        let _ = nats.flush().await;
        store.pool().close().await;
        Ok(())
    }
}

//! DIRE, device identity reconciliation: consumes the device updates the gateway publishes on
//! `<prefix>.devices.updates.<tenant>` (stream `SR_DEVICES`, durable consumer `dire`), keeps one
//! canonical record per real device per (tenant, partition) in Postgres, publishes every change
//! on `<prefix>.inventory.changed.<tenant>` (stream `SR_INVENTORY`) and OCSF events on
//! `<prefix>.events.<tenant>.dire`, and serves a read API over the inventory.
//!
//! The decisions are `sr-reconcile`'s; this crate only loads, writes, publishes and serves.
//! It owns the Postgres schema `dire` and reads no other service's tables. Any number of
//! replicas can share the durable consumer: writers of one (tenant, partition) are serialised
//! by a transaction-scoped advisory lock.

pub mod api;
pub mod config;
pub mod error;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod outbox;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use sqlx::PgPool;
use sr_runtime::jetstream::{self, StreamKind};
use sr_runtime::{OpsServer, Readiness};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};
pub use metrics::Metrics;

/// Embedded migrations of the `dire` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built DIRE: database migrated, streams and the durable consumer ensured, HTTP bound.
/// Call [`App::run_until`] to consume and serve.
pub struct App {
    config: Config,
    pool: PgPool,
    nats: async_nats::Client,
    consumer: PullConsumer,
    ingest: Arc<ingest::Ingest>,
    outbox: outbox::Outbox,
    http: OpsServer,
    http_addr: SocketAddr,
}

fn startup(e: impl std::fmt::Display) -> Error {
    Error::Startup(e.to_string())
}

impl App {
    /// Builds the service.
    ///
    /// # Errors
    /// Invalid config, unreachable Postgres or NATS, failed migration, bind failure.
    pub async fn build(config: Config) -> Result<Self> {
        config.validate().map_err(startup)?;
        let pool = sr_runtime::db::connect_and_migrate(&config.database, &MIGRATOR)
            .await
            .map_err(startup)?;
        match Self::connect(config, pool.clone()).await {
            Ok(app) => Ok(app),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    async fn connect(config: Config, pool: PgPool) -> Result<Self> {
        let nats = jetstream::connect(&config.nats, "sr-dire")
            .await
            .map_err(startup)?;
        let js = async_nats::jetstream::new(nats.clone());
        let devices = jetstream::ensure_stream(&js, &config.nats, StreamKind::Devices)
            .await
            .map_err(startup)?;
        for kind in [StreamKind::Inventory, StreamKind::Events] {
            jetstream::ensure_stream(&js, &config.nats, kind)
                .await
                .map_err(startup)?;
        }
        let subjects = config.nats.subjects();
        let c = &config.consumer;
        let consumer: PullConsumer = devices
            .get_or_create_consumer(
                &c.durable,
                pull::Config {
                    durable_name: Some(c.durable.clone()),
                    filter_subject: subjects.device_updates_all(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: Duration::from_secs(c.ack_wait_secs),
                    // Unlimited: transient failures must never drop a message; DIRE itself
                    // terminates messages that keep failing (consumer.max_deliver).
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| startup(format!("cannot create consumer {}: {e}", c.durable)))?;

        let metrics = Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let notify = Arc::new(Notify::new());
        let ingest = Arc::new(ingest::Ingest {
            pool: pool.clone(),
            consumer: config.consumer.clone(),
            outbox: config.outbox.clone(),
            subjects: subjects.clone(),
            reconcile: config.reconcile_config(),
            metrics: metrics.clone(),
            outbox_notify: notify,
            analyze: Arc::default(),
            skip_settled: config.reconcile.skip_settled,
            decide_ahead: config.reconcile.decide_ahead,
            key_filters: ingest::KeyBudget::new(config.reconcile.key_filter_max_keys),
            memos: Arc::default(),
        });
        let outbox = outbox::Outbox {
            pool: pool.clone(),
            js,
            subjects,
            batch: config.outbox.publish_batch,
            metrics,
        };
        let readiness = Readiness::new()
            .with_postgres(pool.clone())
            .with_nats(nats.clone());
        let api = api::router(Arc::new(api::ApiState {
            pool: pool.clone(),
            token: config.api.token.trim().to_owned(),
        }));
        let http = OpsServer::bind(config.http.listen, Arc::new(registry), readiness, api)
            .await
            .map_err(|e| startup(format!("cannot bind {}: {e}", config.http.listen)))?;
        let http_addr = http.local_addr().map_err(startup)?;
        Ok(Self {
            config,
            pool,
            nats,
            consumer,
            ingest,
            outbox,
            http,
            http_addr,
        })
    }

    /// Address of the read API and ops endpoints.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The metrics (tests read counters directly).
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.ingest.metrics.clone()
    }

    /// The pool (tests and benchmarks inspect the tables).
    #[must_use]
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Consumes and serves until `shutdown` is cancelled, then stops pulling, finishes the batch
    /// in progress, publishes what the outbox holds and closes (bounded to 15 s).
    ///
    /// # Errors
    /// The HTTP server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            config,
            pool,
            nats,
            consumer,
            ingest,
            outbox,
            http,
            http_addr,
        } = self;
        tracing::info!(%http_addr, durable = %config.consumer.durable, "DIRE running");
        let internal = CancellationToken::new();
        let notify = ingest.outbox_notify.clone();
        let publisher = tokio::spawn(outbox.run(
            notify,
            Duration::from_millis(config.outbox.poll_interval_ms.max(10)),
            internal.clone(),
        ));
        let consumer_task = tokio::spawn(ingest::run(ingest, consumer, internal.clone()));
        let server = tokio::spawn(http.run(internal.clone()));
        shutdown.cancelled().await;
        tracing::info!("DIRE stopping");
        internal.cancel();
        let drain = async {
            let _ = consumer_task.await;
            let _ = publisher.await;
            server.await
        };
        let result = match tokio::time::timeout(Duration::from_secs(15), drain).await {
            Ok(Ok(r)) => r.map_err(|e| startup(format!("HTTP server: {e}"))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "HTTP server task failed");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("Shutdown drain timed out");
                Ok(())
            }
        };
        let _ = nats.flush().await;
        pool.close().await;
        result
    }
}

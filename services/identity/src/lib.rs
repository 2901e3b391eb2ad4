//! The identity service: the control plane. It bootstraps the platform (tenant, CAs,
//! gateway and platform sync certificates), runs the certificate authority, owns tenants,
//! sync services, agent enrollment and integration sources, serves the admin API, answers
//! the gateway's lookups and sync-config requests over NATS, tracks sync liveness, and
//! publishes OCSF events for every lifecycle change.
//!
//! It owns the Postgres schema `identity` and reads no other service's tables.

pub mod api;
pub mod bootstrap;
pub mod ca;
pub mod config;
pub mod control;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod responder;
pub mod seal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sr_runtime::jetstream::{self, StreamKind};
use sr_runtime::{OpsServer, Readiness, SharedClock, SystemClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use control::Control;
pub use error::{Error, Result};

/// Embedded migrations of the `identity` schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built identity service: listeners bound, database migrated, platform bootstrapped,
/// responders subscribed. Call [`App::run_until`] to serve.
pub struct App {
    control: Arc<Control>,
    http: OpsServer,
    http_addr: SocketAddr,
    nats: async_nats::Client,
    responder: JoinHandle<()>,
    internal: CancellationToken,
}

impl App {
    /// Builds with the system clock.
    ///
    /// # Errors
    /// Invalid config, unreachable Postgres or NATS, failed bootstrap, bind failure.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds with a given clock (tests move time with a `ManualClock`).
    ///
    /// # Errors
    /// As [`App::build`].
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::Startup(e.to_string()))?;
        let sealer = bootstrap::sealer(&config)?;
        let pool = sr_runtime::db::connect_and_migrate(&config.database, &MIGRATOR)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let platform = bootstrap::run(&pool, &sealer, &config, clock.now()).await?;
        let nats = jetstream::connect(&config.nats, "sr-identity")
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
        let js = async_nats::jetstream::new(nats.clone());
        jetstream::ensure_stream(&js, &config.nats, StreamKind::Events)
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;

        let metrics = metrics::Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let control = Arc::new(Control {
            pool: pool.clone(),
            sealer,
            clock,
            config: config.clone(),
            platform,
            outbox_notify: Arc::new(tokio::sync::Notify::new()),
            metrics,
        });

        let internal = CancellationToken::new();
        let subjects = config.nats.subjects();
        let c = control.clone();
        let responder = sr_runtime::rpc::serve(
            nats.clone(),
            subjects.identity_rpc_all(),
            sr_core::subjects::IDENTITY_QUEUE.to_owned(),
            64,
            internal.clone(),
            move |msg| responder::handle(c.clone(), msg),
        )
        .await
        .map_err(|e| {
            Error::Startup(format!(
                "cannot subscribe to {}: {e}",
                subjects.identity_rpc_all()
            ))
        })?;
        // Make sure the subscription reached the server before anyone is told we are up.
        nats.flush()
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;

        let readiness = Readiness::new().with_postgres(pool).with_nats(nats.clone());
        let http = OpsServer::bind(
            config.http.listen,
            Arc::new(registry),
            readiness,
            api::router(control.clone()),
        )
        .await
        .map_err(|e| Error::io(format!("cannot bind {}", config.http.listen), e))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(Self {
            control,
            http,
            http_addr,
            nats,
            responder,
            internal,
        })
    }

    /// Address of the admin API and ops endpoints.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The control plane (tests call operations directly).
    #[must_use]
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops taking work, answers requests in
    /// flight and publishes pending events (bounded to 10 s).
    ///
    /// # Errors
    /// The HTTP server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            control,
            http,
            http_addr,
            nats,
            responder,
            internal,
        } = self;
        tracing::info!(%http_addr, platform_tenant_id = %control.platform.tenant_id, "Identity service running");
        let js = async_nats::jetstream::new(nats.clone());
        let outbox = tokio::spawn(outbox::run(
            control.pool.clone(),
            js,
            control.config.nats.subjects(),
            control.outbox_notify.clone(),
            control.metrics.clone(),
            internal.clone(),
        ));
        let liveness = {
            let control = control.clone();
            let token = internal.clone();
            let every = Duration::from_secs(control.config.status.check_interval_secs.max(1));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = control.mark_stale_offline().await {
                        tracing::warn!(error = %e, "Liveness check failed");
                    }
                }
            })
        };
        let http_token = internal.clone();
        let server = tokio::spawn(http.run(http_token));
        shutdown.cancelled().await;
        tracing::info!("Identity service stopping");
        internal.cancel();
        let drain = async {
            let _ = responder.await;
            let _ = liveness.await;
            let _ = outbox.await;
            server.await
        };
        match tokio::time::timeout(Duration::from_secs(10), drain).await {
            Ok(Ok(r)) => r.map_err(|e| Error::io("admin API server", e))?,
            Ok(Err(e)) => tracing::warn!(error = %e, "Admin API task failed"),
            Err(_) => tracing::warn!("Shutdown drain timed out"),
        }
        let _ = nats.flush().await;
        control.pool.close().await;
        Ok(())
    }
}

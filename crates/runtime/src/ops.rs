//! The ops HTTP server every service runs: `/healthz`, `/readyz`, `/metrics`, plus any API
//! routes the service adds.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// Named readiness probes; `/readyz` answers 200 only when every probe passes.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(String, Probe)>,
}

impl Readiness {
    /// No probes (always ready).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a probe.
    #[must_use]
    pub fn with_probe<F>(mut self, name: &str, probe: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static,
    {
        self.probes.push((name.to_owned(), Arc::new(probe)));
        self
    }

    /// Adds a probe that runs `SELECT 1`.
    #[must_use]
    pub fn with_postgres(self, pool: sqlx::PgPool) -> Self {
        self.with_probe("postgres", move || {
            let pool = pool.clone();
            Box::pin(async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() })
        })
    }

    /// Adds a probe on the NATS connection state.
    #[must_use]
    pub fn with_nats(self, client: async_nats::Client) -> Self {
        self.with_probe("nats", move || {
            let state = client.connection_state();
            Box::pin(async move { state == async_nats::connection::State::Connected })
        })
    }

    /// Runs every probe: (all passed, per-probe results).
    pub async fn check(&self) -> (bool, Vec<(String, bool)>) {
        let mut results = Vec::with_capacity(self.probes.len());
        for (name, probe) in &self.probes {
            results.push((name.clone(), probe().await));
        }
        (results.iter().all(|(_, ok)| *ok), results)
    }
}

/// A bound ops server, not yet running.
pub struct OpsServer {
    listener: TcpListener,
    router: Router,
}

impl OpsServer {
    /// Binds `addr` and prepares the routes; `api` routes are served beside the ops ones.
    ///
    /// # Errors
    /// The bind error.
    pub async fn bind(
        addr: SocketAddr,
        registry: Arc<Registry>,
        readiness: Readiness,
        api: Router,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let router = api
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let readiness = readiness.clone();
                    async move {
                        let (ready, results) = readiness.check().await;
                        let body = serde_json::json!({
                            "ready": ready,
                            "checks": results.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                        });
                        let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                        (code, axum::Json(body))
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut text = String::new();
                        match prometheus_client::encoding::text::encode(&mut text, &registry) {
                            Ok(()) => (
                                StatusCode::OK,
                                [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                                text,
                            )
                                .into_response(),
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        }
                    }
                }),
            );
        Ok(Self { listener, router })
    }

    /// The bound address (port 0 resolved).
    ///
    /// # Errors
    /// The socket error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `token` is cancelled, then finishes in-flight requests.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn run(self, token: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    }
}

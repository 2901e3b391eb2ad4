//! The gateway: the only component outside processes reach. It authenticates every call by
//! its client certificate (mTLS, tenant from the certificate only), answers `Hello` and
//! `GetConfig` by asking identity (syncs) or sweepgen (agents) over NATS, forwards
//! heartbeats, and reassembles `StreamStatus` result streams and publishes them to
//! JetStream (`SR_DEVICES`), answering `received = true` only once every batch is durable.
//!
//! It owns no tables and keeps no state beyond short-lived lookup caches.

pub mod agent_config;
pub mod auth;
pub mod config;
pub mod directory;
pub mod grpc;
pub mod metrics;
pub mod publish;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sr_runtime::jetstream::{self, StreamKind};
use sr_runtime::{OpsServer, Readiness};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use config::Config;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] sr_runtime::config::ConfigError),
    /// A TLS file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// NATS failure.
    #[error(transparent)]
    Nats(#[from] sr_runtime::jetstream::NatsError),
    /// Listener failure.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Batch budget below the server's limit.
    #[error("{0}")]
    Budget(String),
}

/// A built gateway: listeners bound, NATS connected, streams ensured.
pub struct App {
    grpc: TcpIncoming,
    grpc_addr: SocketAddr,
    server: Server,
    service: grpc::Service,
    max_decode: usize,
    max_encode: usize,
    ops: OpsServer,
    ops_addr: SocketAddr,
    nats: async_nats::Client,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|source| StartError::TlsFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl App {
    /// Builds the gateway.
    ///
    /// # Errors
    /// [`StartError`] for bad config, unreadable TLS files, NATS or bind failures.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let cert = read("server certificate", &config.grpc.cert_file)?;
        let key = read("server key", &config.grpc.key_file)?;
        let client_ca = read("client CA", &config.grpc.client_ca_file)?;

        let nats = jetstream::connect(&config.nats, "sr-gateway").await?;
        let js = async_nats::jetstream::new(nats.clone());
        jetstream::ensure_stream(&js, &config.nats, StreamKind::Devices).await?;
        jetstream::ensure_stream(&js, &config.nats, StreamKind::Events).await?;
        let max_payload = nats.server_info().max_payload;
        let budget = sr_chunking::batch_budget(max_payload, config.limits.header_reserve_bytes)
            .map_err(|e| StartError::Budget(e.to_string()))?;

        let metrics = metrics::Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let timeout = Duration::from_millis(config.nats.request_timeout_ms.max(1));
        let directory = directory::Directory::new(
            nats.clone(),
            config.nats.subjects(),
            timeout,
            Duration::from_secs(config.identity.cache_ttl_secs),
            Duration::from_secs(config.identity.negative_cache_ttl_secs),
        );
        let publisher = publish::Publisher::new(
            js,
            config.nats.subjects(),
            budget,
            config.grpc.gateway_id.clone(),
        );

        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&cert, &key))
            .client_ca_root(Certificate::from_pem(&client_ca));
        let g = &config.grpc;
        let server = Server::builder()
            .tls_config(tls)
            .map_err(|e| StartError::Tls(e.to_string()))?
            .initial_stream_window_size(g.stream_window_bytes)
            .initial_connection_window_size(g.connection_window_bytes)
            .http2_keepalive_interval(Some(Duration::from_secs(g.keepalive_secs)))
            .tcp_keepalive(Some(Duration::from_secs(g.keepalive_secs)));
        let grpc = TcpIncoming::bind(g.listen).map_err(|source| StartError::Bind {
            addr: g.listen,
            source,
        })?;
        let grpc_addr = grpc.local_addr().map_err(|source| StartError::Bind {
            addr: g.listen,
            source,
        })?;
        let max_decode = config.limits.max_decode_bytes;
        let max_encode = config.limits.max_response_bytes;
        let ops_listen = config.http.listen;
        tracing::info!(max_payload, batch_budget = budget, "JetStream batch budget");
        let service = grpc::Service(Arc::new(grpc::Gateway::new(
            config, directory, publisher, metrics,
        )));

        let readiness = Readiness::new().with_nats(nats.clone());
        let ops = OpsServer::bind(
            ops_listen,
            Arc::new(registry),
            readiness,
            axum::Router::new(),
        )
        .await
        .map_err(|source| StartError::Bind {
            addr: ops_listen,
            source,
        })?;
        let ops_addr = ops.local_addr().map_err(|source| StartError::Bind {
            addr: ops_listen,
            source,
        })?;
        Ok(Self {
            grpc,
            grpc_addr,
            server,
            service,
            max_decode,
            max_encode,
            ops,
            ops_addr,
            nats,
        })
    }

    /// The gRPC address (port 0 resolved).
    #[must_use]
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The ops address.
    #[must_use]
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Serves until `shutdown` is cancelled, then lets calls in flight finish (bounded to 30 s).
    ///
    /// # Errors
    /// The transport error of the gRPC server.
    pub async fn run_until(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let Self {
            grpc,
            grpc_addr,
            mut server,
            service,
            max_decode,
            max_encode,
            ops,
            ops_addr,
            nats,
        } = self;
        tracing::info!(%grpc_addr, %ops_addr, "Gateway running");
        let svc = sr_proto::agent_gateway_service_server::AgentGatewayServiceServer::new(service)
            .max_decoding_message_size(max_decode)
            .max_encoding_message_size(max_encode);
        let ops_token = shutdown.child_token();
        let ops_task = tokio::spawn(ops.run(ops_token.clone()));
        let drain = shutdown.clone();
        let serve = server
            .add_service(svc)
            .serve_with_incoming_shutdown(grpc, async move { drain.cancelled().await });
        tokio::pin!(serve);
        let result = tokio::select! {
            r = &mut serve => r,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            } => {
                tracing::warn!("Gateway drain timed out; closing open calls");
                Ok(())
            }
        };
        ops_token.cancel();
        let _ = ops_task.await;
        let _ = nats.flush().await;
        result
    }
}

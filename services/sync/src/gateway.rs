//! The mTLS session with the gateway: connect, `Hello`, and the three calls the sync makes
//! (`GetConfig`, `PushStatus`, `StreamStatus`).
//!
//! Each connection is made through a one-shot connector: when the TCP connection drops (a
//! gateway restart, a network cut) tonic would silently dial again, and the first call on the
//! new connection would reach a gateway that never saw our `Hello`. The one-shot connector
//! refuses to dial a second time instead, the session notices, and the next caller builds a
//! fresh connection and sends `Hello` on it before anything else. Reconnect attempts are spaced
//! by capped exponential backoff with jitter, however many callers ask.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::Injector;
use sr_core::TenantId;
use sr_proto::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, GatewayServiceStatus,
    GatewayStatusChunk, GatewayStatusRequest,
};
use tokio::sync::{Mutex, Notify, watch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use tonic::{Code, Request};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::backoff::Backoff;
use crate::bootstrap::Bootstrap;
use crate::config::GatewayConfig;
use crate::metrics::Metrics;

/// gRPC metadata key naming a result set, stable across retries (the gateway de-duplicates).
pub const STREAM_ID_METADATA: &str = "x-sr-stream-id";

type Client = AgentGatewayServiceClient<Channel>;

/// A failed gateway call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The gateway cannot be reached (or is reconnecting); try again later.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused this identity (certificate, component id, tenant).
    #[error("gateway refused this sync's identity: {0}")]
    Refused(String),
    /// The gateway rejected the call itself.
    #[error("gateway rejected the call ({code:?}): {message}")]
    Rejected {
        /// gRPC code.
        code: Code,
        /// Message from the gateway.
        message: String,
    },
}

impl GatewayError {
    /// Whether the same call may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Refused(_) => false,
            Self::Rejected { code, .. } => matches!(
                code,
                Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Internal
                    | Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Cancelled
            ),
        }
    }

    fn from_status(status: &tonic::Status) -> Self {
        let message = status_text(status);
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => Self::Refused(message),
            Code::Unavailable | Code::Unknown if looks_like_tls_refusal(&message) => {
                Self::Refused(message)
            }
            Code::Unavailable => Self::Unavailable(message),
            code => Self::Rejected { code, message },
        }
    }
}

/// The message of a status, with the transport error chain when there is one.
fn status_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn transport_text(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// TLS alerts and certificate errors mean the peer rejected our identity (or we its), which
/// no retry fixes.
fn looks_like_tls_refusal(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("alert") || t.contains("unknownissuer")
}

/// What the gateway said in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// Tenant of the certificate.
    pub tenant_id: TenantId,
    /// Its slug.
    pub tenant_slug: String,
    /// Heartbeat interval the gateway asks for (clamped 10 s – 10 min).
    pub heartbeat_interval: Duration,
    /// Whether our config version is outdated.
    pub config_outdated: bool,
    /// Which gateway answered.
    pub gateway_id: String,
}

/// Dials the gateway once; a second dial means the first connection is gone.
#[derive(Clone)]
struct OneShotConnector {
    address: String,
    used: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
}

impl tower_service::Service<Uri> for OneShotConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        if self.used.swap(true, Ordering::SeqCst) {
            self.dead.store(true, Ordering::SeqCst);
            return Box::pin(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "gateway connection lost; the session reconnects and says Hello again",
                ))
            });
        }
        let address = self.address.clone();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[derive(Clone)]
struct Conn {
    client: Client,
    dead: Arc<AtomicBool>,
}

struct Dial {
    conn: Option<Conn>,
    backoff: Backoff,
    not_before: Option<tokio::time::Instant>,
}

/// The session with the gateway, shared by every task of the sync.
pub struct Session {
    boot: Bootstrap,
    cfg: GatewayConfig,
    hostname: String,
    dial: Mutex<Dial>,
    hello: watch::Sender<Option<HelloInfo>>,
    config_version: std::sync::Mutex<String>,
    refresh: Notify,
    connections: AtomicU64,
    metrics: Metrics,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("component_id", &self.boot.component_id)
            .field("gateway", &self.boot.gateway_address)
            .finish_non_exhaustive()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Puts the current span's W3C trace context into the call's metadata.
fn inject_trace<T>(req: &mut Request<T>) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(req.metadata_mut()));
    });
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

impl Session {
    /// A session that has not connected yet.
    #[must_use]
    pub fn new(boot: Bootstrap, cfg: GatewayConfig, metrics: Metrics) -> Self {
        let backoff = cfg.reconnect_backoff();
        Self {
            boot,
            cfg,
            hostname: hostname(),
            dial: Mutex::new(Dial {
                conn: None,
                backoff,
                not_before: None,
            }),
            hello: watch::Sender::new(None),
            config_version: std::sync::Mutex::new(String::new()),
            refresh: Notify::new(),
            connections: AtomicU64::new(0),
            metrics,
        }
    }

    /// Our component id (`agent_id` in every call).
    #[must_use]
    pub fn component_id(&self) -> &str {
        &self.boot.component_id
    }

    /// The last `Hello` answer, if any.
    #[must_use]
    pub fn hello_info(&self) -> Option<HelloInfo> {
        self.hello.borrow().clone()
    }

    /// Watches `Hello` answers (one per connection).
    #[must_use]
    pub fn watch_hello(&self) -> watch::Receiver<Option<HelloInfo>> {
        self.hello.subscribe()
    }

    /// Connections made so far (each followed by a `Hello`).
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Records the config version we run, sent in the next `Hello`.
    pub fn set_config_version(&self, version: &str) {
        version.clone_into(
            &mut self
                .config_version
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// Completes when a `Hello` said our config is outdated (or [`Session::request_refresh`]).
    pub async fn refresh_requested(&self) {
        self.refresh.notified().await;
    }

    /// Asks the config poller to poll now.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// A live connection on which `Hello` has been answered, connecting if needed. Does not
    /// wait: when the last attempt failed and its backoff has not passed, answers
    /// `Unavailable` at once, so any number of callers cause one attempt per backoff step.
    async fn conn(&self) -> Result<Conn, GatewayError> {
        let mut dial = self.dial.lock().await;
        if let Some(c) = &dial.conn {
            if !c.dead.load(Ordering::SeqCst) {
                return Ok(c.clone());
            }
            dial.conn = None;
            tracing::info!(gateway = %self.boot.gateway_address, "Gateway connection lost; reconnecting");
        }
        if let Some(t) = dial.not_before
            && tokio::time::Instant::now() < t
        {
            return Err(GatewayError::Unavailable(format!(
                "reconnecting to {} (next attempt in {} ms)",
                self.boot.gateway_address,
                t.saturating_duration_since(tokio::time::Instant::now())
                    .as_millis()
            )));
        }
        match self.connect_and_hello().await {
            Ok(conn) => {
                dial.backoff.reset();
                dial.not_before = None;
                dial.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                let delay = dial.backoff.next_delay();
                dial.not_before = Some(tokio::time::Instant::now() + delay);
                self.metrics.gateway_connect_failures.inc();
                tracing::warn!(gateway = %self.boot.gateway_address, error = %e, retry_in_ms = delay.as_millis() as u64, "Gateway connection failed");
                Err(e)
            }
        }
    }

    /// Connects (mTLS) and sends `Hello`. Used at start to fail fast, and by [`Session::conn`].
    async fn connect_and_hello(&self) -> Result<Conn, GatewayError> {
        let b = &self.boot;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&b.ca_pem))
            .identity(Identity::from_pem(&b.cert_pem, &b.key_pem))
            .domain_name(b.gateway_server_name.clone());
        let endpoint = Endpoint::from_shared(format!("https://{}", b.gateway_address))
            .map_err(|e| GatewayError::Refused(format!("invalid gateway address: {e}")))?
            .tls_config(tls)
            .map_err(|e| GatewayError::Refused(format!("TLS setup failed: {e}")))?
            .connect_timeout(Duration::from_millis(self.cfg.connect_timeout_ms))
            .http2_keep_alive_interval(Duration::from_secs(self.cfg.keepalive_secs.max(1)))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let dead = Arc::new(AtomicBool::new(false));
        let connector = OneShotConnector {
            address: b.gateway_address.clone(),
            used: Arc::new(AtomicBool::new(false)),
            dead: dead.clone(),
        };
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                let text = transport_text(&e);
                if looks_like_tls_refusal(&text) {
                    GatewayError::Refused(text)
                } else {
                    GatewayError::Unavailable(text)
                }
            })?;
        let client = AgentGatewayServiceClient::new(channel);
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.metrics.gateway_connections.inc();
        let conn = Conn { client, dead };
        let version = self
            .config_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut req = Request::new(AgentHelloRequest {
            agent_id: b.component_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: vec!["sync".to_owned()],
            hostname: self.hostname.clone(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            partition: self.cfg.partition.clone(),
            config_version: version,
            labels: std::collections::HashMap::new(),
        });
        inject_trace(&mut req);
        let timeout = Duration::from_secs(self.cfg.request_timeout_secs);
        let resp = match tokio::time::timeout(timeout, conn.client.clone().hello(req)).await {
            Err(_) => return Err(GatewayError::Unavailable("Hello timed out".to_owned())),
            Ok(Err(status)) => return Err(GatewayError::from_status(&status)),
            Ok(Ok(r)) => r.into_inner(),
        };
        self.metrics.hellos.inc();
        if !resp.accepted {
            return Err(GatewayError::Refused(format!(
                "Hello not accepted: {}",
                resp.message
            )));
        }
        let tenant_id: TenantId = resp.tenant_id.parse().map_err(|e| {
            GatewayError::Refused(format!(
                "Hello answered an invalid tenant id {:?}: {e}",
                resp.tenant_id
            ))
        })?;
        let secs = sr_core::syncconfig::clamp_heartbeat_secs(if resp.heartbeat_interval_sec > 0 {
            resp.heartbeat_interval_sec
        } else {
            sr_core::syncconfig::DEFAULT_HEARTBEAT_SECS
        });
        let info = HelloInfo {
            tenant_id,
            tenant_slug: resp.tenant_slug,
            heartbeat_interval: Duration::from_secs(u64::try_from(secs).unwrap_or(30)),
            config_outdated: resp.config_outdated,
            gateway_id: resp.gateway_id,
        };
        tracing::info!(gateway_id = %info.gateway_id, tenant_id = %info.tenant_id, tenant_slug = %info.tenant_slug, config_outdated = info.config_outdated, "Hello answered");
        if info.config_outdated {
            self.refresh.notify_one();
        }
        self.hello.send_replace(Some(info));
        Ok(conn)
    }

    /// Connects and says `Hello` now, failing fast (start-up).
    ///
    /// # Errors
    /// [`GatewayError`]: `Refused` when the gateway refuses the identity.
    pub async fn start(&self) -> Result<HelloInfo, GatewayError> {
        let mut dial = self.dial.lock().await;
        let conn = self.connect_and_hello().await?;
        dial.conn = Some(conn);
        self.hello_info()
            .ok_or_else(|| GatewayError::Unavailable("no Hello answer".to_owned()))
    }

    /// Maps a failed call, marking the connection dead when the transport is at fault.
    fn failed(conn: &Conn, status: &tonic::Status) -> GatewayError {
        if matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
        ) {
            conn.dead.store(true, Ordering::SeqCst);
        }
        GatewayError::from_status(status)
    }

    /// Runs one call on a live connection. When the call is what revealed that the connection
    /// was gone (the one-shot connector refused to redial), it is repeated once on a fresh
    /// connection, after `Hello`.
    async fn call<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<T, GatewayError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.conn().await?;
            match tokio::time::timeout(timeout, f(conn.client.clone())).await {
                Err(_) => {
                    conn.dead.store(true, Ordering::SeqCst);
                    return Err(GatewayError::Unavailable(format!("{what} timed out")));
                }
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => {
                    let lost = conn.dead.load(Ordering::SeqCst);
                    let e = Self::failed(&conn, &status);
                    if lost && attempt == 1 {
                        tracing::debug!(
                            what,
                            "Call found the gateway connection gone; reconnecting"
                        );
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// `GetConfig` with the version we run.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn get_config(&self, version: &str) -> Result<AgentConfigResponse, GatewayError> {
        let timeout = Duration::from_secs(self.cfg.request_timeout_secs);
        self.call("GetConfig", timeout, |mut client| {
            let mut req = Request::new(AgentConfigRequest {
                agent_id: self.boot.component_id.clone(),
                config_version: version.to_owned(),
            });
            inject_trace(&mut req);
            async move { client.get_config(req).await }
        })
        .await
    }

    /// `PushStatus` with the given statuses.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn push_status(
        &self,
        services: Vec<GatewayServiceStatus>,
    ) -> Result<(), GatewayError> {
        let timeout = Duration::from_secs(self.cfg.request_timeout_secs);
        self.call("PushStatus", timeout, |mut client| {
            let mut req = Request::new(GatewayStatusRequest {
                services: services.clone(),
                agent_id: self.boot.component_id.clone(),
                timestamp: chrono::Utc::now().timestamp(),
                ..Default::default()
            });
            inject_trace(&mut req);
            async move { client.push_status(req).await }
        })
        .await
        .map(|_| ())
    }

    /// One `StreamStatus` call carrying the chunks `make` produces, named `stream_id`.
    /// Succeeds only when the gateway answered `received = true` (the results are durable).
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn stream_status<S>(
        &self,
        stream_id: &str,
        make: impl Fn() -> S,
    ) -> Result<(), GatewayError>
    where
        S: Stream<Item = GatewayStatusChunk> + Send + 'static,
    {
        let id: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            stream_id.parse().map_err(|_| GatewayError::Rejected {
                code: Code::InvalidArgument,
                message: format!("invalid stream id {stream_id:?}"),
            })?;
        let timeout = Duration::from_secs(self.cfg.stream_timeout_secs);
        let resp = self
            .call("StreamStatus", timeout, |mut client| {
                let mut req = Request::new(make());
                req.metadata_mut().insert(STREAM_ID_METADATA, id.clone());
                inject_trace(&mut req);
                async move { client.stream_status(req).await }
            })
            .await?;
        if resp.received {
            Ok(())
        } else {
            Err(GatewayError::Rejected {
                code: Code::Unknown,
                message: "gateway answered received = false".to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_retried_and_outages_are() {
        let refused =
            GatewayError::from_status(&tonic::Status::permission_denied("component_id mismatch"));
        assert!(matches!(refused, GatewayError::Refused(_)));
        assert!(!refused.is_retryable());
        let down = GatewayError::from_status(&tonic::Status::unavailable("connection refused"));
        assert!(down.is_retryable());
        let tls = GatewayError::from_status(&tonic::Status::unavailable(
            "received fatal alert: UnknownCA",
        ));
        assert!(matches!(tls, GatewayError::Refused(_)));
        let full = GatewayError::from_status(&tonic::Status::resource_exhausted("buffer full"));
        assert!(full.is_retryable());
        let bad = GatewayError::from_status(&tonic::Status::invalid_argument("bad chunk"));
        assert!(!bad.is_retryable());
    }
}

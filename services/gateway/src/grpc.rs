//! The `AgentGatewayService` implementation: authenticate every call, answer `Hello` and
//! `GetConfig` by asking the owning service, forward heartbeats, and reassemble and publish
//! result streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::propagation::Extractor;
use sr_chunking::{IncomingChunk, Reassembler, ReassemblyLimits};
use sr_core::TenantId;
use sr_core::rpc::{
    AgentConfigReply, CallerIdentity, HeartbeatOrigin, HeartbeatReply, HeartbeatRequest,
    RpcErrorCode, SourceStatusReport, SweepConfigBody, SyncConfigReply, SyncConfigRequest,
};
use sr_core::subjects::identity_ops;
use sr_pki::ComponentType;
use sr_proto::agent_gateway_service_server::AgentGatewayService;
use sr_proto::{
    AgentConfigRequest as PbConfigRequest, AgentConfigResponse, AgentHelloRequest,
    AgentHelloResponse, DeviceTarget, GatewayStatusChunk, GatewayStatusRequest,
    GatewayStatusResponse, SweepConfig,
};
use sr_runtime::rpc::{CallError, call};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::auth::{self, Caller, Refusal};
use crate::config::Config;
use crate::directory::{Directory, LookupError};
use crate::metrics::{Metrics, RpcLabel};
use crate::publish::Publisher;

/// gRPC metadata key a client may set to name a result set, stable across retries.
pub const STREAM_ID_METADATA: &str = "x-sr-stream-id";
/// `service_type` of a status that reports an integration source run.
pub const SOURCE_RUN_SERVICE_TYPE: &str = "sync_source";

/// Shared state of the gRPC service.
pub struct Gateway {
    config: Config,
    directory: Directory,
    publisher: Publisher,
    metrics: Metrics,
    streams: Arc<Semaphore>,
    buffer: Arc<Semaphore>,
}

/// Buffer permits are counted in KiB so 512 MiB fit a semaphore comfortably.
const BUFFER_UNIT: usize = 1024;

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// A span for one RPC, continuing the client's `traceparent` when it sent one.
fn rpc_span(rpc: &'static str, metadata: &tonic::metadata::MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        rpc,
        tenant_id = tracing::field::Empty,
        component_id = tracing::field::Empty
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)));
    let _ = span.set_parent(parent);
    span
}

fn call_status(service: &str, e: CallError) -> Status {
    match e {
        CallError::NoResponders(_) | CallError::Timeout(_) => {
            Status::unavailable(format!("the {service} service did not answer; try again"))
        }
        CallError::Remote(r) => match r.code {
            RpcErrorCode::NotFound => Status::not_found(r.message),
            RpcErrorCode::InvalidArgument => Status::invalid_argument(r.message),
            RpcErrorCode::PermissionDenied => Status::permission_denied(r.message),
            RpcErrorCode::Unavailable => Status::unavailable(r.message),
        },
        other => Status::unavailable(format!("the {service} service failed: {other}")),
    }
}

fn truncate_utf8(bytes: &mut Vec<u8>, max: usize) {
    if bytes.len() > max {
        let mut cut = max;
        // Do not leave half a UTF-8 character at the end of a text message.
        while cut > 0 && (bytes[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        bytes.truncate(cut);
    }
}

fn valid_stream_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

impl Gateway {
    /// Builds the service.
    #[must_use]
    pub fn new(
        config: Config,
        directory: Directory,
        publisher: Publisher,
        metrics: Metrics,
    ) -> Self {
        let l = &config.limits;
        let streams = Arc::new(Semaphore::new(l.max_concurrent_streams));
        let buffer = Arc::new(Semaphore::new(l.max_buffered_bytes / BUFFER_UNIT));
        Self {
            config,
            directory,
            publisher,
            metrics,
            streams,
            buffer,
        }
    }

    fn count(&self, rpc: &str, result: &Result<(), &Status>) {
        let code = match result {
            Ok(()) => "Ok".to_owned(),
            Err(s) => format!("{:?}", s.code()),
        };
        self.metrics
            .rpcs
            .get_or_create(&RpcLabel {
                rpc: rpc.to_owned(),
                code,
            })
            .inc();
    }

    /// Logs, counts and reports a refusal; returns the status for the client.
    fn refuse(&self, rpc: &str, r: Refusal) -> Status {
        let code = r.status.code();
        if code == Code::Unavailable {
            tracing::warn!(rpc, identity = %r.identity, reason = %r.status.message(), "Call failed: dependency unavailable");
            return r.status;
        }
        tracing::warn!(rpc, identity = %r.identity, code = ?code, reason = %r.status.message(), "Caller refused");
        self.metrics
            .refusals
            .get_or_create(&RpcLabel {
                rpc: rpc.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        let nats = self.directory.nats().clone();
        let subjects = self.directory.subjects().clone();
        let platform_slug = self.config.identity.platform_slug.clone();
        let product = format!("sr-gateway/{}", self.config.grpc.gateway_id);
        let (identity, reason, rpc) = (
            r.identity.clone(),
            r.status.message().to_owned(),
            rpc.to_owned(),
        );
        let tenant = r.tenant;
        let lookup_timeout = self.directory.timeout();
        // Reporting must never delay or fail the answer to the client.
        tokio::spawn(async move {
            let tenant = match tenant {
                Some(t) => t,
                None => {
                    let req = sr_core::rpc::TenantLookupRequest {
                        slug: platform_slug,
                        tenant_id: None,
                    };
                    match call::<_, sr_core::rpc::TenantInfo>(
                        &nats,
                        subjects.identity_rpc(identity_ops::TENANT_LOOKUP),
                        &req,
                        lookup_timeout,
                    )
                    .await
                    {
                        Ok(info) => info.tenant_id,
                        Err(_) => return,
                    }
                }
            };
            let event = sr_core::ocsf::OcsfEvent::authorization_denied(
                tenant,
                &product,
                &identity,
                &rpc,
                &reason,
                chrono::Utc::now(),
            );
            let js = async_nats::jetstream::new(nats);
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                sr_runtime::jetstream::headers::MSG_ID,
                event.metadata.uid.to_string().as_str(),
            );
            h.insert(
                sr_runtime::jetstream::headers::TENANT_ID,
                tenant.to_string().as_str(),
            );
            h.insert(sr_runtime::jetstream::headers::ORIGIN, "sr-gateway");
            if let Ok(body) = serde_json::to_vec(&event)
                && let Ok(ack) = js
                    .publish_with_headers(subjects.events(tenant, "gateway"), h, body.into())
                    .await
            {
                let _ = ack.await;
            }
        });
        r.status
    }

    async fn authenticate<T>(&self, rpc: &str, req: &Request<T>) -> Result<Caller, Status> {
        let certs = req.peer_certs();
        match auth::authenticate(
            certs.as_deref().map(Vec::as_slice),
            &self.directory,
            &self.config.identity,
        )
        .await
        {
            Ok(c) => {
                let span = tracing::Span::current();
                span.record("tenant_id", tracing::field::display(c.identity.tenant_id));
                span.record("component_id", c.identity.component_id.as_str());
                Ok(c)
            }
            Err(r) => Err(self.refuse(rpc, r)),
        }
    }

    async fn heartbeat(
        &self,
        caller: &Caller,
        origin: HeartbeatOrigin,
        available: bool,
        capabilities: Vec<String>,
        version: String,
    ) -> Result<HeartbeatReply, Status> {
        call(
            self.directory.nats(),
            self.directory
                .subjects()
                .identity_rpc(identity_ops::HEARTBEAT),
            &HeartbeatRequest {
                caller: caller.identity.clone(),
                origin,
                available,
                capabilities,
                version,
            },
            self.directory.timeout(),
        )
        .await
        .map_err(|e| call_status("identity", e))
    }

    async fn sync_config(
        &self,
        caller: &CallerIdentity,
        current_version: &str,
    ) -> Result<SyncConfigReply, Status> {
        call(
            self.directory.nats(),
            self.directory
                .subjects()
                .identity_rpc(identity_ops::SYNC_CONFIG),
            &SyncConfigRequest {
                caller: caller.clone(),
                current_version: current_version.to_owned(),
            },
            self.directory.timeout(),
        )
        .await
        .map_err(|e| call_status("identity", e))
    }

    async fn agent_config(
        &self,
        caller: &CallerIdentity,
        current_version: &str,
    ) -> Result<AgentConfigReply, Status> {
        crate::agent_config::fetch(
            self.directory.nats(),
            self.directory.subjects().sweepgen_agent_config(),
            caller,
            current_version,
            self.directory.timeout(),
            self.config.limits.max_response_bytes,
        )
        .await
        .map_err(|e| call_status("sweepgen", e))
    }

    /// Checks tenant fields a client sent: empty or equal passes for tenant identities.
    fn compare_tenant_fields(
        &self,
        caller: &Caller,
        tenant_id: &str,
        tenant_slug: &str,
    ) -> Result<(), Refusal> {
        if caller.is_platform() {
            return Ok(());
        }
        let own = &caller.identity;
        if !tenant_id.is_empty() && tenant_id != own.tenant_id.to_string() {
            return Err(Refusal::for_caller(
                caller,
                Code::PermissionDenied,
                "tenant_id mismatch",
            ));
        }
        if !tenant_slug.is_empty() && tenant_slug != own.tenant_slug {
            return Err(Refusal::for_caller(
                caller,
                Code::PermissionDenied,
                "tenant_slug mismatch",
            ));
        }
        Ok(())
    }

    /// The tenant a result status is filed under. A tenant identity pushes only for its own
    /// tenant; the platform sync names the tenant, which must have an enabled source assigned
    /// to it.
    async fn results_tenant(
        &self,
        caller: &Caller,
        tenant_id: &str,
        tenant_slug: &str,
    ) -> Result<TenantId, Refusal> {
        self.compare_tenant_fields(caller, tenant_id, tenant_slug)?;
        if !caller.is_platform() {
            return Ok(caller.identity.tenant_id);
        }
        let lookup = if !tenant_id.is_empty() {
            let id: TenantId = tenant_id.parse().map_err(|e| {
                Refusal::for_caller(
                    caller,
                    Code::InvalidArgument,
                    format!("invalid tenant_id in results: {e}"),
                )
            })?;
            self.directory.tenant_by_id(id).await
        } else if !tenant_slug.is_empty() {
            self.directory.tenant_by_slug(tenant_slug).await
        } else {
            return Err(Refusal::for_caller(
                caller,
                Code::InvalidArgument,
                "results of the platform sync must name their tenant (tenant_id or tenant_slug)",
            ));
        };
        let tenant = match lookup {
            Ok(t) => t,
            Err(LookupError::NotFound(m)) => {
                return Err(Refusal::for_caller(
                    caller,
                    Code::PermissionDenied,
                    format!("unknown tenant: {m}"),
                ));
            }
            Err(e) => {
                return Err(Refusal::for_caller(
                    caller,
                    Code::Unavailable,
                    e.to_string(),
                ));
            }
        };
        if !tenant_slug.is_empty() && tenant_slug != tenant.slug {
            return Err(Refusal::for_caller(
                caller,
                Code::PermissionDenied,
                "tenant_id mismatch",
            ));
        }
        match self
            .directory
            .platform_assigned(&caller.identity.component_id, tenant.tenant_id)
            .await
        {
            Ok(true) => Ok(tenant.tenant_id),
            Ok(false) => Err(Refusal::for_caller(
                caller,
                Code::PermissionDenied,
                format!(
                    "tenant {} has no enabled source assigned to platform sync {}",
                    tenant.slug, caller.identity.component_id
                ),
            )),
            Err(e) => Err(Refusal::for_caller(
                caller,
                Code::Unavailable,
                e.to_string(),
            )),
        }
    }

    async fn hello(&self, req: Request<AgentHelloRequest>) -> Result<AgentHelloResponse, Status> {
        let caller = self.authenticate("Hello", &req).await?;
        let req = req.into_inner();
        auth::check_agent_id(&caller, &req.agent_id).map_err(|r| self.refuse("Hello", r))?;
        if let Err(e) = self
            .heartbeat(
                &caller,
                HeartbeatOrigin::Hello,
                true,
                req.capabilities.clone(),
                req.version.clone(),
            )
            .await
        {
            tracing::warn!(identity = %caller.cn, error = %e.message(), "Heartbeat for Hello not recorded");
        }
        let mut heartbeat = self.config.clients.heartbeat_interval_secs;
        let outdated = match caller.component_type {
            ComponentType::Sync => match self
                .sync_config(&caller.identity, &req.config_version)
                .await
            {
                Ok(r) => {
                    heartbeat = r.heartbeat_interval_sec;
                    !r.not_modified
                }
                Err(_) => true,
            },
            _ => self
                .agent_config(&caller.identity, &req.config_version)
                .await
                .map_or(true, |r| !r.not_modified),
        };
        Ok(AgentHelloResponse {
            accepted: true,
            agent_id: caller.identity.component_id.clone(),
            message: format!("welcome, {}", caller.cn),
            gateway_id: self.config.grpc.gateway_id.clone(),
            server_time: chrono::Utc::now().timestamp(),
            heartbeat_interval_sec: heartbeat,
            config_outdated: outdated,
            tenant_id: caller.identity.tenant_id.to_string(),
            tenant_slug: caller.identity.tenant_slug.clone(),
        })
    }

    async fn get_config(
        &self,
        req: Request<PbConfigRequest>,
    ) -> Result<AgentConfigResponse, Status> {
        let caller = self.authenticate("GetConfig", &req).await?;
        let req = req.into_inner();
        auth::check_agent_id(&caller, &req.agent_id).map_err(|r| self.refuse("GetConfig", r))?;
        match caller.component_type {
            ComponentType::Sync => {
                let r = self
                    .sync_config(&caller.identity, &req.config_version)
                    .await?;
                let config_json = if r.not_modified {
                    Vec::new()
                } else {
                    serde_json::to_vec(&r.config_json)
                        .map_err(|e| Status::internal(e.to_string()))?
                };
                Ok(AgentConfigResponse {
                    not_modified: r.not_modified,
                    config_version: r.config_version,
                    config_timestamp: r.config_timestamp,
                    heartbeat_interval_sec: r.heartbeat_interval_sec,
                    config_poll_interval_sec: r.config_poll_interval_sec,
                    checks: Vec::new(),
                    config_json,
                    sweep: None,
                })
            }
            _ => {
                let r = self
                    .agent_config(&caller.identity, &req.config_version)
                    .await?;
                Ok(AgentConfigResponse {
                    not_modified: r.not_modified,
                    config_version: r.config_version,
                    config_timestamp: r.config_timestamp,
                    heartbeat_interval_sec: self.config.clients.heartbeat_interval_secs,
                    config_poll_interval_sec: self.config.clients.config_poll_interval_secs,
                    checks: Vec::new(),
                    config_json: Vec::new(),
                    sweep: r.sweep.map(sweep_to_proto),
                })
            }
        }
    }

    async fn push_status(
        &self,
        req: Request<GatewayStatusRequest>,
    ) -> Result<GatewayStatusResponse, Status> {
        let caller = self.authenticate("PushStatus", &req).await?;
        let req = req.into_inner();
        auth::check_agent_id(&caller, &req.agent_id).map_err(|r| self.refuse("PushStatus", r))?;
        if req.services.len() > self.config.limits.max_services {
            return Err(Status::invalid_argument(format!(
                "{} services in one request; at most {} are accepted",
                req.services.len(),
                self.config.limits.max_services
            )));
        }
        self.compare_tenant_fields(&caller, &req.tenant_id, &req.tenant_slug)
            .map_err(|r| self.refuse("PushStatus", r))?;
        let mut available = true;
        for mut svc in req.services {
            if svc.source == "results" {
                return Err(Status::invalid_argument(
                    "results must be sent with StreamStatus",
                ));
            }
            truncate_utf8(
                &mut svc.message,
                self.config.limits.max_status_message_bytes,
            );
            if svc.service_type == SOURCE_RUN_SERVICE_TYPE {
                self.source_run(&caller, &svc)
                    .await
                    .map_err(|r| self.refuse("PushStatus", r))?;
                continue;
            }
            self.compare_tenant_fields(&caller, &svc.tenant_id, &svc.tenant_slug)
                .map_err(|r| self.refuse("PushStatus", r))?;
            available &= svc.available;
        }
        self.heartbeat(
            &caller,
            HeartbeatOrigin::Status,
            available,
            Vec::new(),
            String::new(),
        )
        .await?;
        Ok(GatewayStatusResponse { received: true })
    }

    /// Forwards an integration source run outcome to identity.
    async fn source_run(
        &self,
        caller: &Caller,
        svc: &sr_proto::GatewayServiceStatus,
    ) -> Result<(), Refusal> {
        #[derive(serde::Deserialize)]
        struct Run {
            integration_source_id: uuid::Uuid,
            #[serde(default)]
            device_count: i64,
            #[serde(default)]
            error: Option<String>,
            finished_at: chrono::DateTime<chrono::Utc>,
        }
        let run: Run = serde_json::from_slice(&svc.message).map_err(|e| {
            Refusal::for_caller(
                caller,
                Code::InvalidArgument,
                format!("invalid {SOURCE_RUN_SERVICE_TYPE} status message: {e}"),
            )
        })?;
        let tenant = self
            .results_tenant(caller, &svc.tenant_id, &svc.tenant_slug)
            .await?;
        let report = SourceStatusReport {
            caller: caller.identity.clone(),
            tenant_id: tenant,
            integration_source_id: run.integration_source_id,
            success: svc.available,
            device_count: run.device_count,
            error: run.error,
            finished_at: run.finished_at,
        };
        call::<_, sr_core::rpc::Ack>(
            self.directory.nats(),
            self.directory
                .subjects()
                .identity_rpc(identity_ops::SOURCE_STATUS),
            &report,
            self.directory.timeout(),
        )
        .await
        .map(|_| ())
        .map_err(|e| Refusal {
            status: call_status("identity", e),
            tenant: Some(tenant),
            identity: caller.cn.clone(),
        })
    }

    async fn stream_status(
        &self,
        req: Request<Streaming<GatewayStatusChunk>>,
    ) -> Result<GatewayStatusResponse, Status> {
        let caller = self.authenticate("StreamStatus", &req).await?;
        let Ok(_stream_slot) = self.streams.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(
                "too many concurrent result streams; retry later",
            ));
        };
        let client_stream_id = match req.metadata().get(STREAM_ID_METADATA) {
            Some(v) => {
                let id = v
                    .to_str()
                    .map_err(|_| Status::invalid_argument("x-sr-stream-id must be ASCII"))?;
                if !valid_stream_id(id) {
                    return Err(Status::invalid_argument(
                        "x-sr-stream-id must be 1-128 characters of letters, digits, '-', '_', '.', ':'",
                    ));
                }
                Some(id.to_owned())
            }
            None => None,
        };
        self.metrics.active_streams.inc();
        let _active = scopeguard(|| {
            self.metrics.active_streams.dec();
        });
        let mut stream = req.into_inner();
        let l = &self.config.limits;
        let limits = ReassemblyLimits::new(
            l.max_stream_bytes,
            l.max_services,
            sr_chunking::DEFAULT_MAX_CHUNKS,
            l.max_stream_elements,
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let mut reassembler = Reassembler::new(limits);
        let mut tenant: Option<TenantId> = None;
        let mut resolved: HashMap<(String, String), TenantId> = HashMap::new();
        let mut held = Vec::new();
        let idle = Duration::from_secs(self.config.grpc.idle_stream_timeout_secs);
        loop {
            let next = match tokio::time::timeout(idle, stream.message()).await {
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "no chunk for {}s; the stream was dropped and nothing of it was published",
                        idle.as_secs()
                    )));
                }
                Ok(Err(status)) => {
                    tracing::info!(identity = %caller.cn, code = ?status.code(), "Result stream broken off; nothing published");
                    return Err(status);
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            auth::check_agent_id(&caller, &next.agent_id)
                .map_err(|r| self.refuse("StreamStatus", r))?;
            self.compare_tenant_fields(&caller, &next.tenant_id, &next.tenant_slug)
                .map_err(|r| self.refuse("StreamStatus", r))?;
            let mut payloads = Vec::with_capacity(next.services.len());
            let mut bytes = 0usize;
            for svc in next.services {
                if svc.source != "results" {
                    continue;
                }
                let key = (svc.tenant_id.clone(), svc.tenant_slug.clone());
                let t = match resolved.get(&key) {
                    Some(t) => *t,
                    None => {
                        let t = self
                            .results_tenant(&caller, &svc.tenant_id, &svc.tenant_slug)
                            .await
                            .map_err(|r| self.refuse("StreamStatus", r))?;
                        resolved.insert(key, t);
                        t
                    }
                };
                if *tenant.get_or_insert(t) != t {
                    return Err(Status::invalid_argument(
                        "a result stream carries the results of one tenant",
                    ));
                }
                bytes += svc.message.len();
                payloads.push(svc.message);
            }
            let units = u32::try_from(bytes.div_ceil(BUFFER_UNIT)).unwrap_or(u32::MAX);
            match self.buffer.clone().try_acquire_many_owned(units) {
                Ok(p) => held.push(p),
                Err(_) => {
                    return Err(Status::resource_exhausted(
                        "gateway result buffer is full; retry later",
                    ));
                }
            }
            self.metrics
                .buffered_bytes
                .inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
            self.metrics.stream_bytes.inc_by(bytes as u64);
            let accepted = reassembler.accept(IncomingChunk {
                agent_id: next.agent_id,
                chunk_index: next.chunk_index,
                total_chunks: next.total_chunks,
                is_final: next.is_final,
                payloads,
            });
            if let Err(e) = accepted {
                self.release(&held);
                return Err(if e.is_resource_exhausted() {
                    Status::resource_exhausted(format!("{e}; nothing of this stream was published"))
                } else {
                    Status::invalid_argument(format!("{e}; nothing of this stream was published"))
                });
            }
        }
        let done = reassembler.finish();
        self.release(&held);
        let done = done.map_err(|e| {
            Status::invalid_argument(format!("{e}; nothing of this stream was published"))
        })?;
        let Some(tenant) = tenant.filter(|_| !done.is_empty()) else {
            return Ok(GatewayStatusResponse { received: true });
        };
        let stream_id = client_stream_id
            .unwrap_or_else(|| done.content_stream_id(&caller.cn, &tenant.to_string()));
        let started = Instant::now();
        let batches = self
            .publisher
            .publish(&caller.cn, tenant, &stream_id, &done.elements())
            .await?;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batches_published.inc_by(batches as u64);
        self.metrics
            .devices_published
            .inc_by(done.element_count() as u64);
        tracing::debug!(identity = %caller.cn, tenant_id = %tenant, devices = done.element_count(), batches, "Result stream published");
        Ok(GatewayStatusResponse { received: true })
    }

    fn release(&self, held: &[tokio::sync::OwnedSemaphorePermit]) {
        let units: usize = held.iter().map(|p| p.num_permits()).sum();
        self.metrics
            .buffered_bytes
            .dec_by(i64::try_from(units * BUFFER_UNIT).unwrap_or(i64::MAX));
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

fn sweep_to_proto(s: SweepConfigBody) -> SweepConfig {
    SweepConfig {
        networks: s.networks,
        device_targets: s
            .device_targets
            .into_iter()
            .map(|t| DeviceTarget {
                network: t.network,
                sweep_modes: t.sweep_modes,
                query_label: t.query_label,
                source: t.source,
                metadata: t.metadata.into_iter().collect(),
                ports: t.ports,
            })
            .collect(),
        sweep_modes: s.sweep_modes,
        sweep_interval_sec: s.sweep_interval_sec,
        ports: s.ports,
    }
}

/// The tonic service: a thin adapter that adds spans and outcome counts.
#[derive(Clone)]
pub struct Service(pub Arc<Gateway>);

#[tonic::async_trait]
impl AgentGatewayService for Service {
    async fn hello(
        &self,
        request: Request<AgentHelloRequest>,
    ) -> Result<Response<AgentHelloResponse>, Status> {
        let span = rpc_span("Hello", request.metadata());
        let r = self.0.hello(request).instrument(span).await;
        self.0.count("Hello", &r.as_ref().map(|_| ()));
        r.map(Response::new)
    }

    async fn get_config(
        &self,
        request: Request<PbConfigRequest>,
    ) -> Result<Response<AgentConfigResponse>, Status> {
        let span = rpc_span("GetConfig", request.metadata());
        let r = self.0.get_config(request).instrument(span).await;
        self.0.count("GetConfig", &r.as_ref().map(|_| ()));
        r.map(Response::new)
    }

    async fn push_status(
        &self,
        request: Request<GatewayStatusRequest>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        let span = rpc_span("PushStatus", request.metadata());
        let r = self.0.push_status(request).instrument(span).await;
        self.0.count("PushStatus", &r.as_ref().map(|_| ()));
        r.map(Response::new)
    }

    async fn stream_status(
        &self,
        request: Request<Streaming<GatewayStatusChunk>>,
    ) -> Result<Response<GatewayStatusResponse>, Status> {
        let span = rpc_span("StreamStatus", request.metadata());
        let r = self.0.stream_status(request).instrument(span).await;
        self.0.count("StreamStatus", &r.as_ref().map(|_| ()));
        r.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_truncated_on_a_character_boundary() {
        let mut m = "aé".repeat(3000).into_bytes();
        truncate_utf8(&mut m, 4096);
        assert!(m.len() <= 4096);
        assert!(std::str::from_utf8(&m).is_ok());
        let mut short = b"ok".to_vec();
        truncate_utf8(&mut short, 4096);
        assert_eq!(short, b"ok");
    }

    #[test]
    fn stream_ids_are_restricted_to_a_safe_alphabet() {
        assert!(valid_stream_id("sync-1:armis:2026-11-22T04:00:00Z"));
        assert!(!valid_stream_id(""));
        assert!(!valid_stream_id("has space"));
        assert!(!valid_stream_id(&"x".repeat(129)));
        assert!(!valid_stream_id("new\nline"));
    }
}

//! The read API (`/api/v1/…`, JSON, bearer `api.token`): an agent's compiled sweep config,
//! its version and the compiler's warnings. Every error is a JSON body
//! `{"error": {"status", "message"}}` with the matching status code.
//!
//! `GET /api/v1/tenants/{tenant_id}/agents/{agent_id}/sweep?partition=<p>` (partition
//! defaults to `default`) answers:
//!
//! ```json
//! { "tenant_id": "…", "partition": "default", "agent_id": "agent-1",
//!   "config_version": "<sha256 hex>", "config_timestamp": 1767225600, "target_count": 2,
//!   "sweep": { "networks": ["10.0.0.0/31"], "device_targets": [ … ],
//!              "sweep_modes": ["icmp", "tcp"], "sweep_interval_sec": 3600, "ports": [22, 443] },
//!   "warnings": [ { "kind": "unsweepable_address", "address": "127.0.0.1", …,
//!                   "message": "address 127.0.0.1 of sr:… cannot be swept; skipped" } ] }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sr_core::TenantId;
use sr_sweep::Warning;

use crate::configs::{BodyRef, Configs};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::projection::partition_of;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Compiled configs.
    pub configs: Arc<Configs>,
    /// Metrics.
    pub metrics: Metrics,
    /// sha256 of the accepted token; `None` disables the API.
    pub token_hash: Option<[u8; 32]>,
}

/// Hashes a token (constant-length comparison of digests).
#[must_use]
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| token_hash(t.trim()));
    match (presented, s.token_hash) {
        (Some(p), Some(expected)) if p == expected => next.run(req).await,
        _ => Error::Unauthorized.into_response(),
    }
}

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route(
            "/tenants/{tenant_id}/agents/{agent_id}/sweep",
            get(agent_sweep),
        )
        .fallback(|| async { Error::NotFound("no such API route".to_owned()) })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// Query of the sweep route.
#[derive(Debug, Deserialize)]
pub struct SweepQuery {
    /// Partition (default `default`).
    #[serde(default)]
    pub partition: Option<String>,
}

#[derive(Serialize)]
struct WarningView<'a> {
    #[serde(flatten)]
    warning: &'a Warning,
    message: String,
}

#[derive(Serialize)]
struct SweepView<'a> {
    tenant_id: TenantId,
    partition: &'a str,
    agent_id: &'a str,
    config_version: &'a str,
    config_timestamp: i64,
    target_count: usize,
    sweep: BodyRef<'a>,
    warnings: Vec<WarningView<'a>>,
}

async fn agent_sweep(
    State(s): State<ApiState>,
    Path((tenant_id, agent_id)): Path<(String, String)>,
    Query(q): Query<SweepQuery>,
) -> Result<Response, Error> {
    let result = agent_sweep_json(&s, &tenant_id, &agent_id, q).await;
    s.metrics
        .request("api", if result.is_ok() { "ok" } else { "error" });
    let body = result?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn agent_sweep_json(
    s: &ApiState,
    tenant_id: &str,
    agent_id: &str,
    q: SweepQuery,
) -> Result<Vec<u8>, Error> {
    let tenant: TenantId = tenant_id
        .parse()
        .map_err(|e| Error::BadRequest(format!("invalid tenant id {tenant_id:?}: {e}")))?;
    let agent_id = agent_id.trim();
    if agent_id.is_empty() {
        return Err(Error::BadRequest("agent id must not be empty".to_owned()));
    }
    let partition = partition_of(q.partition.as_deref().unwrap_or_default());
    let entry = s.configs.entry(tenant, &partition, agent_id).await?;
    let (view_partition, view_agent) = (partition.clone(), agent_id.to_owned());
    s.configs
        .with_full_config(tenant, &partition, agent_id, move |compiled| {
            let (partition, agent_id) = (view_partition.as_str(), view_agent.as_str());
            // The index may have moved on since `entry`; show the config compiled now, with
            // the recorded timestamp only when it is the same version.
            let config_timestamp = if compiled.config_version == entry.config_version {
                entry.config_timestamp
            } else {
                0
            };
            let view = SweepView {
                tenant_id: tenant,
                partition,
                agent_id,
                config_version: &compiled.config_version,
                config_timestamp,
                target_count: compiled.device_targets.len(),
                sweep: BodyRef::of(compiled),
                warnings: compiled
                    .warnings
                    .iter()
                    .map(|w| WarningView {
                        warning: w,
                        message: w.to_string(),
                    })
                    .collect(),
            };
            serde_json::to_vec(&view)
        })
        .await?
        .map_err(|e| Error::Internal(format!("cannot encode sweep view: {e}")))
}

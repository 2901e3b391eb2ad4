//! The read API (`/api/v1/tenants/{tenant_id}/devices…`, JSON, bearer token from `api.token`).
//! Every error is a JSON body `{"error": {"status", "message"}}` with the matching status.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use sr_core::TenantId;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size.
pub const MAX_LIMIT: i64 = 1000;

/// What the handlers share.
pub struct ApiState {
    /// Pool on the `dire` schema.
    pub pool: PgPool,
    /// The bearer token.
    pub token: String,
}

fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the token's length.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if same(t.trim().as_bytes(), s.token.as_bytes()) => next.run(req).await,
        _ => Error::Unauthorized.into_response(),
    }
}

/// The `/api/v1` routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/tenants/{tenant_id}/devices", get(list_devices))
        .route("/tenants/{tenant_id}/devices/count", get(count_devices))
        .route("/tenants/{tenant_id}/devices/{uid}", get(get_device))
        .fallback(|| async { Error::NotFound("no such API route".to_owned()) })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// One canonical device as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct DeviceView {
    /// `sr:` uid.
    pub uid: String,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Partition.
    pub partition: String,
    /// Current IP.
    pub ip: Option<IpAddr>,
    /// Last reported MAC.
    pub mac: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Host name, else IP.
    pub name: Option<String>,
    /// Device type.
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub device_type: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Agent that sweeps it.
    pub agent_id: Option<String>,
    /// Every source that reported it.
    pub discovery_sources: Vec<String>,
    /// Availability (null = unknown).
    pub is_available: Option<bool>,
    /// First sighting.
    pub first_seen: DateTime<Utc>,
    /// Latest sighting (at the configured precision).
    pub last_seen: DateTime<Utc>,
    /// Merged metadata.
    pub metadata: serde_json::Value,
    /// Latest sweep hint per (source, query label).
    pub sweep_hints: serde_json::Value,
    /// Revision of the last change.
    pub revision: i64,
    /// Time of the last write.
    pub updated_at: DateTime<Utc>,
}

const VIEW_COLUMNS: &str = "uid, tenant_id, partition, ip, mac, hostname, name, type, vendor, \
     model, os, agent_id, discovery_sources, is_available, first_seen, last_seen, metadata, \
     sweep_hints, revision, updated_at";

fn tenant_of(raw: &str) -> Result<TenantId> {
    raw.parse()
        .map_err(|_| Error::BadRequest(format!("{raw:?} is not a valid tenant id")))
}

/// A page of devices.
#[derive(Debug, Serialize)]
pub struct Page {
    /// Devices in uid order.
    pub devices: Vec<DeviceView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn param<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

async fn list_devices(
    State(s): State<Arc<ApiState>>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page>> {
    let tenant = tenant_of(&tenant)?;
    let limit = match param(&q, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(Error::BadRequest(format!(
                    "limit must be between 1 and {MAX_LIMIT}"
                )));
            }
        },
    };
    let ip = param(&q, "ip")
        .map(|v| {
            v.parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| Error::BadRequest(format!("ip {v:?} is not an IP address")))
        })
        .transpose()?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM devices
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR uid > $2)
            AND ($3::inet IS NULL OR ip = $3)
            AND ($4::text IS NULL OR partition = $4)
            AND ($5::text IS NULL OR $5 = ANY(discovery_sources))
            AND ($6::text IS NULL OR starts_with(hostname, $6))
          ORDER BY uid
          LIMIT $7"
    );
    let mut devices: Vec<DeviceView> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_uuid())
        .bind(param(&q, "cursor"))
        .bind(ip)
        .bind(param(&q, "partition"))
        .bind(param(&q, "source"))
        .bind(param(&q, "hostname"))
        .bind(limit + 1)
        .fetch_all(&s.pool)
        .await?;
    let more = devices.len() as i64 > limit;
    devices.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        devices.last().map(|d| d.uid.clone())
    } else {
        None
    };
    Ok(Json(Page {
        devices,
        next_cursor,
    }))
}

/// One identifier of a device.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct IdentifierView {
    /// `armis_device_id`, `mac`, …
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Normalised value.
    pub value: String,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
}

/// One merge into a device (directly or through a device merged into it).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MergeView {
    /// The merged-away device.
    pub from_uid: String,
    /// The device it was merged into.
    pub to_uid: String,
    /// Why.
    pub reason: String,
    /// Identifiers that linked them.
    pub evidence: Vec<String>,
    /// When.
    pub merged_at: DateTime<Utc>,
}

/// A device with its identifiers and merge history.
#[derive(Debug, Serialize)]
pub struct DeviceDetail {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceView,
    /// Its identifiers.
    pub identifiers: Vec<IdentifierView>,
    /// Merges into it, oldest first.
    pub merges: Vec<MergeView>,
}

async fn get_device(
    State(s): State<Arc<ApiState>>,
    Path((tenant, uid)): Path<(String, String)>,
) -> Result<Json<DeviceDetail>> {
    let tenant = tenant_of(&tenant)?;
    let t = tenant.as_uuid();
    let sql = format!("SELECT {VIEW_COLUMNS} FROM devices WHERE tenant_id = $1 AND uid = $2");
    let device: Option<DeviceView> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(t)
        .bind(&uid)
        .fetch_optional(&s.pool)
        .await?;
    let Some(device) = device else {
        let into: Option<(String,)> = sqlx::query_as(
            "SELECT to_uid FROM merge_audit WHERE tenant_id = $1 AND from_uid = $2
              ORDER BY merged_at DESC LIMIT 1",
        )
        .bind(t)
        .bind(&uid)
        .fetch_optional(&s.pool)
        .await?;
        return Err(Error::NotFound(match into {
            Some((to,)) => format!("device {uid} was merged into {to}"),
            None => format!("device {uid} not found"),
        }));
    };
    // The row lists its identifiers; their rows are found by key.
    let identifiers: Vec<IdentifierView> = sqlx::query_as(
        "SELECT i.type, i.value, i.created_at
           FROM devices d
          CROSS JOIN json_array_elements(d.identifiers) AS h(pair)
           JOIN identifiers i
             ON i.tenant_id = d.tenant_id AND i.partition = d.partition
            AND i.type = h.pair->>0 AND i.value = h.pair->>1 AND i.device_uid = d.uid
          WHERE d.tenant_id = $1 AND d.partition = $2 AND d.uid = $3
          ORDER BY i.type, i.value",
    )
    .bind(t)
    .bind(&device.partition)
    .bind(&uid)
    .fetch_all(&s.pool)
    .await?;
    let merges: Vec<MergeView> = sqlx::query_as(
        "WITH RECURSIVE history AS (
             SELECT id, from_uid, to_uid, reason, evidence, merged_at FROM merge_audit
              WHERE tenant_id = $1 AND to_uid = $2
           UNION
             SELECT m.id, m.from_uid, m.to_uid, m.reason, m.evidence, m.merged_at
               FROM merge_audit m JOIN history h ON m.to_uid = h.from_uid
              WHERE m.tenant_id = $1
         )
         SELECT from_uid, to_uid, reason, evidence, merged_at FROM history
          ORDER BY merged_at, from_uid",
    )
    .bind(t)
    .bind(&uid)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(DeviceDetail {
        device,
        identifiers,
        merges,
    }))
}

/// Device counts of a tenant.
#[derive(Debug, Serialize)]
pub struct Count {
    /// Tenant.
    pub tenant_id: TenantId,
    /// All devices.
    pub total: i64,
    /// Per partition.
    pub partitions: BTreeMap<String, i64>,
}

async fn count_devices(
    State(s): State<Arc<ApiState>>,
    Path(tenant): Path<String>,
) -> Result<Json<Count>> {
    let tenant = tenant_of(&tenant)?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT partition, count(*) FROM devices WHERE tenant_id = $1 GROUP BY partition",
    )
    .bind(tenant.as_uuid())
    .fetch_all(&s.pool)
    .await?;
    let partitions: BTreeMap<String, i64> = rows.into_iter().collect();
    Ok(Json(Count {
        tenant_id: tenant,
        total: partitions.values().sum(),
        partitions,
    }))
}

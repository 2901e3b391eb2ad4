//! Control-plane operations: tenants, sync services, agents, integration sources, sync
//! configuration, heartbeats and liveness. The HTTP API and the NATS responders are thin
//! wrappers around these; every change and its OCSF event commit in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_core::rpc::{
    CallerIdentity, ComponentInfo, HeartbeatReply, HeartbeatRequest, IdentityKind,
    PlatformAssignment, SourceStatusReport, SyncConfigReply, TenantInfo,
};
use sr_core::syncconfig::{Scope, SourceConfig, SourceQuery, SyncConfigPayload};
use sr_core::{TenantId, duration};
use sr_pki::LeafUsage;
use sr_runtime::SharedClock;
use uuid::Uuid;

use crate::bootstrap::Platform;
use crate::ca::{self, Bundle, ComponentCert};
use crate::config::Config;
use crate::error::{Error, Result, is_unique_violation};
use crate::metrics::Metrics;
use crate::outbox;
use crate::seal::Sealer;

/// Product name in emitted events.
pub const PRODUCT: &str = "sr-identity";
/// Sweep modes a query may ask for.
pub const SWEEP_MODES: &[&str] = &["icmp", "tcp", "tcp_connect"];

/// Shared state of the identity service.
pub struct Control {
    /// Pool on the `identity` schema.
    pub pool: PgPool,
    /// Seals CA keys and credentials.
    pub sealer: Sealer,
    /// Time source.
    pub clock: SharedClock,
    /// Configuration.
    pub config: Config,
    /// Bootstrapped platform.
    pub platform: Platform,
    /// Wakes the outbox worker after a commit.
    pub outbox_notify: Arc<tokio::sync::Notify>,
    /// Metrics.
    pub metrics: Metrics,
}

// ---------------------------------------------------------------- views

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct TenantView {
    /// Id.
    pub id: Uuid,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Whether it is the platform tenant.
    pub is_platform: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A sync service.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct SyncServiceView {
    /// Id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Component id (CN).
    pub component_id: String,
    /// Partition (CN).
    pub partition: String,
    /// Display name.
    pub name: String,
    /// `saas` or `on_prem`.
    pub service_type: String,
    /// Optional endpoint.
    pub endpoint: Option<String>,
    /// `online`, `offline` or `degraded`.
    pub status: String,
    /// Whether this is the platform sync.
    pub is_platform_sync: bool,
    /// Announced capabilities.
    pub capabilities: Vec<String>,
    /// Announced version.
    pub version: String,
    /// Last heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// First Hello seen.
    pub registered_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An enrolled agent.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AgentView {
    /// Id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Component id (CN).
    pub component_id: String,
    /// Partition (CN).
    pub partition: String,
    /// Last Hello.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A record with its enrollment bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled<T> {
    /// The record.
    #[serde(flatten)]
    pub record: T,
    /// Certificate, key, CA and bootstrap config.
    pub bundle: Bundle,
}

/// An integration source as stored (credentials sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
struct SourceRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    source_type: String,
    endpoint: String,
    credentials_sealed: Vec<u8>,
    credential_keys: Vec<String>,
    enabled: bool,
    sync_service_id: Uuid,
    agent_id: String,
    partition: String,
    poll_interval_secs: i32,
    discovery_interval_secs: i32,
    sweep_interval_secs: i32,
    page_size: i32,
    network_blacklist: Vec<String>,
    queries: serde_json::Value,
    settings: serde_json::Value,
    insecure_skip_verify: bool,
    last_sync_at: Option<DateTime<Utc>>,
    last_sync_result: Option<String>,
    last_device_count: Option<i64>,
    consecutive_failures: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An integration source as the API shows it: never with credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceView {
    /// Id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Unique per tenant.
    pub name: String,
    /// `armis` or `netbox`.
    pub source_type: String,
    /// Base URL.
    pub endpoint: String,
    /// Names of the stored credentials (values are never returned).
    pub credential_keys: Vec<String>,
    /// Whether the sync runs it.
    pub enabled: bool,
    /// Assigned sync service.
    pub sync_service_id: Uuid,
    /// Agent that sweeps its devices.
    pub agent_id: String,
    /// Partition.
    pub partition: String,
    /// Poll interval, e.g. `5m`.
    pub poll_interval: String,
    /// Discovery interval.
    pub discovery_interval: String,
    /// Sweep interval.
    pub sweep_interval: String,
    /// API page size.
    pub page_size: i32,
    /// CIDRs dropped after fetch.
    pub network_blacklist: Vec<String>,
    /// Armis queries.
    pub queries: Vec<SourceQuery>,
    /// Source-specific settings.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Skip TLS verification of the endpoint.
    pub insecure_skip_verify: bool,
    /// Last run.
    pub last_sync_at: Option<DateTime<Utc>>,
    /// `success` or the error of the last run.
    pub last_sync_result: Option<String>,
    /// Devices found by the last run.
    pub last_device_count: Option<i64>,
    /// Failed runs in a row.
    pub consecutive_failures: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn secs_text(secs: i32) -> String {
    duration::format_secs(u64::try_from(secs).unwrap_or(0))
}

impl From<SourceRow> for SourceView {
    fn from(r: SourceRow) -> Self {
        Self {
            id: r.id,
            tenant_id: r.tenant_id,
            name: r.name,
            source_type: r.source_type,
            endpoint: r.endpoint,
            credential_keys: r.credential_keys,
            enabled: r.enabled,
            sync_service_id: r.sync_service_id,
            agent_id: r.agent_id,
            partition: r.partition,
            poll_interval: secs_text(r.poll_interval_secs),
            discovery_interval: secs_text(r.discovery_interval_secs),
            sweep_interval: secs_text(r.sweep_interval_secs),
            page_size: r.page_size,
            network_blacklist: r.network_blacklist,
            queries: serde_json::from_value(r.queries).unwrap_or_default(),
            settings: match r.settings {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            insecure_skip_verify: r.insecure_skip_verify,
            last_sync_at: r.last_sync_at,
            last_sync_result: r.last_sync_result,
            last_device_count: r.last_device_count,
            consecutive_failures: r.consecutive_failures,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

// ---------------------------------------------------------------- inputs

/// `POST /tenants`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// `^[a-z0-9-]{1,63}$`, unique case-insensitively, not the reserved slug.
    pub slug: String,
    /// Display name (defaults to the slug).
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /tenants/{slug}/sync-services`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSyncService {
    /// Display name.
    pub name: String,
    /// Component id for the certificate CN.
    pub component_id: String,
    /// Partition for the CN (default `default`).
    #[serde(default)]
    pub partition: Option<String>,
    /// Optional endpoint note.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `POST /tenants/{slug}/agents`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Component id for the certificate CN.
    pub component_id: String,
    /// Partition for the CN (default `default`).
    #[serde(default)]
    pub partition: Option<String>,
}

/// An interval given as seconds or as a duration string (`15m`, `2h`, `1d`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IntervalInput {
    /// Seconds.
    Secs(i64),
    /// Duration string.
    Text(String),
}

/// Fields of an integration source; all optional so that the same shape serves create
/// (where name, source_type, endpoint and sync_service_id are required) and PATCH.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFields {
    /// Unique per tenant.
    pub name: Option<String>,
    /// `armis` or `netbox`.
    pub source_type: Option<String>,
    /// http(s) URL.
    pub endpoint: Option<String>,
    /// Replaces all credentials when given.
    pub credentials: Option<BTreeMap<String, String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// The platform sync or a sync of this tenant.
    pub sync_service_id: Option<Uuid>,
    /// Agent that sweeps the devices.
    pub agent_id: Option<String>,
    /// Default `default`.
    pub partition: Option<String>,
    /// Default 5m (30s – 1d).
    pub poll_interval: Option<IntervalInput>,
    /// Default 1h (1m – 30d).
    pub discovery_interval: Option<IntervalInput>,
    /// Default 1h (1m – 30d).
    pub sweep_interval: Option<IntervalInput>,
    /// Default 100 (1 – 1000).
    pub page_size: Option<i64>,
    /// CIDRs.
    pub network_blacklist: Option<Vec<String>>,
    /// Armis queries (at least one for Armis).
    pub queries: Option<Vec<SourceQuery>>,
    /// Object of settings.
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// Default false.
    pub insecure_skip_verify: Option<bool>,
}

/// Identifier-like names (component ids, partitions, agent ids): `[A-Za-z0-9_-]{1,63}`.
fn check_name(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field} must be 1-63 characters of letters, digits, '_' or '-' (got {value:?})"
        )))
    }
}

fn interval(
    field: &str,
    input: Option<&IntervalInput>,
    current: i32,
    min: u64,
    max: u64,
) -> Result<i32> {
    let Some(input) = input else {
        return Ok(current);
    };
    let secs = match input {
        IntervalInput::Secs(s) => u64::try_from(*s)
            .map_err(|_| Error::Invalid(format!("{field} must not be negative")))?,
        IntervalInput::Text(t) => {
            duration::parse_secs(t).map_err(|e| Error::Invalid(format!("{field}: {e}")))?
        }
    };
    if secs < min || secs > max {
        return Err(Error::Invalid(format!(
            "{field} must be between {} and {} (got {})",
            duration::format_secs(min),
            duration::format_secs(max),
            duration::format_secs(secs)
        )));
    }
    i32::try_from(secs).map_err(|_| Error::Invalid(format!("{field} is too large")))
}

/// A fully validated source ready to store.
struct ValidSource {
    name: String,
    source_type: String,
    endpoint: String,
    credentials: Option<BTreeMap<String, String>>,
    enabled: bool,
    sync_service_id: Uuid,
    agent_id: String,
    partition: String,
    poll: i32,
    discovery: i32,
    sweep: i32,
    page_size: i32,
    blacklist: Vec<String>,
    queries: Vec<SourceQuery>,
    settings: serde_json::Map<String, serde_json::Value>,
    insecure_skip_verify: bool,
}

fn validate_source(f: &SourceFields, base: Option<&SourceRow>) -> Result<ValidSource> {
    let required = |v: Option<&String>, current: Option<&String>, field: &str| -> Result<String> {
        v.or(current)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("{field} is required")))
    };
    let name = required(f.name.as_ref(), base.map(|b| &b.name), "name")?;
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 128 || name.contains('/') {
        return Err(Error::Invalid(
            "name must be 1-128 characters and contain no '/'".to_owned(),
        ));
    }
    let source_type = required(
        f.source_type.as_ref(),
        base.map(|b| &b.source_type),
        "source_type",
    )?;
    if source_type != "armis" && source_type != "netbox" {
        return Err(Error::Invalid(format!(
            "source_type must be armis or netbox (got {source_type:?})"
        )));
    }
    let endpoint = required(f.endpoint.as_ref(), base.map(|b| &b.endpoint), "endpoint")?;
    match url::Url::parse(&endpoint) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        _ => {
            return Err(Error::Invalid(format!(
                "endpoint must be an http(s) URL (got {endpoint:?})"
            )));
        }
    }
    let sync_service_id = f
        .sync_service_id
        .or(base.map(|b| b.sync_service_id))
        .ok_or_else(|| Error::Invalid("sync_service_id is required: pick the platform sync or one of this tenant's sync services".to_owned()))?;
    let agent_id = f
        .agent_id
        .clone()
        .or_else(|| base.map(|b| b.agent_id.clone()))
        .unwrap_or_default();
    if !agent_id.is_empty() {
        check_name("agent_id", &agent_id)?;
    }
    let partition = f
        .partition
        .clone()
        .filter(|p| !p.is_empty())
        .or_else(|| base.map(|b| b.partition.clone()))
        .unwrap_or_else(|| sr_core::device::DEFAULT_PARTITION.to_owned());
    check_name("partition", &partition)?;
    let poll = interval(
        "poll_interval",
        f.poll_interval.as_ref(),
        base.map_or(300, |b| b.poll_interval_secs),
        30,
        86_400,
    )?;
    let discovery = interval(
        "discovery_interval",
        f.discovery_interval.as_ref(),
        base.map_or(3_600, |b| b.discovery_interval_secs),
        60,
        30 * 86_400,
    )?;
    let sweep = interval(
        "sweep_interval",
        f.sweep_interval.as_ref(),
        base.map_or(3_600, |b| b.sweep_interval_secs),
        60,
        30 * 86_400,
    )?;
    let page_size = f
        .page_size
        .unwrap_or_else(|| base.map_or(100, |b| i64::from(b.page_size)));
    if !(1..=1000).contains(&page_size) {
        return Err(Error::Invalid(format!(
            "page_size must be between 1 and 1000 (got {page_size})"
        )));
    }
    let blacklist = f.network_blacklist.clone().unwrap_or_else(|| {
        base.map(|b| b.network_blacklist.clone())
            .unwrap_or_default()
    });
    let mut normalised = Vec::with_capacity(blacklist.len());
    for cidr in &blacklist {
        let net: ipnet::IpNet = cidr.trim().parse().map_err(|_| {
            Error::Invalid(format!(
                "network_blacklist: {cidr:?} is not a CIDR (e.g. 10.0.0.0/8)"
            ))
        })?;
        normalised.push(net.trunc().to_string());
    }
    let queries = match &f.queries {
        Some(q) => q.clone(),
        None => base
            .map(|b| serde_json::from_value(b.queries.clone()).unwrap_or_default())
            .unwrap_or_default(),
    };
    for (i, q) in queries.iter().enumerate() {
        if q.label.trim().is_empty() || q.query.trim().is_empty() {
            return Err(Error::Invalid(format!(
                "queries[{i}]: label and query are required"
            )));
        }
        if let Some(bad) = q
            .sweep_modes
            .iter()
            .find(|m| !SWEEP_MODES.contains(&m.as_str()))
        {
            return Err(Error::Invalid(format!(
                "queries[{i}]: unknown sweep mode {bad:?} (use icmp, tcp or tcp_connect)"
            )));
        }
    }
    if source_type == "armis" && queries.is_empty() {
        return Err(Error::Invalid(
            "armis sources need at least one query".to_owned(),
        ));
    }
    let credentials = f.credentials.clone();
    if let Some(c) = &credentials
        && c.keys().any(|k| k.trim().is_empty())
    {
        return Err(Error::Invalid(
            "credential names must not be empty".to_owned(),
        ));
    }
    Ok(ValidSource {
        name,
        source_type,
        endpoint,
        credentials,
        enabled: f.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        sync_service_id,
        agent_id,
        partition,
        poll,
        discovery,
        sweep,
        page_size: i32::try_from(page_size).unwrap_or(100),
        blacklist: normalised,
        queries,
        settings: f
            .settings
            .clone()
            .unwrap_or_else(|| match base.map(|b| b.settings.clone()) {
                Some(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            }),
        insecure_skip_verify: f
            .insecure_skip_verify
            .or(base.map(|b| b.insecure_skip_verify))
            .unwrap_or(false),
    })
}

const SYNC_COLUMNS: &str = "id, tenant_id, component_id, partition, name, service_type, endpoint, status, \
    is_platform_sync, capabilities, version, last_heartbeat_at, registered_at, created_at";

impl Control {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn offline_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(
            i64::try_from(self.config.status.offline_after_secs).unwrap_or(120),
        )
    }

    // ------------------------------------------------------------ tenants

    /// Every tenant, platform first.
    ///
    /// # Errors
    /// Database failure.
    pub async fn list_tenants(&self) -> Result<Vec<TenantView>> {
        Ok(sqlx::query_as("SELECT id, slug, name, is_platform, created_at FROM tenants ORDER BY is_platform DESC, slug")
            .fetch_all(&self.pool)
            .await?)
    }

    /// A tenant by slug (case-insensitive).
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub async fn tenant(&self, slug: &str) -> Result<TenantView> {
        tenant_by_slug(&mut *self.pool.acquire().await?, slug).await
    }

    /// Creates a tenant and its intermediate CA.
    ///
    /// # Errors
    /// 422 for a bad or reserved slug, 409 for a duplicate.
    pub async fn create_tenant(&self, input: NewTenant) -> Result<TenantView> {
        let slug = input.slug.trim().to_owned();
        if slug.eq_ignore_ascii_case(&self.platform.slug) {
            return Err(Error::Invalid(
                "slug is reserved for the platform tenant".to_owned(),
            ));
        }
        sr_pki::validate_slug(&slug).map_err(|e| Error::Invalid(format!("invalid slug: {e}")))?;
        let name = input
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| slug.clone());
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let id = TenantId::random();
        let inserted = sqlx::query_as::<_, TenantView>(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING id, slug, name, is_platform, created_at",
        )
        .bind(id.as_uuid())
        .bind(&slug)
        .bind(&name)
        .fetch_one(&mut *tx)
        .await;
        let tenant = match inserted {
            Ok(t) => t,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "a tenant with slug {slug:?} already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let root = ca::root(&mut tx, &self.sealer).await?;
        ca::create_tenant_ca(&mut tx, &self.sealer, &root, tenant.id, &slug, now).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant.id, slug = %slug, "Tenant created");
        Ok(tenant)
    }

    // ------------------------------------------------------------ sync services and agents

    /// The sync services a tenant may use: its own and the platform sync, with live status.
    ///
    /// # Errors
    /// 404 for an unknown tenant.
    pub async fn list_sync_services(&self, slug: &str) -> Result<Vec<SyncServiceView>> {
        let tenant = self.tenant(slug).await?;
        let mut rows: Vec<SyncServiceView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SYNC_COLUMNS} FROM sync_services WHERE tenant_id = $1 OR is_platform_sync
             ORDER BY is_platform_sync DESC, name"
        )))
        .bind(tenant.id)
        .fetch_all(&self.pool)
        .await?;
        // The stored status lags the liveness check by up to one interval; report what the
        // rule says now.
        let cutoff = self.offline_cutoff(self.now());
        for row in &mut rows {
            if row.last_heartbeat_at.is_none_or(|t| t < cutoff) {
                "offline".clone_into(&mut row.status);
            }
        }
        Ok(rows)
    }

    fn require_customer_tenant(&self, tenant: &TenantView, what: &str) -> Result<()> {
        if tenant.is_platform {
            Err(Error::Invalid(format!(
                "{what} belong to a customer tenant; platform components are created by the bootstrap"
            )))
        } else {
            Ok(())
        }
    }

    async fn issue_bundle(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantView,
        component_id: &str,
        partition: &str,
    ) -> Result<Bundle> {
        let issuer = ca::tenant(conn, &self.sealer, tenant.id).await?;
        let b = &self.config.bootstrap;
        let issued = ca::issue(
            &issuer,
            &ComponentCert {
                component_id,
                partition,
                tenant_slug: &tenant.slug,
                spiffe: None,
                usage: LeafUsage::Client,
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                validity_days: b.leaf_validity_days,
            },
            self.now(),
        )?;
        Ok(Bundle::new(
            issued,
            &self.platform.root_pem,
            component_id,
            &b.gateway_address,
            &b.gateway_server_name,
        ))
    }

    /// Edge sync onboarding: an `on_prem` SyncService and a bundle signed by the tenant CA.
    ///
    /// # Errors
    /// 404 unknown tenant, 422 invalid names or platform tenant, 409 duplicate component id.
    pub async fn onboard_sync(
        &self,
        slug: &str,
        input: NewSyncService,
    ) -> Result<Enrolled<SyncServiceView>> {
        let tenant = self.tenant(slug).await?;
        self.require_customer_tenant(&tenant, "edge sync services")?;
        let name = input.name.trim().to_owned();
        if name.is_empty() {
            return Err(Error::Invalid("name is required".to_owned()));
        }
        check_name("component_id", &input.component_id)?;
        let partition = input
            .partition
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        check_name("partition", &partition)?;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query_as::<_, SyncServiceView>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sync_services (id, tenant_id, component_id, partition, name, service_type, endpoint, capabilities)
             VALUES ($1, $2, $3, $4, $5, 'on_prem', $6, ARRAY['sync']) RETURNING {SYNC_COLUMNS}"
        )))
        .bind(Uuid::new_v4())
        .bind(tenant.id)
        .bind(&input.component_id)
        .bind(&partition)
        .bind(&name)
        .bind(input.endpoint.filter(|e| !e.is_empty()))
        .fetch_one(&mut *tx)
        .await;
        let record = match inserted {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "tenant {slug} already has a sync service with component_id {:?}",
                    input.component_id
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let bundle = self
            .issue_bundle(&mut tx, &tenant, &record.component_id, &record.partition)
            .await?;
        self.enqueue_event(
            &mut tx,
            tenant.id,
            "sync_service",
            Activity::Create,
            &ResourceRef {
                resource_type: "sync_service",
                id: record.id.to_string(),
                name: &record.name,
            },
            "Sync service",
            "onboard",
            serde_json::json!({ "component_id": record.component_id, "service_type": "on_prem" }),
        )
        .await?;
        tx.commit().await?;
        self.outbox_notify.notify_one();
        Ok(Enrolled { record, bundle })
    }

    /// Agent enrollment: a registry entry and a bundle signed by the tenant CA.
    ///
    /// # Errors
    /// 404 unknown tenant, 422 invalid names or platform tenant, 409 duplicate component id.
    pub async fn enroll_agent(&self, slug: &str, input: NewAgent) -> Result<Enrolled<AgentView>> {
        let tenant = self.tenant(slug).await?;
        self.require_customer_tenant(&tenant, "enrolled agents")?;
        check_name("component_id", &input.component_id)?;
        let partition = input
            .partition
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        check_name("partition", &partition)?;
        let mut tx = self.pool.begin().await?;
        let clash: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sync_services WHERE tenant_id = $1 AND component_id = $2",
        )
        .bind(tenant.id)
        .bind(&input.component_id)
        .fetch_optional(&mut *tx)
        .await?;
        if clash.is_some() {
            return Err(Error::Conflict(format!(
                "component_id {:?} is already a sync service of {slug}",
                input.component_id
            )));
        }
        let inserted = sqlx::query_as::<_, AgentView>(
            "INSERT INTO agents (id, tenant_id, component_id, partition) VALUES ($1, $2, $3, $4)
             RETURNING id, tenant_id, component_id, partition, last_seen_at, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(tenant.id)
        .bind(&input.component_id)
        .bind(&partition)
        .fetch_one(&mut *tx)
        .await;
        let record = match inserted {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "tenant {slug} already has an agent {:?}",
                    input.component_id
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let mut bundle = self
            .issue_bundle(&mut tx, &tenant, &record.component_id, &record.partition)
            .await?;
        bundle.config.component_id.clone_from(&record.component_id);
        tx.commit().await?;
        Ok(Enrolled { record, bundle })
    }

    // ------------------------------------------------------------ integration sources

    async fn check_sync_assignment(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantView,
        sync_id: Uuid,
    ) -> Result<()> {
        let usable: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(
            "SELECT id, tenant_id, is_platform_sync FROM sync_services WHERE tenant_id = $1 OR is_platform_sync",
        )
        .bind(tenant.id)
        .fetch_all(&mut *conn)
        .await?;
        if usable.is_empty() {
            return Err(Error::Invalid(format!(
                "no sync service is available to tenant {}: onboard an edge sync service first",
                tenant.slug
            )));
        }
        if usable.iter().any(|(id, _, _)| *id == sync_id) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "sync_service_id {sync_id} is neither the platform sync nor a sync service of tenant {}",
            tenant.slug
        )))
    }

    /// Sources of a tenant.
    ///
    /// # Errors
    /// 404 unknown tenant.
    pub async fn list_sources(&self, slug: &str) -> Result<Vec<SourceView>> {
        let tenant = self.tenant(slug).await?;
        let rows: Vec<SourceRow> =
            sqlx::query_as("SELECT * FROM integration_sources WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant.id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(SourceView::from).collect())
    }

    async fn source_row(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantView,
        id: Uuid,
        lock: bool,
    ) -> Result<SourceRow> {
        let sql = if lock {
            "SELECT * FROM integration_sources WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
        } else {
            "SELECT * FROM integration_sources WHERE tenant_id = $1 AND id = $2"
        };
        sqlx::query_as(sql)
            .bind(tenant.id)
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "integration source {id} not found in tenant {}",
                    tenant.slug
                ))
            })
    }

    /// One source.
    ///
    /// # Errors
    /// 404.
    pub async fn get_source(&self, slug: &str, id: Uuid) -> Result<SourceView> {
        let tenant = self.tenant(slug).await?;
        Ok(self
            .source_row(&mut *self.pool.acquire().await?, &tenant, id, false)
            .await?
            .into())
    }

    /// Creates a source.
    ///
    /// # Errors
    /// 404 unknown tenant, 422 validation, 409 duplicate name.
    pub async fn create_source(&self, slug: &str, fields: SourceFields) -> Result<SourceView> {
        let tenant = self.tenant(slug).await?;
        let v = validate_source(&fields, None)?;
        let mut tx = self.pool.begin().await?;
        self.check_sync_assignment(&mut tx, &tenant, v.sync_service_id)
            .await?;
        let id = Uuid::new_v4();
        let creds = v.credentials.clone().unwrap_or_default();
        let sealed = self.sealer.seal(
            &serde_json::to_vec(&creds).unwrap_or_default(),
            &credentials_aad(id),
        )?;
        let now = self.now();
        let inserted = sqlx::query_as::<_, SourceRow>(
            "INSERT INTO integration_sources (id, tenant_id, name, source_type, endpoint, credentials_sealed, credential_keys,
                enabled, sync_service_id, agent_id, partition, poll_interval_secs, discovery_interval_secs,
                sweep_interval_secs, page_size, network_blacklist, queries, settings, insecure_skip_verify, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$20) RETURNING *",
        )
        .bind(id)
        .bind(tenant.id)
        .bind(&v.name)
        .bind(&v.source_type)
        .bind(&v.endpoint)
        .bind(sealed)
        .bind(creds.keys().cloned().collect::<Vec<_>>())
        .bind(v.enabled)
        .bind(v.sync_service_id)
        .bind(&v.agent_id)
        .bind(&v.partition)
        .bind(v.poll)
        .bind(v.discovery)
        .bind(v.sweep)
        .bind(v.page_size)
        .bind(&v.blacklist)
        .bind(serde_json::to_value(&v.queries).unwrap_or_default())
        .bind(serde_json::Value::Object(v.settings.clone()))
        .bind(v.insecure_skip_verify)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "tenant {slug} already has an integration source named {:?}",
                    v.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.enqueue_event(
            &mut tx,
            tenant.id,
            "integration_source",
            Activity::Create,
            &ResourceRef { resource_type: "integration_source", id: row.id.to_string(), name: &row.name },
            "Integration source",
            "create",
            serde_json::json!({ "source_type": row.source_type, "sync_service_id": row.sync_service_id, "enabled": row.enabled }),
        )
        .await?;
        tx.commit().await?;
        self.outbox_notify.notify_one();
        Ok(row.into())
    }

    /// Applies a partial update.
    ///
    /// # Errors
    /// 404, 422 validation, 409 duplicate name.
    pub async fn update_source(
        &self,
        slug: &str,
        id: Uuid,
        fields: SourceFields,
    ) -> Result<SourceView> {
        let tenant = self.tenant(slug).await?;
        let mut tx = self.pool.begin().await?;
        let before = self.source_row(&mut tx, &tenant, id, true).await?;
        let v = validate_source(&fields, Some(&before))?;
        if v.sync_service_id != before.sync_service_id {
            self.check_sync_assignment(&mut tx, &tenant, v.sync_service_id)
                .await?;
        }
        let (sealed, keys) = match &v.credentials {
            Some(c) => (
                self.sealer.seal(
                    &serde_json::to_vec(c).unwrap_or_default(),
                    &credentials_aad(id),
                )?,
                c.keys().cloned().collect::<Vec<_>>(),
            ),
            None => (
                before.credentials_sealed.clone(),
                before.credential_keys.clone(),
            ),
        };
        let mut changed: Vec<&str> = Vec::new();
        let queries = serde_json::to_value(&v.queries).unwrap_or_default();
        let settings = serde_json::Value::Object(v.settings.clone());
        for (field, differs) in [
            ("name", v.name != before.name),
            ("source_type", v.source_type != before.source_type),
            ("endpoint", v.endpoint != before.endpoint),
            ("credentials", v.credentials.is_some()),
            ("enabled", v.enabled != before.enabled),
            (
                "sync_service_id",
                v.sync_service_id != before.sync_service_id,
            ),
            ("agent_id", v.agent_id != before.agent_id),
            ("partition", v.partition != before.partition),
            ("poll_interval", v.poll != before.poll_interval_secs),
            (
                "discovery_interval",
                v.discovery != before.discovery_interval_secs,
            ),
            ("sweep_interval", v.sweep != before.sweep_interval_secs),
            ("page_size", v.page_size != before.page_size),
            ("network_blacklist", v.blacklist != before.network_blacklist),
            ("queries", queries != before.queries),
            ("settings", settings != before.settings),
            (
                "insecure_skip_verify",
                v.insecure_skip_verify != before.insecure_skip_verify,
            ),
        ] {
            if differs {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(before.into());
        }
        let updated = sqlx::query_as::<_, SourceRow>(
            "UPDATE integration_sources SET name=$3, source_type=$4, endpoint=$5, credentials_sealed=$6, credential_keys=$7,
                enabled=$8, sync_service_id=$9, agent_id=$10, partition=$11, poll_interval_secs=$12,
                discovery_interval_secs=$13, sweep_interval_secs=$14, page_size=$15, network_blacklist=$16,
                queries=$17, settings=$18, insecure_skip_verify=$19, updated_at=$20
             WHERE tenant_id=$1 AND id=$2 RETURNING *",
        )
        .bind(tenant.id)
        .bind(id)
        .bind(&v.name)
        .bind(&v.source_type)
        .bind(&v.endpoint)
        .bind(sealed)
        .bind(keys)
        .bind(v.enabled)
        .bind(v.sync_service_id)
        .bind(&v.agent_id)
        .bind(&v.partition)
        .bind(v.poll)
        .bind(v.discovery)
        .bind(v.sweep)
        .bind(v.page_size)
        .bind(&v.blacklist)
        .bind(queries)
        .bind(settings)
        .bind(v.insecure_skip_verify)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await;
        let row = match updated {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "tenant {slug} already has an integration source named {:?}",
                    v.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let action = match (changed.as_slice(), row.enabled) {
            (["enabled"], true) => "enable",
            (["enabled"], false) => "disable",
            _ => "update",
        };
        let label = match action {
            "enable" => "enabled",
            "disable" => "disabled",
            _ => "update",
        };
        self.enqueue_event(
            &mut tx,
            tenant.id,
            "integration_source",
            Activity::Update,
            &ResourceRef {
                resource_type: "integration_source",
                id: row.id.to_string(),
                name: &row.name,
            },
            "Integration source",
            label,
            serde_json::json!({ "changed": changed, "action": action }),
        )
        .await?;
        tx.commit().await?;
        self.outbox_notify.notify_one();
        Ok(row.into())
    }

    /// Deletes a source.
    ///
    /// # Errors
    /// 404.
    pub async fn delete_source(&self, slug: &str, id: Uuid) -> Result<()> {
        let tenant = self.tenant(slug).await?;
        let mut tx = self.pool.begin().await?;
        let row = self.source_row(&mut tx, &tenant, id, true).await?;
        sqlx::query("DELETE FROM integration_sources WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.enqueue_event(
            &mut tx,
            tenant.id,
            "integration_source",
            Activity::Delete,
            &ResourceRef {
                resource_type: "integration_source",
                id: row.id.to_string(),
                name: &row.name,
            },
            "Integration source",
            "delete",
            serde_json::json!({ "source_type": row.source_type }),
        )
        .await?;
        tx.commit().await?;
        self.outbox_notify.notify_one();
        Ok(())
    }

    // ------------------------------------------------------------ events

    #[allow(clippy::too_many_arguments)] // mirrors OcsfEvent::lifecycle
    async fn enqueue_event(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        kind: &str,
        activity: Activity,
        resource: &ResourceRef<'_>,
        label: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        let tenant = TenantId::new(tenant_id).map_err(|e| Error::Ca(e.to_string()))?;
        let event = OcsfEvent::lifecycle(
            tenant,
            PRODUCT,
            activity,
            resource,
            label,
            action,
            details,
            self.now(),
        );
        outbox::enqueue(conn, &event, kind).await
    }

    // ------------------------------------------------------------ sync configuration

    async fn sync_service_for(
        &self,
        conn: &mut PgConnection,
        caller: &CallerIdentity,
    ) -> Result<SyncServiceView> {
        let row: Option<SyncServiceView> = match caller.kind {
            IdentityKind::Platform => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SYNC_COLUMNS} FROM sync_services WHERE is_platform_sync AND component_id = $1 AND tenant_id = $2"
                )))
                .bind(&caller.component_id)
                .bind(caller.tenant_id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
            }
            IdentityKind::Tenant => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SYNC_COLUMNS} FROM sync_services WHERE NOT is_platform_sync AND tenant_id = $1 AND component_id = $2"
                )))
                .bind(caller.tenant_id.as_uuid())
                .bind(&caller.component_id)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        row.ok_or_else(|| {
            Error::NotFound(format!(
                "no sync service {:?} is onboarded for tenant {}",
                caller.component_id, caller.tenant_slug
            ))
        })
    }

    /// The `config_json` payload for a sync identity: a tenant sync gets its tenant's enabled
    /// sources assigned to it; the platform sync gets every enabled source assigned to it,
    /// across tenants, keyed `<tenant_slug>/<name>`.
    ///
    /// # Errors
    /// 404 when the identity is not an onboarded sync; database or decryption failures.
    pub async fn sync_config(
        &self,
        caller: &CallerIdentity,
        current_version: &str,
    ) -> Result<SyncConfigReply> {
        let mut conn = self.pool.acquire().await?;
        let sync = self.sync_service_for(&mut conn, caller).await?;
        let scope = if sync.is_platform_sync {
            Scope::Platform
        } else {
            Scope::Tenant
        };
        #[derive(sqlx::FromRow)]
        struct Joined {
            #[sqlx(flatten)]
            row: SourceRow,
            tenant_slug: String,
        }
        let rows: Vec<Joined> = sqlx::query_as(
            "SELECT s.*, t.slug AS tenant_slug FROM integration_sources s JOIN tenants t ON t.id = s.tenant_id
             WHERE s.sync_service_id = $1 AND s.enabled AND ($2 OR s.tenant_id = $3)
             ORDER BY t.slug, s.name",
        )
        .bind(sync.id)
        .bind(scope == Scope::Platform)
        .bind(caller.tenant_id.as_uuid())
        .fetch_all(&mut *conn)
        .await?;
        let mut sources = BTreeMap::new();
        let mut newest = sync.created_at;
        for Joined { row, tenant_slug } in rows {
            newest = newest.max(row.updated_at);
            let creds: BTreeMap<String, String> = serde_json::from_slice(
                &self
                    .sealer
                    .open(&row.credentials_sealed, &credentials_aad(row.id))?,
            )
            .map_err(|e| {
                Error::Ca(format!(
                    "stored credentials of {} are unreadable: {e}",
                    row.id
                ))
            })?;
            let tenant_id = TenantId::new(row.tenant_id).map_err(|e| Error::Ca(e.to_string()))?;
            let key = SyncConfigPayload::source_key(scope, &tenant_slug, &row.name);
            sources.insert(
                key,
                SourceConfig {
                    source_type: row.source_type,
                    endpoint: row.endpoint,
                    credentials: creds,
                    queries: serde_json::from_value(row.queries).unwrap_or_default(),
                    poll_interval: secs_text(row.poll_interval_secs),
                    discovery_interval: secs_text(row.discovery_interval_secs),
                    sweep_interval: secs_text(row.sweep_interval_secs),
                    agent_id: row.agent_id,
                    partition: row.partition,
                    network_blacklist: row.network_blacklist,
                    page_size: u32::try_from(row.page_size).ok(),
                    insecure_skip_verify: row.insecure_skip_verify,
                    settings: match row.settings {
                        serde_json::Value::Object(m) => m.into_iter().collect(),
                        _ => BTreeMap::new(),
                    },
                    tenant_id,
                    tenant_slug,
                    integration_source_id: row.id,
                },
            );
        }
        let payload = SyncConfigPayload {
            sync_service_id: sync.id,
            component_id: sync.component_id,
            scope,
            sources,
        };
        let version = payload.config_version();
        let s = &self.config.sync;
        let not_modified = !current_version.is_empty() && current_version == version;
        Ok(SyncConfigReply {
            not_modified,
            config_version: version,
            config_timestamp: newest.timestamp(),
            heartbeat_interval_sec: sr_core::syncconfig::clamp_heartbeat_secs(
                s.heartbeat_interval_secs,
            ),
            config_poll_interval_sec: sr_core::syncconfig::clamp_config_poll_secs(
                s.config_poll_interval_secs,
            ),
            config_json: if not_modified {
                serde_json::Value::Null
            } else {
                serde_json::to_value(&payload).map_err(|e| Error::Ca(e.to_string()))?
            },
        })
    }

    // ------------------------------------------------------------ lookups for the gateway

    /// Tenant by id (when given) or slug, with its CA key id.
    ///
    /// # Errors
    /// 404.
    pub async fn tenant_info(&self, id: Option<TenantId>, slug: &str) -> Result<TenantInfo> {
        let mut conn = self.pool.acquire().await?;
        let t = match id {
            Some(id) => sqlx::query_as::<_, TenantView>(
                "SELECT id, slug, name, is_platform, created_at FROM tenants WHERE id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {id} not found")))?,
            None => tenant_by_slug(&mut conn, slug).await?,
        };
        let slug = t.slug.clone();
        let key_id = ca::tenant_key_id(&mut conn, t.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {slug} has no CA")))?;
        Ok(TenantInfo {
            tenant_id: TenantId::new(t.id).map_err(|e| Error::Ca(e.to_string()))?,
            slug: t.slug,
            name: t.name,
            is_platform: t.is_platform,
            ca_key_id: key_id,
        })
    }

    /// Type of an enrolled component of a tenant.
    ///
    /// # Errors
    /// Database failure.
    pub async fn component_info(
        &self,
        tenant_id: TenantId,
        component_id: &str,
    ) -> Result<ComponentInfo> {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT 'sync' FROM sync_services WHERE tenant_id = $1 AND component_id = $2
             UNION ALL SELECT 'agent' FROM agents WHERE tenant_id = $1 AND component_id = $2 LIMIT 1",
        )
        .bind(tenant_id.as_uuid())
        .bind(component_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(ComponentInfo {
            component_type: kind,
        })
    }

    /// Whether tenant T has an enabled source assigned to platform sync S.
    ///
    /// # Errors
    /// Database failure.
    pub async fn platform_assignment(
        &self,
        sync_component_id: &str,
        tenant_id: TenantId,
    ) -> Result<PlatformAssignment> {
        let assigned: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM integration_sources s JOIN sync_services y ON y.id = s.sync_service_id
             WHERE y.is_platform_sync AND y.component_id = $1 AND s.tenant_id = $2 AND s.enabled)",
        )
        .bind(sync_component_id)
        .bind(tenant_id.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        Ok(PlatformAssignment { assigned })
    }

    // ------------------------------------------------------------ heartbeats and liveness

    /// Records a heartbeat: a sync becomes `online` (or `degraded` when it reports itself
    /// unavailable) and an onboarded on-prem sync is registered on its first Hello; an
    /// agent's last-seen time is updated.
    ///
    /// # Errors
    /// Database failure.
    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatReply> {
        let now = self.now();
        let caller = &req.caller;
        let mut tx = self.pool.begin().await?;
        let sync = self.sync_service_for(&mut tx, caller).await.ok();
        let Some(sync) = sync else {
            let seen = sqlx::query(
                "UPDATE agents SET last_seen_at = $3 WHERE tenant_id = $1 AND component_id = $2",
            )
            .bind(caller.tenant_id.as_uuid())
            .bind(&caller.component_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            return Ok(HeartbeatReply {
                known: seen > 0,
                status: None,
            });
        };
        let new_status = if req.available { "online" } else { "degraded" };
        let capabilities: BTreeSet<String> = if req.capabilities.is_empty() {
            sync.capabilities.iter().cloned().collect()
        } else {
            req.capabilities.iter().cloned().collect()
        };
        let old: Option<String> =
            sqlx::query_scalar("SELECT status FROM sync_services WHERE id = $1 FOR UPDATE")
                .bind(sync.id)
                .fetch_optional(&mut *tx)
                .await?;
        let first_hello =
            sync.registered_at.is_none() && req.origin == sr_core::rpc::HeartbeatOrigin::Hello;
        sqlx::query(
            "UPDATE sync_services SET status = $2, last_heartbeat_at = $3,
                registered_at = CASE WHEN $4 THEN $3 ELSE registered_at END,
                capabilities = $5, version = CASE WHEN $6 = '' THEN version ELSE $6 END, updated_at = $3
             WHERE id = $1",
        )
        .bind(sync.id)
        .bind(new_status)
        .bind(now)
        .bind(first_hello)
        .bind(capabilities.into_iter().collect::<Vec<_>>())
        .bind(&req.version)
        .execute(&mut *tx)
        .await?;
        if first_hello {
            tracing::info!(sync_service_id = %sync.id, component_id = %sync.component_id, "Sync service registered on first Hello");
        }
        if old.as_deref() != Some(new_status) {
            self.status_change_event(
                &mut tx,
                &sync,
                old.as_deref().unwrap_or("offline"),
                new_status,
            )
            .await?;
        }
        tx.commit().await?;
        if old.as_deref() != Some(new_status) {
            self.outbox_notify.notify_one();
        }
        Ok(HeartbeatReply {
            known: true,
            status: Some(new_status.to_owned()),
        })
    }

    async fn status_change_event(
        &self,
        conn: &mut PgConnection,
        sync: &SyncServiceView,
        from: &str,
        to: &str,
    ) -> Result<()> {
        self.metrics
            .status_changes
            .get_or_create(&crate::metrics::StatusLabel { to: to.to_owned() })
            .inc();
        self.enqueue_event(
            conn,
            sync.tenant_id,
            "sync_service",
            Activity::Update,
            &ResourceRef {
                resource_type: "sync_service",
                id: sync.id.to_string(),
                name: &sync.name,
            },
            "Sync service",
            &format!("status_{to}"),
            serde_json::json!({ "from": from, "to": to, "component_id": sync.component_id }),
        )
        .await
    }

    /// Marks syncs without a heartbeat for longer than the configured limit `offline`;
    /// returns how many changed.
    ///
    /// # Errors
    /// Database failure.
    pub async fn mark_stale_offline(&self) -> Result<usize> {
        let now = self.now();
        let cutoff = self.offline_cutoff(now);
        let mut tx = self.pool.begin().await?;
        let stale: Vec<SyncServiceView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SYNC_COLUMNS} FROM sync_services
             WHERE status <> 'offline' AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1)
             ORDER BY id FOR UPDATE SKIP LOCKED"
        )))
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        for sync in &stale {
            sqlx::query(
                "UPDATE sync_services SET status = 'offline', updated_at = $2 WHERE id = $1",
            )
            .bind(sync.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            self.status_change_event(&mut tx, sync, &sync.status, "offline")
                .await?;
        }
        tx.commit().await?;
        if !stale.is_empty() {
            self.outbox_notify.notify_one();
            tracing::info!(count = stale.len(), "Sync services marked offline");
        }
        Ok(stale.len())
    }

    /// Records the outcome of one source run reported by the sync that owns the source.
    ///
    /// # Errors
    /// 404 when the source is not assigned to the caller.
    pub async fn source_status(&self, report: &SourceStatusReport) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let sync = self.sync_service_for(&mut conn, &report.caller).await?;
        let result = if report.success {
            "success".to_owned()
        } else {
            let text = report.error.as_deref().unwrap_or("failed");
            let cut = text.floor_char_boundary(MAX_SOURCE_ERROR_BYTES);
            format!("error: {}", &text[..cut])
        };
        let n = sqlx::query(
            "UPDATE integration_sources SET last_sync_at = $4, last_sync_result = $5, last_device_count = $6,
                consecutive_failures = CASE WHEN $7 THEN 0 ELSE consecutive_failures + 1 END
             WHERE id = $1 AND tenant_id = $2 AND sync_service_id = $3",
        )
        .bind(report.integration_source_id)
        .bind(report.tenant_id.as_uuid())
        .bind(sync.id)
        .bind(report.finished_at)
        .bind(result)
        .bind(report.device_count)
        .bind(report.success)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::NotFound(format!(
                "integration source {} is not assigned to sync {}",
                report.integration_source_id, report.caller.component_id
            )));
        }
        Ok(())
    }
}

fn credentials_aad(source_id: Uuid) -> String {
    format!("integration_source:{source_id}:credentials")
}

async fn tenant_by_slug(conn: &mut PgConnection, slug: &str) -> Result<TenantView> {
    sqlx::query_as(
        "SELECT id, slug, name, is_platform, created_at FROM tenants WHERE lower(slug) = lower($1)",
    )
    .bind(slug)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("tenant {slug:?} not found")))
}

/// Bytes of a reported source error kept in `last_sync_result`.
const MAX_SOURCE_ERROR_BYTES: usize = 1024;

use std::time::Duration;

use async_nats::HeaderMap;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sr_core::TenantId;
use sr_dire::{App, Config, Metrics};
use sr_testkit::{TestDb, TestNats, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token";
pub const WAIT: Duration = Duration::from_secs(60);

/// 2026-01-01T00:00:00Z plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

pub fn ts(minutes: i64) -> String {
    at(minutes).to_rfc3339()
}

/// An Armis update.
pub fn armis(id: &str, ip: &str, minutes: i64) -> Value {
    json!({
        "ip": ip, "source": "armis", "agent_id": "agent-1", "partition": "default",
        "timestamp": ts(minutes),
        "metadata": {"integration_type": "armis", "armis_device_id": id, "query_label": "all"}
    })
}

/// Sets a key of an update object.
pub fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

/// Sets a metadata key of an update object.
pub fn with_meta(mut v: Value, key: &str, value: &str) -> Value {
    v["metadata"][key] = json!(value);
    v
}

/// A Postgres schema and a NATS prefix of their own.
pub struct Env {
    pub db: TestDb,
    pub nats: TestNats,
}

impl Env {
    pub fn new() -> Self {
        Self {
            db: TestDb::new("dire"),
            nats: TestNats::new(),
        }
    }

    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database = self.db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = TOKEN.to_owned();
        c.consumer.idle_wait_ms = 200;
        c.consumer.nak_delay_ms = 200;
        c.outbox.poll_interval_ms = 100;
        c
    }

    pub async fn start(&self) -> TestApp {
        self.start_with(self.config()).await
    }

    pub async fn start_with(&self, config: Config) -> TestApp {
        let app = App::build(config).await.expect("DIRE starts");
        let base = format!("http://{}", app.http_addr());
        let metrics = app.metrics();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        TestApp {
            base,
            metrics,
            shutdown,
            handle,
            http: reqwest::Client::new(),
        }
    }

    pub fn js(&self, client: async_nats::Client) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(client)
    }

    /// Publishes one JSON array of updates for `tenant`, the way the gateway does.
    pub async fn publish(&self, tenant: TenantId, updates: &[Value]) {
        let body = serde_json::to_vec(&Value::Array(updates.to_vec())).unwrap();
        self.publish_raw(
            &self.nats.config.subjects().device_updates(tenant),
            Some(&tenant.to_string()),
            body,
        )
        .await;
    }

    pub async fn publish_raw(&self, subject: &str, tenant_header: Option<&str>, body: Vec<u8>) {
        let js = self.js(self.nats.client().await);
        let mut h = HeaderMap::new();
        if let Some(t) = tenant_header {
            h.insert("sr-tenant-id", t);
        }
        h.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
        js.publish_with_headers(subject.to_owned(), h, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Waits until the durable consumer has nothing pending or unacknowledged.
    pub async fn ingested(&self) {
        let js = self.js(self.nats.client().await);
        let subjects = self.nats.config.subjects();
        eventually("the devices stream is fully acknowledged", WAIT, || {
            let js = js.clone();
            let name = subjects.devices_stream();
            async move {
                let stream = js.get_stream(name).await.ok()?;
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer("dire").await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
    }

    /// Publishes and waits until processed.
    pub async fn ingest(&self, tenant: TenantId, updates: &[Value]) {
        self.publish(tenant, updates).await;
        self.ingested().await;
    }

    /// Checks what the foreign key and owner index of `identifiers` used to: every identifier
    /// row points at an existing device whose row lists it, and every device row lists exactly
    /// the identifier rows pointing at it (no more, none twice).
    pub async fn assert_linked(&self) {
        let pool = self.db.pool().await;
        let (stray,): (Option<Value>,) = sqlx::query_as(
            "WITH rows AS (
                 SELECT tenant_id, partition, type, value, device_uid AS uid FROM identifiers
             ), listed AS (
                 SELECT d.tenant_id, d.partition, h.pair->>0 AS type, h.pair->>1 AS value, d.uid
                   FROM devices d CROSS JOIN json_array_elements(d.identifiers) AS h(pair)
             )
             SELECT json_agg(x) FROM (
                 (SELECT 'row not listed' AS problem, * FROM (TABLE rows EXCEPT ALL TABLE listed) a)
                 UNION ALL
                 (SELECT 'listed without row', * FROM (TABLE listed EXCEPT ALL TABLE rows) b)
             ) x",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        assert!(
            stray.is_none(),
            "identifiers and device rows disagree: {stray:?}"
        );
    }

    /// Every device row, comparable across runs (no revision or write times), after checking
    /// that identifier and device rows agree ([`Env::assert_linked`]).
    pub async fn snapshot(&self) -> Value {
        self.assert_linked().await;
        let pool = self.db.pool().await;
        let (v,): (Option<Value>,) = sqlx::query_as(
            "SELECT json_agg(d ORDER BY d.tenant_id, d.partition, d.uid) FROM (
               SELECT tenant_id, partition, uid, host(ip) AS ip, mac, hostname, name, type, vendor,
                      model, os, agent_id, discovery_sources, is_available, first_seen, last_seen,
                      metadata, sweep_hints, stamps, i.identifiers
                 FROM devices
                 -- Grouped once, not looked up per device: no index leads from an
                 -- identifier's owner back to its rows.
                 LEFT JOIN (SELECT tenant_id, partition, device_uid AS uid,
                                   json_agg(type || '=' || value ORDER BY type, value)
                                     AS identifiers
                              FROM identifiers
                             GROUP BY tenant_id, partition, device_uid) i
                        USING (tenant_id, partition, uid)) d",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        v.unwrap_or(Value::Array(vec![]))
    }

    /// Devices of a tenant as JSON rows.
    pub async fn devices(&self, tenant: TenantId) -> Vec<Value> {
        let snap = self.snapshot().await;
        snap.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["tenant_id"] == json!(tenant.to_string()))
            .cloned()
            .collect()
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let pool = self.db.pool().await;
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    /// Messages in a stream under `filter`, decoded as JSON.
    pub async fn stream_json(&self, stream: &str, filter: &str) -> Vec<(HeaderMap, Value)> {
        let client = self.nats.client().await;
        sr_testkit::stream_messages(&client, stream, filter)
            .await
            .into_iter()
            .map(|m| {
                (
                    m.headers.clone().unwrap_or_default(),
                    serde_json::from_slice(&m.payload).unwrap(),
                )
            })
            .collect()
    }

    /// Inventory changes published for `tenant`.
    pub async fn inventory(&self, tenant: TenantId) -> Vec<sr_core::inventory::InventoryChange> {
        let s = self.nats.config.subjects();
        self.stream_json(&s.inventory_stream(), &s.inventory_changed(tenant))
            .await
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v).unwrap())
            .collect()
    }

    /// OCSF events published for `tenant` by DIRE.
    pub async fn events(&self, tenant: TenantId) -> Vec<sr_core::ocsf::OcsfEvent> {
        let s = self.nats.config.subjects();
        self.stream_json(&s.events_stream(), &s.events(tenant, "dire"))
            .await
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v).unwrap())
            .collect()
    }
}

pub struct TestApp {
    pub base: String,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    handle: JoinHandle<sr_dire::Result<()>>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub async fn get_with(&self, path: &str, token: Option<&str>) -> (reqwest::StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, Value) {
        self.get_with(path, Some(TOKEN)).await
    }
}

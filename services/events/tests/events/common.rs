use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sr_core::TenantId;
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_events::{App, Config, Metrics, Store};
use sr_runtime::ManualClock;
use sr_runtime::jetstream::headers;
use sr_testkit::{TestDb, TestNats, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "events-test-token";
pub const WAIT: Duration = Duration::from_secs(20);

/// A schema, a subject prefix and a clock shared by every replica a test starts.
pub struct Env {
    pub db: TestDb,
    pub nats: TestNats,
    pub clock: ManualClock,
}

impl Env {
    pub fn new() -> Self {
        Self {
            db: TestDb::new("events"),
            nats: TestNats::new(),
            clock: ManualClock::new(Utc::now()),
        }
    }

    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database = self.db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = TOKEN.to_owned();
        c.consumer.nak_delay = "1s".to_owned();
        c.retention.interval = "1h".to_owned(); // tests run retention themselves
        c
    }

    pub async fn start(&self) -> TestApp {
        self.start_with(self.config()).await
    }

    pub async fn start_with(&self, config: Config) -> TestApp {
        let app = App::build_with_clock(config, Arc::new(self.clock.clone()))
            .await
            .expect("events service starts");
        let base = format!("http://{}", app.http_addr());
        let (store, metrics) = (app.store(), app.metrics());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        TestApp {
            base,
            store,
            metrics,
            shutdown,
            handle,
            http: reqwest::Client::new(),
        }
    }

    pub async fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.nats.client().await)
    }

    pub fn subject(&self, tenant: TenantId) -> String {
        self.nats
            .config
            .subjects()
            .events(tenant, "integration_source")
    }

    /// Publishes `body` on `subject` and waits for JetStream's ack; returns whether
    /// JetStream dropped it as a duplicate.
    pub async fn publish(
        &self,
        js: &async_nats::jetstream::Context,
        subject: &str,
        body: Vec<u8>,
        msg_id: Option<&str>,
    ) -> bool {
        let mut h = HeaderMap::new();
        if let Some(id) = msg_id {
            h.insert(headers::MSG_ID, id);
        }
        js.publish_with_headers(subject.to_owned(), h, body.into())
            .await
            .unwrap()
            .await
            .unwrap()
            .duplicate
    }

    /// Publishes `event` on its tenant's subject with `Nats-Msg-Id` = its uid.
    pub async fn publish_event(&self, js: &async_nats::jetstream::Context, event: &OcsfEvent) {
        let uid = event.metadata.uid.to_string();
        self.publish(
            js,
            &self.subject(event.tenant_id),
            serde_json::to_vec(event).unwrap(),
            Some(&uid),
        )
        .await;
    }

    /// Rows in `ocsf_events` for `tenant`.
    pub async fn count(&self, tenant: TenantId) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ocsf_events WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(&self.db.pool().await)
            .await
            .unwrap()
    }

    /// Waits until `tenant` has `n` stored events.
    pub async fn wait_for_count(&self, tenant: TenantId, n: i64) {
        let pool = self.db.pool().await;
        eventually(&format!("{n} events stored"), WAIT, || {
            let pool = pool.clone();
            async move {
                let c: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM ocsf_events WHERE tenant_id = $1")
                        .bind(tenant.as_uuid())
                        .fetch_one(&pool)
                        .await
                        .ok()?;
                (c == n).then_some(())
            }
        })
        .await;
    }
}

pub struct TestApp {
    pub base: String,
    pub store: Store,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    handle: JoinHandle<sr_events::Result<()>>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub async fn get_with(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
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

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_with(path, Some(TOKEN)).await
    }
}

/// A lifecycle event of an integration source at `time`.
pub fn event_at(tenant: TenantId, activity: Activity, time: DateTime<Utc>) -> OcsfEvent {
    let action = match activity {
        Activity::Create => "create",
        Activity::Update => "update",
        Activity::Delete => "delete",
    };
    OcsfEvent::lifecycle(
        tenant,
        "sr-identity",
        activity,
        &ResourceRef {
            resource_type: "integration_source",
            id: "src-1".into(),
            name: "Armis",
        },
        "Integration source",
        action,
        serde_json::json!({ "source_type": "armis" }),
        time,
    )
}

pub fn event(tenant: TenantId) -> OcsfEvent {
    event_at(tenant, Activity::Create, Utc::now())
}

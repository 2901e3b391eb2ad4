use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use sr_identity::{App, Config, Control};
use sr_runtime::ManualClock;
use sr_testkit::{TestDb, TestNats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything a test needs that outlives one running app (so a restart reuses it).
pub struct Env {
    pub db: TestDb,
    pub nats: TestNats,
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
}

impl Env {
    pub fn new() -> Self {
        Self {
            db: TestDb::new("identity"),
            nats: TestNats::new(),
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(Utc::now()),
        }
    }

    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database = self.db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.bootstrap.output_dir = self.dir.path().to_path_buf();
        c.secrets.dev_mode = true;
        c.status.check_interval_secs = 3600; // tests drive the liveness check themselves
        c
    }

    pub fn out(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub async fn start(&self) -> TestApp {
        self.start_with(self.config()).await
    }

    pub async fn start_with(&self, config: Config) -> TestApp {
        let app = App::build_with_clock(config, Arc::new(self.clock.clone()))
            .await
            .expect("identity starts");
        let addr = app.http_addr();
        let control = app.control();
        let token = std::fs::read_to_string(self.out("admin-token")).expect("admin token written");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        TestApp {
            base: format!("http://{addr}"),
            token,
            control,
            shutdown,
            handle,
            http: reqwest::Client::new(),
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub control: Arc<Control>,
    shutdown: CancellationToken,
    handle: JoinHandle<sr_identity::Result<()>>,
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

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Creates a tenant and returns its id.
    pub async fn tenant(&self, slug: &str) -> String {
        let (s, b) = self
            .post(
                "/api/v1/tenants",
                serde_json::json!({ "slug": slug, "name": slug.to_uppercase() }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    /// Id of the platform sync service.
    pub async fn platform_sync_id(&self, slug: &str) -> String {
        let (_, list) = self
            .get(&format!("/api/v1/tenants/{slug}/sync-services"))
            .await;
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["is_platform_sync"] == true)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Onboards an edge sync and returns the whole response.
    pub async fn edge_sync(&self, slug: &str, component_id: &str) -> Value {
        let (s, b) = self
            .post(
                &format!("/api/v1/tenants/{slug}/sync-services"),
                serde_json::json!({ "name": format!("{component_id} sync"), "component_id": component_id }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }
}

/// A valid Armis source body assigned to `sync_id`.
pub fn armis_source(name: &str, sync_id: &str) -> Value {
    serde_json::json!({
        "name": name,
        "source_type": "armis",
        "endpoint": "https://armis.example.com",
        "credentials": { "secret_key": "super-secret-value-123" },
        "sync_service_id": sync_id,
        "queries": [{ "label": "all", "query": "in:devices", "sweep_modes": ["icmp"] }],
        "discovery_interval": "2h",
    })
}

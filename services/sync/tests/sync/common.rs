//! A real identity service and a real gateway in-process (real Postgres and NATS), bootstrap
//! bundles for the platform sync and edge syncs, and the sync under test on a manual timer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sr_core::TenantId;
use sr_sync::{ManualTimer, SourceKey};
use sr_testkit::{TestDb, TestNats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for `eventually` (CI machines are slow and shared).
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Stack {
    _db: TestDb,
    pub nats: TestNats,
    pub dir: tempfile::TempDir,
    pub identity_url: String,
    pub token: String,
    pub grpc_addr: std::net::SocketAddr,
    gateway_config: sr_gateway::Config,
    gateway: Option<(CancellationToken, JoinHandle<()>)>,
    stop_identity: CancellationToken,
    http: reqwest::Client,
}

async fn start_gateway(
    c: sr_gateway::Config,
) -> (std::net::SocketAddr, CancellationToken, JoinHandle<()>) {
    let gateway = sr_gateway::App::build(c).await.unwrap();
    let addr = gateway.grpc_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = gateway.run_until(stop).await;
        }
    });
    (addr, stop, task)
}

impl Stack {
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (db, nats, dir) = (
            TestDb::new("identity"),
            TestNats::new(),
            tempfile::tempdir().unwrap(),
        );
        let mut ic = sr_identity::Config::default();
        ic.database = db.config.clone();
        ic.nats = nats.config.clone();
        ic.http.listen = "127.0.0.1:0".parse().unwrap();
        ic.bootstrap.output_dir = dir.path().to_path_buf();
        ic.secrets.dev_mode = true;
        let identity = sr_identity::App::build(ic).await.unwrap();
        let identity_url = format!("http://{}", identity.http_addr());
        let stop_identity = CancellationToken::new();
        tokio::spawn(identity.run_until(stop_identity.clone()));

        let mut gc = sr_gateway::Config::default();
        gc.nats = nats.config.clone();
        gc.grpc.listen = "127.0.0.1:0".parse().unwrap();
        gc.http.listen = "127.0.0.1:0".parse().unwrap();
        let gw = dir.path().join("gateway");
        gc.grpc.cert_file = gw.join("server.pem");
        gc.grpc.key_file = gw.join("server-key.pem");
        gc.grpc.client_ca_file = gw.join("client-ca.pem");
        gc.grpc.idle_stream_timeout_secs = 30;
        gc.identity.negative_cache_ttl_secs = 0;
        gc.identity.cache_ttl_secs = 0;
        let (grpc_addr, stop, task) = start_gateway(gc.clone()).await;
        gc.grpc.listen = grpc_addr;
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
        Self {
            _db: db,
            nats,
            dir,
            identity_url,
            token,
            grpc_addr,
            gateway_config: gc,
            gateway: Some((stop, task)),
            stop_identity,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the gateway and waits until it is gone.
    pub async fn stop_gateway(&mut self) {
        if let Some((stop, task)) = self.gateway.take() {
            stop.cancel();
            task.await.unwrap();
        }
    }

    /// Starts a gateway on the same address again.
    pub async fn start_gateway(&mut self) {
        assert!(self.gateway.is_none(), "gateway already running");
        let (addr, stop, task) = start_gateway(self.gateway_config.clone()).await;
        assert_eq!(addr, self.grpc_addr);
        self.gateway = Some((stop, task));
    }

    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.identity_url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    pub async fn tenant(&self, slug: &str) -> TenantId {
        let t = self
            .api(
                reqwest::Method::POST,
                "/tenants",
                Some(json!({ "slug": slug })),
            )
            .await;
        t["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn platform_sync_id(&self, slug: &str) -> String {
        let list = self
            .api(
                reqwest::Method::GET,
                &format!("/tenants/{slug}/sync-services"),
                None,
            )
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

    /// Creates a source for `slug`; `fields` adds to or overrides the defaults.
    pub async fn source(&self, slug: &str, sync_id: &str, fields: Value) -> String {
        let mut body = json!({ "sync_service_id": sync_id, "credentials": {} });
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let v = self
            .api(
                reqwest::Method::POST,
                &format!("/tenants/{slug}/integration-sources"),
                Some(body),
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn update_source(&self, slug: &str, id: &str, fields: Value) {
        self.api(
            reqwest::Method::PATCH,
            &format!("/tenants/{slug}/integration-sources/{id}"),
            Some(fields),
        )
        .await;
    }

    pub async fn delete_source(&self, slug: &str, id: &str) {
        self.api(
            reqwest::Method::DELETE,
            &format!("/tenants/{slug}/integration-sources/{id}"),
            None,
        )
        .await;
    }

    pub async fn get_source(&self, slug: &str, id: &str) -> Value {
        self.api(
            reqwest::Method::GET,
            &format!("/tenants/{slug}/integration-sources/{id}"),
            None,
        )
        .await
    }

    /// Writes a bootstrap directory for the platform sync pointing at the test gateway.
    pub fn platform_bootstrap(&self) -> PathBuf {
        let src = self.dir.path().join("platform-sync");
        let out = self
            .dir
            .path()
            .join(format!("bundle-platform-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&out).unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::copy(src.join(f), out.join(f)).unwrap();
        }
        self.write_bootstrap(&out, "platform-sync")
    }

    fn write_bootstrap(&self, dir: &Path, component_id: &str) -> PathBuf {
        let path = dir.join("sync.json");
        std::fs::write(
            &path,
            serde_json::to_vec(&json!({
                "component_id": component_id,
                "gateway_address": self.grpc_addr.to_string(),
                "gateway_server_name": "localhost",
                "cert_file": "cert.pem", "key_file": "key.pem", "ca_file": "ca.pem",
            }))
            .unwrap(),
        )
        .unwrap();
        path
    }

    /// Onboards an edge sync for `slug`; returns its bootstrap file and its sync service id.
    pub async fn edge_bootstrap(&self, slug: &str, component_id: &str) -> (PathBuf, String) {
        let v = self
            .api(
                reqwest::Method::POST,
                &format!("/tenants/{slug}/sync-services"),
                Some(json!({ "name": component_id, "component_id": component_id })),
            )
            .await;
        let b = &v["bundle"];
        let out = self.dir.path().join(format!("bundle-{component_id}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("cert.pem"), b["certificate_pem"].as_str().unwrap()).unwrap();
        std::fs::write(out.join("key.pem"), b["private_key_pem"].as_str().unwrap()).unwrap();
        std::fs::write(out.join("ca.pem"), b["ca_pem"].as_str().unwrap()).unwrap();
        let path = self.write_bootstrap(&out, component_id);
        (path, v["id"].as_str().unwrap().to_owned())
    }

    /// All device elements published for `tenant`, in order.
    pub async fn devices(&self, tenant: TenantId) -> Vec<Value> {
        let client = self.nats.client().await;
        let s = self.nats.config.subjects();
        sr_testkit::stream_messages(&client, &s.devices_stream(), &s.device_updates(tenant))
            .await
            .iter()
            .flat_map(|m| serde_json::from_slice::<Vec<Value>>(&m.payload).unwrap())
            .collect()
    }

    /// Waits until `tenant` has exactly `n` devices on JetStream.
    pub async fn wait_devices(&self, tenant: TenantId, n: usize) -> Vec<Value> {
        let got = sr_testkit::eventually(&format!("{n} devices for {tenant}"), WAIT, || async {
            let d = self.devices(tenant).await;
            (d.len() >= n).then_some(d)
        })
        .await;
        assert_eq!(got.len(), n, "more devices than expected");
        got
    }

    /// Waits until identity recorded a run of source `id` matching `ok`.
    pub async fn wait_source_result(
        &self,
        slug: &str,
        id: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        sr_testkit::eventually(&format!("run result of source {id}"), WAIT, || async {
            let s = self.get_source(slug, id).await;
            (s["last_sync_at"].is_string() && pred(&s)).then_some(s)
        })
        .await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.gateway {
            stop.cancel();
        }
        self.stop_identity.cancel();
    }
}

/// The sync under test.
pub struct Sync {
    pub handle: sr_sync::Handle,
    pub timer: ManualTimer,
    pub ops_addr: std::net::SocketAddr,
    pub state_dir: PathBuf,
    _state: Option<tempfile::TempDir>,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Local config for tests: fast retries, port 0.
pub fn sync_config(bootstrap: &Path, state_dir: &Path) -> sr_sync::Config {
    let mut c = sr_sync::Config::default();
    c.bootstrap_file = bootstrap.to_path_buf();
    c.state_dir = state_dir.to_path_buf();
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.gateway.reconnect_initial_ms = 20;
    c.gateway.reconnect_max_ms = 200;
    c.gateway.request_timeout_secs = 20;
    c.push.retry_initial_ms = 20;
    c.push.retry_max_ms = 200;
    c.integrations.retry_initial_ms = 5;
    c.integrations.retry_max_ms = 20;
    c.integrations.max_attempts = 2;
    c.integrations.http_timeout_secs = 30;
    c
}

impl Sync {
    pub async fn start(bootstrap: &Path) -> Self {
        let state = tempfile::tempdir().unwrap();
        let mut s = Self::start_with(sync_config(bootstrap, state.path())).await;
        s._state = Some(state);
        s
    }

    pub async fn start_with(config: sr_sync::Config) -> Self {
        let timer = ManualTimer::new();
        let state_dir = config.state_dir.clone();
        let app = sr_sync::App::build_with_timer(config, Arc::new(timer.clone()))
            .await
            .unwrap();
        let handle = app.handle();
        let ops_addr = app.ops_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until(stop.clone()));
        Self {
            handle,
            timer,
            ops_addr,
            state_dir,
            _state: None,
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub fn advance(&self, by: Duration) {
        self.timer.advance(by);
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.ops_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Completed runs of source `key` of tenant `slug`, by result (`success`, `failure`).
    pub async fn runs(&self, slug: &str, key: &str, result: &str) -> u64 {
        let text = self.metrics().await;
        let needle = format!(
            "sr_sync_source_runs_total{{tenant=\"{slug}\",source=\"{key}\",result=\"{result}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Waits until source `key` has completed `n` runs with `result`.
    pub async fn wait_runs(&self, slug: &str, key: &str, result: &str, n: u64) {
        sr_testkit::eventually(&format!("{n} {result} runs of {key}"), WAIT, || async {
            let got = self.runs(slug, key, result).await;
            assert!(got <= n, "{key}: {got} {result} runs, expected {n}");
            (got == n).then_some(())
        })
        .await;
    }

    pub async fn running(&self) -> Vec<SourceKey> {
        self.handle.running_sources().await
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An Armis source body for `endpoint`.
pub fn armis_source(name: &str, endpoint: &str, queries: Value) -> Value {
    json!({
        "name": name, "source_type": "armis", "endpoint": endpoint,
        "credentials": { "secret_key": "s3cret" }, "queries": queries,
    })
}

/// A NetBox source body for `endpoint`.
pub fn netbox_source(name: &str, endpoint: &str) -> Value {
    json!({
        "name": name, "source_type": "netbox", "endpoint": endpoint,
        "credentials": { "api_token": "nbtoken" },
    })
}

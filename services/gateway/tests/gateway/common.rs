use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sr_core::TenantId;
use sr_proto::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::{GatewayServiceStatus, GatewayStatusChunk};
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub type Client = AgentGatewayServiceClient<Channel>;

/// A certificate and key in PEM.
#[derive(Clone)]
pub struct Creds {
    pub cert: String,
    pub key: String,
}

pub struct Stack {
    /// Kept alive: dropping it removes the schema.
    pub _db: TestDb,
    pub nats: TestNats,
    pub dir: tempfile::TempDir,
    pub identity: Arc<sr_identity::Control>,
    pub identity_url: String,
    pub token: String,
    pub grpc_addr: std::net::SocketAddr,
    pub ops_addr: std::net::SocketAddr,
    stops: Vec<CancellationToken>,
    http: reqwest::Client,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut sr_gateway::Config)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (db, nats, dir) = (
            TestDb::new("gateway"),
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
        let control = identity.control();
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
        gc.identity.negative_cache_ttl_secs = 0;
        tune(&mut gc);
        let gateway = sr_gateway::App::build(gc).await.unwrap();
        let (grpc_addr, ops_addr) = (gateway.grpc_addr(), gateway.ops_addr());
        let stop_gateway = CancellationToken::new();
        tokio::spawn(gateway.run_until(stop_gateway.clone()));
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
        Self {
            _db: db,
            nats,
            dir,
            identity: control,
            identity_url,
            token,
            grpc_addr,
            ops_addr,
            stops: vec![stop_gateway, stop_identity],
            http: reqwest::Client::new(),
        }
    }

    pub fn root_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("root-ca.pem")).unwrap()
    }

    pub async fn connect(&self, creds: Option<&Creds>) -> Result<Client, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.root_pem()))
            .domain_name("localhost");
        if let Some(c) = creds {
            tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
        }
        let channel = Channel::from_shared(format!("https://{}", self.grpc_addr))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(AgentGatewayServiceClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20))
    }

    pub async fn client(&self, creds: &Creds) -> Client {
        self.connect(Some(creds)).await.unwrap()
    }

    pub fn platform_sync(&self) -> Creds {
        let d = self.dir.path().join("platform-sync");
        Creds {
            cert: std::fs::read_to_string(d.join("cert.pem")).unwrap(),
            key: std::fs::read_to_string(d.join("key.pem")).unwrap(),
        }
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

    fn creds(v: &Value) -> Creds {
        Creds {
            cert: v["bundle"]["certificate_pem"].as_str().unwrap().to_owned(),
            key: v["bundle"]["private_key_pem"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn edge_sync(&self, slug: &str, component_id: &str) -> (Creds, String) {
        let v = self
            .api(
                reqwest::Method::POST,
                &format!("/tenants/{slug}/sync-services"),
                Some(json!({ "name": component_id, "component_id": component_id })),
            )
            .await;
        (Self::creds(&v), v["id"].as_str().unwrap().to_owned())
    }

    pub async fn agent(&self, slug: &str, component_id: &str) -> Creds {
        let v = self
            .api(
                reqwest::Method::POST,
                &format!("/tenants/{slug}/agents"),
                Some(json!({ "component_id": component_id })),
            )
            .await;
        Self::creds(&v)
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

    pub async fn source(&self, slug: &str, name: &str, sync_id: &str) -> Value {
        self.api(
            reqwest::Method::POST,
            &format!("/tenants/{slug}/integration-sources"),
            Some(json!({
                "name": name, "source_type": "armis", "endpoint": "https://armis.example",
                "credentials": { "secret_key": "k" }, "sync_service_id": sync_id,
                "queries": [{ "label": "all", "query": "in:devices" }],
            })),
        )
        .await
    }

    /// Every device message published for `tenant`.
    pub async fn device_messages(&self, tenant: TenantId) -> Vec<async_nats::jetstream::Message> {
        let client = self.nats.client().await;
        let s = self.nats.config.subjects();
        sr_testkit::stream_messages(&client, &s.devices_stream(), &s.device_updates(tenant)).await
    }

    /// All device elements published for `tenant`, in order.
    pub async fn devices(&self, tenant: TenantId) -> Vec<Value> {
        self.device_messages(tenant)
            .await
            .iter()
            .flat_map(|m| serde_json::from_slice::<Vec<Value>>(&m.payload).unwrap())
            .collect()
    }

    /// Messages in the whole devices stream.
    pub async fn stream_len(&self) -> u64 {
        let js = async_nats::jetstream::new(self.nats.client().await);
        let mut stream = js
            .get_stream(self.nats.config.subjects().devices_stream())
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.ops_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in &self.stops {
            s.cancel();
        }
    }
}

/// A results chunk for `agent_id` carrying `payload`.
pub fn chunk(
    agent_id: &str,
    index: i32,
    total: i32,
    payload: &[u8],
    tenant_id: &str,
) -> GatewayStatusChunk {
    GatewayStatusChunk {
        services: vec![GatewayServiceStatus {
            service_name: "sync".into(),
            service_type: "sync".into(),
            source: "results".into(),
            available: true,
            message: payload.to_vec(),
            tenant_id: tenant_id.to_owned(),
            ..Default::default()
        }],
        agent_id: agent_id.to_owned(),
        chunk_index: index,
        total_chunks: total,
        is_final: index == total - 1,
        ..Default::default()
    }
}

/// Chunks for `devices` built with the sync's chunk builder.
pub fn chunks_for(
    agent_id: &str,
    devices: &[Value],
    max_bytes: usize,
    tenant_id: &str,
) -> Vec<GatewayStatusChunk> {
    let mut b =
        sr_chunking::ChunkBuilder::new(sr_chunking::ChunkLimits::new(max_bytes, 1000).unwrap());
    for d in devices {
        b.push(d).unwrap();
    }
    b.finish_chunks()
        .into_iter()
        .map(|c| {
            let mut ch = chunk(agent_id, c.index, c.total, &c.payload, tenant_id);
            ch.is_final = c.is_final;
            ch
        })
        .collect()
}

pub fn device(i: usize) -> Value {
    json!({
        "ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "source": "armis",
        "timestamp": "2026-11-22T00:00:00Z",
        "metadata": { "armis_device_id": (i + 1).to_string(), "integration_type": "armis" },
    })
}

/// Waits until the stream holds `n` messages (publishing is acknowledged before the RPC
/// returns, so this normally holds at once).
pub async fn wait_stream_len(stack: &Stack, n: u64) {
    sr_testkit::eventually("device stream length", Duration::from_secs(10), || async {
        (stack.stream_len().await == n).then_some(())
    })
    .await;
}

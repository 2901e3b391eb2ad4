use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sr_core::TenantId;
use sr_core::inventory::{DeviceChange, InventoryChange, SweepHint};
use sr_core::rpc::{AgentConfigReply, AgentConfigRequest, CallerIdentity, IdentityKind};
use sr_sweepgen::metrics::{MessageLabel, Metrics};
use sr_sweepgen::{App, Config};
use sr_testkit::{TestDb, TestNats, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "sweep-read-token";
pub const WAIT: Duration = Duration::from_secs(20);

/// Postgres schema and NATS prefix shared by every replica of one test.
pub struct Env {
    pub db: TestDb,
    pub nats: TestNats,
}

impl Env {
    pub fn new() -> Self {
        Self {
            db: TestDb::new("sweepgen"),
            nats: TestNats::new(),
        }
    }

    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.database = self.db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = TOKEN.to_owned();
        c.consumer.nak_delay_ms = 100;
        c
    }

    pub async fn start(&self) -> Sweepgen {
        self.start_with(self.config()).await
    }

    pub async fn start_with(&self, config: Config) -> Sweepgen {
        let app = App::build(config).await.expect("sweepgen starts");
        let base = format!("http://{}", app.http_addr());
        let metrics = app.metrics();
        let configs = app.configs();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        Sweepgen {
            base,
            metrics,
            configs,
            shutdown,
            handle,
        }
    }

    pub async fn client(&self) -> async_nats::Client {
        self.nats.client().await
    }

    /// Publishes a change as DIRE does (each call is a distinct stream message).
    pub async fn publish(&self, change: &InventoryChange) {
        self.publish_raw(change.tenant_id, serde_json::to_vec(change).unwrap())
            .await;
    }

    pub async fn publish_raw(&self, tenant: TenantId, body: Vec<u8>) {
        let js = async_nats::jetstream::new(self.client().await);
        let subject = self.nats.config.subjects().inventory_changed(tenant);
        js.publish(subject, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Asks for an agent's config over NATS, as the gateway does.
    pub async fn ask(
        &self,
        tenant: TenantId,
        partition: &str,
        agent: &str,
        current: &str,
    ) -> AgentConfigReply {
        self.try_ask(tenant, partition, agent, current)
            .await
            .unwrap()
    }

    pub async fn try_ask(
        &self,
        tenant: TenantId,
        partition: &str,
        agent: &str,
        current: &str,
    ) -> Result<AgentConfigReply, sr_runtime::rpc::CallError> {
        self.request(&AgentConfigRequest {
            caller: caller(tenant, partition, agent),
            current_version: current.to_owned(),
            part: 0,
            part_of: String::new(),
        })
        .await
    }

    /// Sends one agent config request as it is.
    pub async fn request(
        &self,
        req: &AgentConfigRequest,
    ) -> Result<AgentConfigReply, sr_runtime::rpc::CallError> {
        let client = self.client().await;
        sr_runtime::rpc::call(
            &client,
            self.nats.config.subjects().sweepgen_agent_config(),
            req,
            WAIT,
        )
        .await
    }
}

/// One running replica.
pub struct Sweepgen {
    pub base: String,
    pub metrics: Metrics,
    pub configs: Arc<sr_sweepgen::configs::Configs>,
    shutdown: CancellationToken,
    handle: JoinHandle<sr_sweepgen::Result<()>>,
}

impl Sweepgen {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }

    pub fn handled(&self, outcome: &str) -> u64 {
        self.metrics
            .messages
            .get_or_create(&MessageLabel {
                outcome: outcome.to_owned(),
            })
            .get()
    }
}

/// Waits until the replicas together applied (or terminated) `n` messages.
pub async fn wait_handled(replicas: &[&Sweepgen], n: u64) {
    eventually(&format!("{n} inventory messages handled"), WAIT, || async {
        let done: u64 = replicas
            .iter()
            .map(|r| r.handled("applied") + r.handled("poison"))
            .sum();
        (done >= n).then_some(())
    })
    .await;
}

pub fn hint(source: &str, label: Option<&str>, modes: &[&str], ports: &[u16]) -> SweepHint {
    SweepHint {
        source: source.to_owned(),
        query_label: label.map(str::to_owned),
        sweep_modes: modes.iter().map(|m| (*m).to_owned()).collect(),
        ports: ports.to_vec(),
        sweep_interval_secs: Some(600),
    }
}

pub fn device(uid: &str, agent: Option<&str>, ips: &[&str], revision: i64) -> DeviceChange {
    DeviceChange {
        uid: uid.to_owned(),
        partition: "default".to_owned(),
        agent_id: agent.map(str::to_owned),
        ips: ips.iter().map(|s| (*s).to_owned()).collect(),
        sources: vec!["armis".to_owned()],
        hints: vec![hint("armis", Some("all"), &["icmp", "tcp"], &[22, 443])],
        removed: false,
        revision,
    }
}

pub fn removed(uid: &str, revision: i64) -> DeviceChange {
    DeviceChange {
        uid: uid.to_owned(),
        partition: "default".to_owned(),
        agent_id: None,
        ips: Vec::new(),
        sources: Vec::new(),
        hints: Vec::new(),
        removed: true,
        revision,
    }
}

pub fn change(tenant: TenantId, devices: Vec<DeviceChange>) -> InventoryChange {
    InventoryChange {
        tenant_id: tenant,
        devices,
    }
}

/// The target networks of a reply.
pub fn targets(reply: &AgentConfigReply) -> BTreeSet<String> {
    reply
        .sweep
        .as_ref()
        .expect("a sweep section")
        .device_targets
        .iter()
        .map(|t| t.network.clone())
        .collect()
}

/// An agent identity as the gateway fills it in.
pub fn caller(tenant: TenantId, partition: &str, agent: &str) -> CallerIdentity {
    CallerIdentity {
        kind: IdentityKind::Tenant,
        tenant_id: tenant,
        tenant_slug: "test".to_owned(),
        component_id: agent.to_owned(),
        partition: partition.to_owned(),
    }
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

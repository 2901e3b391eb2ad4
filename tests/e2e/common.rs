//! The shared harness: every service in-process on ephemeral ports, one NATS prefix per test,
//! a Postgres schema per service, and helpers to create tenants, sources, agents and sync
//! bundles and to look at what each service holds.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sr_agent::{Agent, AgentOptions, PollOutcome, SweepFile};
use sr_identity::control::{NewAgent, NewSyncService, SourceView, TenantView};
use sr_testkit::{TestDb, TestNats, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const EVENTS_TOKEN: &str = "e2e-events-token";
/// Read API token of DIRE and sweepgen.
pub const READ_TOKEN: &str = "e2e-read-token";
/// Generous bound for `eventually`: the machine is small and shared.
pub const WAIT: Duration = Duration::from_secs(120);
/// The faker's default secret key.
pub const FAKER_SECRET: &str = "faker-secret";
/// The smallest discovery interval identity accepts; one tick of a sync's manual timer.
pub const DISCOVERY: Duration = Duration::from_secs(60);

/// One NATS prefix shared by every service of a test, and a schema per service.
pub struct Stack {
    pub nats: TestNats,
    pub identity_db: TestDb,
    pub events_db: TestDb,
    pub dire_db: TestDb,
    pub sweepgen_db: TestDb,
    pub dir: tempfile::TempDir,
}

/// A running service and how to stop it.
pub struct Running<E> {
    pub base: String,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(45), self.handle)
            .await
            .expect("service stops in time")
            .expect("service task")
            .expect("service ran cleanly");
    }
}

fn spawn<E, F>(base: String, run: impl FnOnce(CancellationToken) -> F) -> Running<E>
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(shutdown.clone()));
    Running {
        base,
        shutdown,
        handle,
    }
}

/// A running sync on a manual timer: each [`SyncService::tick`] starts the next run of every
/// source (their discovery interval is [`DISCOVERY`]).
pub struct SyncService {
    pub running: Running<std::io::Error>,
    pub timer: sr_sync::ManualTimer,
    pub handle: sr_sync::Handle,
    pub ops_addr: SocketAddr,
}

impl SyncService {
    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Moves the scheduler one discovery interval forward.
    pub fn tick(&self) {
        self.timer.advance(DISCOVERY);
    }

    /// Completed runs of `source` of tenant `slug` with `result`. The source key is
    /// `<slug>/<name>` on the platform sync and `<name>` on an edge sync.
    pub async fn runs(&self, slug: &str, source: &str, result: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.ops_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let needle = format!(
            "sr_sync_source_runs_total{{tenant=\"{slug}\",source=\"{source}\",result=\"{result}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Waits until `source` has completed exactly `n` successful runs (never more).
    pub async fn wait_runs(&self, slug: &str, source: &str, n: u64) {
        eventually(
            &format!("{n} successful runs of {source}"),
            WAIT,
            || async {
                let failed = self.runs(slug, source, "failure").await;
                assert_eq!(failed, 0, "{source} had failed runs");
                let got = self.runs(slug, source, "success").await;
                assert!(got <= n, "{source}: {got} runs, expected {n}");
                (got == n).then_some(())
            },
        )
        .await;
    }
}

impl Stack {
    pub fn new() -> Self {
        // Several TLS stacks in one process: make the ring provider the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            nats: TestNats::new(),
            identity_db: TestDb::new("identity"),
            events_db: TestDb::new("events"),
            dire_db: TestDb::new("dire"),
            sweepgen_db: TestDb::new("sweepgen"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn identity(
        &self,
    ) -> (
        Running<sr_identity::Error>,
        Arc<sr_identity::Control>,
        String,
    ) {
        let mut c = sr_identity::Config::default();
        c.database = self.identity_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.bootstrap.output_dir = self.dir.path().to_path_buf();
        c.secrets.dev_mode = true;
        let app = sr_identity::App::build_with_clock(c, Arc::new(sr_runtime::SystemClock))
            .await
            .expect("identity starts");
        let base = format!("http://{}", app.http_addr());
        let control = app.control();
        let token = std::fs::read_to_string(self.dir.path().join("admin-token")).unwrap();
        (
            spawn(base, |s| app.run_until(s)),
            control,
            token.trim().to_owned(),
        )
    }

    pub async fn events(&self) -> Running<sr_events::Error> {
        let mut c = sr_events::Config::default();
        c.database = self.events_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = EVENTS_TOKEN.to_owned();
        let app = sr_events::App::build(c).await.expect("events starts");
        let base = format!("http://{}", app.http_addr());
        spawn(base, |s| app.run_until(s))
    }

    /// The gateway with identity's bootstrap certificates, on `listen` (port 0 for a new
    /// port; the same address again after a restart). Returns the gRPC address too.
    pub async fn gateway(
        &self,
        listen: SocketAddr,
    ) -> (Running<tonic::transport::Error>, SocketAddr) {
        let mut c = sr_gateway::Config::default();
        c.nats = self.nats.config.clone();
        c.grpc.listen = listen;
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        let gw = self.dir.path().join("gateway");
        c.grpc.cert_file = gw.join("server.pem");
        c.grpc.key_file = gw.join("server-key.pem");
        c.grpc.client_ca_file = gw.join("client-ca.pem");
        c.grpc.idle_stream_timeout_secs = 30;
        c.identity.cache_ttl_secs = 0;
        c.identity.negative_cache_ttl_secs = 0;
        let app = sr_gateway::App::build(c).await.expect("gateway starts");
        let addr = app.grpc_addr();
        let base = format!("http://{}", app.ops_addr());
        (spawn(base, |s| app.run_until(s)), addr)
    }

    pub async fn dire(&self) -> Running<sr_dire::Error> {
        let mut c = sr_dire::Config::default();
        c.database = self.dire_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = READ_TOKEN.to_owned();
        c.consumer.idle_wait_ms = 200;
        c.consumer.nak_delay_ms = 200;
        // A message held by a replica that was stopped comes back after this (restarts).
        c.consumer.ack_wait_secs = 10;
        c.outbox.poll_interval_ms = 100;
        let app = sr_dire::App::build(c).await.expect("DIRE starts");
        let base = format!("http://{}", app.http_addr());
        spawn(base, |s| app.run_until(s))
    }

    pub async fn sweepgen(&self) -> Running<sr_sweepgen::Error> {
        let mut c = sr_sweepgen::Config::default();
        c.database = self.sweepgen_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = READ_TOKEN.to_owned();
        c.consumer.nak_delay_ms = 100;
        c.consumer.ack_wait_secs = 10;
        let app = sr_sweepgen::App::build(c).await.expect("sweepgen starts");
        let base = format!("http://{}", app.http_addr());
        spawn(base, |s| app.run_until(s))
    }

    /// A sync from `bootstrap` keeping its state in `state_dir`, on a manual timer.
    pub async fn sync(&self, bootstrap: &Path, state_dir: &Path) -> SyncService {
        let mut c = sr_sync::Config::default();
        c.bootstrap_file = bootstrap.to_path_buf();
        c.state_dir = state_dir.to_path_buf();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.gateway.reconnect_initial_ms = 20;
        c.gateway.reconnect_max_ms = 500;
        c.gateway.request_timeout_secs = 20;
        c.push.retry_initial_ms = 50;
        c.push.retry_max_ms = 500;
        c.integrations.retry_initial_ms = 20;
        c.integrations.retry_max_ms = 200;
        c.integrations.http_timeout_secs = 30;
        let timer = sr_sync::ManualTimer::new();
        let app = sr_sync::App::build_with_timer(c, Arc::new(timer.clone()))
            .await
            .expect("sync starts");
        let handle = app.handle();
        let ops_addr = app.ops_addr();
        let running = spawn(format!("http://{ops_addr}"), |s| app.run_until(s));
        SyncService {
            running,
            timer,
            handle,
            ops_addr,
        }
    }

    /// Writes a sync bootstrap (`sync.json` plus certificates) into a new directory.
    fn write_sync_bootstrap(
        &self,
        name: &str,
        component_id: &str,
        gateway: SocketAddr,
        files: [(&str, String); 3],
    ) -> PathBuf {
        let out = self.dir.path().join(format!("bundle-{name}"));
        std::fs::create_dir_all(&out).unwrap();
        for (file, content) in files {
            std::fs::write(out.join(file), content).unwrap();
        }
        let path = out.join("sync.json");
        std::fs::write(
            &path,
            serde_json::to_vec(&json!({
                "component_id": component_id,
                "gateway_address": gateway.to_string(),
                "gateway_server_name": "localhost",
                "cert_file": "cert.pem", "key_file": "key.pem", "ca_file": "ca.pem",
            }))
            .unwrap(),
        )
        .unwrap();
        path
    }

    /// The platform sync's bootstrap (written by identity) pointed at `gateway`.
    pub fn platform_bootstrap(&self, gateway: SocketAddr) -> PathBuf {
        let src = self.dir.path().join("platform-sync");
        let read = |f: &str| std::fs::read_to_string(src.join(f)).unwrap();
        self.write_sync_bootstrap(
            "platform-sync",
            "platform-sync",
            gateway,
            [
                ("cert.pem", read("cert.pem")),
                ("key.pem", read("key.pem")),
                ("ca.pem", read("ca.pem")),
            ],
        )
    }
}

/// Which service to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    Gateway,
    Dire,
    Sweepgen,
    Events,
}

/// Identity, events, gateway, DIRE and sweepgen running on one [`Stack`]; syncs, fakers and
/// agents are added by each test.
/// A tenant set up by [`Pipeline::platform_armis_tenant`].
pub struct Onboarded {
    pub tenant: TenantView,
    /// The agent's `agent.json`.
    pub agent: PathBuf,
    pub source: SourceView,
}

pub struct Pipeline {
    pub stack: Stack,
    pub control: Arc<sr_identity::Control>,
    pub admin_token: String,
    pub grpc_addr: SocketAddr,
    identity: Option<Running<sr_identity::Error>>,
    events: Option<Running<sr_events::Error>>,
    gateway: Option<Running<tonic::transport::Error>>,
    dire: Option<Running<sr_dire::Error>>,
    sweepgen: Option<Running<sr_sweepgen::Error>>,
}

/// What a faker device looks like to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    pub armis_id: String,
    pub ip: String,
    pub mac: String,
}

/// Every device the faker serves now: Armis id, primary IP, primary MAC (upper case, as the
/// sync normalises it).
pub fn expected(faker: &sr_faker::FakerHandle) -> Vec<Expected> {
    (0..faker.device_count())
        .map(|i| {
            let d = faker.device(i).unwrap();
            Expected {
                armis_id: d.id.to_string(),
                ip: d.ip_address.split(',').next().unwrap().trim().to_owned(),
                mac: d
                    .mac_address
                    .split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .to_ascii_uppercase(),
            }
        })
        .collect()
}

/// `/32` networks of the faker's primary IPs.
pub fn expected_targets(devices: &[Expected]) -> BTreeSet<String> {
    devices.iter().map(|d| format!("{}/32", d.ip)).collect()
}

/// An Armis source body pointing at `endpoint`, on sync `sync_id`, swept by `agent`.
pub fn armis_source(name: &str, endpoint: &str, sync_id: Uuid, agent: &str) -> serde_json::Value {
    json!({
        "name": name,
        "source_type": "armis",
        "endpoint": endpoint,
        "credentials": { "secret_key": FAKER_SECRET },
        "sync_service_id": sync_id,
        "agent_id": agent,
        "discovery_interval": "1m",
        "page_size": 500,
        "queries": [{ "label": "all", "query": "in:devices", "sweep_modes": ["icmp", "tcp"] }],
    })
}

impl Pipeline {
    pub async fn start() -> Self {
        let stack = Stack::new();
        let (identity, control, admin_token) = stack.identity().await;
        let events = stack.events().await;
        let (gateway, grpc_addr) = stack.gateway("127.0.0.1:0".parse().unwrap()).await;
        let dire = stack.dire().await;
        let sweepgen = stack.sweepgen().await;
        Self {
            stack,
            control,
            admin_token,
            grpc_addr,
            identity: Some(identity),
            events: Some(events),
            gateway: Some(gateway),
            dire: Some(dire),
            sweepgen: Some(sweepgen),
        }
    }

    /// Stops `service` and starts it again on the same state (the gateway on the same port).
    pub async fn restart(&mut self, service: Service) {
        match service {
            Service::Identity => {
                self.identity.take().unwrap().stop().await;
                let (identity, control, token) = self.stack.identity().await;
                assert_eq!(token, self.admin_token, "a restart keeps the platform");
                self.control = control;
                self.identity = Some(identity);
            }
            Service::Events => {
                self.events.take().unwrap().stop().await;
                self.events = Some(self.stack.events().await);
            }
            Service::Gateway => {
                self.gateway.take().unwrap().stop().await;
                let (gateway, addr) = self.stack.gateway(self.grpc_addr).await;
                assert_eq!(addr, self.grpc_addr);
                self.gateway = Some(gateway);
            }
            Service::Dire => {
                self.dire.take().unwrap().stop().await;
                self.dire = Some(self.stack.dire().await);
            }
            Service::Sweepgen => {
                self.sweepgen.take().unwrap().stop().await;
                self.sweepgen = Some(self.stack.sweepgen().await);
            }
        }
    }

    pub fn events_base(&self) -> &str {
        &self.events.as_ref().unwrap().base
    }

    pub async fn stop(mut self) {
        // Producers first, so nothing is left half-way when a consumer goes.
        self.gateway.take().unwrap().stop().await;
        self.dire.take().unwrap().stop().await;
        self.sweepgen.take().unwrap().stop().await;
        self.events.take().unwrap().stop().await;
        self.identity.take().unwrap().stop().await;
    }

    pub async fn tenant(&self, slug: &str) -> TenantView {
        self.control
            .create_tenant(serde_json::from_value(json!({ "slug": slug })).unwrap())
            .await
            .unwrap()
    }

    pub async fn platform_sync(&self, slug: &str) -> Uuid {
        self.control
            .list_sync_services(slug)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.is_platform_sync)
            .unwrap()
            .id
    }

    pub async fn source(&self, slug: &str, body: serde_json::Value) -> SourceView {
        self.control
            .create_source(slug, serde_json::from_value(body).unwrap())
            .await
            .unwrap()
    }

    /// The setup most flows start from: tenant `slug`, its agent `agent-1` (bundle written),
    /// and an Armis source `name` on `endpoint` assigned to the platform sync, for that agent.
    pub async fn platform_armis_tenant(&self, slug: &str, name: &str, endpoint: &str) -> Onboarded {
        let tenant = self.tenant(slug).await;
        let psync = self.platform_sync(slug).await;
        let agent = self.enroll_agent(slug, "agent-1").await;
        let source = self
            .source(slug, armis_source(name, endpoint, psync, "agent-1"))
            .await;
        Onboarded {
            tenant,
            agent,
            source,
        }
    }

    pub fn platform_bootstrap(&self) -> PathBuf {
        self.stack.platform_bootstrap(self.grpc_addr)
    }

    /// Onboards an edge sync for `slug`: its bootstrap file and its sync service id.
    pub async fn edge_bootstrap(&self, slug: &str, component_id: &str) -> (PathBuf, Uuid) {
        let e = self
            .control
            .onboard_sync(
                slug,
                NewSyncService {
                    name: component_id.to_owned(),
                    component_id: component_id.to_owned(),
                    partition: None,
                    endpoint: None,
                },
            )
            .await
            .unwrap();
        let b = e.bundle;
        let path = self.stack.write_sync_bootstrap(
            &format!("{slug}-{component_id}"),
            component_id,
            self.grpc_addr,
            [
                ("cert.pem", b.certificate_pem),
                ("key.pem", b.private_key_pem),
                ("ca.pem", b.ca_pem),
            ],
        );
        (path, e.record.id)
    }

    /// Enrolls an agent of `slug` and writes its bundle as `srctl agents enroll --out` does,
    /// with this gateway's address; returns `agent.json`.
    pub async fn enroll_agent(&self, slug: &str, component_id: &str) -> PathBuf {
        let e = self
            .control
            .enroll_agent(
                slug,
                NewAgent {
                    component_id: component_id.to_owned(),
                    partition: None,
                },
            )
            .await
            .unwrap();
        let b = e.bundle;
        let out = self
            .stack
            .dir
            .path()
            .join(format!("agent-{slug}-{component_id}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(&b.config.cert_file), &b.certificate_pem).unwrap();
        std::fs::write(out.join(&b.config.key_file), &b.private_key_pem).unwrap();
        std::fs::write(out.join(&b.config.ca_file), &b.ca_pem).unwrap();
        let mut config = serde_json::to_value(&b.config).unwrap();
        config["gateway_address"] = json!(self.grpc_addr.to_string());
        let path = out.join("agent.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// Starts a sync from `bootstrap` with a fresh state directory.
    pub async fn sync(&self, bootstrap: &Path) -> SyncService {
        let state = bootstrap.parent().unwrap().join("state");
        self.stack.sync(bootstrap, &state).await
    }

    /// Waits until the source's last run in identity is a success with `n` devices.
    pub async fn wait_source_success(&self, slug: &str, id: Uuid, n: i64) -> SourceView {
        eventually(
            &format!("source {id} reports {n} devices"),
            WAIT,
            || async {
                let s = self.control.get_source(slug, id).await.ok()?;
                (s.last_sync_result.as_deref() == Some("success") && s.last_device_count == Some(n))
                    .then_some(s)
            },
        )
        .await
    }

    // ------------------------------------------------------------ DIRE's inventory

    /// Every canonical device of `tenant`: (Armis id, IP, MAC), sorted; a device without an
    /// Armis identifier shows an empty id.
    pub async fn dire_devices(&self, tenant: Uuid) -> Vec<Expected> {
        let pool = self.stack.dire_db.pool().await;
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT (SELECT string_agg(i.value, ',') FROM identifiers i
                      WHERE i.tenant_id = d.tenant_id AND i.partition = d.partition
                        AND i.device_uid = d.uid AND i.type = 'armis_device_id'),
                    host(d.ip), d.mac
               FROM devices d WHERE d.tenant_id = $1",
        )
        .bind(tenant)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        let mut out: Vec<Expected> = rows
            .into_iter()
            .map(|(armis_id, ip, mac)| Expected {
                armis_id: armis_id.unwrap_or_default(),
                ip: ip.unwrap_or_default(),
                mac: mac.unwrap_or_default(),
            })
            .collect();
        out.sort();
        out
    }

    /// Waits until DIRE holds exactly `want` (sorted) for `tenant`.
    pub async fn wait_dire(&self, tenant: Uuid, want: &[Expected]) {
        let mut want = want.to_vec();
        want.sort();
        let mut last = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                last = self.dire_devices(tenant).await;
                if last == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        if found.is_err() {
            let missing: Vec<_> = want.iter().filter(|d| !last.contains(d)).take(5).collect();
            let extra: Vec<_> = last.iter().filter(|d| !want.contains(d)).take(5).collect();
            panic!(
                "DIRE for {tenant}: {} devices, want {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
                last.len(),
                want.len()
            );
        }
    }

    pub async fn dire_scalar(&self, sql: &str, tenant: Uuid) -> i64 {
        let pool = self.stack.dire_db.pool().await;
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    // ------------------------------------------------------------ events

    /// (tenant, activity) of every stored event with `correlation`.
    pub async fn events_for(&self, correlation: &str) -> Vec<(Uuid, i32)> {
        let pool = self.stack.events_db.pool().await;
        let rows = sqlx::query_as(
            "SELECT tenant_id, activity_id FROM ocsf_events WHERE correlation_uid = $1 ORDER BY time",
        )
        .bind(correlation)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    }

    /// Waits until the create event of integration source `id` is stored; returns its tenant.
    pub async fn wait_source_created_event(&self, id: Uuid) -> Uuid {
        let correlation = format!("integration_source:{id}");
        let rows = eventually(&format!("create event of {id}"), WAIT, || async {
            let rows = self.events_for(&correlation).await;
            (!rows.is_empty()).then_some(rows)
        })
        .await;
        assert_eq!(
            rows.len(),
            1,
            "exactly one event for {correlation}: {rows:?}"
        );
        assert_eq!(rows[0].1, 1, "a create");
        rows[0].0
    }

    /// Tenants of every stored event.
    pub async fn event_tenants(&self) -> Vec<(Uuid, i64)> {
        let pool = self.stack.events_db.pool().await;
        let rows = sqlx::query_as(
            "SELECT tenant_id, count(*) FROM ocsf_events GROUP BY tenant_id ORDER BY tenant_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    }
}

/// Sweep targets of a sweep file.
pub fn file_targets(path: &Path) -> BTreeSet<String> {
    SweepFile::read(path)
        .unwrap()
        .device_targets
        .into_iter()
        .map(|t| t.network)
        .collect()
}

/// Polls `GetConfig` with the agent at `bootstrap` (mTLS through the real gateway) until its
/// sweep file holds exactly `want`; returns the agent for further polls.
pub async fn wait_agent_targets(bootstrap: &Path, want: &BTreeSet<String>) -> Agent {
    let mut agent = Agent::new(AgentOptions::new(bootstrap)).unwrap();
    let mut last = BTreeSet::new();
    let done = tokio::time::timeout(WAIT, async {
        loop {
            match agent.poll_once().await.unwrap() {
                PollOutcome::Applied { .. } | PollOutcome::NotModified { .. } => {
                    last = file_targets(agent.sweep_path());
                    if &last == want {
                        return;
                    }
                }
                PollOutcome::NoSweep { .. }
                | PollOutcome::Unreachable { .. }
                | PollOutcome::Refused { .. } => {}
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    if done.is_err() {
        let missing: Vec<_> = want.difference(&last).take(5).collect();
        let extra: Vec<_> = last.difference(want).take(5).collect();
        panic!(
            "agent {}: {} targets, want {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            bootstrap.display(),
            last.len(),
            want.len()
        );
    }
    agent
}

//! The whole path with real certificates: identity enrolls agents, the real gateway
//! authenticates them and asks sweepgen over NATS, and `sr-agent` writes `sweep.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sr_agent::{Agent, AgentOptions, PollOutcome, SweepFile};
use sr_core::TenantId;
use sr_testkit::TestDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{Env, Sweepgen, change, device, set, wait_handled};

struct Running<T> {
    token: CancellationToken,
    handle: JoinHandle<T>,
}

impl<T> Running<T> {
    async fn stop(self) -> T {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(40), self.handle)
            .await
            .expect("stops in time")
            .expect("task")
    }
}

/// Identity, gateway and sweepgen on one NATS prefix.
struct Stack {
    env: Env,
    _identity_db: TestDb,
    dir: tempfile::TempDir,
    identity: Running<sr_identity::Result<()>>,
    identity_base: String,
    admin_token: String,
    gateway: Option<Running<Result<(), tonic::transport::Error>>>,
    grpc_addr: SocketAddr,
    sweepgen: Sweepgen,
}

impl Stack {
    async fn start() -> Self {
        let env = Env::new();
        let identity_db = TestDb::new("identity");
        let dir = tempfile::tempdir().unwrap();

        let mut ic = sr_identity::Config::default();
        ic.database = identity_db.config.clone();
        ic.nats = env.nats.config.clone();
        ic.http.listen = "127.0.0.1:0".parse().unwrap();
        ic.bootstrap.output_dir = dir.path().to_path_buf();
        ic.secrets.dev_mode = true;
        ic.status.check_interval_secs = 3600;
        let identity = sr_identity::App::build(ic).await.expect("identity starts");
        let identity_base = format!("http://{}", identity.http_addr());
        let token = CancellationToken::new();
        let identity = Running {
            handle: tokio::spawn(identity.run_until(token.clone())),
            token,
        };
        let admin_token = std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();

        let mut gc = sr_gateway::Config::default();
        gc.nats = env.nats.config.clone();
        gc.grpc.listen = "127.0.0.1:0".parse().unwrap();
        gc.http.listen = "127.0.0.1:0".parse().unwrap();
        let gw_dir = dir.path().join("gateway");
        gc.grpc.cert_file = gw_dir.join("server.pem");
        gc.grpc.key_file = gw_dir.join("server-key.pem");
        gc.grpc.client_ca_file = gw_dir.join("client-ca.pem");
        let gateway = sr_gateway::App::build(gc).await.expect("gateway starts");
        let grpc_addr = gateway.grpc_addr();
        let token = CancellationToken::new();
        let gateway = Running {
            handle: tokio::spawn(gateway.run_until(token.clone())),
            token,
        };

        let sweepgen = env.start().await;
        Self {
            env,
            _identity_db: identity_db,
            dir,
            identity,
            identity_base,
            admin_token,
            gateway: Some(gateway),
            grpc_addr,
            sweepgen,
        }
    }

    async fn admin(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1{path}", self.identity_base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{path}");
        resp.json().await.unwrap()
    }

    async fn tenant(&self, slug: &str) -> TenantId {
        let t = self
            .admin("/tenants", json!({ "slug": slug, "name": slug }))
            .await;
        t["id"].as_str().unwrap().parse().unwrap()
    }

    /// Enrolls an agent and writes its bundle as `srctl agents enroll --out` does, with the
    /// gateway address of this test; returns the bootstrap file.
    async fn enroll(&self, slug: &str, component_id: &str) -> PathBuf {
        let resp = self
            .admin(
                &format!("/tenants/{slug}/agents"),
                json!({ "component_id": component_id, "partition": "default" }),
            )
            .await;
        let b = &resp["bundle"];
        let out = self.dir.path().join(format!("agent-{slug}-{component_id}"));
        std::fs::create_dir_all(&out).unwrap();
        for (file, field) in [
            ("cert.pem", "certificate_pem"),
            ("key.pem", "private_key_pem"),
            ("ca.pem", "ca_pem"),
        ] {
            std::fs::write(out.join(file), b[field].as_str().unwrap()).unwrap();
        }
        let mut config = b["config"].clone();
        config["gateway_address"] = json!(self.grpc_addr.to_string());
        let path = out.join("agent.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    async fn stop_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await.unwrap();
        }
    }

    async fn stop(mut self) {
        self.stop_gateway().await;
        self.sweepgen.stop().await;
        self.identity.stop().await.unwrap();
    }
}

fn file_targets(path: &Path) -> std::collections::BTreeSet<String> {
    SweepFile::read(path)
        .unwrap()
        .device_targets
        .into_iter()
        .map(|t| t.network)
        .collect()
}

#[tokio::test]
async fn an_agent_certificate_gets_its_own_tenants_config_and_not_modified_through_the_gateway() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let globex = stack.tenant("globex").await;
    let acme_agent = stack.enroll("acme", "agent-1").await;
    let globex_agent = stack.enroll("globex", "agent-1").await;
    stack
        .env
        .publish(&change(
            acme,
            vec![
                device("sr:a1", Some("agent-1"), &["10.10.0.1"], 1),
                device("sr:a2", None, &["10.10.0.2"], 1),
                device("sr:a3", Some("agent-2"), &["10.10.0.3"], 1),
            ],
        ))
        .await;
    stack
        .env
        .publish(&change(
            globex,
            vec![
                device("sr:g1", Some("agent-1"), &["10.20.0.1"], 1),
                device("sr:g2", None, &["10.20.0.2"], 1),
            ],
        ))
        .await;
    wait_handled(&[&stack.sweepgen], 2).await;

    let mut agent = Agent::new(AgentOptions::new(&acme_agent)).unwrap();
    let applied = agent.poll_once().await.unwrap();
    let PollOutcome::Applied {
        config_version,
        targets,
    } = applied
    else {
        panic!("expected a config, got {applied:?}");
    };
    assert_eq!(targets, 2);
    let acme_id = acme.to_string();
    assert_eq!(agent.tenant(), Some((acme_id.as_str(), "acme")));
    let path = agent.sweep_path().to_path_buf();
    assert_eq!(path, acme_agent.parent().unwrap().join("sweep.json"));
    assert_eq!(file_targets(&path), set(&["10.10.0.1/32", "10.10.0.2/32"]));
    let file = SweepFile::read(&path).unwrap();
    assert_eq!(file.config_version, config_version);
    assert_eq!(file.agent_id, "agent-1");
    assert_eq!(file.format, sr_agent::sweepfile::FORMAT);

    // The version in hand comes back not_modified and the file is left alone.
    let bytes = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let again = agent.poll_once().await.unwrap();
    assert_eq!(
        again,
        PollOutcome::NotModified {
            config_version: config_version.clone()
        }
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
    assert!(stack.sweepgen.metrics.not_modified.get() >= 1);

    // The same agent id with a globex certificate sees globex only.
    let mut other = Agent::new(AgentOptions::new(&globex_agent)).unwrap();
    assert!(matches!(
        other.poll_once().await.unwrap(),
        PollOutcome::Applied { targets: 2, .. }
    ));
    assert_eq!(
        file_targets(other.sweep_path()),
        set(&["10.20.0.1/32", "10.20.0.2/32"])
    );
    stack.stop().await;
}

#[tokio::test]
async fn the_agent_keeps_its_last_good_sweep_file_when_the_gateway_is_down_and_picks_up_changes() {
    let mut stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let bootstrap = stack.enroll("acme", "agent-1").await;
    stack
        .env
        .publish(&change(
            acme,
            vec![device("sr:a1", Some("agent-1"), &["10.30.0.1"], 1)],
        ))
        .await;
    wait_handled(&[&stack.sweepgen], 1).await;

    let mut agent = Agent::new(AgentOptions::new(&bootstrap)).unwrap();
    let PollOutcome::Applied {
        config_version: v1, ..
    } = agent.poll_once().await.unwrap()
    else {
        panic!("expected a config");
    };
    // DIRE moves the device to another address: the next poll picks it up.
    stack
        .env
        .publish(&change(
            acme,
            vec![device("sr:a1", Some("agent-1"), &["10.30.0.2"], 2)],
        ))
        .await;
    wait_handled(&[&stack.sweepgen], 2).await;
    let PollOutcome::Applied {
        config_version: v2, ..
    } = agent.poll_once().await.unwrap()
    else {
        panic!("expected the changed config");
    };
    assert_ne!(v1, v2);
    let path = agent.sweep_path().to_path_buf();
    assert_eq!(file_targets(&path), set(&["10.30.0.2/32"]));
    let good = std::fs::read(&path).unwrap();

    // An answer without a sweep section keeps the file.
    let no_sweep = agent
        .apply_response(sr_proto::AgentConfigResponse {
            config_version: "elsewhere".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(no_sweep, PollOutcome::NoSweep { .. }));
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert_eq!(agent.current_version(), v2);

    // Gateway down: the poll fails and the last good file stays.
    stack.stop_gateway().await;
    let down = agent.poll_once().await.unwrap();
    assert!(matches!(down, PollOutcome::Unreachable { .. }), "{down:?}");
    assert_eq!(std::fs::read(&path).unwrap(), good);

    // A restarted agent starts from the local file and keeps it while the gateway is down.
    let mut restarted = Agent::new(AgentOptions::new(&bootstrap)).unwrap();
    assert_eq!(restarted.current_version(), v2);
    assert!(matches!(
        restarted.poll_once().await.unwrap(),
        PollOutcome::Unreachable { .. }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), good);
    stack.stop().await;
}

#[tokio::test]
async fn a_config_larger_than_the_nats_max_payload_reaches_the_agent_whole_through_the_gateway() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let bootstrap = stack.enroll("acme", "agent-1").await;
    // 12 000 targets are several MiB of JSON: more than one NATS reply holds.
    let mut expected = std::collections::BTreeSet::new();
    for batch in 0..12 {
        let devices = (0..1_000)
            .map(|i| {
                let n = batch * 1_000 + i;
                let ip = format!(
                    "10.{}.{}.{}",
                    100 + n / 60_000,
                    (n / 250) % 240,
                    n % 250 + 1
                );
                expected.insert(format!("{ip}/32"));
                device(&format!("sr:big{n}"), Some("agent-1"), &[&ip], 1)
            })
            .collect();
        stack.env.publish(&change(acme, devices)).await;
    }
    wait_handled(&[&stack.sweepgen], 12).await;
    let direct = stack.env.ask(acme, "default", "agent-1", "").await;
    assert!(direct.parts > 1, "the config must exceed one reply");

    let mut agent = Agent::new(AgentOptions::new(&bootstrap)).unwrap();
    let outcome = agent.poll_once().await.unwrap();
    let PollOutcome::Applied {
        config_version,
        targets,
    } = outcome
    else {
        panic!("expected a config, got {outcome:?}");
    };
    assert_eq!(targets, 12_000);
    assert_eq!(config_version, direct.config_version);
    assert_eq!(file_targets(agent.sweep_path()), expected);
    assert_eq!(
        agent.poll_once().await.unwrap(),
        PollOutcome::NotModified { config_version }
    );
    stack.stop().await;
}

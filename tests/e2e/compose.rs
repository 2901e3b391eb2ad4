//! No Docker engine runs on the CI machines, so `compose.yaml` is kept true to the code here:
//! every service runs a workspace binary whose real config loader accepts the environment the
//! file gives it, the files it names are the ones identity writes into the shared bootstrap
//! volume, and ports, health checks and addresses agree with that configuration.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use sr_runtime::config::{ConfigError, STANDARD_ALIASES, load};

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose.yaml");
    let mut v: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.apply_merge().unwrap();
    v
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("unexpected value {other:?}"),
    }
}

/// `${VAR:-default}` as compose resolves it with VAR unset.
fn interpolate(s: &str) -> String {
    match (s.find("${"), s.find(":-"), s.rfind('}')) {
        (Some(a), Some(b), Some(c)) if a < b && b < c => {
            format!("{}{}{}", &s[..a], &s[b + 2..c], &s[c + 1..])
        }
        _ => s.to_owned(),
    }
}

fn environment(svc: &Value) -> BTreeMap<String, String> {
    svc["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (text(k), interpolate(&text(v))))
                .collect()
        })
        .unwrap_or_default()
}

fn accepts<C: Serialize + DeserializeOwned + Default>(
    service: &str,
    env: &BTreeMap<String, String>,
    validate: impl Fn(&C) -> Result<(), ConfigError>,
) {
    let config: C = load(service, None, env.clone(), STANDARD_ALIASES).unwrap_or_else(|e| {
        panic!("compose environment of {service} is not accepted by its binary: {e}")
    });
    validate(&config)
        .unwrap_or_else(|e| panic!("compose configuration of {service} is invalid: {e}"));
}

fn services() -> Vec<(String, Value)> {
    compose()["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (text(k), v.clone()))
        .collect()
}

#[test]
fn every_compose_service_runs_a_workspace_binary_that_accepts_its_environment() {
    let mut seen = Vec::new();
    for (name, svc) in services() {
        if svc["image"].as_str() != Some("serviceradar:dev") {
            continue;
        }
        let binary = text(&svc["command"][0]);
        let env = environment(&svc);
        match binary.as_str() {
            "sr-identity" => {
                accepts::<sr_identity::Config>("identity", &env, sr_identity::Config::validate)
            }
            "sr-gateway" => {
                accepts::<sr_gateway::Config>("gateway", &env, sr_gateway::Config::validate)
            }
            "sr-dire" => accepts::<sr_dire::Config>("dire", &env, sr_dire::Config::validate),
            "sr-sweepgen" => {
                accepts::<sr_sweepgen::Config>("sweepgen", &env, sr_sweepgen::Config::validate)
            }
            "sr-events" => {
                accepts::<sr_events::Config>("events", &env, sr_events::Config::validate)
            }
            "sr-sync" => accepts::<sr_sync::Config>("sync", &env, sr_sync::Config::validate),
            "sr-faker" => accepts::<sr_faker::Config>("faker", &env, sr_faker::Config::validate),
            other => panic!("service {name} runs {other}, which is not a binary of this workspace"),
        }
        seen.push(binary);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "sr-dire",
            "sr-events",
            "sr-faker",
            "sr-gateway",
            "sr-identity",
            "sr-sweepgen",
            "sr-sync"
        ]
    );
    let all: Vec<String> = services().into_iter().map(|(n, _)| n).collect();
    for infra in ["postgres", "nats", "jaeger"] {
        assert!(
            all.iter().any(|n| n == infra),
            "{infra} missing from compose.yaml"
        );
    }
}

#[test]
fn bootstrap_files_named_in_compose_are_the_files_identity_writes() {
    use sr_core::bootstrap::files;
    use sr_identity::bootstrap::paths;
    let written = [
        format!("/bootstrap/{}/{}", paths::GATEWAY_DIR, paths::GATEWAY_CERT),
        format!("/bootstrap/{}/{}", paths::GATEWAY_DIR, paths::GATEWAY_KEY),
        format!(
            "/bootstrap/{}/{}",
            paths::GATEWAY_DIR,
            paths::GATEWAY_CLIENT_CA
        ),
        format!(
            "/bootstrap/{}/{}",
            paths::PLATFORM_SYNC_DIR,
            files::SYNC_CONFIG
        ),
        format!("/bootstrap/{}", paths::ADMIN_TOKEN),
    ];
    let services = services();
    let identity = &services.iter().find(|(n, _)| n == "identity").unwrap().1;
    assert_eq!(
        environment(identity)["SR_IDENTITY__BOOTSTRAP__OUTPUT_DIR"],
        "/bootstrap"
    );
    let mut referenced = 0;
    for (name, svc) in &services {
        let mounts: Vec<String> = svc["volumes"]
            .as_sequence()
            .map(|v| v.iter().map(text).collect())
            .unwrap_or_default();
        for (key, value) in environment(svc) {
            if !value.starts_with("/bootstrap") || key == "SR_IDENTITY__BOOTSTRAP__OUTPUT_DIR" {
                continue;
            }
            assert!(
                written.contains(&value),
                "{name}: {key}={value} is not a file identity writes"
            );
            assert!(
                mounts.iter().any(|m| m.starts_with("bootstrap:/bootstrap")),
                "{name} does not mount the bootstrap volume"
            );
            referenced += 1;
        }
    }
    assert!(
        referenced >= 4,
        "gateway TLS files and the platform sync bundle are referenced"
    );
}

#[test]
fn ports_health_checks_and_addresses_agree_with_the_configuration() {
    let services = services();
    let by_name: BTreeMap<&str, &Value> = services.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, svc) in &services {
        let env = environment(svc);
        let listen = env
            .iter()
            .find(|(k, _)| k.ends_with("__HTTP__LISTEN"))
            .map(|(_, v)| v.clone());
        if let Some(listen) = listen {
            let port = listen.rsplit(':').next().unwrap();
            let check = svc["healthcheck"]["test"]
                .as_sequence()
                .map(|t| t.iter().map(text).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            assert!(
                check.contains(&format!("localhost:{port}/")),
                "{name}: health check {check:?} does not probe port {port}"
            );
        }
        for dep in svc["depends_on"]
            .as_mapping()
            .map(|m| m.keys().map(text).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(
                by_name.contains_key(dep.as_str()),
                "{name} depends on unknown service {dep}"
            );
        }
    }
    let identity = environment(by_name["identity"]);
    let gateway = environment(by_name["gateway"]);
    let grpc_port = gateway["SR_GATEWAY__GRPC__LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        identity["SR_IDENTITY__BOOTSTRAP__GATEWAY_ADDRESS"],
        format!("gateway:{grpc_port}")
    );
    let published: Vec<String> = by_name["gateway"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert!(
        published.contains(&format!("{grpc_port}:{grpc_port}")),
        "gateway port not published: {published:?}"
    );
    // The gateway certificate must name the host sync services dial.
    let server_name = &identity["SR_IDENTITY__BOOTSTRAP__GATEWAY_SERVER_NAME"];
    assert!(
        sr_identity::Config::default()
            .bootstrap
            .gateway_dns_names
            .contains(server_name),
        "{server_name} not in the certificate"
    );
}

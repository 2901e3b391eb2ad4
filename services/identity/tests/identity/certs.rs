use chrono::Utc;
use reqwest::StatusCode;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;

use crate::common::Env;

fn pems(text: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(text.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn cn(c: &X509Certificate<'_>) -> String {
    c.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn uris(c: &X509Certificate<'_>) -> Vec<String> {
    c.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| {
                    if let GeneralName::URI(u) = g {
                        Some((*u).to_owned())
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn eku(c: &X509Certificate<'_>) -> (bool, bool) {
    for ext in c.extensions() {
        if let ParsedExtension::ExtendedKeyUsage(e) = ext.parsed_extension() {
            return (e.client_auth, e.server_auth);
        }
    }
    (false, false)
}

#[tokio::test]
async fn platform_sync_certificate_has_the_contract_cn_spiffe_and_chain() {
    let env = Env::new();
    let app = env.start().await;
    let chain = pems(&std::fs::read_to_string(env.out("platform-sync/cert.pem")).unwrap());
    let root = pems(&std::fs::read_to_string(env.out("platform-sync/ca.pem")).unwrap());
    assert_eq!(chain.len(), 2, "leaf followed by the platform tenant CA");
    let (leaf, platform_ca, root) = (parse(&chain[0]), parse(&chain[1]), parse(&root[0]));
    assert_eq!(cn(&leaf), "platform-sync.platform.platform.serviceradar");
    assert_eq!(
        uris(&leaf),
        vec!["spiffe://serviceradar.local/sync/platform/platform/platform-sync"]
    );
    assert!(!leaf.is_ca());
    assert_eq!(eku(&leaf), (true, false));
    assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(platform_ca.is_ca() && root.is_ca());
    leaf.verify_signature(Some(platform_ca.public_key()))
        .unwrap();
    platform_ca
        .verify_signature(Some(root.public_key()))
        .unwrap();
    root.verify_signature(None).unwrap();
    assert!(leaf.validity().is_valid());

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.out("platform-sync/sync.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["component_id"], "platform-sync");
    assert_eq!(cfg["gateway_server_name"], "localhost");
    assert_eq!(cfg["cert_file"], "cert.pem");
    assert!(
        cfg.get("sources").is_none() && cfg.get("tenant_id").is_none(),
        "no integrations, no tenant: {cfg}"
    );

    let gw = pems(&std::fs::read_to_string(env.out("gateway/server.pem")).unwrap());
    let gw_leaf = parse(&gw[0]);
    assert_eq!(cn(&gw_leaf), "gateway.platform.platform.serviceradar");
    assert_eq!(eku(&gw_leaf), (false, true));
    gw_leaf
        .verify_signature(Some(platform_ca.public_key()))
        .unwrap();
    let names = gw_leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .clone();
    assert!(
        names
            .iter()
            .any(|g| matches!(g, GeneralName::DNSName("localhost")))
    );
    assert!(
        names
            .iter()
            .any(|g| matches!(g, GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1]))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env.out("platform-sync/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private key must not be readable by others"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn platform_sync_certificate_is_reissued_when_it_expires() {
    let env = Env::new();
    env.start().await.stop().await;
    let before = std::fs::read_to_string(env.out("platform-sync/cert.pem")).unwrap();
    env.clock.advance(chrono::Duration::days(366));
    let app = env.start().await;
    let after = std::fs::read_to_string(env.out("platform-sync/cert.pem")).unwrap();
    assert_ne!(before, after);
    let chain = pems(&after);
    let leaf = parse(&chain[0]);
    assert_eq!(
        cn(&leaf),
        "platform-sync.platform.platform.serviceradar",
        "same stable component id"
    );
    assert!(
        leaf.validity().not_after.timestamp()
            > (Utc::now() + chrono::Duration::days(366)).timestamp()
    );
    app.stop().await;
}

#[tokio::test]
async fn edge_bundle_chains_to_its_tenant_ca_and_not_to_another_tenants() {
    let env = Env::new();
    let app = env.start().await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    let onboarded = app.edge_sync("acme", "edge-1").await;
    assert_eq!(onboarded["service_type"], "on_prem");
    assert_eq!(onboarded["status"], "offline");
    let bundle = &onboarded["bundle"];
    assert!(
        bundle["private_key_pem"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let chain = pems(bundle["certificate_pem"].as_str().unwrap());
    let (leaf, acme_ca) = (parse(&chain[0]), parse(&chain[1]));
    assert_eq!(cn(&leaf), "edge-1.default.acme.serviceradar");
    assert!(
        uris(&leaf).is_empty(),
        "edge certificates carry no SPIFFE SAN"
    );
    assert!(!leaf.is_ca());
    leaf.verify_signature(Some(acme_ca.public_key())).unwrap();
    let root = pems(bundle["ca_pem"].as_str().unwrap());
    acme_ca
        .verify_signature(Some(parse(&root[0]).public_key()))
        .unwrap();

    let globex_ca_pem: String = sqlx::query_scalar(
        "SELECT c.cert_pem FROM certificate_authorities c JOIN tenants t ON t.id = c.tenant_id WHERE t.slug = 'globex'",
    )
    .fetch_one(&env.db.pool().await)
    .await
    .unwrap();
    let globex = pems(&globex_ca_pem);
    assert!(
        leaf.verify_signature(Some(parse(&globex[0]).public_key()))
            .is_err()
    );
    assert_eq!(bundle["config"]["component_id"], "edge-1");
    assert!(bundle["config"].get("tenant_id").is_none());

    // The same component id again is a conflict.
    let (s, b) = app
        .post(
            "/api/v1/tenants/acme/sync-services",
            serde_json::json!({ "name": "again", "component_id": "edge-1" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn agent_enrollment_issues_a_bundle_and_refuses_duplicates_and_bad_names() {
    let env = Env::new();
    let app = env.start().await;
    app.tenant("acme").await;
    let (s, b) = app
        .post(
            "/api/v1/tenants/acme/agents",
            serde_json::json!({ "component_id": "agent-7", "partition": "lab" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let chain = pems(b["bundle"]["certificate_pem"].as_str().unwrap());
    assert_eq!(cn(&parse(&chain[0])), "agent-7.lab.acme.serviceradar");
    let (s, _) = app
        .post(
            "/api/v1/tenants/acme/agents",
            serde_json::json!({ "component_id": "agent-7" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = app
        .post(
            "/api/v1/tenants/acme/agents",
            serde_json::json!({ "component_id": "bad.name" }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/tenants/platform/agents",
            serde_json::json!({ "component_id": "a" }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    app.stop().await;
}

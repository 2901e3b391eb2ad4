use chrono::{Duration as Days, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sr_pki::{CertAuthority, ComponentName, ComponentType, LeafSpec, LeafUsage};
use sr_proto::{AgentConfigRequest, AgentHelloRequest, GatewayServiceStatus, GatewayStatusRequest};
use tonic::Code;

use crate::common::{Creds, Stack};

fn hello(agent_id: &str) -> AgentHelloRequest {
    AgentHelloRequest {
        agent_id: agent_id.into(),
        capabilities: vec!["sync".into()],
        version: "test".into(),
        ..Default::default()
    }
}

async fn tenant_ca(stack: &Stack, tenant: sr_core::TenantId) -> CertAuthority {
    let mut conn = stack.identity.pool.acquire().await.unwrap();
    sr_identity::ca::tenant(&mut conn, &stack.identity.sealer, tenant.as_uuid())
        .await
        .unwrap()
}

/// A client certificate made by hand (so it can break the rules sr-pki enforces).
fn forged(ca: &CertAuthority, cn: &str) -> Creds {
    let issuer =
        Issuer::from_ca_cert_pem(ca.cert_pem(), KeyPair::from_pem(ca.key_pem()).unwrap()).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    Creds {
        cert: format!("{}{}", cert.pem(), ca.cert_pem()),
        key: key.serialize_pem(),
    }
}

fn issued(
    ca: &CertAuthority,
    name: ComponentName,
    not_before: chrono::DateTime<Utc>,
    days: u32,
) -> Creds {
    let mut spec = LeafSpec::new(name, LeafUsage::Client, not_before);
    spec.validity_days = days;
    let c = ca.issue_leaf(&spec).unwrap();
    Creds {
        cert: format!("{}{}", c.cert_pem, ca.cert_pem()),
        key: c.key_pem,
    }
}

/// The call fails: at the handshake (connect or first RPC) or with `code`.
async fn refused(
    stack: &Stack,
    creds: Option<&Creds>,
    agent_id: &str,
    code: Option<Code>,
    needle: &str,
) {
    let mut client = match stack.connect(creds).await {
        Ok(c) => c,
        Err(e) => {
            // Only a TLS-level refusal may stop the connection itself.
            assert!(
                code.is_none(),
                "connection failed before the gateway could answer with {code:?}: {e}"
            );
            return;
        }
    };
    let err = client
        .hello(hello(agent_id))
        .await
        .expect_err("the call must be refused");
    if let Some(code) = code {
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
}

#[tokio::test]
async fn edge_sync_hello_is_accepted_with_the_tenant_from_its_certificate() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge-1").await;
    let mut client = stack.client(&creds).await;
    let r = client.hello(hello("edge-1")).await.unwrap().into_inner();
    assert!(r.accepted);
    assert_eq!(
        (r.tenant_id, r.tenant_slug.as_str(), r.agent_id.as_str()),
        (acme.to_string(), "acme", "edge-1")
    );
    assert_eq!(r.heartbeat_interval_sec, 30);
    assert!(r.config_outdated, "no config version sent yet");
    assert!((r.server_time - Utc::now().timestamp()).abs() < 60);
    let syncs = stack
        .api(reqwest::Method::GET, "/tenants/acme/sync-services", None)
        .await;
    let edge = syncs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["component_id"] == "edge-1")
        .unwrap();
    assert_eq!(edge["status"], "online");
    assert!(
        edge["registered_at"].is_string(),
        "first Hello registers the on-prem sync"
    );
}

#[tokio::test]
async fn platform_sync_hello_is_accepted_as_the_platform() {
    let stack = Stack::start().await;
    let mut client = stack.client(&stack.platform_sync()).await;
    let r = client
        .hello(hello("platform-sync"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.accepted);
    assert_eq!(r.tenant_slug, "platform");
    assert_eq!(r.tenant_id, stack.identity.platform.tenant_id.to_string());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let stack = Stack::start().await;
    refused(&stack, None, "x", None, "").await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let now = Utc::now();
    let root = CertAuthority::generate_root("Evil Root", now, 30).unwrap();
    let ca = CertAuthority::generate_intermediate(&root, "acme", now, 30).unwrap();
    let creds = issued(
        &ca,
        ComponentName::new("edge-1", "default", "acme").unwrap(),
        now,
        10,
    );
    refused(&stack, Some(&creds), "edge-1", None, "").await;
}

#[tokio::test]
async fn a_certificate_of_tenant_a_claiming_tenant_b_is_refused() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    stack.tenant("globex").await;
    stack.edge_sync("globex", "edge-1").await;
    let creds = forged(
        &tenant_ca(&stack, acme).await,
        "edge-1.default.globex.serviceradar",
    );
    refused(
        &stack,
        Some(&creds),
        "edge-1",
        Some(Code::Unauthenticated),
        "not issued by the CA of tenant globex",
    )
    .await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_leaves_are_refused() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    stack.edge_sync("acme", "edge-1").await;
    let ca = tenant_ca(&stack, acme).await;
    let name = || ComponentName::new("edge-1", "default", "acme").unwrap();
    let expired = issued(&ca, name(), Utc::now() - Days::days(30), 1);
    refused(&stack, Some(&expired), "edge-1", None, "").await;
    let future = issued(&ca, name(), Utc::now() + Days::days(30), 10);
    refused(&stack, Some(&future), "edge-1", None, "").await;
    // The same CA still works for a valid leaf, so the refusals above were about validity.
    let valid = issued(&ca, name(), Utc::now() - Days::minutes(1), 10);
    let mut client = stack.client(&valid).await;
    assert!(
        client
            .hello(hello("edge-1"))
            .await
            .unwrap()
            .into_inner()
            .accepted
    );
}

#[tokio::test]
async fn a_ca_certificate_used_as_a_client_is_refused() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ca = tenant_ca(&stack, acme).await;
    let creds = Creds {
        cert: ca.cert_pem().to_owned(),
        key: ca.key_pem().to_owned(),
    };
    refused(&stack, Some(&creds), "x", None, "").await;
}

#[tokio::test]
async fn a_common_name_of_the_wrong_shape_is_refused() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let ca = tenant_ca(&stack, acme).await;
    for cn in [
        "edge-1.acme.serviceradar",
        "edge-1.default.acme.serviceradar.extra",
        "edge-1.default.acme.example",
        "edge-1..acme.serviceradar",
    ] {
        let creds = forged(&ca, cn);
        refused(
            &stack,
            Some(&creds),
            "edge-1",
            Some(Code::Unauthenticated),
            "invalid client certificate",
        )
        .await;
    }
}

#[tokio::test]
async fn an_unknown_tenant_slug_is_refused() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let creds = forged(
        &tenant_ca(&stack, acme).await,
        "edge-1.default.nosuch.serviceradar",
    );
    refused(
        &stack,
        Some(&creds),
        "edge-1",
        Some(Code::Unauthenticated),
        "unknown tenant",
    )
    .await;
}

#[tokio::test]
async fn an_agent_id_other_than_the_certificates_is_refused_logged_and_reported() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge-1").await;
    let mut client = stack.client(&creds).await;
    let err = client.hello(hello("someone-else")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("component_id mismatch"), "{err:?}");
    let err = client
        .get_config(AgentConfigRequest {
            agent_id: "someone-else".into(),
            config_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        stack
            .metrics()
            .await
            .contains("sr_gateway_refusals_total{rpc=\"Hello\",code=\"PermissionDenied\"} 1")
    );
    let client_nats = stack.nats.client().await;
    let s = stack.nats.config.subjects();
    let events =
        sr_testkit::eventually("refusal events", std::time::Duration::from_secs(10), || {
            let c = client_nats.clone();
            let (stream, subject) = (s.events_stream(), s.events(acme, "gateway"));
            async move {
                let m = sr_testkit::stream_messages(&c, &stream, &subject).await;
                (m.len() >= 2).then_some(m)
            }
        })
        .await;
    let e: sr_core::ocsf::OcsfEvent = serde_json::from_slice(&events[0].payload).unwrap();
    e.validate().unwrap();
    assert_eq!((e.class_uid, e.status_id), (3003, 2));
    assert!(
        e.message.contains("edge-1.default.acme.serviceradar")
            && e.message.contains("component_id mismatch"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_tenant_field_naming_another_tenant_is_refused() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let globex = stack.tenant("globex").await;
    let (creds, _) = stack.edge_sync("acme", "edge-1").await;
    let mut client = stack.client(&creds).await;
    let status = GatewayServiceStatus {
        service_type: "sync".into(),
        source: "status".into(),
        available: true,
        ..Default::default()
    };
    let req = GatewayStatusRequest {
        agent_id: "edge-1".into(),
        tenant_id: globex.to_string(),
        services: vec![status.clone()],
        ..Default::default()
    };
    let err = client.push_status(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "tenant_id mismatch");
    let req = GatewayStatusRequest {
        agent_id: "edge-1".into(),
        tenant_slug: "globex".into(),
        services: vec![status],
        ..Default::default()
    };
    let err = client.push_status(req).await.unwrap_err();
    assert_eq!(err.message(), "tenant_slug mismatch");
}

#[tokio::test]
async fn component_types_other_than_sync_and_agent_and_unenrolled_components_are_refused() {
    let stack = Stack::start().await;
    let platform = stack.identity.platform.clone();
    let platform_ca = tenant_ca(&stack, platform.tenant_id).await;
    let issuedc = sr_identity::ca::issue(
        &platform_ca,
        &sr_identity::ca::ComponentCert {
            component_id: "dire",
            partition: "platform",
            tenant_slug: "platform",
            spiffe: Some((&platform.trust_domain, ComponentType::Dire)),
            usage: LeafUsage::Client,
            dns_names: vec![],
            ip_addresses: vec![],
            validity_days: 10,
        },
        Utc::now(),
    )
    .unwrap();
    let creds = Creds {
        cert: issuedc.chain_pem,
        key: issuedc.key_pem,
    };
    refused(
        &stack,
        Some(&creds),
        "dire",
        Some(Code::PermissionDenied),
        "component type dire may not call the gateway",
    )
    .await;

    let acme = stack.tenant("acme").await;
    let stranger = issued(
        &tenant_ca(&stack, acme).await,
        ComponentName::new("stranger", "default", "acme").unwrap(),
        Utc::now(),
        10,
    );
    refused(
        &stack,
        Some(&stranger),
        "stranger",
        Some(Code::PermissionDenied),
        "not enrolled",
    )
    .await;
}

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sr_core::TenantId;
use sr_core::rpc::{
    CallerIdentity, ComponentInfo, ComponentLookupRequest, HeartbeatOrigin, HeartbeatReply,
    HeartbeatRequest, IdentityKind, PlatformAssignment, PlatformAssignmentRequest, RpcErrorCode,
    SourceStatusReport, SyncConfigReply, SyncConfigRequest, TenantInfo, TenantLookupRequest,
};
use sr_core::subjects::identity_ops;
use sr_runtime::rpc::{CallError, call};

use crate::common::{Env, TestApp, armis_source};

const T: Duration = Duration::from_secs(5);

async fn rpc<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    env: &Env,
    op: &str,
    req: &Req,
) -> Result<Resp, CallError> {
    let client = env.nats.client().await;
    call(&client, env.nats.config.subjects().identity_rpc(op), req, T).await
}

fn caller(kind: IdentityKind, tenant: &str, slug: &str, component: &str) -> CallerIdentity {
    CallerIdentity {
        kind,
        tenant_id: tenant.parse().unwrap(),
        tenant_slug: slug.to_owned(),
        component_id: component.to_owned(),
        partition: "default".to_owned(),
    }
}

async fn platform_caller(app: &TestApp) -> CallerIdentity {
    let (_, p) = app.get("/api/v1/platform").await;
    let mut c = caller(
        IdentityKind::Platform,
        p["platform_tenant_id"].as_str().unwrap(),
        "platform",
        "platform-sync",
    );
    "platform".clone_into(&mut c.partition);
    c
}

#[tokio::test]
async fn sync_config_is_scoped_to_the_tenant_or_the_platform_sync() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let platform_sync = app.platform_sync_id("acme").await;
    let edge = app.edge_sync("acme", "acme-edge").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let src = "/api/v1/tenants/acme/integration-sources";
    assert_eq!(
        app.post(src, armis_source("on-edge", &edge)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post(src, armis_source("on-platform", &platform_sync))
            .await
            .0,
        StatusCode::CREATED
    );
    let mut disabled = armis_source("disabled", &platform_sync);
    disabled["enabled"] = json!(false);
    assert_eq!(app.post(src, disabled).await.0, StatusCode::CREATED);
    assert_eq!(
        app.post(
            "/api/v1/tenants/globex/integration-sources",
            armis_source("gx", &platform_sync)
        )
        .await
        .0,
        StatusCode::CREATED
    );

    let edge_caller = caller(IdentityKind::Tenant, &acme, "acme", "acme-edge");
    let reply: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: edge_caller.clone(),
            current_version: String::new(),
        },
    )
    .await
    .unwrap();
    let sources = reply.config_json["sources"].as_object().unwrap();
    assert_eq!(sources.keys().collect::<Vec<_>>(), vec!["on-edge"]);
    assert_eq!(reply.config_json["scope"], "tenant");
    assert_eq!(
        sources["on-edge"]["credentials"]["secret_key"], "super-secret-value-123",
        "decrypted only here"
    );
    assert_eq!(sources["on-edge"]["tenant_slug"], "acme");
    assert_eq!(sources["on-edge"]["discovery_interval"], "2h");
    assert_eq!(reply.heartbeat_interval_sec, 30);
    assert_eq!(reply.config_poll_interval_sec, 300);
    assert_eq!(reply.config_version.len(), 64);

    let pc = platform_caller(&app).await;
    let reply: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: pc.clone(),
            current_version: String::new(),
        },
    )
    .await
    .unwrap();
    let keys: Vec<String> = reply.config_json["sources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, vec!["acme/on-platform", "globex/gx"]);
    assert_eq!(reply.config_json["scope"], "platform");
    assert_eq!(
        reply.config_json["sources"]["globex/gx"]["tenant_id"],
        globex.as_str()
    );

    // Stable version, not_modified round trip, and a change moves the version.
    let again: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: pc.clone(),
            current_version: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(again.config_version, reply.config_version);
    let nm: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: pc.clone(),
            current_version: reply.config_version.clone(),
        },
    )
    .await
    .unwrap();
    assert!(nm.not_modified);
    assert!(nm.config_json.is_null());
    let (_, gx_list) = app.get("/api/v1/tenants/globex/integration-sources").await;
    let gx_id = gx_list[0]["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/tenants/globex/integration-sources/{gx_id}"),
        json!({ "enabled": false }),
    )
    .await;
    let changed: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: pc,
            current_version: reply.config_version.clone(),
        },
    )
    .await
    .unwrap();
    assert!(!changed.not_modified);
    assert_ne!(changed.config_version, reply.config_version);
    assert_eq!(
        changed.config_json["sources"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["acme/on-platform"]
    );

    // A tenant identity cannot read another tenant's sync, and unknown syncs get NotFound.
    let spoof = caller(IdentityKind::Tenant, &globex, "globex", "acme-edge");
    let err = rpc::<_, SyncConfigReply>(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: spoof,
            current_version: String::new(),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CallError::Remote(ref e) if e.code == RpcErrorCode::NotFound),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn removing_every_source_yields_an_empty_source_map() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let edge = app.edge_sync("acme", "e1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, s) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("a", &edge),
        )
        .await;
    app.delete(&format!(
        "/api/v1/tenants/acme/integration-sources/{}",
        s["id"].as_str().unwrap()
    ))
    .await;
    let reply: SyncConfigReply = rpc(
        &env,
        identity_ops::SYNC_CONFIG,
        &SyncConfigRequest {
            caller: caller(IdentityKind::Tenant, &acme, "acme", "e1"),
            current_version: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.config_json["sources"], json!({}));
    app.stop().await;
}

fn heartbeat(c: &CallerIdentity, origin: HeartbeatOrigin, available: bool) -> HeartbeatRequest {
    HeartbeatRequest {
        caller: c.clone(),
        origin,
        available,
        capabilities: vec!["sync".into()],
        version: "1.0.0".into(),
    }
}

async fn sync_status(app: &TestApp, slug: &str, component: &str) -> Value {
    let (_, list) = app
        .get(&format!("/api/v1/tenants/{slug}/sync-services"))
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["component_id"] == component)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn sync_status_goes_online_degraded_and_offline_after_120_seconds() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    app.edge_sync("acme", "edge").await;
    let c = caller(IdentityKind::Tenant, &acme, "acme", "edge");
    assert_eq!(
        sync_status(&app, "acme", "edge").await["registered_at"],
        Value::Null
    );

    let r: HeartbeatReply = rpc(
        &env,
        identity_ops::HEARTBEAT,
        &heartbeat(&c, HeartbeatOrigin::Hello, true),
    )
    .await
    .unwrap();
    assert_eq!((r.known, r.status.as_deref()), (true, Some("online")));
    let s = sync_status(&app, "acme", "edge").await;
    assert_eq!(s["status"], "online");
    assert!(
        s["registered_at"].is_string(),
        "first Hello registers the on-prem sync: {s}"
    );
    assert!(s["last_heartbeat_at"].is_string());

    let r: HeartbeatReply = rpc(
        &env,
        identity_ops::HEARTBEAT,
        &heartbeat(&c, HeartbeatOrigin::Status, false),
    )
    .await
    .unwrap();
    assert_eq!(r.status.as_deref(), Some("degraded"));
    assert_eq!(
        sync_status(&app, "acme", "edge").await["status"],
        "degraded"
    );

    env.clock.advance(chrono::Duration::seconds(119));
    assert_eq!(app.control.mark_stale_offline().await.unwrap(), 0);
    assert_eq!(
        sync_status(&app, "acme", "edge").await["status"],
        "degraded"
    );
    env.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(app.control.mark_stale_offline().await.unwrap(), 1);
    assert_eq!(sync_status(&app, "acme", "edge").await["status"], "offline");
    assert_eq!(
        app.control.mark_stale_offline().await.unwrap(),
        0,
        "no second change"
    );

    let r: HeartbeatReply = rpc(
        &env,
        identity_ops::HEARTBEAT,
        &heartbeat(&c, HeartbeatOrigin::Status, true),
    )
    .await
    .unwrap();
    assert_eq!(r.status.as_deref(), Some("online"));

    // The platform sync heartbeats the same way, and unknown components are reported unknown.
    let pc = platform_caller(&app).await;
    let r: HeartbeatReply = rpc(
        &env,
        identity_ops::HEARTBEAT,
        &heartbeat(&pc, HeartbeatOrigin::Hello, true),
    )
    .await
    .unwrap();
    assert!(r.known);
    assert_eq!(
        sync_status(&app, "acme", "platform-sync").await["status"],
        "online"
    );
    let nobody = caller(IdentityKind::Tenant, &acme, "acme", "ghost");
    let r: HeartbeatReply = rpc(
        &env,
        identity_ops::HEARTBEAT,
        &heartbeat(&nobody, HeartbeatOrigin::Hello, true),
    )
    .await
    .unwrap();
    assert!(!r.known);

    // Every status change produced an event for the tenant.
    let events = tenant_events(&env, &acme, 4).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["unmapped"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "onboard",
            "status_online",
            "status_degraded",
            "status_offline",
            "status_online"
        ]
    );
    app.stop().await;
}

async fn tenant_events(env: &Env, tenant: &str, at_least: usize) -> Vec<Value> {
    let client = env.nats.client().await;
    let subjects = env.nats.config.subjects();
    let filter = format!("{}.events.{tenant}.>", subjects.prefix());
    sr_testkit::eventually("events on the stream", Duration::from_secs(10), || {
        let client = client.clone();
        let stream = subjects.events_stream();
        let filter = filter.clone();
        async move {
            let msgs = sr_testkit::stream_messages(&client, &stream, &filter).await;
            (msgs.len() > at_least).then(|| {
                msgs.iter()
                    .map(|m| serde_json::from_slice(&m.payload).unwrap())
                    .collect()
            })
        }
    })
    .await
}

#[tokio::test]
async fn each_source_lifecycle_change_publishes_one_ocsf_event() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let sync = app.platform_sync_id("acme").await;
    let (_, s) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis", &sync),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/api/v1/tenants/acme/integration-sources/{id}");
    app.patch(&path, json!({ "page_size": 250 })).await;
    app.patch(&path, json!({ "enabled": false })).await;
    app.patch(&path, json!({ "enabled": true })).await;
    app.patch(&path, json!({ "page_size": 250 })).await; // no change, no event
    app.delete(&path).await;

    let events = tenant_events(&env, &acme, 4).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    let got: Vec<(i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e["activity_id"].as_i64().unwrap(),
                e["unmapped"]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "create"),
            (3, "update"),
            (3, "disabled"),
            (3, "enabled"),
            (4, "delete")
        ]
    );
    for e in &events {
        let parsed: sr_core::ocsf::OcsfEvent = serde_json::from_value(e.clone()).unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.class_uid, 1008);
        assert_eq!(parsed.type_uid, 100_800 + i64::from(parsed.activity_id));
        assert_eq!(parsed.tenant_id, acme.parse::<TenantId>().unwrap());
        assert_eq!(
            parsed.metadata.correlation_uid.as_deref(),
            Some(format!("integration_source:{id}").as_str())
        );
        assert_eq!(parsed.metadata.version, "1.7.0");
        assert!(
            parsed
                .observables
                .iter()
                .any(|o| o.name == "resource.uid" && o.value == id)
        );
        assert!(!e.to_string().contains("super-secret"));
    }
    assert_eq!(events[0]["message"], "Integration source 'armis' created");
    assert_eq!(events[4]["message"], "Integration source 'armis' deleted");
    let uids: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids.len(), 5, "unique event ids");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
            .fetch_one(&env.db.pool().await)
            .await
            .unwrap();
    assert_eq!(pending, 0);
    app.stop().await;
}

#[tokio::test]
async fn events_committed_while_nats_is_unreachable_are_published_later() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let sync = app.platform_sync_id("acme").await;
    // Take the events stream away so publishing fails, then create a source.
    let js = async_nats::jetstream::new(env.nats.client().await);
    js.delete_stream(env.nats.config.subjects().events_stream())
        .await
        .unwrap();
    let (s, _) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis", &sync),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the change is accepted even though the event cannot go out yet"
    );
    let pool = env.db.pool().await;
    sr_testkit::eventually(
        "publish attempt fails and the event stays pending",
        Duration::from_secs(10),
        || {
            let control = app.control.clone();
            async move { (control.metrics.publish_failures.get() > 0).then_some(()) }
        },
    )
    .await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 1);
    sr_runtime::jetstream::ensure_stream(
        &js,
        &env.nats.config,
        sr_runtime::jetstream::StreamKind::Events,
    )
    .await
    .unwrap();
    let events = tenant_events(&env, &acme, 0).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["activity_id"], 1);
    app.stop().await;
}

#[tokio::test]
async fn gateway_lookups_answer_tenant_component_and_assignment_questions() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let onboarded = app.edge_sync("acme", "edge").await;
    app.post(
        "/api/v1/tenants/acme/agents",
        json!({ "component_id": "agent-1" }),
    )
    .await;

    let info: TenantInfo = rpc(
        &env,
        identity_ops::TENANT_LOOKUP,
        &TenantLookupRequest {
            slug: "acme".into(),
            tenant_id: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(info.tenant_id.to_string(), acme);
    assert!(!info.is_platform);
    // The key id is what leaves of this tenant carry as authority key id.
    let chain = onboarded["bundle"]["certificate_pem"].as_str().unwrap();
    let der = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .contents;
    let peer = sr_pki::PeerCertificate::from_der(&der).unwrap();
    assert_eq!(hex::encode(peer.authority_key_id.unwrap()), info.ca_key_id);
    let by_id: TenantInfo = rpc(
        &env,
        identity_ops::TENANT_LOOKUP,
        &TenantLookupRequest {
            slug: String::new(),
            tenant_id: Some(info.tenant_id),
        },
    )
    .await
    .unwrap();
    assert_eq!(by_id, info);
    let platform: TenantInfo = rpc(
        &env,
        identity_ops::TENANT_LOOKUP,
        &TenantLookupRequest {
            slug: "platform".into(),
            tenant_id: None,
        },
    )
    .await
    .unwrap();
    assert!(platform.is_platform);
    let err = rpc::<_, TenantInfo>(
        &env,
        identity_ops::TENANT_LOOKUP,
        &TenantLookupRequest {
            slug: "nope".into(),
            tenant_id: None,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CallError::Remote(ref e) if e.code == RpcErrorCode::NotFound),
        "{err}"
    );

    let tenant: TenantId = acme.parse().unwrap();
    for (component, want) in [
        ("edge", Some("sync")),
        ("agent-1", Some("agent")),
        ("ghost", None),
    ] {
        let c: ComponentInfo = rpc(
            &env,
            identity_ops::COMPONENT_LOOKUP,
            &ComponentLookupRequest {
                tenant_id: tenant,
                component_id: component.into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(c.component_type.as_deref(), want, "{component}");
    }
    let other: ComponentInfo = rpc(
        &env,
        identity_ops::COMPONENT_LOOKUP,
        &ComponentLookupRequest {
            tenant_id: globex.parse().unwrap(),
            component_id: "edge".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(other.component_type, None, "enrollment is per tenant");

    let ask = |t: &str| PlatformAssignmentRequest {
        sync_component_id: "platform-sync".into(),
        tenant_id: t.parse().unwrap(),
    };
    let a: PlatformAssignment = rpc(&env, identity_ops::PLATFORM_ASSIGNMENT, &ask(&acme))
        .await
        .unwrap();
    assert!(!a.assigned);
    let sync = app.platform_sync_id("acme").await;
    let (_, s) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("a", &sync),
        )
        .await;
    let a: PlatformAssignment = rpc(&env, identity_ops::PLATFORM_ASSIGNMENT, &ask(&acme))
        .await
        .unwrap();
    assert!(a.assigned);
    let a: PlatformAssignment = rpc(&env, identity_ops::PLATFORM_ASSIGNMENT, &ask(&globex))
        .await
        .unwrap();
    assert!(!a.assigned);
    app.patch(
        &format!(
            "/api/v1/tenants/acme/integration-sources/{}",
            s["id"].as_str().unwrap()
        ),
        json!({ "enabled": false }),
    )
    .await;
    let a: PlatformAssignment = rpc(&env, identity_ops::PLATFORM_ASSIGNMENT, &ask(&acme))
        .await
        .unwrap();
    assert!(!a.assigned, "only enabled sources count");
    app.stop().await;
}

#[tokio::test]
async fn source_run_outcomes_update_the_sources_sync_status() {
    let env = Env::new();
    let app = env.start().await;
    let acme = app.tenant("acme").await;
    let sync = app.platform_sync_id("acme").await;
    let (_, s) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("a", &sync),
        )
        .await;
    let id: uuid::Uuid = s["id"].as_str().unwrap().parse().unwrap();
    let pc = platform_caller(&app).await;
    let report = |success: bool, n: i64| SourceStatusReport {
        caller: pc.clone(),
        tenant_id: acme.parse().unwrap(),
        integration_source_id: id,
        success,
        device_count: n,
        error: (!success).then(|| "HTTP 503 from Armis".to_owned()),
        finished_at: chrono::Utc::now(),
    };
    let _: sr_core::rpc::Ack = rpc(&env, identity_ops::SOURCE_STATUS, &report(false, 0))
        .await
        .unwrap();
    let _: sr_core::rpc::Ack = rpc(&env, identity_ops::SOURCE_STATUS, &report(false, 0))
        .await
        .unwrap();
    let (_, v) = app
        .get(&format!("/api/v1/tenants/acme/integration-sources/{id}"))
        .await;
    assert_eq!(v["consecutive_failures"], 2);
    assert_eq!(v["last_sync_result"], "error: HTTP 503 from Armis");
    let _: sr_core::rpc::Ack = rpc(&env, identity_ops::SOURCE_STATUS, &report(true, 50_000))
        .await
        .unwrap();
    let (_, v) = app
        .get(&format!("/api/v1/tenants/acme/integration-sources/{id}"))
        .await;
    assert_eq!(
        (
            v["consecutive_failures"].as_i64(),
            v["last_device_count"].as_i64()
        ),
        (Some(0), Some(50_000))
    );
    assert_eq!(v["last_sync_result"], "success");

    // A long error with multi-byte characters is cut on a character boundary, not refused.
    let mut long = report(false, 0);
    // Byte 1024 falls inside an "é" (two bytes each, after one ASCII byte).
    long.error = Some(format!("x{}", "é".repeat(700)));
    let _: sr_core::rpc::Ack = rpc(&env, identity_ops::SOURCE_STATUS, &long).await.unwrap();
    let (_, v) = app
        .get(&format!("/api/v1/tenants/acme/integration-sources/{id}"))
        .await;
    let kept = v["last_sync_result"].as_str().unwrap();
    assert_eq!(kept, format!("error: x{}", "é".repeat(511)));

    // A sync the source is not assigned to cannot report for it.
    app.edge_sync("acme", "edge").await;
    let mut foreign = report(true, 1);
    foreign.caller = caller(IdentityKind::Tenant, &acme, "acme", "edge");
    let err = rpc::<_, sr_core::rpc::Ack>(&env, identity_ops::SOURCE_STATUS, &foreign)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Remote(ref e) if e.code == RpcErrorCode::NotFound),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_and_unknown_operations_get_precise_errors() {
    let env = Env::new();
    let app = env.start().await;
    let client = env.nats.client().await;
    let subjects = env.nats.config.subjects();
    let reply = client
        .request(
            subjects.identity_rpc(identity_ops::SYNC_CONFIG),
            "{not json".into(),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed request")
    );
    let reply = client
        .request(subjects.identity_rpc("explode"), "{}".into())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    app.stop().await;
}

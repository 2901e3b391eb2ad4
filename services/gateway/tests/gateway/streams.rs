use std::time::Duration;

use serde_json::{Value, json};
use sr_proto::GatewayStatusChunk;
use tonic::Code;

use crate::common::{Stack, chunk, chunks_for, device, wait_stream_len};

async fn push(
    client: &mut crate::common::Client,
    chunks: Vec<GatewayStatusChunk>,
    stream_id: Option<&str>,
) -> Result<bool, tonic::Status> {
    let mut req = tonic::Request::new(tokio_stream::iter(chunks));
    if let Some(id) = stream_id {
        req.metadata_mut()
            .insert("x-sr-stream-id", id.parse().unwrap());
    }
    client
        .stream_status(req)
        .await
        .map(|r| r.into_inner().received)
}

#[tokio::test]
async fn twenty_thousand_devices_in_many_chunks_arrive_exactly_and_under_max_payload() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    let devices: Vec<Value> = (0..20_000).map(device).collect();
    let chunks = chunks_for("edge", &devices, 64 * 1024, "");
    assert!(chunks.len() > 20);
    assert!(
        push(&mut client, chunks, Some("edge:armis:1"))
            .await
            .unwrap()
    );
    let msgs = stack.device_messages(acme).await;
    let max_payload = stack.nats.client().await.server_info().max_payload;
    assert!(msgs.len() > 1, "split into several batches");
    for m in &msgs {
        assert!(
            m.payload.len() <= max_payload,
            "{} > {max_payload}",
            m.payload.len()
        );
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("sr-tenant-id").unwrap().as_str(), acme.to_string());
        assert!(h.get("Nats-Msg-Id").is_some());
        assert_eq!(
            h.get("sr-source-identity").unwrap().as_str(),
            "edge.default.acme.serviceradar"
        );
    }
    assert_eq!(stack.devices(acme).await, devices);
}

#[tokio::test]
async fn an_empty_result_succeeds_and_publishes_nothing() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    assert!(
        push(&mut client, vec![chunk("edge", 0, 1, b"[]", "")], None)
            .await
            .unwrap()
    );
    assert_eq!(stack.stream_len().await, 0);
}

#[tokio::test]
async fn every_stream_rule_violation_fails_and_publishes_nothing() {
    let stack = Stack::start_with(|c| c.limits.max_stream_bytes = 64 * 1024).await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    let good = |i: i32, total: i32| {
        chunk(
            "edge",
            i,
            total,
            br#"[{"ip":"10.0.0.1","source":"armis","timestamp":"2026-01-01T00:00:00Z"}]"#,
            "",
        )
    };
    let mut not_final = good(2, 3);
    not_final.is_final = false;
    let mut changed_total = good(1, 3);
    changed_total.total_chunks = 4;
    let mut early_final = good(0, 3);
    early_final.is_final = true;
    let mut other_agent = good(1, 3);
    other_agent.agent_id = "other".into();
    let big = format!("[\"{}\"]", "x".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<GatewayStatusChunk>, Code, &str)> = vec![
        (
            "gap",
            vec![good(0, 3), good(2, 3)],
            Code::InvalidArgument,
            "gap",
        ),
        (
            "duplicate",
            vec![good(0, 3), good(0, 3)],
            Code::InvalidArgument,
            "repeated",
        ),
        (
            "missing final",
            vec![good(0, 3), good(1, 3)],
            Code::InvalidArgument,
            "without the final chunk",
        ),
        (
            "last not final",
            vec![good(0, 3), good(1, 3), not_final],
            Code::InvalidArgument,
            "final",
        ),
        (
            "changed totals",
            vec![good(0, 3), changed_total],
            Code::InvalidArgument,
            "total_chunks changed",
        ),
        (
            "final too early",
            vec![early_final],
            Code::InvalidArgument,
            "final",
        ),
        (
            "invalid json",
            vec![good(0, 2), chunk("edge", 1, 2, b"[{\"ip\":", "")],
            Code::InvalidArgument,
            "JSON",
        ),
        (
            "not an array",
            vec![chunk("edge", 0, 1, br#"{"ip":"10.0.0.1"}"#, "")],
            Code::InvalidArgument,
            "must be a JSON array",
        ),
        (
            "zero totals",
            vec![chunk("edge", 0, 0, b"[]", "")],
            Code::InvalidArgument,
            "total_chunks",
        ),
        ("no chunks", vec![], Code::InvalidArgument, ""),
        (
            "oversize",
            vec![chunk("edge", 0, 1, big.as_bytes(), "")],
            Code::ResourceExhausted,
            "exceeds the limit",
        ),
        (
            "agent changes",
            vec![good(0, 3), other_agent],
            Code::PermissionDenied,
            "component_id mismatch",
        ),
    ];
    for (what, chunks, code, needle) in cases {
        let err = push(&mut client, chunks, None).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(needle), "{what}: {err:?}");
    }
    assert_eq!(
        stack.stream_len().await,
        0,
        "no failed stream published anything"
    );
    // A correct stream afterwards goes through.
    assert!(
        push(&mut client, vec![good(0, 2), good(1, 2)], None)
            .await
            .unwrap()
    );
    assert_eq!(stack.devices(acme).await.len(), 2);
}

#[tokio::test]
async fn the_same_stream_sent_twice_is_stored_once() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    let devices: Vec<Value> = (0..3_000).map(device).collect();
    // With a client stream id (our sync) and without one (a reference client).
    for id in [Some("edge:armis:run-7"), None] {
        let before = stack.stream_len().await;
        assert!(
            push(&mut client, chunks_for("edge", &devices, 32 * 1024, ""), id)
                .await
                .unwrap()
        );
        let once = stack.stream_len().await;
        assert!(once > before);
        assert!(
            push(&mut client, chunks_for("edge", &devices, 32 * 1024, ""), id)
                .await
                .unwrap()
        );
        // Re-chunked differently, the content (and so the fallback id) is the same.
        assert!(
            push(&mut client, chunks_for("edge", &devices, 48 * 1024, ""), id)
                .await
                .unwrap()
        );
        assert_eq!(
            stack.stream_len().await,
            once,
            "retry was de-duplicated ({id:?})"
        );
    }
    assert_eq!(stack.devices(acme).await.len(), 6_000);
}

#[tokio::test]
async fn a_stream_cancelled_half_way_publishes_nothing() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<GatewayStatusChunk>(4);
    let mut c2 = client.clone();
    let call = tokio::spawn(async move {
        c2.stream_status(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let chunks = chunks_for("edge", &(0..100).map(device).collect::<Vec<_>>(), 1024, "");
    for c in chunks.iter().take(3).cloned() {
        tx.send(c).await.unwrap();
    }
    // Wait until the gateway has seen the stream, then abandon the call.
    sr_testkit::eventually(
        "stream reached the gateway",
        Duration::from_secs(10),
        || async {
            stack
                .metrics()
                .await
                .contains("sr_gateway_active_streams 1")
                .then_some(())
        },
    )
    .await;
    call.abort();
    drop(tx);
    sr_testkit::eventually(
        "stream ended at the gateway",
        Duration::from_secs(10),
        || async {
            stack
                .metrics()
                .await
                .contains("sr_gateway_active_streams 0")
                .then_some(())
        },
    )
    .await;
    // A later stream lands; nothing of the cancelled one precedes it.
    assert!(
        push(
            &mut client,
            vec![chunk(
                "edge",
                0,
                1,
                br#"[{"ip":"10.9.9.9","source":"armis","timestamp":"2026-01-01T00:00:00Z"}]"#,
                ""
            )],
            None
        )
        .await
        .unwrap()
    );
    let devices = stack.devices(acme).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["ip"], "10.9.9.9");
}

#[tokio::test]
async fn an_idle_stream_is_dropped_without_publishing() {
    let stack = Stack::start_with(|c| c.grpc.idle_stream_timeout_secs = 1).await;
    stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<GatewayStatusChunk>(4);
    tx.send(chunk("edge", 0, 2, b"[1]", "")).await.unwrap();
    let err = client
        .stream_status(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    drop(tx);
    assert_eq!(stack.stream_len().await, 0);
}

#[tokio::test]
async fn the_platform_sync_pushes_for_assigned_tenants_only() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let globex = stack.tenant("globex").await;
    let initech = stack.tenant("initech").await;
    let psync = stack.platform_sync_id("acme").await;
    stack.source("acme", "armis", &psync).await;
    stack.source("globex", "armis", &psync).await;
    let mut client = stack.client(&stack.platform_sync()).await;
    let a: Vec<Value> = (0..10).map(device).collect();
    let g: Vec<Value> = (100..105).map(device).collect();
    assert!(
        push(
            &mut client,
            chunks_for("platform-sync", &a, 1 << 20, &acme.to_string()),
            None
        )
        .await
        .unwrap()
    );
    // By slug instead of id works too.
    let mut by_slug = chunks_for("platform-sync", &g, 1 << 20, "");
    by_slug[0].services[0].tenant_slug = "globex".into();
    assert!(push(&mut client, by_slug, None).await.unwrap());
    assert_eq!(stack.devices(acme).await, a);
    assert_eq!(stack.devices(globex).await, g);

    let err = push(
        &mut client,
        chunks_for("platform-sync", &a, 1 << 20, &initech.to_string()),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("no enabled source assigned"),
        "{err:?}"
    );
    let err = push(
        &mut client,
        chunks_for("platform-sync", &a, 1 << 20, ""),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = push(
        &mut client,
        chunks_for("platform-sync", &a, 1 << 20, "not-a-uuid"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(stack.devices(initech).await.is_empty());

    // An edge sync can never push for another tenant, even by naming it.
    let (edge, _) = stack.edge_sync("globex", "gx-edge").await;
    let mut ec = stack.client(&edge).await;
    let err = push(
        &mut ec,
        chunks_for("gx-edge", &a, 1 << 20, &acme.to_string()),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "tenant_id mismatch");
    wait_stream_len(&stack, 2).await;
    let _ = json!({});
}

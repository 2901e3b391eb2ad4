use std::time::Duration;

use serde_json::Value;
use sr_runtime::telemetry::TelemetryConfig;
use sr_testkit::otlp::Collector;

use crate::common::{Stack, chunks_for, device};

// Multi-thread runtime: the exporter needs the reactor while the test flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_trace_continues_through_the_gateway_into_published_batches() {
    let collector = Collector::start().await;
    let cfg = TelemetryConfig {
        log: "info".into(),
        format: "text".into(),
        otlp_endpoint: collector.endpoint(),
    };
    let telemetry = sr_runtime::telemetry::init("sr-gateway", &cfg)
        .expect("the only subscriber in this process");
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "edge").await;
    let mut client = stack.client(&creds).await;

    let (trace_id, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let devices: Vec<Value> = (0..10).map(device).collect();
    let mut req = tonic::Request::new(tokio_stream::iter(chunks_for(
        "edge",
        &devices,
        1 << 20,
        "",
    )));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    assert!(
        client
            .stream_status(req)
            .await
            .unwrap()
            .into_inner()
            .received
    );

    let msgs = stack.device_messages(acme).await;
    let header = msgs[0]
        .headers
        .as_ref()
        .unwrap()
        .get("traceparent")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(header.starts_with(&format!("00-{trace_id}-")), "{header}");

    telemetry.flush();
    let spans = sr_testkit::eventually(
        "spans at the collector",
        Duration::from_secs(15),
        || async {
            telemetry.flush();
            let spans: Vec<_> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            (spans.iter().any(|s| s.name == "publish_batch")).then_some(spans)
        },
    )
    .await;
    let rpc = spans.iter().find(|s| s.name == "rpc").expect("rpc span");
    assert_eq!(
        rpc.parent_span_id, client_span,
        "the RPC span continues the client's span"
    );
    assert!(
        rpc.attributes
            .contains(&("rpc".into(), "StreamStatus".into()))
    );
    assert!(
        rpc.attributes
            .contains(&("tenant_id".into(), acme.to_string())),
        "{:?}",
        rpc.attributes
    );
    let publish = spans.iter().find(|s| s.name == "publish_batch").unwrap();
    assert_eq!(publish.parent_span_id, rpc.span_id);
    // The published message carries the publish span as parent for DIRE to continue.
    assert_eq!(header, format!("00-{trace_id}-{}-01", publish.span_id));
}

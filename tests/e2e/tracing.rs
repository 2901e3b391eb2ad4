//! One trace per pushed batch: the sync's run, the gateway's StreamStatus call and publish,
//! DIRE's reconciliation and sweepgen's projection of the change share one trace id, each
//! span naming the tenant and its batch. All services run in this process and export through
//! one global tracer provider to an in-test OTLP collector; spans are told apart by name.

use sr_runtime::telemetry::TelemetryConfig;
use sr_testkit::otlp::{Collector, ReceivedSpan};

use crate::common::{Pipeline, WAIT, armis_source, expected};

const DEVICES: u64 = 40;

fn attr<'a>(span: &'a ReceivedSpan, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

// Multi-thread runtime: the batch exporter needs the reactor while the test flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pushed_batch_is_one_trace_from_sync_through_gateway_and_dire_to_sweepgen() {
    let collector = Collector::start().await;
    let telemetry = sr_runtime::telemetry::init(
        "sr-e2e",
        &TelemetryConfig {
            log: "info".into(),
            format: "text".into(),
            otlp_endpoint: collector.endpoint(),
        },
    )
    .expect("the only subscriber in this process");

    let p = Pipeline::start().await;
    let faker = sr_faker::Faker::start(sr_faker::Config::local(DEVICES))
        .await
        .unwrap();
    let tenant = p.tenant("acme").await;
    let psync = p.platform_sync("acme").await;
    p.source(
        "acme",
        armis_source("faker", &faker.base_url(), psync, "agent-1"),
    )
    .await;
    let sync = p.sync(&p.platform_bootstrap()).await;
    p.wait_dire(tenant.id, &expected(&faker.handle())).await;
    sync.wait_runs("acme", "acme/faker", 1).await;

    let tenant_id = tenant.id.to_string();
    let names = [
        "sync.run",
        "rpc",
        "publish_batch",
        "dire.reconcile",
        "sweepgen.inventory_change",
    ];
    // The run's trace, once every service's span of it has arrived.
    let spans = sr_testkit::eventually("the run's spans at the collector", WAIT, || {
        telemetry.flush();
        let spans = collector.spans();
        let tenant_id = tenant_id.clone();
        async move {
            let run = spans
                .iter()
                .find(|s| s.name == "sync.run" && attr(s, "tenant_id") == Some(&tenant_id))?;
            let trace: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|s| s.trace_id == run.trace_id)
                .cloned()
                .collect();
            names
                .iter()
                .all(|n| trace.iter().any(|s| s.name == *n))
                .then_some(trace)
        }
    })
    .await;
    let one = |name: &str| -> &ReceivedSpan {
        let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in the trace: {spans:#?}");
        found[0]
    };

    let run = one("sync.run");
    assert_eq!(run.parent_span_id, "", "each run starts its own trace");
    assert_eq!(attr(run, "devices"), Some(DEVICES.to_string().as_str()));
    assert_eq!(attr(run, "source"), Some("acme/faker"));

    let rpcs: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "rpc" && attr(s, "rpc") == Some("StreamStatus"))
        .collect();
    assert_eq!(rpcs.len(), 1, "{spans:#?}");
    let rpc = rpcs[0];
    assert_eq!(
        rpc.parent_span_id, run.span_id,
        "the gateway continues the run"
    );

    let publish = one("publish_batch");
    assert_eq!(publish.parent_span_id, rpc.span_id);
    assert_eq!(attr(publish, "batch"), Some("0"));

    let reconcile = one("dire.reconcile");
    assert_eq!(
        reconcile.parent_span_id, publish.span_id,
        "DIRE continues it"
    );
    assert_eq!(
        attr(reconcile, "updates"),
        Some(DEVICES.to_string().as_str())
    );

    let project = one("sweepgen.inventory_change");
    assert_eq!(
        project.parent_span_id, reconcile.span_id,
        "sweepgen continues DIRE's change"
    );
    assert_eq!(attr(project, "devices"), Some(DEVICES.to_string().as_str()));

    // The call is the platform sync's: the gateway names the caller's tenant (from its
    // certificate) on the call and the source's tenant on every batch it publishes.
    let platform = p.control.platform.tenant_id.to_string();
    assert_eq!(attr(rpc, "tenant_id"), Some(platform.as_str()));
    assert_eq!(attr(rpc, "component_id"), Some("platform-sync"));
    for s in [run, publish, reconcile, project] {
        assert_eq!(
            attr(s, "tenant_id"),
            Some(tenant_id.as_str()),
            "{} names the tenant: {:?}",
            s.name,
            s.attributes
        );
    }

    sync.stop().await;
    p.stop().await;
    faker.stop().await.unwrap();
}

//! Every service is stopped and started again in the middle of a run, one at a time, while
//! the faker's devices move: the run completes with each device exactly once, at its
//! current IP, and the agent's sweep config exact.

use std::collections::BTreeSet;

use sr_agent::SweepFile;

use crate::common::{Onboarded, Pipeline, Service, expected, expected_targets, wait_agent_targets};

const DEVICES: u64 = 2_000;

#[tokio::test]
async fn restarting_each_service_mid_run_loses_and_duplicates_nothing() {
    let mut p = Pipeline::start().await;
    let mut config = sr_faker::Config::local(DEVICES);
    config.churn.fraction = 0.1;
    config.churn.interval_secs = 0;
    let faker = sr_faker::Faker::start(config).await.unwrap();
    let Onboarded {
        tenant,
        agent,
        source,
    } = p
        .platform_armis_tenant("acme", "faker", &faker.base_url())
        .await;
    let bootstrap = p.platform_bootstrap();

    // Run 1 starts with the sync; the gateway and DIRE go down and come back under it.
    let sync = p.sync(&bootstrap).await;
    p.restart(Service::Gateway).await;
    p.restart(Service::Dire).await;
    p.wait_dire(tenant.id, &expected(&faker.handle())).await;

    // Run 2 after churn; sweepgen, events and identity restart under it.
    faker.advance_churn();
    sync.tick();
    p.restart(Service::Sweepgen).await;
    p.restart(Service::Events).await;
    p.restart(Service::Identity).await;
    p.wait_dire(tenant.id, &expected(&faker.handle())).await;

    // Run 3 after more churn: the sync stops in the middle of it and a new one (same state
    // directory) runs again, with DIRE and the gateway restarting once more under it.
    faker.advance_churn();
    sync.tick();
    sync.stop().await;
    let sync = p.sync(&bootstrap).await;
    p.restart(Service::Dire).await;
    p.restart(Service::Gateway).await;
    let want = expected(&faker.handle());
    p.wait_dire(tenant.id, &want).await;

    // Nothing duplicated: one device and one Armis identifier per faker device, no merges.
    let scalar = |sql: &'static str| p.dire_scalar(sql, tenant.id);
    assert_eq!(
        scalar("SELECT count(*) FROM devices WHERE tenant_id = $1").await,
        DEVICES as i64
    );
    assert_eq!(
        scalar(
            "SELECT count(*) FROM identifiers WHERE tenant_id = $1 AND type = 'armis_device_id'"
        )
        .await,
        DEVICES as i64
    );
    assert_eq!(
        scalar("SELECT count(*) FROM merge_audit WHERE tenant_id = $1").await,
        0
    );

    // The agent sweeps exactly the faker's IPs, each once.
    let want_targets = expected_targets(&want);
    let agent = wait_agent_targets(&agent, &want_targets).await;
    let file = SweepFile::read(agent.sweep_path()).unwrap();
    assert_eq!(file.device_targets.len(), want_targets.len());
    let distinct: BTreeSet<&str> = file
        .device_targets
        .iter()
        .map(|t| t.network.as_str())
        .collect();
    assert_eq!(distinct.len(), file.device_targets.len());

    // Identity has the last run; the source's creation was stored once.
    p.wait_source_success("acme", source.id, DEVICES as i64)
        .await;
    assert_eq!(p.wait_source_created_event(source.id).await, tenant.id);

    sync.stop().await;
    p.stop().await;
    faker.stop().await.unwrap();
}

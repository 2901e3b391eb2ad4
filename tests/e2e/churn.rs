//! IP churn at the source: between sync cycles the faker swaps the primary IPs of device
//! pairs; DIRE follows every move and keeps exactly one device per Armis id, merging nothing.

use crate::common::{
    Expected, Onboarded, Pipeline, expected, expected_targets, wait_agent_targets,
};

const DEVICES: u64 = 1_000;
const CYCLES: u64 = 4;

#[tokio::test]
async fn devices_keep_their_identity_through_ip_churn_across_sync_cycles() {
    let p = Pipeline::start().await;
    let mut config = sr_faker::Config::local(DEVICES);
    config.churn.fraction = 0.2;
    config.churn.interval_secs = 0;
    let faker = sr_faker::Faker::start(config).await.unwrap();
    let Onboarded {
        tenant,
        agent,
        source,
    } = p
        .platform_armis_tenant("acme", "churny", &faker.base_url())
        .await;
    let sync = p.sync(&p.platform_bootstrap()).await;

    let mut previous: Vec<Expected> = Vec::new();
    for cycle in 0..=CYCLES {
        if cycle > 0 {
            assert_eq!(faker.advance_churn(), cycle);
            sync.tick();
        }
        sync.wait_runs("acme", "acme/churny", cycle + 1).await;
        let want = expected(&faker.handle());
        if cycle > 0 {
            let moved = want
                .iter()
                .zip(&previous)
                .filter(|(now, before)| now.ip != before.ip)
                .count();
            assert!(moved > 0, "cycle {cycle} moves some IPs");
        }
        // Every device at its current IP, with its own Armis id and MAC.
        p.wait_dire(tenant.id, &want).await;
        let scalar = |sql: &'static str| p.dire_scalar(sql, tenant.id);
        assert_eq!(
            scalar("SELECT count(*) FROM devices WHERE tenant_id = $1").await,
            DEVICES as i64,
            "cycle {cycle}"
        );
        assert_eq!(
            scalar(
                "SELECT count(DISTINCT value) FROM identifiers WHERE tenant_id = $1 AND type = 'armis_device_id'"
            )
            .await,
            DEVICES as i64,
            "cycle {cycle}"
        );
        assert_eq!(
            scalar("SELECT count(*) FROM merge_audit WHERE tenant_id = $1").await,
            0,
            "cycle {cycle}: no merges"
        );
        previous = want;
    }
    // Swaps keep the set of addresses: the agent still sweeps exactly the faker's IPs.
    wait_agent_targets(&agent, &expected_targets(&previous)).await;
    p.wait_source_success("acme", source.id, DEVICES as i64)
        .await;

    sync.stop().await;
    p.stop().await;
    faker.stop().await.unwrap();
}

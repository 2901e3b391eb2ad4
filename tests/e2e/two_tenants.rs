//! Two tenants with the same faker seed (so the same Armis ids, MACs and IPs), one through the
//! platform sync and one through its own edge sync, and an agent with the same id in each:
//! devices, sweep configs and events stay apart.

use uuid::Uuid;

use crate::common::{Pipeline, armis_source, expected, expected_targets, wait_agent_targets};

const A_DEVICES: u64 = 400;
const B_DEVICES: u64 = 700;
const SEED: u64 = 7;

fn faker_config(count: u64) -> sr_faker::Config {
    let mut c = sr_faker::Config::local(count);
    c.devices.seed = SEED;
    c
}

#[tokio::test]
async fn a_platform_synced_tenant_and_an_edge_synced_tenant_with_the_same_devices_stay_isolated() {
    let p = Pipeline::start().await;
    // B serves A's devices and more: the first A_DEVICES are identical in both.
    let faker_a = sr_faker::Faker::start(faker_config(A_DEVICES))
        .await
        .unwrap();
    let faker_b = sr_faker::Faker::start(faker_config(B_DEVICES))
        .await
        .unwrap();
    let want_a = expected(&faker_a.handle());
    let want_b = expected(&faker_b.handle());
    assert_eq!(
        want_a[..],
        want_b[..A_DEVICES as usize],
        "same seed, same devices"
    );

    let a = p.tenant("tenant-a").await;
    let b = p.tenant("tenant-b").await;
    let psync = p.platform_sync("tenant-a").await;
    let (edge_boot, edge_id) = p.edge_bootstrap("tenant-b", "edge-1").await;
    let agent_a = p.enroll_agent("tenant-a", "agent-1").await;
    let agent_b = p.enroll_agent("tenant-b", "agent-1").await;
    let source_a = p
        .source(
            "tenant-a",
            armis_source("armis", &faker_a.base_url(), psync, "agent-1"),
        )
        .await;
    let source_b = p
        .source(
            "tenant-b",
            armis_source("armis", &faker_b.base_url(), edge_id, "agent-1"),
        )
        .await;
    let platform = p.sync(&p.platform_bootstrap()).await;
    let edge = p.sync(&edge_boot).await;

    // Devices: each tenant holds exactly its own source's devices.
    p.wait_dire(a.id, &want_a).await;
    p.wait_dire(b.id, &want_b).await;
    let scalar = |sql: &'static str, t: Uuid| p.dire_scalar(sql, t);
    for (t, n) in [(a.id, A_DEVICES), (b.id, B_DEVICES)] {
        assert_eq!(
            scalar("SELECT count(*) FROM devices WHERE tenant_id = $1", t).await,
            n as i64
        );
        assert_eq!(
            scalar(
                "SELECT count(*) FROM identifiers WHERE tenant_id = $1 AND type = 'armis_device_id'",
                t
            )
            .await,
            n as i64
        );
        assert_eq!(
            scalar("SELECT count(*) FROM merge_audit WHERE tenant_id = $1", t).await,
            0
        );
    }
    assert_eq!(
        scalar(
            "SELECT count(DISTINCT tenant_id) FROM devices WHERE tenant_id <> $1",
            a.id
        )
        .await,
        1,
        "only tenant B besides A"
    );

    // Sweep configs: agent-1 of A gets A's targets only, agent-1 of B gets B's.
    let targets_a = expected_targets(&want_a);
    let targets_b = expected_targets(&want_b);
    assert!(targets_a.len() < targets_b.len());
    let agent = wait_agent_targets(&agent_a, &targets_a).await;
    let a_id = a.id.to_string();
    assert_eq!(agent.tenant(), Some((a_id.as_str(), "tenant-a")));
    let agent = wait_agent_targets(&agent_b, &targets_b).await;
    let b_id = b.id.to_string();
    assert_eq!(agent.tenant(), Some((b_id.as_str(), "tenant-b")));

    // Each sync reported its own source; each source's event belongs to its tenant.
    p.wait_source_success("tenant-a", source_a.id, A_DEVICES as i64)
        .await;
    p.wait_source_success("tenant-b", source_b.id, B_DEVICES as i64)
        .await;
    platform.wait_runs("tenant-a", "tenant-a/armis", 1).await;
    edge.wait_runs("tenant-b", "armis", 1).await;
    assert_eq!(p.wait_source_created_event(source_a.id).await, a.id);
    assert_eq!(p.wait_source_created_event(source_b.id).await, b.id);
    let pool = p.stack.events_db.pool().await;
    for (tenant, foreign) in [(a.id, source_b.id), (b.id, source_a.id)] {
        let (leaked,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM ocsf_events WHERE tenant_id = $1
               AND (correlation_uid LIKE '%' || $2 || '%' OR observables::text LIKE '%' || $2 || '%'
                    OR unmapped::text LIKE '%' || $2 || '%')",
        )
        .bind(tenant)
        .bind(foreign.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(leaked, 0, "tenant {tenant} sees an event about {foreign}");
    }
    let edge_events = p.events_for(&format!("sync_service:{edge_id}")).await;
    assert!(
        !edge_events.is_empty(),
        "the edge sync's onboarding is an event"
    );
    assert!(
        edge_events.iter().all(|(t, _)| *t == b.id),
        "the edge sync's events are B's only: {edge_events:?}"
    );
    pool.close().await;

    platform.stop().await;
    edge.stop().await;
    p.stop().await;
    faker_a.stop().await.unwrap();
    faker_b.stop().await.unwrap();
}

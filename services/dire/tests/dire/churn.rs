//! A faker-shaped inventory under DHCP churn keeps exactly one device per Armis id.

use sr_core::TenantId;
use sr_runtime::jetstream::StreamKind;

use crate::common::*;
use crate::faker;
use sr_testkit::eventually;

const DEVICES: usize = 5_000;
const CYCLES: usize = 10;
const CHUNK: usize = 1_000;

#[tokio::test]
async fn five_thousand_faker_devices_under_ten_churn_cycles_stay_five_thousand_devices_without_merges()
 {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let mut ips: Vec<std::net::IpAddr> = (0..DEVICES).map(faker::ip).collect();
    for cycle in 0..=CYCLES {
        if cycle > 0 {
            faker::churn(&mut ips, DEVICES * 5 / 100 / 2, cycle);
        }
        let when = at(20 * cycle as i64);
        let updates: Vec<serde_json::Value> = (0..DEVICES)
            .map(|i| serde_json::to_value(faker::update(i, ips[i], when, 0)).unwrap())
            .collect();
        for chunk in updates.chunks(CHUNK) {
            env.publish(t, chunk).await;
        }
        env.ingested().await;
    }
    assert_eq!(
        env.scalar("SELECT count(*) FROM devices").await,
        DEVICES as i64
    );
    assert_eq!(
        env.scalar("SELECT count(DISTINCT value) FROM identifiers WHERE type = 'armis_device_id'")
            .await,
        DEVICES as i64
    );
    assert_eq!(env.scalar("SELECT count(*) FROM merge_audit").await, 0);
    assert_eq!(app.metrics.devices_with("merged"), 0);
    assert!(app.metrics.ip_churn.get() > 0);
    // Every device ends at the IP of its last sighting.
    let pool = env.db.pool().await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT d.uid, host(d.ip) FROM devices d WHERE d.ip IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), DEVICES, "every device holds an IP");
    let by_armis: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.value, host(d.ip) FROM identifiers i
           JOIN devices d ON d.tenant_id = i.tenant_id AND d.partition = i.partition AND d.uid = i.device_uid
          WHERE i.type = 'armis_device_id'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (armis, ip) in by_armis {
        let i: usize = armis.parse::<usize>().unwrap() - 1;
        assert_eq!(ip, ips[i].to_string(), "device {armis}");
    }
    pool.close().await;
    app.stop().await;
}

/// The foreign key of `identifiers` is checked with a plan cached per connection. Planned while
/// `devices` has no statistics, it can probe `devices_ip_key` and read every device of the
/// partition per identifier (quadratic in the first batch). DIRE refreshes the statistics of
/// `devices` inside that transaction, so the checks use the primary key: the IP index reads
/// (nearly) nothing while thousands of identifiers are checked.
#[tokio::test]
async fn a_first_large_batch_checks_identifiers_by_primary_key_not_by_scanning_the_ip_index() {
    const N: usize = 12_000;
    let env = Env::new();
    // Everything is in the stream before DIRE starts, so its first round is large.
    let js = env.js(env.nats.client().await);
    sr_runtime::jetstream::ensure_stream(&js, &env.nats.config, StreamKind::Devices)
        .await
        .unwrap();
    let t = TenantId::random();
    let when = at(0);
    let updates: Vec<serde_json::Value> = (0..N)
        .map(|i| serde_json::to_value(faker::update(i, faker::ip(i), when, 0)).unwrap())
        .collect();
    for chunk in updates.chunks(1_500) {
        env.publish(t, chunk).await;
    }
    let app = env.start().await;
    env.ingested().await;
    assert_eq!(env.scalar("SELECT count(*) FROM devices").await, N as i64);
    let identifiers = env.scalar("SELECT count(*) FROM identifiers").await;
    assert!(identifiers >= 2 * N as i64);
    // Index statistics reach the cumulative views when DIRE's connections go idle.
    let stat = |index: &'static str, column: &'static str| {
        let env = &env;
        async move {
            env.scalar(&format!(
                "SELECT COALESCE(sum({column}), 0)::bigint FROM pg_stat_user_indexes
                  WHERE schemaname = current_schema() AND indexrelname = '{index}'"
            ))
            .await
        }
    };
    // The checks probe the primary key or (tenant_id, uid); either is an exact lookup.
    eventually(
        "the foreign key checks are counted",
        std::time::Duration::from_secs(30),
        || async {
            let scans = stat("devices_pkey", "idx_scan").await
                + stat("devices_tenant_uid", "idx_scan").await;
            (scans >= identifiers).then_some(())
        },
    )
    .await;
    let read_by_ip_index = stat("devices_ip_key", "idx_tup_read").await;
    assert!(
        read_by_ip_index < N as i64,
        "devices_ip_key read {read_by_ip_index} tuples for {identifiers} identifier checks"
    );
    app.stop().await;
}

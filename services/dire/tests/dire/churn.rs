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

/// The load and update statements run with plans cached per connection. Planned while the
/// tables had no statistics (before a first large batch), they could scan `devices` or
/// `identifiers`, or probe `devices_ip_key` for every device of the partition, per row. DIRE
/// refreshes the statistics after that batch commits, so a re-sync of the same devices finds
/// them by key: neither table is scanned and the IP index reads about one entry per update.
#[tokio::test]
async fn a_resync_after_a_first_large_batch_finds_devices_by_key_not_by_scanning() {
    const N: usize = 12_000;
    let env = Env::new();
    // Everything is in the stream before DIRE starts, so its first round is large.
    let js = env.js(env.nats.client().await);
    sr_runtime::jetstream::ensure_stream(&js, &env.nats.config, StreamKind::Devices)
        .await
        .unwrap();
    let t = TenantId::random();
    let round = |rev: u32| -> Vec<serde_json::Value> {
        (0..N)
            .map(|i| {
                serde_json::to_value(faker::update(i, faker::ip(i), at(i64::from(rev)), rev))
                    .unwrap()
            })
            .collect()
    };
    for chunk in round(0).chunks(1_500) {
        env.publish(t, chunk).await;
    }
    let app = env.start().await;
    env.ingested().await;
    assert_eq!(env.scalar("SELECT count(*) FROM devices").await, N as i64);
    assert_eq!(
        env.scalar("SELECT count(*) FROM identifiers").await,
        2 * N as i64
    );
    // Cumulative statistics reach the views when DIRE's connections go idle.
    let rows_updated = || {
        let env = &env;
        async move {
            env.scalar(
                "SELECT COALESCE(sum(n_tup_upd), 0)::bigint FROM pg_stat_user_tables
                  WHERE schemaname = current_schema() AND relname = 'devices'",
            )
            .await
        }
    };
    let tuples_read = || {
        let env = &env;
        async move {
            let scanned = env
                .scalar(
                    "SELECT COALESCE(sum(seq_tup_read), 0)::bigint FROM pg_stat_user_tables
                      WHERE schemaname = current_schema() AND relname IN ('devices', 'identifiers')",
                )
                .await;
            let by_ip = env
                .scalar(
                    "SELECT COALESCE(sum(idx_tup_read), 0)::bigint FROM pg_stat_user_indexes
                      WHERE schemaname = current_schema() AND indexrelname = 'devices_ip_key'",
                )
                .await;
            (scanned, by_ip)
        }
    };
    let (scanned_before, by_ip_before) = tuples_read().await;
    // The re-sync: every device's model changed.
    for chunk in round(1).chunks(1_500) {
        env.publish(t, chunk).await;
    }
    env.ingested().await;
    eventually(
        "the re-sync's updates are counted",
        std::time::Duration::from_secs(30),
        || async { (rows_updated().await >= N as i64).then_some(()) },
    )
    .await;
    let (scanned, by_ip) = tuples_read().await;
    assert!(
        scanned - scanned_before < N as i64,
        "the re-sync read {} rows by scanning",
        scanned - scanned_before
    );
    assert!(
        by_ip - by_ip_before < 2 * N as i64,
        "devices_ip_key read {} tuples for {N} updates",
        by_ip - by_ip_before
    );
    let models = env
        .scalar("SELECT count(*) FROM devices WHERE model LIKE '%-1'")
        .await;
    assert_eq!(models, N as i64);
    env.assert_linked().await;
    app.stop().await;
}

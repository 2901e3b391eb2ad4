//! A faker-shaped inventory under DHCP churn keeps exactly one device per Armis id.

use sr_core::TenantId;

use crate::common::*;
use crate::faker;

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

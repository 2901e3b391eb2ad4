//! The whole pipeline for one tenant: the faker's devices travel through the platform sync,
//! the gateway and DIRE into sweepgen, and the tenant's agent receives them as its sweep
//! config over mTLS.

use crate::common::{Onboarded, Pipeline, expected, expected_targets, wait_agent_targets};

const DEVICES: u64 = 1_200;

#[tokio::test]
async fn faker_devices_reach_dire_and_the_agents_sweep_config_exactly_once() {
    let p = Pipeline::start().await;
    let faker = sr_faker::Faker::start(sr_faker::Config::local(DEVICES))
        .await
        .unwrap();
    let Onboarded {
        tenant,
        agent,
        source,
    } = p
        .platform_armis_tenant("acme", "faker", &faker.base_url())
        .await;
    let sync = p.sync(&p.platform_bootstrap()).await;

    // DIRE: one canonical device per faker device, with its Armis id, IP and MAC.
    let want = expected(&faker.handle());
    assert_eq!(want.len() as u64, DEVICES);
    p.wait_dire(tenant.id, &want).await;
    let count = |sql: &'static str| p.dire_scalar(sql, tenant.id);
    assert_eq!(
        count("SELECT count(*) FROM devices WHERE tenant_id = $1").await,
        DEVICES as i64
    );
    assert_eq!(
        count(
            "SELECT count(DISTINCT value) FROM identifiers WHERE tenant_id = $1 AND type = 'armis_device_id'"
        )
        .await,
        DEVICES as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM merge_audit WHERE tenant_id = $1").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM devices WHERE tenant_id <> $1").await,
        0,
        "nothing lands in another tenant"
    );

    // The identifiers DIRE matches on: each Armis id and each MAC once, on its own device.
    let pool = p.stack.dire_db.pool().await;
    let identifiers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT i.type, i.value, d.mac FROM identifiers i
           JOIN devices d ON d.tenant_id = i.tenant_id AND d.partition = i.partition
                         AND d.uid = i.device_uid
          WHERE i.tenant_id = $1 AND i.type IN ('armis_device_id', 'mac')",
    )
    .bind(tenant.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let hex = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_hexdigit)
            .collect::<String>()
            .to_ascii_uppercase()
    };
    let mac_of: std::collections::BTreeMap<&str, &str> = want
        .iter()
        .map(|d| (d.armis_id.as_str(), d.mac.as_str()))
        .collect();
    let mut armis_ids = std::collections::BTreeSet::new();
    let mut macs = std::collections::BTreeSet::new();
    for (kind, value, device_mac) in &identifiers {
        match kind.as_str() {
            "armis_device_id" => {
                let mac = mac_of.get(value.as_str()).expect("a faker Armis id");
                assert_eq!(hex(device_mac), hex(mac), "device of Armis id {value}");
                assert!(armis_ids.insert(value.clone()), "{value} twice");
            }
            _ => {
                assert_eq!(hex(value), hex(device_mac), "MAC identifier on its device");
                assert!(macs.insert(hex(value)), "{value} twice");
            }
        }
    }
    assert_eq!(armis_ids.len() as u64, DEVICES);
    let want_macs: std::collections::BTreeSet<String> = want.iter().map(|d| hex(&d.mac)).collect();
    assert_eq!(macs, want_macs, "one MAC identifier per faker device");

    // The agent's GetConfig through the real gateway: exactly the faker devices' IPs.
    let agent = wait_agent_targets(&agent, &expected_targets(&want)).await;
    let tenant_id = tenant.id.to_string();
    assert_eq!(agent.tenant(), Some((tenant_id.as_str(), "acme")));

    // Identity records the run; events stored the source's creation.
    let s = p
        .wait_source_success("acme", source.id, DEVICES as i64)
        .await;
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(p.wait_source_created_event(source.id).await, tenant.id);
    sync.wait_runs("acme", "acme/faker", 1).await;
    assert_eq!(faker.stats().unauthorized, 0);

    sync.stop().await;
    p.stop().await;
    faker.stop().await.unwrap();
}

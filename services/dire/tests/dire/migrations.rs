//! Migrations applied to an inventory written by an earlier version of DIRE.

use serde_json::json;
use sr_core::TenantId;

use crate::common::*;

/// The test's schema, created and migrated up to `version` (an inventory of that version).
async fn migrated_to(env: &Env, version: i64) -> sqlx::PgPool {
    let pool = env.db.pool().await;
    let schema = &env.db.config.schema;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&pool)
        .await
        .unwrap();
    sr_dire::MIGRATOR.run_to(version, &pool).await.unwrap();
    pool
}

/// The last migration before device rows listed their identifiers.
const BEFORE_LISTS: i64 = 20261206000001;

/// `20261206000002_identifiers_on_devices` copies every device's identifiers onto its row and
/// drops the foreign key and owner index of `identifiers`; DIRE then goes on from there.
#[tokio::test]
async fn existing_devices_get_their_identifiers_listed_on_the_row() {
    let env = Env::new();
    let pool = migrated_to(&env, BEFORE_LISTS).await;
    let t = TenantId::random();
    let a = sr_reconcile::uid_from_seed("serviceradar-device-v3:partition:default:armis:1");
    let b = sr_reconcile::uid_from_seed("serviceradar-device-v3:partition:default:armis:2");
    sqlx::query(
        "INSERT INTO devices (tenant_id, partition, uid, ip, discovery_sources, first_seen,
                              last_seen, revision)
         VALUES ($1, 'default', $2, '10.0.0.1', '{armis}', $4, $4, 1),
                ($1, 'default', $3, '10.0.0.2', '{armis}', $4, $4, 2)",
    )
    .bind(t.as_uuid())
    .bind(a.to_string())
    .bind(b.to_string())
    .bind(at(0))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO identifiers (tenant_id, partition, type, value, device_uid)
         VALUES ($1, 'default', 'mac', '001B21000001', $2),
                ($1, 'default', 'armis_device_id', '1', $2),
                ($1, 'default', 'armis_device_id', '2', $3)",
    )
    .bind(t.as_uuid())
    .bind(a.to_string())
    .bind(b.to_string())
    .execute(&pool)
    .await
    .unwrap();

    let app = env.start().await;
    let listed = |uid: sr_reconcile::DeviceUid| {
        let pool = pool.clone();
        async move {
            let (v,): (serde_json::Value,) =
                sqlx::query_as("SELECT identifiers FROM devices WHERE uid = $1")
                    .bind(uid.to_string())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            v
        }
    };
    assert_eq!(
        listed(a).await,
        json!([["armis_device_id", "1"], ["mac", "001B21000001"]])
    );
    assert_eq!(listed(b).await, json!([["armis_device_id", "2"]]));
    let foreign_keys = env
        .scalar(
            "SELECT count(*) FROM pg_constraint
              WHERE conrelid = 'identifiers'::regclass AND contype = 'f'",
        )
        .await;
    assert_eq!(foreign_keys, 0);
    let owner_index = env
        .scalar(
            "SELECT count(*) FROM pg_indexes
                  WHERE schemaname = current_schema() AND indexname = 'identifiers_device'",
        )
        .await;
    assert_eq!(owner_index, 0);

    // DIRE finds the migrated device by its identifier and lists the one it learns.
    env.ingest(
        t,
        &[with(
            armis("2", "10.0.0.2", 5),
            "mac",
            json!("00:1b:21:00:00:02"),
        )],
    )
    .await;
    assert_eq!(
        listed(b).await,
        json!([["armis_device_id", "2"], ["mac", "001B21000002"]])
    );
    let devices = env.devices(t).await;
    assert_eq!(devices.len(), 2);
    pool.close().await;
    app.stop().await;
}

/// The last migration before the device rows' JSON columns were `json`.
const BEFORE_JSON: i64 = 20261206000003;

/// `20261206000004_device_json_columns` turns the device rows' `jsonb` columns into `json`
/// with their contents; DIRE then reads them (the stamps too: an update older than a value's
/// stamp leaves it, one newer replaces it) and writes on.
#[tokio::test]
async fn existing_device_json_columns_keep_their_contents_as_json() {
    let env = Env::new();
    let pool = migrated_to(&env, BEFORE_JSON).await;
    let t = TenantId::random();
    let uid = sr_reconcile::uid_from_seed("serviceradar-device-v3:partition:default:armis:1");
    let metadata = json!({"integration_type": "armis", "armis_device_id": "1",
                          "query_label": "all", "site": "old-site \u{e9}\"\\"});
    let hints = json!([{"source": "armis", "query_label": "all", "sweep_modes": ["icmp"]}]);
    let mut stamps = sr_reconcile::Stamps::default();
    stamps.set(sr_reconcile::Stated::Metadata("site".into()), at(2));
    let stamps = serde_json::to_value(&stamps).unwrap();
    let identifiers = json!([["armis_device_id", "1"]]);
    sqlx::query(
        "INSERT INTO devices (tenant_id, partition, uid, ip, hostname, discovery_sources,
                              first_seen, last_seen, metadata, sweep_hints, stamps, identifiers,
                              settled, revision)
         VALUES ($1, 'default', $2, '10.0.0.1', 'old-host', '{armis}', $3, $4, $5, $6, $7, $8,
                 '\\x00112233445566778899aabbccddeeff', 1)",
    )
    .bind(t.as_uuid())
    .bind(uid.to_string())
    .bind(at(0))
    .bind(at(100))
    .bind(&metadata)
    .bind(&hints)
    .bind(&stamps)
    .bind(&identifiers)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO identifiers (tenant_id, partition, type, value, device_uid)
         VALUES ($1, 'default', 'armis_device_id', '1', $2)",
    )
    .bind(t.as_uuid())
    .bind(uid.to_string())
    .execute(&pool)
    .await
    .unwrap();

    let app = env.start().await;
    let json_columns = env
        .scalar(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = 'devices'
                AND column_name IN ('metadata', 'sweep_hints', 'stamps', 'identifiers')
                AND data_type = 'json'",
        )
        .await;
    assert_eq!(json_columns, 4);
    let stored: (
        serde_json::Value,
        serde_json::Value,
        serde_json::Value,
        serde_json::Value,
    ) = sqlx::query_as("SELECT metadata, sweep_hints, stamps, identifiers FROM devices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        (metadata, hints.clone(), stamps, identifiers.clone())
    );

    // The site was stamped at minute 2, the host name at the row's last_seen (minute 100): an
    // update of minute 5 replaces the one and leaves the other.
    let update = with(armis("1", "10.0.0.1", 5), "hostname", json!("new-host"));
    env.ingest(t, &[with_meta(update, "site", "new-site")])
        .await;
    let devices = env.devices(t).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["uid"], json!(uid.to_string()));
    assert_eq!(devices[0]["hostname"], "old-host");
    assert_eq!(devices[0]["metadata"]["site"], "new-site");
    assert_eq!(devices[0]["sweep_hints"], hints);
    let (listed,): (serde_json::Value,) = sqlx::query_as("SELECT identifiers FROM devices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(listed, identifiers);
    pool.close().await;
    app.stop().await;
}

/// The last migration before devices were keyed by uid within their tenant.
const BEFORE_UID_KEY: i64 = 20261206000004;

/// `20261206000005_devices_keyed_by_uid` keys devices by (tenant_id, uid) and drops
/// `devices_tenant_uid`: the migrated devices of two partitions are still found by their
/// identifiers and paged and looked up by uid through the read API, and the key refuses a
/// second row with a device's uid in another partition of its tenant, not in another tenant.
#[tokio::test]
async fn devices_of_two_partitions_are_keyed_by_uid_within_their_tenant() {
    let env = Env::new();
    let pool = migrated_to(&env, BEFORE_UID_KEY).await;
    let t = TenantId::random();
    let seed = |partition: &str, id: &str| {
        sr_reconcile::uid_from_seed(&format!(
            "serviceradar-device-v3:partition:{partition}:armis:{id}"
        ))
    };
    let (a, b) = (seed("default", "1"), seed("site-b", "2"));
    for (partition, uid, id, ip) in [
        ("default", a, "1", "10.0.0.1"),
        ("site-b", b, "2", "10.0.0.2"),
    ] {
        sqlx::query(
            "INSERT INTO devices (tenant_id, partition, uid, ip, discovery_sources, first_seen,
                                  last_seen, identifiers, revision)
             VALUES ($1, $2, $3, $4::inet, '{armis}', $5, $5, $6, 1)",
        )
        .bind(t.as_uuid())
        .bind(partition)
        .bind(uid.to_string())
        .bind(ip)
        .bind(at(0))
        .bind(json!([["armis_device_id", id]]))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO identifiers (tenant_id, partition, type, value, device_uid)
             VALUES ($1, $2, 'armis_device_id', $3, $4)",
        )
        .bind(t.as_uuid())
        .bind(partition)
        .bind(id)
        .bind(uid.to_string())
        .execute(&pool)
        .await
        .unwrap();
    }

    let app = env.start().await;
    let (key,): (String,) = sqlx::query_as(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = 'devices'::regclass AND contype = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(key, "PRIMARY KEY (tenant_id, uid)");
    let old_index = env
        .scalar(
            "SELECT count(*) FROM pg_indexes
              WHERE schemaname = current_schema() AND indexname = 'devices_tenant_uid'",
        )
        .await;
    assert_eq!(old_index, 0);

    // DIRE finds the device of the second partition by its identifier and updates it.
    let update = with(armis("2", "10.0.0.2", 5), "partition", json!("site-b"));
    env.ingest(t, &[with(update, "hostname", json!("cam-b"))])
        .await;
    let devices = env.devices(t).await;
    assert_eq!(devices.len(), 2, "{devices:?}");
    let updated = devices.iter().find(|d| d["uid"] == json!(b.to_string()));
    assert_eq!(updated.unwrap()["hostname"], "cam-b");

    // Paged by uid across the partitions, one device a page, and looked up by uid.
    let base = format!("/api/v1/tenants/{t}/devices");
    let (_, first) = app.get(&format!("{base}?limit=1")).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = app.get(&format!("{base}?limit=1&cursor={cursor}")).await;
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    let paged: Vec<&str> = [&first, &second]
        .iter()
        .map(|p| p["devices"][0]["uid"].as_str().unwrap())
        .collect();
    let mut uids = vec![a.to_string(), b.to_string()];
    uids.sort();
    assert_eq!(paged, uids);
    let (status, found) = app.get(&format!("{base}/{b}")).await;
    assert!(status.is_success(), "{found}");
    assert_eq!(found["partition"], "site-b");

    // A second row with a's uid: refused in another partition of its tenant, not elsewhere.
    let insert = |tenant: TenantId, partition: &'static str| {
        sqlx::query(
            "INSERT INTO devices (tenant_id, partition, uid, discovery_sources, first_seen,
                                  last_seen, revision)
             VALUES ($1, $2, $3, '{}', now(), now(), 1)",
        )
        .bind(tenant.as_uuid())
        .bind(partition)
        .bind(a.to_string())
        .execute(&pool)
    };
    let refused = insert(t, "site-b").await.unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("23505"), "{refused}");
    insert(TenantId::random(), "site-b").await.unwrap();
    pool.close().await;
    app.stop().await;
}

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

//! Skipping settled devices: a re-sync of unchanged devices is not reconciled again, and the
//! inventory ends exactly as if every update had been (restarts, other replicas, churn).

use std::sync::Arc;

use serde_json::Value;
use sr_core::TenantId;
use sr_dire::ingest::{Ingest, KeyBudget};
use sr_reconcile::Observation;

use crate::common::*;
use crate::faker;

pub fn armis_fleet(n: usize, minutes: i64) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            with(
                armis(
                    &i.to_string(),
                    &format!("10.7.{}.{}", i / 250, i % 250 + 1),
                    minutes,
                ),
                "hostname",
                Value::String(format!("host-{i}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_resync_of_unchanged_devices_is_skipped_and_rewrites_nothing_even_after_a_restart() {
    let env = Env::new();
    let t = TenantId::random();
    let app = env.start().await;
    env.ingest(t, &armis_fleet(300, 0)).await;
    let before = env.devices(t).await;
    let revision = || env.scalar("SELECT max(revision) FROM devices");
    let rev = revision().await;
    assert_eq!(
        env.scalar("SELECT count(*) FROM devices WHERE settled IS NOT NULL")
            .await,
        300,
        "every created row records the update it reflects"
    );

    env.ingest(t, &armis_fleet(300, 5)).await;
    assert_eq!(app.metrics.updates_skipped.get(), 300);
    assert_eq!(app.metrics.devices_with("unchanged"), 300);
    assert_eq!(env.devices(t).await, before);
    assert_eq!(revision().await, rev, "no row was written");

    // Ten changed devices are reconciled (and written); the rest are skipped again.
    let mut changed = armis_fleet(300, 6);
    for u in changed.iter_mut().take(10) {
        u["hostname"] = Value::String("renamed".into());
    }
    env.ingest(t, &changed).await;
    assert_eq!(app.metrics.updates_skipped.get(), 300 + 290);
    assert_eq!(app.metrics.devices_with("updated"), 10);
    let renamed = env
        .scalar("SELECT count(*) FROM devices WHERE hostname = 'renamed' AND settled IS NOT NULL")
        .await;
    assert_eq!(
        renamed, 10,
        "a rewritten row records the update it now reflects"
    );
    app.stop().await;

    // A new process learns the settled devices from Postgres.
    let app = env.start().await;
    let after = env.devices(t).await;
    env.ingest(t, &changed).await;
    assert_eq!(app.metrics.updates_skipped.get(), 300);
    assert_eq!(app.metrics.settled_loads.get(), 1);
    assert_eq!(env.devices(t).await, after);
    // Beyond the last_seen precision the same content is a write again (last_seen refreshed).
    env.ingest(t, &armis_fleet(300, 6 + 15)).await;
    assert_eq!(app.metrics.updates_skipped.get(), 300);
    assert_eq!(app.metrics.devices_with("updated"), 300);
    app.stop().await;
}

pub async fn ingest_instance(env: &Env, skip_settled: bool) -> Ingest {
    let mut config = env.config();
    config.reconcile.skip_settled = skip_settled;
    let pool = sr_runtime::db::connect_and_migrate(&config.database, &sr_dire::MIGRATOR)
        .await
        .unwrap();
    Ingest {
        pool,
        consumer: config.consumer.clone(),
        outbox: config.outbox.clone(),
        subjects: config.nats.subjects(),
        reconcile: config.reconcile_config(),
        metrics: sr_dire::Metrics::default(),
        outbox_notify: Arc::default(),
        analyze: Arc::default(),
        skip_settled,
        decide_ahead: config.reconcile.decide_ahead,
        key_filters: KeyBudget::new(config.reconcile.key_filter_max_keys),
        memos: Arc::default(),
    }
}

/// Two skipping replicas writing tenant `t`, and a replica that reconciles everything, to
/// write the same updates to tenant `r` for comparison.
pub struct Replicas {
    pub a: Ingest,
    pub b: Ingest,
    pub reference: Ingest,
    pub t: TenantId,
    pub r: TenantId,
}

impl Replicas {
    pub async fn new(env: &Env) -> Self {
        Self {
            a: ingest_instance(env, true).await,
            b: ingest_instance(env, true).await,
            reference: ingest_instance(env, false).await,
            t: TenantId::random(),
            r: TenantId::random(),
        }
    }
}

pub fn observations(updates: &[Value]) -> Vec<Observation> {
    updates
        .iter()
        .map(|u| {
            let fields: sr_reconcile::DeviceUpdateFields =
                serde_json::from_value(u.clone()).unwrap();
            Observation::from_update(&fields).unwrap()
        })
        .collect()
}

/// Applies `batches` in order, in tenant `r`, to `reference` (an instance that skips nothing
/// and decides nothing ahead) and asserts that tenant `t` ended with the same rows.
pub async fn assert_as_reference(
    env: &Env,
    reference: &Ingest,
    (t, r): (TenantId, TenantId),
    batches: &[&[Observation]],
) {
    for batch in batches {
        reference.apply_group(r, "default", batch).await.unwrap();
    }
    assert_eq!(rows(env, t).await, rows(env, r).await);
}

/// Device rows of a tenant without the tenant (to compare two tenants fed the same updates).
pub async fn rows(env: &Env, t: TenantId) -> Vec<Value> {
    env.devices(t)
        .await
        .into_iter()
        .map(|mut d| {
            d.as_object_mut().unwrap().remove("tenant_id");
            d
        })
        .collect()
}

#[tokio::test]
async fn a_replica_does_not_trust_what_it_remembers_once_another_replica_wrote_the_scope() {
    let env = Env::new();
    let Replicas {
        a,
        b,
        reference,
        t,
        r,
    } = Replicas::new(&env).await;
    let first = observations(&armis_fleet(3, 0));
    let mut other = observations(&armis_fleet(1, 2));
    other[0].hostname = Some("from-netbox".into());
    other[0].source = Some("netbox".into());
    let again = observations(&armis_fleet(3, 4));

    a.apply_group(t, "default", &first).await.unwrap();
    b.apply_group(t, "default", &other).await.unwrap();
    let report = a.apply_group(t, "default", &again).await.unwrap();
    assert_eq!(
        a.metrics.updates_skipped.get(),
        2,
        "device 1 was written by the other replica: its update is reconciled"
    );
    assert_eq!(report.updated, 1);
    assert_as_reference(&env, &reference, (t, r), &[&first, &other, &again]).await;
    assert_eq!(rows(&env, t).await[0]["hostname"].as_str(), Some("host-1"));
}

#[tokio::test]
async fn skipping_ends_in_the_same_inventory_as_reconciling_everything_under_churn() {
    const DEVICES: usize = 2_000;
    let env = Env::new();
    let skipping = ingest_instance(&env, true).await;
    let everything = ingest_instance(&env, false).await;
    let (t, r) = (TenantId::random(), TenantId::random());
    let mut ips: Vec<std::net::IpAddr> = (0..DEVICES).map(faker::ip).collect();
    for cycle in 0..8usize {
        if cycle > 0 {
            faker::churn(&mut ips, DEVICES * 5 / 100 / 2, cycle);
        }
        // Cycles 3 minutes apart (inside the last_seen precision), 5 % of models changing,
        // and every fourth cycle only half of the inventory reported.
        let when = at(3 * cycle as i64);
        let updates: Vec<Value> = (0..DEVICES)
            .filter(|i| cycle % 4 != 3 || i % 2 == 0)
            .map(|i| {
                let rev = u32::from(i % 20 == cycle % 20) * cycle as u32;
                serde_json::to_value(faker::update(i, ips[i], when, rev)).unwrap()
            })
            .collect();
        for chunk in updates.chunks(500) {
            let batch = observations(chunk);
            skipping.apply_group(t, "default", &batch).await.unwrap();
            everything.apply_group(r, "default", &batch).await.unwrap();
        }
        assert_eq!(rows(&env, t).await, rows(&env, r).await, "cycle {cycle}");
    }
    // 12 000 updates after the first cycle; those of devices last written more than 15
    // minutes earlier refresh last_seen and are reconciled.
    assert!(
        skipping.metrics.updates_skipped.get() > 6_000,
        "most unchanged updates were skipped ({})",
        skipping.metrics.updates_skipped.get()
    );
    assert_eq!(everything.metrics.updates_skipped.get(), 0);
    // The first cycle's 2 000 devices were new in a scope that was empty: their keys (uid, IP,
    // Armis id and MAC each) were not looked up, but for a few false positives.
    let left_out = skipping.metrics.lookup_keys_skipped.get();
    assert!(left_out > 7_900, "{left_out}");
    assert_eq!(everything.metrics.lookup_keys_skipped.get(), 0);
    assert_eq!(env.scalar("SELECT count(*) FROM merge_audit").await, 0);
}

#[tokio::test]
async fn a_replica_stops_trusting_its_key_filter_once_another_replica_wrote_the_scope() {
    let env = Env::new();
    let Replicas {
        a,
        b,
        reference,
        t,
        r,
    } = Replicas::new(&env).await;
    let fleet = observations(&armis_fleet(4, 0));
    let first = &fleet[..3];
    let fourth = &fleet[3..];
    let mut renamed = observations(&armis_fleet(4, 2)).split_off(3);
    renamed[0].hostname = Some("renamed".into());

    // The scope was empty: `a` knows every key in it and looks none of the 9 up.
    a.apply_group(t, "default", first).await.unwrap();
    assert_eq!(a.metrics.lookup_keys_skipped.get(), 9);
    // Device 4 is created by the other replica: keys `a` has never seen.
    b.apply_group(t, "default", fourth).await.unwrap();
    assert_eq!(
        b.metrics.lookup_keys_skipped.get(),
        0,
        "the scope held devices when `b` first used it"
    );
    // Trusting its filter, `a` would take device 4 for a new device (and fail on its key).
    let report = a.apply_group(t, "default", &renamed).await.unwrap();
    assert_eq!(
        a.metrics.lookup_keys_skipped.get(),
        9,
        "looked up in Postgres"
    );
    assert_eq!((report.created, report.updated), (0, 1));
    assert_as_reference(&env, &reference, (t, r), &[first, fourth, &renamed]).await;
    assert_eq!(rows(&env, t).await.len(), 4);
}

#[tokio::test]
async fn a_key_filter_past_its_limit_is_dropped_and_devices_are_looked_up_again() {
    let env = Env::new();
    let mut small = ingest_instance(&env, true).await;
    small.key_filters = KeyBudget::new(50);
    let reference = ingest_instance(&env, false).await;
    let (t, r) = (TenantId::random(), TenantId::random());
    let fleet = observations(&armis_fleet(40, 0));
    // 10 devices: 30 keys (uid, IP and Armis id each), within the limit; 20 are past it.
    let mut again = observations(&armis_fleet(40, 1));
    for o in &mut again {
        o.hostname = Some("renamed".into());
    }
    let batches = [&fleet[..10], &fleet[10..20], &fleet[20..], &again[..]];
    let mut updated = 0;
    for batch in batches {
        updated += small
            .apply_group(t, "default", batch)
            .await
            .unwrap()
            .updated;
        reference.apply_group(r, "default", batch).await.unwrap();
    }
    assert_eq!(
        small.metrics.lookup_keys_skipped.get(),
        60,
        "the keys of the first two groups; the second passed the limit"
    );
    assert_eq!(updated, 40);
    assert_eq!(
        small.key_filters.used(),
        0,
        "the dropped filter gave its keys back"
    );
    assert_eq!(rows(&env, t).await, rows(&env, r).await);
}

#[tokio::test]
async fn the_key_filters_of_all_scopes_share_one_budget() {
    let env = Env::new();
    let mut ingest = ingest_instance(&env, true).await;
    ingest.key_filters = KeyBudget::new(50);
    let (t, u) = (TenantId::random(), TenantId::random());
    let fleet = observations(&armis_fleet(13, 0));
    // 10 devices of each tenant: 30 keys each (uid, IP and Armis id), 60 together.
    ingest
        .apply_group(t, "default", &fleet[..10])
        .await
        .unwrap();
    assert_eq!(ingest.key_filters.used(), 30);
    ingest
        .apply_group(u, "default", &fleet[..10])
        .await
        .unwrap();
    assert_eq!(
        ingest.metrics.lookup_keys_skipped.get(),
        60,
        "both scopes were empty"
    );
    assert_eq!(
        ingest.key_filters.used(),
        30,
        "the second filter was dropped"
    );
    // The first scope keeps its filter (39 keys); the second looks its devices up.
    ingest
        .apply_group(t, "default", &fleet[10..])
        .await
        .unwrap();
    assert_eq!(ingest.metrics.lookup_keys_skipped.get(), 69);
    assert_eq!(ingest.key_filters.used(), 39);
    ingest
        .apply_group(u, "default", &fleet[10..])
        .await
        .unwrap();
    assert_eq!(ingest.metrics.lookup_keys_skipped.get(), 69);
    assert_eq!(env.scalar("SELECT count(*) FROM devices").await, 26);
}

/// A settled device loaded from Postgres is remembered from its `first_seen` until its oldest
/// stamp plus the precision, not its `last_seen` plus the precision: a value stated long ago
/// (here the site, stamped at minute 0 while the row was last seen at minute 100) bounds the
/// window.
#[tokio::test]
async fn a_loaded_device_is_remembered_until_its_oldest_stamp() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let first = with_meta(armis("1", "10.0.0.1", 0), "site", "a");
    let later = armis("1", "10.0.0.1", 100);
    env.ingest(t, &[first]).await;
    env.ingest(t, std::slice::from_ref(&later)).await;
    app.stop().await;
    assert_eq!(
        env.scalar(
            "SELECT json_array_length(stamps)::bigint FROM devices WHERE settled IS NOT NULL"
        )
        .await,
        1,
        "the row keeps the site's older stamp"
    );

    let config = env.config();
    let pool = sr_runtime::db::connect_and_migrate(&config.database, &sr_dire::MIGRATOR)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut memo = sr_reconcile::Memo::default();
    let cfg = config.reconcile_config();
    let loaded = sr_dire::store::load_settled(&mut conn, t, "default", None, &cfg, &mut memo)
        .await
        .unwrap();
    assert_eq!(loaded, 1);
    let key = sr_reconcile::Key::of(&observations(&[later])[0]);
    assert!(memo.covers(&key, at(10)), "inside [minute 0, minute 15)");
    assert!(
        !memo.covers(&key, at(100)),
        "past the site's stamp plus 15 minutes"
    );
    drop(conn);
    pool.close().await;
}

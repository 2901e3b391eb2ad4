use std::time::Duration;

use async_nats::HeaderMap;
use sr_core::TenantId;
use sr_runtime::jetstream::headers;
use sr_testkit::eventually;
use uuid::Uuid;

use crate::common::{Env, WAIT, event};

#[tokio::test]
async fn a_valid_event_is_stored_with_every_column_and_the_origin_header() {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let e = event(tenant);
    let mut h = HeaderMap::new();
    h.insert(headers::ORIGIN, "sr-gateway");
    h.insert(headers::MSG_ID, e.metadata.uid.to_string().as_str());
    let body = serde_json::to_vec(&e).unwrap();
    js.publish_with_headers(env.subject(tenant), h, body.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    env.wait_for_count(tenant, 1).await;

    let row: (
        Uuid,
        String,
        i32,
        i32,
        i32,
        i64,
        i32,
        i32,
        chrono::DateTime<chrono::Utc>,
        String,
        Option<String>,
        serde_json::Value,
        serde_json::Value,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT uid, origin, class_uid, category_uid, activity_id, type_uid, severity_id, status_id,
                time, message, correlation_uid, observables, unmapped, raw::text, subject
         FROM ocsf_events WHERE tenant_id = $1",
    )
    .bind(tenant.as_uuid())
    .fetch_one(&env.db.pool().await)
    .await
    .unwrap();
    assert_eq!(row.0, e.metadata.uid);
    assert_eq!(row.1, "sr-gateway");
    assert_eq!(
        (row.2, row.3, row.4, row.5, row.6, row.7),
        (1008, 1, 1, 100_801, 1, 1)
    );
    assert_eq!(row.8.timestamp_millis(), e.time);
    assert_eq!(row.9, "Integration source 'Armis' created");
    assert_eq!(row.10.as_deref(), Some("integration_source:src-1"));
    assert_eq!(row.11, serde_json::to_value(&e.observables).unwrap());
    assert_eq!(row.12["details"]["source_type"], "armis");
    assert_eq!(
        row.13.as_bytes(),
        body.as_slice(),
        "raw JSON kept as published"
    );
    assert_eq!(row.14, env.subject(tenant));
    assert_eq!(app.metrics.stored.get(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_event_published_twice_with_or_without_the_same_msg_id_leaves_one_row() {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let e = event(tenant);
    let (subject, body, uid) = (
        env.subject(tenant),
        serde_json::to_vec(&e).unwrap(),
        e.metadata.uid.to_string(),
    );
    assert!(!env.publish(&js, &subject, body.clone(), Some(&uid)).await);
    // Same Nats-Msg-Id: JetStream drops it inside its duplicate window.
    assert!(env.publish(&js, &subject, body.clone(), Some(&uid)).await);
    // A different Nats-Msg-Id and none at all reach the consumer; the store skips them.
    assert!(
        !env.publish(&js, &subject, body.clone(), Some("another-id"))
            .await
    );
    assert!(!env.publish(&js, &subject, body.clone(), None).await);
    let metrics = app.metrics.clone();
    eventually("the two late copies are seen as duplicates", WAIT, || {
        let m = metrics.clone();
        async move { (m.stored.get() == 1 && m.duplicates.get() == 2).then_some(()) }
    })
    .await;
    assert_eq!(env.count(tenant).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_and_a_tenant_mismatch_are_quarantined_terminated_and_do_not_block_the_consumer()
 {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let other = TenantId::random();
    let subject = env.subject(tenant);
    env.publish(&js, &subject, b"{\"class_uid\": 1008,".to_vec(), None)
        .await;
    let foreign = event(other);
    env.publish(&js, &subject, serde_json::to_vec(&foreign).unwrap(), None)
        .await;
    let good = event(tenant);
    env.publish_event(&js, &good).await;

    // The valid event after the bad ones is stored.
    let pool = env.db.pool().await;
    eventually("the valid event is stored", WAIT, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM ocsf_events WHERE tenant_id = $1 AND uid = $2",
            )
            .bind(tenant.as_uuid())
            .bind(good.metadata.uid)
            .fetch_one(&pool)
            .await
            .ok()
            .filter(|n| *n == 1)
        }
    })
    .await;
    let rows: Vec<(Option<Uuid>, String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT tenant_id, subject, kind, reason, raw FROM quarantined_events ORDER BY stream_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, Some(tenant.as_uuid()));
    assert_eq!(rows[0].1, subject);
    assert_eq!(rows[0].2, "malformed");
    assert!(rows[0].3.starts_with("malformed JSON"), "{}", rows[0].3);
    assert_eq!(rows[0].4, b"{\"class_uid\": 1008,");
    assert_eq!(rows[1].2, "tenant_mismatch");
    assert!(
        rows[1].3.contains(&tenant.to_string()) && rows[1].3.contains(&other.to_string()),
        "{}",
        rows[1].3
    );
    // Nothing of the foreign event is stored under either tenant.
    let foreign_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ocsf_events WHERE uid = $1")
        .bind(foreign.metadata.uid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(foreign_rows, 0);
    // Each quarantine is reported to the tenant as an OCSF event of its own.
    let reports: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT message, activity_id, status_id FROM ocsf_events
         WHERE tenant_id = $1 AND origin = 'sr-events' ORDER BY message",
    )
    .bind(tenant.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports.iter().all(|r| r.1 == 99 && r.2 == 2), "{reports:?}");
    assert_eq!(app.metrics.quarantined_total(), 2);

    // Terminated, not waiting for redelivery: nothing is left pending or unacknowledged.
    let consumer: async_nats::jetstream::consumer::PullConsumer = env
        .js()
        .await
        .get_stream(env.nats.config.subjects().events_stream())
        .await
        .unwrap()
        .get_consumer("events")
        .await
        .unwrap();
    eventually("every message is settled", WAIT, || {
        let c = consumer.clone();
        async move {
            let info = c.get_info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_batch_that_fails_transiently_is_redelivered_and_stored_once() {
    let env = Env::new();
    let app = env.start().await;
    let pool = env.db.pool().await;
    // Make every insert fail the way an unavailable table would.
    sqlx::query("ALTER TABLE ocsf_events RENAME TO ocsf_events_away")
        .execute(&pool)
        .await
        .unwrap();
    let js = env.js().await;
    let tenant = TenantId::random();
    let e = event(tenant);
    env.publish_event(&js, &e).await;
    let metrics = app.metrics.clone();
    eventually("the batch fails and is given back", WAIT, || {
        let m = metrics.clone();
        async move { (m.batch_failures.get() >= 1).then_some(()) }
    })
    .await;
    sqlx::query("ALTER TABLE ocsf_events_away RENAME TO ocsf_events")
        .execute(&pool)
        .await
        .unwrap();
    env.wait_for_count(tenant, 1).await;
    assert_eq!(app.metrics.quarantined_total(), 0);
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_on_the_same_durable_consumer_store_every_event_exactly_once() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.consumer.batch_size = 20;
    cfg.consumer.batch_linger_ms = 1;
    let a = env.start_with(cfg.clone()).await;
    let b = env.start_with(cfg).await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let events: Vec<_> = (0..400).map(|_| event(tenant)).collect();
    let subject = env.subject(tenant);
    let mut acks = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let body = serde_json::to_vec(e).unwrap();
        // Every fourth event is published a second time without a Msg-Id, so both
        // replicas race on the same uids.
        let copies = if i % 4 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            acks.push(
                js.publish(subject.clone(), body.clone().into())
                    .await
                    .unwrap(),
            );
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    env.wait_for_count(tenant, 400).await;
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    eventually("every copy is handled", WAIT, || {
        let (ma, mb) = (ma.clone(), mb.clone());
        async move {
            (ma.stored.get() + mb.stored.get() == 400
                && ma.duplicates.get() + mb.duplicates.get() == 100)
                .then_some(())
        }
    })
    .await;
    assert_eq!(env.count(tenant).await, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_restarted_service_resumes_from_the_durable_consumer() {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    env.publish_event(&js, &event(tenant)).await;
    env.wait_for_count(tenant, 1).await;
    app.stop().await;
    // Published while no replica runs: JetStream keeps it for the durable consumer.
    env.publish_event(&js, &event(tenant)).await;
    let app = env.start().await;
    env.wait_for_count(tenant, 2).await;
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .unwrap();
}

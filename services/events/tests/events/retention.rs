use chrono::{Duration as Days, Utc};
use sr_core::TenantId;
use sr_core::ocsf::Activity;
use sr_runtime::Clock as _;
use sr_testkit::eventually;

use crate::common::{Env, WAIT, event_at};

#[tokio::test]
async fn retention_removes_only_rows_older_than_the_maximum_age_in_bounded_batches() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.retention.max_age = "30d".to_owned();
    cfg.retention.delete_batch = 7; // several statements per run
    let app = env.start_with(cfg).await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let now = Utc::now();
    env.clock.set(now);
    let mut recent = Vec::new();
    for i in 0..20 {
        env.publish_event(
            &js,
            &event_at(
                tenant,
                Activity::Update,
                now - Days::days(40) - Days::minutes(i),
            ),
        )
        .await;
    }
    for i in 0..5 {
        let e = event_at(
            tenant,
            Activity::Create,
            now - Days::days(29) + Days::hours(i),
        );
        recent.push(e.metadata.uid);
        env.publish_event(&js, &e).await;
    }
    env.publish(&js, &env.subject(tenant), b"garbage".to_vec(), None)
        .await;
    // 25 events plus the report of the quarantined message.
    env.wait_for_count(tenant, 26).await;

    let removed = app.store.run_retention(env.clock.now()).await.unwrap();
    assert_eq!((removed.events, removed.quarantined), (20, 0));
    let left: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT uid FROM ocsf_events WHERE tenant_id = $1 AND origin = 'sr-identity' ORDER BY time",
    )
    .bind(tenant.as_uuid())
    .fetch_all(&env.db.pool().await)
    .await
    .unwrap();
    assert_eq!(left, recent);
    // Running again removes nothing.
    let again = app.store.run_retention(env.clock.now()).await.unwrap();
    assert_eq!((again.events, again.quarantined), (0, 0));
    assert_eq!(app.metrics.retention_deleted.get(), 20);

    // Two days later the 29-day-old events are past 30 days; the quarantine row and its
    // report (received "now") are not yet.
    env.clock.advance(Days::days(2));
    let removed = app.store.run_retention(env.clock.now()).await.unwrap();
    assert_eq!((removed.events, removed.quarantined), (5, 0));
    env.clock.advance(Days::days(29));
    let removed = app.store.run_retention(env.clock.now()).await.unwrap();
    assert_eq!((removed.events, removed.quarantined), (1, 1));
    assert_eq!(env.count(tenant).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn retention_runs_periodically_on_the_service_clock() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.retention.max_age = "1d".to_owned();
    cfg.retention.interval = "1s".to_owned();
    let app = env.start_with(cfg).await;
    let js = env.js().await;
    let tenant = TenantId::random();
    env.publish_event(&js, &event_at(tenant, Activity::Create, env.clock.now()))
        .await;
    env.wait_for_count(tenant, 1).await;
    env.clock.advance(Days::days(2));
    let metrics = app.metrics.clone();
    eventually("the periodic run removes the old event", WAIT, || {
        let m = metrics.clone();
        async move { (m.retention_deleted.get() == 1).then_some(()) }
    })
    .await;
    assert_eq!(env.count(tenant).await, 0);
    app.stop().await;
}

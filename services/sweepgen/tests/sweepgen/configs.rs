//! Inventory changes in, agent configs out, over real NATS and Postgres.

use sr_core::TenantId;
use sr_testkit::eventually;

use crate::common::{Env, WAIT, change, device, removed, set, targets, wait_handled};

#[tokio::test]
async fn devices_land_in_their_agents_configs_and_unassigned_ones_in_every_config() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let mut other_partition = device("sr:p2", Some("agent-a"), &["10.0.5.1"], 1);
    other_partition.partition = "dc2".into();
    env.publish(&change(
        tenant,
        vec![
            device("sr:a1", Some("agent-a"), &["10.0.1.1"], 1),
            device("sr:a2", Some("agent-a"), &["10.0.1.2", "2001:db8::a2"], 1),
            device("sr:b1", Some("agent-b"), &["10.0.2.1"], 1),
            device("sr:u1", None, &["10.0.9.1"], 1),
            other_partition,
        ],
    ))
    .await;
    wait_handled(&[&app], 1).await;

    let a = env.ask(tenant, "default", "agent-a", "").await;
    assert!(!a.not_modified);
    assert_eq!(
        targets(&a),
        set(&[
            "10.0.1.1/32",
            "10.0.1.2/32",
            "10.0.9.1/32",
            "2001:db8::a2/128"
        ])
    );
    let sweep = a.sweep.as_ref().unwrap();
    assert_eq!(sweep.sweep_modes, ["icmp", "tcp"]);
    assert_eq!(sweep.ports, [22, 443]);
    assert_eq!(sweep.sweep_interval_sec, 600, "the sources' interval");
    assert_eq!(
        sweep.networks,
        [
            "10.0.1.1/32",
            "10.0.1.2/32",
            "10.0.9.1/32",
            "2001:db8::a2/128"
        ]
    );
    let t = &sweep.device_targets[0];
    assert_eq!(
        (t.source.as_str(), t.query_label.as_str()),
        ("armis", "all")
    );
    assert_eq!(t.metadata["device_uid"], "sr:a1");

    let b = env.ask(tenant, "default", "agent-b", "").await;
    assert_eq!(targets(&b), set(&["10.0.2.1/32", "10.0.9.1/32"]));
    let stranger = env.ask(tenant, "default", "agent-z", "").await;
    assert_eq!(targets(&stranger), set(&["10.0.9.1/32"]));
    // The partition comes from the caller (its certificate); an empty one is `default`.
    let same = env.ask(tenant, "", "agent-a", "").await;
    assert_eq!(same.config_version, a.config_version);
    let dc2 = env.ask(tenant, "dc2", "agent-a", "").await;
    assert_eq!(targets(&dc2), set(&["10.0.5.1/32"]));
    // The same agent id in another tenant sees nothing of this one.
    let elsewhere = env.ask(TenantId::random(), "default", "agent-a", "").await;
    assert!(targets(&elsewhere).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_change_updates_only_the_affected_agents_version_and_the_current_version_is_not_modified()
{
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    env.publish(&change(
        tenant,
        vec![
            device("sr:a1", Some("agent-a"), &["10.0.1.1"], 1),
            device("sr:b1", Some("agent-b"), &["10.0.2.1"], 1),
            device("sr:u1", None, &["10.0.9.1"], 1),
        ],
    ))
    .await;
    wait_handled(&[&app], 1).await;
    let a1 = env.ask(tenant, "default", "agent-a", "").await;
    let b1 = env.ask(tenant, "default", "agent-b", "").await;

    let again = env
        .ask(tenant, "default", "agent-a", &a1.config_version)
        .await;
    assert!(again.not_modified && again.sweep.is_none());
    assert_eq!(
        (again.config_version.as_str(), again.config_timestamp),
        (a1.config_version.as_str(), a1.config_timestamp)
    );
    assert_eq!(app.metrics.not_modified.get(), 1);

    let compiles = app.metrics.compiles.get();
    env.publish(&change(
        tenant,
        vec![device("sr:a1", Some("agent-a"), &["10.0.1.7"], 2)],
    ))
    .await;
    wait_handled(&[&app], 2).await;
    let a2 = env
        .ask(tenant, "default", "agent-a", &a1.config_version)
        .await;
    assert!(!a2.not_modified);
    assert_ne!(a2.config_version, a1.config_version);
    assert_eq!(targets(&a2), set(&["10.0.1.7/32", "10.0.9.1/32"]));
    let b2 = env
        .ask(tenant, "default", "agent-b", &b1.config_version)
        .await;
    assert!(b2.not_modified, "agent-b is not affected");
    assert_eq!(b2.config_version, b1.config_version);
    assert_eq!(
        app.metrics.compiles.get(),
        compiles + 1,
        "only agent-a recompiled; agent-b came from the cache"
    );
    app.stop().await;
}

#[tokio::test]
async fn redelivered_and_out_of_order_changes_leave_the_same_state() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let pool = env.db.pool().await;
    let generation = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT generation FROM partition_generations WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let a = |ip: &str, rev: i64| change(tenant, vec![device("sr:a1", Some("agent-a"), &[ip], rev)]);

    env.publish(&a("10.0.1.1", 1)).await;
    env.publish(&a("10.0.1.3", 3)).await;
    env.publish(&a("10.0.1.2", 2)).await; // late: older than what is held
    wait_handled(&[&app], 3).await;
    let g = generation().await;
    env.publish(&a("10.0.1.3", 3)).await; // redelivered
    env.publish(&a("10.0.1.1", 1)).await;
    wait_handled(&[&app], 5).await;
    assert_eq!(generation().await, g, "nothing changed");
    assert_eq!(app.metrics.changes_stale.get(), 3);
    let held = env.ask(tenant, "default", "agent-a", "").await;
    assert_eq!(targets(&held), set(&["10.0.1.3/32"]));

    // A removal wins over an older change that arrives after it (no resurrection).
    env.publish(&change(tenant, vec![removed("sr:a1", 5)]))
        .await;
    env.publish(&a("10.0.1.4", 4)).await;
    wait_handled(&[&app], 7).await;
    let gone = env.ask(tenant, "default", "agent-a", "").await;
    assert!(targets(&gone).is_empty());
    let nobody = env.ask(tenant, "default", "agent-nobody", "").await;
    assert_eq!(gone.config_version, nobody.config_version);

    // The same final state from the changes in order, in a fresh deployment.
    let fresh = Env::new();
    let app2 = fresh.start().await;
    fresh
        .publish(&change(
            tenant,
            vec![device("sr:a1", Some("agent-a"), &["10.0.1.3"], 3)],
        ))
        .await;
    wait_handled(&[&app2], 1).await;
    let ordered = fresh.ask(tenant, "default", "agent-a", "").await;
    assert_eq!(ordered.config_version, held.config_version);
    app2.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_agent_without_devices_gets_an_empty_config_with_a_stable_version() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let first = env.ask(tenant, "default", "agent-empty", "").await;
    let sweep = first.sweep.clone().unwrap();
    assert!(sweep.device_targets.is_empty() && sweep.networks.is_empty());
    assert!(!first.config_version.is_empty());
    let second = env
        .ask(tenant, "default", "agent-empty", &first.config_version)
        .await;
    assert!(second.not_modified);
    app.stop().await;
    // A restarted service answers the same version and timestamp.
    let app = env.start().await;
    let third = env.ask(tenant, "default", "agent-empty", "").await;
    assert_eq!(
        (third.config_version.as_str(), third.config_timestamp),
        (first.config_version.as_str(), first.config_timestamp)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_change_for_one_tenant_never_recompiles_another_tenants_configs() {
    let env = Env::new();
    let app = env.start().await;
    let (t1, t2) = (TenantId::random(), TenantId::random());
    env.publish(&change(
        t1,
        vec![device("sr:x", Some("agent-1"), &["10.1.0.1"], 1)],
    ))
    .await;
    env.publish(&change(
        t2,
        vec![device("sr:x", Some("agent-1"), &["10.2.0.1"], 1)],
    ))
    .await;
    wait_handled(&[&app], 2).await;
    let one = env.ask(t1, "default", "agent-1", "").await;
    let two = env.ask(t2, "default", "agent-1", "").await;
    assert_eq!(targets(&one), set(&["10.1.0.1/32"]));
    assert_eq!(targets(&two), set(&["10.2.0.1/32"]));
    let compiles = app.metrics.compiles.get();
    let hits = app.metrics.cache_hits.get();

    // An unassigned device affects every agent of tenant 1's partition, and nothing else.
    env.publish(&change(t1, vec![device("sr:u", None, &["10.1.0.9"], 1)]))
        .await;
    wait_handled(&[&app], 3).await;
    let two_again = env.ask(t2, "default", "agent-1", &two.config_version).await;
    assert!(two_again.not_modified);
    assert_eq!(app.metrics.compiles.get(), compiles);
    assert_eq!(app.metrics.cache_hits.get(), hits + 1);
    let one_again = env.ask(t1, "default", "agent-1", &one.config_version).await;
    assert_eq!(targets(&one_again), set(&["10.1.0.1/32", "10.1.0.9/32"]));
    assert_eq!(app.metrics.compiles.get(), compiles + 1);
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_change_is_terminated_counted_and_reported() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    env.publish_raw(tenant, b"{not json".to_vec()).await;
    // A message whose body names another tenant than its subject is poison too.
    let mut foreign = change(
        TenantId::random(),
        vec![device("sr:f", None, &["10.9.9.9"], 1)],
    );
    let body = serde_json::to_vec(&foreign).unwrap();
    env.publish_raw(tenant, body).await;
    // Postgres refuses a NUL in text on every delivery: poison, not retried forever.
    env.publish(&change(
        tenant,
        vec![device("sr:\u{0}", None, &["10.9.9.8"], 1)],
    ))
    .await;
    foreign.tenant_id = tenant;
    env.publish(&foreign).await;
    wait_handled(&[&app], 4).await;
    assert_eq!(app.metrics.poison.get(), 3);
    assert_eq!(app.handled("applied"), 1, "the consumer carried on");
    let reply = env.ask(tenant, "default", "agent-a", "").await;
    assert_eq!(targets(&reply), set(&["10.9.9.9/32"]));

    let subjects = env.nats.config.subjects();
    let client = env.client().await;
    let events = eventually("poison reports", WAIT, || async {
        let msgs = sr_testkit::stream_messages(
            &client,
            &subjects.events_stream(),
            &subjects.events(tenant, "sweepgen"),
        )
        .await;
        (msgs.len() == 3).then_some(msgs)
    })
    .await;
    for m in events {
        let e: sr_core::ocsf::OcsfEvent = serde_json::from_slice(&m.payload).unwrap();
        e.validate().unwrap();
        assert_eq!((e.class_uid, e.activity_id, e.status_id), (1008, 99, 2));
        assert_eq!(e.tenant_id, tenant);
    }
    // Terminated messages are not redelivered.
    let js = async_nats::jetstream::new(client);
    eventually("nothing pending", WAIT, || {
        let (js, stream) = (js.clone(), subjects.inventory_stream());
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_consumer_from_stream("sweepgen", &stream)
                .await
                .ok()?;
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_request_while_its_partition_loads_is_told_to_retry_and_a_retry_succeeds() {
    let env = Env::new();
    let mut config = env.config();
    config.rpc.load_wait_ms = 300;
    let app = env.start_with(config).await;
    let tenant = TenantId::random();
    env.publish(&change(
        tenant,
        vec![device("sr:a1", Some("agent-a"), &["10.0.1.1"], 1)],
    ))
    .await;
    wait_handled(&[&app], 1).await;
    // Hold the table the load reads: the load cannot finish within the wait.
    let pool = env.db.pool().await;
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE sweep_devices IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let refused = env.try_ask(tenant, "default", "agent-a", "").await;
    let Err(sr_runtime::rpc::CallError::Remote(e)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(e.code, sr_core::rpc::RpcErrorCode::Unavailable);
    assert!(e.message.contains("being loaded"), "{}", e.message);
    blocker.commit().await.unwrap();
    // The load went on without the request; a retry is answered.
    let reply = eventually("the partition is loaded", WAIT, || async {
        env.try_ask(tenant, "default", "agent-a", "").await.ok()
    })
    .await;
    assert_eq!(targets(&reply), set(&["10.0.1.1/32"]));
    assert!(app.metrics.compiles.get() >= 1);
    app.stop().await;
}

/// A change published while no replica runs is applied as soon as one starts again, not after
/// the ack wait: the stopped replica's pull request is gone from the server before its stop
/// returns.
#[tokio::test]
async fn a_restarted_service_applies_a_change_published_while_it_was_stopped() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let one = |uid: &str, ip: &str| change(tenant, vec![device(uid, Some("agent-r"), &[ip], 1)]);
    env.publish(&one("sr:r1", "10.0.2.1")).await;
    wait_handled(&[&app], 1).await;
    app.stop().await;
    env.publish(&one("sr:r2", "10.0.2.2")).await;
    let app = env.start().await;
    wait_handled(&[&app], 1).await;
    let reply = env.ask(tenant, "default", "agent-r", "").await;
    assert_eq!(targets(&reply), set(&["10.0.2.1/32", "10.0.2.2/32"]));
    app.stop().await;
}

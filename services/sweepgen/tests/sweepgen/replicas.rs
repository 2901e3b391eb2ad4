//! Several replicas share the durable consumer and the responder queue group, and answer
//! identically whichever of them applied a change.

use sr_core::TenantId;

use crate::common::{Env, Sweepgen, TOKEN, change, device, wait_handled};

async fn view(r: &Sweepgen, tenant: TenantId, agent: &str) -> serde_json::Value {
    let (status, body) = r
        .get(
            &format!("/api/v1/tenants/{tenant}/agents/{agent}/sweep"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn two_replicas_answer_identically() {
    let env = Env::new();
    let (r1, r2) = (env.start().await, env.start().await);
    let tenant = TenantId::random();
    let mut devices: Vec<_> = (1..=40)
        .map(|i| {
            let agent = ["agent-a", "agent-b"][i % 2];
            device(
                &format!("sr:{i:03}"),
                Some(agent),
                &[&format!("10.0.0.{i}")],
                1,
            )
        })
        .collect();
    devices.push(device("sr:u", None, &["10.0.1.1"], 1));
    // Several messages, so both replicas are likely to apply some of them.
    for chunk in devices.chunks(5) {
        env.publish(&change(tenant, chunk.to_vec())).await;
    }
    wait_handled(&[&r1, &r2], 9).await;
    for agent in ["agent-a", "agent-b", "agent-c"] {
        let (one, two) = (
            view(&r1, tenant, agent).await,
            view(&r2, tenant, agent).await,
        );
        assert_eq!(one, two, "{agent}");
    }
    let before = view(&r1, tenant, "agent-a").await;
    assert_eq!(before["target_count"], 21);

    // A change applied by whichever replica pulls it is answered by both.
    env.publish(&change(
        tenant,
        vec![device("sr:001", Some("agent-a"), &["10.0.9.9"], 2)],
    ))
    .await;
    wait_handled(&[&r1, &r2], 10).await;
    let (one, two) = (
        view(&r1, tenant, "agent-a").await,
        view(&r2, tenant, "agent-a").await,
    );
    assert_eq!(one, two);
    assert_ne!(one["config_version"], before["config_version"]);
    let b1 = view(&r1, tenant, "agent-b").await;
    assert_eq!(b1, view(&r2, tenant, "agent-b").await);
    // Each replica loaded the partition once and then followed it incrementally: the one that
    // applied the change right after its commit, the other on its next request.
    assert_eq!(r1.metrics.partition_loads.get(), 1);
    assert_eq!(r2.metrics.partition_loads.get(), 1);
    assert!(r1.metrics.catch_ups.get() + r2.metrics.catch_ups.get() >= 2);
    assert_eq!(
        r1.configs.loaded_generation(tenant, "default").await,
        r2.configs.loaded_generation(tenant, "default").await
    );

    // And over NATS (queue group `sweepgen`: either replica answers), the same again.
    for _ in 0..4 {
        let reply = env.ask(tenant, "default", "agent-a", "").await;
        assert_eq!(
            reply.config_version,
            one["config_version"].as_str().unwrap()
        );
        assert_eq!(
            reply.config_timestamp,
            one["config_timestamp"].as_i64().unwrap()
        );
    }
    r1.stop().await;
    r2.stop().await;
}

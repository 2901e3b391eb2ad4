//! Configs larger than one NATS reply travel in parts (a small reply limit here makes a few
//! dozen devices need several parts; the gateway test covers the real `max_payload`).

use std::collections::BTreeSet;
use std::time::Duration;

use sr_core::TenantId;
use sr_core::rpc::{AgentConfigRequest, RpcErrorCode};
use sr_runtime::rpc::CallError;

use crate::common::{Env, caller, change, device, targets, wait_handled};

/// Reply limit of the replica under test, bytes.
const REPLY_LIMIT: usize = 3_000;

async fn small_replies(env: &Env) -> crate::common::Sweepgen {
    let max_payload = env.client().await.server_info().max_payload;
    let mut c = env.config();
    c.rpc.reply_reserve_bytes = max_payload - REPLY_LIMIT;
    env.start_with(c).await
}

fn devices(tenant: TenantId, n: usize, revision: i64) -> sr_core::inventory::InventoryChange {
    change(
        tenant,
        (0..n)
            .map(|i| {
                let ip = format!("10.77.{}.{}", i / 200, i % 200 + 1);
                device(&format!("sr:p{i}"), Some("agent-1"), &[&ip], revision)
            })
            .collect(),
    )
}

fn part_request(tenant: TenantId, part: u32, part_of: &str) -> AgentConfigRequest {
    AgentConfigRequest {
        caller: caller(tenant, "default", "agent-1"),
        current_version: String::new(),
        part,
        part_of: part_of.to_owned(),
    }
}

async fn fetch(env: &Env, tenant: TenantId, current: &str) -> sr_core::rpc::AgentConfigReply {
    sr_gateway::agent_config::fetch(
        &env.client().await,
        env.nats.config.subjects().sweepgen_agent_config(),
        &caller(tenant, "default", "agent-1"),
        current,
        Duration::from_secs(20),
        64 * 1024 * 1024,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_config_larger_than_one_reply_comes_in_parts_that_reassemble_to_the_whole_config() {
    let env = Env::new();
    let app = small_replies(&env).await;
    let tenant = TenantId::random();
    env.publish(&devices(tenant, 60, 1)).await;
    wait_handled(&[&app], 1).await;

    let first = env.ask(tenant, "default", "agent-1", "").await;
    assert!(first.parts > 1, "60 targets need several parts");
    assert!(first.sweep.is_none());
    let mut text = first.sweep_part.clone().unwrap();
    for part in 1..first.parts {
        let reply = env
            .request(&part_request(tenant, part, &first.config_version))
            .await
            .unwrap();
        let piece = reply.sweep_part.unwrap();
        // Each part, escaped into its reply, stays within the reply limit.
        assert!(serde_json::to_string(&piece).unwrap().len() <= REPLY_LIMIT);
        assert_eq!(
            (reply.config_version.as_str(), reply.parts),
            (first.config_version.as_str(), first.parts)
        );
        text.push_str(&piece);
    }
    let body: sr_core::rpc::SweepConfigBody = serde_json::from_str(&text).unwrap();
    assert_eq!(body.device_targets.len(), 60);

    // The gateway's fetch gives the same config, whole.
    let whole = fetch(&env, tenant, "").await;
    assert_eq!((whole.parts, whole.sweep_part.as_deref()), (0, None));
    assert_eq!(whole.config_version, first.config_version);
    assert_eq!(whole.sweep.as_ref(), Some(&body));
    let expected: BTreeSet<String> = (0..60)
        .map(|i| format!("10.77.{}.{}/32", i / 200, i % 200 + 1))
        .collect();
    assert_eq!(targets(&whole), expected);

    // The version in hand is not_modified, in one reply and without parts.
    let again = fetch(&env, tenant, &first.config_version).await;
    assert!(again.not_modified);
    assert_eq!((again.parts, again.sweep), (0, None));
    app.stop().await;
}

#[tokio::test]
async fn a_part_of_a_replaced_version_or_beyond_the_last_part_is_refused_and_fetch_starts_again() {
    let env = Env::new();
    let app = small_replies(&env).await;
    let tenant = TenantId::random();
    env.publish(&devices(tenant, 40, 1)).await;
    wait_handled(&[&app], 1).await;
    let first = env.ask(tenant, "default", "agent-1", "").await;
    assert!(first.parts > 1);

    let beyond = env
        .request(&part_request(tenant, first.parts, &first.config_version))
        .await
        .unwrap_err();
    assert!(
        matches!(&beyond, CallError::Remote(e) if e.code == RpcErrorCode::InvalidArgument),
        "{beyond:?}"
    );

    // The config changes between part 0 and part 1.
    env.publish(&devices(tenant, 50, 2)).await;
    wait_handled(&[&app], 2).await;
    let stale = env
        .request(&part_request(tenant, 1, &first.config_version))
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, CallError::Remote(e) if e.code == RpcErrorCode::NotFound),
        "{stale:?}"
    );

    let current = fetch(&env, tenant, &first.config_version).await;
    assert!(!current.not_modified);
    assert_ne!(current.config_version, first.config_version);
    assert_eq!(current.sweep.unwrap().device_targets.len(), 50);
    app.stop().await;
}

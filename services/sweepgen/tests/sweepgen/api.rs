//! The read API and `srctl sweep show`.

use clap::Parser as _;
use sr_core::TenantId;

use crate::common::{Env, TOKEN, change, device, wait_handled};

#[tokio::test]
async fn the_read_api_needs_the_token_and_shows_the_config_version_and_warnings() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    env.publish(&change(
        tenant,
        vec![
            device("sr:a1", Some("agent-a"), &["10.0.1.1"], 1),
            device("sr:lo", Some("agent-a"), &["127.0.0.1"], 1),
        ],
    ))
    .await;
    wait_handled(&[&app], 1).await;
    let path = format!("/api/v1/tenants/{tenant}/agents/agent-a/sweep?partition=default");
    for token in [None, Some("wrong")] {
        let (status, body) = app.get(&path, token).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["status"], 401);
    }
    let (status, body) = app.get(&path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant_id"], tenant.to_string());
    assert_eq!(body["partition"], "default");
    assert_eq!(body["agent_id"], "agent-a");
    assert_eq!(body["target_count"], 1);
    assert_eq!(body["sweep"]["device_targets"][0]["network"], "10.0.1.1/32");
    assert_eq!(body["sweep"]["networks"][0], "10.0.1.1/32");
    let warning = &body["warnings"][0];
    assert_eq!(warning["kind"], "unsweepable_address");
    assert_eq!(warning["address"], "127.0.0.1");
    assert!(warning["message"].as_str().unwrap().contains("127.0.0.1"));
    // The version is the one agents get.
    let reply = env.ask(tenant, "default", "agent-a", "").await;
    assert_eq!(body["config_version"], reply.config_version);
    assert_eq!(body["config_timestamp"], reply.config_timestamp);

    let (status, body) = app
        .get(
            "/api/v1/tenants/not-a-uuid/agents/agent-a/sweep",
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.get("/api/v1/nothing", Some(TOKEN)).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn srctl_sweep_show_prints_the_agents_targets() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let mut d = device("sr:a1", Some("agent-a"), &["10.0.1.1"], 1);
    d.partition = "dc1".into();
    env.publish(&change(tenant, vec![d])).await;
    wait_handled(&[&app], 1).await;
    let t = tenant.to_string();
    let run = |token: &str, extra: &[&str]| {
        let mut argv = vec!["srctl", "--sweepgen-url", &app.base, "--token", token];
        argv.extend_from_slice(extra);
        srctl::run(srctl::Cli::try_parse_from(argv).unwrap())
    };
    let out = run(
        TOKEN,
        &["sweep", "show", &t, "agent-a", "--partition", "dc1"],
    )
    .await
    .unwrap();
    assert!(out.contains("10.0.1.1/32"), "{out}");
    assert!(out.contains("NETWORK"), "{out}");
    assert!(out.contains("sr:a1"), "{out}");
    let json = run(
        TOKEN,
        &[
            "--json",
            "sweep",
            "show",
            &t,
            "agent-a",
            "--partition",
            "dc1",
        ],
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["target_count"], 1);
    assert!(out.contains(v["config_version"].as_str().unwrap()), "{out}");
    // The default partition has nothing for this agent.
    let out = run(TOKEN, &["sweep", "show", &t, "agent-a"]).await.unwrap();
    assert!(out.contains("targets           0"), "{out}");
    let err = run("bad", &["sweep", "show", &t, "agent-a"])
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("401"), "{err}");
    app.stop().await;
}

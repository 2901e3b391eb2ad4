//! srctl against a real identity service (real Postgres and NATS).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

use std::sync::Arc;

use clap::Parser as _;
use sr_testkit::{TestDb, TestNats};
use tokio_util::sync::CancellationToken;

async fn srctl(base: &str, token: &str, args: &[&str]) -> srctl::Result<String> {
    let mut argv = vec!["srctl", "--identity-url", base, "--token", token];
    argv.extend_from_slice(args);
    srctl::run(srctl::Cli::try_parse_from(argv).unwrap()).await
}

#[tokio::test]
async fn srctl_manages_tenants_syncs_agents_and_sources() {
    let (db, nats, dir) = (
        TestDb::new("srctl"),
        TestNats::new(),
        tempfile::tempdir().unwrap(),
    );
    let mut cfg = sr_identity::Config::default();
    cfg.database = db.config.clone();
    cfg.nats = nats.config.clone();
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.bootstrap.output_dir = dir.path().to_path_buf();
    cfg.secrets.dev_mode = true;
    let app = sr_identity::App::build_with_clock(cfg, Arc::new(sr_runtime::SystemClock))
        .await
        .unwrap();
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let handle = tokio::spawn(app.run_until(stop.clone()));
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();

    let out = srctl(
        &base,
        &token,
        &["tenants", "create", "acme", "--name", "Acme Corp"],
    )
    .await
    .unwrap();
    assert!(out.contains("Acme Corp"), "{out}");
    let out = srctl(&base, &token, &["tenants", "list"]).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("SLUG"), "{out}");
    assert!(
        lines[1].starts_with("platform") && lines[2].starts_with("acme"),
        "{out}"
    );

    let json = srctl(&base, &token, &["--json", "sync-services", "list", "acme"])
        .await
        .unwrap();
    let syncs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let platform_sync = syncs[0]["id"].as_str().unwrap().to_owned();

    let bundle_dir = dir.path().join("edge");
    let out = srctl(
        &base,
        &token,
        &[
            "sync-services",
            "onboard",
            "acme",
            "--name",
            "Edge",
            "--component-id",
            "edge-1",
            "--out",
            bundle_dir.to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("bundle written to"), "{out}");
    for f in ["cert.pem", "key.pem", "ca.pem", "sync.json"] {
        assert!(bundle_dir.join(f).exists(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle_dir.join("sync.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["component_id"], "edge-1");
    let out = srctl(
        &base,
        &token,
        &["agents", "enroll", "acme", "--component-id", "agent-1"],
    )
    .await
    .unwrap();
    assert!(out.contains("agent-1"), "{out}");

    let created = srctl(
        &base,
        &token,
        &[
            "--json",
            "sources",
            "create",
            "acme",
            "--set",
            "name=armis",
            "--set",
            "source_type=armis",
            "--set",
            "endpoint=https://armis.example",
            "--set",
            &format!("sync_service_id={platform_sync}"),
            "--set",
            r#"credentials={"secret_key":"s3cr3t"}"#,
            "--set",
            r#"queries=[{"label":"all","query":"in:devices"}]"#,
        ],
    )
    .await
    .unwrap();
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let out = srctl(&base, &token, &["sources", "disable", "acme", &id])
        .await
        .unwrap();
    assert!(out.contains("enabled") && out.contains("false"), "{out}");
    let out = srctl(&base, &token, &["sources", "list", "acme"])
        .await
        .unwrap();
    assert!(out.contains("armis") && !out.contains("s3cr3t"), "{out}");
    let out = srctl(&base, &token, &["sources", "delete", "acme", &id])
        .await
        .unwrap();
    assert_eq!(out, format!("deleted {id}\n"));

    // API errors come back with their status and message.
    let err = srctl(&base, &token, &["tenants", "create", "platform"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "422: slug is reserved for the platform tenant"
    );
    let err = srctl(&base, "wrong-token", &["tenants", "list"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, srctl::CliError::Api { status: 401, .. }),
        "{err}"
    );
    let err = srctl(
        &base,
        &token,
        &["sources", "update", "acme", &id, "--set", "novalue"],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
    let err = srctl("http://127.0.0.1:1", &token, &["platform"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");

    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[test]
fn tables_align_columns_and_show_missing_values() {
    let rows = vec![
        serde_json::json!({ "a": "x", "b": null }),
        serde_json::json!({ "a": "longer", "b": ["p", "q"] }),
    ];
    assert_eq!(
        srctl::table(&rows, &["a", "b"]),
        "A       B\nx       -\nlonger  p,q\n"
    );
}
